"""Read what the model needs from the cluster, and say what had to be assumed.

Discovered (API objects): the server version (-> k8s profile), the Service (type,
``externalTrafficPolicy``, health-check node port), the workload (kind, replicas, selector,
pods and their nodes, tolerations with ``tolerationSeconds``, readiness probe, termination
grace, a ``preStop`` sleep), the nodes (Ready, control plane, cordoned, zone, address).

Not readable through the API with drill permissions (controller-manager and kube-proxy
flags, the kubelet's configuration, image pull times): these come from the profile and are
listed as *assumed*, each with its catalogue source.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from chaoslab.live.k8s.kube import Kube, KubeError
from chaoslab.live.k8s.spec import LiveSpec
from chaoslab.params.catalogue import PROFILES

__all__ = [
    "CONTROL_PLANE_LABELS",
    "Discovery",
    "NodeInfo",
    "PodInfo",
    "discover",
    "profile_for_version",
    "workload_path",
]

Obj = dict[str, Any]

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
_UNREACHABLE = "node.kubernetes.io/unreachable"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    address: str
    ready: bool
    control_plane: bool
    unschedulable: bool
    zone: str
    taints: tuple[str, ...]


@dataclass(frozen=True)
class PodInfo:
    name: str
    node: str
    ready: bool
    ip: str
    container_id: str
    uid: str


@dataclass
class Discovery:
    server_version: str
    minor: int
    profile: str
    profile_note: str
    service: Obj
    workload_kind: str
    workload_name: str
    replicas: int
    selector: str
    pods: list[PodInfo]
    nodes: list[NodeInfo]
    toleration_seconds: float | None  # unreachable:NoExecute; None = tolerates forever
    readiness: Obj | None
    grace_seconds: float | None  # the API server always sets it; None = not read
    prestop_sleep: float | None
    pdbs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # -------------------------------------------------------------- model inputs
    def params(self) -> dict[str, tuple[object, str]]:
        """Catalogue overrides read from the cluster: key -> (value text, where from)."""
        out: dict[str, tuple[object, str]] = {}
        wl = f"{self.workload_kind}/{self.workload_name}"
        if self.toleration_seconds is not None:
            out["kube_apiserver.default_unreachable_toleration_seconds"] = (
                _dur(self.toleration_seconds),
                f"{wl} pod tolerationSeconds (unreachable)",
            )
        elif self.workload_kind != "DaemonSet":
            out["kube_apiserver.default_unreachable_toleration_seconds"] = (
                "inf",
                f"{wl} tolerates unreachable:NoExecute forever",
            )
        if self.grace_seconds is not None:
            out["pod.termination_grace_period_seconds"] = (
                _dur(self.grace_seconds),
                f"{wl} terminationGracePeriodSeconds",
            )
        if 13 <= self.minor < 19:
            out["kube_proxy.iptables_min_sync_period"] = (
                "0s",
                f"server {self.server_version}: min sync period 0 before 1.19",
            )
        out["pod.prestop_sleep"] = (
            _dur(self.prestop_sleep or 0.0),
            f"{wl} preStop" if self.prestop_sleep is not None else f"{wl} has no preStop sleep",
        )
        out["pod.readiness_probe"] = (self.readiness is not None, f"{wl} readinessProbe")
        if self.readiness is not None:
            r = self.readiness
            for key, fld in (
                ("probe.period_seconds", "periodSeconds"),
                ("probe.timeout_seconds", "timeoutSeconds"),
                ("probe.initial_delay_seconds", "initialDelaySeconds"),
            ):
                if fld in r:
                    out[key] = (_dur(float(r[fld])), f"{wl} readinessProbe.{fld}")
            for key, fld in (
                ("probe.failure_threshold", "failureThreshold"),
                ("probe.success_threshold", "successThreshold"),
            ):
                if fld in r:
                    out[key] = (str(int(r[fld])), f"{wl} readinessProbe.{fld}")
        return out

    def cluster(self) -> dict[str, object]:
        """Topology for the model's ClusterSpec (field -> value)."""
        cp = sum(1 for n in self.nodes if n.control_plane)
        workers = len(self.nodes) - cp
        zones = len({n.zone for n in self.nodes if n.zone}) or 1
        cp_names = {n.name for n in self.nodes if n.control_plane}
        # pods on control-plane nodes (single-node clusters, kind): the model may place
        # them on any role
        on_cp = any(p.node in cp_names for p in self.pods)
        return {
            "masters": cp,
            "controllers": 0,
            "computes": workers,
            "app_kind": self.workload_kind,
            "replicas": self.replicas,
            "spread": "any" if on_cp or workers == 0 else "compute",
            "zones": zones,
        }

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def lines(self, assumed: list[tuple[str, str, str]]) -> list[str]:
        """Human-readable 'discovered vs assumed' report."""
        svc = self.service.get("spec", {})
        out = [
            f"server        {self.server_version} -> profile {self.profile} ({self.profile_note})",
            f"service       {self.service['metadata']['name']}: type {svc.get('type')}, "
            f"externalTrafficPolicy {svc.get('externalTrafficPolicy', '-')}, "
            f"healthCheckNodePort {svc.get('healthCheckNodePort', '-')}",
            f"workload      {self.workload_kind}/{self.workload_name}: {self.replicas} replicas, "
            f"selector {self.selector}",
        ]
        for p in self.pods:
            out.append(f"  pod         {p.name} on {p.node} ({'Ready' if p.ready else 'NotReady'})")
        out.append(
            "nodes         "
            + ", ".join(
                f"{n.name}{'*' if n.control_plane else ''}{'(cordoned)' if n.unschedulable else ''}"
                f"{'' if n.ready else '(NotReady)'}"
                for n in self.nodes
            )
            + "   (* control plane)"
        )
        if self.pdbs:
            out.append("pdbs          " + ", ".join(self.pdbs))
        out.append("discovered parameters:")
        for key, (val, src) in sorted(self.params().items()):
            out.append(f"  {key} = {val}   [{src}]")
        out.append("assumed (not readable through the API; from the profile):")
        for key, val, src in assumed:
            out.append(f"  {key} = {val}   [{src}]")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def _dur(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:g}s"


