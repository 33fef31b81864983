"""CPU time per trial of this tree against a baseline checkout, cell by cell, side by side.

Each round runs every cell of the experiment once in a fresh process of each tree, the two
trees alternating (this, baseline, this, baseline, ...), so load drifts hit both alike; a
cell's figure is its best round. CPU time (``time.process_time``), not wall time.

    git worktree add /tmp/base 8224ea6       # the baseline commit, checked out beside
    python benchmarks/bench_vs_baseline.py --baseline /tmp/base --trials 300 --rounds 3
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
from chaoslab.experiment import load_experiment
from chaoslab.runner import Chunk, run_chunk
cells = load_experiment(sys.argv[2]).cells()[:: int(sys.argv[4])]
trials = int(sys.argv[3])
out = {}
for c in cells:
    run_chunk(Chunk(c, 7, 0, 5))  # per-cell preparation and caches, as in a worker
    t0 = time.process_time()
    run_chunk(Chunk(c, 7, 0, trials))
    out[c.key] = (time.process_time() - t0) / trials * 1e6
print(json.dumps(out))
"""


def _round(tree: Path, experiment: Path, trials: int, every: int) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(experiment), str(trials), str(every)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the old code")
    ap.add_argument("--experiment", type=Path, default=ROOT / "experiments/seed-designs.yaml")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--every", type=int, default=1, help="every Nth cell only (a quick look)")
    args = ap.parse_args(argv)
    best: dict[str, dict[str, float]] = {"this": {}, "baseline": {}}
    for _ in range(args.rounds):
        for name, tree in (("this", ROOT), ("baseline", args.baseline.resolve())):
            for key, us in _round(tree, args.experiment.resolve(), args.trials, args.every).items():
                best[name][key] = min(us, best[name].get(key, float("inf")))
    print("| cell | baseline CPU µs/trial | this CPU µs/trial | speed-up |")
    print("|---|---:|---:|---:|")
    ratios = []
    for key, old in best["baseline"].items():
        new = best["this"][key]
        ratios.append(old / new)
        print(f"| {key} | {old:,.0f} | {new:,.0f} | ×{old / new:.2f} |")
    old_med = statistics.median(best["baseline"].values())
    new_med = statistics.median(best["this"].values())
    print(
        f"\nmedian over {len(ratios)} cells: baseline {old_med:,.0f} CPU-µs/trial, this "
        f"{new_med:,.0f} (×{old_med / new_med:.2f}); per-cell speed-up median "
        f"×{statistics.median(ratios):.2f}, range ×{min(ratios):.2f}–×{max(ratios):.2f}; "
        f"{args.trials} trials x best of {args.rounds} rounds; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
