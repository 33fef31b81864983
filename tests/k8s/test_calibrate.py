"""``live.calibrate: [controller_reaction]`` against the wire-level fake API server: the
round trips (annotation PATCH on a node -> its watch event), what they leave in the run
folder and in the prediction's parameters, and that the annotation is always removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import chaoslab.live.k8s.calibrate as calib
from chaoslab.cli import main
from chaoslab.live.engine import left_line
from chaoslab.live.journal import UndoStep, pending_undo
from chaoslab.live.k8s.calibrate import ANNOTATION
from chaoslab.live.k8s.drill import plan_drill
from chaoslab.params import ParamSet
from chaoslab.params.dists import Empirical, parse_value
from chaoslab.results import CALIBRATION_MODE, RunFormatError, load_run

from .conftest import Env
from .fakeapi import Timing
from .rbac_check import denied

KEY = "kube_controller_manager.controller_reaction"
POD_DELETE = {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api"}


def _annotated(env: Env) -> list[str]:
    """Nodes that still carry the calibration annotation."""
    return [
        n["metadata"]["name"]
        for n in env.cluster.items("nodes")
        if ANNOTATION in (n["metadata"].get("annotations") or {})
    ]


def _node_patches(env: Env) -> list[str]:
    return [p for m, p in env.cluster.calls if m == "PATCH" and "/nodes/" in p]


def test_calibrated_drill_records_samples_and_override(make_env) -> None:
    # every node PATCH takes 80 ms on the server: no round trip can be shorter
    env = make_env(timing=Timing(write_delay=0.08))
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=12)
    out = env.tmp / "results"
    assert main(["drill", str(exp), "--yes", "--out", str(out)]) == 0
    run = env.only_run()
    cal = pd.read_csv(run / "calibration.csv")
    assert list(cal.columns) == ["name", "sample", "seconds"]
    assert list(cal["sample"]) == list(range(1, 13))
    assert (cal["name"] == "controller_reaction").all()
    assert (cal["seconds"] >= 0.08).all()
    meta = json.loads((run / "meta.json").read_text())
    measured = parse_value(meta["overrides"][KEY])
    assert isinstance(measured, Empirical)
    assert measured.values == pytest.approx(tuple(cal["seconds"]), abs=1e-6)
    info = meta["calibration"]["controller_reaction"]
    assert info["param"] == KEY and info["samples"] == 12
    assert info["median_s"] == pytest.approx(cal["seconds"].median())
    # the effective experiment says what the prediction ran with
    assert KEY in (run / "experiment.yaml").read_text()
    assert _annotated(env) == []
    # warm-up + 12 timed + removal, on one node of the app, allowed by deploy/rbac.yaml
    assert len(_node_patches(env)) == 14 and len(set(_node_patches(env))) == 1
    assert denied(env.cluster.calls) == []


def test_samples_reach_the_prediction_parameters(make_env, capsys) -> None:
    env = make_env(timing=Timing(write_delay=0.05))
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    (plan,) = plan_drill(exp)
    (c,) = plan.calibration
    assert c.name == "controller_reaction" and len(c.samples) == 5
    assert c.node in ("worker-1", "worker-2")  # a node running the app
    ps = ParamSet.resolve(plan.profiles, plan.overrides)
    dist = ps.values[KEY]
    assert isinstance(dist, Empirical)
    assert dist.values == pytest.approx(c.samples, abs=1e-6)
    assert any(line.startswith("note: calibrated " + KEY) for line in plan.lines)
    assert "calibrating controller_reaction: 5 round trips" in capsys.readouterr().out
    assert _annotated(env) == []


def test_one_calibration_serves_every_fault(make_env) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=6)
    doc = yaml.safe_load(exp.read_text())
    doc["faults"].append({**doc["faults"][0], "name": "second-delete"})
    exp.write_text(yaml.safe_dump(doc, sort_keys=False))
    first, second = plan_drill(exp)
    assert second.calibration == first.calibration
    assert second.overrides[KEY] == first.overrides[KEY]
    assert len(_node_patches(env)) == 6 + 2  # measured once: warm-up, 6 timed, removal


def _fail_after(monkeypatch: pytest.MonkeyPatch, calls: int, fail: Any) -> None:
    """Round trip number ``calls`` + 1 meets ``fail()`` (the annotation is set by then)."""
    real, done = calib._round_trip, [0]

    def round_trip(*args: Any) -> float:
        done[0] += 1
        if done[0] > calls:
            fail()
        return real(*args)

    monkeypatch.setattr(calib, "_round_trip", round_trip)


def test_api_error_midway_removes_annotation_and_fails_in_one_line(
    make_env, monkeypatch, capsys
) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])
    _fail_after(monkeypatch, 3, lambda: env.cluster.fail("PATCH", "/nodes/", 500, 1))
    assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results")]) != 0
    err = capsys.readouterr().err.strip()
    assert "injected failure 500" in err and "\n" not in err
    assert _annotated(env) == [] and len(_node_patches(env)) == 5
    # nothing was injected, and the calibration's journal folder went with the annotation
    assert list((env.tmp / "results").rglob("*")) == []


def test_interrupt_midway_removes_annotation(make_env, monkeypatch) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])

    def interrupt() -> None:
        raise KeyboardInterrupt

    _fail_after(monkeypatch, 4, interrupt)
    with pytest.raises(KeyboardInterrupt):
        plan_drill(exp)
    assert _annotated(env) == []


def test_sigterm_midway_removes_annotation(make_env, monkeypatch) -> None:
    # the drill's signal guard is not up while it plans: calibration turns SIGTERM into
    # an interrupt itself, and gives the old handler back afterwards
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])
    before = signal.getsignal(signal.SIGTERM)
    _fail_after(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(KeyboardInterrupt):
        plan_drill(exp)
    assert _annotated(env) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_unknown_calibration_name_is_one_line_error(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction", "node_boot_time"])
    assert main(["drill", str(exp), "--out", str(env.tmp / "results")]) == 2
    err = capsys.readouterr().err.strip()
    line = _line_of(exp, "node_boot_time")
    assert err.startswith(f"error: {exp}:") and "live.calibrate[1]" in err and "\n" not in err
    assert f":{line}:" in err
    assert env.cluster.calls == []  # refused before anything connects


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


# ---------------------------------------------------------------- the journal (kill -9)

#: ``chaoslab drill EXP --out OUT`` (a dry run: it plans, so it calibrates), SIGKILLed by
#: itself after the third round trip: the annotation is on the node, and nothing in the
#: process ran after it (no finally, no flush of a buffered stdout)
_KILLED_DRILL = """
import os, signal, sys
import chaoslab.live.k8s.calibrate as calib
from chaoslab.cli import main
real, done = calib._round_trip, [0]
def round_trip(*args):
    done[0] += 1
    if done[0] > 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
