"""The article's Service-level designs: ClusterIP, NodePort direct, NodePort behind an LB.

Request paths (a(t) is the share of new requests that reach a live server):

- ``clusterip``: an in-cluster client on a healthy node -> its kube-proxy -> 1/k to each
  programmed endpoint.
- ``nodeport-direct``: clients use one node's IP -> that node's kube-proxy -> 1/k to each
  programmed endpoint. Nothing moves when the entry node dies.
- ``nodeport-lb``: LB -> any in-rotation node (``externalTrafficPolicy: Cluster``) -> that
  node's kube-proxy -> 1/k to each programmed endpoint anywhere.
- ``nodeport-lb-local``: LB health-checks the health-check node port -> nodes with local
  ready endpoints -> only local endpoints; a node with none DROPs.

An LB that resets the established connections of a target it routes out as unhealthy
(``lb.unhealthy_connection_termination``: the AWS NLB profile; HAProxy keeps them) turns the
connections through that node from hung into reset at that instant (`LbResets`); the
cloud designs' node targets (``cloud-lb``) are this same topology.

With ``client.connection_rate_per_ip`` > 0, a new connection via a node can also hit a
stale conntrack entry of an earlier SYN that timed out towards a dead pod and follow it
there (`chaoslab.mechanisms.conntrack`): each node's share is multiplied by 1 - that
collision share.
"""

from __future__ import annotations

from collections.abc import Sequence

from chaoslab.designs.base import Design, Flow, Topology
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod
from chaoslab.mechanisms.conntrack import DnatPath, stale_syn_entries
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.lbcheck import CheckResult, LbHealthChecker, LbResets

__all__ = ["DESIGNS"]


def share_serving(via: Node | None, endpoints: Sequence[Pod]) -> float:
    """Share of DNAT choices (uniform over programmed endpoints) that reach a live server."""
    if not endpoints:
        return 0.0
    # Pod.serves_from inlined: this runs for every node at every state change of a trial
    via_up = via is None or via.net_up
    k = 0
    for p in endpoints:
        n = p.node
        if n is not None and p.running and n.powered and n.net_up and (via_up or via is n):
            k += 1
    return k / len(endpoints)


