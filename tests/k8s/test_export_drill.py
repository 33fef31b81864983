"""A drill against the fake API server, exported: Grafana's annotation windows are the fault
instants and recoveries, the metrics are comparison.csv, and the Chaos Toolkit journal has
the shape chaostoolkit-lib's own journals have and passes its validator."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.run import initialize_run_journal
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from chaoslab.cli import main
from chaoslab.results import load_run

from .conftest import Env


@pytest.fixture
def drill_run(make_env) -> Path:
    env: Env = make_env()
    exp = env.experiment(
        {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api",
         "grace_period": "2s"},
        trials=2,
    )  # fmt: skip
    assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results")]) == 0
    return env.only_run()


def _export(run: Path, fmt: str) -> Path:
    assert main(["export", str(run), "--format", fmt]) == 0
    return next(p for p in run.iterdir() if p.name.startswith(("metrics", "grafana", "ctk")))


def test_drill_exports(drill_run: Path) -> None:
    grafana = json.loads(_export(drill_run, "grafana").read_text())
    info = pd.read_csv(drill_run / "trial_info.csv")
    trials = load_run(drill_run).trials
    assert [a["time"] for a in grafana] == [round(t * 1000) for t in info["t0_wall"]]
    assert trials["recovered"].all()
    for a, t0, rec in zip(grafana, info["t0_wall"], trials["recovery_s"], strict=True):
        assert a["timeEnd"] == round((t0 + rec) * 1000)  # the outage window: fault to recovery
        assert "pod-delete" in a["tags"] and "recovered after" in a["text"]
    (drill_run / "grafana-annotations.json").unlink()

    text = _export(drill_run, "openmetrics").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    comparison = pd.read_csv(drill_run / "comparison.csv")
    inside = {s.labels["metric"]: s.value for s in families["chaoslab_drill_inside_ratio"].samples}
    for row in comparison.itertuples():
        if row.metric.endswith("_s") or row.metric.startswith("at_"):
            assert inside[row.metric] == pytest.approx(row.inside)


def test_drill_as_a_chaos_toolkit_journal(drill_run: Path) -> None:
    assert main(["export", str(drill_run), "--format", "ctk-journal"]) == 0
    journal = json.loads((drill_run / "ctk-journal.json").read_text())
    ensure_experiment_is_valid(journal["experiment"])
    assert set(initialize_run_journal({})) <= set(journal)
    # each trial is an activity run with the keys chaostoolkit-lib writes for one
    reference = run_experiment({
        "title": "t", "description": "d",
        "method": [{"type": "action", "name": "a", "provider": {
            "type": "python", "module": "os.path", "func": "exists",
            "arguments": {"path": "/"}}}],
    })  # fmt: skip
    keys = set(reference["run"][0])
    assert [set(r) for r in journal["run"]] == [keys, keys]
    assert journal["status"] == "completed"
    after = journal["steady_states"]["after"]
    comparison = pd.read_csv(drill_run / "comparison.csv")
    assert len(after["probes"]) == comparison["metric"].nunique()
    assert journal["deviated"] == (not all(p["tolerance_met"] for p in after["probes"]))
