"""The frontier figure of one design: annual loss against spurious failovers, every
evaluated point (with its 95 % interval), the Pareto frontier, the constraint and the
recommendation. The only module of `chaoslab.advise` that imports matplotlib."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from chaoslab.advise.advice import DesignAdvice
from chaoslab.advise.search import Limits

__all__ = ["frontier_figure"]


def frontier_figure(d: DesignAdvice, limits: Limits) -> Figure:
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    pts = d.evaluated
    xs = [e.annual.spurious for e in pts]
    ys = [e.annual.minutes for e in pts]
    err = [[y - e.annual.ci_minutes[0] for y, e in zip(ys, pts, strict=True)],
           [e.annual.ci_minutes[1] - y for y, e in zip(ys, pts, strict=True)]]  # fmt: skip
    ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, color="0.6", ecolor="0.8", lw=1,
                label="evaluated points (95 % CI)")  # fmt: skip
    fr = d.frontier
    ax.plot([e.annual.spurious for e in fr], [e.annual.minutes for e in fr], "-o",
            color="tab:blue", ms=5, label="Pareto frontier")  # fmt: skip
    b = d.best
    ax.plot([b.annual.spurious], [b.annual.minutes], "*", ms=16, color="tab:green",
            label=f"{'recommended' if d.feasible else 'closest'}: {b.point.text}")  # fmt: skip
    a = d.aggressive
    if a.point.index != b.point.index:
        ax.plot([a.annual.spurious], [a.annual.minutes], "X", ms=10, color="tab:red",
                label=f"most aggressive: {a.point.text}")  # fmt: skip
    if math.isfinite(limits.spurious):
        ax.axvline(limits.spurious, color="tab:red", ls="--", lw=1,
                   label=f"limit {limits.spurious:g} spurious/cluster-year")  # fmt: skip
    ax.set_xscale("symlog", linthresh=1.0)
    right = max([*xs, limits.spurious if math.isfinite(limits.spurious) else 0.0, 1.0])
    ax.set_xlim(0, right * 1.8)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("spurious failovers per cluster-year")
    ax.set_ylabel("expected unavailability, min/year")
    ax.set_title(f"{d.label}: annual loss vs spurious failovers", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig
