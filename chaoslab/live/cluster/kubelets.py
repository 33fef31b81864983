"""Where the kwok processes (the nodes' kubelet stand-ins) run.

On the host (no data plane) they are recorded in the cluster's own state, reach the API
server on 127.0.0.1 and get no node IP. With the data plane
(:mod:`chaoslab.live.cluster.dataplane`) each runs inside its node's network namespace,
reaches the API server through that namespace's bridge (so a partition cuts it off like a
real kubelet) and reports the namespace's address as the node's InternalIP.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from chaoslab.live.cluster.errors import ComponentFailed
from chaoslab.live.cluster.procs import ProcRecord, alive, stop

__all__ = ["HostKubelets", "Kubelets", "NetnsKubelets"]


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
