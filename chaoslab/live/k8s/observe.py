"""Watches on Nodes, Pods, EndpointSlices and Events, turned into the model's milestones.

Each watch runs in a thread: list (for a resourceVersion and the current state), then
watch from there with bookmarks; a stream the server ends is resumed from the last
resourceVersion seen (bookmarks keep it fresh), a dropped connection likewise after a
short back-off, and a 410 Gone (history compacted) is answered with a fresh list whose
objects are replayed as ``RELIST`` events, so no state change is lost silently. Every
observation carries the local monotonic time it arrived.

`MilestoneTracker` turns observations of one trial into the milestone names the model
emits (``chaoslab.mechanisms`` registers them), first occurrence after the fault only:

=====================  ===========================================================
node.not_ready         the faulted node's Ready condition leaves True
pods.not_ready         a workload pod on the faulted node turns NotReady (node faults)
node.tainted           ``node.kubernetes.io/unreachable|not-ready:NoExecute`` added
pod.evicted            a workload pod on the faulted node gets a deletionTimestamp
pod.deleted            the targeted pod gets a deletionTimestamp (delete, eviction)
pod.sigterm            the kubelet's ``Killing`` event for a targeted pod
pod.not_ready          the targeted pod turns NotReady (pod faults)
container.died         the targeted container is seen terminated or restarted
container.restarted    the targeted container's restartCount went up (its new process runs)
pod.gone               a targeted pod object is removed
replacement.created    a workload pod that did not exist at the fault appears
replacement.scheduled  ... is bound to a node
replacement.ready      ... is Ready
pod.ready              a targeted or replacement pod is Ready again
endpoints.removed      the Service's EndpointSlices no longer list a targeted pod as ready
endpoints.added        they list a new or recovered pod as ready
node.ready             the faulted node is Ready again
=====================  ===========================================================

``service.recovered`` comes from the probes (the shared outage computation), not from here.
The model's ``container.serving`` (the restarted container's app listens again) has no
field in the API: the kubelet reports the process start (``state.running.startedAt``,
``restartCount``), and the app serving shows only in the probes and in ``pod.ready``.
Each milestone has the local time it was observed (``t``, seconds after the fault) and,
where the object carries one, the API server's own timestamp mapped onto the local clock
with the estimated offset (``t_server``; Kubernetes timestamps are whole seconds).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaoslab.live.k8s.discover import pod_ready
from chaoslab.live.k8s.kube import ClockOffset, Kube, KubeError, parse_time

__all__ = ["LIVE_MILESTONES", "MilestoneTracker", "Observation", "Watcher", "start_watches"]

Obj = dict[str, Any]

LIVE_MILESTONES = (
    "node.not_ready",
    "pods.not_ready",
    "node.tainted",
    "pod.evicted",
    "pod.deleted",
    "pod.sigterm",
    "pod.not_ready",
    "container.died",
    "container.restarted",
    "pod.gone",
    "replacement.created",
    "replacement.scheduled",
    "replacement.ready",
    "pod.ready",
    "endpoints.removed",
    "endpoints.added",
    "node.ready",
)
_NOEXEC = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


@dataclass(frozen=True)
class Observation:
    mono: float
    resource: str  # nodes | pods | endpointslices | events | watch
    type: str  # ADDED | MODIFIED | DELETED | RELIST | DROPPED | RESUMED | GONE
    obj: Obj


class Watcher(threading.Thread):
    """List + watch one collection until stopped; observations go to ``sink``."""

    def __init__(
        self,
        kube: Kube,
        resource: str,
        path: str,
        query: dict[str, str],
        sink: Callable[[Observation], None],
        stop: threading.Event,
        *,
        server_timeout: int,
        read_timeout: float,
        backoff: float,
    ) -> None:
        super().__init__(name=f"chaoslab-watch-{resource}", daemon=True)
        self.kube, self.resource, self.path, self.query = kube, resource, path, query
        self.sink, self.stop_event = sink, stop
        self.server_timeout, self.read_timeout, self.backoff = (
            server_timeout,
            read_timeout,
            backoff,
        )
        self.rv = ""
        self.listed = threading.Event()
        self.resumes = 0
        self.relists = 0
        self.error: str | None = None
        self._stream: list[Any] = []

    def close(self) -> None:
        """Stop now: cut the open stream instead of waiting for its next event."""
        self.stop_event.set()
        for raw in list(self._stream):
            with contextlib.suppress(Exception):
                raw.shutdown()

    def _list(self, kind: str) -> None:
        lst = self.kube.get(self.path, **self.query)
        self.rv = str((lst.get("metadata") or {}).get("resourceVersion", ""))
        now = time.monotonic()
        for o in lst.get("items", []):
            self.sink(Observation(now, self.resource, kind, o))

    def run(self) -> None:
        delay = self.backoff
        while not self.stop_event.is_set():
            try:
                if not self.rv:
                    self._list("LISTED" if not self.listed.is_set() else "RELIST")
                    self.listed.set()
                q = {
                    **self.query,
                    "resourceVersion": self.rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(self.server_timeout),
                }
                for ev in self.kube.watch_lines(
                    self.path, q, self.read_timeout, self.stop_event, self._stream
                ):
                    t, obj = ev.get("type", ""), ev.get("object") or {}
                    if t == "ERROR":
                        if obj.get("code") == 410:
                            self.relists += 1
                            self.sink(
                                Observation(
                                    time.monotonic(), "watch", "GONE", {"resource": self.resource}
                                )
                            )
                            self.rv = ""
                            break
                        raise KubeError(int(obj.get("code", 0)), str(obj.get("message")))
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.rv = str(rv)
                    if t != "BOOKMARK":
                        self.sink(Observation(time.monotonic(), self.resource, t, obj))
                delay = self.backoff
            except Exception as e:  # dropped stream, API error: resume after a back-off
                if self.stop_event.is_set():
                    return
                if isinstance(e, KubeError) and e.status == 410:
                    self.rv = ""
                self.resumes += 1
                self.error = str(e)[:200]
                self.sink(
                    Observation(
                        time.monotonic(),
                        "watch",
                        "DROPPED",
                        {"resource": self.resource, "error": self.error},
                    )
                )
                self.stop_event.wait(delay)
                # doubling, but capped low: after an API server outage the state changes
                # that follow must be seen when they happen, not a long back-off later
                delay = min(delay * 2, self.read_timeout, 8 * self.backoff)


def start_watches(
    kube: Kube,
    ns: str,
    service: str,
    selector: str,
    sink: Callable[[Observation], None],
    stop: threading.Event,
    *,
    server_timeout: int,
    read_timeout: float,
    backoff: float,
) -> list[Watcher]:
    specs = [
        ("nodes", "/api/v1/nodes", {}),
        ("pods", f"/api/v1/namespaces/{ns}/pods", {"labelSelector": selector}),
        (
            "endpointslices",
            f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            {"labelSelector": f"kubernetes.io/service-name={service}"},
        ),
        ("events", f"/api/v1/namespaces/{ns}/events", {}),
    ]
    ws = [
        Watcher(
            kube,
            r,
            p,
            q,
            sink,
            stop,
            server_timeout=server_timeout,
            read_timeout=read_timeout,
            backoff=backoff,
        )
        for r, p, q in specs
    ]
    for w in ws:
        w.start()
    return ws


@dataclass
class Milestone:
    name: str
    t: float  # local monotonic seconds after the fault
    t_server: float  # API server timestamp on the local clock, seconds after the fault
    detail: str


@dataclass
class MilestoneTracker:
    """Milestones of one trial from observations (call `feed` in arrival order)."""

    t0: float
    clock: ClockOffset
    fault: str
    node: str | None
    targets: frozenset[str]  # workload pods the fault hits directly
    initial_pods: frozenset[str]  # workload pods that existed at the fault
    initial_ready_endpoints: frozenset[str]
    #: uids of the pods at the fault: a StatefulSet's replacement has the old pod's name
    initial_uids: frozenset[str] = frozenset()
    found: dict[str, Milestone] = field(default_factory=dict)
    _not_ready_seen: bool = False
    _ep_state: dict[str, dict[str, bool]] = field(default_factory=dict)  # slice -> pod -> ready
    _restarts: dict[str, int] = field(default_factory=dict)
    _removed: set[str] = field(default_factory=set)
    _pod_not_ready: set[str] = field(default_factory=set)
    node_ready: bool | None = None
    pods_ready: dict[str, bool] = field(default_factory=dict)

    def _hit(self, name: str, mono: float, server_ts: str | None, detail: str) -> None:
        if name in self.found or mono < self.t0:
            return
        local = self.clock.to_local(parse_time(server_ts))
        self.found[name] = Milestone(
            name, mono - self.t0, (local - self.t0) if local is not None else math.nan, detail
        )

    def seed_restarts(self, pods: list[Obj]) -> None:
        for p in pods:
            self._restarts[p["metadata"]["name"]] = _restarts(p)

    def feed(self, ob: Observation) -> None:
        if ob.resource == "nodes":
            self._node(ob)
        elif ob.resource == "pods":
            self._pod(ob)
        elif ob.resource == "endpointslices":
            self._slice(ob)
        elif ob.resource == "events":
            self._event(ob)

    def _node(self, ob: Observation) -> None:
        n = ob.obj
        if n.get("metadata", {}).get("name") != self.node:
            return
        ready = next(
            (c for c in (n.get("status") or {}).get("conditions", []) if c.get("type") == "Ready"),
            None,
        )
        is_ready = bool(ready and ready.get("status") == "True")
        if ob.mono >= self.t0:
            if not is_ready:
                self._not_ready_seen = True
                self._hit(
                    "node.not_ready",
                    ob.mono,
                    (ready or {}).get("lastTransitionTime"),
                    f"{self.node} Ready={(ready or {}).get('status')}",
                )
            elif self._not_ready_seen:
                self._hit(
                    "node.ready",
                    ob.mono,
                    (ready or {}).get("lastTransitionTime"),
                    f"{self.node} Ready=True",
                )
            for t in (n.get("spec") or {}).get("taints") or []:
                if t.get("key") in _NOEXEC and t.get("effect") == "NoExecute":
                    self._hit("node.tainted", ob.mono, t.get("timeAdded"), f"{t['key']}:NoExecute")
        self.node_ready = is_ready

    def _pod(self, ob: Observation) -> None:
        p = ob.obj
        md, spec, st = p.get("metadata", {}), p.get("spec") or {}, p.get("status") or {}
        name = md.get("name", "")
        gone = ob.type == "DELETED"
        ready = pod_ready(p) and not gone and not md.get("deletionTimestamp")
        if gone:
            self.pods_ready.pop(name, None)
        else:
            self.pods_ready[name] = ready
        if ob.mono < self.t0:
            self._restarts[name] = _restarts(p)
            return
        node_fault = self.node is not None and self.fault not in ("pod-delete", "pod-kill")
        uid = md.get("uid", "")
        known = not self.initial_uids or uid in self.initial_uids
        if name in self.targets and known:
            if gone:
                self._hit("pod.gone", ob.mono, None, name)
            if md.get("deletionTimestamp"):
                # a drain's Eviction API call is an eviction too: the model's drain emits
                # pod.evicted (chaoslab.mechanisms.k8s Cluster.drain)
                which = "pod.evicted" if node_fault else "pod.deleted"
                # deletionTimestamp is the deadline (now + grace): the server instant of
                # the delete is that minus deletionGracePeriodSeconds
                ts = parse_time(md["deletionTimestamp"])
                grace = md.get("deletionGracePeriodSeconds")
                server = None
                if ts is not None and grace is not None:
                    loc = self.clock.to_local(ts - float(grace))
                    server = loc
                self._hit_at(which, ob.mono, server, name)
            if not pod_ready(p) and not gone:
                self._pod_not_ready.add(name)
                cond: dict[str, Any] = next(
                    (c for c in st.get("conditions", []) if c.get("type") == "Ready"), {}
                )
                self._hit(
                    "pods.not_ready" if node_fault else "pod.not_ready",
                    ob.mono,
                    cond.get("lastTransitionTime"),
                    name,
                )
            r = _restarts(p)
            if r > self._restarts.get(name, r):
                self._hit("container.died", ob.mono, _finished_at(p), name)
                self._hit("container.restarted", ob.mono, None, f"{name} restarts={r}")
            elif _terminated(p):
                self._hit("container.died", ob.mono, _finished_at(p), name)
            if ready and name in self._pod_not_ready:
                self._hit("pod.ready", ob.mono, None, name)
        elif (name not in self.initial_pods or not known) and not gone:
            self._hit("replacement.created", ob.mono, md.get("creationTimestamp"), name)
            if spec.get("nodeName"):
                cond = next(
                    (c for c in st.get("conditions", []) if c.get("type") == "PodScheduled"), {}
                )
                self._hit(
                    "replacement.scheduled",
                    ob.mono,
                    cond.get("lastTransitionTime"),
                    f"{name} on {spec['nodeName']}",
                )
            if ready:
                cond = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), {})
                self._hit("replacement.ready", ob.mono, cond.get("lastTransitionTime"), name)
                self._hit("pod.ready", ob.mono, cond.get("lastTransitionTime"), name)

    def _hit_at(self, name: str, mono: float, local_server: float | None, detail: str) -> None:
        if name in self.found or mono < self.t0:
            return
        self.found[name] = Milestone(
            name,
            mono - self.t0,
            (local_server - self.t0) if local_server is not None else math.nan,
            detail,
        )

    def ready_endpoints(self) -> set[str]:
        return {pod for eps in self._ep_state.values() for pod, r in eps.items() if r}

    def _slice(self, ob: Observation) -> None:
        s = ob.obj
        name = s.get("metadata", {}).get("name", "")
        if ob.type == "DELETED":
            self._ep_state.pop(name, None)
        else:
            eps: dict[str, bool] = {}
            for e in s.get("endpoints") or []:
                ref = (e.get("targetRef") or {}).get("name")
                if ref:
                    eps[ref] = bool((e.get("conditions") or {}).get("ready", True))
            self._ep_state[name] = eps
        if ob.mono < self.t0:
            return
        ready = self.ready_endpoints()
        lost = [p for p in self.targets if p in self.initial_ready_endpoints and p not in ready]
        if lost:
            self._removed.update(lost)
            self._hit("endpoints.removed", ob.mono, None, ",".join(sorted(lost)))
        if self._removed or "endpoints.removed" in self.found:
            new = [p for p in ready if p not in self.initial_ready_endpoints or p in self._removed]
            if new:
                self._hit("endpoints.added", ob.mono, None, ",".join(sorted(new)))

    def _event(self, ob: Observation) -> None:
        e = ob.obj
        inv = e.get("involvedObject") or e.get("regarding") or {}
        if (
            inv.get("kind") == "Pod"
            and inv.get("name") in self.targets
            and e.get("reason") == "Killing"
        ):
            self._hit(
                "pod.sigterm",
                ob.mono,
                e.get("eventTime") or e.get("lastTimestamp") or e.get("firstTimestamp"),
                inv.get("name", ""),
            )


def _restarts(p: Obj) -> int:
    return sum(
        int(c.get("restartCount", 0))
        for c in (p.get("status") or {}).get("containerStatuses") or []
    )


def _terminated(p: Obj) -> bool:
    for c in (p.get("status") or {}).get("containerStatuses") or []:
        state = c.get("state") or {}
        if "terminated" in state:
            return True
    return False


def _finished_at(p: Obj) -> str | None:
    for c in (p.get("status") or {}).get("containerStatuses") or []:
        for key in ("state", "lastState"):
            term = (c.get(key) or {}).get("terminated")
            if term and term.get("finishedAt"):
                return str(term["finishedAt"])
    return None


class ObservationLog:
    """Thread-safe queue plus full record of a run's observations."""

    def __init__(self) -> None:
        self.q: queue.Queue[Observation] = queue.Queue()
        self.all: list[Observation] = []
        self._lock = threading.Lock()

    def __call__(self, ob: Observation) -> None:
        with self._lock:
            self.all.append(ob)
        self.q.put(ob)

    def drain(self) -> list[Observation]:
        out = []
        while True:
            try:
                out.append(self.q.get_nowait())
            except queue.Empty:
                return out
