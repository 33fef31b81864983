"""The answer per design: the recommendation, why the most aggressive setting lost (which
side effect priced it out), the Pareto frontier, and the rows of ``advice.csv``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from chaoslab.advise.cost import Annual
from chaoslab.advise.search import Evaluated, Limits, feasible, rank_key

__all__ = ["DesignAdvice", "advice_frame", "design_advice", "frontier", "points_frame"]


@dataclass(frozen=True)
class DesignAdvice:
    label: str
    best: Evaluated
    feasible: bool
    #: the setting that loses least to real failures (what "most aggressive wins" picks)
    aggressive: Evaluated
    #: why the aggressive setting is not the recommendation ("" when it is)
    priced_out: str
    frontier: tuple[Evaluated, ...]
    #: the points nearest to meeting the constraints, when none does
    closest: tuple[Evaluated, ...]
    evaluated: tuple[Evaluated, ...]


def frontier(points: Sequence[Evaluated]) -> list[Evaluated]:
    """Points no other beats on both annual loss and spurious failovers, by spurious."""
    out = []
    for e in points:
        a = e.annual
        dominated = any(
            o.annual.total_s <= a.total_s
            and o.annual.spurious <= a.spurious
            and (o.annual.total_s < a.total_s or o.annual.spurious < a.spurious)
            for o in points
        )
        if not dominated:
            out.append(e)
    return sorted(out, key=lambda e: (e.annual.spurious, e.annual.total_s))


def _why(best: Evaluated, agg: Evaluated, limits: Limits) -> str:
    if agg.point.index == best.point.index:
        return ""
    a, b = agg.annual, best.annual
    if a.spurious > limits.spurious:
        det = max(a.by_detector.items(), key=lambda kv: kv[1], default=("detectors", 0.0))
        noise = max(a.by_noise.items(), key=lambda kv: kv[1][0], default=("noise", (0.0, 0.0)))
        return (
            f"spurious failovers: [{agg.point.text}] fires {a.spurious:.3g}/cluster-year "
            f"(limit {limits.spurious:g}), mostly {det[0]} ({det[1]:.3g}/yr) under {noise[0]}"
        )
    if a.resets > limits.resets:
        return (
            f"connection resets: [{agg.point.text}] resets {a.resets:.3g}/cluster-year "
            f"(limit {limits.resets:g})"
        )
    extra = {k: v[1] - b.by_noise.get(k, (0.0, 0.0))[1] for k, v in a.by_noise.items()}
    name, more = max(extra.items(), key=lambda kv: kv[1], default=("noise", 0.0))
    return (
        f"side effects: [{agg.point.text}] saves {(b.real_s - a.real_s) / 60:.3g} min/yr on "
        f"real failures but loses {(a.side_s - b.side_s) / 60:.3g} min/yr more to noise, "
        f"mostly {name} (+{more / 60:.3g} min/yr)"
    )


def design_advice(label: str, points: Sequence[Evaluated], limits: Limits) -> DesignAdvice:
    """The recommendation among ``points`` (each at the most trials it got): the best
    feasible point among those evaluated at the most trials."""
    top = max(e.trials for e in points)
    final = [e for e in points if e.trials == top]
    best = min(final, key=lambda e: rank_key(e.annual, limits))
    ok = feasible(best.annual, limits)
    aggressive = min(points, key=lambda e: (e.annual.real_s, e.point.index))
    why = _why(best, aggressive, limits) if ok else ""
    closest: tuple[Evaluated, ...] = ()
    if not ok:
        closest = tuple(sorted(points, key=lambda e: rank_key(e.annual, limits))[:3])
    return DesignAdvice(
        label, best, ok, aggressive, why, tuple(frontier(points)), closest, tuple(points)
    )


def _row(label: str, e: Evaluated, role: str, limits: Limits) -> dict[str, object]:
    a: Annual = e.annual
    lo, hi = a.ci_minutes
    row: dict[str, object] = {
        "design": label,
        "role": role,
        "timers": e.point.text,
        "trials_per_cell": e.trials,
        "unavailability_min_per_year": a.minutes,
        "ci95_low_min": lo,
        "ci95_high_min": hi,
        "nines": a.nines,
        "real_failures_min": a.real_s / 60,
        "side_effects_min": a.side_s / 60,
        "spurious_per_year": a.spurious,
        "spurious_ci95_half": a.spurious_half,
        "resets_per_year": a.resets,
        "feasible": feasible(a, limits),
    }
    for k, v in e.point.timers.items():
        row[f"timer:{k}"] = v
    for name, (spur, cost) in a.by_noise.items():
        row[f"spurious:{name}"] = spur
        row[f"side_min:{name}"] = cost / 60
    for name, cost in a.by_fault.items():
        row[f"real_min:{name}"] = cost / 60
    return row


def advice_frame(advice: Sequence[DesignAdvice], limits: Limits) -> pd.DataFrame:
    """advice.csv: per design its recommendation, the most aggressive setting, and the
    frontier, one row each (a point can be more than one: roles joined by '+')."""
    rows = []
    for d in advice:
        roles: dict[int, list[str]] = {}
        roles.setdefault(d.best.point.index, []).append("recommended" if d.feasible else "closest")
        roles.setdefault(d.aggressive.point.index, []).append("most-aggressive")
        for e in d.frontier:
            roles.setdefault(e.point.index, []).append("frontier")
        by_index = {e.point.index: e for e in d.evaluated}
        for i, r in roles.items():
            rows.append(_row(d.label, by_index[i], "+".join(r), limits))
    return pd.DataFrame(rows)


def points_frame(advice: Sequence[DesignAdvice], limits: Limits) -> pd.DataFrame:
    """points.csv: every evaluated point with its estimate at the trials it got."""
    rows = [_row(d.label, e, "evaluated", limits) for d in advice for e in d.evaluated]
    return pd.DataFrame(rows)


def fmt_nines(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"
