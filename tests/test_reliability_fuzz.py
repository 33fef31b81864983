"""The coverage-guided fuzz target (tests/fuzz/fuzz_loader.py) runs for a bounded time
from its committed corpus and finds no input that ends in anything but a result or one
located error line (issue 14, "keep it caught")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).parent / "fuzz"


def test_the_loader_fuzz_target_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"  # new finds go here: the committed corpus stays as it is
    corpus.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "fuzz_loader.py"),
            str(corpus),
            str(FUZZ / "corpus"),
            "-max_total_time=45",
            "-rss_limit_mb=2048",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert "Done" in proc.stderr or "interrupted" in proc.stderr, tail
