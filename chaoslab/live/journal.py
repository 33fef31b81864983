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

from chaoslab.results import redact_userinfo

__all__ = ["JOURNAL_NAME", "Journal", "UndoStep", "pending_undo", "read_journal"]

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
        self.path = Path(run_dir) / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = sum(1 for _ in read_journal(self.path)) if self.path.exists() else 0
        self._undo_ids = {s.id for s in _all_undo(self.path)} if self.path.exists() else set()

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
            line = json.dumps(entry, sort_keys=False) + "\n"
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


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Entries of a journal; a torn last line (crash mid-write) is skipped."""
    with Path(path).open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue


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
