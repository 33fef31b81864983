"""Log lines of the command line: ``--verbose``, ``--log-file FILE``, ``--log-format
text|json``, and a run's progress as periodic lines when stderr is not a terminal (a CI
log gets "12000/118000 trials, 1,800 trials/s, ETA 54s" instead of silence).

A record is an event name and fields. Text lines read
``2026-12-02T00:10:05Z INFO progress: 12000/118000 trials (10%) ...``; JSON lines carry
``ts``, ``level``, ``event``, ``message`` and the fields, one object a line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaoslab.errors import UserError

__all__ = ["FORMATS", "Progress", "event", "logger", "setup"]

FORMATS = ("text", "json")
logger = logging.getLogger("chaoslab")
# a progress line at most this often, or at every further tenth of the work
PROGRESS_EVERY_S = 5.0
PROGRESS_STEP = 0.1


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_utc(record.created)} {record.levelname} {record.getMessage()}"


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _utc(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        return json.dumps(doc, default=str)


def setup(verbose: bool, log_file: Path | None, fmt: str) -> None:
    """Send chaoslab's records to stderr (INFO, DEBUG with ``verbose``) and, when asked,
    all of them to ``log_file`` (appended), in ``fmt``."""
    if fmt not in FORMATS:
        raise UserError(f"--log-format {fmt}: use text or json")
    formatter: logging.Formatter = _Json() if fmt == "json" else _Text()
    for h in list(logger.handlers):  # main() may run more than once in one process
        logger.removeHandler(h)
        h.close()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as e:
            raise UserError(f"--log-file {log_file}: {e.strerror or e}") from None
    for h in handlers:
        h.setFormatter(formatter)
        logger.addHandler(h)
    logger.setLevel(logging.DEBUG)  # the file gets every line; stderr by its own level
    logger.propagate = False


def event(name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` as event ``name`` with ``fields`` (JSON lines carry them)."""
    logger.log(level, message, extra={"event": name, "fields": fields})


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Progress:
    """Counts finished trials and logs a line every ``PROGRESS_EVERY_S`` seconds or tenth
    of the work, whichever comes first, and one at the end."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self.chunks = 0
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_share = 0.0
        self.level = logging.INFO

    def advance(self, trials: int) -> None:
        self.done += trials
        self.chunks += 1
        now = self._clock()
        share = self.done / self.total if self.total else 1.0
        if (
            now - self._last_time >= PROGRESS_EVERY_S
            or share - self._last_share >= PROGRESS_STEP
            or self.done >= self.total
        ):
            self._last_time, self._last_share = now, share
            self._log(now, share)

    def _log(self, now: float, share: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = _duration(eta) if eta != float("inf") else "?"
        event(
            "progress",
            f"progress: {self.done}/{self.total} trials ({share:.0%}), {self.chunks} chunks, "
            f"{rate:,.0f} trials/s, ETA {eta_text}",
            done=self.done,
            total=self.total,
            chunks=self.chunks,
            rate=round(rate, 1),
            eta_s=None if eta == float("inf") else round(eta, 1),
            level=self.level,
        )
