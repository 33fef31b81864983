"""Cloud load balancers in front of the cluster: node targets and pod (IP) targets.

Request paths (a(t) = share of new connections that reach a live server):

- ``cloud-lb``: the LB health-checks every node's NodePort (instance targets, the AWS NLB
  default and GCP's instance groups) -> that node's kube-proxy -> an endpoint
  (``cloud_lb.external_traffic_policy``): `chaoslab.designs.nodeport.NodePortLbTopology`
  with the cloud profile's checks and resets, as ``nodeport-lb`` under that profile.
- ``cloud-lb-ip``: the LB sends each connection straight to a pod IP (AWS Load Balancer
  Controller ``target-type: ip``, GKE container-native load balancing with NEGs): no
  kube-proxy, no NodePort hop. It health-checks the pods themselves: a dead container on a
  live node refuses the check (fails at once), a dead node lets it time out. The
  controller follows the Service's EndpointSlices: a pod that becomes a ready endpoint is
  registered ``cloud_lb.controller_sync`` later (then ``lb.registration_time`` before its
  first check, one passing check, ``lb.propagation``); an endpoint that leaves (deleted,
  not ready, gone) is deregistered as late (new connections still for
  ``lb.deregistration_propagation``, established ones until the drain ends). Only an L4
  LB that takes pod IPs (``lb.pod_ip_targets``: the AWS NLB) fits: GKE's pod-IP NEGs
  (GCE_VM_IP_PORT) sit behind proxy LBs (GKE Ingress, an Application LB), whose
  connections are not pinned to a pod, so the ``gcp`` profile is refused here.

Established connections (``client.long_lived_share``): L4, pinned to their target. An LB
that resets the connections of a target it routes out as unhealthy
(``lb.unhealthy_connection_termination``: the AWS NLB, not while it fails open) turns them
from hung into reset at that instant; ``lb.deregistration_connection_termination`` resets
a deregistered target's remaining connections at the end of its drain. A reset is
decided per node: with several targets on one node (IP mode) a reset of one target's
connections resets the node's.
"""

from __future__ import annotations

from chaoslab.designs.base import Design, Flow, ImpossibleTarget, Topology
from chaoslab.designs.nodeport import NodePortLbTopology
from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod
from chaoslab.mechanisms.endpoints import WatchedSlices
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.lbcheck import CheckResult, LbHealthChecker, LbResets

__all__ = ["DESIGNS"]

register_milestones(
    {
        "cloud_lb.registered": "the LB controller registered a new pod IP (cloud-lb-ip)",
        "cloud_lb.deregistering": "the LB controller deregistered a pod IP that left the "
        "endpoints (cloud-lb-ip): it drains from here",
    }
)


# ============================================================================ IP targets
class IpCluster(KubernetesCluster):
    """The cluster behind an IP-mode LB: no kube-proxy on any path, watched slices."""

    def __init__(self, trial: Trial, spec: ClusterSpec) -> None:
        super().__init__(trial, spec, proxy_nodes=[])
        self.slices = WatchedSlices(trial, self, self.service)
        self.endpoints = self.slices


def _serves(pod: Pod) -> bool:
    node = pod.node
    return pod.running and not pod.gone and node is not None and node.powered and node.net_up


