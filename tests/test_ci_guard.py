"""CI's promise: where the real components are installed, a skipped real-component test
fails the run (tests/conftest.py, switched on by CHAOSLAB_REQUIRE_REAL=1 in .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

SKIPPING = """
import pytest

@pytest.mark.lab
def test_needs_the_lab():
    pytest.skip("pretend keepalived is missing")

def test_plain():
    pass
"""


def _run(tmp_path: Path, require: str | None) -> int:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CHAOSLAB_REQUIRE_REAL"}
    if require is not None:
        env["CHAOSLAB_REQUIRE_REAL"] = require
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True).returncode


@pytest.mark.parametrize(("require", "code"), [(None, 0), ("1", 1)])
def test_a_skipped_lab_test_fails_only_where_ci_requires_the_components(
    tmp_path: Path, require: str | None, code: int
) -> None:
    assert _run(tmp_path, require) == code
