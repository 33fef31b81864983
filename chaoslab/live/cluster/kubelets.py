"""Where the kwok processes (the nodes' kubelet stand-ins) run.

On the host (no data plane) they are recorded in the cluster's own state, reach the API
server on 127.0.0.1 and get no node IP. With the data plane
(:mod:`chaoslab.live.cluster.dataplane`) each runs inside its node's network namespace,
reaches the API server through that namespace's bridge (so a partition cuts it off like a
real kubelet) and reports the namespace's address as the node's InternalIP.

Before a kwok starts again its node's Lease is deleted (:func:`forget_lease`): a kwok
that finds its Lease in neither its informer cache nor the API takes the node at once, as a
restarted kubelet, which reads its Lease from the API first, renews it at once.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from chaoslab.live.cluster.errors import ComponentFailed
from chaoslab.live.cluster.health import Deadlines
from chaoslab.live.cluster.procs import ProcRecord, alive, stop

__all__ = ["HostKubelets", "Kubelets", "NetnsKubelets", "forget_lease"]

#: where a node's heartbeat Lease lives (k8s.io/api core/v1 NamespaceNodeLease)
NODE_LEASE_NAMESPACE = "kube-node-lease"


class Kubelets(Protocol):
    def start(self, node: str, argv: list[str]) -> None: ...

    def stop(self, node: str, grace: float) -> None: ...

    def running(self, node: str) -> bool: ...

    def argv(self, node: str) -> list[str] | None: ...

    def check_started(self) -> None: ...


def _home(state_dir: Path, node: str) -> dict[str, str]:
    # kwok reads and caches under $HOME: keep that inside the state folder
    home = state_dir / "kwok" / node
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home)}


def _is_kwok(argv: list[str]) -> bool:
    # a hollow node runs kubemark's real kubelet, whose lease controller needs no help
    return bool(argv) and Path(argv[0]).name == "kwok"


def forget_lease(state_dir: Path, node: str) -> bool:
    """Delete ``node``'s Lease (as the cluster's admin) before its kwok starts again; True
    if there was one.

    A restarted kwok looks its Lease up in its own informer cache, which it does not wait
    to fill: on a miss it creates the Lease, gets AlreadyExists and tries again one renew
    interval later, and writes the node's status only once it holds the Lease; on a hit it
    still takes the Lease only once it expired, its holder identity being new with each
    process (sigs.k8s.io/kwok v0.8.0 pkg/kwok/controllers/node_lease_controller.go
    sync 178-226, tryAcquireOrRenew 305-318; controller.go Identity 643-650). A kubelet
    GETs its Lease from the API and renews it at once, as holder of its own node's name
    (k8s.io/component-helpers v0.37.2 apimachinery/lease/controller.go ensureLease
    223-245). With no Lease anywhere, kwok's create succeeds at once. The node lifecycle
    controller reads a missing Lease as no renewal: it goes by the node's status alone
    (k8s.io/kubernetes v1.37.2 pkg/controller/nodelifecycle tryUpdateNodeHealth).
    """
    from kubernetes import client
    from kubernetes import config as kconfig
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        api = kconfig.new_client_from_config(config_file=str(state_dir / "admin.kubeconfig"))
        with api:
            client.CoordinationV1Api(api).delete_namespaced_lease(
                node, NODE_LEASE_NAMESPACE, _request_timeout=Deadlines().stop
            )
    except ApiException as e:
        if e.status == 404:
            return False
        _warn(node, f"{e.status} {e.reason}")
        return False
    except (HTTPError, OSError, ConfigException) as e:  # no API: start kwok anyway
        _warn(node, f"{type(e).__name__}: {e}")
        return False
    return True


def _warn(node: str, why: str) -> None:
    # kwok still starts: it renews one renew interval late, as without the deletion
    print(f"kwok-{node}: could not delete its Lease ({why})", file=sys.stderr, flush=True)


class HostKubelets:
    """kwok on host loopback, recorded through ``spawn`` (the cluster's state)."""

    def __init__(
        self, state_dir: Path, spawn: Callable[[str, list[str], dict[str, str]], ProcRecord],
        records: Callable[[], list[ProcRecord]],
    ) -> None:  # fmt: skip
        self.state_dir, self._spawn, self._records = state_dir, spawn, records

    def _latest(self, node: str) -> ProcRecord | None:
        recs = [p for p in self._records() if p.name == f"kwok-{node}"]
        return recs[-1] if recs else None

    def start(self, node: str, argv: list[str]) -> None:
        if self._latest(node) is not None and _is_kwok(argv):  # a restart
            forget_lease(self.state_dir, node)
        self._spawn(f"kwok-{node}", argv, dict(os.environ, **_home(self.state_dir, node)))

    def stop(self, node: str, grace: float) -> None:
        rec = self._latest(node)
        if rec is not None:
            stop(rec, grace)

    def running(self, node: str) -> bool:
        rec = self._latest(node)
        return rec is not None and alive(rec.pid, rec.start)

    def argv(self, node: str) -> list[str] | None:
        rec = self._latest(node)
        return list(rec.argv) if rec is not None else None

    def check_started(self) -> None:
        for rec in self._records():
            if rec.name.startswith("kwok-") and not alive(rec.pid, rec.start):
                raise ComponentFailed(f"{rec.name} exited during start-up; log: {rec.log}")


class NetnsKubelets:
    """kwok inside each node's namespace, recorded in the data plane's state."""

    def __init__(self, state_dir: Path, dataplane: Any) -> None:
        self.state_dir, self.dp = state_dir, dataplane

    def start(self, node: str, argv: list[str]) -> None:
        if self.argv(node) is not None and _is_kwok(argv):  # a restart
            forget_lease(self.state_dir, node)
        self.dp.spawn_in_node(node, f"kwok-{node}", argv, env=_home(self.state_dir, node))

    def stop(self, node: str, grace: float) -> None:
        # SIGTERM first, as `systemctl stop kubelet`; SIGKILL what is left
        self.dp.state.stop(f"kwok-{node}", signal.SIGTERM, wait=grace)
        self.dp.state.stop(f"kwok-{node}", signal.SIGKILL, wait=grace)

    def running(self, node: str) -> bool:
        proc = self.dp.state.procs.get(f"kwok-{node}")
        return proc is not None and bool(proc.alive())

    def argv(self, node: str) -> list[str] | None:
        proc = self.dp.state.procs.get(f"kwok-{node}")
        return list(proc.argv) if proc is not None else None

    def check_started(self) -> None:
        for name, proc in self.dp.state.procs.items():
            if name.startswith("kwok-") and not proc.alive():
                raise ComponentFailed(f"{name} exited during start-up; log: {proc.log}")
