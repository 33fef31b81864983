"""Waiting for a component's health endpoint, with a bounded deadline."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaoslab.live.cluster.errors import ComponentFailed
from chaoslab.live.cluster.procs import ProcRecord, alive

__all__ = ["Deadlines", "probe", "wait_healthy", "wait_until"]


@dataclass(frozen=True)
class Deadlines:
    """How long ``up`` waits for each step before it fails (seconds). Bounds on a loaded
    2-core machine, not timers of the system under test."""

    etcd: float = 30.0
    apiserver: float = 90.0
    controllers: float = 60.0
    nodes_ready: float = 90.0
    app_ready: float = 90.0
    stop: float = 10.0


def _context(ca: Path | None, cert: tuple[Path, Path] | None) -> ssl.SSLContext | None:
    if ca is None:
        return None
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def probe(
    url: str, ca: Path | None = None, cert: tuple[Path, Path] | None = None, timeout: float = 2.0
) -> tuple[bool, str]:
    """GET ``url``: (True, body) on 200 "ok", else (False, why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=_context(ca, cert)) as r:
            body = r.read(200).decode(errors="replace").strip()
            return r.status == 200, body
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}: {e.read(200).decode(errors='replace').strip()}"
    except (OSError, ssl.SSLError) as e:
        return False, str(getattr(e, "reason", e))


def wait_until(what: str, check: Callable[[], tuple[bool, str]], deadline: float) -> None:
    end = time.monotonic() + deadline
    last = ""
    while time.monotonic() < end:
        ok, last = check()
        if ok:
            return
        time.sleep(0.25)
    raise ComponentFailed(f"{what}: not done within {deadline:.0f} s ({last})")


def wait_healthy(
    rec: ProcRecord,
    url: str,
    deadline: float,
    ca: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    *,
    every: float = 0.25,
) -> None:
    """Poll ``url`` every ``every`` s until it answers 200; fail at once if the process
    exits."""
    end = time.monotonic() + deadline
    last = "no answer"
    while time.monotonic() < end:
        if not alive(rec.pid, rec.start):
            raise ComponentFailed(f"{rec.name} exited during start-up; log: {rec.log}")
        ok, last = probe(url, ca, cert)
        if ok:
            return
        time.sleep(every)
    raise ComponentFailed(
        f"{rec.name}: {url} not healthy within {deadline:.0f} s ({last}); log: {rec.log}"
    )
