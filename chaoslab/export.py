"""A run folder out to the tools operators already watch: Prometheus / OpenMetrics metrics
(node_exporter's textfile collector, a Pushgateway), Grafana annotations for a drill's fault
windows, and a Chaos Toolkit journal of a drill.

Metric names follow the Prometheus conventions (base unit as suffix, ``_ratio`` for shares);
the exposition is written by ``prometheus_client`` itself, so escaping and the OpenMetrics
``# EOF`` are the library's, not ours. A model run exports one series per cell and summary
statistic; a drill adds, per compared metric and milestone, what was measured, what the model
predicted and the share of trials inside the prediction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from chaoslab.errors import UserError
from chaoslab.results import METRIC_COLUMNS, Run

__all__ = [
    "FORMATS",
    "ExportError",
    "ctk_journal",
    "grafana_annotations",
    "metrics_text",
    "push",
    "registry",
]

#: what ``chaoslab export --format`` writes, and the file name it writes by default
FORMATS = {
    "openmetrics": "metrics.om.txt",
    "prometheus": "chaoslab.prom",  # textfile collector: the name must end in .prom
    "grafana": "grafana-annotations.json",
    "ctk-journal": "ctk-journal.json",
}

_PREDICTED = (("0.05", "predicted_p5"), ("0.5", "predicted_p50"), ("0.95", "predicted_p95"))
_QUANTILE = {"p50": "0.5", "p95": "0.95", "p99": "0.99", "max": "1"}
_CELL_LABELS = ("design", "fault", "target", "profile")


class ExportError(UserError):
    """A run folder that cannot be exported in the asked format."""


# --- metrics ----------------------------------------------------------------------------


def run_id(run: Run) -> str:
    """The run's id: ``meta.json``'s ``run_id`` (drills) or the folder's name (model runs)."""
    return str(run.meta.get("run_id") or run.path.name)