def _newest_k8s_profile() -> tuple[str, int]:
    """The k8s-1.N profile of the highest N in the catalogue, and N."""
    minors = [int(n.split(".")[1]) for n in PROFILES if re.fullmatch(r"k8s-1\.\d+", n)]
    return f"k8s-1.{max(minors)}", max(minors)


def profile_for_version(major: str, minor: str) -> tuple[str, int, str]:
    """k8s profile for a server version: (profile, minor, note)."""
    m = int(re.match(r"\d+", minor or "0").group(0))  # type: ignore[union-attr]
    newest, newest_minor = _newest_k8s_profile()
    if major != "1":
        return newest, m, f"unknown major version {major}; using the newest profile"
    if m > newest_minor:
        return newest, m, f"newer than every profile; using the newest ({newest})"
    if m >= 32:
        return f"k8s-1.{m}", m, PROFILES[f"k8s-1.{m}"].covers
    if m >= 19:
        return "k8s-1.31", m, "1.19-1.31 defaults"
    if m >= 13:
        return (
            "k8s-1.31",
            m,
            (
                "closest profile for 1.13-1.18 (Leases, taint eviction); "
                "kube-proxy min sync 0 before 1.19 is set from the version"
            ),
        )
    return "k8s-1.10", m, "pre-Lease, legacy eviction"


def workload_path(ns: str, kind: str, name: str) -> str:
    plural = {
        "Deployment": "deployments",
        "StatefulSet": "statefulsets",
        "DaemonSet": "daemonsets",
    }[kind]
    return f"/apis/apps/v1/namespaces/{ns}/{plural}/{name}"


def selector_text(sel: Obj, where: str) -> str:
    if sel.get("matchExpressions"):
        terms = []
        for e in sel["matchExpressions"]:
            op, key, vals = e["operator"], e["key"], e.get("values", [])
            if op == "In":
                terms.append(f"{key} in ({','.join(vals)})")
            elif op == "NotIn":
                terms.append(f"{key} notin ({','.join(vals)})")
            elif op == "Exists":
                terms.append(key)
            else:
                terms.append(f"!{key}")
        base = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
        return ",".join(base + terms)
    labels = sel.get("matchLabels") or {}
    if not labels:
        raise KubeError(0, f"{where} has an empty selector")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def node_info(n: Obj) -> NodeInfo:
    md, spec, st = n["metadata"], n.get("spec", {}), n.get("status", {})
    labels = md.get("labels") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", [])
    )
    addr = next(
        (a["address"] for a in st.get("addresses", []) if a["type"] == "InternalIP"),
        next((a["address"] for a in st.get("addresses", [])), ""),
    )
    return NodeInfo(
        name=md["name"],
        address=addr,
        ready=ready,
        control_plane=any(k in labels for k in CONTROL_PLANE_LABELS),
        unschedulable=bool(spec.get("unschedulable")),
        zone=labels.get("topology.kubernetes.io/zone", ""),
        taints=tuple(f"{t['key']}:{t['effect']}" for t in spec.get("taints") or []),
    )


