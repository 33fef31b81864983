"""The state folder of one local cluster.

``state.json`` is written (atomically: a temporary file renamed over it) before anything
is started and after every process start, so ``down`` finds every process and file even
after ``up`` was killed with SIGKILL. Everything the cluster creates lives in the folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslab.live.cluster.procs import ProcRecord

__all__ = [
    "STATE_ROOT",
    "ClusterState",
    "atomic_write",
    "default_state_dir",
    "drill_state_dir",
    "prune_drill_dirs",
]

#: default parent of state folders; ``CHAOSLAB_CLUSTER_STATE`` moves it
STATE_ROOT = Path("/run/chaoslab-cluster")
STATE_FILE = "state.json"
#: how many log-only drill folders (kept logs, no cluster) `prune_drill_dirs` leaves
KEEP_DRILL_LOGS = 10


def default_state_dir(name: str) -> Path:
    return Path(os.environ.get("CHAOSLAB_CLUSTER_STATE", str(STATE_ROOT))) / name


def drill_state_dir(slug: str, now: float | None = None) -> Path:
    """A state folder of its own for the cluster one drill brings up, named by the
    experiment, the time and a random tag: the next drill's cluster gets another, so the
    logs this one keeps (``LocalCluster.down(keep_logs=True)``) survive it. The name is
    short (unix socket paths inside are limited to 107 bytes)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return default_state_dir(f"drill-{slug[:32]}-{stamp}-{uuid.uuid4().hex[:8]}")


def prune_drill_dirs(root: Path | None = None, keep: int = KEEP_DRILL_LOGS) -> list[Path]:
    """Remove the log-only drill folders (``drill-*`` without a ``state.json``: what
    ``down(keep_logs=True)`` leaves) in ``root`` but the newest ``keep`` (by modification
    time). A folder holding a ``state.json`` (a cluster up, or coming up) is never touched;
    the removed folders are returned."""
    import shutil

    root = Path(os.environ.get("CHAOSLAB_CLUSTER_STATE", str(STATE_ROOT))) if root is None else root
    try:
        dirs = [d for d in root.iterdir() if d.name.startswith("drill-") and d.is_dir()]
    except OSError:
        return []
    stamped = []
    for d in dirs:
        try:
            stamped.append((d.stat().st_mtime, d))
        except OSError:
            continue
    logs_only = [d for _, d in sorted(stamped, reverse=True) if not (d / STATE_FILE).exists()]
    gone = []
    for d in logs_only[max(keep, 0) :]:
        if (d / STATE_FILE).exists():  # brought up since the listing
            continue
        shutil.rmtree(d, ignore_errors=True)
        gone.append(d)
    return gone


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` so that a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class ClusterState:
    """What ``up`` started and where: read back by ``status`` and ``down``."""

    dir: Path
    name: str
    phase: str = "starting"  # starting -> up; "failed" when up stopped half-way
    created: float = field(default_factory=time.time)
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[ProcRecord] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.dir / STATE_FILE

    def save(self) -> None:
        doc = {
            "name": self.name,
            "phase": self.phase,
            "created": self.created,
            "ports": self.ports,
            "processes": [p.to_json() for p in self.processes],
            "info": self.info,
        }
        atomic_write(self.path, json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        try:
            doc = json.loads((state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(
            dir=state_dir,
            name=doc["name"],
            phase=doc["phase"],
            created=doc["created"],
            ports={k: int(v) for k, v in doc["ports"].items()},
            processes=[ProcRecord.from_json(p) for p in doc["processes"]],
            info=doc.get("info", {}),
        )

    def record(self, proc: ProcRecord) -> None:
        self.processes.append(proc)
        self.save()

    def process(self, name: str) -> ProcRecord | None:
        return next((p for p in self.processes if p.name == name), None)
