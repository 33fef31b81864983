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

from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.target import LocalSession
from chaoslab.live.k8s.calibrate import ANNOTATION
from chaoslab.live.k8s.drill import plan_drill, run_drill
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
    plans = plan_drill(calibrated, session=session, log=lines.append)
    res = run_drill(plans, out=tmp_path / "results", log=lines.append)
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


def _check_annotation_gone(local_cluster: Any) -> None:
    from kubernetes import client

    core = client.CoreV1Api(local_cluster.admin_client())
    for node in core.list_node().items:
        assert ANNOTATION not in (node.metadata.annotations or {}), node.metadata.name
