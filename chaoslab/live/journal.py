"""The drill journal: everything a drill does to its target (a cluster, a lab), on disk as
it happens, and its undo.

``journal.jsonl`` gets one JSON line per entry, flushed and fsynced before the action it
announces is taken. An action that changes the cluster is written *first* with its undo
steps (``{"event": "undo.add", "id": ..., "step": {...}}``), so a run that dies between the
journal line and the action still knows what to undo; every undo step is idempotent
(uncordon an uncordoned node, delete a pod that is gone, tear down a lab that is down),
so running it for an action that
never happened is harmless. ``undo.done`` marks a step finished; `pending_undo` is what a
rollback (or ``--recover RUN_DIR`` after a crash: ``chaoslab drill`` or ``chaoslab lab
drill``) still has to do.

No credentials are ever written: entries carry object names, node addresses, hook argv
(what the operator wrote in the experiment) and API status messages; a URL's userinfo
(``https://user:password@...``) is replaced by ``***@`` in every string written.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslab.errors import LiveError
from chaoslab.results import redact_userinfo

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "UndoStep",
    "owner",
    "owner_alive",
    "pending_undo",
    "read_journal",
]

JOURNAL_NAME = "journal.jsonl"


@dataclass(frozen=True)
class UndoStep:
    id: str
    step: dict[str, Any]


def _clean(v: Any) -> Any:
    if isinstance(v, str):
        return redact_userinfo(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


class Journal:
    """Append-only, fsynced JSON lines; safe to call from several threads."""

    def __init__(self, run_dir: Path) -> None:
        # the folder is made by the first write, never by reading: `--recover` on a path
        # that does not exist must not create it
        self.path = Path(run_dir) / JOURNAL_NAME
        self._lock = threading.Lock()
        self._seq = sum(1 for _ in read_journal(self.path)) if self.path.exists() else 0
        self._undo_ids = {s.id for s in _all_undo(self.path)} if self.path.exists() else set()
        #: a crash cut the last line short: the next entry starts on a line of its own
        self._torn = self.path.exists() and not _ends_a_line(self.path)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "wall": time.time(),
                "mono": time.monotonic(),
                "event": event,
                **_clean(fields),
            }
            line = json.dumps(entry, sort_keys=False) + "\n"  # ASCII: ensure_ascii
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._torn:
                line, self._torn = "\n" + line, False
            with self.path.open("a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            return entry

    def add_undo(self, step: dict[str, Any], *, trial: int | None = None) -> str:
        """Announce an undo step before the action it reverts; returns its id."""
        with self._lock:
            n = len(self._undo_ids) + 1
            uid = f"u{n}"
            while uid in self._undo_ids:
                n += 1
                uid = f"u{n}"
            self._undo_ids.add(uid)
        self.write("undo.add", id=uid, step=step, trial=trial)
        return uid

    def undo_done(self, uid: str, **fields: Any) -> None:
        self.write("undo.done", id=uid, **fields)

    def pending(self) -> list[UndoStep]:
        return pending_undo(self.path)

    def entries(self) -> list[dict[str, Any]]:
        return list(read_journal(self.path))


def _ends_a_line(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class JournalError(LiveError):
    """A journal that is not one chaoslab wrote (bytes that are not text, entries that
    are not objects): its undo steps cannot be trusted, so none is run."""


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Entries of a journal; a torn last line (crash mid-write) is skipped.

    chaoslab writes ASCII JSON objects only: other bytes, or JSON that is not an entry, mean
    the file is damaged or foreign: `JournalError`, one line naming the file and line."""
    path = Path(path)
    with path.open("rb") as f:
        lines = f.read().split(b"\n")
    for n, raw in enumerate(lines, 1):
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise JournalError(
                f"{path}:{n}: bytes chaoslab never writes (the journal is ASCII): damaged or "
                "not a journal; no undo step was run, check the target by hand"
            ) from None
        try:
            entry = json.loads(text) if text else None
        except ValueError:
            continue  # a line a crash cut short (a later writer starts a fresh line)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
            raise JournalError(f"{path}:{n}: not a journal entry (no event)")
        yield entry


def _all_undo(path: Path) -> list[UndoStep]:
    return [UndoStep(e["id"], e["step"]) for e in read_journal(path) if e["event"] == "undo.add"]


def pending_undo(path: Path) -> list[UndoStep]:
    """Undo steps announced and not done, newest first (the order to undo in)."""
    if not Path(path).exists():
        return []
    steps: dict[str, UndoStep] = {}
    done: set[str] = set()
    for e in read_journal(path):
        if e["event"] == "undo.add":
            steps[e["id"]] = UndoStep(e["id"], e["step"])
        elif e["event"] == "undo.done":
            done.add(e["id"])
    return [s for uid, s in reversed(steps.items()) if uid not in done]


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat; it
    changes when a PID is reused); None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name may hold spaces and ')'
    return None if fields[0] == "Z" else int(fields[19])


def owner() -> dict[str, Any]:
    """This process, as a run.start or recover.start entry names the process writing the
    journal (`owner_alive` reads it back)."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid)}


def owner_alive(path: Path) -> bool:
    """The process that last started writing this journal (its latest run.start,
    recover.start or calibrate.start: `chaoslab.live.k8s.calibrate`) still runs; False for
    a journal that names none."""
    last: dict[str, Any] = {}
    for e in read_journal(path):
        if e["event"] in ("run.start", "recover.start", "calibrate.start"):
            last = e
    pid, start = last.get("pid"), last.get("pid_start")
    if not isinstance(pid, int) or not isinstance(start, int):
        return False
    return process_start(pid) == start
