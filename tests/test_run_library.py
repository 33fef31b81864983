"""chaoslab.run_experiment / resume_run: the library writes the run folders the CLI shows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import chaoslab
from chaoslab.errors import UserError
from chaoslab.results import load_run
from chaoslab.run import Progress, RunInterrupted, RunPlan

EXPERIMENT = """\
title: Pod kill and node crash behind an LB
profile: k8s-1.32
designs: [nodeport-lb, nodeport-lb-local]
faults:
  - {kind: node-crash, target: app-pod-node}
  - {kind: pod-kill, target: app-pod}
sweep:
  lb.interval: [1s, 2s]
trials: 30
seed: 11
"""


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    p = tmp_path / "lb.yaml"
    p.write_text(EXPERIMENT)
    return p


def _stop_after(chunks: int) -> Progress:
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == chunks:
            raise KeyboardInterrupt

    return progress


def test_a_run_from_python_is_a_complete_run_folder(experiment: Path, tmp_path: Path) -> None:
    plans: list[RunPlan] = []
    run = chaoslab.run_experiment(
        experiment, tmp_path / "res", overrides={"lb.fall": 2}, on_start=plans.append
    )
    assert run.complete and run.path.parent == tmp_path / "res" / "lb"
    (plan,) = plans
    assert (plan.cells, plan.trials, plan.seed, plan.done_chunks) == (8, 30, 11, 0)
    assert plan.todo_trials == 8 * 30 == len(run.trials)
    assert run.meta["overrides"] == {"lb.fall": 2} and run.meta["seed"] == 11
    effective = (run.path / "experiment.yaml").read_text()
    assert "  lb.fall:\n    value: '2'\n" in effective
    summary = pd.read_csv(run.path / "summary.csv")
    assert len(summary) == 8 and set(summary["lb.interval"]) == {1.0, 2.0}


def test_an_interrupted_run_is_partial_and_resumes_to_the_same_trials(
    experiment: Path, tmp_path: Path
) -> None:
    whole = chaoslab.run_experiment(experiment, tmp_path / "whole")
    with pytest.raises(RunInterrupted) as cut:
        chaoslab.run_experiment(experiment, tmp_path / "cut", progress=_stop_after(3))
    partial = load_run(cut.value.run_dir)
    assert partial.meta["status"] == "partial" and partial.meta["n_trials"] == 3 * 30
    plans: list[RunPlan] = []
    resumed = chaoslab.resume_run(partial.path, workers=2, on_start=plans.append)
    assert plans[0].done_chunks == 3 and plans[0].todo_trials == 5 * 30
    assert resumed.complete and resumed.meta["resumed"] == 1
    pd.testing.assert_frame_equal(resumed.trials, whole.trials)


def test_resume_refuses_a_complete_run_and_a_folder_that_is_no_run(
    experiment: Path, tmp_path: Path
) -> None:
    run = chaoslab.run_experiment(experiment, tmp_path / "res", trials=5)
    with pytest.raises(UserError, match="already complete"):
        chaoslab.resume_run(run.path)
    with pytest.raises(UserError, match="not a run folder"):
        chaoslab.resume_run(tmp_path)


FAST_AND_NOT = """\
title: One cell the fast engine covers, one it does not
profile: k8s-1.32
designs: [nodeport-lb, ingress-vip-vrrp]
faults:
  - {kind: node-crash, target: app-pod-node}
trials: 40
seed: 5
"""


def test_the_fast_engine_is_recorded_and_every_cell_it_does_not_cover_is_noted(
    tmp_path: Path,
) -> None:
    exp = tmp_path / "fast.yaml"
    exp.write_text(FAST_AND_NOT)
    heard: list[str] = []
    run = chaoslab.run_experiment(exp, tmp_path / "res", engine="fast", on_note=heard.append)
    assert run.complete and run.meta["engine"] == "fast"
    assert len(run.trials) == 2 * 40
    (note,) = heard
    assert "ingress-vip-vrrp" in note and "SimPy engine" in note
    assert run.meta["engine_notes"] == heard
    simpy = chaoslab.run_experiment(exp, tmp_path / "ref", on_note=heard.append)
    assert simpy.meta["engine"] == "simpy" and "engine_notes" not in simpy.meta
    assert len(heard) == 1  # the SimPy engine has nothing to fall back from


def test_an_unknown_engine_is_refused_before_a_folder_is_made(tmp_path: Path) -> None:
    exp = tmp_path / "fast.yaml"
    exp.write_text(FAST_AND_NOT)
    with pytest.raises(UserError, match="unknown engine 'numba'"):
        chaoslab.run_experiment(exp, tmp_path / "res", engine="numba")
    assert not (tmp_path / "res").exists()


def test_a_resumed_run_keeps_the_engine_it_started_with(tmp_path: Path) -> None:
    exp = tmp_path / "fast.yaml"
    exp.write_text(FAST_AND_NOT)
    with pytest.raises(RunInterrupted) as stopped:
        chaoslab.run_experiment(
            exp, tmp_path / "res", engine="fast", progress=_stop_after(1), on_note=print
        )
    assert load_run(stopped.value.run_dir).meta["engine"] == "fast"
    run = chaoslab.resume_run(stopped.value.run_dir, on_note=print)
    assert run.complete and run.meta["engine"] == "fast" and len(run.trials) == 80
