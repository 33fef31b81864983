"""Opt-in: the same drill against a real cluster.

Runs only with ``-m live`` *and* both ``KUBECONFIG`` and ``CHAOSLAB_LIVE_EXPERIMENT`` (an
experiment file with a ``live:`` section, e.g. experiments/live-kind-node-crash.yaml edited
for your cluster) set, because it injects a real fault::

    KUBECONFIG=~/.kube/config CHAOSLAB_LIVE_EXPERIMENT=experiments/live-pod-delete.yaml \\
        pytest -m live tests/k8s/test_live_cluster.py

Nothing here has been run against a real cluster yet (see docs/live-kubernetes.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from chaoslab.cli import main
from chaoslab.results import load_run

pytestmark = pytest.mark.live


def _experiment() -> str:
    exp = os.environ.get("CHAOSLAB_LIVE_EXPERIMENT")
    if not os.environ.get("KUBECONFIG") or not exp:
        pytest.skip("set KUBECONFIG and CHAOSLAB_LIVE_EXPERIMENT to drill a real cluster")
    return exp


def test_plan_against_real_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = _experiment()
    assert main(["drill", exp, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "prediction" in out and "server" in out


def test_drill_against_real_cluster(tmp_path: Path) -> None:
    exp = _experiment()
    assert main(["drill", exp, "--yes", "--out", str(tmp_path)]) == 0
    runs = sorted(tmp_path.glob("*/*-live-*"))
    assert len(runs) == 1
    run = load_run(runs[0])
    assert run.meta["mode"] == "live" and run.meta["target"] == "kubernetes" and run.complete
    assert (runs[0] / "comparison.csv").exists()
    assert not pd.read_parquet(runs[0] / "milestones.parquet").empty
    journal = [json.loads(x) for x in (runs[0] / "journal.jsonl").read_text().splitlines()]
    assert journal[-1]["event"] == "run.end" and journal[-1]["pending_undo"] == []
