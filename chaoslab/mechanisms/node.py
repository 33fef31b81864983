"""Node heartbeats and the node lifecycle controller.

Covers: kubelet heartbeat (Lease renewal every 0.25 x lease duration, or NodeStatus posts
before NodeLease); ``monitorNodeHealth`` passes every ``node_monitor_period``;
Ready -> Unknown once ``now >= probeTimestamp + node_monitor_grace_period``;
MarkPodsNotReady in the same pass; ``unreachable:NoExecute`` taints through a per-zone
rate-limited queue (token bucket, ``node_eviction_rate``, burst 1, worked every 100 ms);
zone disruption (PartialDisruption stops tainting in small zones, all zones fully
disrupted removes every taint); the taint manager deleting pods after
``tolerationSeconds``; and the legacy path (<= 1.12) evicting at
``probeTimestamp + pod_eviction_timeout``.

Causal chain for a crashed node (docs/model-kubernetes.md)::

    last heartbeat  -> observed at the next monitor pass (probeTimestamp)
    probe + grace   -> first pass after it: node.not_ready, pods.not_ready
    queued          -> that pass (>= 1.34) or the next one (<= 1.33, ``taint_pass``)
    token available -> node.tainted -> + tolerationSeconds -> pod.evicted

Same-pass tainting races the controller's own node informer: a token granted within
``node_informer_lag`` of the Unknown write finds the node still Ready there and is spent
for nothing; the next pass queues the node again and the taint waits for the next token
(``doNoExecuteTaintingPass``, ``RateLimitedTimedQueue.Try`` v1.37.2).

``probeTimestamp`` is the time of the monitor pass that saw the last renewal, so with a
renew interval h and monitor period P, NotReady falls in [G - h, G + P] after the crash.
Monitor passes are modelled on a fixed grid; the real loop (``wait.Until``, sliding)
drifts by the pass duration, which is why ``>=`` is used at the grace boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node, Pod

if TYPE_CHECKING:
    from chaoslab.mechanisms.k8s import KubernetesCluster

__all__ = ["NodeLifecycleController", "RateLimitedQueue", "next_tick"]

register_milestones(
    {
        "node.not_ready": "node lifecycle controller sets Ready=Unknown on the failed node",
        "pods.not_ready": "MarkPodsNotReady has set the failed node's pods NotReady",
        "node.tainted": "node.kubernetes.io/unreachable:NoExecute taint added",
        "pod.evicted": "a pod of the app on the failed node got its deletionTimestamp",
        "node.ready": "a failed node is Ready again (it came back)",
    }
)

_EPS = 1e-9


def next_tick(phase: float, period: float, t: float) -> float:
    """First tick of the grid ``phase + k * period`` at or after ``t``."""
    k = math.ceil((t - phase) / period - _EPS)
    return phase + k * period


def last_tick(phase: float, period: float, t: float) -> float:
    """Last tick of the grid at or before ``t``."""
    k = math.floor((t - phase) / period + _EPS)
    return phase + k * period


class RateLimitedQueue:
    """A zone's NoExecute-taint (or legacy eviction) queue.

    Token bucket with ``qps`` and burst 1, worked every ``period`` (100 ms) on a random
    phase. The bucket is full at the fault (a quiet cluster took no tokens recently).
    A qps of 0 (a partially disrupted small zone) holds every item until the rate returns.
    """

    __slots__ = ("_last_grant", "_pending", "_phase", "_version", "period", "qps", "trial")

    def __init__(self, trial: Trial, qps: float, period: float) -> None:
        self.trial = trial
        self.qps = qps
        self.period = period
        self._phase = trial.phase(period)
        self._last_grant = -math.inf
        self._pending: list[tuple[Node, Callable[[Node], None]]] = []
        self._version = 0

    def add(self, node: Node, action: Callable[[Node], None]) -> None:
        if any(n is node for n, _ in self._pending):
            return
        self._pending.append((node, action))
        if len(self._pending) == 1:
            self._schedule()

    def remove(self, node: Node) -> None:
        self._pending = [(n, a) for n, a in self._pending if n is not node]

    def clear(self) -> None:
        """A new controller process starts with empty queues."""
        self._pending = []
        self._version += 1

    def set_rate(self, qps: float) -> None:
        if qps != self.qps:
            self.qps = qps
            self._version += 1
            if self._pending:
                self._schedule()

    def _schedule(self) -> None:
        if self.qps <= 0 or not self._pending:
            return
        now = self.trial.now
        t = max(now, self._last_grant + 1.0 / self.qps)
        t = next_tick(self._phase, self.period, t)
        self.trial.at(t - now, self._grant, self._version)

    def _grant(self, version: int) -> None:
        if version != self._version or not self._pending or self.qps <= 0:
            return
        node, action = self._pending.pop(0)
        self._last_grant = self.trial.now
        action(node)
        if self._pending:
            self._version += 1
            self._schedule()


class NodeLifecycleController:
    """kube-controller-manager's node lifecycle controller (one instance per cluster)."""

    def __init__(self, trial: Trial, cluster: KubernetesCluster) -> None:
        p = trial.p
        self.trial = trial
        self.cluster = cluster
        self.period = p.draw("kube_controller_manager.node_monitor_period")
        self.phase = trial.phase(self.period)
        self.grace = p.draw("kube_controller_manager.node_monitor_grace_period")
        self.taint_based = p.flag("kube_controller_manager.taint_based_evictions")
        # <= 1.33 the taint logic reads the Ready condition as observed before this pass
        # wrote Unknown, so the node is queued one monitor pass later
        self.taint_lag = (
            self.period if p.choice("kube_controller_manager.taint_pass") == "next-pass" else 0.0
        )
        self.eviction_timeout = p.draw("kube_controller_manager.pod_eviction_timeout")
        self.informer_lag = p.draw("kube_controller_manager.node_informer_lag")
        #: when this controller wrote Ready=Unknown, per node, for the same-pass taint race
        self.unknown_written: dict[str, float] = {}
        self.rate = p.draw("kube_controller_manager.node_eviction_rate")
        self.secondary_rate = p.draw("kube_controller_manager.secondary_node_eviction_rate")
        self.unhealthy_threshold = p.draw("kube_controller_manager.unhealthy_zone_threshold")
        self.large_cluster = p.draw("kube_controller_manager.large_cluster_size_threshold")
        queue_period = p.draw("kube_controller_manager.node_eviction_period")
        zones = sorted({n.zone for n in cluster.nodes})
        self.queues = {z: RateLimitedQueue(trial, self.rate, queue_period) for z in zones}
        self.zone_state = dict.fromkeys(zones, "Normal")
        self.master_disruption = False
        # probeTimestamp per node, only for nodes whose heartbeat stopped
        self.probe: dict[str, float] = {}
        self.epoch: dict[str, int] = {n.name: 0 for n in cluster.nodes}
        #: when each node's heartbeats last stopped (crash, partition, kubelet, API)
        self.stopped_at: dict[str, float] = {}

    @property
    def acting(self) -> bool:
        """The controller can write: its manager leads and the API server answers."""
        return self.cluster.cp.controllers_ok

    # ------------------------------------------------------------------ heartbeats
    def heartbeat_stopped(self, node: Node) -> None:
        """The node's heartbeats stop now (crash, partition, kubelet stop)."""
        now = self.trial.now
        last_hb = last_tick(node.hb_phase, node.hb_period, now)
        probe = next_tick(self.phase, self.period, last_hb)
        self.probe[node.name] = probe
        self.stopped_at[node.name] = now
        self.epoch[node.name] += 1
        if node.ready:
            self._arm_grace(node, now)

    def heartbeat_resumed(self, node: Node, first_heartbeat: float) -> None:
        """Heartbeats are possible again; the first one lands at ``first_heartbeat``.

        Until a pass sees it the controller still counts from the old probeTimestamp: a
        pass past the grace period before then marks the node Unknown (a partition that
        heals a few seconds before the grace period ends still costs a NotReady)."""
        self.epoch[node.name] += 1
        epoch = self.epoch[node.name]
        now = self.trial.now
        node.hb_phase = first_heartbeat % node.hb_period
        seen = next_tick(self.phase, self.period, first_heartbeat)
        self.trial.at(seen - now, self._heartbeat_seen, node, epoch)
        probe = self.probe.get(node.name)
        if node.ready and probe is not None:
            t_nr = next_tick(self.phase, self.period, max(probe + self.grace, now))
            if t_nr < seen:
                self.trial.at(t_nr - now, self._grace_expired, node, epoch)

    def _heartbeat_seen(self, node: Node, epoch: int) -> None:
        if epoch != self.epoch[node.name] or not self.acting:
            return
        self.probe.pop(node.name, None)
        self.unknown_written.pop(node.name, None)  # a later Unknown is written anew
        if node.ready:
            return
        node.ready = True
        self.trial.milestone("node.ready")
        queue = self.queues[node.zone]
        queue.remove(node)
        if node.tainted:
            node.tainted = False
            self.cluster.taint_removed(node)
        self._update_zone(node.zone)
        self.cluster.node_ready_changed(node)

    # ------------------------------------------------------------------ NotReady
    def _grace_expired(self, node: Node, epoch: int) -> None:
        if epoch != self.epoch[node.name] or not node.ready or not self.acting:
            return  # without the API the write fails: `api_restored` or `restart` re-arms
        node.ready = False
        self.trial.milestone("node.not_ready")
        # MarkPodsNotReady runs in the same pass; the pod status updates are API writes
        self.cluster.mark_pods_not_ready(node)
        self._update_zone(node.zone)
        if self.taint_based and not self.master_disruption:
            if self.taint_lag:
                self.trial.at(self.taint_lag, self._requeue_taint, node, epoch)
            else:
                self.unknown_written[node.name] = self.trial.now
                self.queues[node.zone].add(node, self._taint)
        self.cluster.node_ready_changed(node)

    def _taint(self, node: Node) -> None:
        # popped first: the drop is for the grant of the queueing this write made, never
        # for a re-queue (after a drop, a restart or a master-disruption exit)
        written = self.unknown_written.pop(node.name, -math.inf)
        if node.ready or node.tainted or self.master_disruption or not self.acting:
            return
        if self.trial.now < written + self.informer_lag - _EPS:
            # the informer still shows Ready: dropped, token spent; the next pass re-queues
            t = next_tick(self.phase, self.period, self.trial.now + _EPS)
            self.trial.at(t - self.trial.now, self._requeue_taint, node, self.epoch[node.name])
            return
        node.tainted = True
        self.trial.milestone("node.tainted")
        self.cluster.taint_added(node)

    def _requeue_taint(self, node: Node, epoch: int) -> None:
        if (
            epoch == self.epoch[node.name]
            and not node.ready
            and not self.master_disruption
            and self.acting
        ):
            self.queues[node.zone].add(node, self._taint)

    def _legacy_eviction_due(self, node: Node, epoch: int) -> None:
        if epoch != self.epoch[node.name] or self.master_disruption or not self.acting:
            return
        self.queues[node.zone].add(node, self._legacy_evict)

    def _legacy_evict(self, node: Node) -> None:
        if node.name not in self.probe or self.master_disruption or not self.acting:
            return
        self.cluster.evict_pods(node)

    # ------------------------------------------------------------------ control plane
    def _arm_grace(self, node: Node, not_before: float) -> None:
        """Ready -> Unknown at the first pass at or after both probe + grace and
        ``not_before``, for a node whose heartbeat stopped; legacy eviction at probe +
        pod_eviction_timeout, which sits in the same observed-Unknown branch as the taint."""
        now = self.trial.now
        probe = self.probe[node.name]
        epoch = self.epoch[node.name]
        t_nr = next_tick(self.phase, self.period, max(probe + self.grace, not_before))
        self.trial.at(t_nr - now, self._grace_expired, node, epoch)
        if not self.taint_based:
            t_ev = next_tick(self.phase, self.period, max(probe + self.eviction_timeout, now))
            self.trial.at(max(t_ev, t_nr + self.taint_lag) - now, self._legacy_eviction_due,
                          node, epoch)  # fmt: skip

    def _redo_unknown(self, node: Node) -> None:
        """A node already Unknown, seen again by a controller that can write: its pods
        NotReady, and (taint-based) its taint queued if it has none yet."""
        self.cluster.mark_pods_not_ready(node)
        if self.taint_based and not node.tainted and not self.master_disruption:
            self.queues[node.zone].add(node, self._taint)
        elif not self.taint_based:
            self._arm_grace(node, self.trial.now)

    def api_restored(self, stopped: list[Node]) -> None:
        """The API server answers again and this controller still leads: the writes that
        failed meanwhile are made at the next passes. ``stopped``: nodes still without
        heartbeats (the others went through `heartbeat_resumed`)."""
        for node in stopped:
            if node.name not in self.probe:
                continue
            if node.ready:
                self._arm_grace(node, self.trial.now)
            else:
                self._redo_unknown(node)

    def stop(self) -> None:
        """The controller manager stopped leading: nothing this process queued happens."""
        for name in self.epoch:
            self.epoch[name] += 1
        for q in self.queues.values():
            q.clear()
        self.unknown_written.clear()  # the queued taints they were for are gone

    def restart(self) -> None:
        """A new leader's first monitor pass, now. Its nodeHealthMap is empty, so every
        node's probeTimestamp is this pass ("Missing timestamp for Node. Assuming now",
        tryUpdateNodeHealth): the grace period of a node that stopped heartbeating starts
        over; a node already Unknown is queued for its taint in this pass, and the taint
        manager counts tolerationSeconds from now."""
        now = self.trial.now
        self.phase = now % self.period
        self.stop()
        for node in self.cluster.nodes:
            epoch = self.epoch[node.name]
            if node.heartbeating and self.cluster.cp.api_up:
                self.probe.pop(node.name, None)
                if not node.ready:
                    seen = next_tick(node.hb_phase, node.hb_period, now)
                    self.trial.at(seen - now, self._heartbeat_seen, node, epoch)
                continue
            self.probe[node.name] = now
            if node.ready:
                self._arm_grace(node, now)
            elif node.tainted:
                self.cluster.taint_added(node)
            else:
                self._redo_unknown(node)
        for zone in self.queues:
            self._update_zone(zone)

    # ------------------------------------------------------------------ zones
    def _update_zone(self, zone: str) -> None:
        nodes = [n for n in self.cluster.nodes if n.zone == zone]
        not_ready = sum(1 for n in nodes if not n.ready)
        if not_ready == len(nodes):
            state = "FullDisruption"
        elif not_ready > 2 and not_ready / len(nodes) >= self.unhealthy_threshold:
            state = "PartialDisruption"
        else:
            state = "Normal"
        self.zone_state[zone] = state
        all_full = all(s == "FullDisruption" for s in self.zone_state.values())
        if all_full and not self.master_disruption:
            # every zone down: the controller assumes its own connectivity is the problem
            self.master_disruption = True
            self.unknown_written.clear()  # the taints queued are never made: re-queued on exit
            for q in self.queues.values():
                q.set_rate(0.0)
            for n in self.cluster.nodes:
                if n.tainted:
                    n.tainted = False
                    self.cluster.taint_removed(n)
            return
        if self.master_disruption and not all_full:
            self.master_disruption = False
            self.unknown_written.clear()  # the re-queues below are no same-pass writes
            # on exit the controller resets probe and transition timestamps: grace restarts
            now = self.trial.now
            for n in self.cluster.nodes:
                if n.name not in self.probe or n.ready:
                    continue
                self.probe[n.name] = now
                epoch = self.epoch[n.name]
                if self.taint_based:
                    t = next_tick(self.phase, self.period, now + self.grace)
                    self.trial.at(t - now, self._requeue_taint, n, epoch)
                else:
                    t = next_tick(self.phase, self.period, now + self.eviction_timeout)
                    self.trial.at(t - now, self._legacy_eviction_due, n, epoch)
        if state == "PartialDisruption":
            rate = self.secondary_rate if len(nodes) > self.large_cluster else 0.0
        else:
            rate = self.rate
        self.queues[zone].set_rate(0.0 if self.master_disruption else rate)


def pods_on(node: Node) -> list[Pod]:
    return [p for p in node.pods if not p.gone]
