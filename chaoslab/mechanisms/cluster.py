"""Cluster state the mechanisms act on: nodes, pods, the app's workload and Service.

Plain objects with ``__slots__``; they hold state, the mechanisms hold behaviour.

Data-plane vocabulary used throughout:

- a node is *powered* (machine running), *net_up* (reachable on the network) and has its
  kubelet up or not; the API-side view is ``ready`` / ``tainted`` / ``unschedulable``;
- a pod is *running* when its server process accepts connections; ``ready`` is its API
  Ready condition; ``deleting`` means it has a deletionTimestamp; ``gone`` means the
  object was removed;
- a pod *serves* a request arriving from node X if it is running and its node is powered
  and reachable from X. A request to a pod whose node is dead or cut off is black-holed
  (the client waits for its timeout); one to a dead process on a live node is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from chaoslab.mechanisms.endpoints import KubeProxy

__all__ = ["ClusterSpec", "Node", "Pod", "Service", "Workload", "node_layout"]

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


@dataclass(frozen=True)
class ClusterSpec:
    """The topology of a trial (model description, no behaviour).

    Default: the article's TACO cluster, 3 masters + 3 controllers + 2 computes, with the
    app's 3 replicas one per controller node.
    """

    masters: int = 3
    controllers: int = 3
    computes: int = 2
    app_kind: WorkloadKind = "Deployment"
    replicas: int = 3
    spread: Literal["controller", "compute", "worker", "any"] = "controller"
    anti_affinity: Literal["preferred", "required", "none"] = "preferred"
    zones: int = 1

    def node_names(self) -> list[tuple[str, str]]:
        return list(_node_names(self.masters, self.controllers, self.computes))

    def app_roles(self) -> tuple[str, ...]:
        return {
            "controller": ("controller",),
            "compute": ("compute",),
            "worker": ("controller", "compute"),
            "any": ("master", "controller", "compute"),
        }[self.spread]


@lru_cache(maxsize=64)
def _node_names(masters: int, controllers: int, computes: int) -> tuple[tuple[str, str], ...]:
    # every trial of a cell builds the same names: made once per layout
    out = [(f"master-{i + 1}", "master") for i in range(masters)]
    out += [(f"controller-{i + 1}", "controller") for i in range(controllers)]
    out += [(f"compute-{i + 1}", "compute") for i in range(computes)]
    return tuple(out)


@lru_cache(maxsize=64)
def node_layout(spec: ClusterSpec) -> tuple[tuple[str, str, int, str], ...]:
    """(name, role, index, zone) of every node of ``spec``, once per spec."""
    zones = max(1, spec.zones)
    return tuple(
        (name, role, i, f"zone-{i % zones}") for i, (name, role) in enumerate(spec.node_names())
    )


class Node:
    __slots__ = (
        "hb_epoch",
        "hb_period",
        "hb_phase",
        "index",
        "kubelet_up",
        "name",
        "net_up",
        "pods",
        "powered",
        "proxy",
        "ready",
        "role",
        "tainted",
        "unschedulable",
        "zone",
    )

    def __init__(self, name: str, role: str, index: int, zone: str) -> None:
        self.name = name
        self.role = role
        self.index = index
        self.zone = zone
        self.powered = True
        self.net_up = True
        self.kubelet_up = True
        self.ready = True
        self.tainted = False
        self.unschedulable = False
        self.pods: list[Pod] = []
        self.proxy: KubeProxy | None = None
        self.hb_period = 0.0
        self.hb_phase = 0.0
        self.hb_epoch = 0

    @property
    def reachable(self) -> bool:
        return self.powered and self.net_up

    @property
    def heartbeating(self) -> bool:
        return self.powered and self.net_up and self.kubelet_up

    def __repr__(self) -> str:
        return f"Node({self.name})"


class Pod:
    __slots__ = (
        "crashes_left",
        "deleting",
        "epoch",
        "gone",
        "name",
        "node",
        "probe_phase",
        "ready",
        "replacement",
        "restarts",
        "running",
        "workload",
    )

    def __init__(self, name: str, workload: Workload, node: Node | None) -> None:
        self.name = name
        self.workload = workload
        self.node = node
        self.running = False
        self.ready = False
        self.deleting = False
        self.gone = False
        self.replacement = False
        self.restarts = 0
        self.crashes_left: float = 0  # inf: a crash loop for good
        self.epoch = 0  # bumped when the container restarts: stale callbacks check it
        self.probe_phase = 0.0

    def serves_from(self, via: Node | None) -> bool:
        """Would a connection from node ``via`` (None: from outside) reach a live server?"""
        n = self.node
        if n is None or not self.running or not n.powered or not n.net_up:
            return False
        return via is None or via is n or via.net_up

    @property
    def active(self) -> bool:
        """Counts as a replica for its ReplicaSet (no deletionTimestamp, not gone)."""
        return not self.deleting and not self.gone

    def __repr__(self) -> str:
        return f"Pod({self.name}@{self.node.name if self.node else '-'})"


class Workload:
    __slots__ = ("anti_affinity", "kind", "name", "pods", "replicas", "roles", "serial")

    def __init__(
        self, name: str, kind: WorkloadKind, replicas: int, roles: tuple[str, ...], anti: str
    ) -> None:
        self.name = name
        self.kind = kind
        self.replicas = replicas
        self.roles = roles
        self.anti_affinity = anti
        self.pods: list[Pod] = []
        self.serial = 0


class Service:
    """The app's Service: EndpointSlice contents as the API holds them."""

    __slots__ = ("external_traffic_policy", "ready", "serving_terminating", "version")

    def __init__(self, policy: str = "Cluster") -> None:
        self.external_traffic_policy = policy
        self.ready: tuple[Pod, ...] = ()
        self.serving_terminating: tuple[Pod, ...] = ()
        self.version = 0
