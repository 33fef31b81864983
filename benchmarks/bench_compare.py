"""`chaoslab compare` of a run against itself: this tree against the old compare module.

Each variant is the whole command (load both runs, compare, print the table, write
cells.csv and ranks.csv) in a fresh process, started by a small parent that reports
``resource.getrusage(RUSAGE_CHILDREN)`` for it alone: wall time, CPU time (user + system)
and peak RSS. The old variant is this tree with ``chaoslab/compare.py`` taken from
``--baseline`` (a git revision: the per-trial `quantile_rank` loop), so only the compare
code differs. The two variants' CSVs are compared byte for byte.

    nice -n 10 chaoslab run experiments/seed-designs.yaml --workers 2 --out /tmp/s
    python benchmarks/bench_compare.py /tmp/s/seed-designs/RUN_ID --repeat 2
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: chaoslab/compare.py before the one sort per cell x metric
BASELINE = "6dcbf55de736219d15d9a8d6eb9d2944e04afc27"

# the command under test; argv: tree, old compare.py or "", pred, meas, out
_COMMAND = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2]:
    import chaoslab
    spec = importlib.util.spec_from_file_location("chaoslab.compare", sys.argv[2])
    old = importlib.util.module_from_spec(spec)
    sys.modules["chaoslab.compare"] = old
    spec.loader.exec_module(old)
    chaoslab.compare = old
from chaoslab.cli import main
sys.exit(main(["compare", sys.argv[3], sys.argv[4], "--out", sys.argv[5]]))
"""

# the parent that measures one child alone (RUSAGE_CHILDREN of a process with one child)
_PARENT = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t0
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall": wall, "cpu": u.ru_utime + u.ru_stime,
                  "rss_mb": u.ru_maxrss / 1024}))
"""


def _measure(old: str, pred: str, meas: str, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-c", _COMMAND, str(ROOT), old, pred, meas, str(out)]
    res = subprocess.run(
        [sys.executable, "-c", _PARENT, *cmd], capture_output=True, text=True, check=True
    )
    got = dict(json.loads(res.stdout.strip().splitlines()[-1]))
    if got["rc"] != 0:
        raise SystemExit(f"compare exited {got['rc']} ({'old' if old else 'new'} code)")
    return got


def _old_module(rev: str, into: Path) -> Path:
    text = subprocess.run(
        ["git", "show", f"{rev}:chaoslab/compare.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = into / "compare_old.py"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pred", help="the predicted run folder")
    ap.add_argument("meas", nargs="?", help="the measured run folder (default: pred)")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the old compare.py")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each figure is the best")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    meas = a.meas or a.pred
    load0 = os.getloadavg()
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        old = str(_old_module(a.baseline, Path(tmp)))
        for _ in range(a.repeat):
            for name, module in (("new", ""), ("old", old)):
                got = _measure(module, a.pred, meas, Path(tmp) / name)
                prev = best.get(name)
                best[name] = got if prev is None else {k: min(v, prev[k]) for k, v in got.items()}
        same = {
            f: filecmp.cmp(Path(tmp) / "old" / f, Path(tmp) / "new" / f, shallow=False)
            for f in ("cells.csv", "ranks.csv")
        }
        rows = sum(1 for _ in (Path(tmp) / "new" / "ranks.csv").open()) - 1
    load1 = os.getloadavg()
    print(f"| code | wall s | CPU s | peak RSS MB |   ({rows:,} ranks, best of {a.repeat})")
    print("|---|---:|---:|---:|")
    for name, label in (("old", f"old ({a.baseline[:7]})"), ("new", "this tree")):
        b = best[name]
        print(f"| {label} | {b['wall']:.1f} | {b['cpu']:.1f} | {b['rss_mb']:.0f} |")
    print("identical output: " + ", ".join(f"{f} {'yes' if s else 'NO'}" for f, s in same.items()))
    print(f"load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)")
    if a.json:
        a.json.write_text(json.dumps({"best": best, "identical": same, "load": [load0, load1]}))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
