"""Closed form of a node crash without repair (`chaoslab.mechanisms.node`, ``k8s``,
``endpoints``, ``workload``, ``kubelet``, ``lbcheck``)::

    last heartbeat -> probeTimestamp (next monitor pass) -> + grace: node.not_ready
      -> + API write: pods.not_ready -> + slice sync: endpoints.removed
      -> each live kube-proxy: at once (burst-2) or max(removal, last sync + min sync)
         (completion-to-start), + sync: programmed
    node.not_ready -> rate-limited queue tick: node.tainted -> + toleration: pod.evicted
      (>= 1.34, same pass: a token within node_informer_lag of the Unknown write is spent
      for nothing; the next pass re-queues, the taint waits for the next token)
      (<= 1.12: probeTimestamp + pod_eviction_timeout -> queue tick: pod.evicted)
      -> replacement created, scheduled, started, readiness probed from the sync that sees
         it running (`chaoslab.fast.common.new_pod_ready`): replacement.ready
      -> endpoints.added
    LB check of the dead target: U(0, interval) + (fall - 1) x gap + timeout: lb.marked_down

Only with a readiness probe: without one the replacement is Ready when the kubelet sees
its process, before its app listens, and its endpoint refuses connections until then; the
table has no such state, so `chaoslab.fast.plan` hands those cells to SimPy with a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chaoslab.fast.common import (
    _EPS,
    Draws,
    new_pod_ready,
    next_tick,
    set_proxies,
    slice_delay,
)

__all__ = ["chain", "lb_marked_down", "proxy_syncs", "table"]

_REACT = "kube_controller_manager.controller_reaction"
_BATCH = "kube_controller_manager.endpointslice_updates_batch_period"


def chain(d: Draws) -> dict[str, np.ndarray]:
    """Milestone times of a node crash at t = 0, one value per trial."""
    if d.flag("kubelet.node_lease"):
        hb = d("kubelet.node_lease_duration_seconds") * d(
            "kubelet.node_lease_renew_interval_fraction"
        )
    else:
        hb = d("kubelet.node_status_update_frequency")
    # JitterUntil's intervals, period x U(1, 1 + factor): the SimPy grid runs at their
    # mean (`KubernetesCluster`), and so does this one
    hb = hb * (1.0 + d("kubelet.heartbeat_jitter_factor") / 2)
    last_hb = d.phase(hb) - hb  # last_tick(phase, hb, 0)
    period = d("kube_controller_manager.node_monitor_period")
    phase = d.phase(period)
    probe = next_tick(phase, period, last_hb)
    t_nr = next_tick(phase, period, probe + d("kube_controller_manager.node_monitor_grace_period"))
    t_pnr = t_nr + d(_REACT)
    batch = d(_BATCH)  # drawn once: the controller keeps its batch period
    t_rm = t_pnr + slice_delay(d, batch)
    q_period = d("kube_controller_manager.node_eviction_period")
    q_phase = d.phase(q_period)
    out = {"node.not_ready": t_nr, "pods.not_ready": t_pnr, "endpoints.removed": t_rm}
    if d.flag("kube_controller_manager.taint_based_evictions"):
        # <= 1.33: queued in the monitor pass after the one that wrote Unknown
        next_pass = d.choice("kube_controller_manager.taint_pass") == "next-pass"
        t_taint = next_tick(q_phase, q_period, t_nr + (period if next_pass else 0.0))
        if not next_pass:
            t_taint = _informer_race(d, t_taint, t_nr, (phase, period), (q_phase, q_period))
        out["node.tainted"] = t_taint
        t_ev = (
            t_taint
            + d("kube_controller_manager.taint_manager_delay")
            + d("kube_apiserver.default_unreachable_toleration_seconds")
        )
    else:
        due = next_tick(phase, period, probe + d("kube_controller_manager.pod_eviction_timeout"))
        if d.choice("kube_controller_manager.taint_pass") == "next-pass":
            due = np.maximum(due, t_nr + period)
        t_ev = next_tick(q_phase, q_period, due)
    out["pod.evicted"] = t_ev
    out.update(_replacement(d, t_ev, batch))
    return out


def _informer_race(
    d: Draws,
    t_taint: np.ndarray,
    t_nr: np.ndarray,
    monitor: tuple[np.ndarray, np.ndarray],
    queue: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Same-pass tainting (>= 1.34): a token granted within node_informer_lag of the Unknown
    write is spent for nothing; the next monitor pass queues the node again, tainted at
    the queue's tick once that pass and the next token are due (`NodeLifecycleController.
    _taint`, `RateLimitedQueue._schedule`)."""
    if "kube_controller_manager.node_informer_lag" not in d.ps.values:
        return t_taint  # a catalogue without the race
    dropped = t_taint < t_nr + d("kube_controller_manager.node_informer_lag") - _EPS
    again = next_tick(*monitor, t_taint + _EPS)
    token = t_taint + 1.0 / d("kube_controller_manager.node_eviction_rate")
    return np.where(dropped, next_tick(*queue, np.maximum(again, token)), t_taint)


