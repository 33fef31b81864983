"""The benchmark's figures mean what they say (no timing assertions: the machine is shared)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import simpy

from chaoslab.experiment import load_experiment
from chaoslab.runner import run_trial

ROOT = Path(__file__).resolve().parents[1]


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "bench_trials", ROOT / "benchmarks/bench_trials.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _cells():  # type: ignore[no-untyped-def]
    return load_experiment(ROOT / "experiments/seed-designs.yaml").cells()


def test_events_per_trial_counts_every_processed_simpy_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chaoslab.mechanisms.base import Trial

    steps = {"n": 0}
    real_step = simpy.Environment.step

    def counting_step(self: simpy.Environment) -> None:
        steps["n"] += 1
        real_step(self)

    def simpy_run(self: Trial) -> None:  # SimPy's own loop, each event one step
        self.env.run(until=self.horizon)

    for cell in _cells()[:6]:
        for i in range(5):
            ours: dict[str, int] = {}
            run_trial(cell, i, seed=3, stats=ours)  # Trial.run: the trial's own loop
            with monkeypatch.context() as m:
                m.setattr(simpy.Environment, "step", counting_step)
                m.setattr(Trial, "run", simpy_run)
                steps["n"] = 0
                stats: dict[str, int] = {}
                run_trial(cell, i, seed=3, stats=stats)
            # every step but the one that pops run(until=horizon)'s stop event
            assert stats["events"] == steps["n"] - 1 > 0, cell.key
            assert ours == stats, cell.key


def test_bare_loop_runs_exactly_the_requested_events(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = {"n": 0}
    real_step = simpy.Environment.step

    def counting_step(self: simpy.Environment) -> None:
        steps["n"] += 1
        real_step(self)

    monkeypatch.setattr(simpy.Environment, "step", counting_step)
    _bench().bare_simpy(3, 17)
    # 17 events per run (the process' Initialize event, 15 timeouts, its termination),
    # plus the step that finds the queue empty and ends run()
    assert steps["n"] == 3 * (17 + 1)


def test_benchmark_reports_every_cell_of_a_design(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = _bench()
    out = tmp_path / "bench.json"
    code = bench.main(
        ["--trials", "20", "--repeat", "1", "--design", "nodeport-direct", "--json", str(out)]
    )
    assert code == 0
    data = json.loads(out.read_text())
    n_cells = sum(1 for c in _cells() if c.design == "nodeport-direct")
    assert len(data["rows"]) == n_cells > 0
    for r in data["rows"]:
        assert r["design"] == "nodeport-direct"
        assert r["trials_per_s"] > 0 and r["events_per_trial"] > 1
        assert r["x_bare"] == pytest.approx(r["us_per_event"] / r["bare_us_per_event"])
    text = capsys.readouterr().out
    assert "| nodeport-direct |" in text and "machine:" in text
