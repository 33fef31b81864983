"""Time ``chaoslab plot`` and ``chaoslab report`` on a run folder: wall and CPU time of
each command as a user runs it (a fresh process, imports included).

    python benchmarks/bench_analysis.py RUN_DIR [--repeat 1] [--svg] [--one-process]

RUN_DIR is typically the bundled run (``chaoslab run experiments/seed-designs.yaml
--workers 2 --out /tmp/b``). Rows: with ``--one-process``, ``plot -w 1`` (the figures
drawn by one process, ``--workers 1``); ``plot`` into a fresh folder (its default
workers); ``report`` on a copy of the run whose figures ``plot`` already wrote (the usual
order: the figures are reused); ``report (cold)`` on a copy without figures (it draws
them). The run folder itself is only read: each row works on its own copy of meta.json,
experiment files and trials.
CPU time is the child's user + system time (``resource.getrusage(RUSAGE_CHILDREN)``),
which a loaded machine does not inflate the way it inflates wall time; the load average
is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one chaoslab command in a fresh interpreter."""
    t0, c0 = time.perf_counter(), _child_cpu()
    subprocess.run([sys.executable, "-m", "chaoslab", *argv], check=True, capture_output=True)
    return time.perf_counter() - t0, _child_cpu() - c0


def _copy_run(src: Path, dest: Path) -> Path:
    """A run folder without its figures or report: what the commands read, nothing else."""
    dest.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and p.suffix in (".json", ".yaml", ".parquet", ".csv", ".png"):
            shutil.copy2(p, dest / p.name)
    return dest


def _rows(run: Path, tmp: Path, svg: bool, one_process: bool) -> list[tuple[str, float, float]]:
    rows = []
    warm = _copy_run(run, tmp / "warm")
    plot = ["plot", str(warm), *(["--svg"] if svg else [])]
    if one_process:  # the same figures drawn by this process alone (--workers 1)
        alone = _copy_run(run, tmp / "alone")
        rows.append(("plot -w 1", *_timed(["plot", str(alone), "--workers", "1"])))
    rows.append(("plot", *_timed(plot)))
    rows.append(("report", *_timed(["report", str(warm)])))
    cold = _copy_run(run, tmp / "cold")
    rows.append(("report (cold)", *_timed(["report", str(cold)])))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=1, help="times to run every row")
    ap.add_argument("--svg", action="store_true", help="plot writes SVG too")
    ap.add_argument(
        "--one-process", action="store_true", help="a row for plot --workers 1 before plot"
    )
    args = ap.parse_args()
    print(f"{'command':<15} {'wall s':>8} {'CPU s':>8} {'load (1 min)':>13}")
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for name, wall, cpu in _rows(args.run_dir, Path(tmp), args.svg, args.one_process):
                print(f"{name:<15} {wall:>8.1f} {cpu:>8.1f} {os.getloadavg()[0]:>13.1f}")


if __name__ == "__main__":
    main()
