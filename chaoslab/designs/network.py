"""The article's ingress designs and the load-balancer designs beyond it.

Request paths (a(t) = share of new requests that succeed within the client timeout):

- ``ingress-hostnet``: clients -> one ingress node's IP -> nginx (host network) -> pods.
- ``ingress-vip-pod``: clients -> VIP -> neighbour cache -> the node whose ingress pod's
  init container added the VIP (and sent GARP) -> nginx -> pods. Nothing moves the VIP
  when that node dies until the pod is evicted and its replacement starts.
- ``ingress-vip-vrrp``: VIP held by the keepalived MASTER among the ingress nodes.
- ``ingress-vip-bgp``: every ingress node announces the VIP (dummy interface) to the
  router, which hashes flows over the next hops in its FIB (ECMP).
- ``ingress-tiered``: VRRP VIP -> cluster-level nginx -> namespace-level nginx pods
  (not host network) -> pods; a 502 from the second tier is not retried by the first.
- ``metallb-l2``: LoadBalancer IP answered by the leader speaker (first live speaker by
  hash), memberlist detection, then GARP; traffic -> that node's kube-proxy -> pods.
- ``metallb-bgp``: every speaker announces the IP; router ECMP -> kube-proxy -> pods.
- ``kube-vip-arp``: the Lease leader holds the IP; traffic -> its kube-proxy -> pods.

The cloud LB designs (``cloud-lb``, ``cloud-lb-ip``) live in `chaoslab.designs.cloud`.

Long-lived connections (``client.long_lived_share`` of the requests ride on them) are
pinned to the entry node they used at the fault and, on L4 paths (kube-proxy), to one
backend pod. One is *reset* when its packets reach another node (VIP moved, ECMP re-hash,
RFC 793 section 3.4), when the proxy on its entry died, or (L4) when its backend's process
died on a live node; it *hangs* while its entry or (L4) backend node is dead. Behind nginx
the backend is not pinned: each request of a keep-alive connection is balanced and retried
on its own (measured in the lab, docs/lab.md). A reset connection reconnects like a new
request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from chaoslab.designs.base import Design, Flow, ImpossibleTarget, Topology
from chaoslab.designs.nodeport import share_serving
from chaoslab.mechanisms.arp import VipNeighbour
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.bgp import BgpFabric
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod
from chaoslab.mechanisms.ecmp import SPACE, moved_from, resilient_buckets, route
from chaoslab.mechanisms.ingress import IngressCluster
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.kubevip import graceful_takeover, silent_takeover
from chaoslab.mechanisms.memberlist import detection_time, hash_order
from chaoslab.mechanisms.vrrp import VrrpGroup
from chaoslab.params.network import per_node

__all__ = ["DESIGNS"]

INGRESS = "ingress"
TIER2 = "ns-ingress"


# ============================================================================ base
class NetTopology(Topology):
    """Common parts: ingress workloads, VIP bookkeeping, targets, connections."""

    l7 = True

    def __init__(self, trial: Trial, cluster: KubernetesCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        self.vip_nodes: list[Node] = []  # nodes with the VIP configured, oldest first
        self.initial_vip: Node | None = None
        self._running: dict[str, bool] = {}
        self.extra_targets = {
            "vip-holder": self._vip_holder,
            "ingress-node": self._ingress_node,
            "router-link": self._vip_holder,
        }

    def decision_pods(self) -> list[Pod]:
        c = self.cluster
        if not isinstance(c, IngressCluster):
            return c.app.pods
        return [*c.app.pods, *(p for wl in c.extra.values() for p in wl.pods)]

    def decision_extra(self) -> list[object]:
        c = self.cluster  # nginx's upstreams decide a request it accepted
        return (
            [id(ng.upstreams) for ng in c.nginx.values()] if isinstance(c, IngressCluster) else []
        )

    # -------------------------------------------------------------- hooks for designs
    def holder(self) -> Node | None:
        return self.entry

    def ingress_name(self) -> str | None:
        return INGRESS

    # -------------------------------------------------------------- VIP bookkeeping
    def add_vip(self, node: Node) -> None:
        if node in self.vip_nodes:
            return
        self.vip_nodes.append(node)
        if node is not self.initial_vip:
            self.trial.milestone("vip.added")
        self.trial.changed()

    def remove_vip(self, node: Node) -> None:
        if node not in self.vip_nodes:
            return
        self.vip_nodes.remove(node)
        # vip.removed: the holder's own software took the address off (a powered-off node
        # removes nothing; live mode sees the same event in `ip monitor address`)
        if node is self.initial_vip and node.powered:
            self.trial.milestone("vip.removed")
        self.trial.changed()

    def has_vip(self, node: Node) -> bool:
        return node in self.vip_nodes and node.powered

    def watch_power(self) -> None:
        """A VIP on an interface (dummy, or added by keepalived) is lost on power-off."""

        def listener() -> None:
            for n in list(self.vip_nodes):
                if not n.powered:
                    self.remove_vip(n)

        self.trial.listeners.append(listener)

    # -------------------------------------------------------------- ingress pods
    def ingress_pod_on(self, node: Node, name: str = INGRESS) -> Pod | None:
        c = self.cluster
        if not isinstance(c, IngressCluster) or name not in c.extra:
            return None
        for p in c.extra[name].pods:
            if p.node is node and not p.gone:
                return p
        return None

    def nginx_success(self, node: Node) -> float:
        pod = self.ingress_pod_on(node)
        if pod is None:
            return 0.0
        c = self.cluster
        assert isinstance(c, IngressCluster)
        return c.nginx_of(pod).success(self._inner())

    def _inner(self) -> Callable[[Pod], float] | None:
        return None

    def watch_ingress_pods(self, on_start: Callable[[Pod], None] | None = None) -> None:
        c = self.cluster
        assert isinstance(c, IngressCluster)
        for wl in c.extra.values():
            for p in wl.pods:
                self._running[p.name] = p.running

        def listener() -> None:
            for wl in c.extra.values():
                for p in wl.pods:
                    was = self._running.get(p.name, False)
                    now = p.running and not p.gone
                    if now != was:
                        self._running[p.name] = now
                        if now:
                            c.nginx_of(p).restart_view()
                            if p.restarts or p.replacement:
                                self.trial.milestone("ingress.restarted")
                            if on_start is not None and p.workload.name == INGRESS:
                                on_start(p)

        self.trial.listeners.append(listener)

    # -------------------------------------------------------------- targets
    def _vip_holder(self) -> list[Node]:
        h = self.holder()
        if h is None:
            raise ImpossibleTarget(f"{self.design.key} has no VIP holder")
        return [h]

    def _ingress_node(self) -> list[Node]:
        if self.ingress_name() is None:
            raise ImpossibleTarget(
                f"{self.design.key} has no ingress tier (traffic goes to kube-proxy); "
                "target vip-holder or app-pod-node"
            )
        return self._vip_holder()

    def resolve(self, target: str) -> tuple[Literal["node", "pod"], list[Node] | list[Pod]]:
        if target == "ingress-pod":
            if self.ingress_name() is None:
                raise ImpossibleTarget(f"{self.design.key} has no ingress pod")
            h = self.holder()
            pod = self.ingress_pod_on(h) if h is not None else None
            if pod is None:
                raise ImpossibleTarget(f"{self.design.key}: no ingress pod on the entry node")
            return "pod", [pod]
        return super().resolve(target)


# ============================================================================ hostnet
class HostnetTopology(NetTopology):
    def __init__(self, trial: Trial, cluster: IngressCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        nodes = ingress_nodes(trial, cluster)
        cluster.add_ingress(INGRESS, "DaemonSet", nodes, len(nodes))
        self.entry = nodes[0]
        self.watch_ingress_pods()

    def a_new(self) -> float:
        assert self.entry is not None
        return self.nginx_success(self.entry)

    def entry_serves(self, entry: Node) -> bool:
        pod = self.ingress_pod_on(entry)
        return entry.reachable and pod is not None and pod.running

    def entry_success(self, entry: Node) -> float:
        return self.nginx_success(entry)

    def flows(self) -> list[Flow]:
        return backend_flows(self.cluster, [self.entry] if self.entry else [])


# ============================================================================ VIP + ARP
class ArpVipTopology(NetTopology):
    """A VIP on one node at a time, found by the clients' neighbour cache."""

    def setup_neighbour(self) -> None:
        self.neighbour = VipNeighbour(self.trial, self.answering, self.confirms)

    def answering(self) -> Node | None:
        live = [n for n in self.vip_nodes if n.reachable and n.powered]
        return live[-1] if live else None

    def confirms(self, node: Node) -> bool:
        return node.reachable and self.has_vip(node)

    def holder(self) -> Node | None:
        return self.initial_vip

    def delivers_to(self, entry: Node) -> bool:
        return self.neighbour.mac is entry

    def entry_serves(self, entry: Node) -> bool:
        pod = self.ingress_pod_on(entry)
        return entry.reachable and pod is not None and pod.running

    def entry_success(self, entry: Node) -> float:
        return self.nginx_success(entry) if self.has_vip(entry) else 0.0

    def a_new(self) -> float:
        mac = self.neighbour.mac
        if mac is None or not mac.reachable or not self.has_vip(mac):
            return 0.0
        return self.nginx_success(mac)

    def flows(self) -> list[Flow]:
        return backend_flows(self.cluster, [self.initial_vip] if self.initial_vip else [])


