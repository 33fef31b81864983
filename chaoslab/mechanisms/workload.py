"""Workload controllers and the scheduler: who replaces a lost pod, when and where.

Covers:
- ReplicaSet (Deployment): counts only active pods (no deletionTimestamp), so it creates
  a replacement as soon as a pod is evicted or deleted, while the old object may stay
  Terminating for ever on a dead node (``controller_utils.go`` IsPodActive).
- StatefulSet: "at most one" — the replacement (same name) is created only after the old
  pod object is gone: never, on a node that stays dead, unless someone force-deletes.
- DaemonSet: never evicted for unreachable/not-ready (tolerations without seconds); after
  a delete the controller skips the terminating pod but, without surge, creates the new
  one only when the old object is gone (``daemon_controller.go`` podsShouldBeOnNode).
- Scheduler: a Ready, untainted, schedulable node of the app's roles; preferred
  anti-affinity spreads replicas, required anti-affinity leaves a pod Pending when no node
  without a replica is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node, Pod, Workload

if TYPE_CHECKING:
    from chaoslab.mechanisms.k8s import KubernetesCluster

__all__ = ["Scheduler", "WorkloadController"]

register_milestones(
    {
        "replacement.created": "the controller created a replacement pod",
        "replacement.scheduled": "the replacement pod was bound to a node",
        "replacement.ready": "the replacement pod is Ready",
    }
)


class WorkloadController:
    def __init__(self, trial: Trial, cluster: KubernetesCluster, workload: Workload) -> None:
        self.trial = trial
        self.cluster = cluster
        self.workload = workload

    def _react(self) -> float:
        return self.trial.p.draw("kube_controller_manager.controller_reaction")

    def pod_deleting(self, pod: Pod) -> None:
        if self.workload.kind == "Deployment":
            self.trial.at(self._react(), self._reconcile_replicaset)

    def pod_gone(self, pod: Pod) -> None:
        kind = self.workload.kind
        if kind == "Deployment":
            self.trial.at(self._react(), self._reconcile_replicaset)
        elif kind == "StatefulSet":
            self.trial.at(self._react(), self._create, pod.name, None)
        elif kind == "DaemonSet" and pod.node is not None:
            self.trial.at(self._react(), self._create, pod.name + "-r", pod.node)

    def resync(self) -> None:
        """A controller that could not act (no leader, no API) catches up: ReplicaSets
        count again; StatefulSet and DaemonSet pods whose object is gone are re-created."""
        wl = self.workload
        if wl.kind == "Deployment":
            self._reconcile_replicaset()
            return
        for pod in [p for p in wl.pods if p.gone]:
            if wl.kind == "StatefulSet":
                self._create(pod.name, None)
            elif pod.node is not None:
                self._create(pod.name + "-r", pod.node)

    def _reconcile_replicaset(self) -> None:
        if not self.cluster.cp.controllers_ok:
            return  # `resync` counts again when it can
        wl = self.workload
        missing = wl.replicas - sum(1 for p in wl.pods if p.active)
        for _ in range(missing):
            wl.serial += 1
            self._create(f"{wl.name}-r{wl.serial}", None)

    def _create(self, name: str, node: Node | None) -> None:
        wl = self.workload
        if not self.cluster.cp.controllers_ok:
            return  # `resync` creates it when it can
        if wl.kind == "StatefulSet" and any(p.name == name and not p.gone for p in wl.pods):
            return
        if node is not None and any(p.node is node and not p.gone for p in wl.pods):
            return  # the DaemonSet's pod on that node exists already
        pod = Pod(name, wl, None)
        pod.replacement = True
        wl.pods.append(pod)
        self.trial.milestone("replacement.created")
        self.cluster.scheduler.schedule(pod, node)


class Scheduler:
    def __init__(self, trial: Trial, cluster: KubernetesCluster) -> None:
        self.trial = trial
        self.cluster = cluster
        self.pending: list[tuple[Pod, Node | None]] = []

    def schedule(self, pod: Pod, pinned: Node | None = None) -> None:
        delay = self.trial.p.draw("kube_scheduler.scheduling_latency")
        self.trial.at(delay, self._bind, pod, pinned)

    def _eligible(self, pod: Pod, pinned: Node | None) -> list[Node]:
        wl = pod.workload
        if pinned is not None:
            # DaemonSet pods tolerate unreachable/not-ready; they only need a live node
            return [pinned] if pinned.powered else []
        nodes = [
            n
            for n in self.cluster.nodes
            if n.role in wl.roles and n.ready and not n.tainted and not n.unschedulable
        ]
        if wl.anti_affinity == "none" or not nodes:
            return nodes

        def replicas_on(n: Node) -> int:
            return sum(1 for p in n.pods if p.workload is wl and not p.gone and p is not pod)

        counts = {n.name: replicas_on(n) for n in nodes}
        least = min(counts.values())
        if wl.anti_affinity == "required" and least > 0:
            return []
        return [n for n in nodes if counts[n.name] == least]

    def _bind(self, pod: Pod, pinned: Node | None) -> None:
        if pod.gone or pod.deleting:
            return
        if not self.cluster.cp.api_up:
            self.pending.append((pod, pinned))  # bound when the API answers
            return
        nodes = self._eligible(pod, pinned)
        if not nodes:
            self.pending.append((pod, pinned))  # retried when a node becomes Ready
            return
        node = nodes[int(self.trial.rng.integers(len(nodes)))] if len(nodes) > 1 else nodes[0]
        pod.node = node
        node.pods.append(pod)
        self.trial.milestone("replacement.scheduled")
        self.cluster.kubelet.start_pod(pod)

    def retry_pending(self) -> None:
        pending, self.pending = self.pending, []
        for pod, pinned in pending:
            self.schedule(pod, pinned)
