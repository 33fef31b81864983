"""Run a command and report its peak memory: the main process and its whole process tree.

``/usr/bin/time -v`` reports the largest single process only; a run with ``--workers N``
is N + 1 processes, so this samples the resident set size of the tree (psutil) every
``--every`` seconds and prints the peaks and when they happened.

    python benchmarks/peak_memory.py -- chaoslab run experiments/seed-designs.yaml \\
        --trials 38462 --workers 2 --out /tmp/res -q
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(main process RSS, RSS summed over the process and all its descendants)."""
    try:
        main = proc.memory_info().rss
        kids = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = main
    for k in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += k.memory_info().rss
    return main, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=float, default=0.2, help="sampling period, seconds")
    ap.add_argument("--log", type=Path, help="write the samples here (CSV: s, main_mib, tree_mib)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")
    t0 = time.monotonic()
    popen = subprocess.Popen(cmd)
    proc = psutil.Process(popen.pid)
    peak_main = peak_tree = 0
    at_main = at_tree = 0.0
    mib = 1024 * 1024
    samples: list[str] = ["s,main_mib,tree_mib"]
    while popen.poll() is None:
        m, t = tree_rss(proc)
        now = time.monotonic() - t0
        samples.append(f"{now:.1f},{m / mib:.1f},{t / mib:.1f}")
        if m > peak_main:
            peak_main, at_main = m, now
        if t > peak_tree:
            peak_tree, at_tree = t, now
        time.sleep(args.every)
    elapsed = time.monotonic() - t0
    if args.log:
        args.log.write_text("\n".join(samples) + "\n")
    print(
        f"exit {popen.returncode}; {elapsed:.1f} s; peak RSS main process "
        f"{peak_main / mib:.0f} MiB (at {at_main:.0f} s), whole tree {peak_tree / mib:.0f} MiB "
        f"(at {at_tree:.0f} s)",
        file=sys.stderr,
    )
    return popen.returncode


if __name__ == "__main__":
    sys.exit(main())