class VipPodTopology(ArpVipTopology):
    """The article's chart, routed mode: init container adds the VIP, preStop removes it."""

    def __init__(self, trial: Trial, cluster: IngressCluster, design: Design) -> None:
        super().__init__(trial, cluster, design)
        nodes = ingress_nodes(trial, cluster)
        replicas = max(1, trial.p.count("ingress.replicas"))
        wl = cluster.add_ingress(INGRESS, "Deployment", nodes, replicas)
        self.garp = trial.p.flag("vip.garp")
        for p in wl.pods:
            assert p.node is not None
            self.vip_nodes.append(p.node)
        self.initial_vip = self.vip_nodes[0]
        self.entry = self.initial_vip
        self.setup_neighbour()
        cluster.pod_hooks.append(self._pod_event)
        self.watch_ingress_pods(self._started)
        self.watch_power()

    def _started(self, pod: Pod) -> None:
        node = pod.node
        if node is None:
            return
        # the init container (re)adds the VIP; arping -U -c 3 announces it
        self.add_vip(node)
        if self.garp:
            self.neighbour.garp(node, frames=3)

    def _pod_event(self, what: str, pod: Pod) -> None:
        node = pod.node
        if what == "deleting" and node is not None and node.heartbeating:
            # the kubelet sees the deletion and runs the ingress-vip container's preStop
            delay = self.trial.p.draw("kube_controller_manager.controller_reaction")
            self.trial.at(delay, self._prestop, pod)

    def _prestop(self, pod: Pod) -> None:
        if pod.node is not None and pod.node.powered:
            others = [
                p
                for p in self.cluster.extra[INGRESS].pods  # type: ignore[attr-defined]
                if p is not pod and p.node is pod.node and p.running and not p.gone
            ]
            if not others:
                self.remove_vip(pod.node)


