"""Fault scenarios: what breaks at t = 0, where, and for how long.

A `Fault` is a value (kind, target, options) written the same way for simulation and
live mode: ``{kind: node-crash, target: app-pod-node, repair: 10m}``. Its options map to
``fault.*`` catalogue keys (their defaults and sources live there), so a fault never
carries a hidden default. `FAULTS` holds each kind's injection over a `Topology`.

A fault can name a second, simultaneous effect: ``{kind: node-crash, with: apiserver-down}``
injects the named kind at its default target as well, ``with_delay`` later (its own values
come from the catalogue or the fault's ``params:``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from chaoslab.designs.base import ImpossibleTarget, Topology
from chaoslab.designs.network import NetTopology
from chaoslab.errors import UserError
from chaoslab.mechanisms.cluster import Node, Pod
from chaoslab.params.dists import Fixed, ParseError, parse_value

__all__ = ["FAULTS", "Fault", "FaultKind", "ImpossibleFault", "TargetKind"]

TargetKind = Literal["node", "pod", "daemon", "link"]


class ImpossibleFault(UserError):
    """A fault that cannot apply to a design or target; the message says why."""


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str | tuple[str, ...] = ""
    options: Mapping[str, object] = field(default_factory=dict)
    #: the name in result tables; default: `result_name` built from kind and options
    name: str = ""

    @property
    def targets(self) -> tuple[str, ...]:
        if isinstance(self.target, tuple):
            return self.target
        return (self.target or FAULTS[self.kind].default_target,)

    @property
    def label(self) -> str:
        """Target text for result tables: ``app-pod-node`` or ``controller-1+controller-2``."""
        return "+".join(self.targets)

    @property
    def result_name(self) -> str:
        """The ``fault`` column: the kind, then the options that tell two faults of a kind
        apart (``daemon-kill/keepalived-term``, ``link-down/0.5s``), shaped like the lab's
        fault labels so a prediction and a lab drill name the same fault the same way."""
        if self.name:
            return self.name
        o = self.options
        parts = [self.kind]
        if "daemon" in o:
            parts.append(
                f"{o['daemon']}-{str(o['signal']).lower()}" if "signal" in o else str(o["daemon"])
            )
        elif "signal" in o:
            parts.append(str(o["signal"]).lower())
        for opt, raw in o.items():
            if opt in ("daemon", "signal"):
                continue
            if isinstance(raw, bool):  # a flag option names itself when set
                if raw:
                    parts.append(opt.replace("_", "-"))
                continue
            text = _option_text(raw)
            if text is None:
                continue  # 'never' (a duration or repair of inf) is the kind's plain meaning
            parts.append(text if opt == "duration" else f"{opt}-{text}")
        return "/".join(parts)

    def overrides(self) -> dict[str, object]:
        """Catalogue overrides this fault's options stand for."""
        kind = FAULTS[self.kind]
        out: dict[str, object] = {}
        for opt, raw in self.options.items():
            if opt not in kind.options:
                known = ", ".join(kind.options) or "none"
                raise ImpossibleFault(f"{self.kind} has no option {opt!r} (options: {known})")
            out[kind.options[opt]] = raw
        return out


def _option_text(raw: object) -> str | None:
    """A fault option as a name part: ``500ms`` -> ``0.5s`` (the lab's form); None for inf."""
    try:
        dist = parse_value(raw)  # type: ignore[arg-type]
    except ParseError:
        return str(raw).replace(" ", "")
    if isinstance(dist, Fixed):
        if math.isinf(dist.value):
            return None
        return f"{dist.value:g}s"
    return dist.text().replace(" ", "")


Inject = Callable[[Topology, list[Node], list[Pod]], None]

#: options every kind takes: a second effect and when it starts
WITH_OPTIONS = {"with": "fault.with", "with_delay": "fault.with_delay"}


