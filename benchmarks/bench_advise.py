"""Time ``chaoslab advise`` on the bundled advisor experiment: wall and CPU time, the
share spent outside trials, and the trials run against a full grid.

    python benchmarks/bench_advise.py [--workers 2] [--experiment experiments/advise-seed.yaml]

Each run uses a fresh results folder (no cached cells). CPU time is this process plus
its worker processes (``resource.getrusage`` of self and children).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--experiment", default="experiments/advise-seed.yaml")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from chaoslab.advise.run import advise

    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.perf_counter(), _cpu()
        r = advise(args.experiment, Path(out), workers=args.workers, progress=print)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    s = r.search
    top = max(e.trials for d in r.advice for e in d.evaluated)
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (workers {args.workers})")
    print(f"outside trials: plan {r.timing['plan_s']:.1f} s, writing {r.timing['write_s']:.1f} s")
    print(
        f"{r.points} points, {s.cells_grid} cells, {s.rounds} rounds: {s.trials_run:,} trials "
        f"vs {s.cells_grid * top:,} for the full grid at {top} trials per cell "
        f"({s.trials_run / (s.cells_grid * top):.1%})"
    )


if __name__ == "__main__":
    main()