class VrrpTopology(ArpVipTopology):
    """keepalived beside each ingress (DaemonSet) on the ingress nodes."""

    def __init__(
        self, trial: Trial, cluster: IngressCluster, design: Design, *, tiered: bool = False
    ) -> None:
        super().__init__(trial, cluster, design)
        nodes = ingress_nodes(trial, cluster)
        self.tiered = tiered
        if tiered:
            workers = [n for n in cluster.nodes if n.role != "master"]
            replicas = max(1, trial.p.count("ingress.namespace_replicas"))
            cluster.add_ingress(TIER2, "Deployment", workers[::-1], replicas)
            cluster.add_ingress(INGRESS, "DaemonSet", nodes, len(nodes), upstream=TIER2)
        else:
            cluster.add_ingress(INGRESS, "DaemonSet", nodes, len(nodes))
        prios = per_node(trial.p, "vrrp.priority", len(nodes))
        self.vrrp = VrrpGroup(
            trial,
            nodes,
            prios,
            on_vip=self._on_vip,
            on_garp=self._on_garp,
            healthy=self._healthy,
        )
        self.initial_vip = self.vrrp.initial_master
        self.vip_nodes.append(self.initial_vip)
        self.entry = self.initial_vip
        self.setup_neighbour()
        cluster.pod_hooks.append(self._pod_event)
        self.watch_ingress_pods(self._started)

    def _on_vip(self, node: Node, present: bool) -> None:
        if present:
            self.add_vip(node)
        else:
            self.remove_vip(node)

    def _on_garp(self, node: Node, frames: int) -> None:
        self.neighbour.garp(node, frames)

    def _healthy(self, node: Node) -> bool:
        pod = self.ingress_pod_on(node)
        return pod is not None and pod.running

    def _inner(self) -> Callable[[Pod], float] | None:
        if not self.tiered:
            return None
        c = self.cluster
        assert isinstance(c, IngressCluster)
        return lambda pod: c.nginx_of(pod).success()

    def _started(self, pod: Pod) -> None:
        if pod.node is not None and pod.node.powered:
            inst = self.vrrp.by_node.get(pod.node.name)
            if inst is not None and inst.state == "DOWN":
                self.vrrp.start(pod.node)

    def _pod_event(self, what: str, pod: Pod) -> None:
        node = pod.node
        ours = what == "deleting" and pod.workload.name == INGRESS
        if ours and node is not None and node.powered and node.net_up and node.kubelet_up:
            delay = self.trial.p.draw("kube_controller_manager.controller_reaction")
            self.trial.at(delay, self._term, node)

    def _term(self, node: Node) -> None:
        if node.powered:
            self.vrrp.kill(node, "TERM")

    def has_vip(self, node: Node) -> bool:
        return node in self.vip_nodes and node.powered

    def daemons(self, node: Node) -> tuple[str, ...]:
        return ("keepalived",) if node.name in self.vrrp.by_node else ()

    def kill_daemon(self, node: Node, daemon: str, signal: str) -> None:
        self.vrrp.kill(node, signal)

    def start_daemon(self, node: Node, daemon: str) -> None:
        if node.powered:
            self.vrrp.start(node)

    def link_event(self, node: Node, up: bool) -> None:
        # keepalived tracks its interface: down -> FAULT (nothing can be sent), VIP removed
        inst = self.vrrp.by_node.get(node.name)
        if inst is None:
            return
        if not up and inst.state != "DOWN":
            was = inst.state == "MASTER"
            self.vrrp.kill(node, "KILL")
            if was:
                self.remove_vip(node)
        elif up and node.powered:
            self.vrrp.start(node)


