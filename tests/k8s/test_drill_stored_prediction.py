"""A Kubernetes drill's stored prediction compared again later gives the drill's own
comparison: ``prediction.parquet`` keeps the model's a(t) (``a_t``/``a_v``), so
`chaoslab.compare.compare` puts the drill's prober on it as the drill did."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from chaoslab.cli import main
from chaoslab.compare import compare, stored_prediction
from chaoslab.results import load_run

from .conftest import Env

#: what the drill's prober changes: the probe milestones and the probed metrics
_PROBED = ["at_probe_first_failed", "at_probe_last_failed", "recovery_s", "downtime_s"]
_BAND = ["predicted_p5", "predicted_p50", "predicted_p95"]


def _node_crash_drill(env: Env, seed: int) -> Path:
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "hook",
            "hook": {
                "inject": env.control_hook("crash"),
                "recover": env.control_hook("poweron"),
                "timeout": "5s",
            },
        }
    )
    doc = yaml.safe_load(exp.read_text())
    exp.write_text(yaml.safe_dump({**doc, "seed": seed}, sort_keys=False))
    assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results")]) == 0
    return env.only_run()


@pytest.mark.parametrize("seed", [0, 7])
def test_stored_prediction_compares_like_the_drill(make_env, seed: int) -> None:
    """A node crash by hook, seeds 0 and 7 (the drill probes the model with the
    experiment's seed). ``compare`` of the run's stored prediction against its trials (what
    ``chaoslab drill``'s compare gate and ``chaoslab compare`` read) has the probe.* rows
    and the probed recovery with the same predicted p5/p50/p95 as comparison.csv."""
    run_dir = _node_crash_drill(make_env(), seed)
    stored = pd.read_parquet(run_dir / "prediction.parquet")
    assert {"a_t", "a_v"} <= set(stored.columns)
    run = load_run(run_dir)
    pred = stored_prediction(run)
    assert pred is not None
    cells = compare(pred, run).cells.set_index("metric")
    drill = pd.read_csv(run_dir / "comparison.csv").set_index("metric")
    for metric in _PROBED:
        again = cells.loc[metric, _BAND].astype(float).to_numpy()
        first = drill.loc[metric, _BAND].astype(float).to_numpy()
        assert again.tolist() == pytest.approx(first.tolist()), metric


def test_compare_cli_of_a_live_run_alone_gives_its_comparison(make_env) -> None:
    """``chaoslab compare RUN`` (and ``RUN/prediction.parquet RUN``, and ``RUN RUN``)
    compares the drill's stored prediction with its trials: cells.csv has comparison.csv's
    predicted p5/p50/p95 for the probe milestones and the probed recovery and downtime
    (``RUN RUN`` compared the measured trials with themselves, and ``prediction.parquet``
    was refused for want of a meta.json)."""
    env = make_env()
    run_dir = _node_crash_drill(env, 7)
    drill = pd.read_csv(run_dir / "comparison.csv").set_index("metric")
    forms = {
        "alone": [str(run_dir)],
        "parquet": [str(run_dir / "prediction.parquet"), str(run_dir)],
        "twice": [str(run_dir), str(run_dir)],
    }
    for form, args in forms.items():
        out = env.tmp / f"compare-{form}"
        assert main(["compare", *args, "--out", str(out)]) == 0, form
        cells = pd.read_csv(out / "cells.csv").set_index("metric")
        for metric in _PROBED:
            again = cells.loc[metric, _BAND].astype(float).tolist()
            assert again == drill.loc[metric, _BAND].astype(float).tolist(), (form, metric)


def test_compare_cli_of_a_folder_without_a_prediction_is_one_line(tmp_path: Path, capsys) -> None:
    """One argument that is no live run with a stored prediction: one line, exit 2."""
    from chaoslab.results import RunWriter

    RunWriter(tmp_path / "sim", meta={"seed": 0}).release()
    assert main(["compare", str(tmp_path / "sim")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a live run with a stored prediction" in err[0], err
