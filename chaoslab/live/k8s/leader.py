"""The kube-controller-manager's leader Lease, read during a control-plane drill.

Leader election (client-go ``tools/leaderelection``) keeps its record in the Lease
``kube-system/kube-controller-manager``: ``holderIdentity`` (``<hostname>_<uuid>``, new for
every process), ``acquireTime`` when that holder took it and ``renewTime`` of its last
renewal (RFC 3339 with microseconds, the holder's clock). A new holder is
``controller_manager.leader_elected``; a renewal newer than the API server's return says a
leader runs again after ``apiserver-down``. The Lease is polled (one GET by name, which the
RBAC role grants by ``resourceNames``; a watch by name is a list): while the API server is
down the reads fail and are counted, not raised.

Hooks report the instants only they see on the machine's CLOCK_MONOTONIC, one line each:
``milestone NAME SECONDS`` (`hook_milestones`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaoslab.errors import LiveError
from chaoslab.live.k8s.kube import Kube, KubeError, parse_time

__all__ = ["KCM_LEASE", "LeaderWatch", "hook_milestones"]

KCM_LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"


def hook_milestones(output: str) -> dict[str, float]:
    """``milestone NAME SECONDS`` lines of a hook's output (first of each name)."""
    out: dict[str, float] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "milestone":
            try:
                out.setdefault(parts[1], float(parts[2]))
            except ValueError:
                continue
    return out


@dataclass
class LeaderWatch:
    """Polls the Lease every ``interval`` s from `start` until `stop`."""

    kube: Kube
    interval: float
    #: API server time (POSIX seconds) -> local monotonic seconds
    to_local: Callable[[float], float]
    holder0: str = ""
    #: (local monotonic when seen, acquireTime on the local clock, new holder)
    elected: tuple[float, float, str] | None = None
    #: the newest renewTime seen, on the local clock
    renewed: float = -math.inf
    failed_reads: int = 0
    error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LeaderWatch:
        """Read the holder before the fault (a refusal is the drill's error: the RBAC role
        lacks ``leases get`` in kube-system), then poll in a thread."""
        try:
            lease = self.kube.get_or_none(KCM_LEASE)
        except KubeError as e:
            raise LiveError(
                f"cannot read the Lease kube-system/kube-controller-manager ({e}); the drill's "
                "role needs leases get there (deploy/rbac.yaml chaoslab-drill-leader)"
            ) from None
        if lease is None:
            raise LiveError(
                "no Lease kube-system/kube-controller-manager: the controller manager runs "
                "without leader election (--leader-elect=false)"
            )
        self.holder0, _, self.renewed = self._read(lease)
        self._thread = threading.Thread(target=self._run, name="chaoslab-leader", daemon=True)
        self._thread.start()
        return self

    def _read(self, lease: dict) -> tuple[str, float, float]:
        spec = lease.get("spec") or {}
        acquired = parse_time(spec.get("acquireTime"))
        renewed = parse_time(spec.get("renewTime"))
        return (
            str(spec.get("holderIdentity") or ""),
            math.nan if acquired is None else self.to_local(acquired),
            -math.inf if renewed is None else self.to_local(renewed),
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                lease = self.kube.get_or_none(KCM_LEASE)
            except (KubeError, OSError) as e:  # the API server is down: expected here
                self.failed_reads += 1
                self.error = str(e)[:200]
                continue
            if lease is None:
                continue
            holder, acquired, renewed = self._read(lease)
            self.renewed = max(self.renewed, renewed)
            if holder and holder != self.holder0 and self.elected is None:
                self.elected = (time.monotonic(), acquired, holder)

    def renewed_after(self, mono: float) -> bool:
        """A leader renewed the Lease after local monotonic ``mono``."""
        return self.renewed > mono

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
