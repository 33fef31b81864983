"""Start-up time of the command line: wall and CPU seconds of ``chaoslab --help``,
``designs``, ``faults``, ``profiles`` and ``params`` (the only one that needs the
catalogue, so NumPy), each a fresh interpreter, median and max over N runs.

    python benchmarks/bench_startup.py [--runs 10] [--run RUN_DIR [--baseline DIR]]

``--run`` adds ``show RUN_DIR`` (a run's summary, issue 13 item 3's 1.5 s), e.g. on the
bundled run; ``--baseline DIR`` times it with another tree's package too (a ``git worktree``
of an older commit), the two interleaved run by run so load moves both alike.

The listings read the cache ``chaoslab designs`` leaves under ``$XDG_CACHE_HOME``: one
warm-up run per command fills it. The load average is printed with the numbers, since on
a shared machine it moves them more than anything chaoslab does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (["--help"], ["designs"], ["faults"], ["profiles"], ["params", "--grep", "grace"])


def _once(args: list[str], root: Path = ROOT) -> tuple[float, float]:
    """Wall and CPU (user + system of the child) seconds of one run of ROOT's package."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "chaoslab", *args], cwd=root, check=True,
        stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _row(name: str, times: list[tuple[float, float]]) -> str:
    walls, cpus = zip(*times, strict=True)
    return (
        f"{name[:22]:<22} {statistics.median(walls):>8.3f}s {max(walls):>8.3f}s "
        f"{statistics.median(cpus):>7.3f}s {max(cpus):>7.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command")
    parser.add_argument("--run", type=Path, help="a run folder: also time `show` of it")
    parser.add_argument("--baseline", type=Path, help="with --run: another tree's `show` too")
    a = parser.parse_args()
    runs = a.runs
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, {runs} runs")
    print(f"{'command':<22} {'wall p50':>9} {'wall max':>9} {'cpu p50':>8} {'cpu max':>8}")
    for args in COMMANDS:
        _once(args)  # warm the listing cache and the page cache
        print(_row(" ".join(args), [_once(args) for _ in range(runs)]))
    if a.run:
        show = ["show", str(a.run.resolve())]
        roots = {
            "show RUN": ROOT,
            **({"show RUN, baseline": a.baseline.resolve()} if a.baseline else {}),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in roots}
        for root in roots.values():
            _once(show, root)
        for _ in range(runs):
            for name, root in roots.items():
                times[name].append(_once(show, root))
        for name, t in times.items():
            print(_row(name, t))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
