"""The API objects of the article's cluster: labelled Nodes (masters tainted NoSchedule)
and the app, a workload one replica per node of its role plus its NodePort Service.

Nodes are created by the admin, as a kubelet would register them; each kwok process then
manages its one Node (status, Lease, the pods bound to it).
"""

from __future__ import annotations

from typing import Any

from chaoslab.live.cluster.config import ClusterConfig, NodeSpec

__all__ = [
    "app_objects",
    "condition",
    "kwok_rbac",
    "node_object",
    "nodes_have_cidr",
    "nodes_ready",
    "pods_ready",
]

ROLE_LABEL = "node-role.kubernetes.io/"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
APP_PORT = 8080


def node_object(node: NodeSpec) -> dict[str, Any]:
    roles = ["control-plane", "master"] if node.role == "master" else [node.role]
    labels = {f"{ROLE_LABEL}{r}": "" for r in roles}
    labels |= {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": node.zone,
        "chaoslab.io/role": node.role,
        "type": "kwok",
    }
    spec: dict[str, Any] = {"taints": [CONTROL_PLANE_TAINT]} if node.role == "master" else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": spec,
    }


def kwok_rbac() -> list[dict[str, Any]]:
    """kwok runs as its node (``system:node:<name>``, group ``system:nodes``), so the Node
    authorizer and NodeRestriction check its writes as a kubelet's. Its start-up check lists
    every Node and it caches Leases by list+watch, reads a kubelet's identity is not given
    (it reads only its own objects): this grants those reads, nothing else."""
    name = "chaoslab:kwok-reads"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            # its lease cache is a list+watch (a kubelet only gets its own Lease)
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["list", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
        ],
    }
    return [role, binding]


def _affinity(config: ClusterConfig) -> dict[str, Any]:
    roles = list(config.spec.app_roles())
    node = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "chaoslab.io/role", "operator": "In", "values": roles}
                    ]
                }
            ]
        }
    }
    term = {
        "labelSelector": {"matchLabels": {"app": config.app}},
        "topologyKey": "kubernetes.io/hostname",
    }
    out: dict[str, Any] = {"nodeAffinity": node}
    mode = config.spec.anti_affinity
    if mode == "required":
        out["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    elif mode == "preferred":
        out["podAntiAffinity"] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    return out


def _pod_template(config: ClusterConfig) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "args": ["netexec", f"--http-port={APP_PORT}"],
        "ports": [{"name": "http", "containerPort": APP_PORT}],
    }
    return {
        "metadata": {"labels": {"app": config.app}},
        "spec": {"containers": [container], "affinity": _affinity(config)},
    }


def app_objects(config: ClusterConfig) -> list[dict[str, Any]]:
    """Namespace, workload and NodePort Service of the experiment's app."""
    ns, name, kind = config.namespace, config.app, config.spec.app_kind
    meta = {"name": name, "namespace": ns, "labels": {"app": name}}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": _pod_template(config),
    }
    if kind != "DaemonSet":
        spec["replicas"] = config.spec.replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    workload = {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "NodePort",
            "selector": {"app": name},
            "ports": [
                {"name": "http", "port": 80, "targetPort": APP_PORT, "nodePort": config.node_port}
            ],
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    return [namespace, workload, service]


def condition(obj: Any, kind: str) -> str | None:
    for c in (obj.status.conditions or []) if obj.status else []:
        if c.type == kind:
            return str(c.status)
    return None


def nodes_ready(core: Any, names: list[str]) -> tuple[bool, str]:
    """All named Nodes Ready and given a podCIDR."""
    items = {n.metadata.name: n for n in core.list_node().items}
    waiting = [
        n
        for n in names
        if n not in items or condition(items[n], "Ready") != "True" or not items[n].spec.pod_cidr
    ]
    return not waiting, f"waiting for {', '.join(waiting)}"


def nodes_have_cidr(core: Any, names: list[str]) -> tuple[bool, str]:
    items = {n.metadata.name: n for n in core.list_node().items}
    waiting = [n for n in names if n not in items or not items[n].spec.pod_cidr]
    return not waiting, f"no podCIDR yet: {', '.join(waiting)}"


def pods_ready(core: Any, config: ClusterConfig, count: int) -> tuple[bool, str]:
    pods = core.list_namespaced_pod(config.namespace, label_selector=f"app={config.app}").items
    ready = [p for p in pods if condition(p, "Ready") == "True" and p.spec.node_name]
    return len(ready) >= count, f"{len(ready)}/{count} pods of {config.app} Ready"
