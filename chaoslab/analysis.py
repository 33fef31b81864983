"""The numbers behind the figures and reports, without drawing.

What recovery waits for (`bottlenecks`), median milestone times (`phase_medians`),
one-at-a-time sensitivity (`sensitivity`, `sensitivity_spans`), the a(t) of every trial on
a time grid and its quantile bands (`availability_matrix`, `availability_bands`), the
cost of each fault per design (`cost_table`) and ECDFs. For tables people read: the
design a variant's label stands for (`base_design`), numbers rounded to significant
figures (`readable`), cells with too few trials to read (`small_samples`), designs ranked
with their connection resets counted (`rank_designs`), and the advisor's answer from its
``advice.csv`` and trials (`advice_answer`, `answer_moves`, `recommended_trials`).
`chaoslab.plots` draws these; a notebook or a script can use them without matplotlib (this
module never imports it).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from chaoslab.errors import UserError
from chaoslab.mechanisms.base import MILESTONES, milestone_column
from chaoslab.params import lookup, parse_duration
from chaoslab.results import Run

__all__ = [
    "KEY",
    "MIN_TRIALS_TO_READ",
    "NothingToShow",
    "advice_answer",
    "answer_moves",
    "at_point",
    "availability_bands",
    "availability_matrix",
    "base_design",
    "bottlenecks",
    "cell_stat",
    "cost_table",
    "designs_not_run",
    "ecdf",
    "fault_cells",
    "horizon_of",
    "milestone_columns",
    "milestone_name",
    "phase_medians",
    "rank_designs",
    "readable",
    "recommended_trials",
    "recovery_medians",
    "sample_warning",
    "sensitivity",
    "sensitivity_spans",
    "small_samples",
    "sweep_points",
    "time_grid",
    "trials_of",
]

#: the columns that name a cell of trials
KEY = ("design", "fault", "target")


class NothingToShow(UserError):
    """A run lacks the data a figure or table needs (no trials, no sweep, no a(t))."""


# ----------------------------------------------------------------------------- selection


def trials_of(results: Run | pd.DataFrame) -> pd.DataFrame:
    """The trials table of a run (or the table itself)."""
    return results.trials if isinstance(results, Run) else results


def horizon_of(results: Run | pd.DataFrame, default: float | None = None) -> float:
    """The run's horizon (s): meta, else the lab's observation window, else ``default``,
    else 1.25 x the latest recovery or a(t) change in the data."""
    if isinstance(results, Run):
        m = results.meta
        if m.get("horizon_s") is not None:
            return float(m["horizon_s"])
        obs = (m.get("lab") or {}).get("trial", {}).get("observe")
        if obs is not None:
            return float(obs)
    if default is not None:
        return default
    df = trials_of(results)
    rec = df["recovery_s"] if "recovery_s" in df else pd.Series(dtype=float)
    finite = pd.to_numeric(rec, errors="coerce").to_numpy(dtype=float)
    last = [float(t[-1]) for t in df["a_t"] if len(t)] if "a_t" in df else []
    top = max([*finite[np.isfinite(finite)].tolist(), *last, 1.0])
    return float(top) * 1.25


def fault_cells(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(fault, target) pairs in order of appearance."""
    return list(df[["fault", "target"]].drop_duplicates().itertuples(index=False, name=None))


def sweep_points(df: pd.DataFrame, sweep: Sequence[str]) -> list[tuple[Any, ...]]:
    """The sweep points present, in order of appearance (``[()]`` without a sweep)."""
    if not sweep:
        return [()]
    return list(df[list(sweep)].drop_duplicates().itertuples(index=False, name=None))


def at_point(df: pd.DataFrame, sweep: Sequence[str], point: tuple[Any, ...]) -> pd.DataFrame:
    """The trials at one sweep point."""
    if not sweep:
        return df
    mask = np.ones(len(df), dtype=bool)
    for k, v in zip(sweep, point, strict=True):
        mask &= (df[k] == v).to_numpy()
    return df[mask]


# ----------------------------------------------------------------------------- distributions


def ecdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their ECDF heights i/n."""
    x = np.sort(x)
    y = np.arange(1, x.size + 1) / x.size
    return x, y


def cell_stat(x: pd.Series, stat: str) -> float:
    """mean, median/p50, p5, p95 or p99 of the non-NaN values (quantiles as observed
    values, ``inverted_cdf``); NaN when there are none."""
    v = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan
    if stat == "mean":
        return float(np.mean(v))
    q = {"median": 0.5, "p50": 0.5, "p95": 0.95, "p5": 0.05, "p99": 0.99}[stat]
    return float(np.quantile(v, q, method="inverted_cdf"))


def cost_table(
    trials: pd.DataFrame, metric: str, stat: str = "mean", sweep: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean (``stat="mean"``) or median of ``metric`` per design (x sweep point) row and
    (fault, target) column, both in order of appearance; NaN where a cell was not run."""
    cells = fault_cells(trials)
    rows = list(trials[["design", *sweep]].drop_duplicates().itertuples(index=False, name=None))
    mat = np.full((len(rows), len(cells)), np.nan)
    for i, rk in enumerate(rows):
        sub = at_point(trials[trials["design"] == rk[0]], sweep, rk[1:])
        for j, (fault, target) in enumerate(cells):
            cell = sub[(sub["fault"] == fault) & (sub["target"] == target)][metric]
            x = pd.to_numeric(cell, errors="coerce").to_numpy(dtype=float)
            if x.size:
                mat[i, j] = float(np.mean(x) if stat == "mean" else np.median(x))
    return pd.DataFrame(
        mat,
        index=pd.MultiIndex.from_tuples(rows, names=["design", *sweep]),
        columns=pd.MultiIndex.from_tuples(cells, names=["fault", "target"]),
    )


# ----------------------------------------------------------------------------- a(t)


def time_grid(
    horizon: float, left: float = -0.5, n: int = 400, linear_to: float = 1.0
) -> np.ndarray:
    """Times (s) for sampling a(t): linear from ``left`` to ``linear_to``, geometric to
    the horizon (where a symlog time axis puts its resolution)."""
    lin = np.linspace(left, linear_to, 60)
    geo = np.geomspace(linear_to, max(horizon, linear_to * 1.01), n)
    return np.unique(np.concatenate([lin, geo]))


def availability_matrix(trials: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """a(t) of every trial on ``grid`` (rows: trials). a = 1 before the fault (t < 0)."""
    out = np.ones((len(trials), grid.size))
    for i, (ts, vs) in enumerate(zip(trials["a_t"], trials["a_v"], strict=True)):
        ts = np.asarray(ts, dtype=float)
        vs = np.asarray(vs, dtype=float)
        if ts.size == 0:
            continue
        idx = np.searchsorted(ts, grid, side="right") - 1
        out[i] = np.where(idx >= 0, vs[np.maximum(idx, 0)], 1.0)
    return out


def availability_bands(
    trials: pd.DataFrame, grid: np.ndarray, band: tuple[float, float] = (0.05, 0.95)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, median, high) of a(t) across trials at each grid time: the band's quantiles."""
    m = availability_matrix(trials, grid)
    lo, med, hi = np.quantile(m, [band[0], 0.5, band[1]], axis=0)
    return lo, med, hi


# ----------------------------------------------------------------------------- milestones


def milestone_columns(df: pd.DataFrame) -> list[str]:
    """The ``at_<milestone>`` columns with at least one value."""
    return [c for c in df.columns if c.startswith("at_") and df[c].notna().any()]


def milestone_name(col: str) -> str:
    """``at_node_not_ready`` -> ``node.not_ready`` (the registry's name when it has one)."""
    for k in MILESTONES:
        if milestone_column(k) == col:
            return k
    return col[3:].replace("_", ".", 1)


def phase_medians(trials: pd.DataFrame, sweep: Sequence[str] = ()) -> pd.DataFrame:
    """Median time (s) of each milestone per design x fault x target x sweep point, and
    the share of trials in which it happened; groups in order of appearance, milestones
    in column order. One grouped median over every milestone column at once (a loop per
    group and column cost more than drawing the phase figures of the bundled run)."""
    keys = [*KEY, *sweep]
    out_cols = [*keys, "milestone", "median_s", "share"]
    cols = milestone_columns(trials)
    if trials.empty or not cols:
        return pd.DataFrame(columns=out_cols)
    x = trials[cols].to_numpy(dtype=float)
    x = np.where(np.isfinite(x), x, np.nan)  # a milestone at inf did not happen in time
    grouped = pd.concat(
        [trials[keys].reset_index(drop=True), pd.DataFrame(x, columns=cols)], axis=1
    ).groupby(keys, sort=False, dropna=False)
    med, seen = grouped.median(), grouped.count()
    size = grouped.size().to_numpy()
    gi, ci = np.nonzero(seen.to_numpy() > 0)  # row-major: group by group, column order
    out = med.index.to_frame(index=False).iloc[gi].reset_index(drop=True)
    names = np.array([milestone_name(c) for c in cols], dtype=object)
    out["milestone"] = names[ci]
    out["median_s"] = med.to_numpy()[gi, ci]
    out["share"] = seen.to_numpy()[gi, ci] / size[gi]
    return out[out_cols]


def recovery_medians(trials: pd.DataFrame, keys: Sequence[str]) -> dict[tuple[Any, ...], float]:
    """Median ``recovery_s`` per group of ``keys`` (an observed value; inf if most never
    recovered)."""
    out = {}
    for k, g in trials.groupby(list(keys), sort=False, dropna=False)["recovery_s"]:
        key = k if isinstance(k, tuple) else (k,)
        out[key] = float(np.quantile(g.to_numpy(dtype=float), 0.5, method="inverted_cdf"))
    return out


def bottlenecks(trials: pd.DataFrame, keys: Sequence[str] = KEY, tol: float = 1e-3) -> pd.DataFrame:
    """What recovery waits for, per group of ``keys``: in each recovered trial, the last
    milestone at or before ``recovery_s`` (within ``tol`` s); the most frequent one is the
    group's bottleneck, with the share of trials it was last in and its median time (s)."""
    cols = [c for c in milestone_columns(trials) if c != "at_service_recovered"]
    rows = []
    for key, g in trials.groupby(list(keys), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), **_waits_for(g, cols, tol)})
    return pd.DataFrame(rows, columns=[*keys, "waits_for", "share", "at_s"])


