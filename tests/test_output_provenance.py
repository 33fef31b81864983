"""What a run records is what it ran: --set on a key the file sets per cell is refused,
--trials must be a real count, meta.json names the exact model, files follow the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import chaoslab
from chaoslab.cli import main
from chaoslab.errors import UserError
from chaoslab.experiment import ExperimentError, load_experiment
from chaoslab.results import atomic_write_text, model_version

EXPERIMENT = """\
title: LB checks
profile: k8s-1.32
designs:
  - nodeport-lb
  - {design: nodeport-lb, label: fast-checks, params: {lb.fall: 2}}
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node, params: {client.timeout: 2s}}
sweep:
  lb.interval: [1s, 2s]
trials: 4
seed: 3
"""


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    p = tmp_path / "lb.yaml"
    p.write_text(EXPERIMENT)
    return p


def test_set_on_a_swept_key_is_refused_at_the_sweep_line(experiment: Path) -> None:
    exp = load_experiment(experiment)
    with pytest.raises(ExperimentError) as e:
        exp.validate({"lb.interval": "5s"})
    assert e.value.lines == [
        f"{experiment}:10: sweep.lb.interval: --set lb.interval cannot change a swept key "
        "(the sweep sets it in every cell); edit the sweep: in the file instead"
    ]


@pytest.mark.parametrize(
    ("key", "line", "where"),
    [
        ("lb.fall", 5, "designs[1].params.lb.fall"),
        ("client.timeout", 8, "faults[1].params.client.timeout"),
    ],
)
def test_set_that_a_variant_or_fault_overrides_is_refused(
    experiment: Path, key: str, line: int, where: str
) -> None:
    with pytest.raises(ExperimentError) as e:
        load_experiment(experiment).validate({key: "3"} if key == "lb.fall" else {key: "3s"})
    (msg,) = e.value.lines
    assert msg.startswith(f"{experiment}:{line}: {where}: --set {key} would not apply")


def test_the_cli_refuses_it_with_one_line_and_writes_nothing(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    code = main(["run", str(experiment), "--set", "lb.interval=5s", "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sweep.lb.interval" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("trials", [0, -3])
def test_trials_zero_or_negative_is_refused(
    experiment: Path, tmp_path: Path, trials: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserError, match=f"--trials {trials}: at least 1"):
        chaoslab.run_experiment(experiment, tmp_path / "lib", trials=trials)
    args = ["run", str(experiment), f"--trials={trials}", "--out", str(tmp_path / "cli"), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --trials {trials}: at least 1 trial per cell"]
    assert not (tmp_path / "lib").exists() and not (tmp_path / "cli").exists()


def test_trials_over_the_limit_is_refused(experiment: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="over the experiment's limit of 100000"):
        chaoslab.run_experiment(experiment, tmp_path / "res", trials=100_001)


def test_meta_records_the_package_version_and_the_checkout_commit(
    experiment: Path, tmp_path: Path
) -> None:
    run = chaoslab.run_experiment(experiment, tmp_path / "res", trials=2)
    meta = json.loads((run.path / "meta.json").read_text())
    version = meta["model_version"]
    assert version["package"] == meta["chaoslab_version"] != "unknown"
    root = Path(chaoslab.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        assert set(version) == {"package"}
        return
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version["git_commit"] == head and isinstance(version["git_dirty"], bool)


def test_model_version_of_an_installed_copy_has_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chaoslab.results as results

    fake = tmp_path / "site-packages" / "chaoslab" / "results.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    monkeypatch.setattr(results, "__file__", str(fake))
    assert set(model_version()) == {"package"}


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_result_files_follow_the_umask(experiment: Path, tmp_path: Path, umask_022: None) -> None:
    run = chaoslab.run_experiment(experiment, tmp_path / "res", trials=2)
    files = [p for p in run.path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert {p.name for p in files} >= {"meta.json", "trials.parquet", "summary.csv"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}
    os.umask(0o077)
    target = tmp_path / "private.txt"
    atomic_write_text(target, "x")
    assert _mode(target) == 0o600


def test_an_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "sub" / "report.html"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and _mode(target) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]
