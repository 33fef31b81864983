"""What a design is: a wiring of mechanisms plus the request path that defines a(t).

A design is registered as a `Design`: a key (``nodeport-lb``), a one-line summary, where
it comes from (the article or beyond), and a ``build`` function that wires mechanisms on a
`Trial` and returns a `Topology`. The topology answers three questions:

- ``availability()``: the probability a new request succeeds now (DESIGN.md semantics);
- ``resolve(target)``: which nodes or pods a fault target names in this design;
- ``flows()``: the paths of established long-lived connections at the fault, to count
  resets and hangs.

Targets (faults name one or a list):
``app-pod``, ``app-pod-node``, ``app-pod-nodes``, ``entry-node``, ``idle-node``, a node
name (``controller-2``), ``node:NAME``, ``pod:NAME``; network designs add their own
(``vip-holder``, ``ingress-node``, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod
from chaoslab.mechanisms.k8s import KubernetesCluster

__all__ = ["Design", "Flow", "ImpossibleTarget", "Topology", "initial_app_nodes"]


class ImpossibleTarget(ValueError):
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

    def __init__(self, trial: Trial, cluster: KubernetesCluster, design: Design) -> None:
        self.trial = trial
        self.cluster = cluster
        self.design = design
        self.extra_targets = {}

    @abstractmethod
    def availability(self) -> float:
        """Probability that a new request issued now succeeds within the client timeout."""

    def targets_resolved(self, nodes: list[Node], pods: list[Pod]) -> None:
        """Called once the fault's targets are known (e.g. to keep a client off them)."""
        return None

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
