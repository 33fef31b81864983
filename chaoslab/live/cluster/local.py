"""`LocalCluster`: the real control plane on loopback, with kwok nodes.

``up`` goes etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> Nodes
and one kwok per Node -> the app, waiting for each on its health endpoint (or, for
nodes and pods, on Ready) with a bounded deadline. ``down`` stops what ``up`` recorded,
by PID and start time, in reverse order, and removes the state folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslab.live.cluster import objects
from chaoslab.live.cluster.build import KWOK, Build, find_build
from chaoslab.live.cluster.components import Layout, cert_specs, free_ports, write_kubeconfig
from chaoslab.live.cluster.config import ClusterConfig
from chaoslab.live.cluster.errors import ClusterError, ComponentFailed, StateInUse
from chaoslab.live.cluster.health import Deadlines, probe, wait_healthy, wait_until
from chaoslab.live.cluster.procs import ProcRecord, alive, spawn, stop
from chaoslab.live.cluster.state import ClusterState, default_state_dir

__all__ = ["ComponentStatus", "LocalCluster"]

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    healthy: bool | None  # None: no health endpoint (kwok: see its Node)
    detail: str = ""


@dataclass
class LocalCluster:
    """One local cluster, described by its state folder."""

    state: ClusterState
    layout: Layout
    deadlines: Deadlines = field(default_factory=Deadlines)

    # ------------------------------------------------------------------ entry points
    @classmethod
    def up(
        cls,
        config: ClusterConfig | None = None,
        *,
        state_dir: Path | None = None,
        name: str = "default",
        deadlines: Deadlines | None = None,
        build: Build | None = None,
        log: Callable[[str], None] | None = None,
        keep_failed: bool = False,
    ) -> LocalCluster:
        """Bring a cluster up; on failure stop what was started (unless ``keep_failed``:
        then it stays for a look, and ``down`` removes it) and re-raise."""
        config = config or ClusterConfig()
        build = build or find_build()
        kwok = find_build(KWOK)
        state_dir = (state_dir or default_state_dir(name)).resolve()
        state = _claim(state_dir, name)
        layout = Layout(state_dir, free_ports(), build, config)
        state.ports = dict(layout.ports)
        state.info = {"versions": build.versions | kwok.versions, "config": config.source}
        state.info["timers"] = config.timers.sources
        state.save()
        cluster = cls(state, layout, deadlines or Deadlines())
        try:
            cluster._start(kwok, log or (lambda _m: None))
        except BaseException:
            # stop what runs but keep the folder: the error names a log file inside it
            if not keep_failed:
                cluster.stop_all()
            state.phase = "failed"
            state.save()
            raise
        return cluster

    @classmethod
    def load(cls, state_dir: Path, build: Build | None = None) -> LocalCluster | None:
        """The cluster recorded in ``state_dir``, or None if there is none."""
        state = ClusterState.load(state_dir.resolve())
        if state is None:
            return None
        layout = Layout(state.dir, state.ports, build, ClusterConfig())
        return cls(state, layout)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    def admin_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` with the admin certificate."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))

    # ------------------------------------------------------------------ up
    def _start(self, kwok: Build, log: Callable[[str], None]) -> None:
        t0 = time.monotonic()
        self._write_pki()
        pki, lay, dl = self.layout.pki, self.layout, self.deadlines
        admin = (pki.cert("admin"), pki.key("admin"))
        etcd = self._spawn("etcd", lay.etcd())
        wait_healthy(etcd, f"{lay.url('etcd-metrics', 'http')}/health", dl.etcd)
        log(f"etcd healthy ({time.monotonic() - t0:.1f} s)")
        api = self._spawn("kube-apiserver", lay.apiserver())
        wait_healthy(api, f"{lay.url('apiserver')}/readyz", dl.apiserver, pki.ca_cert, admin)
        log(f"kube-apiserver ready ({time.monotonic() - t0:.1f} s)")
        kcm = self._spawn("kube-controller-manager", lay.controller_manager())
        sched = self._spawn("kube-scheduler", lay.scheduler())
        wait_healthy(kcm, f"{lay.url('controller-manager')}/healthz", dl.controllers, pki.ca_cert)
        wait_healthy(sched, f"{lay.url('scheduler')}/healthz", dl.controllers, pki.ca_cert)
        log(f"kube-controller-manager and kube-scheduler healthy ({time.monotonic() - t0:.1f} s)")
        self._start_nodes(kwok)
        log(f"{len(self.layout.config.nodes())} kwok nodes Ready ({time.monotonic() - t0:.1f} s)")
        self._start_app()
        log(f"app Ready ({time.monotonic() - t0:.1f} s)")
        self.state.phase = "up"
        self.state.info["up_seconds"] = round(time.monotonic() - t0, 1)
        self.state.save()

    def _write_pki(self) -> None:
        lay = self.layout
        nodes = lay.config.nodes()
        lay.pki.create(cert_specs(nodes))
        server = lay.url("apiserver")
        write_kubeconfig(lay.admin_kubeconfig, server, lay.pki, "admin", "kubernetes-admin")
        for name in ("controller-manager", "scheduler", "kube-proxy"):
            write_kubeconfig(lay.kubeconfig(name), server, lay.pki, name, name)
        for n in nodes:
            write_kubeconfig(
                lay.kubeconfig(f"node-{n.name}"), server, lay.pki, f"node-{n.name}", n.name
            )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ProcRecord:
        rec = spawn(name, argv, self.layout.logs / f"{name}.log", env)
        self.state.record(rec)
        return rec

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.admin_client())

    def _start_nodes(self, kwok: Build) -> None:
        from kubernetes import utils

        core = self._core()
        nodes = self.layout.config.nodes()
        for obj in objects.kwok_rbac():
            utils.create_from_dict(self.admin_client(), obj)
        for n in nodes:
            core.create_node(objects.node_object(n))
        kwoks = []
        for n in nodes:
            argv = self.layout.kwok(kwok, n.name, self.layout.kubeconfig(f"node-{n.name}"))
            kwoks.append(self._spawn_kwok(n.name, argv))
        names = [n.name for n in nodes]

        def ready() -> tuple[bool, str]:
            _fail_if_exited(kwoks)
            return objects.nodes_ready(core, names)

        wait_until("kwok nodes Ready", ready, self.deadlines.nodes_ready)

    def _spawn_kwok(self, node: str, argv: list[str]) -> ProcRecord:
        # kwok reads and caches under $HOME: keep that inside the state folder
        home = self.layout.dir / "kwok" / node
        home.mkdir(parents=True, exist_ok=True)
        return self._spawn(f"kwok-{node}", argv, env=dict(os.environ, HOME=str(home)))

    # ------------------------------------------------------------------ node hooks
    def _kwok_record(self, node: str) -> ProcRecord:
        recs = [p for p in self.state.processes if p.name == f"kwok-{node}"]
        if not recs:
            raise ClusterError(f"no kwok process recorded for node {node}")
        return recs[-1]

    def stop_kubelet(self, node: str) -> None:
        """Stop the node's kubelet stand-in (its kwok process): heartbeats and pod status
        updates stop, as when a kubelet is stopped or its node crashes."""
        stop(self._kwok_record(node), self.deadlines.stop)

    def start_kubelet(self, node: str) -> None:
        """Start the node's kwok again with the command line it had."""
        rec = self._kwok_record(node)
        if alive(rec.pid, rec.start):
            return
        self._spawn_kwok(node, list(rec.argv))

    def kubelet_running(self, node: str) -> bool:
        rec = self._kwok_record(node)
        return alive(rec.pid, rec.start)

    def _start_app(self) -> None:
        from kubernetes import utils

        api = self.admin_client()
        for obj in objects.app_objects(self.layout.config):
            utils.create_from_dict(api, obj)
        core, cfg = self._core(), self.layout.config
        want = self._app_pod_count()
        wait_until(
            f"{cfg.app} pods Ready",
            lambda: objects.pods_ready(core, cfg, want),
            self.deadlines.app_ready,
        )

    def _app_pod_count(self) -> int:
        cfg = self.layout.config
        if cfg.spec.app_kind != "DaemonSet":
            return cfg.spec.replicas
        return sum(1 for n in cfg.nodes() if n.role in cfg.spec.app_roles())

    # ------------------------------------------------------------------ status / down
    def status(self) -> list[ComponentStatus]:
        """Each recorded process: running, and healthy by its endpoint (kwok: its Node
        Ready). A process replaced by a restart is not listed."""
        latest = {p.name: p for p in self.state.processes}
        rows = [self._component_status(p) for p in latest.values()]
        ready = self._nodes_ready() if any(r.name.startswith("kwok-") for r in rows) else {}
        return [
            ComponentStatus(r.name, r.pid, r.running, ready.get(r.name[5:], False), "Node Ready")
            if r.name.startswith("kwok-") and r.running
            else r
            for r in rows
        ]

    def _nodes_ready(self) -> dict[str, bool]:
        import urllib3
        from kubernetes.client import ApiException

        try:
            nodes = self._core().list_node(_request_timeout=5).items
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return {}  # the API server is down: its own row says so
        return {n.metadata.name: objects.condition(n, "Ready") == "True" for n in nodes}

    def _component_status(self, rec: ProcRecord) -> ComponentStatus:
        running = alive(rec.pid, rec.start)
        url = self._health_url(rec.name)
        if not running or url is None:
            return ComponentStatus(rec.name, rec.pid, running, None if url is None else False)
        pki = self.layout.pki
        admin = (pki.cert("admin"), pki.key("admin")) if rec.name == "kube-apiserver" else None
        ok, why = probe(url, pki.ca_cert if url.startswith("https") else None, admin)
        return ComponentStatus(rec.name, rec.pid, running, ok, "" if ok else why)

    def _health_url(self, name: str) -> str | None:
        lay = self.layout
        return {
            "etcd": f"{lay.url('etcd-metrics', 'http')}/health",
            "kube-apiserver": f"{lay.url('apiserver')}/readyz",
            "kube-controller-manager": f"{lay.url('controller-manager')}/healthz",
            "kube-scheduler": f"{lay.url('scheduler')}/healthz",
        }.get(name)

    def stop_all(self) -> list[str]:
        """Stop every recorded process, newest first (reverse start order)."""
        return [
            f"stopped {rec.name} (pid {rec.pid})"
            for rec in reversed(self.state.processes)
            if stop(rec, self.deadlines.stop)
        ]

    def down(self) -> list[str]:
        """Stop every recorded process, then remove the state folder."""
        notes = self.stop_all()
        still = [p for p in self.state.processes if alive(p.pid, p.start)]
        if still:
            names = ", ".join(f"{p.name} (pid {p.pid})" for p in still)
            raise ClusterError(f"{self.state.dir}: could not stop {names}; state kept")
        shutil.rmtree(self.state.dir, ignore_errors=True)
        notes.append(f"removed {self.state.dir}")
        return notes


def _fail_if_exited(procs: list[ProcRecord]) -> None:
    for rec in procs:
        if not alive(rec.pid, rec.start):
            raise ComponentFailed(f"{rec.name} exited during start-up; log: {rec.log}")


def _claim(state_dir: Path, name: str) -> ClusterState:
    """Create the state folder's state.json exclusively: a second ``up`` refuses."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = ClusterState(dir=state_dir, name=name)
    try:
        fd = os.open(state.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        prev = ClusterState.load(state_dir)
        running = sum(alive(p.pid, p.start) for p in prev.processes) if prev else 0
        phase = prev.phase if prev else "unknown"
        raise StateInUse(
            f"{state_dir} already holds a cluster ({phase}, {running} processes running); "
            f"run `chaoslab cluster down --state {state_dir}` first"
        ) from None
    os.close(fd)
    state.save()
    return state


@contextlib.contextmanager
def running(config: ClusterConfig | None = None, **kwargs: Any) -> Iterator[LocalCluster]:
    """``with running(...) as cluster:``: up, and down also when the body fails."""
    cluster = LocalCluster.up(config, **kwargs)
    try:
        yield cluster
    finally:
        cluster.down()