class IpTargetTopology(Topology):
    """The LB's targets are the app's pod IPs, registered by a controller from endpoints."""

    def __init__(self, trial: Trial, cluster: IpCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        svc = cluster.service
        #: what the controller registered, by pod name (its view, not the LB's)
        self.registered: dict[str, Pod] = {p.name: p for p in svc.ready}
        self.lb = LbHealthChecker(trial, list(svc.ready), self._check)
        self.resets = LbResets(trial, self.lb, lambda pod: pod.node)
        self.terminate_drained = trial.p.flag("lb.deregistration_connection_termination")
        #: deregistered pods whose drain end resets their remaining connections
        self._draining: dict[str, Pod] = {}
        cluster.slices.hooks.append(self._slices_changed)
        if self.terminate_drained:
            trial.listeners.append(self._drains)

    def decision_extra(self) -> list[object]:
        return [tuple(id(x) for x in self.lb.in_rotation())]  # the LB's rotation decides

    def _check(self, pod: Pod) -> CheckResult:
        node = pod.node
        if pod.gone or node is None or not node.reachable:
            return (False, False)  # no answer: the check times out
        return (pod.running, True)  # a dead container on a live node refuses at once

    # -------------------------------------------------------------- the controller
    def _slices_changed(self) -> None:
        # the controller reconciles what the slices say when it gets to them
        self.trial.at(self.trial.p.draw("cloud_lb.controller_sync"), self._reconcile)

    def _drains(self) -> None:
        for name, pod in list(self._draining.items()):
            if not self.lb.carries_established(pod):
                del self._draining[name]
                self.resets.add(pod)

    def _reconcile(self) -> None:
        """Register the ready endpoints the LB lacks, deregister those that left."""
        ready = {p.name: p for p in self.cluster.service.ready}
        for name, pod in ready.items():
            if name not in self.registered:
                self.registered[name] = pod
                self._draining.pop(name, None)
                self.trial.milestone("cloud_lb.registered")
                self.lb.register(pod)
        for name in [n for n in self.registered if n not in ready]:
            pod = self.registered.pop(name)
            self.trial.milestone("cloud_lb.deregistering")
            self.lb.deregister(pod)
            self._draining[name] = pod

    # -------------------------------------------------------------- requests
    def a_new(self) -> float:
        rotation = self.lb.in_rotation()
        if not rotation:
            return 0.0
        return sum(1 for p in rotation if _serves(p)) / len(rotation)

    def flows(self) -> list[Flow]:
        rotation = self.lb.in_rotation()
        return [(1.0 / len(rotation), p.node, p) for p in rotation]

    def delivers_to(self, entry: Node) -> bool:
        return entry.name not in self.resets.reset


# ============================================================================ builders
def build_cloud_lb(trial: Trial, spec: ClusterSpec) -> Topology:
    local = trial.p.choice("cloud_lb.external_traffic_policy") == "Local"
    cluster = KubernetesCluster(
        trial, spec, external_traffic_policy="Local" if local else "Cluster"
    )
    return NodePortLbTopology(trial, cluster, DESIGNS["cloud-lb"], local=local)


def _build_ip(trial: Trial, spec: ClusterSpec) -> Topology:
    if not trial.p.flag("lb.pod_ip_targets"):
        raise ImpossibleTarget(
            "cloud-lb-ip: this LB profile sends no L4 connections to pod IPs "
            "(lb.pod_ip_targets false; GCP's pod-IP NEGs sit behind proxy load balancers, "
            "not modelled): use cloud-lb for GCP's passthrough LB with node targets"
        )
    return IpTargetTopology(trial, IpCluster(trial, spec), DESIGNS["cloud-lb-ip"])


_NO_DAEMON = (
    "the cloud LB's health checker runs outside the cluster; no node daemon holds the entry "
    "(kill a pod or crash a node instead)"
)

DESIGNS: dict[str, Design] = {
    d.key: d
    for d in [
        Design(
            "cloud-lb",
            "A cloud load balancer health-checking NodePorts (aws-nlb checks unless the "
            "experiment picks another lb profile, e.g. gcp).",
            "beyond",
            "cloud LB -> NodePort (Cluster or Local)",
            "the cloud LB's health checks",
            build_cloud_lb,
            refuses={"daemon-kill": _NO_DAEMON},
            default_profiles=("aws-nlb",),
        ),
        Design(
            "cloud-lb-ip",
            "An L4 cloud load balancer sending to pod IPs (AWS LB Controller target-type ip; "
            "not GCP, whose pod-IP NEGs need a proxy LB): it health-checks the pods; a "
            "controller registers and deregisters them from the endpoints.",
            "beyond",
            "cloud LB -> pod IPs (no kube-proxy)",
            "the LB's checks of the pods; (de)registration by the controller",
            _build_ip,
            refuses={"daemon-kill": _NO_DAEMON},
            default_profiles=("aws-nlb",),
        ),
    ]
}