# ============================================================================ BGP + ECMP
class BgpTopology(NetTopology):
    """Speakers announce the VIP / LoadBalancer IP; the router hashes flows over them."""

    def __init__(
        self, trial: Trial, cluster: KubernetesCluster, design: Design, *, ingress: bool
    ) -> None:
        super().__init__(trial, cluster, design)
        self.l7 = ingress
        self.mode = trial.p.choice("ecmp.mode")
        if ingress:
            assert isinstance(cluster, IngressCluster)
            speakers = ingress_nodes(trial, cluster)
            cluster.add_ingress(INGRESS, "DaemonSet", speakers, len(speakers))
            cluster.pod_hooks.append(self._pod_event)
            self.watch_ingress_pods(self._started)
        else:
            speakers = [n for n in cluster.nodes if n.role != "master"]
        self.speakers = speakers
        self.vip_nodes = list(speakers)
        if ingress:
            self.watch_power()
        self.bgp = BgpFabric(trial, speakers, self.has_vip, self._on_fib)
        self.entry = speakers[0]
        # L3 hash: each client address takes one path for all its connections, so with
        # few clients a(t) per trial is all or nothing instead of the FIB's mean
        n_clients = trial.p.count("client.source_addresses")
        l3 = trial.p.choice("ecmp.hash_policy") == "L3"
        self.client_hashes = (
            [int(h) for h in trial.rng.integers(0, SPACE, n_clients)] if l3 and n_clients else []
        )
        self.buckets = self._rebucket([], self.bgp.fib)

    def holder(self) -> Node | None:
        return self.speakers[0]

    def ingress_name(self) -> str | None:
        return INGRESS if self.l7 else None

    def _rebucket(self, old: list[Node], new: list[Node]) -> list[str]:
        """The resilient group's bucket table after a FIB change (only orphans move)."""
        if self.mode != "resilient" or not new:
            return []
        names = [n.name for n in new]
        return resilient_buckets(names, self.buckets if old and self.buckets else None)

    def _client_hop(self, fib: list[Node], buckets: list[str], h: int) -> Node:
        names = [n.name for n in fib]
        hop = route(self.mode, names, h, buckets=buckets or None)
        return fib[names.index(hop)]

    def _on_fib(self, old: list[Node], new: list[Node]) -> None:
        moved = moved_from(self.mode, [n.name for n in old], [n.name for n in new])
        old_buckets, self.buckets = self.buckets, self._rebucket(old, new)
        if self.conns is not None:
            self.conns.rehash(moved)
        if not (old and new):
            return
        # new requests in flight on a path that moves off a live next hop are reset on
        # the node they land on (no socket, no conntrack entry there)
        if self.client_hashes:
            was = [self._client_hop(old, old_buckets, h) for h in self.client_hashes]
            now = [self._client_hop(new, self.buckets, h) for h in self.client_hashes]
            share = sum(self.node_success(a) for a, b in zip(was, now, strict=True) if a is not b)
            share /= len(self.client_hashes)
        else:
            share = sum(moved.get(n.name, 0.0) * self.node_success(n) for n in old) / len(old)
        if share > 0:
            self.trial.blip(self.trial.p.draw("client.request_duration"), share)

    def _started(self, pod: Pod) -> None:
        if pod.node is not None:
            self.add_vip(pod.node)

    def _pod_event(self, what: str, pod: Pod) -> None:
        node = pod.node
        if what == "deleting" and node is not None and node.heartbeating:
            delay = self.trial.p.draw("kube_controller_manager.controller_reaction")
            self.trial.at(delay, self.remove_vip, node)

    def node_success(self, node: Node) -> float:
        if not node.reachable or not self.has_vip(node):
            return 0.0
        if self.l7:
            return self.nginx_success(node)
        return share_serving(node, node.proxy.external_endpoints()) if node.proxy else 0.0

    def a_new(self) -> float:
        fib = self.bgp.fib
        if not fib:
            return 0.0
        if self.client_hashes:
            hops = [self._client_hop(fib, self.buckets, h) for h in self.client_hashes]
            return sum(self.node_success(n) for n in hops) / len(hops)
        return sum(self.node_success(n) for n in fib) / len(fib)

    def delivers_to(self, entry: Node) -> bool:
        return entry in self.bgp.fib

    def entry_serves(self, entry: Node) -> bool:
        if not self.l7:
            return entry.reachable
        pod = self.ingress_pod_on(entry)
        return entry.reachable and pod is not None and pod.running

    def entry_success(self, entry: Node) -> float:
        return self.node_success(entry)

    def has_vip(self, node: Node) -> bool:
        if self.l7:
            return node in self.vip_nodes and node.powered
        return node.powered

    def remove_vip(self, node: Node) -> None:
        if node in self.vip_nodes:
            self.vip_nodes.remove(node)
            if node.powered:  # see NetTopology.remove_vip
                self.trial.milestone("vip.removed")
            self.trial.changed()

    def add_vip(self, node: Node) -> None:
        if node not in self.vip_nodes:
            self.vip_nodes.append(node)
            self.trial.milestone("vip.added")
            self.trial.changed()

    def flows(self) -> list[Flow]:
        return backend_flows(self.cluster, self.bgp.fib, l4=not self.l7)

    def daemons(self, node: Node) -> tuple[str, ...]:
        if node not in self.speakers:
            return ()
        return ("bgp",) if self.l7 else ("bgp", "metallb-speaker")

    def kill_daemon(self, node: Node, daemon: str, signal: str) -> None:
        self.bgp.kill(node, signal)

    def start_daemon(self, node: Node, daemon: str) -> None:
        if node.powered:
            self.bgp.start(node)


