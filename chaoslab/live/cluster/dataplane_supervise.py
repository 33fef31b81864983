"""Run one node process (kube-proxy) as a kubelet runs a DaemonSet or static pod: restart it
whenever it exits, with the kubelet's crash-loop back-off.

A real node's kube-proxy exits on purpose now and then (``NodeIPs changed``, a podCIDR
change: ``pkg/proxy/node.go`` v1.37.2 calls ``klog.FlushAndExit``) and relies on its kubelet
to start it again. The back-off is the kubelet's (``kuberuntime_manager.go`` doBackOff with
``k8s.io/client-go/util/flowcontrol`` Backoff): the first exit is restarted at once, each
later one ``initial × 2^(n-1)`` seconds after it exited, capped, and the count starts over
once the process has run more than twice the cap without exiting (Backoff's ``hasExpired``).
The values come from the catalogue (``kubelet.container_restart_backoff_initial`` and
``_max``), passed by the data plane.

``python -P dataplane_supervise.py --backoff INITIAL CAP -- ARGV...`` in the node's
namespace. The child dies with this process (``PR_SET_PDEATHSIG``), so a node crash that
SIGKILLs the supervisor kills kube-proxy with it, as before. Every start and exit is one
line ``<CLOCK_MONOTONIC s> supervise start pid=P`` / ``... exited rc=R after S s, restart
in W s`` in the log the child writes to as well. This file runs as a script: it imports no
chaoslab.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CrashLoop", "main"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class CrashLoop:
    """The kubelet's back-off for one container: when to start it again after an exit."""

    initial: float
    cap: float
    exits: int = 0
    last_exit: float | None = None

    def wait_after_exit(self, at: float) -> float:
        """Seconds from an exit at ``at`` to the restart."""
        if self.last_exit is not None and at - self.last_exit > 2 * self.cap:
            self.exits = 0  # stable for twice the cap: the entry has expired
        wait = 0.0 if self.exits == 0 else min(self.cap, self.initial * 2 ** (self.exits - 1))
        self.exits += 1
        self.last_exit = at
        return wait


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _say(text: str) -> None:
    print(f"{time.monotonic():.6f} supervise {text}", flush=True)


def supervise(argv: Sequence[str], loop: CrashLoop) -> int:
    """Start ``argv``, restart it after each exit; return when SIGTERM/SIGINT arrives."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(list(argv), preexec_fn=_die_with_parent)
        _say(f"start pid={child.pid}")
        rc = child.wait()
        if stopping:
            return 0
        ended = time.monotonic()
        wait = loop.wait_after_exit(ended)
        _say(f"exited rc={rc} after {ended - started:.3f} s, restart in {wait:g} s")
        deadline = ended + wait
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return 0


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -P dataplane_supervise.py")
    ap.add_argument(
        "--backoff",
        nargs=2,
        type=float,
        required=True,
        metavar=("INITIAL", "CAP"),
        help="the kubelet's crash-loop back-off in seconds (first wait, cap)",
    )
    ap.add_argument("argv", nargs="+", help="the command (after --)")
    a = ap.parse_args(args)
    initial, cap = a.backoff
    if not 0 < initial <= cap:
        ap.error("--backoff: need 0 < INITIAL <= CAP")
    return supervise(a.argv, CrashLoop(initial, cap))


if __name__ == "__main__":
    sys.exit(main())
