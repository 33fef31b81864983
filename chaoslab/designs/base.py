"""What a design is: a wiring of mechanisms plus the request path that defines a(t).

A design is registered as a `Design`: a key (``nodeport-lb``), a one-line summary, where
it comes from (the article or beyond), and a ``build`` function that wires mechanisms on a
`Trial` and returns a `Topology`. The topology answers three questions:

- ``availability()``: the probability a new request succeeds now (docs/model-kubernetes.md);
- ``resolve(target)``: which nodes or pods a fault target names in this design;
- ``flows()``: the paths of established long-lived connections at the fault, to count
  resets and hangs.

Targets (faults name one or a list):
``app-pod``, ``app-pod-node``, ``app-pod-nodes``, ``entry-node``, ``idle-node``, a node
name (``controller-2``), ``node:NAME``, ``pod:NAME``; network designs add their own
(``vip-holder``, ``ingress-node``, ...). Control-plane faults name ``control-plane`` (every
master) or ``controller-manager-leader`` (the master whose kube-controller-manager leads).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from chaoslab.errors import UserError
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod
from chaoslab.mechanisms.ingress import IngressCluster
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.tcp import SynRetransmission

__all__ = ["Connections", "Design", "Flow", "ImpossibleTarget", "Topology", "initial_app_nodes"]


class ImpossibleTarget(UserError):
    """A fault target that does not exist or makes no sense in a design (message says why)."""


#: one established connection path: (weight, the node it enters by, the backend pod)
Flow = tuple[float, Node | None, Pod]


def initial_app_nodes(spec: ClusterSpec) -> list[str]:
    """Nodes of the app's pods at the fault, in pod order (deterministic placement)."""
    names = [n for n, role in spec.node_names() if role in spec.app_roles()]
    if not names:
        return []
    if spec.app_kind == "DaemonSet":
        return names
    return [names[i % len(names)] for i in range(spec.replicas)]