# ============================================================================ leaders (L2)
class LeaderVipTopology(NetTopology):
    """metallb-l2 and kube-vip-arp: one elected node answers ARP; kube-proxy serves."""

    l7 = False

    def __init__(
        self, trial: Trial, cluster: KubernetesCluster, design: Design, *, kind: str
    ) -> None:
        super().__init__(trial, cluster, design)
        self.kind = kind
        p = trial.p
        self.members = [n for n in cluster.nodes if n.role != "master"]
        self.daemon = {n.name: True for n in self.members}
        if kind == "metallb":
            self.order = hash_order(self.members, "lb-ip")
        else:
            self.order = list(self.members)
        self.leader: Node | None = self.order[0]
        self.initial_vip = self.leader
        self.entry = self.leader
        self.vip_nodes = [self.leader]
        self.dead: set[str] = set()  # members the others consider gone
        self._seen = {n.name: n.reachable for n in self.members}
        self._epoch = 0
        self._api_epoch = 0  # bumped at every API server change: stale timers do nothing
        self._api_down_at = 0.0
        self.neighbour = VipNeighbour(trial, self.answering, self.confirms)
        if kind == "metallb":
            self.garp_interval = p.draw("metallb.garp_interval")
            self.garp_window = p.draw("metallb.garp_duration")
        else:
            self.garp_interval = p.draw("kube_vip.arp_rate")
            self.garp_window = trial.horizon
        trial.listeners.append(self._on_change)

    def holder(self) -> Node | None:
        return self.initial_vip

    def ingress_name(self) -> str | None:
        return None

    def answering(self) -> Node | None:
        lead = self.leader
        if lead is not None and lead.reachable and self.daemon[lead.name]:
            return lead
        return None

    def confirms(self, node: Node) -> bool:
        # any live node's kube-proxy answers for the LoadBalancer IP (iptables)
        return node.reachable

    def delivers_to(self, entry: Node) -> bool:
        return self.neighbour.mac is entry

    def a_new(self) -> float:
        mac = self.neighbour.mac
        if mac is None or not mac.reachable or mac.proxy is None:
            return 0.0
        return share_serving(mac, mac.proxy.external_endpoints())

    def flows(self) -> list[Flow]:
        return backend_flows(self.cluster, [self.leader] if self.leader else [], l4=True)

    # -------------------------------------------------------------- election
    def _on_change(self) -> None:
        for n in self.members:
            r = n.reachable
            if r == self._seen[n.name]:
                continue
            self._seen[n.name] = r
            if not r:
                self._silent(n)
            else:
                self._rejoin(n)

    def _silent(self, n: Node) -> None:
        p = self.trial.p
        rng = self.trial.rng
        alive = [m for m in self.members if m.reachable and m.name not in self.dead]
        if self.kind == "metallb":
            delay = detection_time(
                rng,
                len(alive) + 1,
                probe=p.draw("memberlist.probe_interval"),
                mult=p.draw("memberlist.suspicion_mult"),
                max_mult=p.draw("memberlist.suspicion_max_timeout_mult"),
                gossip=p.draw("memberlist.gossip_interval"),
            )
            self._epoch += 1
            self.trial.at(delay, self._mark_dead, n, self._epoch)
        elif n is self.leader:
            t, _obs = silent_takeover(
                rng,
                len(alive),
                lease=p.draw("kube_vip.lease_duration"),
                retry=p.draw("kube_vip.retry_period"),
                jitter=p.draw("kube_vip.retry_jitter_factor"),
            )
            self._epoch += 1
            self.trial.at(t, self._mark_dead, n, self._epoch)
            if n.powered:
                # a cut-off leader cannot renew: it gives the VIP up after RenewDeadline
                self.trial.at(p.draw("kube_vip.renew_deadline"), self._give_up, n)

    def _give_up(self, n: Node) -> None:
        if not n.reachable and n in self.vip_nodes:
            self.remove_vip(n)

    def _mark_dead(self, n: Node, epoch: int) -> None:
        if n.reachable and self.daemon[n.name]:
            return
        if self.kind == "kube-vip" and not self.cluster.cp.api_up:
            self.dead.add(n.name)  # the Lease expired, but nobody can take it yet
            return
        self.trial.milestone(
            "memberlist.dead" if self.kind == "metallb" else "kube_vip.leader_changed"
        )
        self.dead.add(n.name)
        self._elect()

    def _rejoin(self, n: Node) -> None:
        if n.name not in self.dead:
            return
        delay = self.trial.p.draw("memberlist.gossip_interval") if self.kind == "metallb" else 0.0
        self.trial.at(delay, self._joined, n)

    def _joined(self, n: Node) -> None:
        if n.reachable and self.daemon[n.name]:
            self.dead.discard(n.name)
            if self.kind == "metallb":
                self._elect()  # stateless hash: the returning node may take the IP back

    def _elect(self) -> None:
        if self.kind == "kube-vip" and not self.cluster.cp.api_up:
            return  # nobody can write the Lease: the election waits for the API server
        live = [
            m for m in self.order if m.name not in self.dead and m.reachable and self.daemon[m.name]
        ]
        if (
            self.kind == "kube-vip"
            and self.leader is not None
            and self.leader.name not in self.dead
            and self.leader in live
        ):
            return
        new = live[0] if live else None
        if new is self.leader:
            return
        old = self.leader
        self.leader = new
        if old is not None and old in self.vip_nodes:
            self.remove_vip(old)
        if new is not None:
            if new is not self.initial_vip:
                self.trial.milestone(
                    "metallb.leader_changed"
                    if self.kind == "metallb"
                    else "kube_vip.leader_changed"
                )
            self.vip_nodes.append(new)
            self.trial.milestone("vip.added")
            self.neighbour.garp(new)
            self._epoch += 1
            if self.neighbour.mac is not new:
                self._garp_loop(new, self._epoch, self.trial.now + self.garp_window)
        self.trial.changed()

    def _garp_loop(self, node: Node, epoch: int, until: float) -> None:
        # repeated GARPs matter when the first one was lost (sender cut off at that time)
        if (
            epoch != self._epoch
            or self.leader is not node
            or self.trial.now + self.garp_interval > until
        ):
            return
        self.trial.at(self.garp_interval, self._garp_tick, node, epoch, until)

    def _garp_tick(self, node: Node, epoch: int, until: float) -> None:
        if epoch == self._epoch and self.leader is node:
            self.neighbour.garp(node)
            # once the neighbour points at the leader, further GARPs change nothing: only
            # the leader sends them, so the loop can stop (kube-vip's runs for ever)
            if self.neighbour.mac is not node:
                self._garp_loop(node, epoch, until)

    # -------------------------------------------------------------- the API server
    def api_changed(self, up: bool) -> None:
        """kube-vip's leader renews a Lease: without an API server it steps down after
        RenewDeadline and drops the VIP; once the API server answers again, candidates
        take the expired Lease. MetalLB's memberlist needs no API server to keep the IP."""
        if self.kind != "kube-vip":
            return
        self._api_epoch += 1
        p = self.trial.p
        if not up:
            self._api_down_at = self.trial.now
            self.trial.at(p.draw("kube_vip.renew_deadline"), self._api_lost, self._api_epoch)
        elif self.leader is None:
            self.trial.at(self._reacquire_delay(), self._api_back, self._api_epoch)

    def _api_lost(self, epoch: int) -> None:
        if epoch != self._api_epoch or self.leader is None:
            return
        old, self.leader = self.leader, None
        if old in self.vip_nodes:
            self.remove_vip(old)
        self.trial.changed()

    def _reacquire_delay(self) -> float:
        """From the API server's return to a candidate's acquiring the Lease: the takeover
        a silent leader's death at the outage's start would have had, or, when that instant
        has passed while no poll could succeed, the next poll of any candidate."""
        p, rng = self.trial.p, self.trial.rng
        alive = [m for m in self.members if m.reachable and self.daemon[m.name]]
        retry, jitter = p.draw("kube_vip.retry_period"), p.draw("kube_vip.retry_jitter_factor")
        t, _ = silent_takeover(
            rng, len(alive), lease=p.draw("kube_vip.lease_duration"), retry=retry, jitter=jitter
        )
        waited = self.trial.now - self._api_down_at
        if t >= waited:
            return t - waited
        return graceful_takeover(rng, len(alive), retry=retry, jitter=jitter)

    def _api_back(self, epoch: int) -> None:
        if epoch == self._api_epoch and self.leader is None:
            self._elect()

    # -------------------------------------------------------------- daemons
    def daemons(self, node: Node) -> tuple[str, ...]:
        if node not in self.members:
            return ()
        return ("metallb-speaker",) if self.kind == "metallb" else ("kube-vip",)

    def kill_daemon(self, node: Node, daemon: str, signal: str) -> None:
        self.daemon[node.name] = False
        p = self.trial.p
        if signal == "TERM":
            # memberlist Leave / ReleaseOnCancel: the others know at once
            if self.kind == "metallb":
                delay = p.draw("memberlist.gossip_interval") * self.trial.rng.random()
            elif node is self.leader:
                delay = graceful_takeover(
                    self.trial.rng,
                    len(self.members) - 1,
                    retry=p.draw("kube_vip.retry_period"),
                    jitter=p.draw("kube_vip.retry_jitter_factor"),
                )
            else:
                return
            if node in self.vip_nodes:
                self.remove_vip(node)
            self.trial.at(delay, self._mark_dead, node, self._epoch)
        else:
            self._silent(node)

    def start_daemon(self, node: Node, daemon: str) -> None:
        self.daemon[node.name] = True
        if node.name in self.dead:
            self._rejoin(node)