def _label_name(column: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", column)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


def _value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class _Series:
    """One statistic of a summary column: where it goes and under which extra label."""

    family: str
    unit: str
    extra: tuple[tuple[str, str], ...] = ()


def _summary_series(column: str) -> _Series | None:
    """How ``summary.csv``'s ``column`` is exported; None for label and unknown columns."""
    if column == "trials":
        return _Series("chaoslab_cell_trials", "")
    if column == "recovered":
        return _Series("chaoslab_recovered", "ratio")
    base, _, stat = column.rpartition("_")
    if not base:
        return None
    seconds = f"{base}_s" in METRIC_COLUMNS
    if not seconds and base not in METRIC_COLUMNS:
        return None
    unit = "seconds" if seconds else "ratio"
    if stat in _QUANTILE:
        return _Series(f"chaoslab_{base}", unit, (("quantile", _QUANTILE[stat]),))
    if stat == "mean":
        return _Series(f"chaoslab_{base}_mean", unit)
    return None


class _Families:
    """Gauge families by name, each with one label set, filled series by series."""

    def __init__(self, common: Mapping[str, str]) -> None:
        self.common = dict(common)
        self.families: dict[str, GaugeMetricFamily] = {}

    def add(self, series: _Series, doc: str, labels: Mapping[str, str], value: float) -> None:
        if not math.isfinite(value):
            return  # an empty statistic (no trial recovered): absent, not NaN
        names = [*self.common, *labels, *(k for k, _ in series.extra)]
        fam = self.families.get(series.family)
        if fam is None:
            fam = GaugeMetricFamily(series.family, doc, labels=names, unit=series.unit)
            self.families[series.family] = fam
        fam.add_metric([*self.common.values(), *labels.values(), *(v for _, v in series.extra)],
                       value)  # fmt: skip


def _summary(run: Run) -> pd.DataFrame:
    path = run.path / "summary.csv"
    return pd.read_csv(path) if path.exists() else run.summary()


def _cell_families(run: Run, out: _Families) -> None:
    summary = _summary(run)
    keys = [c for c in (*_CELL_LABELS, *run.sweep_columns) if c in summary.columns]
    for row in summary.to_dict("records"):
        labels = {_label_name(k): _value(row[k]) for k in keys}
        for column, value in row.items():
            series = _summary_series(str(column))
            if series is not None and column not in keys:
                out.add(series, f"summary.csv column {column}", labels, float(value))


def _drill_families(run: Run, out: _Families) -> None:
    path = run.path / "comparison.csv"
    if not path.exists():
        return
    for row in pd.read_csv(path).to_dict("records"):
        metric = str(row["metric"])
        if not (metric.endswith("_s") or metric.startswith("at_")):
            continue  # shares (connections reset) are compared too, but are not seconds
        labels = {"design": str(row["design"]), "fault": str(row["fault"]), "metric": metric}
        for stat in ("min", "median", "max"):
            s = _Series("chaoslab_drill_measured", "seconds", (("stat", stat),))
            out.add(s, "measured in the drill, per trial", labels, float(row[f"measured_{stat}"]))
        for q, col in (
            ("0.05", "predicted_p5"),
            ("0.5", "predicted_p50"),
            ("0.95", "predicted_p95"),
        ):
            s = _Series("chaoslab_drill_predicted", "seconds", (("quantile", q),))
            out.add(s, "the model's prediction for the drilled cell", labels, float(row[col]))
        doc = "share of trials inside the predicted p5..p95 (with tolerance)"
        out.add(_Series("chaoslab_drill_inside", "ratio"), doc, labels, float(row["inside"]))
        out.add(_Series("chaoslab_drill_trials", ""), "trials compared", labels, float(row["n"]))


def _run_families(run: Run) -> Iterator[Metric]:
    common = _common_labels(run)
    info = GaugeMetricFamily(
        "chaoslab_run_info", "a chaoslab run folder (value always 1)",
        labels=[*common, "status", "chaoslab_version", "model_commit"],
    )  # fmt: skip
    commit = (run.meta.get("model_version") or {}).get("git_commit") or ""
    info.add_metric(
        [*common.values(), str(run.meta.get("status", "")),
         str(run.meta.get("chaoslab_version", "")), str(commit)], 1.0,
    )  # fmt: skip
    yield info
    elapsed = run.meta.get("elapsed_s")
    if isinstance(elapsed, int | float):
        fam = GaugeMetricFamily(
            "chaoslab_run_elapsed", "wall time of the run", labels=list(common), unit="seconds"
        )
        fam.add_metric(list(common.values()), float(elapsed))
        yield fam


def _common_labels(run: Run) -> dict[str, str]:
    return {
        "run_id": run_id(run),
        "experiment": run.path.parent.name,
        "mode": str(run.meta.get("mode", "")),
    }


class _RunCollector:
    def __init__(self, run: Run) -> None:
        self.run = run

    def collect(self) -> Iterable[Metric]:
        out = _Families(_common_labels(self.run))
        _cell_families(self.run, out)
        _drill_families(self.run, out)
        yield from _run_families(self.run)
        yield from out.families.values()


def registry(run: Run) -> CollectorRegistry:
    """A registry holding the run's metrics (read when it is exposed or pushed)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_RunCollector(run))
    return reg


def metrics_text(run: Run, fmt: str = "openmetrics") -> bytes:
    """The run's metrics in OpenMetrics text, or (``prometheus``) in the Prometheus text
    format that node_exporter's textfile collector reads."""
    from prometheus_client import exposition
    from prometheus_client.openmetrics import exposition as openmetrics

    write = openmetrics.generate_latest if fmt == "openmetrics" else exposition.generate_latest
    return bytes(write(registry(run)))


def push(run: Run, url: str, job: str = "chaoslab", timeout_s: float = 10.0) -> None:
    """PUT the run's metrics to a Pushgateway at ``url`` under ``job`` and ``run_id``
    (a PUT replaces that group, so re-exporting the same run is idempotent)."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(url, job=job, registry=registry(run),
                        grouping_key={"run_id": run_id(run)}, timeout=timeout_s)  # fmt: skip
    except OSError as e:  # URLError is an OSError; the gateway's 4xx/5xx are HTTPErrors
        raise ExportError(f"--push {url}: {getattr(e, 'reason', e)}") from None


# --- drills: fault windows and a Chaos Toolkit journal -----------------------------------


def _drill_tables(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trial_info, measured trials) of a drill; ExportError for a model run."""
    info_path = run.path / "trial_info.csv"
    if not info_path.exists():
        raise ExportError(
            f"{run.path}: not a drill run (no trial_info.csv; mode {run.meta.get('mode')!r})"
        )
    info = pd.read_csv(info_path)
    trials = run.trials.drop(columns=["a_t", "a_v"], errors="ignore")
    return info, trials


def _trial_rows(run: Run) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    info, trials = _drill_tables(run)
    records: list[dict[str, Any]] = trials.to_dict("records")  # type: ignore[assignment]
    measured = {(r["fault"], int(r["trial"])): r for r in records}
    rows: list[dict[str, Any]] = info.to_dict("records")  # type: ignore[assignment]
    for row in rows:
        yield row, measured.get((row["fault"], int(row["trial"])), {})


def _window_end(info: Mapping[str, Any], measured: Mapping[str, Any]) -> float:
    """Seconds after the fault when the outage ended: recovery, else the observation's end."""
    rec = measured.get("recovery_s")
    if measured.get("recovered") and isinstance(rec, float) and math.isfinite(rec):
        return max(rec, 0.0)
    return float(info.get("horizon_s") or 0.0)


def _window_text(info: Mapping[str, Any], measured: Mapping[str, Any]) -> str:
    head = f"chaoslab drill: {info['fault']} on {info.get('victim', '?')}, trial {info['trial']}"
    if info.get("aborted") is True:
        return f"{head}: aborted ({info.get('abort_reason') or 'no reason recorded'})"
    if measured.get("recovered"):
        lost = float(measured.get("lost_s") or 0.0)
        return f"{head}: recovered after {measured['recovery_s']:.2f} s, {lost:.2f} s lost"
    return f"{head}: not recovered within the observation"


def grafana_annotations(run: Run) -> list[dict[str, Any]]:
    """One region annotation per drill trial (fault instant to recovery), in the body
    Grafana's ``POST /api/annotations`` takes (times in epoch milliseconds)."""
    out = []
    for info, measured in _trial_rows(run):
        t0 = float(info["t0_wall"])
        out.append({
            "time": round(t0 * 1000),
            "timeEnd": round((t0 + _window_end(info, measured)) * 1000),
            "tags": ["chaoslab", str(info["design"]), str(info["fault"]), f"run:{run_id(run)}"],
            "text": _window_text(info, measured),
        })  # fmt: skip
    return out


def _iso(wall: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat()


def _drill_action(run: Run) -> dict[str, Any]:
    """The method's one action: the drill itself, as a process Chaos Toolkit can run."""
    return {
        "type": "action",
        "name": "chaoslab-drill",
        "provider": {
            "type": "process",
            "path": "chaoslab",
            "arguments": ["drill", str(run.meta.get("experiment", "")), "--yes"],
        },
    }


def _inside_probe(run: Run, metric: str) -> dict[str, Any]:
    return {
        "type": "probe",
        "name": f"{metric}-inside-prediction",
        "tolerance": {"type": "range", "range": [0.8, 1.0]},
        "provider": {
            "type": "python",
            "module": "chaoslab.export",
            "func": "inside_share",
            "arguments": {"run_dir": str(run.path), "metric": metric},
        },
    }


def inside_share(run_dir: str, metric: str) -> float:
    """Share of a drill's trials inside the model's p5..p95 for ``metric`` (from its
    ``comparison.csv``); the probe of an exported journal's steady-state hypothesis."""
    table = pd.read_csv(f"{run_dir}/comparison.csv")
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ExportError(f"{run_dir}: metric {metric!r} was not compared")
    return float(rows["inside"].min())


def _steady_state_after(run: Run) -> dict[str, Any]:
    path = run.path / "comparison.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    end = _iso(_finished_wall(run))
    probes = []
    for metric in table.get("metric", pd.Series(dtype=str)).drop_duplicates():
        share = inside_share(str(run.path), str(metric))
        probes.append({
            "activity": _inside_probe(run, str(metric)), "output": share,
            "start": end, "status": "succeeded", "end": end, "duration": 0.0,
            "tolerance_met": bool(share >= 0.8),
        })  # fmt: skip
    return {"steady_state_met": all(p["tolerance_met"] for p in probes), "probes": probes}


def _trial_activity(run: Run, info: Mapping[str, Any], measured: Mapping[str, Any]) -> dict:
    t0 = float(info["t0_wall"])
    end = t0 + _window_end(info, measured)
    name = f"{info['fault']} trial {info['trial']} on {info.get('victim', '?')}"
    output = {k: v for k, v in measured.items() if _is_reportable(v)}
    failed = info.get("aborted") is True
    entry: dict[str, Any] = {
        "activity": {**_drill_action(run), "name": name},
        "output": output,
        "start": _iso(t0), "status": "failed" if failed else "succeeded",
        "end": _iso(end), "duration": round(end - t0, 6),
    }  # fmt: skip
    if failed:
        entry["exception"] = [f"aborted: {info.get('abort_reason') or 'no reason recorded'}"]
    return entry


def _is_reportable(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, str | int | bool)


def _finished_wall(run: Run) -> float:
    import datetime as dt

    stamp = run.meta.get("finished_utc") or run.meta.get("started_utc")
    return dt.datetime.fromisoformat(str(stamp)).timestamp() if stamp else 0.0


_CTK_STATUS = {"complete": "completed", "partial": "interrupted"}


def ctk_journal(run: Run) -> dict[str, Any]:
    """The drill as a Chaos Toolkit journal (the keys chaostoolkit-lib's own journals have):
    the method is the drill, each trial one activity run with its measurements as output,
    and the steady-state hypothesis "each compared metric inside the model's p5..p95 in at
    least 80 % of trials", judged from ``comparison.csv``."""
    runs = [_trial_activity(run, info, m) for info, m in _trial_rows(run)]
    after = _steady_state_after(run)
    metrics = [p["activity"] for p in after["probes"]]
    started = str(run.meta.get("started_utc", ""))
    finished = _finished_wall(run)
    experiment = {
        "version": "1.0.0",
        "title": f"chaoslab drill {run.path.parent.name}",
        "description": f"exported by chaoslab from {run.path}",
        "tags": ["chaoslab", str(run.meta.get("target", "drill"))],
        "steady-state-hypothesis": {"title": "the drill meets the model", "probes": metrics},
        "method": [_drill_action(run)],
        "rollbacks": [],
    }
    status = _CTK_STATUS.get(str(run.meta.get("status")), "failed")
    return {
        "chaoslib-version": None,  # not run by chaostoolkit-lib: exported by chaoslab
        "chaoslab-version": run.meta.get("chaoslab_version"),
        "platform": run.meta.get("platform"),
        "node": run.meta.get("hostname"),
        "experiment": experiment,
        "start": started,
        "status": status,
        "deviated": not after["steady_state_met"],
        "steady_states": {"before": None, "after": after, "during": []},
        "run": runs,
        "rollbacks": [],
        "end": _iso(finished) if finished else None,
        "duration": float(run.meta.get("elapsed_s") or 0.0),
    }