class Topology(ABC):
    """Base of every design's built topology (Kubernetes cluster + entry path)."""

    #: the design's entry node (one node's IP), if it has one
    entry: Node | None = None
    #: target names this design adds beyond the common ones, with their resolution
    extra_targets: dict[str, Callable[[], list[Node]]]

    #: L7 entry (nginx): keep-alive requests are balanced on their own, not pinned
    l7 = False

    def __init__(self, trial: Trial, cluster: KubernetesCluster, design: Design) -> None:
        self.trial = trial
        self.cluster = cluster
        self.design = design
        self.extra_targets = {}
        self.long_lived = trial.p.draw("client.long_lived_share")
        self.conns: Connections | None = None
        #: late successes of requests whose first SYN was lost (`chaoslab.mechanisms.tcp`)
        self.syn = SynRetransmission(trial, self.decision_state, self.syn_refused)
        cluster.cp.listeners.append(self.api_changed)

    @abstractmethod
    def a_new(self) -> float:
        """Probability that a new request (new connection) issued now succeeds in time."""

    def availability(self) -> float:
        """a(t): new requests, and the share riding on connections opened before the fault."""
        a = self.a_new()
        c = self.cluster
        # nginx's latency model asks for one delay's share (`latency_mode`): not a(t)
        record = not (isinstance(c, IngressCluster) and c.latency_mode is not None)
        conns = self.conns
        if conns is not None and self.long_lived > 0:
            ll = self.long_lived
            if record:  # new connections: new requests and those of reset or given-up flows
                self.syn.record(a, 1 - ll + ll * (conns.reset + conns.gave_up) / conns.total)
            return (1 - ll) * a + ll * conns.availability(a)
        if record:
            self.syn.record(a)
        return a

    def syn_refused(self) -> bool:
        """Would a new request's SYN meet a reset now: an L7 entry the SYN reaches is up but
        its proxy is not running (connection refused; no retransmission follows)?"""
        if not self.l7:
            return False  # L4: a dead backend process's reset changes `decision_state`
        if type(self).delivers_to is Topology.delivers_to:
            entries = [self.entry] if self.entry is not None else []
        else:
            entries = [n for n in self.cluster.nodes if self.delivers_to(n)]
        return any(n.reachable and not self.entry_serves(n) for n in entries)

    def decision_state(self) -> tuple[object, ...]:
        """What decides a request once its SYN got somewhere: each kube-proxy's rules, the
        pods' processes and what the design adds (`decision_extra`: an LB's rotation,
        nginx's upstreams; `chaoslab.mechanisms.tcp`). Rules by identity: one re-written
        unchanged only withholds late successes."""
        c = self.cluster
        state: list[object] = [id(n.proxy.programmed) for n in c.nodes if n.proxy is not None]
        state += [(id(p), p.running, p.gone) for p in self.decision_pods()]
        state += self.decision_extra()
        return tuple(state)

    def decision_pods(self) -> list[Pod]:
        """The pods whose process state decides a request: the app's (a design with more
        workloads, such as an ingress tier, adds its own)."""
        return self.cluster.app.pods

    def decision_extra(self) -> list[object]:
        """The design's own decisions beyond kube-proxy and the pods, as comparable values."""
        return []

    # hooks the connection tracker asks (a design whose entry can move overrides them)
    def delivers_to(self, entry: Node) -> bool:
        """Do packets of a connection established via ``entry`` still reach ``entry``?"""
        return True

    def entry_serves(self, entry: Node) -> bool:
        return entry.reachable

    def entry_success(self, entry: Node) -> float:
        return 1.0 if entry.reachable else 0.0

    def targets_resolved(self, nodes: list[Node], pods: list[Pod]) -> None:
        """Called once the fault's targets are known: start tracking established flows."""
        self.start_connections()

    def start_connections(self) -> None:
        flows = self.flows()
        if flows:
            self.conns = Connections(self, flows, l7=self.l7)
            self.trial.listeners.append(self._track_conns)

    def _track_conns(self) -> None:
        if self.conns is not None and self.conns.update() and self.long_lived > 0:
            self.trial.changed()

    def flows(self) -> list[Flow]:
        """Established connections at the fault; by default the same spread as requests."""
        return []

    # ------------------------------------------------------------------ network faults
    def daemons(self, node: Node) -> tuple[str, ...]:
        """Daemons a ``daemon-kill`` fault can stop on ``node`` (keepalived, bgp, ...)."""
        return ()

    def kill_daemon(self, node: Node, daemon: str, signal: str) -> None:
        raise ImpossibleTarget(f"{self.design.key} runs no {daemon} on {node.name}")

    def start_daemon(self, node: Node, daemon: str) -> None:
        """The killed daemon runs again (its container was restarted)."""
        return None

    def link_event(self, node: Node, up: bool) -> None:
        """The node's uplink went down or up (daemons tracking the interface react)."""
        return None

    def api_changed(self, up: bool) -> None:
        """The API server stopped or started answering (`ControlPlane.api_up`): a design
        whose daemon holds a Kubernetes Lease (kube-vip) cannot renew it meanwhile."""
        return None

    # ------------------------------------------------------------------ targets
    def resolve(self, target: str) -> tuple[Literal["node", "pod"], list[Node] | list[Pod]]:
        c = self.cluster
        pods = [p for p in c.app.pods if not p.gone]
        if target == "app-pod":
            return "pod", [self._app_pod()]
        if target in ("app-pod-node", "app-pod-nodes"):
            nodes = [p.node for p in pods if p.node is not None]
            uniq: list[Node] = []
            for n in nodes:
                if n not in uniq:
                    uniq.append(n)
            if target == "app-pod-nodes":
                return "node", uniq
            # prefer a node that is not the design's entry: a pure backend failure
            others = [n for n in uniq if n is not self.entry]
            return "node", [(others or uniq)[0]]
        if target == "entry-node":
            if self.entry is None:
                raise ImpossibleTarget(
                    f"{self.design.key} has no single entry node ({self.design.entry}); "
                    "target app-pod-node, idle-node or a named node instead"
                )
            return "node", [self.entry]
        if target == "idle-node":
            app_nodes = {p.node.name for p in pods if p.node is not None}
            idle = [
                n
                for n in c.nodes
                if n.role != "master" and n.name not in app_nodes and n is not self.entry
            ]
            if not idle:
                raise ImpossibleTarget(
                    "the cluster has no worker node without an app pod (idle-node)"
                )
            return "node", [idle[0]]
        if target in self.extra_targets:
            return "node", self.extra_targets[target]()
        if target == "control-plane":
            return "node", list(c.cp.masters)
        if target == "controller-manager-leader":
            leader = c.cp.leader
            return "node", [leader] if leader is not None else list(c.cp.masters[:1])
        if target.startswith("pod:"):
            name = target[4:]
            for p in pods:
                if p.name == name:
                    return "pod", [p]
            known = ", ".join(p.name for p in pods)
            raise ImpossibleTarget(f"no pod named {name!r} (the app's pods: {known})")
        name = target[5:] if target.startswith("node:") else target
        if name in c.by_name:
            return "node", [c.by_name[name]]
        raise ImpossibleTarget(
            f"unknown target {target!r} for {self.design.key}; use one of "
            f"{', '.join(self.design.targets)}, a node name ({', '.join(c.by_name)}) or pod:NAME"
        )

    def _app_pod(self) -> Pod:
        pods = [p for p in self.cluster.app.pods if not p.gone]
        if self.entry is not None:
            for p in pods:
                if p.node is self.entry:
                    return p
        return pods[0]


