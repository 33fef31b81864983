"""Milestones from the daemons' own output, on the prober's clock.

Every daemon of the lab (keepalived, BIRD, HAProxy, nginx) and an ``ip -ts monitor`` per
namespace write to log files in the lab's state folder. :class:`LogWatcher` tails those
files every ``poll`` seconds and stamps each new line with ``time.monotonic()`` when it is
read. The daemons' own wall-clock timestamps are not used: CLOCK_MONOTONIC is the clock of
the prober and of the fault instant, and reading a line within a couple of milliseconds of
its write is closer than converting wall time (which can step) would be.

A topology turns lines into model milestone names with a list of :class:`Rule`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["LogEvent", "LogWatcher", "Rule", "match_rules"]


@dataclass(frozen=True, slots=True)
class LogEvent:
    t: float  # monotonic seconds when the line was read
    source: str  # which file (process name in the lab state)
    line: str


@dataclass(frozen=True, slots=True)
class Rule:
    """``milestone`` when a line of a source whose name matches ``source`` matches ``pattern``."""

    milestone: str
    source: str  # regex on the source name
    pattern: str  # regex on the line

    def matches(self, ev: LogEvent) -> bool:
        return bool(re.search(self.source, ev.source) and re.search(self.pattern, ev.line))


def match_rules(
    events: Iterable[LogEvent],
    rules: Iterable[Rule],
    *,
    accept: Callable[[Rule, LogEvent], bool] | None = None,
) -> list[tuple[str, LogEvent]]:
    """(milestone, event) for every event a rule matches, in time order."""
    rules = list(rules)
    out = []
    for ev in sorted(events, key=lambda e: e.t):
        for r in rules:
            if r.matches(ev) and (accept is None or accept(r, ev)):
                out.append((r.milestone, ev))
    return out


class LogWatcher:
    """Tail a set of files in a background thread; keeps every line with its read time."""

    def __init__(self, poll: float = 0.002) -> None:
        self.poll = poll
        self._files: dict[str, tuple[str, int, bytes]] = {}  # source -> (path, fd, partial)
        self._events: list[LogEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, source: str, path: str, *, from_start: bool = False) -> None:
        """Follow ``path``; lines already in it are skipped unless ``from_start``."""
        with self._lock:
            old = self._files.pop(source, None)
            if old is not None:
                with contextlib.suppress(OSError):
                    os.close(old[1])
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
            if not from_start:
                os.lseek(fd, 0, os.SEEK_END)
            self._files[source] = (path, fd, b"")

    def _poll_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            for source, (path, fd, partial) in list(self._files.items()):
                chunks = []
                while True:
                    try:
                        b = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not b:
                        break
                    chunks.append(b)
                if not chunks:
                    continue
                data = partial + b"".join(chunks)
                lines = data.split(b"\n")
                self._files[source] = (path, fd, lines[-1])
                for ln in lines[:-1]:
                    self._events.append(LogEvent(now, source, ln.decode(errors="replace")))

    def _main(self) -> None:
        while not self._stop.is_set():
            self._poll_once()
            time.sleep(self.poll)
        self._poll_once()

    def start(self) -> LogWatcher:
        self._thread = threading.Thread(target=self._main, name="chaoslab-logwatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for _, fd, _ in self._files.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._files.clear()

    def events(self, since: float = -1.0, until: float = float("inf")) -> list[LogEvent]:
        with self._lock:
            return [e for e in self._events if since <= e.t <= until]

    def clear_before(self, t: float) -> None:
        with self._lock:
            self._events = [e for e in self._events if e.t >= t]
