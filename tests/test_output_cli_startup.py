"""Start-up: `chaoslab --help` and the listings load no pandas, NumPy, SimPy, matplotlib
or Kubernetes client (behaviour, not timing: benchmarks/bench_startup.py times it); the
listing's cache is rebuilt when the registries' sources change; completion is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.cli import listing, main

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "numpy", "simpy", "matplotlib", "kubernetes")


def _loaded_after(args: list[str], env: dict[str, str]) -> tuple[list[str], str]:
    """The heavy modules a fresh interpreter holds after `main(args)`, and its output."""
    code = (
        "import io, contextlib, json, sys\n"
        "from chaoslab.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main({args!r})\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(json.dumps([rc, heavy, buf.getvalue()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    rc, heavy, out = json.loads(done.stdout)
    assert rc == 0, done.stderr
    return heavy, out


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "80"}
    env.pop("PYTHONPATH", None)
    return {**env, "PYTHONPATH": str(ROOT)}


def test_help_imports_no_heavy_library(cache_env: dict[str, str]) -> None:
    heavy, out = _loaded_after(["--help"], cache_env)
    assert heavy == [] and "designs" in out and "--install-completion" in out


@pytest.mark.parametrize("command", ["designs", "faults", "profiles"])
def test_listings_import_no_heavy_library_once_cached(
    command: str, cache_env: dict[str, str]
) -> None:
    first, out = _loaded_after([command], cache_env)  # builds the cache from the registries
    assert "numpy" in first
    again, out_again = _loaded_after([command], cache_env)
    assert again == [] and out_again == out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_a_changed_source_rebuilds_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rows = listing.listing()
    assert rows == listing.build()
    (written,) = (tmp_path / "chaoslab").iterdir()
    stale = json.loads(written.read_text())
    stale["rows"]["designs"] = [["a-design-that-was-removed", "", "", ""]]
    # the same file name, another source digest: the cached rows are not used
    monkeypatch.setattr(listing, "digest", lambda: stale["digest"][:16] + "0" * 48)
    written.write_text(json.dumps(stale))
    assert listing.listing()["designs"] == rows["designs"]


def test_a_garbled_or_unwritable_cache_still_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = listing.cache_file(listing.digest())
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert listing.listing() == listing.build()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file, not a folder
    assert listing.listing() == listing.build()


def test_every_registered_module_imports_without_pandas(cache_env: dict[str, str]) -> None:
    # the lab, drill, analysis, cluster and advise commands register at start-up
    heavy, _ = _loaded_after(["lab", "--help"], cache_env)
    assert heavy == []


def test_completion_script_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--show-completion", "bash"])
    out = capsys.readouterr().out
    assert code == 0 and "complete" in out and "chaoslab" in out.lower()


def test_a_reader_that_leaves_early_gets_no_traceback(cache_env: dict[str, str]) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "chaoslab", "params"], cwd=ROOT, env=cache_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()  # like `| head -1`
    err = p.stderr.read() if p.stderr else ""
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert p.returncode in (0, 1, 128 + 13)  # click says 1 for a closed pipe, we 141