calib._round_trip = round_trip
sys.exit(main(["drill", sys.argv[1], "--out", sys.argv[2]]))
"""


def _killed_calibration(env: Env, exp: Path, out: Path) -> tuple[Path, str]:
    """Run `_KILLED_DRILL` (stdout a pipe, so buffered unless flushed); the calibration
    folder it left, and its stdout."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_DRILL, str(exp), str(out)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(_annotated(env)) == 1  # left on the node by the killed process
    (folder,) = out.glob("*/*-calibrate-*")
    return folder, proc.stdout


def _calibrate_folders(out: Path) -> list[Path]:
    return sorted(out.glob("*/*-calibrate-*"))


def test_killed_calibration_is_journaled_and_recover_removes_the_annotation(
    make_env, capsys
) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    out = env.tmp / "results"
    folder, _ = _killed_calibration(env, exp, out)
    (step,) = pending_undo(folder / "journal.jsonl")
    (node,) = _annotated(env)
    assert step.step == {
        "op": calib.UNDO_OP,
        "node": node,
        "annotation": ANNOTATION,
        "previous": None,
    }
    assert main(["drill", "--recover", str(folder)]) == 0
    assert "rollback complete" in capsys.readouterr().out
    assert _annotated(env) == []
    assert pending_undo(folder / "journal.jsonl") == []


def test_a_drill_after_a_killed_calibration_is_refused_until_recovered(make_env, capsys) -> None:
    # a drill that does not calibrate finds the dead drill's undo step, as for a fault
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    out = env.tmp / "results"
    folder, _ = _killed_calibration(env, exp, out)
    plain = env.experiment(POD_DELETE)
    capsys.readouterr()
    assert main(["drill", str(plain), "--yes", "--out", str(out)]) == 1
    said = capsys.readouterr().out
    (node,) = _annotated(env)
    assert f"{folder}: a calibration of an earlier drill of this target left 1 undo step" in said
    assert f"its annotation {ANNOTATION} may still be on node {node}" in said
    assert "its fault may still be injected" not in said
    assert f"chaoslab drill --recover {folder}" in said


