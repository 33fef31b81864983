"""A run's summary for people and for tools: the terminal table (one row per cell, or a
design x fault pivot of one metric), Markdown, CSV and JSON, with the filters of
``chaoslab show``.

Seconds are shown as seconds (3 significant digits, ``never`` when not recovered within
the horizon), shares as percentages; CSV and JSON keep the full values.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from chaoslab.cli.tables import Col, Heading, Row, fold, render
from chaoslab.errors import UserError
from chaoslab.textfmt import format_value

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS",
    "METRICS",
    "Filters",
    "Summary",
    "pivot_text",
    "read_summary",
    "select",
    "summary_text",
    "to_format",
]

FORMATS = ("table", "csv", "md", "json")


@dataclass(frozen=True)
class Metric:
    column: str
    short: str
    kind: str  # "s" (seconds), "share" or "count"
    means: str


METRICS = (
    Metric("trials", "n", "count", "trials"),
    Metric("recovered", "rec", "share", "trials recovered"),
    Metric("recovery_p50", "p50", "s", "median recovery"),
    Metric("recovery_p95", "p95", "s", "95th percentile recovery"),
    Metric("recovery_max", "max", "s", "longest recovery"),
    Metric("downtime_mean", "down", "s", "mean total outage (a = 0)"),
    Metric("lost_mean", "lost", "s", "mean ∫(1 − a) dt, the error-budget cost"),
    Metric("connections_reset_mean", "reset", "share", "long-lived connections reset"),
    Metric("connections_hung_mean", "hung", "share", "long-lived connections left hanging"),
)
# further summary columns, reachable by --pivot and kept in csv/json
_MORE = (
    Metric("recovery_p99", "p99", "s", "99th percentile recovery"),
    Metric("downtime_p95", "down_p95", "s", "95th percentile total outage"),
    Metric("degraded_mean", "degraded", "s", "mean time with 0 < a < 1"),
    Metric("lost_p95", "lost_p95", "s", "95th percentile ∫(1 − a) dt"),
    Metric("slow_mean", "slow", "s", "mean ∫ share slower than client.slow_threshold dt"),
    Metric("slow_p95", "slow_p95", "s", "95th percentile of the slow seconds"),
    Metric("p99_latency_p50", "p99lat", "s", "median of the trials' p99 request latency"),
    Metric("p99_latency_p95", "p99lat_p95", "s", "95th percentile of the trials' p99 latency"),
)
_BY_NAME = {m.column: m for m in (*METRICS, *_MORE)} | {m.short: m for m in (*METRICS, *_MORE)}
_METRIC_PREFIXES = (
    "recovery_",
    "downtime_",
    "lost_",
    "degraded_",
    "connections_",
    "slow_",
    "p99_latency_",
)


def key_columns(df: pd.DataFrame | Summary) -> list[str]:
    """The columns that name a cell: design, fault, target, profile, swept parameters."""
    return [
        c
        for c in df.columns
        if c not in ("trials", "recovered") and not str(c).startswith(_METRIC_PREFIXES)
    ]


@dataclass(frozen=True)
class Summary:
    """A run's summary as plain rows: what the terminal table is made from, read from
    summary.csv without pandas (whose import alone was half of ``show``'s second)."""

    columns: list[str]
    rows: list[dict[str, object]]

    @classmethod
    def of_frame(cls, df: pd.DataFrame) -> Summary:
        columns = [str(c) for c in df.columns]
        return cls(columns, [dict(zip(columns, r, strict=True)) for r in df.itertuples(False)])

    def column(self, name: str) -> list[object]:
        return [r[name] for r in self.rows]


def read_summary(path: Path) -> Summary:
    """summary.csv with the values pandas' read_csv gives (a column of integers is ints, of
    numbers floats with NaN for a blank, of True/False bools, else text with NaN for its
    missing values), so the table is the same byte for byte."""
    try:
        with path.open(newline="") as f:
            header, *lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    if any(len(line) != len(header) for line in lines):
        raise UserError(f"{path}: not a summary (rows of other lengths than its header)")
    columns = [_typed(list(texts)) for texts in zip(*lines, strict=True)] or [[]] * len(header)
    return Summary(header, [dict(zip(header, r, strict=True)) for r in zip(*columns, strict=True)])


# pandas.read_csv's default missing values (pandas._libs.parsers.STR_NA_VALUES, 3.1)
_NA = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.I)
_BOOL = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


