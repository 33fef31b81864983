"""Expectations: the ``expect:`` gates of an experiment file, checked against a run.

>>> e = parse_expectation("recovery_p95 < 30s", design=["nodeport-lb"], fault=["node-crash"])
>>> verdicts = check([e], summary)          # a run's summary.csv (one row per cell)
>>> failed(verdicts), verdict_lines(verdicts), junit_xml(verdicts, "seed-designs")

An expectation is ``METRIC OP THRESHOLD``: a metric of the run summary (``recovery_p95``,
``lost_mean``, ``recovered``, ...) or of a comparison (``coverage``, ``ks``, ...), one of
``< <= > >=``, and a threshold in the metric's unit: a duration (``30s``, ``5m0s``,
``never``) for times, a share (``0.8`` or ``80%``) for shares, a number for counts. It holds
for every cell it applies to (its ``design``/``fault``/``target``/``metric`` filters and
its sweep ``points``, or all); each cell it applies to is one verdict, one JUnit test case.

Latency (``slow_*``, ``p99_latency_*``, or a comparison's ``metric: slow_s`` /
``p99_latency_s``) is not measured by every run: a drill folder from before latency probes
has none. There an expectation of it is one skipped verdict saying so, not a breach; a
filter that matches nothing in a run that has latency data still fails.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import pandas as pd

from chaoslab.errors import UserError
from chaoslab.params.dists import ParseError, format_seconds, parse_duration
from chaoslab.results import METRIC_COLUMNS

__all__ = [
    "COMPARE_METRICS",
    "RUN_METRICS",
    "ExpectError",
    "Expectation",
    "Verdict",
    "cell_name",
    "check",
    "failed",
    "junit_xml",
    "metric_of",
    "parse_expectation",
    "verdict_lines",
]

#: metrics of a run's summary and their kind: s (seconds), share (0..1) or count
RUN_METRICS: dict[str, str] = {
    "recovery_p50": "s",
    "recovery_p95": "s",
    "recovery_p99": "s",
    "recovery_max": "s",
    "downtime_mean": "s",
    "downtime_p95": "s",
    "degraded_mean": "s",
    "lost_mean": "s",
    "lost_p95": "s",
    "recovered": "share",
    "connections_reset_mean": "share",
    "connections_hung_mean": "share",
    "slow_mean": "s",
    "slow_p95": "s",
    "p99_latency_p50": "s",
    "p99_latency_p95": "s",
    "trials": "count",
}
#: metrics of a comparison (``chaoslab compare``: one row per cell and compared metric)
COMPARE_METRICS: dict[str, str] = {
    "coverage": "share",
    "ks": "count",
    "median_error_s": "s",
    "mean_abs_error_s": "s",
    "rel_error": "count",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPR = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*(\S.*?)\s*$")
#: the columns naming a cell, in the order a cell's name shows them
_KEYS = ("design", "fault", "target")
#: the prefixes of the latency metrics (run summary and compared metrics)
_LATENCY = ("slow_", "p99_latency_")
_NOT_MEASURED = "not measured: this run has no latency data (slow_s, p99_latency_s)"


class ExpectError(UserError):
    """An expectation that cannot be read; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """``metric op threshold`` over the cells its filters select (empty: every cell)."""

    metric: str
    op: str
    threshold: float
    text: str
    designs: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()  # a comparison's compared metric (recovery_s, ...)
    #: sweep points: (swept key, the values it may have), as the cells' columns hold them
    points: tuple[tuple[str, tuple[object, ...]], ...] = ()

    @property
    def scope(self) -> str:
        """``run`` (a run's summary) or ``compare`` (a comparison's cells)."""
        return "compare" if self.metric in COMPARE_METRICS else "run"

    @property
    def name(self) -> str:
        """The expectation as one line: its text and its filters."""
        bits = [
            f"{k}={','.join(v)}"
            for k, v in (
                ("design", self.designs),
                ("fault", self.faults),
                ("target", self.targets),
                ("metric", self.metrics),
            )
            if v
        ]
        bits += [f"{k}={','.join(map(_text, vs))}" for k, vs in self.points]
        return self.text + (f" [{' '.join(bits)}]" if bits else "")

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and _OPS[self.op](value, self.threshold)

    def selects(self, row: Mapping[str, object]) -> bool:
        fault = str(row.get("fault", ""))
        return (
            _among(row.get("design"), self.designs)
            and (not self.faults or fault in self.faults or fault.split("/")[0] in self.faults)
            and _among(row.get("target"), self.targets)
            and _among(row.get("metric"), self.metrics)
            and self._at_point(row)
        )

    def _at_point(self, row: Mapping[str, object]) -> bool:
        if not self.points:
            return True
        # a run's summary has a column per swept key; a comparison's cells one "point"
        # column, "key=value, key=value"
        text = str(row.get("point") or "")
        # a value may hold ", " itself (uniform(1s, 3s)): split only before the next key
        point = dict(p.split("=", 1) for p in _POINT_SEP.split(text) if "=" in p)
        return all(
            any(_same(row[k] if k in row else point.get(k), v) for v in vs) for k, vs in self.points
        )


