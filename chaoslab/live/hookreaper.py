"""A drill's hook commands die with the drill, however the drill dies.

A hook runs in a session of its own (`chaoslab.live.k8s.inject.run_hook`: the terminal's
Ctrl-C must reach chaoslab, which finishes its rollback, and never the hook). So when
chaoslab is SIGKILLed (a CI job's timeout, the OOM killer) nothing stops a hook that is
still running: a ``sleep 60; power-off`` or an ``apiserver-down --for 60`` goes on, and
may keep a fault injected that no journal step undoes any more.

A parent-death signal (``PR_SET_PDEATHSIG``) does not fit: it fires when the spawning
*thread* ends, reaches the hook only and not what the hook forked. So the drill process
keeps one reaper (`watch`, `forget`): a small process in its own session that reads, on
a pipe, the process groups of the hooks running now. The pipe's only writer is the drill
process, so the reaper reads end-of-file the moment that process is gone (whatever
killed it) and SIGKILLs every group still registered. What a hook started in a session of
its own (a control-plane component it restarted, as a kubelet would) is not in its group
and lives on, as it should.

``python -m chaoslab.live.hookreaper`` reads ``+PGID`` / ``-PGID`` lines on stdin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["ensure", "forget", "main", "watch"]

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None
#: the process groups of the hooks running now (sent again to a reaper that replaces one)
_groups: set[int] = set()


def _start() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chaoslab.live.hookreaper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a kill of the drill's process group spares it
        cwd=Path(__file__).resolve().parents[2],  # where `-m chaoslab` is found
    )


def _send(line: str) -> bool:
    """Write one line to a running reaper (started or replaced as needed); False when no
    reaper can be started (the hook runs unwatched, as before there was one)."""
    global _proc
    for _ in range(2):
        if _proc is None or _proc.poll() is not None:
            try:
                _proc = _start()
            except OSError:
                return False
            line = "".join(f"+{g}\n" for g in _groups) + line
        stdin = _proc.stdin
        assert stdin is not None
        try:
            stdin.write(line.encode())
            stdin.flush()
            return True
        except OSError:  # the reaper died: a new one gets every group
            _proc = None
    return False


def ensure() -> bool:
    """Start the reaper now (a drill does before its first trial, so that starting it
    does not delay the first injection); True when one runs."""
    with _lock:
        return _send("")


def watch(pgid: int) -> None:
    """Kill hook group ``pgid`` if this process dies before `forget`."""
    with _lock:
        _groups.add(pgid)
        _send(f"+{pgid}\n")


def forget(pgid: int) -> None:
    """The hook of group ``pgid`` has ended (or was killed by its caller)."""
    with _lock:
        _groups.discard(pgid)
        if _proc is not None and _proc.poll() is None:
            _send(f"-{pgid}\n")


def _drop_in_child() -> None:
    # a child forked without exec (a pool worker) must not hold the pipe open: the reaper
    # would not see the drill die while that child lives
    global _proc
    if _proc is not None and _proc.stdin is not None:
        with contextlib.suppress(OSError):
            os.close(_proc.stdin.fileno())
    _proc = None
    _groups.clear()


os.register_at_fork(after_in_child=_drop_in_child)


def reap(lines: IO[bytes]) -> list[int]:
    """Read registrations until end-of-file, then SIGKILL every group left; returns them."""
    groups: set[int] = set()
    for raw in lines:
        text = raw.decode("ascii", "replace").strip()
        if len(text) < 2 or text[0] not in "+-" or not text[1:].isdigit():
            continue
        pgid = int(text[1:])
        if pgid <= 1:  # never this reaper's own group (0) nor init's
            continue
        if text[0] == "+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in sorted(groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return sorted(groups)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the drill's end ends it
    reap(sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