def _replacement(d: Draws, t_ev: np.ndarray, batch: np.ndarray) -> dict[str, np.ndarray]:
    """ReplicaSet -> scheduler -> kubelet start -> readiness probe -> EndpointSlice."""
    t_created = t_ev + d(_REACT)
    t_sched = t_created + d("kube_scheduler.scheduling_latency")
    t_ready = new_pod_ready(d, t_sched) + d(_REACT)
    return {
        "replacement.created": t_created,
        "replacement.scheduled": t_sched,
        "replacement.ready": t_ready,
        "pod.ready": t_ready,
        "endpoints.added": t_ready + slice_delay(d, batch),
    }


def proxy_syncs(d: Draws, t_rm: np.ndarray, count: int) -> list[np.ndarray]:
    """When each live kube-proxy has the removal in the kernel (BoundedFrequencyRunner)."""
    w = d.wide(count * d.size)  # every proxy's own timers, one row per proxy and trial
    last_start = -w.phase(w("kube_proxy.iptables_sync_period"))
    min_sync = w("kube_proxy.iptables_min_sync_period")
    removal = np.tile(t_rm, count)
    # the first sync after a quiet period: burst-2 always has a token (the bucket is at
    # least 1 after the last periodic sync); the other runners wait out min sync from the
    # last sync (`KubeProxy._earliest_start`)
    if d.choice("kube_proxy.sync_runner") == "burst-2":
        start = removal
    else:
        start = np.maximum(removal, last_start + min_sync)
    return list((start + w("kube_proxy.sync_duration")).reshape(count, d.size))


def lb_marked_down(d: Draws) -> np.ndarray:
    """`LbHealthChecker` on a target dead at t = 0: fall unanswered checks, then timeout."""
    interval = d("lb.interval")
    timeout = d("lb.timeout")
    fall = np.maximum(1, d.count("lb.fall"))
    gap = interval + timeout if d.choice("lb.check_schedule") == "after-completion" else interval
    return d.phase(interval) + (fall - 1) * gap + timeout


def table(topo: Any, proxies: list[Any], lb: Any, crashed: Any) -> dict[tuple[bool, ...], float]:
    """The design's a(t) in every state of the removal's progress (probe trial, after the
    crash): each live kube-proxy has or has not programmed it, the LB has or has not
    marked the crashed target down."""
    from itertools import product

    svc = topo.cluster.service
    removed = tuple(p for p in svc.ready if p.node is not crashed)
    terminating = tuple(p for p in svc.serving_terminating if p.node is not crashed)
    before = [(px.programmed, px.local, px.local_terminating) for px in proxies]
    out: dict[tuple[bool, ...], float] = {}
    for state in product((False, True), repeat=len(proxies) + (lb is not None)):
        set_proxies(proxies, state, before, removed, terminating)
        if lb is not None:
            lb.up[crashed.name] = not state[-1]
        out[state] = topo.availability()
    return out