_POINT_SEP = re.compile(r", (?=[\w.\-]+=)")


def _among(value: object, allowed: tuple[str, ...]) -> bool:
    return not allowed or str(value) in allowed


def _same(seen: object, wanted: object) -> bool:
    """A cell's swept value is the wanted one: numbers (seconds, counts) by value, the
    rest (profiles, values that are distributions) as text."""
    if seen is None:
        return False
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        try:
            return math.isclose(float(str(seen)), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    return str(seen) == str(wanted)


def _text(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def metric_of(entry: object) -> str | None:
    """The metric an ``expect:`` entry as written checks (``recovery_p95 < 30s``, or a
    mapping with that as ``check:``); None when the entry cannot be read as one."""
    text = entry.get("check") if isinstance(entry, Mapping) else entry
    m = _EXPR.match(text) if isinstance(text, str) else None
    return m.group(1) if m else None


def parse_expectation(
    text: str,
    *,
    design: str | Sequence[str] | None = None,
    fault: str | Sequence[str] | None = None,
    target: str | Sequence[str] | None = None,
    metric: str | Sequence[str] | None = None,
    point: Mapping[str, Sequence[object]] | None = None,
) -> Expectation:
    """``recovery_p95 < 30s`` -> an Expectation (ExpectError saying what is wrong).
    ``point``: swept key -> the values it may have, as the cells' columns hold them
    (seconds for durations: `chaoslab.experiment` turns what the file says into those)."""
    m = _EXPR.match(str(text))
    if not m:
        raise ExpectError(
            f"cannot read {text!r} as an expectation: write METRIC OP VALUE, "
            "e.g. recovery_p95 < 30s (OP: < <= > >=)"
        )
    name, op, raw = m.groups()
    kinds = {**RUN_METRICS, **COMPARE_METRICS}
    if name not in kinds:
        raise ExpectError(f"unknown metric {name!r} in {text!r}; known: {', '.join(kinds)}")
    threshold = _threshold(name, kinds[name], raw, text)
    if metric is not None and name not in COMPARE_METRICS:
        raise ExpectError(f"metric: selects a comparison's rows; {name} is a run's metric")
    for column in _names(metric):
        if column not in METRIC_COLUMNS and not column.startswith("at_"):
            raise ExpectError(
                f"metric: {column!r} is not a compared metric: one of {', '.join(METRIC_COLUMNS)} "
                "or a milestone column at_<name> (at_node_not_ready, ...)"
            )
    points = tuple((str(k), tuple(vs)) for k, vs in (point or {}).items())
    return Expectation(
        name, op, threshold, f"{name} {op} {raw}", _names(design), _names(fault), _names(target),
        _names(metric), points,
    )  # fmt: skip


def _threshold(name: str, kind: str, raw: str, text: str) -> float:
    try:
        if kind == "s":
            return parse_duration(raw)
        share = kind == "share" and raw.endswith("%")
        value = float(raw[:-1]) / 100 if share else float(raw)
    except ParseError as e:
        raise ExpectError(f"{text!r}: {name} is a time: {e}") from None
    except ValueError:
        what = "a share, e.g. 0.8 or 80%" if kind == "share" else "a number"
        raise ExpectError(f"{text!r}: {name} is {what}, not {raw!r}") from None
    if not math.isfinite(value):
        raise ExpectError(f"{text!r}: the threshold must be finite")
    if kind == "share" and not 0 <= value <= 1:
        raise ExpectError(f"{text!r}: {name} is a share, between 0 and 1 (or 0%-100%)")
    return value


@dataclass(frozen=True, slots=True)
class Verdict:
    """One expectation on one cell: the value seen and whether it held."""

    expectation: Expectation
    cell: str
    value: float
    passed: bool
    note: str = ""
    #: nothing to check in this run (latency a drill did not measure): no breach
    skipped: bool = False


def cell_name(row: Mapping[str, object], extra: Sequence[str] = ()) -> str:
    """A cell as verdicts name it: ``design / fault / target [key=value, ...]``."""
    name = " / ".join(str(row[k]) for k in _KEYS if k in row and str(row[k]) not in ("", "nan"))
    point = [f"{c}={row[c]}" for c in extra if str(row.get(c, "")) not in ("", "nan")]
    return name + (f" [{', '.join(point)}]" if point else "")


def check(
    expectations: Iterable[Expectation], table: pd.DataFrame, points: Sequence[str] = ()
) -> list[Verdict]:
    """Every expectation on every row of ``table`` (a run's summary, or a comparison's
    cells) it selects; ``points`` are the columns that tell sweep points apart. An
    expectation that selects no row, or whose metric the table lacks, is one failed verdict
    saying so: a gate that checks nothing does not pass."""
    extra = [c for c in ("point", "metric") if c in table.columns]
    extra += [c for c in points if c in table.columns and c not in extra]
    rows = [{str(k): v for k, v in r.items()} for r in table.to_dict("records")]
    out: list[Verdict] = []
    for e in expectations:
        if _not_measured(e, table, rows):
            out.append(Verdict(e, "(none)", math.nan, True, _NOT_MEASURED, skipped=True))
            continue
        chosen = [r for r in rows if e.selects(r)]
        if e.metric not in table.columns or not chosen:
            why = f"no {e.metric} in this table" if chosen else "no cell of this run matches"
            out.append(Verdict(e, "(none)", math.nan, False, why))
            continue
        for r in chosen:
            raw = r[e.metric]
            value = math.nan if raw is None else float(raw)
            note = "no value" if math.isnan(value) else ""
            out.append(Verdict(e, cell_name(r, extra), value, e.holds(value), note))
    return out


def _not_measured(e: Expectation, table: pd.DataFrame, rows: list[dict[str, object]]) -> bool:
    """Whether ``e`` checks latency that ``table`` has no data of at all (whatever its
    filters select): a run summary without the column, or a comparison without a row of
    the latency metrics it names."""
    if e.metric.startswith(_LATENCY):
        return e.metric not in table.columns
    if not e.metrics or not all(m.startswith(_LATENCY) for m in e.metrics):
        return False
    return not any(r.get("metric") in e.metrics for r in rows)


def failed(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.passed]


def _value_text(e: Expectation, value: float) -> str:
    if math.isnan(value):
        return "-"
    kind = {**RUN_METRICS, **COMPARE_METRICS}[e.metric]
    if kind == "s":
        return "never" if math.isinf(value) else format_seconds(float(f"{value:.3g}"))
    if kind == "share":
        return f"{value:.0%}"
    return f"{value:.3g}"


def verdict_lines(verdicts: Sequence[Verdict], *, limit: int = 12) -> list[str]:
    """One screen: a line per expectation (cells passed), then up to ``limit`` breaches."""
    lines: list[str] = []
    by: dict[Expectation, list[Verdict]] = {}
    for v in verdicts:
        by.setdefault(v.expectation, []).append(v)
    for e, vs in by.items():
        if all(v.skipped for v in vs):
            lines.append(f"SKIP {e.name}: {vs[0].note}")
            continue
        ok = sum(v.passed for v in vs)
        mark = "PASS" if ok == len(vs) else "FAIL"
        lines.append(f"{mark} {e.name}: {ok}/{len(vs)} cells")
    bad = failed(verdicts)
    for v in bad[:limit]:
        seen = v.note or f"{v.expectation.metric} = {_value_text(v.expectation, v.value)}"
        lines.append(f"  breach: {v.cell}: {seen} (expected {v.expectation.text})")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more breaches (--junit FILE lists all)")
    skipped = sum(v.skipped for v in verdicts)
    total = len(verdicts) - skipped
    lines.append(
        f"expectations: {total - len(bad)}/{total} checks passed"
        + ("" if not bad else f", {len(bad)} failed")
        + ("" if not skipped else f", {skipped} skipped (not measured)")
    )
    return lines


def junit_xml(verdicts: Sequence[Verdict], suite: str) -> str:
    """JUnit XML: one test case per cell and expectation, a failure for each breach."""
    bad = failed(verdicts)
    skipped = str(sum(v.skipped for v in verdicts))
    root = ET.Element("testsuites", name="chaoslab", tests=str(len(verdicts)),
                      failures=str(len(bad)))  # fmt: skip
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(verdicts)),
                       failures=str(len(bad)), errors="0", skipped=skipped)  # fmt: skip
    for v in verdicts:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{v.cell}", name=v.expectation.name)
        seen = v.note or f"{v.expectation.metric} = {_value_text(v.expectation, v.value)}"
        if v.skipped:
            ET.SubElement(case, "skipped", message=seen)
        elif not v.passed:
            fail = ET.SubElement(case, "failure", message=f"{seen}, expected {v.expectation.text}")
            fail.text = f"{v.cell}: {seen}; expected {v.expectation.name}"
        else:
            ET.SubElement(case, "system-out").text = seen
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
