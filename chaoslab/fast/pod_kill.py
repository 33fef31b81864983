"""Closed form of a pod kill (one SIGKILL, restarted in place) behind kube-proxy
(`chaoslab.mechanisms.kubelet`, ``endpoints``)::

    PLEG relist tick: container.died -> + API write (one controller hop): pod.not_ready,
      always (the death's status is set before the runtime restarts the container)
    restart at once -> + runtime start: the process runs -> + the app's start-up:
      container.serving
    the process is seen running at once (on-demand relist, 1.36+; else the next relist):
      + API write after the death's lands: container.restarted; the readiness probe runs
      then and every period from then
    pod.not_ready -> + slice sync: endpoints.removed (unless the pod is Ready again by then:
      the queued sync then publishes nothing)
    pod.ready: without a probe, in the restart's write; with one, the first probe of that
      grid at or after serving, in the restart's write if it comes before that write is
      sent, else + API write after the restart's lands -> + slice sync: endpoints.added
      (refused while the controller's informer has not seen the removal, then retried
      after the queue's back-off)
    each kube-proxy (`chaoslab.fast.common.kube_proxy_syncs`, its sync runner): an add
      that arrives while the removal's sync waits is read by that same sync; one that
      arrives while it runs is asked for when it ends.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from chaoslab.fast.common import (
    Draws,
    probed_ready,
    proxy_syncs,
    seen_running,
    set_proxies,
    slice_delay,
    synced_at,
)

__all__ = ["chain", "proxies", "table"]

_REACT = "kube_controller_manager.controller_reaction"
_BATCH = "kube_controller_manager.endpointslice_updates_batch_period"
_LAG = "kube_controller_manager.endpointslice_informer_lag"
_BACKOFF = "kube_controller_manager.endpointslice_sync_backoff"
_BACKOFF_MAX = "kube_controller_manager.endpointslice_max_sync_backoff"
_NAN = np.nan


def chain(d: Draws) -> dict[str, np.ndarray]:
    """The pod's and the EndpointSlice's milestones (NaN where a step does not happen)."""
    pleg = d("kubelet.pleg_relist_period")
    t_died = d.phase(pleg)  # next PLEG tick after t = 0
    t_start = t_died + d("kubelet.container_runtime_start")  # the process runs again
    t_run = t_start + d("pod.container_start_time")  # the app listens
    # the death's status (Ready=false) is set before the runtime restarts the container,
    # and the writer is idle: NotReady is always written
    t_nr = t_died + d(_REACT)
    batch = d(_BATCH)  # drawn once: the controller keeps its batch period
    t_s1 = t_nr + slice_delay(d, batch)
    seen = seen_running(d, t_start, t_died, pleg)  # the sync that sees the new container
    sent = np.maximum(seen, t_nr)  # one writer: the restart's status goes after the death's
    t_restarted = sent + d(_REACT)
    t_ready = _ready_written(d, t_start, t_run, seen, sent, t_restarted)
    removed = t_s1 < t_ready
    t_s2 = _after_informer(d, t_s1, t_ready + slice_delay(d, batch))
    return {
        "container.died": t_died,
        "container.restarted": t_restarted,
        "container.serving": t_run,
        "pod.not_ready": t_nr,
        "pod.ready": t_ready,
        "endpoints.removed": np.where(removed, t_s1, _NAN),
        "endpoints.added": np.where(removed, t_s2, _NAN),
    }


def _after_informer(d: Draws, t_s1: np.ndarray, t_s2: np.ndarray) -> np.ndarray:
    """The add's slice sync, refused while the controller's informer has not seen the
    removal's write (`chaoslab.mechanisms.endpoints.EndpointSliceController._attempt`) and
    retried after the queue's back-off, base x 2^refusals, capped: the first attempt at or
    after the informer has seen it."""
    seen = t_s1 + d(_LAG)
    base, cap = d(_BACKOFF), d(_BACKOFF_MAX)
    out = np.array(t_s2, dtype=float)
    for failures in range(64):
        stale = out < seen
        if not stale.any():
            break
        out = np.where(stale, out + np.minimum(base * 2.0**failures, cap), out)
    return out


def _ready_written(
    d: Draws,
    t_start: np.ndarray,
    t_run: np.ndarray,
    seen: np.ndarray,
    sent: np.ndarray,
    t_restarted: np.ndarray,
) -> np.ndarray:
    """When the Ready=true write lands. The status manager's one writer sends the latest
    status: without a probe the restart's own write carries Ready (a running container
    with no probe worker is ready); with one, a result that comes before the restart's
    write is sent rides in it, else it goes in the next write, after that one lands."""
    if not d.flag("pod.readiness_probe"):
        return t_restarted
    ready_at = probed_ready(d, t_start, t_run, seen)  # probed when seen, every period on
    later = np.maximum(ready_at, t_restarted) + d(_REACT)
    return np.where(ready_at < sent, t_restarted, later)


def proxies(
    d: Draws, t_s1: np.ndarray, t_s2: np.ndarray, count: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per kube-proxy the interval with the removal programmed ([on, off), inf if never),
    and the proxy.synced milestone: the first sync end after which every proxy has the
    slice's current version. A proxy whose first sync already read the add never
    programs the removal."""
    pub = np.stack([t_s1, t_s2], axis=1)
    pub = np.where(np.isnan(pub), np.inf, pub)  # not removed: nothing published
    syncs = proxy_syncs(d, pub, count)
    (end_a, version_a), (end_b, _) = syncs
    removal = version_a == 1
    on = list(np.where(removal, end_a, np.inf))
    off = list(np.where(removal, end_b, np.inf))
    synced = np.where(np.isnan(t_s1), _NAN, synced_at(syncs, pub))
    return on, off, synced


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
