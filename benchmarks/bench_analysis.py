"""Time ``chaoslab plot`` and ``chaoslab report`` on a run folder: wall and CPU time of
each command as a user runs it (a fresh process, imports included).

    python benchmarks/bench_analysis.py RUN_DIR [--repeat 1] [--svg] [--one-process]
                                                [--baseline DIR]

RUN_DIR is typically the bundled run (``chaoslab run experiments/seed-designs.yaml
--workers 2 --out /tmp/b``). Rows: with ``--one-process``, ``plot -w 1`` (the figures
drawn by one process, ``--workers 1``); ``plot`` into a fresh folder (its default
workers); ``report`` on a copy of the run whose figures ``plot`` already wrote (the usual
order: the figures are reused); ``report (cold)`` on a copy without figures (it draws
them). The run folder itself is only read: each row works on its own copy of meta.json,
experiment files and trials.

``--baseline DIR``: DIR holds an older ``chaoslab`` package (``git archive COMMIT
chaoslab | tar -x -C DIR``); every row is run with it and with this checkout's code in
turn, so both see the same load (on a shared machine a before/after measured an hour
apart compares the neighbours, not the code).

CPU time is the child's user + system time (``resource.getrusage(RUSAGE_CHILDREN)``),
which a loaded machine inflates less than wall time; the load average is printed beside
it.
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


def _timed(argv: list[str], code: Path | None, cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one chaoslab command in a fresh interpreter; ``code``: the
    folder whose ``chaoslab`` package runs (None: the installed one, this checkout)."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    t0, c0 = time.perf_counter(), _child_cpu()
    # cwd outside any checkout: -m puts it first on sys.path, ahead of PYTHONPATH
    subprocess.run([sys.executable, "-m", "chaoslab", *argv], check=True, capture_output=True,
                   env=env, cwd=cwd)  # fmt: skip
    return time.perf_counter() - t0, _child_cpu() - c0


def _copy_run(src: Path, dest: Path) -> Path:
    """A run folder without its figures or report: what the commands read, nothing else."""
    dest.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and p.suffix in (".json", ".yaml", ".parquet", ".csv", ".png"):
            shutil.copy2(p, dest / p.name)
    return dest


def _commands(run: Path, tmp: Path, svg: bool, one_process: bool) -> list[tuple[str, list[str]]]:
    """(row name, argv) in the order they run; a row's copies of the run are made here."""
    warm = _copy_run(run, tmp / "warm")
    rows: list[tuple[str, list[str]]] = []
    if one_process:  # the same figures drawn by this process alone (--workers 1)
        rows.append(("plot -w 1", ["plot", str(_copy_run(run, tmp / "alone")), "--workers", "1"]))
    rows.append(("plot", ["plot", str(warm), *(["--svg"] if svg else [])]))
    rows.append(("report", ["report", str(warm)]))
    rows.append(("report (cold)", ["report", str(_copy_run(run, tmp / "cold"))]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=1, help="times to run every row")
    ap.add_argument("--svg", action="store_true", help="plot writes SVG too")
    ap.add_argument(
        "--one-process", action="store_true", help="a row for plot --workers 1 before plot"
    )
    ap.add_argument(
        "--baseline", type=Path, help="folder with an older chaoslab package to run in turn"
    )
    args = ap.parse_args()
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline is not None:
        codes.insert(0, ("baseline", args.baseline.resolve()))
    run = args.run_dir.resolve()
    print(f"{'command':<15} {'code':<9} {'wall s':>8} {'CPU s':>8} {'load (1 min)':>13}")
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            plans = {name: _commands(run, Path(tmp) / name, args.svg, args.one_process)
                     for name, _ in codes}  # fmt: skip
            for i in range(len(plans["this"])):
                for name, code in codes:
                    row, argv = plans[name][i]
                    wall, cpu = _timed(argv, code, Path(tmp))
                    load = os.getloadavg()[0]
                    print(f"{row:<15} {name:<9} {wall:>8.1f} {cpu:>8.1f} {load:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
