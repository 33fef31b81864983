"""Closed form of a pod kill (one SIGKILL, restarted in place) behind kube-proxy
(`chaoslab.mechanisms.kubelet`, ``endpoints``)::

    PLEG relist tick: container.died -> restart at once -> + container start: running
      (pod.not_ready only if the API write, one controller hop, lands before that)
    pod.not_ready -> + slice sync: endpoints.removed (unless the pod is Ready again by then:
      the queued sync then publishes nothing, and the Ready write was deduplicated)
    running -> first readiness probe -> + API write: pod.ready -> + slice sync: endpoints.added
    each kube-proxy (BoundedFrequencyRunner): a removal sync at max(removal, last start +
      min sync); an add that arrives while it waits is read by that same sync; one that
      arrives while it runs starts the next sync when it ends.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from chaoslab.fast.common import Draws, next_tick, set_proxies

__all__ = ["chain", "proxies", "table"]

_REACT = "kube_controller_manager.controller_reaction"
_BATCH = "kube_controller_manager.endpointslice_updates_batch_period"
_NAN = np.nan


def chain(d: Draws) -> dict[str, np.ndarray]:
    """The pod's and the EndpointSlice's milestones (NaN where a step does not happen)."""
    period = d("probe.period_seconds")
    probe_phase = d.phase(period)  # the pod's probe worker, from before the fault
    t_died = d.phase(d("kubelet.pleg_relist_period"))  # next PLEG tick after t = 0
    t_run = t_died + d("pod.container_start_time")
    t_nr = t_died + d(_REACT)
    not_ready = t_nr < t_run  # else the container runs again before NotReady is written
    t_s1 = t_nr + d(_BATCH) + d(_REACT)
    if d.flag("pod.readiness_probe"):
        first = next_tick(probe_phase, period, t_run + d("probe.initial_delay_seconds"))
        ready_at = first + (d.count("probe.success_threshold") - 1) * period
    else:
        ready_at = t_run
    t_ready = ready_at + d(_REACT)
    removed = not_ready & (t_s1 < t_ready)
    t_s2 = t_ready + d(_BATCH) + d(_REACT)
    return {
        "container.died": t_died,
        "container.restarted": t_run,
        "pod.not_ready": np.where(not_ready, t_nr, _NAN),
        "pod.ready": np.where(not_ready, t_ready, _NAN),
        "endpoints.removed": np.where(removed, t_s1, _NAN),
        "endpoints.added": np.where(removed, t_s2, _NAN),
    }


def proxies(
    d: Draws, t_s1: np.ndarray, t_s2: np.ndarray, count: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per kube-proxy the interval with the removal programmed ([on, off), inf if never),
    and the proxy.synced milestone: the first sync end after which every proxy has the
    slice's current version."""
    on: list[np.ndarray] = []
    off: list[np.ndarray] = []
    ends: list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = []
    for _ in range(count):
        last = -d.phase(d("kube_proxy.iptables_sync_period"))
        min_sync = d("kube_proxy.iptables_min_sync_period")
        start_a = np.maximum(t_s1, last + min_sync)
        reads_add = t_s2 <= start_a  # the add arrived while this sync waited: one sync
        fin_a = start_a + d("kube_proxy.sync_duration")
        start_b = np.maximum(np.maximum(fin_a, t_s2), start_a + min_sync)
        fin_b = np.where(reads_add, np.inf, start_b + d("kube_proxy.sync_duration"))
        on.append(np.where(reads_add | np.isnan(t_s1), np.inf, fin_a))
        off.append(np.where(np.isnan(t_s1), np.inf, fin_b))
        # versions installed: 1 = the removal, 2 = the add
        ends.append((fin_a, [(fin_a, np.where(reads_add, 2, 1)), (fin_b, np.full(d.size, 2))]))
    candidates = np.stack([t for _, steps in ends for t, _ in steps], axis=1)
    ok = np.ones(candidates.shape, dtype=bool)
    current = np.where(t_s2[:, None] <= candidates, 2, 1)
    for _, steps in ends:
        synced = np.zeros(candidates.shape, dtype=np.int64)
        for t, version in steps:
            synced = np.where(t[:, None] <= candidates, version[:, None], synced)
        ok &= synced == current
    first = np.min(np.where(ok & np.isfinite(candidates), candidates, np.inf), axis=1)
    synced_at = np.where(np.isfinite(first) & ~np.isnan(t_s1), first, _NAN)
    return on, off, synced_at


def table(topo: Any, pod: Any, proxies: list[Any]) -> dict[tuple[bool, ...], float]:
    """The design's a(t) for each (kube-proxy j has the removal programmed..., the pod's
    container runs again) combination, on a probe trial just after the kill."""
    svc = topo.cluster.service
    removed = tuple(p for p in svc.ready if p is not pod)
    terminating = tuple(p for p in svc.serving_terminating if p is not pod)
    before = [(px.programmed, px.local, px.local_terminating) for px in proxies]
    out: dict[tuple[bool, ...], float] = {}
    for state in product((False, True), repeat=len(proxies) + 1):
        set_proxies(proxies, state, before, removed, terminating)
        pod.running = state[-1]
        out[state] = topo.availability()
    pod.running = False
    return out
