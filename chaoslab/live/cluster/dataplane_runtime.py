"""The runtime stand-in of one simulated node: it serves the IPs of the pods bound to the node.

KWOK plays the kubelet towards the API server (node status, lease, pod phase and IP) but
runs nothing. This process plays the container runtime: it watches the pods whose
``spec.nodeName`` is its node (the real ``kubernetes`` client, list then watch, relisting
after every break) and, for each pod that is ``Running`` with a ``status.podIP``, adds that
IP to the node namespace's ``pods0`` interface and answers HTTP on every ``containerPort``
with the lab's server (``chaoslab.live.lab.server``: 200 and the pod's name). It runs inside
the node's namespace and reaches the API server through the node's bridge, so a partition of
the node cuts its watch too — and, as on a real node, the pods keep serving meanwhile.

How it differs from a kubelet with a container runtime (what a drill can and cannot show):

- No pod sandbox, per-pod veth or CNI: the pod IP is a /32 on the node namespace's
  ``pods0`` (one end of a veth) and packets to it are delivered to this process in the node
  namespace itself. Packets to an IP of the node's podCIDR that no pod holds go out on
  ``pods0`` and get no ARP answer, so the node reports "host unreachable" after ARP gives
  up, as with a bridge CNI. The pod shares the node's network stack (its conntrack, its
  iptables), which a pod behind a veth does not.
- Termination: when a pod gets ``deletionTimestamp`` the "container" stops after the pod's
  ``preStop`` ``sleep`` action (capped by ``terminationGracePeriodSeconds``), as an app that
  exits on SIGTERM; ``exec``/``httpGet`` preStop hooks are not run (counted as 0 s).
- No probes. Once a pod's server listens, this process writes the pod condition
  ``chaoslab.io/serving`` and Ready in one ``pods/status`` patch (as the node's kubelet
  identity), as a kubelet writes Ready once its readiness probe passes; KWOK's start stage
  leaves a new pod Running but not Ready (``chaoslab.live.cluster.components``). Before,
  KWOK reported a pod Ready at once and kube-proxy could send new connections to an IP
  nobody served yet. What stays different from a kubelet: the start is two watch-and-write
  hops (KWOK's Running, then this process's Ready) where a kubelet writes Running and Ready
  in its one pod sync after the container starts.
- Restarting this process (a node restored after a crash) starts with no pod served, like a
  rebooted node; stopping KWOK alone (kubelet-stop) leaves the pods serving, like stopping a
  kubelet leaves its containers running.

``python -m chaoslab.live.cluster.dataplane_runtime --node N --kubeconfig K`` watches the
API; ``--pod NAME=IP:PORT[,PORT...]`` serves a static pod from start (as a kubelet's static
pods run without the API server), which is how the tests check the data path alone.
Every start and stop is one log line ``<CLOCK_MONOTONIC s> serve|stop <ns/name> <ip>:<ports>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PodEndpoint",
    "PodServers",
    "desired",
    "main",
    "parse_static_pod",
    "ready_conditions",
    "serving",
]


def _lab_server() -> Any:
    """The lab's HTTP server module. Run as a script this file is not in a package, and
    importing ``chaoslab`` would load pandas into every stand-in: load the file itself."""
    if __package__:
        from chaoslab.live.lab import server

        return server
    path = Path(__file__).resolve().parents[1] / "lab" / "server.py"
    spec = importlib.util.spec_from_file_location("chaoslab_lab_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the interface of the node namespace that holds the pod IPs (made by dataplane.py)
POD_DEVICE = "pods0"
#: the stand-in's own plumbing, not model timings: how long one watch request lasts before
#: it relists, how long it waits before reconnecting after an error, and how long a connect
#: may take (a partitioned node's SYNs are dropped)
WATCH_SECONDS = 60
RETRY_SECONDS = 1.0
CONNECT_SECONDS = 5.0
#: components.SERVING_CONDITION (this file runs as a script: it imports no chaoslab)
SERVING_CONDITION = "chaoslab.io/serving"


@dataclass(frozen=True)
class PodEndpoint:
    """What a running pod exposes: its key (``namespace/name``), IP and container ports."""

    key: str
    ip: str
    ports: tuple[int, ...]
    stop_after: float = 0.0  # seconds between deletionTimestamp and the "container" exiting


def _prestop_seconds(pod: Any) -> float:
    """The preStop sleep of the pod's longest-sleeping container, capped by the grace period."""
    sleeps = [0.0]
    for c in pod.spec.containers or []:
        hook = c.lifecycle.pre_stop if c.lifecycle else None
        if hook is not None and getattr(hook, "sleep", None) is not None:
            sleeps.append(float(hook.sleep.seconds))
    grace = pod.spec.termination_grace_period_seconds
    return min(max(sleeps), float(grace)) if grace is not None else max(sleeps)


