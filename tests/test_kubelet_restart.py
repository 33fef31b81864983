"""A container killed and restarted in place, in both engines (SimPy and the fast form).

The kubelet restarts the container in the sync that saw its death (a PLEG relist); that
sync relists the pod at once (1.36+, on-demand relist), and the sync that sees the new
container running reports restartCount (``container.restarted``) and runs the readiness
probe at once, then every period from then. So with no API latency, an app that starts
up in ``a`` seconds and a probe period ``p``, Ready comes ``ceil(a / p) * p`` after the
death was seen: the first probe of the grid started at the restart that finds the app
listening (``container.serving``, ``a`` after the restart).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.experiment import load_experiment
from chaoslab.fast import plan
from chaoslab.runner import Chunk, run_chunk

TRIALS = 20
EXP = """
title: restart in place
profile: [{profile}]
cluster:
  nodes: {{master: 1, controller: 3, compute: 1}}
  app: {{kind: Deployment, replicas: 3, spread: controller}}
designs: [clusterip]
faults: [{{kind: pod-kill, target: app-pod}}]
params:
  kube_controller_manager.controller_reaction: 0s
  kube_proxy.sync_duration: 0s
  probe.period_seconds: {period}s
  pod.container_start_time: {start_up}s
horizon: 10m
"""


def _both(profile: str, period: float, start_up: float) -> list[pd.DataFrame]:
    """The pod-kill cell's trials from the SimPy model and from the fast form."""
    text = EXP.format(profile=profile, period=period, start_up=start_up)
    (cell,) = load_experiment(Path("restart.yaml"), text).cells()
    fast, _ = plan(cell)
    assert fast is not None
    return [run_chunk(Chunk(cell, 1, 0, TRIALS)), run_chunk(Chunk(cell, 2, 0, TRIALS, fast=fast))]


def _after_death(df: pd.DataFrame, milestone: str) -> np.ndarray:
    column = "at_" + milestone.replace(".", "_")
    return (df[column] - df["at_container_died"]).to_numpy()


def test_a_restart_is_probed_at_once_then_every_period_from_then() -> None:
    """App up 0.5 s after the restart, probe period 2 s: the probe at the restart fails,
    the next, 2 s later, passes. The periodic grid from before the kill plays no part."""
    for df in _both("k8s-1.37", period=2, start_up=0.5):
        assert np.allclose(_after_death(df, "container.restarted"), 0.0)
        assert np.allclose(_after_death(df, "container.serving"), 0.5)
        assert np.allclose(_after_death(df, "pod.ready"), 2.0)


def test_without_the_on_demand_relist_the_restart_is_seen_one_relist_later() -> None:
    """Before 1.36 the new container is seen at the next periodic relist (1 s): its app
    listens by then, so that first probe passes."""
    for df in _both("k8s-1.35", period=2, start_up=0.5):
        assert np.allclose(_after_death(df, "container.restarted"), 1.0)
        assert np.allclose(_after_death(df, "pod.ready"), 1.0)


@settings(max_examples=8, deadline=None)
@given(
    period=st.integers(min_value=1, max_value=5),
    start_up=st.floats(min_value=0.05, max_value=9.0).map(lambda x: round(x, 2)),
)
def test_ready_is_the_first_probe_of_the_restart_grid_after_the_app_listens(
    period: int, start_up: float
) -> None:
    expected = math.ceil(start_up / period - 1e-9) * period
    for df in _both("k8s-1.37", period=period, start_up=start_up):
        assert np.allclose(_after_death(df, "pod.ready"), expected, atol=1e-6)
