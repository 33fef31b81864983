"""A wire-level fake Kubernetes API server and a scripted cluster behind it.

No API server can run on this machine, so the drill is tested against this: a real HTTPS
server on 127.0.0.1 (self-signed CA, bearer-token auth) speaking the Kubernetes REST wire
format for the calls chaoslab makes (``/version``, get/list with label and field
selectors, watch streams with ``resourceVersion``, ``allowWatchBookmarks`` and 410 Gone,
delete with a grace period, the Eviction subresource with PodDisruptionBudgets, merge
patches with resourceVersion preconditions, pod creation). The official ``kubernetes``
client talks to it unchanged.

Behind it, :class:`FakeCluster` plays a cluster whose controllers follow a compressed
timeline (seconds instead of minutes): a node whose kubelet stops heartbeating goes
NotReady after ``grace``, gets the ``unreachable:NoExecute`` taint, its pods are evicted
after their ``tolerationSeconds`` and replaced elsewhere, EndpointSlices follow. Faults are
started the way chaoslab starts them on a real cluster: a chaos pod pinned to the node
(the fake kubelet reads the action from the pod's labels), an API delete or eviction, or a
hook command that calls the control endpoint :meth:`FakeCluster.control_url`.

:class:`ServiceTarget` is a real HTTP server on loopback whose answers follow the
cluster: each request is sent to a random endpoint of kube-proxy's current view (updated
``proxy_delay`` after the EndpointSlice), like iptables ``statistic mode random``; a dead
backend on a dead node black-holes the request, a killed container refuses it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import itertools
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]

# plural -> (group/version, Kind, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "nodes": ("v1", "Node", False),
    "pods": ("v1", "Pod", True),
    "services": ("v1", "Service", True),
    "events": ("v1", "Event", True),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice", True),
    "deployments": ("apps/v1", "Deployment", True),
    "replicasets": ("apps/v1", "ReplicaSet", True),
    "statefulsets": ("apps/v1", "StatefulSet", True),
    "daemonsets": ("apps/v1", "DaemonSet", True),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", True),
    "leases": ("coordination.k8s.io/v1", "Lease", True),
}


@dataclass
class Timing:
    """The compressed cluster timeline, seconds."""

    grace: float = 0.6  # node-monitor-grace-period
    taint_delay: float = 0.1  # NotReady -> NoExecute taint
    schedule_delay: float = 0.1  # replacement created -> bound
    start_delay: float = 0.4  # bound -> Ready
    term_delay: float = 0.2  # SIGTERM -> container exit
    proxy_delay: float = 0.05  # EndpointSlice -> kube-proxy rules
    restart_delay: float = 0.3  # killed container -> restarted
    notready_delay: float = 0.2  # killed container -> readiness fails
    blackhole_hold: float = 3.0  # how long a black-holed request is held before closing
    status_delay: float = 0.05  # container started -> the kubelet's status in the API
    lease_renew: float = 0.25  # a live kubelet renews its node Lease (10 s in a cluster)
    write_delay: float = 0.0  # a node PATCH is answered and committed this long after it came


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _merge(dst: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(dst, dict):
        dst = {}
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        else:
            dst[k] = _merge(dst.get(k), v)
    return dst


def _get_path(obj: Obj, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _labels_match(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.strip().rstrip("=")) != v.strip().lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if str(_get_path(obj, k) or "") == v:
                return False
        else:
            k, v = term.split("=", 1)
            if str(_get_path(obj, k.rstrip("=")) or "") != v.lstrip("="):
                return False
    return True


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


class FakeCluster:
    """Objects, resourceVersions, watch history and the controllers' timeline."""

    def __init__(
        self,
        *,
        timing: Timing | None = None,
        skew: float = 0.0,
        git_version: str = "v1.32.3",
        seed: int = 1,
    ) -> None:
        self.timing = timing or Timing()
        self.skew = skew  # the API server's clock minus ours
        self.git_version = git_version
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1000
        self.store: dict[str, dict[tuple[str, str], Obj]] = {k: {} for k in KINDS}
        self.history: list[tuple[int, str, str, Obj]] = []
        self.compacted = 0  # watches from an older resourceVersion get 410 Gone
        self.calls: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, int, int]] = []  # method, path regex, code, count
        self.watch_generation = 0  # bumped to drop every open watch abruptly
        self.alive: dict[str, str] = {}  # pod -> up | refuse | blackhole
        self.proxy_view: list[str] = []  # pod names kube-proxy forwards to
        self.node_down: dict[str, str] = {}  # node -> crash | partition | kubelet-stop
        self.timers: list[threading.Timer] = []
        self.closed = False
        self.rng = random.Random(seed)
        self._names = itertools.count(1)
        self.control_port = 0
        self.log: list[tuple[float, str]] = []  # (time.monotonic(), what happened)

    # ------------------------------------------------------------------ clock & timers
    def now(self) -> float:
        return time.time() + self.skew

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            if not self.closed:
                with self.lock:
                    fn()

        t = threading.Timer(max(delay, 0.0), run)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def close(self) -> None:
        self.closed = True
        for t in self.timers:
            t.cancel()
        with self.cond:
            self.cond.notify_all()

    def note(self, what: str) -> None:
        self.log.append((time.monotonic(), what))

    # ------------------------------------------------------------------ storage
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, plural: str, obj: Obj, event: str | None = None) -> Obj:
        with self.cond:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace", "") if KINDS[plural][2] else ""
            key = (ns, md["name"])
            new = key not in self.store[plural]
            md.setdefault("uid", f"uid-{plural}-{md['name']}-{self.rv}")
            md.setdefault("creationTimestamp", _ts(self.now()))
            api, kind, _ = KINDS[plural]
            obj.setdefault("apiVersion", api)
            obj.setdefault("kind", kind)
            md["resourceVersion"] = str(self._bump())
            self.store[plural][key] = obj
            self.history.append(
                (self.rv, plural, event or ("ADDED" if new else "MODIFIED"), copy.deepcopy(obj))
            )
            self.cond.notify_all()
            return obj

    def remove(self, plural: str, ns: str, name: str) -> Obj | None:
        with self.cond:
            obj = self.store[plural].pop((ns if KINDS[plural][2] else "", name), None)
            if obj is None:
                return None
            obj["metadata"]["resourceVersion"] = str(self._bump())
            self.history.append((self.rv, plural, "DELETED", copy.deepcopy(obj)))
            self.cond.notify_all()
            return obj

    def get(self, plural: str, ns: str, name: str) -> Obj | None:
        return self.store[plural].get((ns if KINDS[plural][2] else "", name))

    def items(self, plural: str, ns: str | None = None) -> list[Obj]:
        return [
            o
            for (n, _), o in sorted(self.store[plural].items())
            if ns is None or n == ns or not KINDS[plural][2]
        ]

    def compact(self) -> None:
        """Forget history: watches resuming from before now get 410 Gone."""
        with self.cond:
            self.rv += 1  # a new revision: every version a client holds is now too old
            self.compacted = self.rv
            self.history.clear()

    def drop_watches(self) -> None:
        with self.cond:
            self.watch_generation += 1
            self.cond.notify_all()

    def fail(self, method: str, path_regex: str, code: int = 500, count: int = 1) -> None:
        """The next ``count`` matching requests get ``code``."""
        with self.lock:
            self.failures.append((method, path_regex, code, count))

    def event(self, ns: str, obj: Obj, reason: str, message: str, etype: str = "Normal") -> None:
        n = next(self._names)
        md = obj["metadata"]
        self.put(
            "events",
            {
                "metadata": {"name": f"{md['name']}.{n:08x}", "namespace": ns or "default"},
                "involvedObject": {
                    "kind": obj.get("kind"),
                    "name": md["name"],
                    "namespace": md.get("namespace", ""),
                    "uid": md.get("uid"),
                },
                "reason": reason,
                "message": message,
                "type": etype,
                "firstTimestamp": _ts(self.now()),
                "lastTimestamp": _ts(self.now()),
                "eventTime": _micro(self.now()),
                "count": 1,
                "source": {"component": "fake-controller"},
                "reportingComponent": "fake-controller",
                "reportingInstance": "fake",
            },
        )

    # ------------------------------------------------------------------ building
    def add_node(
        self, name: str, address: str, *, control_plane: bool = False, zone: str = "z1"
    ) -> None:
        labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}
        taints = []
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
            taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        self.put(
            "nodes",
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints} if taints else {},
                "status": {
                    "conditions": [self._cond("Ready", "True", "KubeletReady")],
                    "addresses": [
                        {"type": "InternalIP", "address": address},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "kubeletVersion": self.git_version,
                        "architecture": "amd64",
                        "bootID": f"boot-{name}",
                        "containerRuntimeVersion": "containerd://2.0",
                        "kernelVersion": "6.8.0",
                        "kubeProxyVersion": "",
                        "machineID": name,
                        "operatingSystem": "linux",
                        "osImage": "Ubuntu 24.04",
                        "systemUUID": name,
                    },
                },
            },
        )
        self._renew_lease(name)

    def _renew_lease(self, node: str) -> None:
        """The kubelet's heartbeat: kube-node-lease/<node> renewed while the node is up."""
        if node in self.node_down or self.closed:
            return
        lease = {
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "renewTime": _micro(self.now())},
        }
        self.put("leases", lease)
        self.after(self.timing.lease_renew, lambda: self._renew_lease(node))

    def _cond(self, ctype: str, status: str, reason: str) -> Obj:
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "lastHeartbeatTime": _ts(self.now()),
            "lastTransitionTime": _ts(self.now()),
        }

    def add_app(
        self,
        ns: str,
        name: str,
        nodes: list[str],
        *,
        toleration: int | None = 1,
        node_port: int = 30080,
        etp: str = "Cluster",
        grace: int = 30,
        prestop_sleep: int | None = 5,
        pdb_min_available: int | None = None,
        probe_period: int = 2,
    ) -> None:
        """A Deployment with one Ready pod per entry of ``nodes``, its Service and slice."""
        labels = {"app": name}
        self._app = {
            "ns": ns,
            "name": name,
            "labels": labels,
            "toleration": toleration,
            "grace": grace,
            "prestop": prestop_sleep,
            "probe_period": probe_period,
        }
        self.put(
            "deployments",
            {
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": len(nodes),
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(name)},
                },
                "status": {
                    "replicas": len(nodes),
                    "readyReplicas": len(nodes),
                    "availableReplicas": len(nodes),
                },
            },
        )
        self.put(
            "services",
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "type": "NodePort",
                    "selector": labels,
                    "externalTrafficPolicy": etp,
                    "ports": [
                        {"port": 80, "targetPort": 8080, "nodePort": node_port, "protocol": "TCP"}
                    ],
                    "clusterIP": "10.96.0.10",
                },
            },
        )
        self.put(
            "endpointslices",
            {
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            },
        )
        if pdb_min_available is not None:
            self.put(
                "poddisruptionbudgets",
                {
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "minAvailable": pdb_min_available,
                        "selector": {"matchLabels": labels},
                    },
                    "status": {
                        "disruptionsAllowed": len(nodes) - pdb_min_available,
                        "currentHealthy": len(nodes),
                        "desiredHealthy": pdb_min_available,
                    },
                },
            )
        for node in nodes:
            self._new_pod(node=node, ready=True)
        self._sync_slice()
        self.proxy_view = self._ready_endpoints()

    def _pod_spec(self, name: str) -> Obj:
        a = self._app
        c: Obj = {
            "name": "app",
            "image": "registry.example/app:1",
            "readinessProbe": {
                "httpGet": {"path": "/", "port": 8080},
                "periodSeconds": a["probe_period"],
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 1,
            },
        }
        if a["prestop"] is not None:
            c["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(a["prestop"])]}}}
        return {
            "containers": [c],
            "terminationGracePeriodSeconds": a["grace"],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": a["toleration"],
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": a["toleration"],
                },
            ],
        }

    def app_pods(self, *, live_only: bool = True) -> list[Obj]:
        a = self._app
        return [
            p
            for p in self.items("pods", a["ns"])
            if _labels_match(p["metadata"].get("labels", {}), f"app={a['name']}")
            and not (live_only and p["metadata"].get("deletionTimestamp"))
        ]

    def _new_pod(self, node: str | None, ready: bool) -> Obj:
        a = self._app
        n = next(self._names)
        name = f"{a['name']}-7d9f-{n:05x}"
        pod = {
            "metadata": {
                "name": name,
                "namespace": a["ns"],
                "labels": dict(a["labels"]),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{a['name']}-7d9f",
                        "uid": "rs-uid",
                        "controller": True,
                    }
                ],
            },
            "spec": {**self._pod_spec(a["name"]), **({"nodeName": node} if node else {})},
            "status": {
                "phase": "Running" if node else "Pending",
                "podIP": f"10.244.0.{n}",
                "conditions": [
                    self._cond("PodScheduled", "True" if node else "False", ""),
                    self._cond("Ready", "True" if ready else "False", ""),
                ],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": ready,
                        "restartCount": 0,
                        "containerID": f"containerd://{n:064x}",
                        "image": "registry.example/app:1",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ],
            },
        }
        self.alive[name] = "up" if ready else "down"
        return self.put("pods", pod)

    # ------------------------------------------------------------------ pod state helpers
    def _set_ready(self, pod: Obj, ready: bool) -> None:
        for c in pod["status"]["conditions"]:
            if c["type"] == "Ready" and (c["status"] == "True") != ready:
                c["status"] = "True" if ready else "False"
                c["lastTransitionTime"] = _ts(self.now())
        for cs in pod["status"].get("containerStatuses", []):
            cs["ready"] = ready
        self.put("pods", pod)

    def _ready(self, pod: Obj) -> bool:
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions", [])
        )

    def _ready_endpoints(self) -> list[str]:
        s = self.get("endpointslices", self._app["ns"], f"{self._app['name']}-abcde")
        assert s is not None
        return [e["targetRef"]["name"] for e in s["endpoints"] if e["conditions"]["ready"]]

    def _sync_slice(self) -> None:
        """The EndpointSlice controller: one endpoint per pod with an IP (terminating ones
        flagged), ready when the pod is Ready and not terminating."""
        a = self._app
        s = self.get("endpointslices", a["ns"], f"{a['name']}-abcde")
        assert s is not None
        eps = []
        for p in self.app_pods(live_only=False):
            if not p["spec"].get("nodeName"):
                continue
            term = bool(p["metadata"].get("deletionTimestamp"))
            ready = self._ready(p) and not term
            eps.append(
                {
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": ready, "serving": self._ready(p), "terminating": term},
                    "nodeName": p["spec"]["nodeName"],
                    "targetRef": {
                        "kind": "Pod",
                        "name": p["metadata"]["name"],
                        "namespace": a["ns"],
                        "uid": p["metadata"]["uid"],
                    },
                }
            )
        if eps != s["endpoints"]:
            s["endpoints"] = eps
            self.put("endpointslices", s)
            view = self._ready_endpoints()
            self.after(self.timing.proxy_delay, lambda: setattr(self, "proxy_view", view))
        self._sync_deployment()

    def _sync_deployment(self) -> None:
        a = self._app
        d = self.get("deployments", a["ns"], a["name"])
        assert d is not None
        pods = self.app_pods()
        ready = sum(1 for p in pods if self._ready(p))
        st = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready}
        if {k: d["status"].get(k) for k in st} != st:
            d["status"].update(st)
            self.put("deployments", d)
        for pdb in self.items("poddisruptionbudgets", a["ns"]):
            allowed = max(ready - int(pdb["spec"]["minAvailable"]), 0)
            if pdb["status"]["disruptionsAllowed"] != allowed:
                pdb["status"].update(disruptionsAllowed=allowed, currentHealthy=ready)
                self.put("poddisruptionbudgets", pdb)

    def _schedulable_nodes(self) -> list[str]:
        out = []
        for n in self.items("nodes"):
            if n["spec"].get("unschedulable") or n["metadata"]["name"] in self.node_down:
                continue
            if any(t["effect"] in ("NoSchedule", "NoExecute") for t in n["spec"].get("taints", [])):
                continue
            out.append(n["metadata"]["name"])
        return out

    def _replace(self) -> None:
        """ReplicaSet controller: create pods until the live (non-terminating) count
        reaches the desired replicas; the scheduler binds them to the emptiest node."""
        a = self._app
        d = self.get("deployments", a["ns"], a["name"])
        assert d is not None
        missing = d["spec"]["replicas"] - len(self.app_pods())
        for _ in range(missing):
            pod = self._new_pod(node=None, ready=False)
            self.note(f"replacement created {pod['metadata']['name']}")
            self.after(self.timing.schedule_delay, lambda p=pod: self._bind(p))

    def _bind(self, pod: Obj) -> None:
        pod = self.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod
        nodes = self._schedulable_nodes()
        if not nodes:
            self.after(self.timing.schedule_delay, lambda: self._bind(pod))
            return
        load = {n: 0 for n in nodes}
        for p in self.app_pods():
            if p["spec"].get("nodeName") in load:
                load[p["spec"]["nodeName"]] += 1
        node = min(nodes, key=lambda n: (load[n], n))
        pod["spec"]["nodeName"] = node
        for c in pod["status"]["conditions"]:
            if c["type"] == "PodScheduled":
                c["status"] = "True"
                c["lastTransitionTime"] = _ts(self.now())
        pod["status"]["phase"] = "Running"
        self.put("pods", pod)
        self.event(pod["metadata"]["namespace"], pod, "Scheduled", f"assigned to {node}")
        self._sync_slice()

        def ready() -> None:
            cur = self.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if cur is None or cur["spec"]["nodeName"] in self.node_down:
                return
            self.alive[cur["metadata"]["name"]] = "up"
            self._set_ready(cur, True)
            self._sync_slice()

        self.after(self.timing.start_delay, ready)

    # ------------------------------------------------------------------ faults
    def delete_pod(self, ns: str, name: str, grace: float | None) -> Obj:
        pod = self.get("pods", ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if pod["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "chaoslab":
            self.remove("pods", ns, name)
            return pod
        if pod["metadata"].get("deletionTimestamp"):
            return pod
        g = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        pod["metadata"]["deletionTimestamp"] = _ts(self.now() + g)
        pod["metadata"]["deletionGracePeriodSeconds"] = int(g)
        self.put("pods", pod)
        self.note(f"pod {name} terminating")
        self._sync_slice()
        self._replace()
        node = pod["spec"].get("nodeName")
        if node in self.node_down and self.node_down[node] != "kubelet-stop-healed":
            return pod  # no kubelet to finish the deletion: stays Terminating
        # the kubelet runs preStop, then SIGTERM, and says so with a Killing event
        self.after(0.02, lambda: self.event(ns, pod, "Killing", "Stopping container app"))

        def exited() -> None:
            self.alive[name] = "refuse"
            self.remove("pods", ns, name)
            self._sync_slice()

        self.after(min(self.timing.term_delay, g), exited)
        return pod

    def start_node_fault(self, node: str, kind: str, duration: float | None) -> None:
        """The kubelet stops heartbeating; for crash/partition the data plane dies too."""
        self.note(f"{kind} {node}")
        self.node_down[node] = kind
        t = self.timing
        if kind in ("node-crash", "node-partition"):
            for p in self.items("pods"):
                if p["spec"].get("nodeName") == node:
                    self.alive[p["metadata"]["name"]] = "blackhole"

        def not_ready() -> None:
            if node not in self.node_down:
                return
            n = self.get("nodes", "", node)
            assert n is not None
            for c in n["status"]["conditions"]:
                if c["type"] == "Ready":
                    c.update(
                        status="Unknown",
                        reason="NodeStatusUnknown",
                        lastTransitionTime=_ts(self.now()),
                    )
            self.put("nodes", n)
            self.event("default", n, "NodeNotReady", f"Node {node} status is now: NodeNotReady")
            for p in self.items("pods"):
                if p["spec"].get("nodeName") == node and self._ready(p):
                    self._set_ready(p, False)
            self._sync_slice()
            self.after(t.taint_delay, taint)

        def taint() -> None:
            if node not in self.node_down:
                return
            n = self.get("nodes", "", node)
            assert n is not None
            n["spec"].setdefault("taints", []).append(
                {
                    "key": "node.kubernetes.io/unreachable",
                    "effect": "NoExecute",
                    "timeAdded": _ts(self.now()),
                }
            )
            self.put("nodes", n)
            for p in self.app_pods():
                if p["spec"].get("nodeName") == node:
                    tol = [
                        x
                        for x in p["spec"]["tolerations"]
                        if x["key"] == "node.kubernetes.io/unreachable"
                    ]
                    secs = tol[0].get("tolerationSeconds") if tol else 0
                    if secs is not None:
                        self.after(secs, lambda p=p: evict(p))

        def evict(p: Obj) -> None:
            if node not in self.node_down:
                return
            self.event(
                p["metadata"]["namespace"], p, "TaintManagerEviction", "Marking for deletion Pod"
            )
            self.delete_pod(p["metadata"]["namespace"], p["metadata"]["name"], None)

        self.after(t.grace, not_ready)
        if duration is not None:
            self.after(duration, lambda: self.heal_node(node))

    def node_patched(self, n: Obj) -> None:
        """Non-graceful node shutdown: an out-of-service taint makes the pod GC force-delete
        the node's pods (their volumes detach), so the ReplicaSet's replacements can run."""
        name = n["metadata"]["name"]
        if not any(
            t.get("key") == "node.kubernetes.io/out-of-service" for t in n["spec"].get("taints", [])
        ):
            return
        self.note(f"out-of-service {name}")
        for p in self.items("pods"):
            if (
                p["spec"].get("nodeName") == name
                and p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
                != "chaoslab"
            ):
                self.alive[p["metadata"]["name"]] = "refuse"
                self.remove("pods", p["metadata"]["namespace"], p["metadata"]["name"])
        self._sync_slice()
        self._replace()

    def heal_node(self, node: str) -> None:
        """Power on / partition healed / kubelet started: Ready again, taint gone, pods the
        controller deleted meanwhile finish terminating, the others come back."""
        with self.lock:
            if node not in self.node_down:
                return
            del self.node_down[node]
            self.note(f"node {node} back")
            self._renew_lease(node)  # the kubelet is back: its heartbeats too
            n = self.get("nodes", "", node)
            assert n is not None
            for c in n["status"]["conditions"]:
                if c["type"] == "Ready":
                    c.update(
                        status="True", reason="KubeletReady", lastTransitionTime=_ts(self.now())
                    )
            n["spec"]["taints"] = [
                x
                for x in n["spec"].get("taints", [])
                if not x["key"].startswith("node.kubernetes.io/")
            ]
            self.put("nodes", n)
            for p in self.items("pods"):
                if p["spec"].get("nodeName") != node:
                    continue
                name, ns = p["metadata"]["name"], p["metadata"]["namespace"]
                if (
                    p["metadata"].get("deletionTimestamp")
                    or p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
                    == "chaoslab"
                ):
                    self.alive[name] = "refuse"
                    self.remove("pods", ns, name)
                else:
                    self.alive[name] = "up"
                    self._set_ready(p, True)
            self._sync_slice()

    def kill_container(self, ns: str, name: str) -> None:
        pod = self.get("pods", ns, name)
        if pod is None:
            return
        self.note(f"kill {name}")
        self.alive[name] = "refuse"
        t = self.timing

        def not_ready() -> None:
            cur = self.get("pods", ns, name)
            if cur is not None:
                self._set_ready(cur, False)
                self._sync_slice()

        def restarted() -> None:
            cur = self.get("pods", ns, name)
            if cur is None:
                return
            for cs in cur["status"]["containerStatuses"]:
                cs["restartCount"] += 1
            self.put("pods", cur)
            self.after(t.start_delay, ready)

        def ready() -> None:
            cur = self.get("pods", ns, name)
            if cur is not None:
                self.alive[name] = "up"
                self._set_ready(cur, True)
                self._sync_slice()

        self.after(t.notready_delay, not_ready)
        self.after(t.restart_delay, restarted)

    def create_pod(self, ns: str, body: Obj) -> Obj:
        md = body.setdefault("metadata", {})
        if not md.get("name"):
            md["name"] = f"{md.get('generateName', 'pod-')}{next(self._names):05x}"
        md["namespace"] = ns
        body.setdefault("status", {})["phase"] = "Pending"
        pod = self.put("pods", body)
        labels = md.get("labels", {})
        action = labels.get("chaoslab.io/action")
        node = body.get("spec", {}).get("nodeName")
        if action and node and node not in self.node_down:
            # the fake kubelet "runs" the chaos pod: the action its script performs
            ann = md.get("annotations", {})
            arm = float(ann.get("chaoslab.io/arm", "0"))
            started = self.now()
            # the script's first line sleeps `arm`; the kubelet reports Running meanwhile
            running = copy.deepcopy(pod)  # stored object stays Pending until reported
            running["status"].update(
                phase="Running",
                containerStatuses=[
                    {
                        "name": "chaos",
                        "ready": True,
                        "restartCount": 0,
                        "image": "busybox",
                        "imageID": "",
                        "containerID": "containerd://chaos",
                        "state": {"running": {"startedAt": _ts(started)}},
                    }
                ],
            )
            self.after(self.timing.status_delay, lambda: self.put("pods", running))
            dur = ann.get("chaoslab.io/duration")
            if action in ("node-crash", "node-partition", "kubelet-stop"):
                self.after(
                    arm, lambda: self.start_node_fault(node, action, float(dur) if dur else None)
                )
            elif action == "pod-kill":
                self.after(
                    arm,
                    lambda: self.kill_container(
                        ann["chaoslab.io/target-namespace"], ann["chaoslab.io/target-pod"]
                    ),
                )

                def done() -> None:
                    cur = self.get("pods", ns, md["name"])
                    if cur is not None:
                        cur["status"]["phase"] = "Succeeded"
                        self.put("pods", cur)

                self.after(arm + 0.2, done)
        return pod

    def evict(self, ns: str, name: str, body: Obj) -> Obj:
        pod = self.get("pods", ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        for pdb in self.items("poddisruptionbudgets", ns):
            sel = ",".join(f"{k}={v}" for k, v in pdb["spec"]["selector"]["matchLabels"].items())
            if _labels_match(pod["metadata"].get("labels", {}), sel):
                if pdb["status"]["disruptionsAllowed"] <= 0:
                    raise ApiError(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    )
                pdb["status"]["disruptionsAllowed"] -= 1
                self.put("poddisruptionbudgets", pdb)
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        self.event(ns, pod, "Evicted", "Evicted by API")
        self.delete_pod(ns, name, grace)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    # ------------------------------------------------------------------ the control endpoint
    def control(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        """What hook commands call: /crash?node=, /partition?node=&duration=, /poweron?node="""
        node = query.get("node", "")
        with self.lock:
            if self.get("nodes", "", node) is None:
                return 404, f"no node {node}\n"
            if path == "/crash":
                self.start_node_fault(node, "node-crash", None)
            elif path == "/partition":
                self.start_node_fault(node, "node-partition", float(query["duration"]))
            elif path == "/kubelet-stop":
                self.start_node_fault(node, "kubelet-stop", float(query["duration"]))
            elif path == "/poweron":
                self.after(self.timing.grace / 2, lambda: self.heal_node(node))
            else:
                return 404, "unknown control\n"
        return 200, "ok\n"

    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


# ====================================================================== HTTP


def _route(path: str) -> tuple[str, str | None, str | None, str | None]:
    """(plural, namespace, name, subresource) of a REST path."""
    m = re.fullmatch(
        r"/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/([^/]+))?/([a-z]+)"
        r"(?:/([^/]+))?(?:/([a-z]+))?",
        path,
    )
    if not m or m.group(2) not in KINDS:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
    return m.group(2), m.group(1), m.group(3), m.group(4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ApiServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        # the API server's own (skewed) clock, as the drill's offset estimate sees it
        return super().date_time_string(self.server.cluster.now())

    def _send(self, code: int, obj: Obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else {}

    def _handle(self, method: str) -> None:
        cl = self.server.cluster
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            # read first: a refused request's unread body would corrupt the next request
            # on this keep-alive connection
            body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
            if self.headers.get("Authorization") != f"Bearer {self.server.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with cl.lock:
                cl.calls.append((method, self.path))
                for i, (m, rx, code, count) in enumerate(cl.failures):
                    if m == method and re.search(rx, url.path):
                        cl.failures[i] = (m, rx, code, count - 1)
                        if count - 1 <= 0:
                            del cl.failures[i]
                        raise ApiError(code, "InternalError", f"injected failure {code}")
            if url.path.rstrip("/") == "/version":
                major, minor = cl.git_version.lstrip("v").split(".")[:2]
                self._send(
                    200,
                    {
                        "major": major,
                        "minor": minor,
                        "gitVersion": cl.git_version,
                        "gitCommit": "0" * 40,
                        "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z",
                        "goVersion": "go1.23",
                        "compiler": "gc",
                        "platform": "linux/amd64",
                    },
                )
                return
            plural, ns, name, sub = _route(url.path)
            if method == "PATCH" and plural == "nodes":
                time.sleep(cl.timing.write_delay)  # outside the lock: other calls go on
            if method == "GET" and name is None and q.get("watch") in ("true", "1"):
                self._watch(plural, ns, q)
                return
            with cl.lock:
                self._send(*self._rest(method, plural, ns, name, sub, q, body))
        except ApiError as e:
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _rest(
        self,
        method: str,
        plural: str,
        ns: str | None,
        name: str | None,
        sub: str | None,
        q: dict[str, str],
        body: Any,
    ) -> tuple[int, Obj]:
        cl = self.server.cluster
        api, kind, _ = KINDS[plural]
        if method == "GET" and name is None:
            items = [
                o
                for o in cl.items(plural, ns)
                if _labels_match(o["metadata"].get("labels", {}), q.get("labelSelector"))
                and _fields_match(o, q.get("fieldSelector"))
            ]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": api,
                "metadata": {"resourceVersion": str(cl.rv)},
                "items": items,
            }
        assert name is not None
        if method == "GET":
            obj = cl.get(plural, ns or "", name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            return 200, obj
        if method == "POST" and plural == "pods" and sub == "eviction":
            return 201, cl.evict(ns or "", name, body)
        if method == "PATCH":
            obj = cl.get(plural, ns or "", name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            ctype = self.headers.get("Content-Type", "")
            if "json-patch" in ctype:
                raise ApiError(415, "UnsupportedMediaType", "json-patch not supported here")
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified")
            body.get("metadata", {}).pop("resourceVersion", None)
            new = _merge(copy.deepcopy(obj), body)
            out = cl.put(plural, new)
            if plural == "nodes":
                cl.node_patched(new)
            return 200, out
        if method == "DELETE":
            if plural == "pods":
                grace = (body or {}).get("gracePeriodSeconds")
                if "gracePeriodSeconds" in q:
                    grace = int(q["gracePeriodSeconds"])
                return 200, cl.delete_pod(ns or "", name, grace)
            obj = cl.remove(plural, ns or "", name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            return 200, obj
        raise ApiError(405, "MethodNotAllowed", f"{method} {plural}/{name}")

    def do_POST(self) -> None:
        cl = self.server.cluster
        url = urlsplit(self.path)
        try:
            if self.headers.get("Authorization") != f"Bearer {self.server.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            plural, ns, name, _sub = _route(url.path)
            if plural == "pods" and name is None:
                body = self._body()
                with cl.lock:
                    cl.calls.append(("POST", self.path))
                    for i, (m, rx, code, count) in enumerate(cl.failures):
                        if m == "POST" and re.search(rx, url.path):
                            cl.failures[i] = (m, rx, code, count - 1)
                            if count - 1 <= 0:
                                del cl.failures[i]
                            raise ApiError(code, "InternalError", f"injected failure {code}")
                    self._send(201, cl.create_pod(ns or "", body))
                return
        except ApiError as e:
            self._send(e.code, e.status())
            return
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _chunk(self, obj: Obj) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, plural: str, ns: str | None, q: dict[str, str]) -> None:
        cl = self.server.cluster
        sel, fsel = q.get("labelSelector"), q.get("fieldSelector")
        timeout = float(q.get("timeoutSeconds", 30))
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        start_rv = q.get("resourceVersion", "")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def wanted(o: Obj) -> bool:
            md = o["metadata"]
            return (
                (ns is None or md.get("namespace", "") == ns or not KINDS[plural][2])
                and _labels_match(md.get("labels", {}), sel)
                and _fields_match(o, fsel)
            )

        with cl.lock:
            gen = cl.watch_generation
            if start_rv in ("", "0"):
                last = cl.rv
                initial = [o for o in cl.items(plural, ns) if wanted(o)]
            else:
                last = int(start_rv)
                initial = []
                if last < cl.compacted:
                    self._chunk(
                        {
                            "type": "ERROR",
                            "object": ApiError(
                                410, "Expired", f"too old resource version: {last} ({cl.compacted})"
                            ).status(),
                        }
                    )
                    self.wfile.write(b"0\r\n\r\n")
                    return
        for o in initial:
            self._chunk({"type": "ADDED", "object": o})
        deadline = time.monotonic() + timeout
        last_sent = time.monotonic()
        while True:
            with cl.cond:
                batch = [
                    (rv, t, o)
                    for rv, p, t, o in cl.history
                    if rv > last and p == plural and wanted(o)
                ]
                if not batch:
                    cl.cond.wait(timeout=0.1)
                dropped = cl.watch_generation != gen or cl.closed
            if dropped:
                # an abrupt end: no terminating chunk, the client sees a broken stream
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            for rv, t, o in batch:
                self._chunk({"type": t, "object": o})
                last = rv
                last_sent = time.monotonic()
            if bookmarks and time.monotonic() - last_sent > self.server.bookmark_every:
                with cl.lock:
                    pending = any(
                        rv > last and p == plural and wanted(o) for rv, p, _t, o in cl.history
                    )
                    # a bookmark says: nothing you watch changed up to this version
                    mark = cl.rv
                if not pending:
                    api, kind, _ = KINDS[plural]
                    self._chunk(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": kind,
                                "apiVersion": api,
                                "metadata": {"resourceVersion": str(mark)},
                            },
                        }
                    )
                    last = max(last, mark)
                    last_sent = time.monotonic()
            if time.monotonic() > deadline:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cluster: FakeCluster, token: str, ctx: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cluster = cluster
        self.token = token
        self.ctx = ctx
        self.bookmark_every = 0.3

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError)):
            return  # a client that went away mid-request (a drill SIGKILLed by a test)
        super().handle_error(request, client_address)


class _ControlHandler(BaseHTTPRequestHandler):
    server: _ControlServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        code, text = self.server.cluster.control(url.path, q)
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__(("127.0.0.1", 0), _ControlHandler)
        self.cluster = cluster


def _make_tls_openssl(dirpath: Path) -> tuple[bytes, Path, Path]:
    """The same with the openssl command line (when the cryptography package is absent)."""
    import subprocess

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key, ca_crt = dirpath / "ca.key", dirpath / "ca.crt"
    key, csr, crt = dirpath / "apiserver.key", dirpath / "apiserver.csr", dirpath / "apiserver.crt"
    ext = dirpath / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "1",
        "-subj",
        "/CN=fake-kubernetes-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return ca_crt.read_bytes(), crt, key


def _make_tls(dirpath: Path) -> tuple[bytes, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (the client verifies it)."""
    import ipaddress

    try:
        from cryptography import x509
    except ImportError:  # not a dependency of chaoslab or kubernetes
        return _make_tls_openssl(dirpath)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubernetes-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = dirpath / "apiserver.crt", dirpath / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_path, key_path


class FakeApi:
    """The fake API server (HTTPS) plus the control endpoint, and a kubeconfig for them."""

    TOKEN = "fake-token-s3cr3t-0123456789abcdef"

    def __init__(self, cluster: FakeCluster, workdir: Path) -> None:
        self.cluster = cluster
        ca_pem, cert, key = _make_tls(workdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.api = _ApiServer(cluster, self.TOKEN, ctx)
        self.control = _ControlServer(cluster)
        cluster.control_port = self.control.server_address[1]
        self.kubeconfig = workdir / "kubeconfig"
        port = self.api.server_address[1]
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "other",
                    "clusters": [
                        {
                            "name": "fake",
                            "cluster": {
                                "server": f"https://127.0.0.1:{port}",
                                "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                            },
                        }
                    ],
                    "users": [{"name": "drill", "user": {"token": self.TOKEN}}],
                    "contexts": [
                        {"name": "fake", "context": {"cluster": "fake", "user": "drill"}},
                        {"name": "other", "context": {"cluster": "nowhere", "user": "drill"}},
                    ],
                }
            )
        )
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True, kwargs={"poll_interval": 0.05})
            for s in (self.api, self.control)
        ]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self.cluster.close()
        for s in (self.api, self.control):
            s.shutdown()
            s.server_close()


class _TargetHandler(BaseHTTPRequestHandler):
    """One connection: kube-proxy picks the backend when the connection is opened
    (conntrack pins it), so a long-lived connection keeps its backend until it dies."""

    server: ServiceTarget
    protocol_version = "HTTP/1.1"  # keep-alive for the prober's long-lived connections

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        cl = self.server.cluster
        with cl.lock:
            view = list(cl.proxy_view)
            self.backend = self.server.rng.choice(view) if view else None

    def _reset(self) -> None:
        # a dead process on a live node: the kernel answers with a RST
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def do_GET(self) -> None:
        cl = self.server.cluster
        with cl.lock:
            state = cl.alive.get(self.backend, "refuse") if self.backend else "none"
        if state == "none":
            # kube-proxy REJECTs connections to a Service without endpoints
            self._reset()
        elif state == "blackhole":
            time.sleep(cl.timing.blackhole_hold)
            self.close_connection = True
        elif state in ("refuse", "down"):
            self._reset()
        else:
            data = f"{self.backend}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class ServiceTarget(ThreadingHTTPServer):
    """The probed service: a real HTTP server on 127.0.0.1 following the fake cluster."""

    daemon_threads = True

    def __init__(self, cluster: FakeCluster, seed: int = 7) -> None:
        super().__init__(("127.0.0.1", 0), _TargetHandler)
        self.cluster = cluster
        self.rng = random.Random(seed)
        self._thread = threading.Thread(
            target=self.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
