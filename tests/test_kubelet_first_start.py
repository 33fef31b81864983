"""A new pod's first readiness probe, in both engines (SimPy and the fast form).

The kubelet starts a new pod's probe worker in its first sync, before the pull, but that
worker finds no container until the sync that sees it running; that sync finds no
readiness result and triggers a probe at once, and the worker's ticker restarts there
(k8s.io/kubernetes v1.37.2 ``pkg/kubelet/prober/prober_manager.go`` lines 344-370,
``worker.go`` lines 186-201). The sync comes at the process start with the on-demand
relist (1.36+), else at the node's next relist. A probe counts once initialDelaySeconds
have passed since the process start (``worker.go`` lines 330-333). So with no API latency,
an image pull of ``u`` seconds, an app that starts up in ``a`` seconds and a period ``p``,
the replacement is Ready ``u + ceil(a / p) * p`` after it was bound
(``max(a, initialDelaySeconds)`` in place of ``a`` with a delay): the grid runs from the
process start, not from the binding.
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
title: a new pod's first probe
profile: [{profile}]
cluster:
  nodes: {{master: 1, controller: 3, compute: 1}}
  app: {{kind: Deployment, replicas: 3, spread: controller}}
designs: [clusterip]
faults: [{{kind: {fault}, target: {target}}}]
params:
  kube_controller_manager.controller_reaction: 0s
  kube_proxy.sync_duration: 0s
  probe.period_seconds: {period}s
  probe.initial_delay_seconds: {delay}s
  pod.container_start_time: {start_up}s
  pod.image_pull_time: {pull}s
horizon: 30m
"""
TARGET = {"pod-delete": "app-pod", "node-crash": "app-pod-node"}


def _both(
    fault: str,
    period: float,
    start_up: float,
    *,
    pull: float = 0,
    profile: str = "k8s-1.37",
    delay: float = 0,
) -> list[pd.DataFrame]:
    """The cell's trials from the SimPy model and from the fast form."""
    text = EXP.format(
        profile=profile,
        fault=fault,
        target=TARGET[fault],
        period=period,
        delay=delay,
        start_up=start_up,
        pull=pull,
    )
    (cell,) = load_experiment(Path("first-start.yaml"), text).cells()
    fast, why = plan(cell)
    assert fast is not None, why
    return [run_chunk(Chunk(cell, 1, 0, TRIALS)), run_chunk(Chunk(cell, 2, 0, TRIALS, fast=fast))]


def _after_binding(df: pd.DataFrame) -> np.ndarray:
    return (df["at_replacement_ready"] - df["at_replacement_scheduled"]).to_numpy()


def test_a_replacement_is_probed_when_first_seen_then_every_period_from_then() -> None:
    """Pull 0.7 s, app up 0.5 s after the process start, period 2 s: the probe of the sync
    that sees the process (0.7 s) fails, the next, 2 s later, passes: 2.7 s after the
    binding in every trial (a grid from the binding would give 2 s), after a delete and
    after a node crash alike."""
    for fault in TARGET:
        for df in _both(fault, period=2, start_up=0.5, pull=0.7):
            assert np.allclose(_after_binding(df), 2.7), fault


def test_the_initial_delay_runs_from_the_process_start_not_from_the_app_listening() -> None:
    """App up 1.5 s after the start, initialDelaySeconds 2, period 1: the first probe that
    counts is at 2 s and passes (from the app's start-up it would be 3.5 s -> 4 s)."""
    for df in _both("pod-delete", period=1, start_up=1.5, delay=2):
        assert np.allclose(_after_binding(df), 2.0)


def test_without_the_on_demand_relist_the_new_container_is_seen_at_the_next_relist() -> None:
    """Before 1.36 the grid starts at the node's next 1 s relist r after the process start:
    Ready at r if the app (0.5 s) listens by then, else one 2 s period later, so never in
    (1, 2] s or past 2.5 s."""
    for df in _both("pod-delete", period=2, start_up=0.5, profile="k8s-1.35"):
        ready = _after_binding(df)
        seen_listening = (ready >= 0.5 - 1e-9) & (ready <= 1.0 + 1e-9)
        one_period_on = (ready > 2.0 + 1e-9) & (ready < 2.5 + 1e-9)
        assert np.all(seen_listening | one_period_on)


@settings(max_examples=8, deadline=None)
@given(
    period=st.integers(min_value=1, max_value=5),
    start_up=st.floats(min_value=0.05, max_value=9.0).map(lambda x: round(x, 2)),
    pull=st.floats(min_value=0.0, max_value=3.0).map(lambda x: round(x, 2)),
)
def test_ready_is_the_first_probe_of_the_grid_from_the_start_after_the_app_listens(
    period: int, start_up: float, pull: float
) -> None:
    expected = pull + math.ceil(start_up / period - 1e-9) * period
    for df in _both("pod-delete", period=period, start_up=start_up, pull=pull):
        assert np.allclose(_after_binding(df), expected, atol=1e-6)
