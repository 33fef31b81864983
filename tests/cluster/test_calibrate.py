"""``live.calibrate: [controller_reaction]`` on the real control plane: one pod-delete trial
whose prediction runs with the round trips (annotation PATCH on a node -> its watch event)
measured on the suite's kube-apiserver, as the ServiceAccount of ``deploy/rbac.yaml``.

Network safety: as in test_drills.py (the API server on loopback, the prober in the data
plane's client namespace); the session is taken down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import chaoslab.live.k8s.calibrate as calib
from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.target import LocalSession
from chaoslab.live.journal import pending_undo
from chaoslab.live.k8s.calibrate import ANNOTATION
from chaoslab.live.k8s.drill import plan_drill, recover, run_drill
from chaoslab.params.dists import Empirical, parse_value

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
KEY = "kube_controller_manager.controller_reaction"


@pytest.fixture(scope="module")
def calibrated(local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """cluster-pod-delete.yaml with one drill trial, a smaller prediction and
    ``calibrate: [controller_reaction]``."""
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("the data plane needs root and iptables (network namespaces)")
    text = (ROOT / "experiments" / "cluster-pod-delete.yaml").read_text()
    text = re.sub(r"(?m)^  trials: \d+", "  trials: 1", text)
    text = re.sub(r"(?m)^trials: \d+", "trials: 300", text)
    text = text.replace("\nlive:\n", "\nlive:\n  calibrate: [controller_reaction]\n")
    path = tmp_path_factory.mktemp("calibrate") / "cluster-pod-delete.yaml"
    path.write_text(text)
    yield path


@pytest.fixture(scope="module")
def session(calibrated: Path, local_cluster: Any) -> Iterator[Any]:
    exp = load_experiment(calibrated)
    s = LocalSession.open(exp, exp.live_spec(0), cluster=local_cluster)
    try:
        yield s
    finally:
        s.close()


def test_drill_predicts_with_the_measured_reaction(
    calibrated: Path, session: Any, local_cluster: Any, tmp_path: Path
) -> None:
    lines: list[str] = []
    out = tmp_path / "results"
    plans = plan_drill(calibrated, session=session, log=lines.append, out=out)
    res = run_drill(plans, out=out, log=lines.append)
    assert res.status == "complete", res.reason
    cal = pd.read_csv(res.path / "calibration.csv")
    assert len(cal) == 30 and (cal["name"] == "controller_reaction").all()
    # one PATCH and one watch event on loopback: positive, far below a second
    assert (cal["seconds"] > 0).all() and (cal["seconds"] < 1).all()
    meta = json.loads((res.path / "meta.json").read_text())
    measured = parse_value(meta["overrides"][KEY])
    assert isinstance(measured, Empirical)
    assert measured.values == pytest.approx(tuple(cal["seconds"]), abs=1e-6)
    assert meta["calibration"]["controller_reaction"]["samples"] == 30
    assert any("calibrating controller_reaction: 30 round trips" in ln for ln in lines)
    print(next(ln for ln in lines if "median" in ln))  # the numbers docs/ quotes
    _check_annotation_gone(local_cluster)
    assert list(out.glob("*/*-calibrate-*")) == []  # its journal went with the annotation


def test_recover_puts_back_the_annotation_of_a_killed_calibration(
    calibrated: Path,
    session: Any,
    local_cluster: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no put-back at the end: what a kill -9 after the last PATCH leaves (the annotation
    # on the node, the journaled step pending); --recover undoes it as the drill's identity
    monkeypatch.setattr(calib, "_put_back", lambda *args: None)
    out = tmp_path / "results"
    plan_drill(calibrated, session=session, log=lambda _: None, out=out)
    (folder,) = out.glob("*/*-calibrate-*")
    assert len(pending_undo(folder / "journal.jsonl")) == 1
    assert _annotated(local_cluster)
    assert recover(folder, log=lambda _: None)
    _check_annotation_gone(local_cluster)


def _annotated(local_cluster: Any) -> list[str]:
    """Nodes that carry the calibration annotation (read as the cluster's admin)."""
    from kubernetes import client

    core = client.CoreV1Api(local_cluster.admin_client())
    return [
        node.metadata.name
        for node in core.list_node().items
        if ANNOTATION in (node.metadata.annotations or {})
    ]


def _check_annotation_gone(local_cluster: Any) -> None:
    assert _annotated(local_cluster) == []
