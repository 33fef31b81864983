"""`chaoslab compare` of a run against itself: this tree against older trees.

Each variant is the whole command (load both runs, compare, print the table, write
cells.csv and ranks.csv) in a fresh process, started by a small parent that reports
``resource.getrusage(RUSAGE_CHILDREN)`` for it alone: wall time, CPU time (user + system)
and peak RSS. An old variant is the ``chaoslab`` package of a git revision (``--baseline``,
repeatable; ``git archive`` into a temporary folder) run on the same run folder, so the
rounds of one invocation see the same machine. Every variant's CSVs are compared byte for
byte with this tree's, without the rows of metrics the old tree does not compare (the
latency rows are newer than the baseline).

    nice -n 10 chaoslab run experiments/seed-designs.yaml --workers 2 --out /tmp/s
    python benchmarks/bench_compare.py /tmp/s/seed-designs/RUN_ID --repeat 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from itertools import zip_longest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the tree before compare's latency rows (issue 11 item 4); 2529776 is the one before
#: compare's second round (issue 13 item 3: 10 s, 0.9 GB on the bundled run), 6dcbf55 the
#: one before the first (the per-trial `quantile_rank`)
BASELINES = ["6c0806822184e5a24abe7792605746e1fe1bc241"]

# the command under test; argv: the folder holding the chaoslab package, pred, meas, out
_COMMAND = """
import sys
sys.path.insert(0, sys.argv[1])
from chaoslab.cli import main
sys.exit(main(["compare", sys.argv[2], sys.argv[3], "--out", sys.argv[4]]))
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


def _measure(tree: Path, pred: str, meas: str, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-c", _COMMAND, str(tree), pred, meas, str(out)]
    res = subprocess.run(
        [sys.executable, "-c", _PARENT, *cmd], capture_output=True, text=True, check=True
    )
    got = dict(json.loads(res.stdout.strip().splitlines()[-1]))
    if got["rc"] != 0:
        raise SystemExit(f"compare exited {got['rc']} (the chaoslab of {tree})")
    return got


def _old_tree(rev: str, into: Path) -> Path:
    """The chaoslab package of ``rev``, unpacked under ``into``."""
    tar = subprocess.run(
        ["git", "archive", rev, "chaoslab"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    dest = into / rev[:12]
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest


def _same_rows(old: Path, new: Path) -> bool:
    """Whether ``new`` is ``old`` byte for byte once the rows of metrics ``old`` does not
    have (slow_s, p99_latency_s, added since) are left out; the rows keep their order."""
    with old.open("rb") as fo, new.open("rb") as fn:
        header = fn.readline()
        if header != fo.readline():
            return False
        at = header.rstrip(b"\n").split(b",").index(b"metric")
        have: set[bytes] = set()
        for line in fo:
            have.add(line.split(b",", at + 1)[at])
        fo.seek(0)
        fo.readline()
        kept = (ln for ln in fn if ln.split(b",", at + 1)[at] in have)
        return all(a == b for a, b in zip_longest(fo, kept))


def _table(best: dict[str, dict[str, float]], rows: int, repeat: int) -> list[str]:
    out = [f"| code | wall s | CPU s | peak RSS MB |   ({rows:,} ranks, best of {repeat})"]
    out.append("|---|---:|---:|---:|")
    for name, b in best.items():
        out.append(f"| {name} | {b['wall']:.1f} | {b['cpu']:.1f} | {b['rss_mb']:.0f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pred", help="the predicted run folder")
    ap.add_argument("meas", nargs="?", help="the measured run folder (default: pred)")
    ap.add_argument(
        "--baseline",
        action="append",
        help=f"git revision of an old tree (repeatable; default {BASELINES[0][:7]})",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each figure is the best")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    meas = a.meas or a.pred
    load0 = os.getloadavg()
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        trees = {f"old ({rev[:7]})": _old_tree(rev, Path(tmp)) for rev in a.baseline or BASELINES}
        trees["this tree"] = ROOT
        outs = {name: Path(tmp) / f"out-{i}" for i, name in enumerate(trees)}
        for _ in range(a.repeat):
            for name, tree in trees.items():
                got = _measure(tree, a.pred, meas, outs[name])
                prev = best.get(name)
                best[name] = got if prev is None else {k: min(v, prev[k]) for k, v in got.items()}
        same = {
            f"{name} {f}": _same_rows(outs[name] / f, outs["this tree"] / f)
            for name in trees
            if name != "this tree"
            for f in ("cells.csv", "ranks.csv")
        }
        rows = sum(1 for _ in (outs["this tree"] / "ranks.csv").open()) - 1
    load1 = os.getloadavg()
    print("\n".join(_table(best, rows, a.repeat)))
    print("identical output: " + ", ".join(f"{f} {'yes' if s else 'NO'}" for f, s in same.items()))
    print(f"load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)")
    if a.json:
        a.json.write_text(json.dumps({"best": best, "identical": same, "load": [load0, load1]}))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
