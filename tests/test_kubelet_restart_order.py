"""The order of a restarted container's status writes, in both engines (SimPy and fast).

The kubelet's status manager has one writer: syncBatch and syncPod share one goroutine,
which sends the latest cached status of a pod whose version is newer than the API's
(k8s.io/kubernetes v1.37.2 ``pkg/kubelet/status/status_manager.go`` Start, syncBatch,
updateStatusInternal). So a write follows the one in flight, and a change made before
the queued write is sent rides in it. After a kill:

- the sync that sees the death sets the death's status (Ready=false) before the runtime
  restarts the container (``pkg/kubelet/kubelet.go`` SyncPod: SetPodStatus at line 2135,
  containerRuntime.SyncPod at 2267): NotReady is written every time, however soon the
  new container runs;
- the sync that sees the new container queues the restart's status behind the death's;
- with a readiness probe the new container is not ready until a probe passes (the result
  is keyed by container ID; ``prober/prober_manager.go`` UpdatePodStatus, lines 344-362),
  and that Ready write lands no earlier than the restart's; without one, a running
  container is ready, so the restart's write carries Ready.

With an API write of ``R``, a runtime start of ``s``, the on-demand relist (1.36+: the new
container is seen at its start) and a probe period ``p``, the death seen at 0: NotReady
lands at ``R``, the restart's write is sent at ``max(s, R)`` and lands ``R`` later, and a
probe passing at ``r`` puts Ready at ``max(s, R) + R`` if ``r < max(s, R)`` (one write),
else at ``max(r, max(s, R) + R) + R``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaoslab.experiment import load_experiment
from chaoslab.fast import plan
from chaoslab.runner import Chunk, run_chunk

EXP = """
title: restart write order
profile: [{profile}]
cluster:
  nodes: {{master: 1, controller: 3, compute: 1}}
  app: {{kind: Deployment, replicas: 3, spread: controller}}
designs: [clusterip]
faults: [{{kind: pod-kill, target: app-pod}}]
params:
{params}
horizon: 10m
"""


def _both(profile: str, trials: int, **params: str) -> list[pd.DataFrame]:
    """The pod-kill cell's trials from the SimPy model and from the fast form."""
    lines = "\n".join(f"  {key}: {value}" for key, value in params.items())
    text = EXP.format(profile=profile, params=lines or "  {}")
    (cell,) = load_experiment(Path("restart-order.yaml"), text).cells()
    fast, why = plan(cell)
    assert fast is not None, why
    return [run_chunk(Chunk(cell, 1, 0, trials)), run_chunk(Chunk(cell, 2, 0, trials, fast=fast))]


def _at(df: pd.DataFrame, milestone: str) -> np.ndarray:
    return (df["at_" + milestone.replace(".", "_")] - df["at_container_died"]).to_numpy()


@pytest.mark.parametrize("profile", ["k8s-1.35", "k8s-1.37"])
def test_the_writes_land_in_order_death_restart_ready(profile: str) -> None:
    """Default timings, drawn: in every trial NotReady lands before the restart's write
    and Ready no earlier than it (before the fix ~25 % of 1.35 trials had Ready first)."""
    for df in _both(profile, 300):
        not_ready, restarted = _at(df, "pod.not_ready"), _at(df, "container.restarted")
        ready = _at(df, "pod.ready")
        assert not np.isnan(not_ready).any() and not np.isnan(ready).any()
        assert (not_ready < restarted).all()
        assert (ready >= restarted).all()


CLOSED = {
    "kube_controller_manager.controller_reaction": "1s",
    "kubelet.container_runtime_start": "0.2s",
    "kube_proxy.sync_duration": "0s",
    "probe.period_seconds": "1s",
}


@pytest.mark.parametrize(
    ("start_up", "ready"),
    [
        (0.0, 2.0),  # probe passes at 0.2, before the restart's write is sent at 1: one write
        (1.0, 3.0),  # passes at 1.2, while the restart's write is in flight: next write
        (2.0, 3.2),  # passes at 2.2, the writer idle: its own write
    ],
)
def test_ready_rides_in_or_queues_behind_the_restart_write(start_up: float, ready: float) -> None:
    """R = 1 s, runtime start 0.2 s, probe period 1 s from the restart at 0.2 s."""
    params = {**CLOSED, "pod.container_start_time": f"{start_up}s"}
    for df in _both("k8s-1.37", 20, **params):
        assert np.allclose(_at(df, "pod.not_ready"), 1.0)
        assert np.allclose(_at(df, "container.restarted"), 2.0)
        assert np.allclose(_at(df, "pod.ready"), ready)


@pytest.mark.parametrize("probe", [True, False])
def test_not_ready_is_written_even_when_the_app_listens_first(probe: bool) -> None:
    """The app listens 0.2 s after the death, the NotReady write lands at 1 s: the pod goes
    NotReady in every trial all the same, with or without a probe. Without one, Ready is
    in the restart's write (2 s), though no probe asked the app."""
    params = {**CLOSED, "pod.container_start_time": "0s", "pod.readiness_probe": str(probe)}
    for df in _both("k8s-1.37", 20, **params):
        assert np.allclose(_at(df, "container.serving"), 0.2)
        assert np.allclose(_at(df, "pod.not_ready"), 1.0)
        assert np.allclose(_at(df, "pod.ready"), 2.0)


def test_without_a_probe_ready_is_the_restart_write_at_drawn_timings() -> None:
    """Default drawn timings at 1.35, no probe: NotReady in every trial, and Ready is the
    restart's own write, whenever the app listens."""
    for df in _both("k8s-1.35", 200, **{"pod.readiness_probe": "false"}):
        assert not np.isnan(_at(df, "pod.not_ready")).any()
        assert np.allclose(_at(df, "pod.ready"), _at(df, "container.restarted"))


@pytest.mark.parametrize(("lag", "added"), [(0.2, 1.08), (0.01, 0.08)])
def test_the_add_waits_until_the_controller_has_seen_its_removal(lag: float, added: float) -> None:
    """No probe, R = 10 ms, the process up 50 ms after the death: NotReady at 0.01 s, its
    slice sync (two hops from 1.35, no batching) removes the pod at 0.03 s, Ready rides in
    the restart's write at 0.06 s, and the add's sync at 0.08 s is refused while the
    controller's informer has not seen the removal (at 0.03 s + lag), then retried after
    the queue's 1 s back-off (k8s.io/kubernetes v1.37.2
    ``pkg/controller/endpointslice/endpointslice_controller.go`` line 433, StaleSlices)."""
    params = {
        "kube_controller_manager.controller_reaction": "0.01s",
        "kube_controller_manager.endpointslice_updates_batch_period": "0s",
        "kube_controller_manager.endpointslice_informer_lag": f"{lag}s",
        "kube_controller_manager.endpointslice_sync_backoff": "1s",
        "kubelet.container_runtime_start": "0.05s",
        "pod.readiness_probe": "false",
    }
    for df in _both("k8s-1.37", 20, **params):
        assert np.allclose(_at(df, "pod.ready"), 0.06)
        assert np.allclose(_at(df, "endpoints.removed"), 0.03)
        assert np.allclose(_at(df, "endpoints.added"), added)
