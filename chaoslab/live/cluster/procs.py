"""Processes of the local cluster: started detached, recorded with their start time, and
stopped by PID only, after checking that the PID still names the process we started
(the start time in /proc/PID/stat changes when a PID is reused)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MARK_ENV",
    "ProcRecord",
    "alive",
    "find_marked",
    "gone",
    "marked_env",
    "new_mark",
    "spawn",
    "start_time",
    "stop",
]

#: a child's environment carries ``MARK_ENV=<mark>``, the mark recorded (as an intent)
#: before it is started: a process whose starter was killed before recording its PID is
#: still found (`find_marked`), never by its name, and killed by PID and start time
MARK_ENV = "CHAOSLAB_SPAWN_MARK"

#: our own children, kept so that they are reaped (not left as zombies) when they exit
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcRecord:
    """One started component: enough to find it again and to stop only it."""

    name: str
    pid: int
    start: int
    argv: tuple[str, ...]
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcRecord:
        return cls(d["name"], int(d["pid"]), int(d["start"]), tuple(d["argv"]), d["log"])


def _stat_fields(pid: int) -> list[str] | None:
    return _stat_fields_of(f"/proc/{pid}/stat")


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, start: int | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, given ``start``, is the same process."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    fields = _stat_fields(pid)
    if not fields or fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


def gone(pid: int, start: int | None = None) -> bool:
    """``pid`` has exited and so have all its threads. A SIGKILLed multi-threaded process
    (every Go binary) shows its leader as a zombie while its other threads still exit,
    and its files and sockets close only with the last of them: a restart that binds the
    same port must wait for this, not for the zombie."""
    if alive(pid, start):
        return False
    fields = _stat_fields(pid)
    if not fields or (start is not None and int(fields[19]) != start):
        return True  # reaped, or the PID names another process now
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(
        (f := _stat_fields_of(f"/proc/{pid}/task/{tid}/stat")) is None or f[0] in "ZX"
        for tid in tasks
    )


def _stat_fields_of(path: str) -> list[str] | None:
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    # the command name may hold spaces and ')': the fields we read follow the last ')'
    return stat[stat.rfind(")") + 2 :].split()


def new_mark() -> str:
    return uuid.uuid4().hex


def marked_env(mark: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) with the mark a child is found by."""
    return {**(os.environ if env is None else env), MARK_ENV: mark}


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def find_marked(mark: str) -> list[ProcRecord]:
    """Every live process whose environment carries ``mark`` (the one started with it and
    what it forked), with its start time: the identity a kill checks again (`stop`)."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or needle not in _environ(int(entry)):
            continue
        pid = int(entry)
        start = start_time(pid)
        if start is not None and alive(pid, start):
            found.append(ProcRecord(f"marked-{mark[:8]}", pid, start, (), ""))
    return found


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    mark: str | None = None,
) -> ProcRecord:
    """Start ``argv`` in its own session (a Ctrl-C of ``up`` does not reach it), output to
    ``log``; with ``mark`` its environment carries it (`marked_env`)."""
    if mark is not None:
        env = marked_env(mark, env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    _CHILDREN[child.pid] = child
    start = start_time(child.pid)
    return ProcRecord(name, child.pid, start if start is not None else -1, tuple(argv), str(log))


def stop(rec: ProcRecord, grace: float) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; True if it had been running."""
    if not alive(rec.pid, rec.start):
        return False
    _signal(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(rec.pid, rec.start) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(rec.pid, rec.start):
        _signal(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while alive(rec.pid, rec.start) and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