def pod_ready(p: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (p.get("status") or {}).get("conditions", [])
    )


def pod_info(p: Obj) -> PodInfo:
    st = p.get("status") or {}
    cid = ""
    for cs in st.get("containerStatuses") or []:
        cid = (cs.get("containerID") or "").split("://")[-1]
        break
    return PodInfo(
        p["metadata"]["name"],
        (p.get("spec") or {}).get("nodeName", ""),
        pod_ready(p),
        st.get("podIP", ""),
        cid,
        p["metadata"].get("uid", ""),
    )


def _prestop_sleep(container: Obj) -> float | None:
    pre = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:  # PodLifecycleSleepAction (1.29+)
        return float(pre["sleep"].get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    text = " ".join(cmd)
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", text)
    if m:
        return float(m.group(1))
    return None


def discover(kube: Kube, spec: LiveSpec) -> Discovery:
    ns = spec.namespace
    ver = kube.version()
    profile, minor, note = profile_for_version(
        str(ver.get("major", "1")), str(ver.get("minor", "0"))
    )
    if spec.profile:
        profile, note = spec.profile, "set in the experiment"
    svc = kube.get(f"/api/v1/namespaces/{ns}/services/{spec.service}")
    wl = kube.get(workload_path(ns, spec.workload.kind, spec.workload.name))
    wspec = wl.get("spec") or {}
    selector = selector_text(
        wspec.get("selector") or {}, f"{spec.workload.kind}/{spec.workload.name}"
    )
    pods_raw = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)["items"]
    pods_raw = [p for p in pods_raw if not p["metadata"].get("deletionTimestamp")]
    nodes = [node_info(n) for n in kube.get("/api/v1/nodes")["items"]]
    tmpl = (wspec.get("template") or {}).get("spec") or {}
    containers = tmpl.get("containers") or []
    notes: list[str] = []
    main = containers[0] if containers else {}
    if len(containers) > 1:
        notes.append(
            f"{len(containers)} containers; readiness and preStop read from "
            f"the first ({main.get('name')})"
        )
    # tolerationSeconds as the pods have it (the admission plugin adds 300 s to pods,
    # not to templates), falling back to the template
    tol_src = (pods_raw[0].get("spec") or {}).get("tolerations") if pods_raw else None
    tols = tol_src if tol_src is not None else tmpl.get("tolerations") or []
    toleration: float | None = math.inf
    for t in tols:
        if (
            t.get("effect") in (None, "", "NoExecute")
            and (t.get("key") in (None, "", _UNREACHABLE))
            and t.get("operator", "Equal") in ("Exists", "Equal")
        ):
            secs = t.get("tolerationSeconds")
            toleration = math.inf if secs is None else float(secs)
            break
    else:
        if not tol_src:
            toleration = None
            notes.append("no unreachable toleration found; the admission default is assumed")
    if spec.workload.kind == "DaemonSet":
        replicas = int((wl.get("status") or {}).get("desiredNumberScheduled", len(pods_raw)))
    else:
        replicas = int(wspec.get("replicas", 1))
    pdbs = []
    try:
        for pdb in kube.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets")["items"]:
            ps = pdb.get("spec") or {}
            pdbs.append(
                f"{pdb['metadata']['name']} (minAvailable {ps.get('minAvailable', '-')}, "
                f"maxUnavailable {ps.get('maxUnavailable', '-')})"
            )
    except KubeError as e:
        if e.status not in (403, 404):
            raise
        notes.append("PodDisruptionBudgets not readable (RBAC): drains still respect them")
    return Discovery(
        server_version=str(ver.get("gitVersion", "")),
        minor=minor,
        profile=profile,
        profile_note=note,
        service=svc,
        workload_kind=spec.workload.kind,
        workload_name=spec.workload.name,
        replicas=replicas,
        selector=selector,
        pods=[pod_info(p) for p in pods_raw],
        nodes=nodes,
        toleration_seconds=toleration,
        readiness=main.get("readinessProbe"),
        grace_seconds=(
            float(tmpl["terminationGracePeriodSeconds"])
            if "terminationGracePeriodSeconds" in tmpl
            else None
        ),
        prestop_sleep=_prestop_sleep(main),
        pdbs=pdbs,
        notes=notes,
    )