def _typed(texts: list[str]) -> list[object]:
    """One column's values as read_csv infers its type."""
    given = [t for t in texts if t not in _NA]
    if given and len(given) == len(texts) and all(_INT.fullmatch(t) for t in given):
        return [int(t) for t in texts]
    if all(_FLOAT.fullmatch(t) for t in given):
        return [math.nan if t in _NA else float(t) for t in texts]
    if all(t in _BOOL for t in given):
        return [_BOOL.get(t, math.nan) for t in texts]
    return [math.nan if t in _NA else t for t in texts]


def cell(value: object, kind: str) -> str:
    """One number as text: seconds to 3 significant digits, shares as percentages that
    never round a small share to 0 % or a near-complete one to 100 %."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "count":
        return str(int(value))  # type: ignore[call-overload]
    if kind == "share":
        v = float(value)  # type: ignore[arg-type]
        if 0 < v < 0.005:
            return "<1%"
        if 0.995 <= v < 1:
            return ">99%"
        return f"{v:.0%}"
    return format_value(float(value))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Filters:
    designs: Sequence[str] = ()
    faults: Sequence[str] = ()
    profiles: Sequence[str] = ()


_Data = TypeVar("_Data", "pd.DataFrame", Summary)


def select(data: _Data, f: Filters) -> _Data:
    """The rows the filters keep; a name that is not in the run is bad input (a typo
    would otherwise print an empty table)."""
    for option, column, wanted in (
        ("--design", "design", f.designs),
        ("--fault", "fault", f.faults),
        ("--profile", "profile", f.profiles),
    ):
        if not wanted:
            continue
        texts = [str(x) for x in values(data, column)]
        have = list(dict.fromkeys(texts))
        bases = {h: h.split("[")[0] for h in have}
        unknown = [w for w in wanted if w not in have and w not in bases.values()]
        if unknown:
            raise UserError(
                f"{option} {unknown[0]}: not in this run ({', '.join(have) or 'no ' + column})"
            )
        keep = {h for h in have if h in wanted or bases[h] in wanted}
        data = _take(data, [t in keep for t in texts])
    return data


def values(data: pd.DataFrame | Summary, column: str) -> list[object]:
    """A column's values, none when the column is missing."""
    if column not in data.columns:
        return []
    return data.column(column) if isinstance(data, Summary) else data[column].tolist()


def _take(data: _Data, mask: list[bool]) -> _Data:
    if isinstance(data, Summary):
        return Summary(data.columns, [r for r, k in zip(data.rows, mask, strict=True) if k])
    return data[mask]


def _heading(key: Sequence[object], names: Sequence[str]) -> str:
    parts: list[str] = []
    for name, value in zip(names, key, strict=True):
        if name == "target":
            parts[-1] = f"{parts[-1]} on {value}" if parts else f"on {value}"
        elif name in ("fault", "profile"):
            parts.append(str(value))
        else:
            parts.append(f"{name}={format_value(value)}{_unit(name)}")
    return ", ".join(parts)


def _unit(key: str) -> str:
    """The unit a swept value is in ("s" after a duration, as the files write it)."""
    from chaoslab.params import CATALOGUE

    p = CATALOGUE.get(key)
    return "s" if p is not None and p.unit == "s" else ""


def _legend(metrics: Sequence[Metric], width: int) -> list[str]:
    seconds = ", ".join(f"{m.short} {m.means}" for m in metrics if m.kind == "s")
    shares = ", ".join(f"{m.short} {m.means}" for m in metrics if m.kind == "share")
    parts = [f"seconds (never: not within the horizon): {seconds}"] if seconds else []
    parts += [f"shares: {shares}"] if shares else []
    return fold("; ".join(parts) + ".", width)


def summary_text(data: pd.DataFrame | Summary, width: int, title: str | None = None) -> str:
    """One row per cell. When the name columns do not fit beside the numbers, the rows
    go under headings of what they share (fault, target, profile, swept values)."""
    summary = data if isinstance(data, Summary) else Summary.of_frame(data)
    metrics = [m for m in METRICS if m.column in summary.columns]
    keys = key_columns(summary)
    cols = [Col(k) for k in keys] + [Col(m.short, rigid=True, right=True) for m in metrics]
    flat = [
        [format_value(r[k]) for k in keys] + [cell(r[m.column], m.kind) for m in metrics]
        for r in summary.rows
    ]
    natural = sum(max(len(c.header), *(len(r[i]) for r in flat)) for i, c in enumerate(cols))
    rows: list[Row] = list(flat)
    if natural + 2 * (len(cols) - 1) > width and len(keys) > 1:
        rows, cols = _grouped(summary, keys, metrics)
    out = [*fold(title, width)] if title else []
    out += [render(cols, rows, width, keep=1), "", *_legend(metrics, width)]
    return "\n".join(out)


