"""`LocalCluster`: the real control plane on loopback, with kwok nodes.

``up`` goes etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> Nodes
and one kwok per Node -> the app, waiting for each on its health endpoint (or, for
nodes and pods, on Ready) with a bounded deadline. ``down`` stops what ``up`` recorded,
by PID and start time, in reverse order, and removes the state folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslab.live.cluster import objects
from chaoslab.live.cluster.build import KWOK, Build, find_build
from chaoslab.live.cluster.components import Layout, cert_specs, free_ports, write_kubeconfig
from chaoslab.live.cluster.config import ClusterConfig
from chaoslab.live.cluster.errors import ClusterError, StateInUse
from chaoslab.live.cluster.health import Deadlines, probe, wait_healthy, wait_until
from chaoslab.live.cluster.kubelets import HostKubelets, Kubelets, NetnsKubelets
from chaoslab.live.cluster.procs import ProcRecord, alive, gone, stop
from chaoslab.live.cluster.state import (
    ClusterState,
    default_state_dir,
    is_rotated_logs,
    move_logs,
    rotate_logs,
)

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
    _dataplane: Any = field(default=None, repr=False)

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
        dataplane: bool | None = None,
    ) -> LocalCluster:
        """Bring a cluster up; on failure stop what was started (unless ``keep_failed``:
        then it stays for a look, and ``down`` removes it) and re-raise. ``dataplane``:
        node namespaces with kube-proxy (default: when the module is there and we are root)."""
        config = config or ClusterConfig()
        build = build or find_build()
        kwok = find_build(KWOK)
        state_dir = (state_dir or default_state_dir(name)).resolve()
        state = _claim(state_dir, name)
        layout = Layout(state_dir, free_ports(), build, config)
        state.ports = dict(layout.ports)
        state.info |= {"versions": build.versions | kwok.versions, "config": config.source}
        state.info["timers"] = config.timers.sources
        state.info["restart_backoff_s"] = list(config.timers.restart_backoff_s)
        state.info["dataplane"] = dataplane_available() if dataplane is None else dataplane
        state.save()
        cluster = cls(state, layout, deadlines or Deadlines())
        say = log or (lambda _m: None)
        if "earlier_logs" in state.info:
            say(f"an earlier cluster's logs moved to {state.info['earlier_logs']}")
        try:
            cluster._start(kwok, say)
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
        self.layout.write_kwok_stages(kwok, served=bool(self.state.info.get("dataplane")))
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
        return self.state.spawn(name, argv, self.layout.logs / f"{name}.log", env)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.admin_client())

    def _start_nodes(self, kwok: Build) -> None:
        from kubernetes import utils

        core = self._core()
        nodes = self.layout.config.nodes()
        for obj in objects.kwok_rbac():
            utils.create_from_dict(self.admin_client(), obj)
        for spec in nodes:
            core.create_node(objects.node_object(spec))
        names = [spec.name for spec in nodes]
        if self.state.info.get("dataplane"):
            self._start_dataplane(core, names)
        kubelets = self.kubelets()
        for n in names:
            kubelets.start(n, self._kwok_argv(kwok, n))

        def ready() -> tuple[bool, str]:
            kubelets.check_started()
            return objects.nodes_ready(core, names)

        wait_until("kwok nodes Ready", ready, self.deadlines.nodes_ready)

    def _kwok_argv(self, kwok: Build, node: str) -> list[str]:
        kubeconfig = self.layout.kubeconfig(f"node-{node}")
        dp = self.dataplane()
        if node in self.layout.config.hollow_nodes:  # kubemark's kubelet, not kwok
            from chaoslab.live.cluster import hollow  # lazily: it is also run with -m

            return hollow.argv(self.layout, dp, node)
        if dp is None:
            return self.layout.kwok(kwok, node, kubeconfig)
        bridged = Path(dp.bridged_kubeconfig(node, kubeconfig))
        return [*self.layout.kwok(kwok, node, bridged), f"--node-ip={dp.node_ip(node)}"]

    # ------------------------------------------------------------------ data plane
    def _start_dataplane(self, core: Any, names: list[str]) -> None:
        """Node namespaces with the real kube-proxy and the pods' servers: needs every
        Node's podCIDR, which the controller-manager allocates as the Nodes appear."""
        from chaoslab.live.cluster import dataplane as dpmod

        wait_until(
            "podCIDRs allocated",
            lambda: objects.nodes_have_cidr(core, names),
            self.deadlines.controllers,
        )
        nets = dpmod.node_networks(self.kubeconfig)
        dp = dpmod.DataPlane.create(
            self.layout.dir / "dataplane",
            _netns_name(self.state.dir),
            nets,
            kubeconfig=self.kubeconfig,
        )
        build = self.layout.build
        assert build is not None
        proxy = dpmod.KubeProxy(
            str(build.bin("kube-proxy")),
            str(self.layout.kubeconfig("kube-proxy")),
            self.layout.kube_proxy_args(),
            restart_backoff=self.layout.config.timers.restart_backoff_s,
        )
        for n in names:
            if n not in self.layout.config.hollow_nodes:  # a hollow node's runtime serves
                dp.start_runtime(n, self.layout.kubeconfig(f"node-{n}"))
            dp.start_kube_proxy(n, proxy)

    def dataplane(self) -> Any | None:
        """The data plane (:class:`chaoslab.live.cluster.dataplane.DataPlane`), if any."""
        recorded = (self.layout.dir / "dataplane" / "state.json").exists()
        if not self.state.info.get("dataplane") or not recorded:
            return None  # none asked for, or ``up`` stopped before it was built
        if self._dataplane is None:
            from chaoslab.live.cluster import dataplane as dpmod

            self._dataplane = dpmod.DataPlane.load(self.layout.dir / "dataplane")
        return self._dataplane

    def kubelets(self) -> Kubelets:
        dp = self.dataplane()
        if dp is not None:
            return NetnsKubelets(self.layout.dir, dp)
        return HostKubelets(self.layout.dir, self._spawn, lambda: self.state.processes)

    # ------------------------------------------------------------------ node hooks
    def stop_kubelet(self, node: str) -> None:
        """Stop the node's kubelet stand-in (its kwok process): heartbeats and pod status
        updates stop, as when a kubelet is stopped or its node crashes."""
        self.kubelets().stop(node, self.deadlines.stop)

    def start_kubelet(self, node: str) -> None:
        """Start the node's kwok again with the command line it had (the recorded one: a
        cluster loaded from its state folder, as by a drill's hook, does not know the
        timers it was brought up with, and would start kwok with the catalogue's lease)."""
        kubelets = self.kubelets()
        if kubelets.running(node):
            return
        argv = kubelets.argv(node) or self._kwok_argv(find_build(KWOK), node)
        kubelets.start(node, argv)

    def kubelet_running(self, node: str) -> bool:
        return self.kubelets().running(node)

    # ------------------------------------------------------------------ control-plane hooks
    def component(self, name: str) -> ProcRecord:
        """The newest record of a control-plane process (a restart appends one)."""
        rec = next((p for p in reversed(self.state.processes) if p.name == name), None)
        if rec is None:
            raise ClusterError(f"{self.state.dir}: no {name} recorded")
        return rec

    def component_running(self, name: str) -> bool:
        rec = self.component(name)
        return alive(rec.pid, rec.start)

    def component_healthy(self, name: str) -> bool:
        """The newest process of ``name`` runs and its health endpoint answers now."""
        return bool(self._component_status(self.component(name)).healthy)

    def kill_component(self, name: str) -> float:
        """SIGKILL a control-plane process by its recorded PID and start time (nothing is
        released: a controller manager's Lease stays until it expires); the instant the
        signal was sent, on CLOCK_MONOTONIC."""
        rec = self.component(name)
        if not alive(rec.pid, rec.start):
            raise ClusterError(f"{name} (pid {rec.pid}) is not running")
        t = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGKILL)
        deadline = t + self.deadlines.stop
        # until its last thread is gone: then its ports are free for the restart
        while not gone(rec.pid, rec.start) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not gone(rec.pid, rec.start):
            raise ClusterError(f"{name} (pid {rec.pid}) survived SIGKILL")
        return t

    def start_component(self, name: str) -> ProcRecord:
        """Start a control-plane process again with its recorded command line (same
        flags, ports and certificates), as a kubelet restarts a static pod."""
        return self._spawn(name, list(self.component(name).argv))

    def wait_apiserver(self) -> float:
        """Wait until the API server answers /readyz; the instant it did."""
        rec, pki = self.component("kube-apiserver"), self.layout.pki
        admin = (pki.cert("admin"), pki.key("admin"))
        url = f"{self.layout.url('apiserver')}/readyz"
        # polled often: the instant is the drill's apiserver.up milestone
        wait_healthy(rec, url, self.deadlines.apiserver, pki.ca_cert, admin, every=0.05)
        return time.monotonic()

    def _start_app(self) -> None:
        from kubernetes import utils

        from chaoslab.live.cluster.hollow import with_readiness_probe

        api = self.admin_client()
        cfg = self.layout.config
        for obj in with_readiness_probe(objects.app_objects(cfg), cfg):
            utils.create_from_dict(api, obj)
        core = self._core()
        want = self._app_pod_count()
        wait_until(
            f"{cfg.app} pods Ready",
            lambda: objects.pods_ready(core, cfg, want),
            self.deadlines.app_ready,
        )
        # where the scheduler put the app, as ``up`` left it (drills move pods later)
        pods = core.list_namespaced_pod(cfg.namespace, label_selector=f"app={cfg.app}").items
        self.state.info["app_pods"] = {
            p.metadata.name: {"node": p.spec.node_name, "ready": objects.condition(p, "Ready")}
            for p in pods
        }

    def _app_pod_count(self) -> int:
        cfg = self.layout.config
        if cfg.spec.app_kind != "DaemonSet":
            return cfg.spec.replicas
        return sum(1 for n in cfg.nodes() if n.role in cfg.spec.app_roles())

    # ------------------------------------------------------------------ status / down
    def status(self) -> list[ComponentStatus]:
        """Each recorded process: running, and healthy by its endpoint (kwok: its Node
        Ready). A process replaced by a restart is not listed; one started but never recorded
        (its starter killed in between) is, found by its mark."""
        latest = {p.name: p for p in [*self.state.processes, *self.state.unrecorded()]}
        rows = [self._component_status(p) for p in latest.values()]
        rows += self._dataplane_status()
        ready = self._nodes_ready() if any(r.name.startswith("kwok-") for r in rows) else {}
        return [
            ComponentStatus(r.name, r.pid, r.running, ready.get(r.name[5:], False), "Node Ready")
            if r.name.startswith("kwok-") and r.running
            else r
            for r in rows
        ]

    def _dataplane_status(self) -> list[ComponentStatus]:
        dp = self.dataplane()
        if dp is None:
            return []
        rows = [ComponentStatus(n, p.pid, bool(p.alive()), None) for n, p in dp.state.procs.items()]
        present = dp.status()
        rows += [
            ComponentStatus(f"netns {ns}", 0, present.get(ns) == "present", None)
            for ns in dp.state.namespaces
        ]
        return rows

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
        """Stop the data plane, then every recorded process, newest first (reverse start
        order)."""
        notes = self._dataplane_down()
        # one started but not recorded (its starter killed in between) first: it is the newest
        procs = [*self.state.unrecorded(), *reversed(self.state.processes)]
        return notes + [
            f"stopped {rec.name} (pid {rec.pid})" for rec in procs if stop(rec, self.deadlines.stop)
        ]

    def _dataplane_down(self) -> list[str]:
        if not (self.layout.dir / "dataplane" / "state.json").exists():
            return []
        from chaoslab.live.cluster import dataplane as dpmod

        notes = dpmod.DataPlane.load(self.layout.dir / "dataplane").down()
        self._dataplane = None
        return [*notes, "data plane down"]

    def down(self, keep_logs: bool = False) -> list[str]:
        """Stop every recorded process, then remove the state folder (with ``keep_logs``:
        all of it but the components' logs, the evidence of a late milestone)."""
        notes = self.stop_all()
        left = [*self.state.processes, *self.state.unrecorded()]
        still = [p for p in left if alive(p.pid, p.start)]
        if still:
            names = ", ".join(f"{p.name} (pid {p.pid})" for p in still)
            raise ClusterError(f"{self.state.dir}: could not stop {names}; state kept")
        kept = [e for e in self.state.dir.iterdir() if self._is_log_folder(e)]
        if not keep_logs or not kept:
            shutil.rmtree(self.state.dir, ignore_errors=True)
            notes.append(f"removed {self.state.dir}")
            return notes
        # state.json first: once it is gone, down, the reaper and status see no cluster
        self.state.path.unlink(missing_ok=True)
        move_logs(self.layout.dir / "dataplane", self.layout.logs / "dataplane")
        for entry in self.state.dir.iterdir():
            if entry not in kept:
                _remove(entry)
        notes.append(f"removed {self.state.dir} but its logs ({self.layout.logs})")
        return notes

    def _is_log_folder(self, entry: Path) -> bool:
        """``logs/`` or an earlier cluster's ``logs.N`` (`rotate_logs`)."""
        return (entry == self.layout.logs and entry.is_dir()) or is_rotated_logs(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def dataplane_available() -> bool:
    """The data plane module is there and we may build namespaces (root, ``ip``)."""
    return (
        importlib.util.find_spec("chaoslab.live.cluster.dataplane") is not None
        and os.geteuid() == 0
        and shutil.which("ip") is not None
    )


def _netns_name(state_dir: Path) -> str:
    """A short name for the data plane's namespaces, unique per state folder."""
    return "c" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:6]


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
    # ours now: an earlier cluster's kept logs move aside before a component appends to them
    rotated = rotate_logs(state_dir)
    if rotated is not None:
        state.info["earlier_logs"] = str(rotated)
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
