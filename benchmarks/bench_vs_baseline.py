"""CPU time per trial of this tree against a baseline checkout, cell by cell, side by side.

Each round runs every cell of the experiment once in a fresh process of each tree, the two
trees alternating (this, baseline, this, baseline, ...), so load drifts hit both alike; a
cell's figure is its best round. CPU time (``time.process_time``), not wall time. Beside
it: SimPy events per trial (``run_trial``'s count, first 50 trials) and ``x bare``: CPU per
trial / (a bare SimPy loop's CPU per event x events per trial), the bare loop timed in the
same process right after the cell.

    git worktree add /tmp/base 2529776       # the baseline commit, checked out beside
    python benchmarks/bench_vs_baseline.py --baseline /tmp/base --trials 300 --rounds 3 \
        --experiment /tmp/base/experiments/seed-designs.yaml   # the cells both trees know
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# runs inside the tree under test (its chaoslab on sys.path first)
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import simpy
from chaoslab.experiment import load_experiment
from chaoslab.runner import Chunk, run_chunk, run_trial
cells = load_experiment(sys.argv[2]).cells()[:: int(sys.argv[4])]
trials = int(sys.argv[3])

def bare(n_trials, events):  # one process yielding timeouts: Initialize + end are 2 events
    def loop(env, n):
        for _ in range(n):
            yield env.timeout(1.0)
    t0 = time.process_time()
    for _ in range(n_trials):
        env = simpy.Environment()
        env.process(loop(env, max(0, events - 2)))
        env.run()
    return (time.process_time() - t0) / n_trials / max(1, events) * 1e6

out = {}
for c in cells:
    run_chunk(Chunk(c, 7, 0, 5))  # per-cell preparation and caches, as in a worker
    t0 = time.process_time()
    run_chunk(Chunk(c, 7, 0, trials))
    us = (time.process_time() - t0) / trials * 1e6
    stats = {}
    for i in range(min(50, trials)):
        run_trial(c, i, seed=7, stats=stats)
    ev = stats["events"] / min(50, trials)
    out[c.key] = (us, ev, bare(trials, round(ev)))
print(json.dumps(out))
"""


def _round(tree: Path, experiment: Path, trials: int, every: int) -> dict[str, list[float]]:
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(experiment), str(trials), str(every)],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    if res.returncode != 0:
        # an older tree may not know a design the experiment names (cloud-lb-ip at 2529776)
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(
            f"{tree} failed on {experiment}: {last}\n"
            f"an older tree may lack a design of this experiment: pass its own copy, "
            f"--experiment {tree}/experiments/{experiment.name}"
        )
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _spread(values: list[float], fmt: str) -> str:
    return f"median {statistics.median(values):{fmt}}, {min(values):{fmt}}–{max(values):{fmt}}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the old code")
    ap.add_argument("--experiment", type=Path, default=ROOT / "experiments/seed-designs.yaml")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--every", type=int, default=1, help="every Nth cell only (a quick look)")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    cpu0 = os.times()
    # per tree and cell: best CPU µs/trial, events/trial, best bare µs/event
    best: dict[str, dict[str, list[float]]] = {"this": {}, "baseline": {}}
    for _ in range(args.rounds):
        for name, tree in (("this", ROOT), ("baseline", args.baseline.resolve())):
            got = _round(tree, args.experiment.resolve(), args.trials, args.every)
            for key, (us, ev, bare) in got.items():
                old = best[name].get(key, [float("inf"), ev, float("inf")])
                best[name][key] = [min(us, old[0]), ev, min(bare, old[2])]
    print(
        "| cell | events/trial base | events/trial this | baseline CPU µs/trial "
        "| this CPU µs/trial | × bare base | × bare this | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios, xb_old, xb_new = [], [], []
    for key, (old, ev_old, bare_old) in best["baseline"].items():
        new, ev_new, bare_new = best["this"][key]
        bare = min(bare_old, bare_new)  # the same SimPy in both: the least disturbed figure
        ratios.append(old / new)
        xb_old.append(old / (bare * ev_old))
        xb_new.append(new / (bare * ev_new))
        print(
            f"| {key} | {ev_old:.1f} | {ev_new:.1f} | {old:,.0f} | {new:,.0f} "
            f"| {xb_old[-1]:.1f} | {xb_new[-1]:.1f} | ×{old / new:.2f} |"
        )
    old_all = list(v[0] for v in best["baseline"].values())
    new_all = list(v[0] for v in best["this"].values())
    cpu1 = os.times()
    cpu = cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
    print(
        f"\n{len(ratios)} cells, {args.trials} trials x best of {args.rounds} rounds. "
        f"CPU µs/trial baseline {_spread(old_all, ',.0f')}; this {_spread(new_all, ',.0f')} "
        f"(median ×{statistics.median(old_all) / statistics.median(new_all):.2f}); per-cell "
        f"speed-up {_spread(ratios, '.2f')}; × bare SimPy baseline {_spread(xb_old, '.1f')}, "
        f"this {_spread(xb_new, '.1f')}. Load average {load0:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; {cpu:.0f} s CPU in the rounds."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
