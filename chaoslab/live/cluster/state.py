"""The state folder of one local cluster.

``state.json`` is written (atomically: a temporary file renamed over it) before anything
is started and after every process start, so ``down`` finds every process and file even
after ``up`` was killed with SIGKILL: a process is recorded as an intent (a mark its
environment carries, `chaoslab.live.cluster.procs.MARK_ENV`) before it starts, and by PID
and start time after, so a kill between the two leaves a mark ``down`` finds it by.
Everything the cluster creates lives in the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslab.live.cluster.procs import ProcRecord, alive, new_mark, spawn, start_time

__all__ = [
    "DATAPLANE_LINK",
    "STATE_ROOT",
    "ClusterState",
    "DataPlaneLink",
    "atomic_write",
    "dataplane_logs_dir",
    "default_state_dir",
    "drill_state_dir",
    "is_rotated_logs",
    "move_logs",
    "prune_drill_dirs",
    "read_dataplane_link",
    "rotate_logs",
    "write_dataplane_link",
]

#: default parent of state folders; ``CHAOSLAB_CLUSTER_STATE`` moves it
STATE_ROOT = Path("/run/chaoslab-cluster")
STATE_FILE = "state.json"
#: the file in a cluster's state folder naming the data plane a drill built for it (outside
#: the folder), and the drill that owns it; the reaper, ``status`` and ``down`` read it
DATAPLANE_LINK = "drill-dataplane"
#: a drill's data plane lives in ``/tmp/<prefix>XXXXXXXX/dp`` (short: unix socket paths are
#: limited to 107 bytes); only a folder named so is ever removed through a link
DATAPLANE_TMP_PREFIX = "dpd"
#: how many log-only drill folders (kept logs, no cluster) `prune_drill_dirs` leaves
KEEP_DRILL_LOGS = 10
#: how many earlier clusters' log folders (``logs.1`` the newest) a new ``up`` in the same
#: state folder keeps (`rotate_logs`)
KEEP_LOG_ROTATIONS = 3
#: what an owner writes into ``logs/`` before its cluster's ``up`` (a drill's reaper, in a
#: new folder): not an earlier cluster's
OWNER_LOGS = frozenset({"reaper.log"})


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


@dataclass(frozen=True)
class DataPlaneLink:
    """What a cluster folder's `DATAPLANE_LINK` says: the data plane folder, and the PID
    and start time of the drill that builds and owns it (None in a link written before
    owners were recorded)."""

    dir: Path
    owner: int | None = None
    owner_start: int | None = None

    def owner_alive(self) -> bool:
        return self.owner is not None and alive(self.owner, self.owner_start)

    def owned_by(self, pid: int, start: int | None) -> bool:
        return self.owner == pid and self.owner_start == start

    @property
    def tmp(self) -> Path | None:
        """The drill's temporary folder holding the data plane (None: not a drill's)."""
        if self.dir.name == "dp" and self.dir.parent.name.startswith(DATAPLANE_TMP_PREFIX):
            return self.dir.parent
        return None


def rotate_logs(state_dir: Path, keep: int = KEEP_LOG_ROTATIONS) -> Path | None:
    """Move the logs an earlier cluster left in ``state_dir`` (``logs/``, kept by its
    ``down``) to ``logs.1``, shifting older ones up and dropping those beyond ``keep``: a
    new cluster's components would append to them. Where they went (None: none there)."""
    logs = state_dir / "logs"
    try:
        if {p.name for p in logs.iterdir()} <= OWNER_LOGS:
            return None
    except OSError:
        return None
    if keep < 1:
        shutil.rmtree(logs)
        return None
    shutil.rmtree(state_dir / f"logs.{keep}", ignore_errors=True)
    for i in range(keep - 1, 0, -1):
        if (state_dir / f"logs.{i}").is_dir():
            (state_dir / f"logs.{i}").rename(state_dir / f"logs.{i + 1}")
    logs.rename(state_dir / "logs.1")
    return state_dir / "logs.1"


def is_rotated_logs(path: Path) -> bool:
    """``logs.N``: an earlier cluster's logs (`rotate_logs`)."""
    head, _, n = path.name.partition(".")
    return head == "logs" and n.isdigit() and path.is_dir()


def dataplane_logs_dir(cluster_dir: Path, dp_dir: Path) -> Path:
    """Where the logs of the drill's data plane ``dp_dir`` stay once it is down: in the
    cluster's logs folder (kept by ``down`` as the components' are), one folder per data
    plane, named by the drill's temporary folder."""
    tmp = DataPlaneLink(dp_dir).tmp
    return cluster_dir / "logs" / f"dataplane-{(tmp or dp_dir).name}"


def move_logs(src: Path, dest: Path) -> list[Path]:
    """Move the logs (``*.log``) of ``src`` into ``dest``; the moved files' new paths."""
    moved = []
    for log in sorted(src.glob("*.log")):
        dest.mkdir(parents=True, exist_ok=True)
        moved.append(Path(shutil.move(str(log), str(dest / log.name))))
    return moved


def write_dataplane_link(cluster_dir: Path, dp_dir: Path, owner: int | None = None) -> None:
    """Record (atomically) that ``dp_dir`` is the data plane of the drill ``owner`` (this
    process by default) on the cluster in ``cluster_dir``."""
    pid = os.getpid() if owner is None else owner
    atomic_write(cluster_dir / DATAPLANE_LINK, f"{dp_dir}\nowner {pid} {start_time(pid)}\n")


def read_dataplane_link(cluster_dir: Path) -> DataPlaneLink | None:
    """The link in ``cluster_dir`` (None: none, or no folder named in it)."""
    try:
        lines = (cluster_dir / DATAPLANE_LINK).read_text().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].strip():
        return None
    owner = lines[1].split() if len(lines) > 1 else []
    if len(owner) == 3 and owner[0] == "owner" and owner[1].isdigit():
        start = int(owner[2]) if owner[2].isdigit() else None
        return DataPlaneLink(Path(lines[0].strip()), int(owner[1]), start)
    return DataPlaneLink(Path(lines[0].strip()))


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
    #: processes being started: mark -> name (`spawn`); found by the mark if not recorded
    intents: dict[str, str] = field(default_factory=dict)

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
            "intents": self.intents,
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
            intents=dict(doc.get("intents", {})),
        )

    def record(self, proc: ProcRecord) -> None:
        self.processes.append(proc)
        self.save()

    def spawn(
        self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> ProcRecord:
        """Start a process and record it: its intent (a mark) is saved before the start,
        its PID and start time (replacing the intent, in one write) after."""
        mark = new_mark()
        self.intents[mark] = name
        self.save()
        rec = spawn(name, argv, log, env, mark=mark)
        del self.intents[mark]
        self.record(rec)
        return rec

    def unrecorded(self) -> list[ProcRecord]:
        """Live processes started for an intent whose PID was never recorded (the starter
        was killed in between), found by their mark."""
        from chaoslab.live.cluster.procs import find_marked

        return [
            ProcRecord(name, p.pid, p.start, p.argv, p.log)
            for mark, name in self.intents.items()
            for p in find_marked(mark)
        ]

    def process(self, name: str) -> ProcRecord | None:
        return next((p for p in self.processes if p.name == name), None)