# ============================================================================ helpers
def ingress_nodes(trial: Trial, cluster: KubernetesCluster) -> list[Node]:
    which = trial.p.choice("ingress.nodes")
    if which == "worker":
        nodes = [n for n in cluster.nodes if n.role != "master"]
    else:
        nodes = [n for n in cluster.nodes if n.role == which]
    if not nodes:
        raise ImpossibleTarget(f"ingress.nodes={which}: the cluster has no such node")
    return nodes


def backend_flows(
    cluster: KubernetesCluster, entries: list[Node], *, l4: bool = False
) -> list[Flow]:
    """Connections spread evenly over entries and, from each, over the ready backends."""
    out: list[Flow] = []
    if not entries:
        return out
    for e in entries:
        local = l4 and e.proxy is not None
        eps = e.proxy.external_endpoints() if local and e.proxy else cluster.service.ready
        for p in eps:
            out.append((1.0 / len(entries) / len(eps), e, p))
    return out


def _ingress_cluster(trial: Trial, spec: ClusterSpec) -> IngressCluster:
    return IngressCluster(trial, spec, proxy_nodes=[])


def _build(key: str) -> Callable[[Trial, ClusterSpec], Topology]:
    def build(trial: Trial, spec: ClusterSpec) -> Topology:
        d = DESIGNS[key]
        if key == "ingress-hostnet":
            return HostnetTopology(trial, _ingress_cluster(trial, spec), d)
        if key == "ingress-vip-pod":
            return VipPodTopology(trial, _ingress_cluster(trial, spec), d)
        if key == "ingress-vip-vrrp":
            return VrrpTopology(trial, _ingress_cluster(trial, spec), d)
        if key == "ingress-tiered":
            return VrrpTopology(trial, _ingress_cluster(trial, spec), d, tiered=True)
        if key == "ingress-vip-bgp":
            return BgpTopology(trial, _ingress_cluster(trial, spec), d, ingress=True)
        if key == "metallb-bgp":
            return BgpTopology(trial, KubernetesCluster(trial, spec), d, ingress=False)
        if key == "metallb-l2":
            return LeaderVipTopology(trial, KubernetesCluster(trial, spec), d, kind="metallb")
        if key == "kube-vip-arp":
            return LeaderVipTopology(trial, KubernetesCluster(trial, spec), d, kind="kube-vip")
        raise KeyError(key)

    return build