def test_left_line_names_a_fault_or_a_calibrations_annotation(tmp_path: Path) -> None:
    """One builder for both leftovers: a drill's run folder (its fault may still be
    injected) and a calibration's folder (its annotation may still be on the node), each
    naming the command that finishes it."""
    out = tmp_path / "results"
    fault_run, cal_run = out / "exp" / "t-live-a", out / "exp" / "t-calibrate-b"
    cut = UndoStep("1", {"op": "uncordon", "node": "worker-2"})
    put_back = UndoStep("1", {"op": calib.UNDO_OP, "node": "worker-1", "annotation": ANNOTATION})
    fault = left_line(fault_run, {"mode": "live"}, [cut], "kubernetes")
    cal = left_line(cal_run, {"mode": CALIBRATION_MODE, "node": "worker-1"}, [put_back], "lab")
    assert fault == (
        f"{fault_run}: an earlier drill of this target left 1 undo step(s) not done (stopped "
        f"before its rollback ended): its fault may still be injected; run 'chaoslab drill "
        f"--recover {fault_run}' first, or move that folder out of {out} if the target was "
        "put right by hand"
    )
    assert cal == (
        f"{cal_run}: a calibration of an earlier drill of this target left 1 undo step(s) not "
        f"done (stopped before its rollback ended): its annotation {ANNOTATION} may still be "
        f"on node worker-1; run 'chaoslab drill --recover {cal_run}' first, or move that "
        f"folder out of {out} if the target was put right by hand"
    )


def test_show_of_a_calibration_folder_says_what_it_is(make_env, capsys) -> None:
    """``chaoslab show`` (and every reader through `load_run`) on a killed calibration's
    folder: one line, exit 2 (bad input), saying it is a calibration's journal, not a run,
    naming the node and ``chaoslab drill --recover DIR`` (was "results format version
    None")."""
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    folder, _ = _killed_calibration(env, exp, env.tmp / "results")
    (node,) = _annotated(env)
    capsys.readouterr()
    assert main(["show", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "format version" not in err
    assert err.startswith(f"error: {folder}: not a run but the journal of a calibration")
    assert f"on node {node}" in err and f"'chaoslab drill --recover {folder}'" in err
    with pytest.raises(RunFormatError, match="journal of a calibration"):
        load_run(folder)


def test_next_calibration_puts_back_what_a_killed_one_left(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    out = env.tmp / "results"
    folder, _ = _killed_calibration(env, exp, out)
    (plan,) = plan_drill(exp, out=out)
    assert len(plan.calibration[0].samples) == 5
    assert f"annotation {ANNOTATION} that a killed drill left ({folder})" in capsys.readouterr().out
    assert _annotated(env) == []
    assert _calibrate_folders(out) == []  # the dead one's and its own


def test_normal_run_leaves_no_calibration_journal(make_env) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    out = env.tmp / "results"
    assert main(["drill", str(exp), "--yes", "--out", str(out)]) == 0
    assert _calibrate_folders(out) == []
    assert pending_undo(env.only_run() / "journal.jsonl") == []
    assert _annotated(env) == []


def test_annotation_held_before_is_put_back(make_env) -> None:
    # the undo restores the value the node had, which need not be "absent"
    env = make_env()
    for name in ("worker-1", "worker-2"):
        node = env.cluster.get("nodes", "", name)
        assert node is not None
        node["metadata"].setdefault("annotations", {})[ANNOTATION] = "an operator's"
        env.cluster.put("nodes", node)
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    (plan,) = plan_drill(exp, out=env.tmp / "results")
    node = env.cluster.get("nodes", "", plan.calibration[0].node)
    assert node is not None
    assert node["metadata"]["annotations"][ANNOTATION] == "an operator's"


# ---------------------------------------------------------------- the CLI's log


def test_cli_shows_the_calibration_progress_as_it_happens(make_env) -> None:
    # the CLI's log lines are flushed when written (typer.echo), also into a pipe: the
    # killed drill's stdout has the line that announced the round trips it died in
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    _, said = _killed_calibration(env, exp, env.tmp / "results")
    assert said.startswith("calibrating controller_reaction: 5 round trips (PATCH")


def test_cli_dry_run_shows_the_calibration_result(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    assert main(["drill", str(exp), "--out", str(env.tmp / "results")]) == 0
    said = capsys.readouterr().out
    assert "calibrating controller_reaction: 5 round trips ... median" in said
    assert "dry run: nothing was injected" in said


def test_failed_put_back_keeps_the_journal_for_recover(make_env, monkeypatch, capsys) -> None:
    # the 4th round trip and the restore after it both meet a 500: the step stays pending
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    out = env.tmp / "results"
    _fail_after(monkeypatch, 3, lambda: env.cluster.fail("PATCH", "/nodes/", 500, 2))
    assert main(["drill", str(exp), "--out", str(out)]) != 0
    (folder,) = _calibrate_folders(out)
    assert f"run: chaoslab drill --recover {folder}" in capsys.readouterr().out
    assert len(_annotated(env)) == 1
    assert main(["drill", "--recover", str(folder)]) == 0
    assert _annotated(env) == [] and pending_undo(folder / "journal.jsonl") == []
