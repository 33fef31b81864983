"""Closed form of a graceful pod delete behind kube-proxy (`chaoslab.mechanisms.k8s`,
``kubelet``, ``endpoints``, ``workload``)::

    delete at t = 0: pod.deleted
      -> slice sync: endpoints.removed (the pod leaves the ready endpoints at once)
      -> ReplicaSet: replacement created, scheduled, started, readiness probed from the
         sync that sees it running (`chaoslab.fast.common.new_pod_ready`) -> pod.ready
         -> slice sync: endpoints.added
      -> kubelet sees it: preStop -> pod.sigterm -> stops accepting -> exits -> pod.gone
         -> slice sync (the terminating endpoint goes)
    each kube-proxy syncs the three slice versions through its BoundedFrequencyRunner; until
    its first sync the dead pod keeps 1/k of its new connections once it stopped accepting.

The three slice updates are taken as three syncs of the EndpointSlice controller, in
whatever order they come: with the on-demand relist (1.36+) the replacement's first probe
runs at its process start, before its app listens, and its Ready write comes a probe
period later, long after the old pod's exit; before 1.36 an app up by the next relist is
Ready then (13 % of the 1.32 trials before the old pod is gone). The replacement's endpoint
is not in the table: it reaches a kube-proxy before the removal in 0.07 % of the 1.32
nodeport-direct trials. Without a readiness probe not covered: the replacement is Ready
once the kubelet sees its process, before its app listens (its endpoint refuses
connections meanwhile, a state the table lacks), and its Ready and the old pod's exit race
for one slice sync.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from chaoslab.fast.common import (
    Draws,
    new_pod_ready,
    proxy_syncs,
    set_proxies,
    slice_delay,
    synced_at,
)

__all__ = ["chain", "proxies", "table"]

_REACT = "kube_controller_manager.controller_reaction"
_BATCH = "kube_controller_manager.endpointslice_updates_batch_period"


def chain(d: Draws) -> dict[str, np.ndarray]:
    """Milestones of the delete, the replacement and the endpoint updates."""
    batch = d(_BATCH)  # drawn once: the controller keeps its batch period
    t_rm = slice_delay(d, batch)
    t_created = d(_REACT)
    t_sched = t_created + d("kube_scheduler.scheduling_latency")
    t_ready = new_pod_ready(d, t_sched) + d(_REACT)
    grace = d("pod.termination_grace_period_seconds")
    prestop = np.minimum(d("pod.prestop_sleep"), grace + d("kubelet.prestop_grace_extension"))
    t_sigterm = d(_REACT) + prestop
    remaining = np.maximum(grace - prestop, 0.0)
    stop = np.minimum(d("app.stop_accepting_after_sigterm"), remaining)
    exit_ = np.minimum(np.maximum(d("app.exit_after_sigterm"), stop), remaining)
    t_gone = t_sigterm + exit_ + d(_REACT)
    return {
        "pod.deleted": np.zeros(d.size),
        "endpoints.removed": t_rm,
        "replacement.created": t_created,
        "replacement.scheduled": t_sched,
        "replacement.ready": t_ready,
        "pod.ready": t_ready,
        "endpoints.added": t_ready + slice_delay(d, batch),
        "pod.sigterm": t_sigterm,
        "pod.gone": t_gone,
        "stopped": t_sigterm + stop,  # not a milestone: the pod stops accepting
        "terminating.removed": t_gone + slice_delay(d, batch),  # not a milestone either
    }


def proxies(
    d: Draws, publishes: list[np.ndarray], count: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each kube-proxy's first sync end (every slice version lacks the deleted pod) and the
    proxy.synced milestone, for slice versions published at ``publishes`` (any order),
    through each proxy's runner (`chaoslab.fast.common.kube_proxy_syncs`)."""
    pub = np.sort(np.stack(publishes, axis=1), axis=1)
    syncs = proxy_syncs(d, pub, count)
    return list(syncs[0][0]), synced_at(syncs, pub)


def table(topo: Any, pod: Any, proxies: list[Any]) -> dict[tuple[bool, ...], float]:
    """The design's a(t) for each (kube-proxy j no longer sends to the deleted pod..., the
    pod still accepts) combination, on a probe trial just after the delete."""
    svc = topo.cluster.service
    removed = tuple(p for p in svc.ready if p is not pod)
    before = [(px.programmed, px.local, px.local_terminating) for px in proxies]
    out: dict[tuple[bool, ...], float] = {}
    for state in product((False, True), repeat=len(proxies) + 1):
        set_proxies(proxies, state, before, removed, ())
        pod.running = state[-1]
        out[state] = topo.availability()
    return out
