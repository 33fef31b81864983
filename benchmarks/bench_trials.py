"""Trial throughput of the simulation core, per design x fault, against bare SimPy.

For every cell (design x fault x sweep point) of an experiment this reports

- ``trials/s``: trials per second on one core, through `run_chunk` (trial + row +
  DataFrame: everything a worker does except writing Parquet);
- ``events/trial``: SimPy events the trial processed (mean);
- ``us/event``: the model's wall time per trial divided by its events;
- ``bare us/event``: a bare SimPy loop (one process yielding ``env.timeout``) with the same
  number of events per trial and the same number of trials, measured right after the cell
  in the same process — so machine load hits both alike;
- ``x bare``: model cost per event / bare cost per event.

The machine is shared: every figure is the best of ``--repeat`` rounds (the least
disturbed one), and the load average is printed with the table.

    python benchmarks/bench_trials.py                       # seed-designs, markdown table
    python benchmarks/bench_trials.py --trials 1000 --repeat 5 --json out.json
    python benchmarks/bench_trials.py --scaling --workers 2 # run_cells speed-up on N cores
    python benchmarks/bench_trials.py --engine fast         # + the fast engine beside SimPy
    python benchmarks/bench_trials.py --engine fast --covered   # only the cells it covers

``--engine fast`` adds, for every cell the fast engine covers, a row timed in the same
round as the SimPy row (``x simpy`` = SimPy CPU per trial / fast CPU per trial). CPU time
(``time.process_time``) is what the ratios use: wall time on a shared machine includes
the other users' load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import simpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaoslab.experiment import load_experiment  # noqa: E402
from chaoslab.fast import FastCell, plan  # noqa: E402
from chaoslab.runner import Cell, Chunk, run_cells, run_chunk, run_trial  # noqa: E402


@dataclass
class Row:
    design: str
    fault: str
    target: str
    sweep: str
    trials_per_s: float
    events_per_trial: float
    us_per_event: float
    bare_us_per_event: float
    x_bare: float
    cpu_us_per_trial: float = 0.0
    engine: str = "simpy"
    x_simpy: float = 1.0


def bare_simpy(trials: int, events: int) -> float:
    """Seconds for ``trials`` bare SimPy runs of ``events`` timeouts each."""

    def loop(env: simpy.Environment, n: int):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield env.timeout(1.0)

    # the process costs two events of its own: Initialize and its termination
    timeouts = max(0, events - 2)
    t0 = time.perf_counter()
    for _ in range(trials):
        env = simpy.Environment()
        env.process(loop(env, timeouts))
        env.run()
    return time.perf_counter() - t0


def events_per_trial(cell: Cell, trials: int, seed: int) -> float:
    stats: dict[str, int] = {}
    for i in range(trials):
        run_trial(cell, i, seed=seed, stats=stats)
    return stats["events"] / trials


def _cpu_time(chunk: Chunk) -> float:
    t0 = time.process_time()
    run_chunk(chunk)
    return time.process_time() - t0


def bench_cell(
    cell: Cell, trials: int, seed: int, repeat: int, fast: FastCell | None = None
) -> list[Row]:
    """The SimPy row of ``cell`` (and its fast-engine row, timed in the same rounds)."""
    ev = events_per_trial(cell, trials, seed)
    n_events = max(1, round(ev))
    best_model = best_bare = best_cpu = best_fast = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        run_chunk(Chunk(cell, seed, 0, trials))
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_model = min(best_model, time.perf_counter() - t0)
        best_bare = min(best_bare, bare_simpy(trials, n_events))
        if fast is not None:
            # the fast engine is timed on 10x the trials: a chunk of 500 takes ~2 ms
            best_fast = min(best_fast, _cpu_time(Chunk(cell, seed, 0, 10 * trials, fast=fast)) / 10)
    us_event = best_model / trials / ev * 1e6
    bare_event = best_bare / trials / n_events * 1e6
    sweep = ",".join(f"{k}={v}" for k, v in sorted(cell.sweep.items()))
    cpu_us = best_cpu / trials * 1e6
    row = Row(
        cell.name,
        cell.fault.kind,
        cell.fault.label,
        sweep,
        trials / best_model,
        ev,
        us_event,
        bare_event,
        us_event / bare_event,
        cpu_us,
    )
    rows = [row]
    if fast is not None:
        fast_us = best_fast / trials * 1e6
        x_bare = fast_us / (bare_event * ev)
        rows.append(
            Row(
                row.design,
                row.fault,
                row.target,
                sweep,
                1e6 / fast_us,
                0.0,
                0.0,
                bare_event,
                x_bare,
                fast_us,
                "fast",
                cpu_us / fast_us,
            )
        )
    return rows


def machine() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "platform": platform.platform(),
    }


def table(rows: list[Row]) -> str:
    out = [
        "| design | fault | target | sweep | engine | CPU µs/trial | trials/s/core "
        "| events/trial | × bare SimPy | × simpy |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        events = f"{r.events_per_trial:.1f}" if r.engine == "simpy" else "—"
        out.append(
            f"| {r.design} | {r.fault} | {r.target} | {r.sweep} | {r.engine} "
            f"| {r.cpu_us_per_trial:,.1f} | {r.trials_per_s:,.0f} | {events} "
            f"| {r.x_bare:.2f} | {r.x_simpy:.0f} |"
        )
    return "\n".join(out)


def _cpu() -> tuple[float, float]:
    """CPU seconds used so far by this process and by its reaped children (pool workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def scaling(cells: list[Cell], trials: int, seed: int, workers: int, repeat: int) -> str:
    """Wall and CPU time of run_cells with 1 and ``workers`` processes on the same chunks.

    On a shared machine the wall-time speed-up is bounded by the cores the others leave
    free; the CPU columns show whether the parallel run costs more work per trial (pool
    overhead) or merely got fewer cores: ``cores used`` = CPU seconds / wall seconds.
    """
    best: dict[int, tuple[float, float, float]] = {}
    total = 0
    for n in (1, workers):
        for _ in range(repeat):
            me0, kids0 = _cpu()
            t0 = time.perf_counter()
            total = sum(len(df) for _, df in run_cells(cells, trials=trials, seed=seed, workers=n))
            dt = time.perf_counter() - t0
            me1, kids1 = _cpu()
            if n not in best or dt < best[n][0]:
                best[n] = (dt, me1 - me0, kids1 - kids0)
    lines = [f"{total:,} trials in {len(cells)} cells"]
    for n, (dt, cpu_main, cpu_kids) in best.items():
        cpu = cpu_main + cpu_kids
        lines.append(
            f"workers={n}: {dt:.2f} s wall, {total / dt:,.0f} trials/s; CPU {cpu:.1f} s "
            f"(main {cpu_main:.1f} s, workers {cpu_kids:.1f} s), cores used {cpu / dt:.2f}, "
            f"{cpu / total * 1e6:.0f} CPU-µs/trial"
        )
    w1, w2 = best[1], best[workers]
    lines.append(f"speed-up x{w1[0] / w2[0]:.2f} wall with {workers} workers")
    lines.append(
        f"CPU per trial x{(w2[1] + w2[2]) / (w1[1] + w1[2]):.2f} of one worker's "
        f"(1.00 = no parallel overhead; speed-up with {workers} free cores would be about "
        f"x{workers * (w1[1] + w1[2]) / (w2[1] + w2[2]):.2f})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiment", nargs="?", default=str(ROOT / "experiments/seed-designs.yaml"))
    ap.add_argument("--trials", type=int, default=500, help="trials per cell and round")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--design", action="append", help="only these designs (repeatable)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--scaling", action="store_true", help="measure run_cells speed-up instead")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--engine",
        choices=("simpy", "fast"),
        default="simpy",
        help="fast: also time the fast engine on the cells it covers",
    )
    ap.add_argument(
        "--covered",
        action="store_true",
        help="with --engine fast: only the cells the fast engine covers",
    )
    args = ap.parse_args(argv)

    exp = load_experiment(args.experiment)
    cells = exp.cells()
    if args.design:
        cells = [c for c in cells if c.design in args.design]
    load0 = os.getloadavg()
    if args.scaling:
        print(scaling(cells, args.trials, args.seed, args.workers, args.repeat))
        print(f"load average before: {load0[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
        return 0
    rows: list[Row] = []
    for c in cells:
        fast = plan(c)[0] if args.engine == "fast" else None
        if args.covered and fast is None:
            continue
        rows += bench_cell(c, args.trials, args.seed, args.repeat, fast)
    load1 = os.getloadavg()
    m = machine()
    print(table(rows))
    simpy = [r for r in rows if r.engine == "simpy"]
    worst = min(r.trials_per_s for r in simpy)
    print(
        f"\nSimPy: median {statistics.median(r.cpu_us_per_trial for r in simpy):.0f} CPU-µs/trial, "
        f"worst cell {worst:,.0f} trials/s/core; median x bare "
        f"{statistics.median(r.x_bare for r in simpy):.1f}, worst x bare "
        f"{max(r.x_bare for r in simpy):.1f}"
    )
    fast_rows = [r for r in rows if r.engine == "fast"]
    if fast_rows:
        ratios = [r.x_simpy for r in fast_rows]
        print(
            f"fast engine: {len(fast_rows)} cells, median "
            f"{statistics.median(r.cpu_us_per_trial for r in fast_rows):.2f} "
            f"CPU-µs/trial, x{min(ratios):.0f}–x{max(ratios):.0f} the SimPy trial rate "
            f"(median x{statistics.median(ratios):.0f})"
        )
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, SimPy {m['simpy']}; "
        f"load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
        f"{args.trials} trials x best of {args.repeat}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": m, "load": [load0[0], load1[0]], "rows": [asdict(r) for r in rows]},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
