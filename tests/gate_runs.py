"""A one-cell experiment with ``expect:`` gates and its runs under other seeds, shared by
the tests of run's and compare's gates (tests/ is on sys.path: pytest's rootdir)."""

from __future__ import annotations

from pathlib import Path

from chaoslab.cli import main

_GATE = """\
title: {title}
profile: k8s-1.32
designs: [nodeport-lb-local]
faults:
  - {{kind: node-crash, target: app-pod-node}}
trials: {trials}
seed: 5
expect:
{expect}"""


def gate_text(title: str, trials: int, *expect: str) -> str:
    """nodeport-lb-local's node crash under k8s-1.32, ``expect:`` one line per check (the
    first check on line 9 of the file)."""
    lines = "".join(f"  - {e}\n" for e in expect)
    return _GATE.format(title=title, trials=trials, expect=lines)


def run_seeded(root: Path, exp: Path, seed: int) -> tuple[int, Path]:
    """``chaoslab run EXP --seed SEED`` into ROOT/res-SEED: its exit status and run folder."""
    out = root / f"res-{seed}"
    code = main(["run", str(exp), "--out", str(out), "-q", "--seed", str(seed)])
    (run_dir,) = out.glob("*/*")
    return code, run_dir