def desired(pod: Any) -> PodEndpoint | None:
    """The endpoint a pod (a ``V1Pod``) should be serving now, or None if it should not run.

    A pod being deleted still runs until its preStop sleep ends: the caller schedules that
    stop using ``stop_after``."""
    st, spec = pod.status, pod.spec
    if st is None or st.phase != "Running" or not st.pod_ip or spec.host_network:
        return None
    ports = sorted(
        {
            p.container_port
            for c in spec.containers or []
            for p in c.ports or []
            if p.protocol in (None, "TCP")
        }
    )
    key = f"{pod.metadata.namespace}/{pod.metadata.name}"
    return PodEndpoint(key, st.pod_ip, tuple(ports), _prestop_seconds(pod))


def parse_static_pod(text: str) -> PodEndpoint:
    """``NAME=IP:PORT[,PORT...]`` (the ``--pod`` option)."""
    name, _, rest = text.partition("=")
    ip, _, ports = rest.rpartition(":")
    try:
        nums = tuple(int(p) for p in ports.split(","))
    except ValueError:
        nums = ()
    if not name or not ip or not nums:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=IP:PORT[,PORT...]")
    return PodEndpoint(name if "/" in name else f"static/{name}", ip, nums)


def _log(verb: str, ep: PodEndpoint) -> None:
    ports = ",".join(map(str, ep.ports))
    print(f"{time.monotonic():.6f} {verb} {ep.key} {ep.ip}:{ports}", flush=True)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0 and "File exists" not in r.stderr and "Cannot assign" not in r.stderr:
        print(f"ip {' '.join(args)}: {r.stderr.strip()}", flush=True)


def serving(pod: Any) -> bool:
    """Whether the pod (a ``V1Pod``) carries the serving condition already."""
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == SERVING_CONDITION and c.status == "True" for c in conds)


Mark = Callable[[str, str], bool]


def ready_conditions(now: str) -> list[dict[str, str]]:
    """The conditions the stand-in writes once it serves a pod: its own serving condition,
    and Ready and ContainersReady, as a kubelet writes them itself when the readiness probe
    passes (``reason`` cleared: KWOK's start stage left ``ContainersNotReady`` there)."""
    ready = {"status": "True", "lastTransitionTime": now, "reason": "", "message": ""}
    return [
        {"type": SERVING_CONDITION, "status": "True", "lastTransitionTime": now},
        {"type": "Ready", **ready},
        {"type": "ContainersReady", **ready},
    ]