class ClusterIpTopology(Topology):
    def __init__(self, trial: Trial, cluster: KubernetesCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        workers = [n for n in cluster.nodes if n.role != "master"]
        app_nodes = set(cluster.app_nodes())
        # the client pod runs on a worker without app pods if there is one
        self.client = next((n for n in workers if n not in app_nodes), workers[0])
        self.stale = stale_syn_entries(trial, self._dnat_paths)

    def targets_resolved(self, nodes: list[Node], pods: list[Pod]) -> None:
        if self.client in nodes:
            others = [n for n in self.cluster.nodes if n.role != "master" and n not in nodes]
            if others:
                self.client = others[-1]
        super().targets_resolved(nodes, pods)

    def _dnat_paths(self) -> list[DnatPath]:
        c = self.client
        # the client pod's own node DNATs (OUTPUT chain): its connections leave even when
        # that node is cut off
        return [(c, 1.0, c.proxy.programmed)] if c.proxy is not None and c.powered else []

    def a_new(self) -> float:
        c = self.client
        if not c.reachable or c.proxy is None:
            return 0.0
        a = share_serving(c, c.proxy.programmed)
        return a * (1.0 - self.stale.share(c)) if self.stale is not None else a

    def flows(self) -> list[Flow]:
        c = self.client
        eps = c.proxy.programmed if c.proxy else ()
        return [(1.0 / len(eps), c, p) for p in eps]


class NodePortDirectTopology(Topology):
    def __init__(self, trial: Trial, cluster: KubernetesCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        # the article: clients use the IP of a node that also hosts an app pod
        self.entry = cluster.app_nodes()[0]
        self.stale = stale_syn_entries(trial, self._dnat_paths)

    def _dnat_paths(self) -> list[DnatPath]:
        e = self.entry
        if e is None or e.proxy is None or not e.powered:
            return []
        return [(e, 1.0 if e.net_up else 0.0, e.proxy.external_endpoints())]

    def a_new(self) -> float:
        e = self.entry
        assert e is not None
        if not e.reachable or e.proxy is None:
            return 0.0
        a = share_serving(e, e.proxy.external_endpoints())
        return a * (1.0 - self.stale.share(e)) if self.stale is not None else a

    def flows(self) -> list[Flow]:
        e = self.entry
        assert e is not None and e.proxy is not None
        eps = e.proxy.external_endpoints()
        return [(1.0 / len(eps), e, p) for p in eps]


class NodePortLbTopology(Topology):
    def __init__(
        self, trial: Trial, cluster: KubernetesCluster, design: Design, *, local: bool
    ) -> None:
        super().__init__(trial, cluster, design)
        self.local = local
        which = trial.p.choice("lb.targets")
        if which == "all":
            targets = list(cluster.nodes)
        elif which == "app-nodes":
            targets = cluster.app_nodes()
        else:
            targets = [n for n in cluster.nodes if n.role != "master"]
        self.lb = LbHealthChecker(trial, targets, self._check)
        self.resets = LbResets(trial, self.lb, lambda node: node)
        self.stale = stale_syn_entries(trial, self._dnat_paths)

    def decision_extra(self) -> list[object]:
        return [tuple(id(x) for x in self.lb.in_rotation())]  # the LB's rotation decides

    def _dnat_paths(self) -> list[DnatPath]:
        """The LB spreads one client address's connections over the rotation (an LB that
        connects from its own address: set the rate it opens towards the nodes)."""
        rotation = self.lb.in_rotation()
        out: list[DnatPath] = []
        for n in rotation:
            if n.proxy is not None and n.powered:
                w = 1.0 / len(rotation) if n.net_up else 0.0
                out.append((n, w, n.proxy.external_endpoints()))
        return out

    def delivers_to(self, entry: Node) -> bool:
        return entry.name not in self.resets.reset

    def _check(self, node: Node) -> CheckResult:
        if not node.reachable:
            return (False, False)
        if self.local:
            return (node.proxy is not None and node.proxy.healthy_local, True)
        return (True, True)

    def a_new(self) -> float:
        rotation = self.lb.in_rotation()
        if not rotation:
            return 0.0
        total = 0.0
        stale = self.stale
        for n in rotation:
            proxy = n.proxy
            if proxy is not None and n.powered and n.net_up:
                a = share_serving(n, proxy.external_endpoints())
                total += a * (1.0 - stale.share(n)) if stale is not None else a
        return total / len(rotation)

    def flows(self) -> list[Flow]:
        rotation = self.lb.in_rotation()
        out: list[Flow] = []
        for n in rotation:
            eps = n.proxy.external_endpoints() if n.proxy else ()
            out += [(1.0 / len(rotation) / len(eps), n, p) for p in eps]
        return out


def _build_clusterip(trial: Trial, spec: ClusterSpec) -> Topology:
    workers = [n for n, role in spec.node_names() if role != "master"]
    cluster = KubernetesCluster(trial, spec, proxy_nodes=workers)
    return ClusterIpTopology(trial, cluster, DESIGNS["clusterip"])


def _build_direct(trial: Trial, spec: ClusterSpec) -> Topology:
    from chaoslab.designs.base import initial_app_nodes

    entry = initial_app_nodes(spec)[:1]
    cluster = KubernetesCluster(trial, spec, proxy_nodes=entry)
    return NodePortDirectTopology(trial, cluster, DESIGNS["nodeport-direct"])


def lb_proxy_nodes(trial: Trial, spec: ClusterSpec) -> list[str]:
    """Nodes whose kube-proxy is on an LB path: the LB's targets (``lb.targets``).

    Traffic enters only through the LB's targets, so a kube-proxy elsewhere (a master
    behind a workers-only LB) changes no request's path; modelling it would only add its
    syncs to every trial's events.
    """
    from chaoslab.designs.base import initial_app_nodes

    which = trial.p.choice("lb.targets")
    if which == "all":
        return [n for n, _ in spec.node_names()]
    if which == "app-nodes":
        return initial_app_nodes(spec)
    return [n for n, role in spec.node_names() if role != "master"]


def _lb_builder(local: bool):
    key = "nodeport-lb-local" if local else "nodeport-lb"

    def build(trial: Trial, spec: ClusterSpec) -> Topology:
        cluster = KubernetesCluster(
            trial,
            spec,
            external_traffic_policy="Local" if local else "Cluster",
            proxy_nodes=lb_proxy_nodes(trial, spec),
        )
        return NodePortLbTopology(trial, cluster, DESIGNS[key], local=local)

    return build


DESIGNS: dict[str, Design] = {
    d.key: d
    for d in [
        Design(
            "clusterip",
            "In-cluster client -> ClusterIP -> kube-proxy DNAT to the endpoints.",
            "article",
            "ClusterIP from a pod on a healthy node",
            "endpoints + kube-proxy",
            _build_clusterip,
        ),
        Design(
            "nodeport-direct",
            "Clients use one node's IP:NodePort; that node also hosts an app pod.",
            "article",
            "one node's IP:NodePort",
            "nothing: the entry node's death is an outage until it returns",
            _build_direct,
            targets=("app-pod", "app-pod-node", "app-pod-nodes", "entry-node", "idle-node"),
        ),
        Design(
            "nodeport-lb",
            "External LB -> NodePort on every worker (externalTrafficPolicy: Cluster).",
            "article",
            "external LB -> NodePort on all workers",
            "LB health check + endpoints/kube-proxy on surviving nodes",
            _lb_builder(False),
        ),
        Design(
            "nodeport-lb-local",
            "External LB -> NodePort, only nodes with local pods (externalTrafficPolicy: Local).",
            "article",
            "external LB -> NodePort on nodes with local pods",
            "LB health check on the health-check node port (200/503)",
            _lb_builder(True),
        ),
    ]
}