_T_ING = (
    "app-pod",
    "app-pod-node",
    "app-pod-nodes",
    "idle-node",
    "vip-holder",
    "ingress-node",
    "ingress-pod",
    "router-link",
)
_T_L4 = ("app-pod", "app-pod-node", "app-pod-nodes", "idle-node", "vip-holder", "router-link")

DESIGNS: dict[str, Design] = {
    d.key: d
    for d in [
        Design(
            "ingress-hostnet",
            "Clients use one node's IP; ingress-nginx in the host network proxies to pod IPs.",
            "article",
            "one node's IP, nginx in the host network",
            "nothing for that node; endpoints -> nginx for the backends",
            _build("ingress-hostnet"),
            targets=_T_ING,
        ),
        Design(
            "ingress-vip-pod",
            "The article's chart (routed mode): the ingress pod's init container adds the VIP "
            "and sends GARP, its preStop removes it.",
            "article",
            "VIP added by the ingress pod's init container",
            "pod deletion/eviction + rescheduling + init container GARP",
            _build("ingress-vip-pod"),
            targets=_T_ING,
        ),
        Design(
            "ingress-vip-bgp",
            "DaemonSet ingress; each node announces the VIP (dummy interface) by BGP; the "
            "router does ECMP.",
            "article",
            "VIP announced by BGP from every ingress node, router ECMP",
            "BGP hold timer or BFD, withdrawal, ECMP re-hash",
            _build("ingress-vip-bgp"),
            targets=_T_ING,
        ),
        Design(
            "ingress-vip-vrrp",
            "keepalived beside the ingress on each ingress node holds the VIP (VRRP).",
            "article",
            "VIP held by the keepalived MASTER",
            "VRRP Master_Down_Interval or priority-0 advert, then GARP",
            _build("ingress-vip-vrrp"),
            targets=_T_ING,
        ),
        Design(
            "ingress-tiered",
            "Cluster-level ingress on a VRRP VIP -> namespace-level ingress pods (not host "
            "network) -> app pods.",
            "article",
            "VIP (VRRP) -> cluster ingress -> namespace ingress",
            "VRRP for the first tier, endpoints -> nginx for both tiers",
            _build("ingress-tiered"),
            targets=_T_ING,
        ),
        Design(
            "metallb-l2",
            "MetalLB L2: the leader speaker (by hash) answers ARP for the LoadBalancer IP.",
            "beyond",
            "LoadBalancer IP answered by ARP from one speaker",
            "memberlist detection + GARP",
            _build("metallb-l2"),
            targets=_T_L4,
        ),
        Design(
            "metallb-bgp",
            "MetalLB BGP: every speaker announces the LoadBalancer IP, router ECMP, "
            "kube-proxy on each node.",
            "beyond",
            "LoadBalancer IP announced by BGP from every node",
            "hold timer or BFD, ECMP re-hash",
            _build("metallb-bgp"),
            targets=_T_L4,
            default_profiles=("metallb-native",),
        ),
        Design(
            "kube-vip-arp",
            "kube-vip ARP mode: the Lease leader holds the IP and sends GARPs.",
            "beyond",
            "VIP held by the Lease leader",
            "lease expiry + retry jitter + GARP",
            _build("kube-vip-arp"),
            targets=_T_L4,
        ),
    ]
}