class Connections:
    """Established long-lived connections, followed over the whole trial.

    Each flow is pinned to the node it entered by and, on L4 paths, to one backend pod.
    A flow is *reset* when its packets reach another node (VIP moved, ECMP re-hash: no
    conntrack state there, RFC 793 section 3.4), when the proxy on its entry died, or (L4)
    when its backend's process died on a live node. It *hangs* while its entry or (L4)
    backend node is dead or cut off. A hang that heals within the client's timeout
    recovers on the same connection (TCP retransmits the unacknowledged request, RFC 6298
    section 5); one that lasts the client's timeout counts as hung and is given up then
    (`_give_up`: the client closes it and reconnects), healed later or never. Reset and
    given-up flows reconnect like new requests. ``trial.connections`` holds (reset, hung)
    shares. Not modelled: the connection's own retransmission back-off after a heal
    (the request is answered at its next retransmission, not at the heal).
    """

    __slots__ = (
        "_delivered",
        "_entries",
        "_ok",
        "_pods",
        "_seen",
        "_where",
        "flows",
        "gave_up",
        "l7",
        "reset",
        "timeout",
        "topo",
        "total",
    )

    def __init__(self, topo: Topology, flows: list[Flow], *, l7: bool) -> None:
        self.topo = topo
        self.l7 = l7
        self.timeout = topo.trial.p.draw("client.timeout")
        # [entry, pod, ok weight, hung weight, hung since]
        self.flows: list[list] = [[e, p, w, 0.0, 0.0] for w, e, p in flows if e is not None]
        self.total = sum(w for w, _, _ in flows) or 1.0
        self.reset = 0.0
        self.gave_up = 0.0
        self._entries = list({id(f[0]): f[0] for f in self.flows}.values())
        self._pods = list({id(f[1]): f[1] for f in self.flows}.values())
        #: each flow's (entry, pod) positions in those lists
        where_e = {id(e): i for i, e in enumerate(self._entries)}
        where_p = {id(p): i for i, p in enumerate(self._pods)}
        self._where = [(where_e[id(f[0])], where_p[id(f[1])]) for f in self.flows]
        #: the topology delivers to every entry (no VIP or ECMP to move away from it)
        self._delivered = type(topo).delivers_to is Topology.delivers_to
        #: L4: the weight of flows that still work (`availability`), None: to be summed
        self._ok: float | None = None
        #: the path state the last update saw: an update in the same state changes nothing
        self._seen: tuple[list[tuple[bool, ...]], list[tuple[object, ...]]] | None = None

    def _path_state(self) -> tuple[list[tuple[bool, ...]], list[tuple[object, ...]]]:
        """Everything `update` reads of the cluster, per entry and per backend pod."""
        topo = self.topo
        delivers = topo.delivers_to
        entries: list[tuple[bool, ...]]
        if self.l7:
            serves = topo.entry_serves
            entries = [(delivers(e), e.powered, e.net_up, serves(e)) for e in self._entries]
        elif self._delivered:
            entries = [(True, e.powered, e.net_up) for e in self._entries]
        else:
            entries = [(delivers(e), e.powered, e.net_up) for e in self._entries]
        pods: list[tuple[object, ...]] = [
            (p.running, n, n.powered, n.net_up) if (n := p.node) is not None else (p.running,)
            for p in self._pods
        ]
        return entries, pods

    def rehash(self, moved: dict[str, float]) -> None:
        """An ECMP group changed: ``moved`` is each old next hop's share of flows that
        moved (`chaoslab.mechanisms.ecmp.moved_from`); those flows are reset."""
        for f in self.flows:
            m = moved.get(f[0].name, 0.0)
            if m > 0:
                self.reset += m * (f[2] + f[3])
                f[2] *= 1 - m
                f[3] *= 1 - m
                self._seen = self._ok = None

    def _hang(self, f: list) -> bool:
        if f[2]:
            if not f[3]:
                trial = self.topo.trial
                f[4] = trial.now
                if self.topo.long_lived > 0:  # (otherwise only the fates count: the same)
                    trial.at(self.timeout, self._give_up, f, f[4])
            f[2], f[3] = 0.0, f[2] + f[3]
            return True
        return False

    def _give_up(self, f: list, since: float) -> None:
        """The request on a flow hung since ``since`` timed out (``client.timeout``): the
        client drops the connection and reconnects like a new request, whether or not
        the path ever heals (a flow hung on a dead backend is not waited on for ever)."""
        if not f[3] or f[4] != since:
            return  # it healed meanwhile (TCP retransmitted on the same connection)
        self.gave_up += f[3]
        f[3] = 0.0
        self._ok = None
        self.topo.trial.changed()

    def _unhang(self, f: list) -> bool:
        if not f[3]:
            return False
        if self.topo.trial.now - f[4] >= self.timeout:
            self.gave_up += f[3]  # the client timed out long ago: it reconnected
            f[3] = 0.0
        else:
            f[2], f[3] = f[2] + f[3], 0.0
        return True

    def update(self) -> bool:
        """Follow the flows whose entry or backend changed since the last update.

        A flow's step depends on its entry's and backend pod's state only (and on the time
        when it stops hanging, which only such a change triggers): in the state it last
        saw it would change nothing, so only flows of a moved entry or pod are walked.
        """
        entries, pods = self._path_state()
        seen = self._seen
        todo: Sequence[int]
        if seen is None:
            todo = range(len(self.flows))  # first update, or after a re-hash: every flow
        else:
            if entries == seen[0] and pods == seen[1]:
                return False
            moved_e = [a != b for a, b in zip(entries, seen[0], strict=True)]
            moved_p = [a != b for a, b in zip(pods, seen[1], strict=True)]
            todo = [k for k, (e, p) in enumerate(self._where) if moved_e[e] or moved_p[p]]
        self._seen = (entries, pods)
        self._ok = None  # flows may move below
        # the entry's state is the same for all of its flows: 0 reset, 1 hung, 2 delivered
        states = [
            0 if not e[0] else 1 if not (e[1] and e[2]) else 0 if self.l7 and not e[3] else 2
            for e in entries
        ]
        changed = False
        flows = self.flows
        for k in todo:
            f = flows[k]
            if f[2] + f[3] > 1e-12:
                changed |= self._step(f, states[self._where[k][0]])
        # the same sum, in the same order, as adding each hung flow's weight in the walk
        hung_total = 0.0
        for f in flows:
            if f[2] + f[3] > 1e-12:
                hung_total += f[3]
        self.topo.trial.connections = (
            self.reset / self.total,
            (self.gave_up + hung_total) / self.total,
        )
        return changed

    def _step(self, f: list, st: int) -> bool:
        """One flow's reaction to its entry's state ``st`` and its backend's."""
        entry, pod, ok, hung = f[0], f[1], f[2], f[3]
        if st == 0:
            self.reset += ok + hung
            f[2] = f[3] = 0.0
            return True
        # behind nginx each request of a keep-alive connection is balanced and retried
        # on its own: the backend is not pinned (measured in the lab)
        serves = st == 2 and (self.l7 or pod.serves_from(entry))
        if st == 1 or (not serves and (pod.node is None or not pod.node.reachable)):
            return self._hang(f)
        if serves:
            # (_unhang is a no-op for a flow that is not hung: skip the call)
            return self._unhang(f) if hung else False
        # L4, backend process dead on a live node: the kernel answers with a reset
        self.reset += ok + hung
        f[2] = f[3] = 0.0
        return True

    def availability(self, a_new: float) -> float:
        ok = self._ok
        if ok is None:
            ok = 0.0
            for f in self.flows:
                if f[2]:
                    ok += f[2] * (self.topo.entry_success(f[0]) if self.l7 else 1.0)
            if not self.l7:
                self._ok = ok  # L4: the flows' weights alone; kept until a flow moves
        return (ok + (self.reset + self.gave_up) * a_new) / self.total


@dataclass(frozen=True)
class Design:
    key: str
    summary: str
    origin: Literal["article", "beyond"]
    entry: str
    failover: str
    build: Callable[[Trial, ClusterSpec], Topology]
    targets: tuple[str, ...] = ("app-pod", "app-pod-node", "app-pod-nodes", "idle-node")
    #: fault kinds that make no sense for this design, with the reason
    refuses: dict[str, str] = field(default_factory=dict)
    #: profiles this design implies (MetalLB's own BGP speaker for metallb-bgp); the
    #: experiment's profiles of the same family win
    default_profiles: tuple[str, ...] = ()

    def profiles(self, chosen: Sequence[str]) -> list[str]:
        """``chosen`` plus this design's default profiles of families it does not set."""
        from chaoslab.params import profile

        families = {profile(n).family for n in chosen}
        extra = [n for n in self.default_profiles if profile(n).family not in families]
        return extra + list(chosen)
