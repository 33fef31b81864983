"""The hooks of a local-cluster drill: ``python -m chaoslab.live.cluster.hooks ACTION``.

Node actions (``crash-node``, ``restore-node``, ``partition``, ``heal``,
``kubelet-stop``, ``kubelet-start`` NODE) act on the recorded cluster and data plane;
control-plane actions (``restart-controller-manager``, ``apiserver-down --for S
--supervise S``, ``restore-control-plane``) on its processes, by PID. Each prints the
instant of the fault on CLOCK_MONOTONIC (``fault_at=``), which becomes the trial's t0, and
the instants only it sees as ``milestone NAME SECONDS`` lines. ``--at SECONDS`` (a
CLOCK_MONOTONIC instant, the drill's ``{at}``) waits until then before acting: a fault's
``with:`` effect starts on time although the hook's own start-up takes a second or more.

This module imports no pandas or drill code, so a hook starts in well under a second;
``python -m chaoslab.live.cluster.target`` runs the same hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chaoslab.errors import LiveError, UserError

if TYPE_CHECKING:
    from chaoslab.live.cluster.dataplane import DataPlane
    from chaoslab.live.cluster.local import LocalCluster

__all__ = ["ACTIONS", "CONTROL_ACTIONS", "ENV_STATE", "LocalClusterError", "main"]

#: where the hook commands find the cluster (set for the drill's hooks by the session)
ENV_STATE = "CHAOSLAB_CLUSTER_STATE"
#: what the hook command does to a node
ACTIONS = ("crash-node", "restore-node", "partition", "heal", "kubelet-stop", "kubelet-start")
#: what it does to the control plane (no node argument)
CONTROL_ACTIONS = ("restart-controller-manager", "apiserver-down", "restore-control-plane")
KCM, APISERVER, SCHEDULER = "kube-controller-manager", "kube-apiserver", "kube-scheduler"
#: how often the apiserver-down hook looks for a controller that exited (the kubelet of
#: a static pod restarts its container as soon as it sees it exit)
SUPERVISE_INTERVAL = 0.05
#: how long a restart hook waits for the restarted controller's health endpoint: well
#: inside the hook timeout of the bundled experiments (60 s)
HEALTHY_WITHIN = 30.0


class LocalClusterError(LiveError):
    """The local cluster or its data plane is not usable for a drill."""


def _linked(cluster: LocalCluster) -> Path | None:
    """The data plane a drill built for the cluster (`state.DATAPLANE_LINK`)."""
    from chaoslab.live.cluster.state import read_dataplane_link

    link = read_dataplane_link(cluster.state.dir)
    return link.dir if link is not None else None


def _kwok_in_node_ns(dp: DataPlane, node: str) -> bool:
    """Whether the node's kubelet stand-in runs inside the node's namespace, recorded by the
    data plane (then a partition cuts it too); otherwise it runs on the host and a
    partition stops it."""
    return f"kwok-{node}" in dp.state.procs


def _kill_kubelet(cluster: LocalCluster, dp: DataPlane, node: str) -> None:
    """SIGKILL the node's kubelet stand-in, as a power cut stops a kubelet (a SIGTERM lets
    kwok finish what it was doing, a lease renewal among it)."""
    from chaoslab.live.cluster.procs import alive

    name = f"kwok-{node}"
    if _kwok_in_node_ns(dp, node):
        dp.state.stop(name, signal.SIGKILL, wait=5)
        return
    for rec in [p for p in cluster.state.processes if p.name == name][-1:]:
        if alive(rec.pid, rec.start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, signal.SIGKILL)


def _sleep_or_term(seconds: float) -> None:
    """Sleep, or return early on SIGTERM/SIGINT (the drill's rollback kills the hook)."""
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    done.wait(seconds)


def _wait_until(at: float | None) -> None:
    """Sleep until CLOCK_MONOTONIC reaches ``at`` (a with: effect's instant); late is
    reported by the instant the hook prints."""
    if at is not None:
        time.sleep(max(0.0, at - time.monotonic()))


def _act(
    action: str, node: str, seconds: float | None, state: Path, at: float | None = None
) -> float:
    from chaoslab.live.cluster.dataplane import DataPlane

    cluster = _load(state)
    dp_dir = state / "dataplane"
    if not (dp_dir / "state.json").exists():
        dp_dir = _linked(cluster) or dp_dir
    dp = DataPlane.load(dp_dir)
    if dp_dir.resolve() == (cluster.layout.dir / "dataplane").resolve() and cluster.dataplane():
        # one copy of the data plane's state for the hook and the cluster's kubelet calls:
        # with two, the last to save (``dp`` marking the node restored) dropped the record
        # of the kwok the other had just started, which then ran on unseen beside the next
        cluster._dataplane = dp
    _wait_until(at)
    t = time.monotonic()
    if action == "crash-node":
        t = time.monotonic()
        _kill_kubelet(cluster, dp, node)  # first: its heartbeats end at the fault instant
        dp.crash(node, cluster)
    elif action == "restore-node":
        if node in dp.state.info["crashed"]:
            t = dp.restore(node, cluster)
        cluster.start_kubelet(node)
    elif action == "partition":
        t = dp.partition(node)
        if not _kwok_in_node_ns(dp, node):
            cluster.stop_kubelet(node)
    elif action == "heal":
        dp.heal(node)
        cluster.start_kubelet(node)
    elif action == "kubelet-stop":
        cluster.stop_kubelet(node)
    elif action == "kubelet-start":
        cluster.start_kubelet(node)
    print(f"fault_at={t:.6f}", flush=True)
    if seconds is not None and action in ("partition", "kubelet-stop"):
        _sleep_or_term(seconds)
        _act("heal" if action == "partition" else "kubelet-start", node, None, state)
    return t


# --------------------------------------------------------------------------- control plane


def _load(state: Path) -> LocalCluster:
    from chaoslab.live.cluster.local import LocalCluster

    cluster = LocalCluster.load(state)
    if cluster is None:
        raise LocalClusterError(f"no cluster recorded in {state}")
    return cluster


def _milestone(name: str, mono: float) -> None:
    """One instant for the drill (`chaoslab.live.k8s.leader.hook_milestones`)."""
    print(f"milestone {name} {mono:.6f}", flush=True)


def _restart_controller_manager(cluster: LocalCluster) -> float:
    """SIGKILL the controller manager and start it again at once with the same flags:
    the new process (a new identity) finds the dead leader's Lease and waits for it to
    expire (client-go leaderelection: lease duration from its first read). As the kubelet
    of a static pod would, restart the new process with the crash-loop back-off should it
    exit before it serves its health endpoint (its port may still be held, say); say what
    happened (``restarts``, its pid), so a trial without a new leader can be read."""
    kubelet = _Kubelet(cluster, _backoff(cluster))
    t = cluster.kill_component(KCM)
    print(f"fault_at={t:.6f}", flush=True)
    _milestone("controller_manager.leader_lost", t)
    kubelet.lost = t
    healthy = _supervise_until_healthy(cluster, kubelet, KCM)
    rec = cluster.component(KCM)
    took = f"healthy after {healthy - t:.2f} s" if math.isfinite(healthy) else "not healthy"
    print(f"{KCM} pid {rec.pid} {took}; restarts {kubelet.restarts}", flush=True)
    return t


def _supervise_until_healthy(cluster: LocalCluster, kubelet: _Kubelet, name: str) -> float:
    """Start ``name`` (and restart it when it exits) until its /healthz answers; the
    instant it did, or NaN after the controllers' start-up deadline."""
    end = time.monotonic() + HEALTHY_WITHIN
    while time.monotonic() < end:
        kubelet.tick()
        if name not in kubelet.due and cluster.component_healthy(name):
            return time.monotonic()
        time.sleep(SUPERVISE_INTERVAL)
    return math.nan


@dataclass
class _Kubelet:
    """Restarts a controller manager or scheduler that exited (each exits when it cannot
    renew its Lease, and at start-up while no API server answers: it cannot read the
    extension-apiserver-authentication ConfigMap), as the kubelet restarts a static pod:
    the first restart at once, then after the crash-loop back-off, doubling to its cap
    (the cluster's ``restart_backoff_s``, from the catalogue). The controller manager's
    first exit is when it stopped leading."""

    cluster: LocalCluster
    backoff: tuple[float, float]
    restarts: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    lost: float = math.nan

    def tick(self) -> None:
        now = time.monotonic()
        for name in (KCM, SCHEDULER):
            if self.cluster.component_running(name):
                continue
            if name not in self.due:
                n = self.restarts.get(name, 0)
                wait = 0.0 if n == 0 else min(self.backoff[1], self.backoff[0] * 2 ** (n - 1))
                self.due[name] = now + wait
                if name == KCM and math.isnan(self.lost):
                    self.lost = now
                    _milestone("controller_manager.leader_lost", now)
            if now >= self.due[name]:
                self.cluster.start_component(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                del self.due[name]


def _backoff(cluster: LocalCluster) -> tuple[float, float]:
    """The crash-loop back-off the cluster was brought up with (catalogue defaults for a
    cluster that did not record one)."""
    rec = cluster.state.info.get("restart_backoff_s")
    if rec:
        return float(rec[0]), float(rec[1])
    from chaoslab.live.cluster.config import ClusterConfig

    return ClusterConfig().timers.restart_backoff_s


def _apiserver_down(cluster: LocalCluster, seconds: float, supervise: float) -> float:
    """SIGKILL the API server, start it again on the same port and certificates after
    ``seconds``; meanwhile, and ``supervise`` seconds after it answers again, restart
    the controllers that exit (`_Kubelet`)."""
    kubelet = _Kubelet(cluster, _backoff(cluster))
    t = cluster.kill_component(APISERVER)
    print(f"fault_at={t:.6f}", flush=True)
    _milestone("apiserver.down", t)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    while not stop.is_set() and time.monotonic() < t + seconds:
        kubelet.tick()
        stop.wait(SUPERVISE_INTERVAL)
    cluster.start_component(APISERVER)
    up = cluster.wait_apiserver()
    _milestone("apiserver.up", up)
    # on until every controller runs again: one waiting out its back-off starts late
    while not stop.is_set() and (time.monotonic() < up + supervise or kubelet.due):
        kubelet.tick()
        stop.wait(SUPERVISE_INTERVAL)
    print(f"restarts {kubelet.restarts}", flush=True)
    return t


def _restore_control_plane(cluster: LocalCluster) -> float:
    """Start whatever of the API server, controller manager and scheduler is not running
    (the undo of a control-plane fault; safe to run twice)."""
    if not cluster.component_running(APISERVER):
        cluster.start_component(APISERVER)
    cluster.wait_apiserver()
    for name in (KCM, SCHEDULER):
        if not cluster.component_running(name):
            cluster.start_component(name)
    t = time.monotonic()
    print(f"fault_at={t:.6f}", flush=True)
    return t


def _control_act(action: str, a: argparse.Namespace, state: Path) -> float:
    cluster = _load(state)
    _wait_until(a.at)
    if action == "restart-controller-manager":
        return _restart_controller_manager(cluster)
    if action == "apiserver-down":
        if a.seconds is None or a.supervise is None:
            raise UserError("apiserver-down needs --for SECONDS and --supervise SECONDS")
        return _apiserver_down(cluster, a.seconds, a.supervise)
    return _restore_control_plane(cluster)


def main(argv: Sequence[str] | None = None) -> int:
    """The node and control-plane hooks of a local-cluster drill (module docstring)."""
    from chaoslab.live.cluster.state import default_state_dir

    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.hooks")
    ap.add_argument("action", choices=[*ACTIONS, *CONTROL_ACTIONS])
    ap.add_argument("node", nargs="?", help="the node (node actions only)")
    ap.add_argument(
        "--for",
        dest="seconds",
        type=float,
        help="partition/kubelet-stop: undo after; apiserver-down: start it again after",
    )
    ap.add_argument(
        "--supervise",
        type=float,
        help="apiserver-down: keep restarting exited controllers this long after it is back",
    )
    ap.add_argument(
        "--at",
        type=float,
        help="act at this CLOCK_MONOTONIC instant (the drill's {at}: a with: effect's start)",
    )
    ap.add_argument("--state", type=Path, help=f"cluster state folder (default ${ENV_STATE})")
    a = ap.parse_args(argv)
    state = a.state or Path(os.environ.get(ENV_STATE) or default_state_dir("default"))
    if (a.action in ACTIONS) != (a.node is not None):
        need = "give the node" if a.action in ACTIONS else "takes no node"
        print(f"{a.action}: {need}", file=sys.stderr)
        return 2
    try:
        if a.action in CONTROL_ACTIONS:
            _control_act(a.action, a, state)
        else:
            _act(a.action, a.node, a.seconds, state, a.at)
    except (LiveError, UserError) as e:
        print(f"{a.action} {a.node or ''}: {e}".replace(" :", ":"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