def _grouped(
    summary: Summary, keys: list[str], metrics: Sequence[Metric]
) -> tuple[list[Row], list[Col]]:
    design, rest = keys[0], keys[1:]
    rows: list[Row] = []
    for key, group in _groups(summary.rows, rest):
        rows.append(Heading(_heading(key, rest)))
        for r in group:
            rows.append([format_value(r[design])] + [cell(r[m.column], m.kind) for m in metrics])
    cols = [Col(design)] + [Col(m.short, rigid=True, right=True) for m in metrics]
    return rows, cols


def _groups(
    rows: list[dict[str, object]], keys: list[str]
) -> Iterator[tuple[tuple[object, ...], list[dict[str, object]]]]:
    """The rows by their values of ``keys``, in order of first appearance, missing values
    a group of their own (pandas' ``groupby(keys, sort=False, dropna=False)``)."""
    groups: dict[tuple[object, ...], tuple[tuple[object, ...], list[dict[str, object]]]] = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        # NaN is not equal to itself: one stand-in so the missing values group together
        same = tuple("\0nan" if isinstance(v, float) and math.isnan(v) else v for v in key)
        groups.setdefault(same, (key, []))[1].append(r)
    yield from groups.values()


def metric(name: str) -> Metric:
    """A summary column by its name or its short header (``recovery_p95`` or ``p95``)."""
    if name not in _BY_NAME:
        known = ", ".join(m.column for m in (*METRICS, *_MORE) if m.kind != "count")
        raise UserError(f"--pivot {name}: not a summary metric ({known})")
    return _BY_NAME[name]


def _fault_labels(df: pd.DataFrame) -> pd.Series:
    # a fault's target is named only where the run has that fault on several targets
    if "target" not in df.columns:
        return df["fault"].astype(str)
    targets = df.groupby("fault")["target"].nunique()
    return df.apply(
        lambda r: f"{r.fault} {r.target}" if targets[r.fault] > 1 else str(r.fault), axis=1
    )


def pivot_frame(df: pd.DataFrame, m: Metric) -> pd.DataFrame:
    """Designs as rows, faults as columns, one metric; other name columns (profile, swept
    values) stay in the index."""
    d = df.assign(_fault=_fault_labels(df))
    sections = [k for k in key_columns(df) if k not in ("design", "fault", "target")]
    wide = d.pivot_table(
        index=[*sections, "design"], columns="_fault", values=m.column, aggfunc="first",
        sort=False, dropna=False,
    )  # fmt: skip
    wide.columns.name = None
    return wide


def pivot_text(df: pd.DataFrame, m: Metric, width: int) -> str:
    wide = pivot_frame(df, m)
    faults = list(wide.columns)
    rows: list[Row] = []
    last: tuple[object, ...] | None = None
    names = [str(n) for n in wide.index.names[:-1]]
    for idx, values in wide.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        if names and idx[:-1] != last:
            last = idx[:-1]
            rows.append(Heading(_heading(last, names)))
        rows.append([str(idx[-1])] + [cell(values[f], m.kind) for f in faults])
    cols = [Col("design")] + [Col(str(f), rigid=True, right=True) for f in faults]
    unit = "seconds" if m.kind == "s" else "share"
    title = f"{m.column} ({m.means}; {unit}), design x fault"
    return "\n".join([*fold(title, width), render(cols, rows, width, keep=1)])


def to_format(df: pd.DataFrame, fmt: str, kind: str | None = None) -> str:
    """The summary (or a pivot, indexed by its name columns, of a metric of ``kind``) as
    csv, md or json text; full values in csv and json (JSON has no infinity: a recovery
    that never happened is null, like a missing one)."""
    pivoted = kind is not None
    flat = df.reset_index() if pivoted else df
    names = list(df.index.names) if pivoted else key_columns(df)
    if fmt == "csv":
        return flat.to_csv(index=False)
    if fmt == "json":
        rows = flat.to_dict(orient="records")
        return json.dumps([{str(k): _json_value(v) for k, v in r.items()} for r in rows], indent=1)
    kinds = {c: kind or (_BY_NAME[c].kind if c in _BY_NAME else "s") for c in flat.columns}
    lines = ["| " + " | ".join(map(str, flat.columns)) + " |"]
    lines.append("|" + "|".join("---" if c in names else "---:" for c in flat.columns) + "|")
    for _, r in flat.iterrows():
        texts = [format_value(r[c]) if c in names else cell(r[c], kinds[c]) for c in flat.columns]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _json_value(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):  # NumPy scalars
        return _json_value(v.item())
    return v