def status_marker(kubeconfig: str) -> Mark:
    """Marks ``namespace, name`` served and Ready in one strategic merge of ``pods/status``
    (the condition list merges by type, KWOK's other conditions stay): one API write after
    the server listens, where KWOK's stage waiting for a serving condition was a second
    watch and write (0.01-0.17 s more under load)."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

    def mark(namespace: str, name: str) -> bool:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            api.patch_namespaced_pod_status(
                name,
                namespace,
                {"status": {"conditions": ready_conditions(now)}},
                _content_type="application/strategic-merge-patch+json",
                _request_timeout=(CONNECT_SECONDS, CONNECT_SECONDS),
            )
        except Exception as exc:  # the pod went away, or the node is cut off: next event
            print(f"{time.monotonic():.6f} mark {namespace}/{name}: {exc}", flush=True)
            return False
        return True

    return mark


class PodServers:
    """The pods this node serves: their addresses on ``pods0`` and their listeners."""

    def __init__(self, device: str = POD_DEVICE, mark: Mark | None = None) -> None:
        self.device = device
        self.handler = _lab_server().http_handler
        self.running: dict[str, tuple[PodEndpoint, list[asyncio.Server]]] = {}
        self.stopping: dict[str, asyncio.TimerHandle] = {}
        self.mark = mark
        self.marked: set[tuple[str, str]] = set()

    async def serve(self, ep: PodEndpoint) -> None:
        cur = self.running.get(ep.key)
        if cur is not None and (cur[0].ip, cur[0].ports) == (ep.ip, ep.ports):
            return
        if cur is not None:
            self.stop(ep.key)
        _ip("addr", "add", f"{ep.ip}/32", "dev", self.device)
        name = ep.key.rpartition("/")[2]
        servers = []
        for port in ep.ports:
            try:
                servers.append(
                    await asyncio.start_server(
                        self.handler(name, None), ep.ip, port, reuse_address=True
                    )
                )
            except OSError as exc:
                print(f"{ep.key}: cannot listen on {ep.ip}:{port}: {exc}", flush=True)
        self.running[ep.key] = (ep, servers)
        _log("serve", ep)

    def stop(self, key: str) -> None:
        handle = self.stopping.pop(key, None)
        if handle is not None:
            handle.cancel()
        cur = self.running.pop(key, None)
        if cur is None:
            return
        ep, servers = cur
        for s in servers:
            s.close()
        # another pod may hold the IP now (KWOK reuses freed IPs); keep it then
        if not any(e.ip == ep.ip for e, _ in self.running.values()):
            _ip("addr", "del", f"{ep.ip}/32", "dev", self.device)
        _log("stop", ep)

    def terminate(self, key: str, after: float) -> None:
        """The pod is being deleted: its container exits ``after`` seconds from now."""
        if key not in self.running or key in self.stopping:
            return
        loop = asyncio.get_running_loop()
        self.stopping[key] = loop.call_later(after, self.stop, key)

    async def apply(self, kind: str, pod: Any) -> None:
        """One watch event (ADDED/MODIFIED/DELETED) for a pod of this node."""
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        ep = desired(pod)
        if kind == "DELETED" or ep is None:
            if key in self.stopping:
                return  # its preStop sleep is running: the container still serves
            self.stop(key)
        elif pod.metadata.deletion_timestamp is not None:
            self.terminate(key, ep.stop_after)
        else:
            await self.serve(ep)
            if key in self.running and not serving(pod) and (key, ep.ip) not in self.marked:
                self._mark(pod, (key, ep.ip))

    def _mark(self, pod: Any, which: tuple[str, str]) -> None:
        """Set the serving condition once per pod and IP (again after a failed call), in a
        thread: a cut-off API must hold up neither the servers nor the events."""
        mark = self.mark
        if mark is None:
            return
        self.marked.add(which)
        ns, name = pod.metadata.namespace, pod.metadata.name

        def call() -> None:
            if not mark(ns, name):
                self.marked.discard(which)

        asyncio.get_running_loop().run_in_executor(None, call)

    async def sync(self, pods: Sequence[Any]) -> None:
        """A fresh list: pods that vanished while the watch was broken stop now."""
        keys = {f"{p.metadata.namespace}/{p.metadata.name}" for p in pods}
        for key in [k for k in self.running if k not in keys and not k.startswith("static/")]:
            if key not in self.stopping:
                self.stop(key)
        for p in pods:
            await self.apply("MODIFIED", p)


Emit = Callable[[str, Any], None]


def _watch_pods(node: str, kubeconfig: str, emit: Emit, stop: threading.Event) -> None:
    """List then watch the node's pods until ``stop``; reconnect after every error."""
    from kubernetes import client, config, watch
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    selector = f"spec.nodeName={node}"
    timeout = (CONNECT_SECONDS, WATCH_SECONDS + CONNECT_SECONDS)
    while not stop.is_set():
        try:
            lst = api.list_pod_for_all_namespaces(field_selector=selector, _request_timeout=timeout)
            emit("SYNC", lst.items)
            w = watch.Watch()
            for ev in w.stream(
                api.list_pod_for_all_namespaces,
                field_selector=selector,
                resource_version=lst.metadata.resource_version if lst.metadata else None,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=timeout,
            ):
                if stop.is_set() or ev["type"] == "ERROR":
                    break  # 410 Gone and friends: relist
                emit(ev["type"], ev["object"])
        except (ApiException, OSError, ValueError) as exc:
            print(f"{time.monotonic():.6f} watch: {type(exc).__name__}: {exc}", flush=True)
            stop.wait(RETRY_SECONDS)
        except Exception as exc:  # urllib3's errors do not share a base with OSError
            print(f"{time.monotonic():.6f} watch: {type(exc).__name__}: {exc}", flush=True)
            stop.wait(RETRY_SECONDS)


async def _run(node: str, kubeconfig: str | None, static: Sequence[PodEndpoint]) -> None:
    pods = PodServers(mark=status_marker(kubeconfig) if kubeconfig is not None else None)
    _ip("addr", "flush", "dev", pods.device)  # a restarted node runs no pod yet
    for ep in static:
        await pods.serve(ep)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    halt = threading.Event()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if kubeconfig is not None:

        def emit(kind: str, obj: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, obj))

        threading.Thread(
            target=_watch_pods, args=(node, kubeconfig, emit, halt), daemon=True
        ).start()
    print(f"runtime stand-in of {node} started", flush=True)
    waiter = asyncio.ensure_future(done.wait())
    while not done.is_set():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        kind, obj = getter.result()
        if kind == "SYNC":
            await pods.sync(obj)
        else:
            await pods.apply(kind, obj)
    halt.set()
    for key in list(pods.running):
        with contextlib.suppress(Exception):
            pods.stop(key)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.dataplane_runtime")
    ap.add_argument("--node", required=True)
    ap.add_argument(
        "--kubeconfig", default=None, help="watch the API server (else static pods only)"
    )
    ap.add_argument("--pod", type=parse_static_pod, action="append", default=[])
    a = ap.parse_args(argv)
    asyncio.run(_run(a.node, a.kubeconfig, a.pod))
    return 0


if __name__ == "__main__":
    sys.exit(main())