@dataclass(frozen=True)
class FaultKind:
    kind: str
    doc: str
    target_kind: TargetKind
    default_target: str
    #: what this kind does at t = 0 to its resolved targets
    effect: Inject
    #: YAML option -> catalogue key (`WITH_OPTIONS` are added to every kind)
    options: Mapping[str, str] = field(default_factory=dict)
    multi: bool = False
    #: raises ImpossibleFault when the fault cannot apply to the resolved targets
    check: Callable[[Topology, list[Node], list[Pod]], None] | None = None
    #: acts on control-plane nodes (every other kind refuses them)
    control_plane: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", {**self.options, **WITH_OPTIONS})

    def inject(self, topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
        """This kind's effect now, and the ``with`` effect (if any) after its delay."""
        self.effect(topo, nodes, pods)
        second = _second(topo, self.kind)
        if second is not None:
            more_nodes, more_pods = second.resolve(topo, Fault(second.kind), alone=True)
            delay = topo.trial.p.draw("fault.with_delay")
            topo.trial.at(delay, second.effect, topo, more_nodes, more_pods)

    def resolve(
        self, topo: Topology, fault: Fault, *, alone: bool = False
    ) -> tuple[list[Node], list[Pod]]:
        """The fault's nodes and pods in ``topo``; unless ``alone``, its ``with`` effect's
        targets are checked too (a fault that cannot run fails before any trial)."""
        nodes: list[Node] = []
        pods: list[Pod] = []
        for t in fault.targets:
            what, found = topo.resolve(t)
            if what != self.target_kind:
                hint = "app-pod-node" if self.target_kind == "node" else "app-pod"
                raise ImpossibleTarget(
                    f"{self.kind} acts on a {self.target_kind}, but {t!r} names a {what} "
                    f"(try target: {hint})"
                )
            if what == "node":
                nodes += [n for n in found if isinstance(n, Node) and n not in nodes]
            else:
                pods += [p for p in found if isinstance(p, Pod) and p not in pods]
        for n in nodes:
            if n.role == "master" and not self.control_plane:
                raise ImpossibleTarget(
                    f"{n.name} is a control-plane node: {self.kind} targets workers; use "
                    "master-crash, apiserver-down or controller-manager-restart for it"
                )
            if n.role != "master" and self.control_plane:
                raise ImpossibleTarget(f"{self.kind} acts on a control-plane node, not {n.name}")
        if len(nodes) > 1 and not self.multi:
            raise ImpossibleTarget(f"{self.kind} takes one node")
        if self.check is not None:
            self.check(topo, nodes, pods)
        second = None if alone else _second(topo, self.kind)
        if second is not None:
            second.resolve(topo, Fault(second.kind), alone=True)
        return nodes, pods


def _second(topo: Topology, kind: str) -> FaultKind | None:
    """The kind a fault's ``with`` option names, if any."""
    name = topo.trial.p.choice("fault.with")
    if name == "none":
        return None
    if name not in FAULTS:  # the catalogue's choices and the registry disagree
        raise ImpossibleFault(f"fault.with names {name!r}, which is no fault kind")
    return FAULTS[name]


# ----------------------------------------------------------------------------- injections


def _crashes(topo: Topology) -> float:
    raw = topo.trial.p.draw("fault.crash_count")
    return raw if math.isinf(raw) else max(1, round(raw))  # inf: the pod stays dead


def _pod_kill(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    crashes = _crashes(topo)
    for pod in pods:
        topo.cluster.kubelet.kill_container(pod, crashes=crashes)


def _pod_delete(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    for pod in pods:
        topo.cluster.delete_pod(pod)


def _operator(topo: Topology, node: Node) -> None:
    """An operator force-deletes the lost node's pods (if the scenario has one)."""
    t = topo.trial.p.draw("cluster.force_delete_after")
    topo.trial.at(t, topo.cluster.force_delete_pods, node)


def _node_crash(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster
    for node in nodes:
        c.power_off(node)
        repair = topo.trial.p.draw("fault.repair_time")
        topo.trial.at(repair, c.power_on, node)
        _operator(topo, node)


def _node_partition(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster
    for node in nodes:
        c.cut_off(node)
        topo.trial.at(topo.trial.p.draw("fault.partition_duration"), c.reconnect, node)
        _operator(topo, node)


def _kubelet_stop(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster
    for node in nodes:
        c.stop_kubelet(node)
        topo.trial.at(topo.trial.p.draw("fault.kubelet_down_time"), c.start_kubelet, node)
        _operator(topo, node)


def _node_drain(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    for node in nodes:
        topo.cluster.drain(node)


def _service_pod(topo: Topology, node: Node) -> Pod | None:
    """The service process a daemon-kill ``with_service`` also kills: the node's ingress."""
    if isinstance(topo, NetTopology) and topo.ingress_name() is not None:
        return topo.ingress_pod_on(node)
    return None


def _daemon_check(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    daemon = topo.trial.p.choice("fault.daemon")
    service = topo.trial.p.flag("fault.with_service")
    for node in nodes:
        have = topo.daemons(node)
        if daemon not in have:
            if have:
                why = f"it runs {', '.join(have)}; pick that daemon or another target"
            else:
                why = "no keepalived, BGP speaker, MetalLB speaker or kube-vip runs there"
            raise ImpossibleFault(f"{topo.design.key} runs no {daemon} on {node.name}: {why}")
        if service and _service_pod(topo, node) is None:
            raise ImpossibleFault(
                f"{topo.design.key} runs no ingress on {node.name}: with_service kills the "
                "node's ingress (nginx) beside the daemon; kill the app pod with pod-kill"
            )


def _daemon_kill(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    p = topo.trial.p
    daemon, signal = p.choice("fault.daemon"), p.choice("fault.signal")
    service = p.flag("fault.with_service")
    for node in nodes:
        pod = _service_pod(topo, node) if service else None
        if pod is not None:
            # the service dies with the daemon on a live node: its kernel resets the
            # service's connections and refuses new ones (no hang, unlike a node crash)
            topo.cluster.kubelet.kill_container(pod, crashes=_crashes(topo))
        topo.kill_daemon(node, daemon, signal)
        topo.trial.at(p.draw("fault.daemon_restart_time"), topo.start_daemon, node, daemon)


def _link_down(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster

    def up(node: Node) -> None:
        c.reconnect(node)
        topo.link_event(node, True)

    for node in nodes:
        c.cut_off(node)
        topo.link_event(node, False)
        topo.trial.at(topo.trial.p.draw("fault.link_down_duration"), up, node)


def _transient_blip(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster
    for node in nodes:
        c.cut_off(node)
        topo.trial.at(topo.trial.p.draw("fault.blip_duration"), c.reconnect, node)


def _controller_manager_restart(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    topo.cluster.cp.crash_leader()


def _apiserver_down(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    topo.cluster.cp.force_down(topo.trial.p.draw("fault.apiserver_down_time"))


def _master_crash(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    c = topo.cluster
    for node in nodes:
        c.power_off(node)
        topo.trial.at(topo.trial.p.draw("fault.master_repair_time"), c.power_on, node)


def _no_control_plane(topo: Topology, nodes: list[Node], pods: list[Pod]) -> None:
    if not topo.cluster.cp.masters:
        raise ImpossibleFault("the cluster has no control-plane node (cluster.nodes.master: 0)")


FAULTS: dict[str, FaultKind] = {
    f.kind: f
    for f in [
        FaultKind(
            "pod-kill",
            "SIGKILL of the app container's main process; it restarts in place (crashes: N "
            "dies N times in a row with CrashLoopBackOff, crashes: inf stays dead).",
            "pod",
            "app-pod",
            _pod_kill,
            {"crashes": "fault.crash_count"},
        ),
        FaultKind(
            "pod-delete",
            "Graceful API delete of a pod (preStop, SIGTERM, endpoint removal race).",
            "pod",
            "app-pod",
            _pod_delete,
        ),
        FaultKind(
            "node-crash",
            "Power off a node; it returns after the repair time (default: never).",
            "node",
            "app-pod-node",
            _node_crash,
            {"repair": "fault.repair_time"},
            multi=True,
        ),
        FaultKind(
            "node-partition",
            "Cut a node off the network and the API server; heals after a duration.",
            "node",
            "app-pod-node",
            _node_partition,
            {"duration": "fault.partition_duration"},
            multi=True,
        ),
        FaultKind(
            "kubelet-stop",
            "Stop the kubelet: the data plane keeps serving while the control plane gives up.",
            "node",
            "app-pod-node",
            _kubelet_stop,
            {"duration": "fault.kubelet_down_time"},
            multi=True,
        ),
        FaultKind(
            "node-drain",
            "Planned maintenance: cordon, then evict the node's pods gracefully.",
            "node",
            "app-pod-node",
            _node_drain,
            multi=True,
        ),
        FaultKind(
            "daemon-kill",
            "Kill keepalived, the BGP speaker, the MetalLB speaker or kube-vip on a node "
            "(SIGKILL: silent; SIGTERM: priority-0 advert, Cease, leave, lease release); "
            "with_service: true kills the node's ingress too (the node lives: RSTs, not a "
            "hang), crashes as for pod-kill.",
            "node",
            "vip-holder",
            _daemon_kill,
            {
                "daemon": "fault.daemon",
                "signal": "fault.signal",
                "restart": "fault.daemon_restart_time",
                "with_service": "fault.with_service",
                "crashes": "fault.crash_count",
            },
            check=_daemon_check,
        ),
        FaultKind(
            "link-down",
            "The node's uplink loses carrier: the node is cut off and knows it (keepalived "
            "goes FAULT); the link comes back after a duration.",
            "node",
            "router-link",
            _link_down,
            {"duration": "fault.link_down_duration"},
            multi=True,
        ),
        FaultKind(
            "transient-blip",
            "A short network loss of a node (to look for false failovers).",
            "node",
            "vip-holder",
            _transient_blip,
            {"duration": "fault.blip_duration"},
            multi=True,
        ),
        FaultKind(
            "controller-manager-restart",
            "The leading kube-controller-manager's process dies and restarts: no node "
            "lifecycle, EndpointSlice or ReplicaSet controller acts until another instance "
            "takes the Lease, and the new leader's NotReady and eviction timers start over.",
            "node",
            "controller-manager-leader",
            _controller_manager_restart,
            check=_no_control_plane,
            control_plane=True,
        ),
        FaultKind(
            "apiserver-down",
            "No API server answers for a duration (or etcd has no quorum): heartbeats and "
            "Lease renewals fail, endpoints cannot change, kube-proxy keeps its rules; the "
            "controller manager's leader exits after its renew deadline.",
            "node",
            "control-plane",
            _apiserver_down,
            {"duration": "fault.apiserver_down_time"},
            multi=True,
            check=_no_control_plane,
            control_plane=True,
        ),
        FaultKind(
            "master-crash",
            "Power off control-plane nodes: their etcd members, API servers and controller "
            "managers. Without an etcd quorum (2 masters with one down, or 1 master) no API "
            "server answers until the repair.",
            "node",
            "controller-manager-leader",
            _master_crash,
            {"repair": "fault.master_repair_time"},
            multi=True,
            check=_no_control_plane,
            control_plane=True,
        ),
    ]
}
