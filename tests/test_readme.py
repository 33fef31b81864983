"""The README starts with the two commands a fresh machine needs, and they exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[list[str]]:
    return [b.strip().splitlines() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_opens_with_exactly_the_demo_and_the_test_command() -> None:
    text = (ROOT / "README.md").read_text()
    first = _bash_blocks(text)[0]
    commands = [line.split("#")[0].strip() for line in first]
    assert commands == [".ci/run demo", ".ci/run test"]
    assert text.index("```bash") < text.index("\n## ")  # before any section


def test_no_readme_command_line_pipes() -> None:
    for block in _bash_blocks((ROOT / "README.md").read_text()):
        for line in block:
            assert "|" not in line.split("#")[0], line


def test_make_targets_are_the_ci_script_modes() -> None:
    make = (ROOT / "Makefile").read_text()
    for mode in ("demo", "test", "check"):
        assert re.search(rf"^{mode}:\n\t\.ci/run {mode}$", make, re.M), mode


def test_ci_script_refuses_an_unknown_mode_before_installing_anything() -> None:
    r = subprocess.run(
        [str(ROOT / ".ci" / "run"), "deploy"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2 and "usage: .ci/run [test|demo|check]" in r.stderr
