"""A Kubernetes cluster as the designs see it: the control-plane mechanisms wired together.

`KubernetesCluster` builds the nodes and the app's pods from a `ClusterSpec`, creates the
node lifecycle controller, kubelet, workload controller, scheduler, EndpointSlice
controller and one kube-proxy per node whose rules matter to the design, and routes
events between them. It also offers the fault primitives (power off, cut off, stop the
kubelet, kill a container, delete a pod, drain) that `chaoslab.faults` composes.
"""

from __future__ import annotations

from collections.abc import Iterable

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod, Service, Workload, node_layout
from chaoslab.mechanisms.endpoints import EndpointSliceController, KubeProxy
from chaoslab.mechanisms.kubelet import Kubelet
from chaoslab.mechanisms.node import NodeLifecycleController
from chaoslab.mechanisms.workload import Scheduler, WorkloadController

__all__ = ["KubernetesCluster"]

register_milestones(
    {
        "pod.deleted": "the targeted pod got its deletionTimestamp (API delete or eviction)",
        "node.powered_on": "a crashed node was powered on again",
        "node.reconnected": "a partitioned node is reachable again",
        "kubelet.started": "a stopped kubelet runs again",
        "pod.force_deleted": "an operator force-deleted the pods of a lost node",
    }
)


class KubernetesCluster:
    def __init__(
        self,
        trial: Trial,
        spec: ClusterSpec,
        *,
        external_traffic_policy: str = "Cluster",
        proxy_nodes: Iterable[str] | None = None,
    ) -> None:
        self.trial = trial
        self.spec = spec
        p = trial.p
        self.nodes: list[Node] = []
        lease = p.flag("kubelet.node_lease")
        for name, role, i, zone in node_layout(spec):
            node = Node(name, role, i, zone)
            # per node and in this order: a period drawn from a distribution takes the
            # random stream's next value before the phase does
            if lease:
                node.hb_period = p.draw("kubelet.node_lease_duration_seconds") * p.draw(
                    "kubelet.node_lease_renew_interval_fraction"
                )
            else:
                node.hb_period = p.draw("kubelet.node_status_update_frequency")
            node.hb_phase = trial.phase(node.hb_period)
            self.nodes.append(node)
        self.by_name = {n.name: n for n in self.nodes}
        self.proxy_terminating_endpoints = p.flag("kube_proxy.proxy_terminating_endpoints")
        self.lease = lease

        self.app = Workload(
            "app", spec.app_kind, spec.replicas, spec.app_roles(), spec.anti_affinity
        )
        self._place_initial_pods()
        self.service = Service(external_traffic_policy)

        self.nlc = NodeLifecycleController(trial, self)
        self.kubelet = Kubelet(trial, self)
        self.scheduler = Scheduler(trial, self)
        self.controller = WorkloadController(trial, self, self.app)
        self.endpoints = EndpointSliceController(trial, self, self.service)
        wanted = set(proxy_nodes) if proxy_nodes is not None else {n.name for n in self.nodes}
        self.proxies: list[KubeProxy] = []
        for node in self.nodes:
            if node.name in wanted:
                node.proxy = KubeProxy(trial, self, node, self.service)
                self.proxies.append(node.proxy)
        self._evicting: dict[str, int] = {}

    def _place_initial_pods(self) -> None:
        wl = self.app
        eligible = [n for n in self.nodes if n.role in wl.roles]
        if not eligible:
            raise ValueError(f"no node of role {'/'.join(wl.roles)} for the app's pods")
        if wl.kind == "DaemonSet":
            targets = eligible
            wl.replicas = len(eligible)
        else:
            if wl.anti_affinity == "required" and wl.replicas > len(eligible):
                raise ValueError(
                    f"{wl.replicas} replicas with required anti-affinity need "
                    f"{wl.replicas} {'/'.join(wl.roles)} nodes, the cluster has {len(eligible)}"
                )
            targets = [eligible[i % len(eligible)] for i in range(wl.replicas)]
        for i, node in enumerate(targets):
            name = f"app-{i}" if wl.kind == "StatefulSet" else f"app-{node.name}-{i}"
            pod = Pod(name, wl, node)
            pod.running = pod.ready = True
            pod.probe_phase = self.trial.phase(self.trial.p.draw("probe.period_seconds"))
            node.pods.append(pod)
            wl.pods.append(pod)

    # ------------------------------------------------------------ queries
    def app_pods(self) -> list[Pod]:
        return [p for p in self.app.pods if not p.gone]

    def app_nodes(self) -> list[Node]:
        seen: list[Node] = []
        for p in self.app.pods:
            if p.node is not None and p.node not in seen and not p.gone:
                seen.append(p.node)
        return seen

    # ------------------------------------------------------------ events from mechanisms
    def pod_ready_changed(self, pod: Pod) -> None:
        if pod.ready and pod.replacement:
            self.trial.milestone("replacement.ready")
        self.endpoints.pod_changed()

    def mark_pods_not_ready(self, node: Node) -> None:
        delay = self.trial.p.draw("kube_controller_manager.controller_reaction")
        self.trial.at(delay, self._mark_not_ready, node, self.nlc.epoch[node.name])

    def _mark_not_ready(self, node: Node, epoch: int) -> None:
        if epoch != self.nlc.epoch[node.name]:
            return
        changed = False
        for pod in node.pods:
            if not pod.gone and pod.ready:
                pod.ready = False
                changed = True
        if changed:
            self.trial.milestone("pods.not_ready")
            self.endpoints.pod_changed()

    def node_ready_changed(self, node: Node) -> None:
        if node.ready:
            self.scheduler.retry_pending()

    def taint_added(self, node: Node) -> None:
        """Taint manager: delete each pod after its tolerationSeconds (DaemonSet: never)."""
        p = self.trial.p
        self._evicting[node.name] = self._evicting.get(node.name, 0) + 1
        epoch = self._evicting[node.name]
        for pod in node.pods:
            if pod.gone or pod.deleting or pod.workload.kind == "DaemonSet":
                continue
            delay = p.draw("kube_controller_manager.taint_manager_delay") + p.draw(
                "kube_apiserver.default_unreachable_toleration_seconds"
            )
            self.trial.at(delay, self._taint_evict, node, pod, epoch)

    def taint_removed(self, node: Node) -> None:
        self._evicting[node.name] = self._evicting.get(node.name, 0) + 1
        self.scheduler.retry_pending()

    def _taint_evict(self, node: Node, pod: Pod, epoch: int) -> None:
        if epoch != self._evicting.get(node.name) or not node.tainted:
            return
        self.delete_pod(pod, milestone="pod.evicted")

    def evict_pods(self, node: Node) -> None:
        """Legacy (<= 1.12) eviction: delete every non-DaemonSet pod of the node."""
        for pod in list(node.pods):
            if not pod.gone and not pod.deleting and pod.workload.kind != "DaemonSet":
                self.delete_pod(pod, milestone="pod.evicted")

    def proxy_synced(self, proxy: KubeProxy) -> None:
        if "endpoints.removed" not in self.trial.milestones:
            return
        version = self.service.version
        if all(px._synced_version == version for px in self.proxies if px.node.reachable):
            self.trial.milestone("proxy.synced")

    # ------------------------------------------------------------ API-level actions
    def delete_pod(self, pod: Pod, *, milestone: str = "pod.deleted") -> None:
        """Set the deletionTimestamp (graceful delete, eviction)."""
        if pod.deleting or pod.gone:
            return
        pod.deleting = True
        self.trial.milestone(milestone)
        self.endpoints.pod_changed()
        self.controller.pod_deleting(pod)
        self.kubelet.graceful_stop(pod)

    def pod_gone(self, pod: Pod) -> None:
        if pod.gone:
            return
        pod.gone = True
        pod.running = False
        pod.ready = False
        self.trial.milestone("pod.gone")
        self.endpoints.pod_changed()
        self.controller.pod_gone(pod)
        self.trial.changed()

    def force_delete_pods(self, node: Node) -> None:
        """``kubectl delete pod --force`` of every app pod bound to a lost node."""
        if node.heartbeating:
            return  # the node is back; nothing is stuck
        for pod in list(node.pods):
            if not pod.gone:
                if not pod.deleting:
                    pod.deleting = True
                    self.controller.pod_deleting(pod)
                self.trial.milestone("pod.force_deleted")
                self.pod_gone(pod)

    # ------------------------------------------------------------ fault primitives
    def power_off(self, node: Node) -> None:
        was_heartbeating = node.heartbeating
        node.powered = False
        for pod in node.pods:
            pod.running = False
            pod.epoch += 1
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        self.trial.changed()

    def power_on(self, node: Node) -> None:
        """Power on now; the node is back (network, kubelet, kube-proxy) after booting."""
        boot = self.trial.p.draw("kubelet.node_boot_time")
        self.trial.at(boot, self._booted, node)

    def _booted(self, node: Node) -> None:
        node.powered = True
        node.kubelet_up = True
        self.trial.milestone("node.powered_on")
        if node.heartbeating:
            self.nlc.heartbeat_resumed(node, self.trial.now)
            self.kubelet.reconcile(node, restarted=True)
        if node.proxy is not None:
            node.proxy.resync()
        self.trial.changed()

    def cut_off(self, node: Node) -> None:
        was_heartbeating = node.heartbeating
        node.net_up = False
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        self.trial.changed()

    def reconnect(self, node: Node) -> None:
        node.net_up = True
        self.trial.milestone("node.reconnected")
        if node.heartbeating:
            self.nlc.heartbeat_resumed(node, self.trial.now + self._retry_delay(node))
            self.kubelet.reconcile(node, restarted=False)
        if node.proxy is not None:
            node.proxy.resync()
        self.trial.changed()

    def _retry_delay(self, node: Node) -> float:
        # failed Lease renewals back off up to a cap; NodeStatus posts keep their cadence
        retry_max = self.trial.p.draw("kubelet.node_lease_retry_max")
        cap = min(node.hb_period, retry_max) if self.lease else node.hb_period
        return self.trial.phase(cap)

    def stop_kubelet(self, node: Node) -> None:
        was_heartbeating = node.heartbeating
        node.kubelet_up = False
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        self.trial.changed()

    def start_kubelet(self, node: Node) -> None:
        node.kubelet_up = True
        self.trial.milestone("kubelet.started")
        if node.heartbeating:
            self.nlc.heartbeat_resumed(node, self.trial.now)
            self.kubelet.reconcile(node, restarted=True)
        self.trial.changed()

    def drain(self, node: Node) -> None:
        """kubectl drain: cordon, then evict every non-DaemonSet pod (graceful)."""
        node.unschedulable = True
        for pod in list(node.pods):
            if not pod.gone and pod.workload.kind != "DaemonSet":
                self.delete_pod(pod, milestone="pod.evicted")
