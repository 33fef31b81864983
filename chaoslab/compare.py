"""Predicted against measured: pure functions over two runs (or their trials).

For every measured design x fault x target and every metric (``recovery_s``,
``downtime_s``, ``lost_s``), latency metric (``slow_s``, ``p99_latency_s``: when both runs
have a value of it in that cell, as a drill from before latency probes has none) and
milestone (``at_*``) both runs have:

- **coverage**: the share of measured trials inside the predicted p5-p95 interval (a
  well-calibrated model covers about 90 % of them);
- **quantile rank** of each measured trial under the predicted distribution (mid-rank, so
  ties, zeros and ``inf`` = never recovered are handled the same way on both sides); a
  calibrated model gives ranks spread evenly over (0, 1);
- the two-sample **Kolmogorov-Smirnov statistic** sup |F_pred - F_meas| with its
  asymptotic 5 % critical value c(0.05) * sqrt((n + m) / (n m)), c = 1.358;
- per-milestone **errors**: measured median - predicted median (s), the mean absolute
  distance of measured trials to the predicted median (s), and the relative error.

Runs of different result-format versions, or whose designs differ (a measured design the
prediction does not have), are refused with a `CompareError` naming both runs.

A live Kubernetes run stores the prediction it was planned with (``prediction.parquet``);
`stored_prediction` turns it into a run, so ``compare`` needs no second folder then.

`comparison_table` is the one ``comparison.csv`` every drill (lab and Kubernetes) writes
beside its trials: per design x fault x metric the predicted p5/p50/p95 and range, the
measured range and median, and the share of measured trials inside the predicted band.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from chaoslab.errors import UserError
from chaoslab.outage import (
    PROBE_MILESTONES,
    OutageMetrics,
    milestone_column,
    probed_trial,
    service_recovered,
)
from chaoslab.results import (
    AVAILABILITY_COLUMNS,
    FORMAT_VERSION,
    METRIC_COLUMNS,
    READABLE_VERSIONS,
    ProberInfo,
    Run,
    atomic_write_chunks,
    atomic_write_text,
    inferred_sweep_columns,
)

__all__ = [
    "CELL_COLUMNS",
    "COMPARISON_COLUMNS",
    "KS_C05",
    "LATENCY_METRICS",
    "METRICS",
    "OUTAGE_METRICS",
    "CompareError",
    "Comparison",
    "as_probed",
    "comparable_cells",
    "compare",
    "compared_metrics",
    "comparison_table",
    "coverage",
    "csv_bytes",
    "csv_chunks",
    "ks_critical",
    "ks_statistic",
    "match_cells",
    "order_statistic",
    "quantile",
    "quantile_rank",
    "quantile_ranks",
    "stored_prediction",
    "sweep_columns",
]

#: per-trial metrics compared in every cell, before the latency metrics and milestones
OUTAGE_METRICS = ("recovery_s", "downtime_s", "lost_s")
#: per-trial latency metrics (`chaoslab.outage.latency_metrics`), compared like milestones:
#: only where both sides have a value (a lab or cluster drill may not have measured them)
LATENCY_METRICS = ("slow_s", "p99_latency_s")
#: per-trial metrics compared, before the milestones
METRICS = (*OUTAGE_METRICS, *LATENCY_METRICS)
#: Kolmogorov-Smirnov c(alpha) for alpha = 0.05 (two-sided, asymptotic)
KS_C05 = 1.358
CELL_COLUMNS = [
    "design",
    "fault",
    "target",
    "point",
    "metric",
    "n_predicted",
    "n_measured",
    "predicted_p5",
    "predicted_p50",
    "predicted_p95",
    "measured_median",
    "coverage",
    "ks",
    "ks_crit_05",
    "median_error_s",
    "mean_abs_error_s",
    "rel_error",
]
#: columns of comparison.csv (after the key columns, by default design and fault)
COMPARISON_VALUES = (
    "metric",
    "predicted_p5",
    "predicted_p50",
    "predicted_p95",
    "predicted_min",
    "predicted_max",
    "measured_min",
    "measured_median",
    "measured_max",
    "n",
    "inside",
    "tolerance_s",
    "note",
)
COMPARISON_COLUMNS = ("design", "fault", *COMPARISON_VALUES)
RANK_COLUMNS = ["design", "fault", "target", "point", "trial", "metric", "measured", "rank"]


class CompareError(UserError):
    """Two runs that cannot be compared (format version, designs, ambiguous cells)."""


# ----------------------------------------------------------------------------- statistics


def _clean(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[~np.isnan(a)]


def quantile_rank(predicted: Sequence[float] | np.ndarray, x: float) -> float:
    """Mid-rank of ``x`` under the predicted sample: (#below + #equal / 2) / n, in [0, 1].

    ``inf`` (never recovered) is a value like any other: a measured ``inf`` against a
    prediction that is ``inf`` in 30 % of the trials ranks 0.85.
    """
    p = np.sort(_clean(predicted))
    if p.size == 0 or math.isnan(x):
        return math.nan
    below = np.searchsorted(p, x, side="left")
    upto = np.searchsorted(p, x, side="right")
    return float((below + (upto - below) / 2) / p.size)


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)| (NaN dropped;
    ``inf`` sorts last, so unrecovered trials count)."""
    x, y = np.sort(_clean(a)), np.sort(_clean(b))
    if x.size == 0 or y.size == 0:
        return math.nan
    pts = np.concatenate([x, y])
    fx = np.searchsorted(x, pts, side="right") / x.size
    fy = np.searchsorted(y, pts, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def ks_critical(n: int, m: int, c: float = KS_C05) -> float:
    """Asymptotic critical value of the two-sample KS statistic (default alpha = 0.05)."""
    if n == 0 or m == 0:
        return math.nan
    return c * math.sqrt((n + m) / (n * m))


def quantile(x: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-quantile of the non-NaN values (NaN when there are none)."""
    a = _clean(x)
    if a.size == 0:
        return math.nan
    # no interpolation: keeps inf (never recovered) meaningful, as in results.summarize
    return float(np.quantile(a, q, method="inverted_cdf"))


def coverage(
    predicted: Sequence[float] | np.ndarray,
    measured: Sequence[float] | np.ndarray,
    lo: float = 0.05,
    hi: float = 0.95,
) -> float:
    """Share of measured values inside the predicted [p_lo, p_hi] interval."""
    p, m = _clean(predicted), _clean(measured)
    if p.size == 0 or m.size == 0:
        return math.nan
    a, b = quantile(p, lo), quantile(p, hi)
    return float(np.mean((m >= a) & (m <= b)))


def _diff(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if math.isinf(a) or math.isinf(b):
        return 0.0 if a == b else (math.inf if a > b else -math.inf)
    return a - b


# ----------------------------------------------------------------------------- matching


def _trials(r: Run | pd.DataFrame) -> pd.DataFrame:
    return r.trials if isinstance(r, Run) else r


def _meta(r: Run | pd.DataFrame) -> dict[str, Any]:
    return r.meta if isinstance(r, Run) else {}


def _name(r: Run | pd.DataFrame) -> str:
    return str(r.path) if isinstance(r, Run) else "trials"


def as_probed(
    trials: pd.DataFrame, prober: ProberInfo, horizon: float, seed: int = 0
) -> pd.DataFrame:
    """The predicted trials as ``prober`` would have measured them: each trial's a(t) is
    sampled by the prober and turned into metrics the way live probes are
    (`chaoslab.outage.probed_trial`). A dip shorter than the probe spacing is then seen
    as often as the prober really catches one; the probe milestones (``probe.*``) are the
    probe train's, as measured; the other milestones keep their exact times. Trials
    without a stored a(t) are returned as they are."""
    if trials.empty or "a_t" not in trials.columns:
        return trials
    rng = np.random.default_rng(seed)
    out = trials.copy()
    rows = [
        probed_trial(
            list(t),
            list(v),
            horizon,
            rate_hz=prober.rate_hz,
            probers=prober.probers,
            bin_s=prober.bin_s,
            rng=rng,
        )
        for t, v in zip(trials["a_t"], trials["a_v"], strict=True)
    ]
    for col in (f.name for f in fields(OutageMetrics)):
        if col in out.columns:
            out[col] = [getattr(m, col) for m, _ in rows]
    if "at_service_recovered" in out.columns:
        out["at_service_recovered"] = [service_recovered(m) for m, _ in rows]
    for name in PROBE_MILESTONES:
        out[milestone_column(name)] = [ms.get(name, math.nan) for _, ms in rows]
    return out


def probe_seed(meta: Mapping[str, Any], measured: pd.DataFrame) -> int:
    """The seed a drill drew its prober's phases on the model's a(t) with, for the fault
    of these measured trials: the fault's own seed where the run records one per fault
    (``fault_seeds``: a lab drill), else the run's seed (was 0 before it was recorded)."""
    per_fault = meta.get("fault_seeds") or {}
    fault = str(measured["fault"].iloc[0]) if "fault" in measured and len(measured) else ""
    return int(per_fault.get(fault, meta.get("seed") or 0))


def stored_prediction(run: Run) -> Run | None:
    """The prediction a live run stored beside its measurements, as a run (or None)."""
    p = Path(run.path) / "prediction.parquet"
    if not p.exists():
        return None
    df = pd.read_parquet(p)
    meta = {
        **{k: v for k, v in run.meta.items() if k not in ("mode", "target", "status")},
        "mode": "simulate",
        "target": "model",
        "status": "complete",
        "prediction_of": str(run.path),
    }
    if "design" not in df.columns and run.meta.get("design"):
        df.insert(0, "design", run.meta["design"])
    if "fault" not in df.columns and run.meta.get("fault"):
        df.insert(1, "fault", run.meta["fault"])
    if "target" not in df.columns:
        df.insert(2, "target", run.meta.get("fault_target", ""))
    return Run(Path(run.path) / "prediction.parquet", meta, df)


def check_compatible(predicted: Run | pd.DataFrame, measured: Run | pd.DataFrame) -> None:
    """Refuse runs of a format version this chaoslab does not read, or of different designs
    (CompareError). Versions 1 and 2 have the same trials table and compare."""
    for r in (predicted, measured):
        v = _meta(r).get("format_version", FORMAT_VERSION)
        if v not in READABLE_VERSIONS:
            raise CompareError(
                f"cannot compare: {_name(r)} has results format version {v}, this chaoslab "
                f"reads {', '.join(map(str, READABLE_VERSIONS))}"
            )
    p, m = _trials(predicted), _trials(measured)
    for name, df in ((_name(predicted), p), (_name(measured), m)):
        if df.empty or "design" not in df.columns:
            raise CompareError(f"cannot compare: {name} has no trials")
    missing = sorted(set(m["design"].unique()) - set(p["design"].unique()))
    if missing:
        raise CompareError(
            f"cannot compare: designs differ — {_name(measured)} measured "
            f"{', '.join(missing)}, {_name(predicted)} predicted "
            f"{', '.join(sorted(set(p['design'])))}"
        )


def sweep_columns(results: Run | pd.DataFrame) -> list[str]:
    """Swept parameter columns of a run (from meta, else inferred like `summarize`)."""
    return _sweep_cols(_trials(results), _meta(results))


def _sweep_cols(df: pd.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    if meta.get("sweep"):
        return [c for c in meta["sweep"] if c in df.columns]
    return inferred_sweep_columns(df)


def match_cells(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    select: Mapping[str, Any] | None = None,
) -> list[tuple[pd.DataFrame, pd.DataFrame, str]]:
    """Pairs (predicted trials, measured trials, label) per measured design x fault x target.

    The predicted cell has the same design and fault (a drill names its faults as the
    prediction does), the same target when the prediction has it, and one sweep point: pass
    ``select={"profile": "k8s-1.32"}`` when the prediction swept several.
    """
    return _match(predicted, measured, select).pairs


@dataclass
class _Matched:
    """`match_cells`' pairs, with each pair's row positions in the two frames they were
    taken from (``p``: the prediction after ``select``, ``m``: the measured trials)."""

    pairs: list[tuple[pd.DataFrame, pd.DataFrame, str]]
    rows: list[tuple[np.ndarray, np.ndarray]]
    p: pd.DataFrame
    m: pd.DataFrame


def _match(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    select: Mapping[str, Any] | None = None,
) -> _Matched:
    check_compatible(predicted, measured)
    p, m = _trials(predicted), _trials(measured)
    # a run written without a target column (older drills) names no target: ""
    p = p if "target" in p.columns else p.assign(target="")
    m = m if "target" in m.columns else m.assign(target="")
    sweep = _sweep_cols(p, _meta(predicted))
    for k, v in (select or {}).items():
        if k not in p.columns:
            raise CompareError(f"--select {k}: the prediction has no column {k!r}")
        col = p[k]
        p = p[(col == v) | (col.astype(str) == str(v))]
        if p.empty:
            raise CompareError(f"--select {k}={v}: no predicted trials have that value")
    msweep = [c for c in _sweep_cols(m, _meta(measured)) if c not in (select or {})]
    out = _Matched([], [], p, m)
    unmatched = []
    index = _PredictedIndex(p)
    for key, g, g_at in _groups(m, ["design", "fault", "target", *msweep]):
        design, fault, target = key[:3]
        point = dict(zip(msweep, key[3:], strict=True))
        cand, at = index.candidates(design, fault, point)
        if cand.empty:
            unmatched.append(f"{design} · {fault}")
            continue
        hit = cand["target"] == target
        if hit.any() and not hit.all():
            cand, at = cand[hit], at[hit.to_numpy()]
        elif cand["target"].nunique() > 1:
            raise CompareError(
                f"cannot compare {design} · {fault}: measured target {target!r}, predicted "
                f"targets {', '.join(sorted(map(str, set(cand['target']))))}"
            )
        for k in sweep:
            if k in cand.columns and cand[k].nunique() > 1:
                raise CompareError(
                    f"cannot compare {design} · {fault}: the prediction swept {k} over "
                    f"{', '.join(map(str, cand[k].unique()))}; pick one with --select {k}=VALUE"
                )
        label = f"{design} · {fault}"
        if point:
            label += " · " + ", ".join(f"{k}={v}" for k, v in point.items())
        out.pairs.append((cand, g, label))
        out.rows.append((at, g_at))
    if not out.pairs:
        raise CompareError(
            f"cannot compare: no measured cell ({'; '.join(unmatched)}) has a predicted "
            f"counterpart in {_name(predicted)}"
        )
    return out


def _groups(df: pd.DataFrame, keys: list[str]) -> list[tuple[Any, pd.DataFrame, np.ndarray]]:
    """``df.groupby(keys, sort=False, dropna=False)``'s groups in the same order, each a
    slice of ``df`` (no copy) where its rows are together, as a run stores a cell's, and
    its row positions."""
    found = df.groupby(keys, sort=False, dropna=False).indices
    out = []
    for key, rows in sorted(found.items(), key=lambda kv: kv[1][0]):
        at = np.asarray(rows, dtype=np.intp)
        whole = at[-1] - at[0] + 1 == at.size
        out.append((key, df.iloc[at[0] : at[-1] + 1] if whole else df.take(at), at))
    return out


class _PredictedIndex:
    """The predicted trials' row positions per design and per design x fault x sweep
    point, found once: a measured cell takes its rows instead of scanning the whole
    prediction. Every method returns the rows and their positions."""

    def __init__(self, p: pd.DataFrame) -> None:
        self.p = p
        self.by_design = p.groupby("design", sort=False).indices
        self.by_point: dict[tuple[str, ...], dict[Any, Any]] = {}

    def _take(self, positions: Any) -> tuple[pd.DataFrame, np.ndarray]:
        at = np.asarray(positions, dtype=np.intp)
        # a run stores a cell's trials together: then a slice, not a copy
        contiguous = at.size and at[-1] - at[0] + 1 == at.size
        return (self.p.iloc[at[0] : at[-1] + 1] if contiguous else self.p.take(at)), at

    def _at_point(
        self, found: tuple[pd.DataFrame, np.ndarray], point: Mapping[str, Any]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        rows, at = found
        # the same sweep point on both sides when the prediction swept the same key
        for k, v in point.items():
            if k in rows.columns:
                same = rows[k] == v
                rows, at = rows[same], at[same.to_numpy()]
        return rows, at

    def _cell(
        self, design: Any, fault: Any, point: Mapping[str, Any]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """`_at_point` of the design x fault rows, by one look-up of its values."""
        keys = tuple(k for k in point if k in self.p.columns)
        values = tuple(point[k] for k in keys)
        if any(pd.isna(v) for v in values):  # NaN equals nothing: filter, as it says
            return self._at_point(self._take([]), point)
        if keys not in self.by_point:
            groups = self.p.groupby(["design", "fault", *keys], sort=False, dropna=False)
            self.by_point[keys] = groups.indices
        return self._take(self.by_point[keys].get((design, fault, *values), []))

    def candidates(
        self, design: Any, fault: Any, point: Mapping[str, Any]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The predicted trials of this design and fault at this point (empty: none)."""
        cand, at = self._cell(design, fault, point)
        if not cand.empty:
            return cand, at
        # the same kind under another name (a drill's own label): only if unambiguous
        pd_, at = self._at_point(self._take(self.by_design.get(design, [])), point)
        same_kind = pd_["fault"].astype(str).str.split("/").str[0] == str(fault).split("/")[0]
        cand, at = pd_[same_kind], at[same_kind.to_numpy()]
        if cand["fault"].nunique() > 1:
            kind = str(fault).split("/")[0]
            raise CompareError(
                f"cannot compare {design} · {fault}: the prediction has several {kind} "
                f"faults ({', '.join(sorted(map(str, set(cand['fault']))))}); name the "
                "measured one like one of them"
            )
        return cand, at


def compared_metrics(predicted: pd.DataFrame, measured: pd.DataFrame) -> list[str]:
    """The outage metrics, then the latency metrics and milestones measured at least once
    and predicted at least once."""
    out = [c for c in OUTAGE_METRICS if c in predicted.columns and c in measured.columns]
    both = [c for c in _optional(measured.columns.tolist()) if c in predicted.columns]
    # one notna() over all milestone columns of each side, not one per column
    seen = np.logical_and(
        _columns(measured, both).notna().to_numpy().any(axis=0),
        _columns(predicted, both).notna().to_numpy().any(axis=0),
    )
    return out + [c for c, s in zip(both, seen, strict=True) if s]


def _optional(columns: Sequence[str]) -> list[str]:
    """The latency metrics, then the milestones, among ``columns``: those compared only
    where both sides have a value."""
    milestones = [c for c in columns if c.startswith("at_")]
    return [c for c in LATENCY_METRICS if c in columns] + milestones


def _columns(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``df[names]`` by position (a label lookup per call costs more than the values)."""
    pos = {c: i for i, c in enumerate(df.columns)}
    return df.iloc[:, [pos[c] for c in names]]


# ----------------------------------------------------------------------------- compare


def comparable_cells(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    select: Mapping[str, Any] | None = None,
) -> tuple[list[tuple[pd.DataFrame, pd.DataFrame, str]], list[str]]:
    """`match_cells`, with the prediction as the measured run's prober would have seen it
    when that run is a live run recording its prober (`as_probed`): what `compare` and the
    predicted-vs-measured figure both use, so they always agree. Returns the pairs and a note
    saying so."""
    matched, notes = _comparable(predicted, measured, select)
    return matched.pairs, notes


def _comparable(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    select: Mapping[str, Any] | None = None,
) -> tuple[_Matched, list[str]]:
    """`comparable_cells`, keeping the row positions of the pairs that are still the
    frames' rows (none when the prediction was seen through a prober: its values are
    new)."""
    matched = _match(predicted, measured, select)
    prober = ProberInfo.of(_meta(measured))
    horizon = _meta(predicted).get("horizon_s")
    if prober is None or not horizon:
        return matched, []
    # compare like with like: a dip shorter than the probe spacing counts as often as the
    # lab's prober catches one
    probed = [
        (as_probed(p, prober, float(horizon), probe_seed(_meta(measured), m)), m, lab)
        for p, m, lab in matched.pairs
    ]
    note = f"predicted metrics as the measured run's prober sees them ({prober.text()})"
    return _Matched(probed, [], matched.p, matched.m), [note]


@dataclass
class Comparison:
    """Result of `compare`: one row per cell x metric, one row per measured trial x metric.

    ``ranks`` names its cells and metrics with categorical columns: a run compared with
    itself has over a million rank rows and about a hundred distinct names."""

    cells: pd.DataFrame
    ranks: pd.DataFrame
    predicted: str = ""
    measured: str = ""
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Store cells.csv and ranks.csv (atomically) in ``out_dir``."""
        d = Path(out_dir)
        paths = [d / "cells.csv", d / "ranks.csv"]
        atomic_write_text(paths[0], self.cells.to_csv(index=False))
        atomic_write_chunks(paths[1], csv_chunks(self.ranks))
        return paths


def compare(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    *,
    select: Mapping[str, Any] | None = None,
) -> Comparison:
    """Coverage, quantile ranks, KS statistic and errors of measured vs predicted trials.

    Measured trials a drill marked aborted (``trial_info.csv`` or an ``aborted`` column)
    are left out, with a note saying how many."""
    predicted, measured = _needed_columns(predicted, measured)
    measured, notes = _without_aborted(measured)
    matched, probe_notes = _comparable(predicted, measured, select)
    pairs = matched.pairs
    notes += probe_notes
    m_all = _trials(measured)
    found = {(str(m["design"].iloc[0]), str(m["fault"].iloc[0])) for _, m, _ in pairs}
    # each measured design x fault once, in the run's order (the groups, without a frame
    # per group)
    cells = m_all[["design", "fault"]].dropna().drop_duplicates()
    for design, fault in cells.itertuples(index=False, name=None):
        if (str(design), str(fault)) not in found:
            notes.append(f"{design} · {fault}: no predicted counterpart, left out")
    rows: list[dict[str, Any]] = []
    ranks = _Ranks()
    values = _Values(matched)
    for i, (_, m, label) in enumerate(pairs):
        keys = {c: str(m[c].iloc[0]) for c in ("design", "fault", "target")}
        keys["point"] = label.split(" · ", 2)[2] if label.count(" · ") >= 2 else ""
        trial_ids = m["trial"].to_numpy() if "trial" in m else np.arange(len(m))
        names, pv, mv = values.of(i)
        for j, metric in enumerate(names):
            # one sort per cell x metric: every measured trial is ranked against it
            px = np.sort(_clean(pv[:, j]))
            stats, has, x, rank = _cell_stats(px, mv[:, j])
            rows.append({**keys, "metric": metric, **stats})
            ranks.add((*keys.values(), metric), trial_ids[has], x, rank)
    return Comparison(
        pd.DataFrame(rows, columns=CELL_COLUMNS),
        ranks.frame(),
        _name(predicted),
        _name(measured),
        notes,
    )


def _needed_columns(
    predicted: Run | pd.DataFrame, measured: Run | pd.DataFrame
) -> tuple[Run | pd.DataFrame, Run | pd.DataFrame]:
    """The runs with only the trial columns `compare` reads: not the metrics it does not
    compare, nor the a(t) lists unless the prediction is to be seen through the measured
    run's prober (`comparable_cells`). A run's a(t) lists are most of its memory."""
    unused = [c for c in METRIC_COLUMNS if c not in METRICS]
    probed = ProberInfo.of(_meta(measured)) is not None and _meta(predicted).get("horizon_s")
    out = []
    for r, keep_at in ((predicted, probed), (measured, False)):
        if isinstance(r, Run):
            drop = unused if keep_at else [*unused, *AVAILABILITY_COLUMNS]
            r = Run(r.path, r.meta, r.trials_without(drop))
        out.append(r)
    return out[0], out[1]


class _Values:
    """Each pair's `compared_metrics` and both cells' values of them (trials x metrics).

    The metric and milestone columns of a run lie together, all floats: one slice of each
    frame's columns, taken once, is a view of its values, and a pair's values are its rows
    of it. Pairs whose rows are not the frames' (a prediction seen through a prober), or
    frames without such a slice, are read from their own frames."""

    def __init__(self, matched: _Matched) -> None:
        self.matched = matched
        p_cols, m_cols = set(matched.p.columns.tolist()), matched.m.columns.tolist()
        self.metrics = [c for c in OUTAGE_METRICS if c in p_cols and c in m_cols]
        self.names = self.metrics + [c for c in _optional(m_cols) if c in p_cols]
        self.blocks = None
        if matched.rows:
            with contextlib.suppress(TypeError, ValueError):  # a column that is no number
                self.blocks = (_block(matched.p, self.names), _block(matched.m, self.names))

    def of(self, i: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        if self.blocks is None:
            return _cell_values(*self.matched.pairs[i][:2])
        (pb, ppos), (mb, mpos) = self.blocks
        prow, mrow = self.matched.rows[i]
        return _seen(self.names, len(self.metrics), _at(pb, prow)[:, ppos], _at(mb, mrow)[:, mpos])


def _block(df: pd.DataFrame, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The slice of ``df``'s columns from the first of ``names`` to the last as one float
    array (a view when they are one block of floats), and the names' positions in it."""
    where = {c: i for i, c in enumerate(df.columns.tolist())}
    pos = np.array([where[c] for c in names], dtype=np.intp)
    lo, hi = (int(pos.min()), int(pos.max()) + 1) if len(pos) else (0, 0)
    return df.iloc[:, lo:hi].to_numpy(dtype=float), pos - lo


def _at(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``block[rows]``, a view when the rows are together."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return block[rows[0] : rows[-1] + 1]
    return block[rows]


def _seen(
    names: list[str], k: int, pv: np.ndarray, mv: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The first ``k`` names (the outage metrics) and the others (latency metrics,
    milestones) seen at least once on each side, with their values."""
    seen = ~np.isnan(pv[:, k:]).all(axis=0) & ~np.isnan(mv[:, k:]).all(axis=0)
    keep = np.concatenate([np.ones(k, dtype=bool), seen])
    return [c for c, kept in zip(names, keep, strict=True) if kept], pv[:, keep], mv[:, keep]


def _cell_values(p: pd.DataFrame, m: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`compared_metrics` of a pair of cells and both cells' values of them (trials x
    metrics), each read from one slice of its frame's columns."""
    # the names as a list first: iterating pandas' text index goes value by value
    p_cols, m_cols = set(p.columns.tolist()), m.columns.tolist()
    metrics = [c for c in OUTAGE_METRICS if c in p_cols and c in m_cols]
    both = [c for c in _optional(m_cols) if c in p_cols]
    try:
        pv, mv = _values(p, [*metrics, *both]), _values(m, [*metrics, *both])
    except (TypeError, ValueError):  # a column that is no number: only those compared
        names = compared_metrics(p, m)
        return names, _values(p, names), _values(m, names)
    return _seen([*metrics, *both], len(metrics), pv, mv)


def _values(df: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``df[names].to_numpy(dtype=float)``, from one slice of ``df``'s columns when the
    names lie close together, as a run's metrics and milestones do: a column look-up or
    take per call costs more than the values."""
    where = {c: i for i, c in enumerate(df.columns.tolist())}
    pos = np.array([where[c] for c in names], dtype=np.intp)
    if not len(pos):
        return np.empty((len(df), 0))
    lo, hi = int(pos.min()), int(pos.max()) + 1
    if hi - lo < 2 * len(pos):
        with contextlib.suppress(TypeError, ValueError):  # a text column in between
            return df.iloc[:, lo:hi].to_numpy(dtype=float)[:, pos - lo]
    return df.iloc[:, pos].to_numpy(dtype=float)


def order_statistic(sorted_x: np.ndarray, q: float) -> float:
    """``np.quantile(x, q, method="inverted_cdf")`` of an already sorted, NaN-free ``x``
    (NaN when it is empty): numpy's index rule (the smallest value with at least n q
    values at or below it) in Python floats, the same IEEE operations, without numpy's
    partition of ``x``."""
    if not sorted_x.size:
        return math.nan
    index = sorted_x.size * q - 1
    lower = math.floor(index)
    return float(sorted_x[max(lower if index == lower else lower + 1, 0)])


def _cell_stats(
    px: np.ndarray, mx_full: np.ndarray
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """One cells.csv row's statistics, and the quantile ranks of the measured values:
    ``px`` the sorted predicted values (no NaN), ``mx_full`` the measured ones in trial
    order. Returns the row, which measured trials have a value, those values and their
    ranks. The same numbers as `quantile`, `coverage`, `ks_statistic` and
    `quantile_ranks` give, from one sort of the measured values: every search is of
    sorted keys."""
    has = ~np.isnan(mx_full)
    mx = mx_full[has]
    order = np.argsort(mx, kind="stable")
    ms = mx[order]
    n, m = px.size, mx.size
    p5, p50, p95 = (order_statistic(px, q) for q in (0.05, 0.5, 0.95))
    med = order_statistic(ms, 0.5)
    err = _diffs(mx, p50)
    abs_err = np.abs(err[~np.isnan(err)])
    median_error = _diff(med, p50)
    rel = (
        median_error / p50
        if p50 not in (0.0,) and math.isfinite(p50) and math.isfinite(median_error)
        else math.nan
    )
    rank = np.full(m, math.nan)
    ks = math.nan
    if n:
        below = np.searchsorted(px, ms, side="left")
        upto = np.searchsorted(px, ms, side="right")
        rank[order] = (below + (upto - below) / 2) / n
    if n and m:
        # sup |F_p - F_m| over both samples' values, as ks_statistic takes it
        at_m = np.abs(upto / n - np.searchsorted(ms, ms, side="right") / m)
        at_p = np.abs(
            np.searchsorted(px, px, side="right") / n - np.searchsorted(ms, px, side="right") / m
        )
        ks = float(max(at_m.max(), at_p.max()))
    row = {
        "n_predicted": int(n),
        "n_measured": int(m),
        "predicted_p5": p5,
        "predicted_p50": p50,
        "predicted_p95": p95,
        "measured_median": med,
        # a share of whole counts: the same number np.mean of the booleans gives
        "coverage": np.count_nonzero((mx >= p5) & (mx <= p95)) / m if n and m else math.nan,
        "ks": ks,
        "ks_crit_05": ks_critical(int(n), int(m)),
        "median_error_s": median_error,
        "mean_abs_error_s": float(np.mean(abs_err)) if abs_err.size else math.nan,
        "rel_error": rel,
    }
    return row, has, mx, rank


def _diffs(x: np.ndarray, b: float) -> np.ndarray:
    """`_diff` of each of ``x`` and ``b``: equal values (inf = inf too) differ by 0."""
    if math.isnan(b):
        return np.full(x.shape, math.nan)
    with np.errstate(invalid="ignore"):
        return np.where(x == b, 0.0, x - b)


def quantile_ranks(predicted_sorted: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`quantile_rank` of every value of ``x`` under an already sorted, NaN-free sample
    (one `np.searchsorted` per side instead of a sort per value); NaN where ``x`` is."""
    p = predicted_sorted
    if p.size == 0:
        return np.full(x.shape, math.nan)
    below = np.searchsorted(p, x, side="left")
    upto = np.searchsorted(p, x, side="right")
    return np.where(np.isnan(x), math.nan, (below + (upto - below) / 2) / p.size)


class _Ranks:
    """ranks.csv rows, gathered block by block (one block per cell x metric) and made
    into one frame at the end; the names are stored once per block, not once per row."""

    def __init__(self) -> None:
        self.names: list[tuple[str, ...]] = []
        self.sizes: list[int] = []
        self.values: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(
        self, names: tuple[str, ...], trials: np.ndarray, measured: np.ndarray, rank: np.ndarray
    ) -> None:
        if measured.size:
            self.names.append(names)
            self.sizes.append(int(measured.size))
            self.values.append((trials.astype(np.int64), measured, rank))

    def frame(self) -> pd.DataFrame:
        if not self.sizes:
            return pd.DataFrame([], columns=RANK_COLUMNS)
        # each row's block, and the names' codes as int32 (not int64: 4 MB a million rows)
        block = np.repeat(np.arange(len(self.sizes), dtype=np.int32), self.sizes)
        data: dict[str, Any] = {}
        for j, col in enumerate(("design", "fault", "target", "point", "metric")):
            codes, uniques = pd.factorize(pd.Series([n[j] for n in self.names], dtype=object))
            small = codes.astype(np.int32)
            data[col] = pd.Categorical.from_codes(small[block], categories=uniques.astype(str))
        for j, col in enumerate(("trial", "measured", "rank")):
            data[col] = np.concatenate([v[j] for v in self.values])
        self.values = []  # the columns hold them now
        return pd.DataFrame(data, columns=RANK_COLUMNS, copy=False)


def _csv_field(v: str) -> str:
    """``v`` as the csv module (and so ``DataFrame.to_csv``) writes it: quoted only when
    it must be."""
    buf = io.StringIO()
    # pandas' line terminator (it decides whether a newline is quoted); two fields, so an
    # empty string stays empty
    csv.writer(buf, lineterminator="\n").writerow([v, ""])
    return buf.getvalue()[:-2]


def _text(s: str) -> pa.Scalar:
    return pa.scalar(s, pa.large_string())


def _float_text(v: np.ndarray) -> pa.Array:
    """Each float64 as ``to_csv`` writes it (numpy's ``str``, which is Python's ``repr``:
    the shortest digits that read back as the same number, positional from 1e-4 up to
    1e16, with an exponent outside; NaN empty), formatted by Arrow in one call.

    Arrow writes the same shortest digits but an integral value without ".0" and with
    other exponent thresholds: the ".0" is added, and every value outside the range where
    the two agree (exponents, inf, NaN) is formatted by ``repr`` itself."""
    text = pc.cast(pa.array(v), pa.large_string())
    with np.errstate(invalid="ignore"):
        mag = np.abs(v)
        positional = ((mag >= 1e-4) & (mag < 1e16)) | (v == 0)
        positional &= ~pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
        integral = positional & (v == np.floor(v))
    if integral.any():
        dotted = pc.binary_join_element_wise(text, _text(".0"), _text(""))
        text = pc.if_else(pa.array(integral), dotted, text)
    if not positional.all():
        odd = v[~positional].tolist()
        fixed = pa.array(["" if math.isnan(x) else repr(x) for x in odd], pa.large_string())
        text = pc.replace_with_mask(text, pa.array(~positional), fixed)
    return text


def _names_text(names: Sequence[Any]) -> pa.Array:
    """Each name's CSV field, quoted where the csv module would quote it, then an empty
    one (for code -1: NaN)."""
    return pa.array([*(_csv_field(str(n)) for n in names), ""], pa.large_string())


def _coded_column(s: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """A column's CSV fields as ``to_csv`` writes them, as the text of each distinct value
    and each row's code into it (-1: the empty field). Numbers are written as numpy's
    ``astype(str)`` (what pandas calls), NaN empty, strings quoted where the csv module
    would; each distinct value is formatted once."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return _names_text(list(s.cat.categories)), s.cat.codes.to_numpy()
    values = s.to_numpy()
    if values.dtype.kind == "f":
        v = np.ascontiguousarray(values, dtype=np.float64)
        # distinct bit patterns, not values: -0.0 is written "-0.0", 0.0 "0.0"
        codes, bits = pd.factorize(v.view(np.int64))
        return _float_text(np.asarray(bits).view(np.float64)), codes
    if values.dtype.kind in "iu":
        codes, uniques = pd.factorize(values)
        return pc.cast(pa.array(uniques), pa.large_string()), codes
    codes, found = pd.factorize(s, use_na_sentinel=True)
    return _names_text(list(found)), codes


def _lines(columns: Sequence[tuple[pa.Array, np.ndarray]]) -> bytes:
    """The rows of coded columns (`_coded_column`), each ended by a newline, as one
    text: the last column's texts carry the newline, so a row is one join."""
    fields = []
    for j, (text, codes) in enumerate(columns):
        if j == len(columns) - 1:
            text = pc.binary_join_element_wise(text, _text("\n"), _text(""))
        # code -1 (NaN) takes the last text: names end with the empty one, and numbers
        # have no -1 (NaN is a value of theirs, written empty)
        at = np.where(codes < 0, len(text) - 1, codes)
        fields.append(text.take(pa.array(at, pa.int64())))
    lines = pc.binary_join_element_wise(*fields, _text(","))
    _, offsets, data = lines.buffers()
    at = np.frombuffer(offsets, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return bytes(memoryview(data)[at[0] : at[-1]])


def csv_chunks(df: pd.DataFrame, chunk: int = 100_000) -> Iterator[bytes]:
    """``df.to_csv(index=False)`` encoded, byte for byte, for frames of numbers, strings
    and categoricals, a chunk of rows at a time (for `atomic_write_chunks`): pandas' own
    writer formats every value in Python and goes through the csv module row by row (10 s
    for the 1.6 M ranks of the bundled run compared with itself); here Arrow formats the
    numbers and joins the rows, and each distinct string is formatted once."""
    if not len(df.columns):
        yield df.to_csv(index=False).encode()
        return
    yield (",".join(_csv_field(str(c)) for c in df.columns) + "\n").encode()
    for lo in range(0, len(df), chunk):
        part = df.iloc[lo : lo + chunk]
        yield _lines([_coded_column(part[c]) for c in part.columns])


def csv_bytes(df: pd.DataFrame, chunk: int = 100_000) -> bytes:
    """All of `csv_chunks` at once."""
    return b"".join(csv_chunks(df, chunk))


def _without_aborted(measured: Run | pd.DataFrame) -> tuple[Run | pd.DataFrame, list[str]]:
    """The measured run without the trials its drill marked aborted, and a note saying how
    many (none when nothing was aborted). A drill records the mark per trial in
    ``trial_info.csv`` (`chaoslab.live.engine`); a trials table may carry it itself."""
    df = _trials(measured)
    flags = _aborted_flags(measured, df)
    if flags is None or not flags.any():
        return measured, []
    kept = df[~flags]
    note = (
        f"{int(flags.sum())} of {len(df)} measured trial(s) aborted or interrupted, left out "
        "(trial_info.csv: aborted, abort_reason)"
    )
    if isinstance(measured, Run):
        return Run(measured.path, measured.meta, kept), [note]
    return kept, [note]


def _aborted_flags(measured: Run | pd.DataFrame, df: pd.DataFrame) -> np.ndarray | None:
    if "aborted" in df.columns:
        return df["aborted"].fillna(False).astype(bool).to_numpy()
    if not isinstance(measured, Run) or not (Path(measured.path) / "trial_info.csv").exists():
        return None
    info = pd.read_csv(Path(measured.path) / "trial_info.csv")
    keys = [k for k in ("design", "fault", "trial") if k in info.columns and k in df.columns]
    if "aborted" not in info.columns or "trial" not in keys:
        return None
    info = info[info["aborted"].fillna(False).astype(bool)]
    marked = set(info[keys].astype(str).itertuples(index=False, name=None))
    own = df[keys].astype(str).itertuples(index=False, name=None)
    return np.fromiter((k in marked for k in own), dtype=bool, count=len(df))


# ----------------------------------------------------------------------------- drill table


def _default_metrics(predicted: pd.DataFrame, measured: pd.DataFrame) -> list[str]:
    """The metrics measured, then the milestones measured and predicted at least once."""
    # a metric the prediction lacks still gets its row (with a note); a milestone does not
    out = [c for c in METRICS if c in measured.columns]
    return out + [c for c in compared_metrics(predicted, measured) if c.startswith("at_")]


def comparison_table(
    predicted: pd.DataFrame,
    measured: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    tolerance_s: float = 0.0,
    keys: Sequence[str] = ("design", "fault"),
    reasons: Mapping[tuple[Any, ...], str] | None = None,
) -> pd.DataFrame:
    """One row per measured ``keys`` cell x metric: the drills' ``comparison.csv``.

    ``predicted`` and ``measured`` are trials with the ``keys`` columns; a measured cell
    meets the predicted trials with the same keys. ``metrics`` defaults to recovery_s,
    downtime_s, lost_s and the milestones (``at_*``) measured and predicted at least once;
    a metric named explicitly but missing from (or never reached in) the prediction still
    gets its row, with a note saying so. ``reasons`` maps a cell's keys to why it has no
    prediction (the note of its rows).

    Quantiles use ``inverted_cdf`` as the run summaries do, so ``inf`` (never recovered)
    stays a value. NaN measured trials (no value: no probes, milestone not seen) are left
    out of n, the measured statistics and ``inside``, and counted in the note. ``inside``
    is the share of measured trials within [p5 - tolerance_s, p95 + tolerance_s]; the
    tolerance is the measurement's resolution (the probe bin: a measured recovery is the
    end of a bin), not a fudge factor. predicted_min/max give the model's full range: with
    5 trials, 1 - 0.9**5 = 41 % of drills put at least one faithful measurement outside
    p5-p95.
    """
    keys = list(keys)
    columns = [*keys, *COMPARISON_VALUES]
    missing = [k for k in keys if k not in measured.columns]
    if missing:
        raise CompareError(f"measured trials have no column {', '.join(map(repr, missing))}")
    if measured.empty:
        return pd.DataFrame([], columns=columns)
    names = list(metrics) if metrics is not None else _default_metrics(predicted, measured)
    cells: dict[tuple[Any, ...], pd.DataFrame] = {}
    if not predicted.empty and all(k in predicted.columns for k in keys):
        for key, g in predicted.groupby(keys, sort=False, dropna=False):
            cells[key if isinstance(key, tuple) else (key,)] = g
    rows: list[dict[str, Any]] = []
    for key, g in measured.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        pg = cells.get(key)
        for metric in names:
            if metric not in g.columns:
                continue  # nothing measured to compare
            full = g[metric].to_numpy(dtype=float)
            x = _clean(full)
            notes = []
            what = "milestone" if metric.startswith("at_") else "metric"
            if pg is None:
                notes.append((reasons or {}).get(key, "no prediction for this cell"))
                p = np.array([])
            elif metric not in pg.columns:
                notes.append(f"the model has no such {what}")
                p = np.array([])
            else:
                p = _clean(pg[metric].to_numpy(dtype=float))
                if p.size == 0:
                    notes.append(
                        "the model never reaches this milestone in this design x fault"
                        if what == "milestone"
                        else "the model has no value for this metric in this design x fault"
                    )
            if x.size < full.size:
                notes.append(
                    f"{full.size - x.size} of {full.size} measured trial(s) without a value, "
                    "left out"
                )
            lo, hi = quantile(p, 0.05), quantile(p, 0.95)
            inside = (
                float(np.mean((x >= lo - tolerance_s) & (x <= hi + tolerance_s)))
                if x.size and p.size
                else math.nan
            )
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "metric": metric,
                    "predicted_p5": lo,
                    "predicted_p50": quantile(p, 0.5),
                    "predicted_p95": hi,
                    "predicted_min": quantile(p, 0.0),
                    "predicted_max": quantile(p, 1.0),
                    "measured_min": quantile(x, 0.0),
                    "measured_median": quantile(x, 0.5),
                    "measured_max": quantile(x, 1.0),
                    "n": int(x.size),
                    "inside": inside,
                    "tolerance_s": float(tolerance_s),
                    "note": "; ".join(notes),
                }
            )
    return pd.DataFrame(rows, columns=columns)