def _waits_for(g: pd.DataFrame, cols: list[str], tol: float) -> dict[str, Any]:
    rec = g["recovery_s"].to_numpy(dtype=float)
    ok = np.isfinite(rec) & (rec > 0)
    if not cols or not ok.any():
        why = "(no outage)" if not (~np.isfinite(rec)).any() else "(never recovers)"
        return {"waits_for": why, "share": math.nan, "at_s": math.nan}
    m = g[cols].to_numpy(dtype=float)[ok]
    m = np.where(np.isfinite(m) & (m <= rec[ok][:, None] + tol), m, -np.inf)
    has = np.isfinite(m.max(axis=1))
    if not has.any():
        return {"waits_for": "(no milestone before recovery)", "share": math.nan, "at_s": math.nan}
    last = m[has].argmax(axis=1)
    counts = np.bincount(last, minlength=len(cols))
    top = int(counts.argmax())
    return {
        "waits_for": milestone_name(cols[top]),
        "share": float(counts[top] / ok.sum()),
        "at_s": float(np.median(m[has][last == top, top])),
    }


# ----------------------------------------------------------------------------- sensitivity


def sensitivity(
    trials: pd.DataFrame,
    sweep: Sequence[str],
    *,
    metric: str = "recovery_s",
    stat: str = "median",
    baseline: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One-at-a-time sensitivity: for each swept key, the metric's statistic at each of its
    values while the other swept keys stay at their baseline (default: each key's middle
    value). Returns key, value, stat; plus the baseline statistic as key ``(baseline)``."""
    base: dict[str, Any] = {}
    for k in sweep:
        vals = list(trials[k].drop_duplicates())
        with contextlib.suppress(TypeError):
            vals = sorted(vals)
        base[k] = (baseline or {}).get(k, vals[(len(vals) - 1) // 2])
    rows: list[dict[str, Any]] = []
    at_base = trials
    for k in sweep:
        at_base = at_base[at_base[k] == base[k]]
    rows.append({"key": "(baseline)", "value": None, "stat": cell_stat(at_base[metric], stat)})
    for k in sweep:
        sub = trials
        for other in sweep:
            if other != k:
                sub = sub[sub[other] == base[other]]
        for v, g in sub.groupby(k, sort=True):
            rows.append({"key": k, "value": v, "stat": cell_stat(g[metric], stat)})
    return pd.DataFrame(rows, columns=["key", "value", "stat"])


SPAN_COLUMNS = [*KEY, "key", "low", "low_value", "high", "high_value", "baseline", "rel_span"]


def sensitivity_spans(
    trials: pd.DataFrame,
    sweep: Sequence[str],
    *,
    metric: str = "recovery_s",
    stat: str = "median",
    baseline: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Per design x fault cell and swept key: the lowest and highest statistic over the
    key's values (and those values), the baseline statistic and the span relative to it,
    sorted by ``rel_span`` ascending. Keys whose lowest statistic is inf (never recovered
    at any value) are left out: there is nothing to rank."""
    rows = []
    for cell, g in trials.groupby(list(KEY), sort=False):
        s = sensitivity(g, sweep, metric=metric, stat=stat, baseline=baseline)
        base_v = float(s.loc[s["key"] == "(baseline)", "stat"].iloc[0])
        for k in sweep:
            r = s[s["key"] == k].dropna(subset=["stat"])
            if r.empty:
                continue
            stats = r["stat"].to_numpy(dtype=float)
            lo_r, hi_r = r.iloc[int(np.argmin(stats))], r.iloc[int(np.argmax(stats))]
            lo, hi = float(lo_r["stat"]), float(hi_r["stat"])
            if math.isinf(lo):
                continue
            ref = abs(base_v) if np.isfinite(base_v) else abs(lo)
            rel = (hi - lo) / max(ref, 1e-9)
            rows.append((*cell, k, lo, lo_r["value"], hi, hi_r["value"], base_v, rel))
    out = pd.DataFrame(rows, columns=SPAN_COLUMNS)
    return out.sort_values("rel_span", kind="stable", ignore_index=True)


# ----------------------------------------------------------------------------- for reading

#: a cell with fewer trials than this: its p95 is one of its two largest values, its
#: median moves by a trial's worth (issue 16, item 12: warn where n < 10)
MIN_TRIALS_TO_READ = 10

#: what may follow a registered design's name in a variant's label (``design[profile]``,
#: ``ingress-vip-bgp+bfd``, ``ingress-vip-pod-no-garp``)
_LABEL_TAIL = re.compile(r"[\[+\-_ .(:/@]")


def _registry(registry: Iterable[str] | None) -> list[str]:
    if registry is None:
        from chaoslab.designs import DESIGNS

        return list(DESIGNS)
    return list(registry)


def base_design(label: str, registry: Iterable[str] | None = None) -> str | None:
    """The registered design a design label stands for: the label itself, the design of
    a default variant label ``metallb-bgp[metallb-native]`` (``design[profile,k=v]``), or
    the longest registered name the label starts with, followed by a separator
    (``ingress-vip-bgp+bfd``, ``ingress-vip-pod-no-garp``). None for a label of its own."""
    names = _registry(registry)
    if label in names:
        return label
    fits = [n for n in names if label.startswith(n) and _LABEL_TAIL.match(label, len(n))]
    return max(fits, key=len) if fits else None


def designs_not_run(labels: Iterable[str], registry: Iterable[str] | None = None) -> list[str]:
    """Registered designs that no label of a run stands for, in registry order."""
    names = _registry(registry)
    ran = {base_design(label, names) for label in labels}
    return [n for n in names if n not in ran]


def _significant(x: float, digits: int) -> float:
    if not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def readable(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A copy with every float column rounded to ``digits`` significant figures (inf and
    NaN kept): 47.83125 -> 47.8, 0.0046512 -> 0.00465."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [_significant(float(v), digits) for v in out[col]]
    return out


def small_samples(
    trials: pd.DataFrame, keys: Sequence[str] = KEY, min_n: int = MIN_TRIALS_TO_READ
) -> pd.DataFrame:
    """The groups of ``keys`` with fewer than ``min_n`` trials, and their ``n``."""
    n = trials.groupby(list(keys), sort=False, dropna=False).size().rename("n").reset_index()
    return n[n["n"] < min_n].reset_index(drop=True)


def sample_warning(
    trials: pd.DataFrame, keys: Sequence[str] = KEY, min_n: int = MIN_TRIALS_TO_READ
) -> str:
    """One line naming the cells with fewer than ``min_n`` trials ("" when there are none)."""
    few = small_samples(trials, keys, min_n)
    if few.empty:
        return ""
    cells = [
        " / ".join(str(v) for v in r[:-1]) + f" (n={r[-1]})" for r in few.itertuples(index=False)
    ]
    more = f", and {len(cells) - 5} more" if len(cells) > 5 else ""
    return (
        f"WARNING: fewer than {min_n} trials in {len(cells)} cell(s): {', '.join(cells[:5])}"
        f"{more}; their percentiles are single trials, not estimates"
    )


def rank_designs(
    rows: pd.DataFrame,
    *,
    lost: str = "lost",
    resets: str = "resets",
    first: str | None = "recovered",
    digits: int = 1,
) -> pd.DataFrame:
    """Rows ranked with the connections they reset counted: by ``first`` (larger first:
    the share of trials that recovered, or whether a setting meets the constraints), then
    by ``lost`` to ``digits`` significant figures, then by ``resets``, then by ``lost``
    exactly. Designs that lose about as much (2.98 s and 3.4 s, both 3 s: a small run's
    noise) are told apart by what they reset; one that loses ten times less still ranks
    first. Adds ``rank`` (1 = best)."""
    keys = pd.DataFrame(
        {
            "first": -rows[first].astype(float) if first is not None else 0.0,
            "band": [_significant(float(v), digits) for v in rows[lost]],
            "resets": rows[resets].astype(float),
            "lost": rows[lost].astype(float),
        },
        index=rows.index,
    )
    order = keys.sort_values(["first", "band", "resets", "lost"], kind="stable").index
    out = rows.loc[order].reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


# ----------------------------------------------------------------------------- the advisor

#: advice.csv's columns -> their names in the answer table (minutes per year, counts per year)
_ANSWER = {
    "design": "design",
    "timers": "recommended timers",
    "unavailability_min_per_year": "min/yr",
    "ci95_low_min": "ci95 low",
    "ci95_high_min": "ci95 high",
    "nines": "nines",
    "real_failures_min": "real failures",
    "side_effects_min": "side effects",
    "spurious_per_year": "spurious/yr",
    "spurious_ci95_half": "spurious ±",
    "resets_per_year": "resets/yr",
    "trials_per_cell": "trials/cell",
    "feasible": "meets constraints",
}


def _recommended(advice: pd.DataFrame) -> pd.DataFrame:
    """advice.csv's row per design that the advisor answers with: its recommendation, or
    the closest setting when none meets the constraints."""
    roles = advice["role"].astype(str).str.split("+")
    return advice[roles.map(lambda r: "recommended" in r or "closest" in r)]


def advice_answer(advice: pd.DataFrame) -> pd.DataFrame:
    """The advisor's answer per design from its ``advice.csv``: recommended timers, the
    expected annual unavailability (minutes) with its 95 % interval and nines, split into
    real failures and side effects, spurious failovers and resets per cluster-year, trials
    per cell. Designs that meet the constraints first, each group by unavailability."""
    rec = _recommended(advice)
    out = rec[list(_ANSWER)].rename(columns=_ANSWER)
    out = out.sort_values(["meets constraints", "min/yr"], ascending=[False, True])
    return out.reset_index(drop=True)


def answer_moves(answers: Mapping[str, pd.DataFrame], reference: str | None = None) -> pd.DataFrame:
    """How the answer moves between runs of the advisor (``answers``: a name such as
    ``"noise x10"`` -> that run's ``advice.csv``): per design and run, the recommended
    timers, min/yr with its interval, spurious failovers per year, whether they meet the
    constraints, and ``moved`` — the timers differ from those of the ``reference`` run
    (default: the first)."""
    frames = [advice_answer(a).assign(run=name) for name, a in answers.items()]
    if not frames:
        raise NothingToShow("no advisor runs to compare")
    ref = reference if reference is not None else next(iter(answers))
    both = pd.concat(frames, ignore_index=True)
    at_ref = both[both["run"] == ref].set_index("design")["recommended timers"]
    both["moved"] = [
        d in at_ref.index and t != at_ref[d]
        for d, t in zip(both["design"], both["recommended timers"], strict=True)
    ]
    runs = list(answers)
    both["order"] = both["run"].map(runs.index)
    designs = list(dict.fromkeys(both.loc[both["run"] == ref, "design"]))
    designs += [d for d in both["design"].unique() if d not in designs]
    both["design_order"] = both["design"].map(designs.index)
    both = both.sort_values(["design_order", "order"]).drop(columns=["order", "design_order"])
    cols = ["design", "run", "recommended timers", "min/yr", "ci95 low", "ci95 high",
            "spurious/yr", "meets constraints", "moved"]  # fmt: skip
    return both[cols].reset_index(drop=True)


def _at_timer(trials: pd.DataFrame, key: str, raw: Any) -> pd.DataFrame:
    """The trials whose timer column ``key`` holds ``raw`` as advice.csv writes it
    (``240s``, ``3.0``); durations compared in seconds."""
    col = trials[key]
    if not pd.api.types.is_numeric_dtype(col):
        return trials[col.astype(str) == str(raw)]
    want = parse_duration(str(raw)) if lookup(key).kind == "duration" else float(raw)
    return trials[np.isclose(col.to_numpy(dtype=float), want)]


def recommended_trials(trials: pd.DataFrame, advice: pd.DataFrame) -> pd.DataFrame:
    """An advisor run's trials (its ``trials.parquet``) at each design's answer in its
    ``advice.csv`` — the recommended setting, or the closest one when none meets the
    constraints — every real fault and noise cell of it."""
    timers = [c for c in advice.columns if c.startswith("timer:")]
    out = []
    for _, row in _recommended(advice).iterrows():
        sub = trials[trials["design"] == row["design"]]
        for col in timers:
            if pd.notna(row[col]):
                sub = _at_timer(sub, col.removeprefix("timer:"), row[col])
        out.append(sub)
    return pd.concat(out, ignore_index=True) if out else trials.iloc[:0]
