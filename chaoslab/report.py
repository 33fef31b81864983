"""One self-contained HTML page per run: what was run, what differs from the profiles, the
summary tables and every figure that fits the run, embedded (base64 PNG) — no external
file, script or stylesheet, so the page can be mailed or attached to a ticket.

Sections: the experiment (title, description, mode/target, seed, trials, horizon,
versions), parameters that differ from their profile's value (with the source the run
recorded), the swept parameters, the summary table, what recovery waits for
(`chaoslab.analysis.bottlenecks`), for live runs the stored comparison,
with ``vs`` the comparison against another run (`chaoslab.compare`), and the figures.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import pandas as pd

from chaoslab.analysis import KEY, bottlenecks, milestone_columns
from chaoslab.results import Run, atomic_write_text, format_value

__all__ = ["build_report", "changed_parameters", "write_report"]

_CSS = """
body{font-family:"DejaVu Sans","Noto Sans CJK KR",sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.meta td{text-align:left}.note{color:#666;font-size:.9em}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}
.err{color:#a00}
"""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import yaml  # edge module: the core never imports yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def changed_parameters(run: Run) -> pd.DataFrame:
    """Parameters whose effective value differs from what the run's profiles give.

    From ``experiment.yaml``'s ``effective_params`` (simulated and Kubernetes runs) or the
    ``params`` of the run's meta (lab runs), compared with the catalogue resolved under the
    run's profiles. Columns: key, value, profile value, unit, source.
    """
    from chaoslab.params import CATALOGUE, ParamSet

    doc = _read_yaml(Path(run.path) / "experiment.yaml")
    profiles = run.meta.get("profiles") or doc.get("profile") or []
    if isinstance(profiles, str):
        profiles = [profiles]
    try:
        base = ParamSet.resolve(list(profiles))
    except ValueError:
        base = ParamSet.resolve([])
    effective: dict[str, tuple[str, str]] = {}
    eff = doc.get("effective_params")
    if isinstance(eff, Mapping):
        for k, v in eff.items():
            if isinstance(v, Mapping):
                effective[k] = (str(v.get("value")), str(v.get("source", "")))
    else:
        for k, v in {**(doc.get("params") or {}), **(run.meta.get("params") or {})}.items():
            effective[k] = (str(v), "experiment params")
    rows = []
    for k, (value, source) in sorted(effective.items()):
        if k not in CATALOGUE:
            rows.append(
                {
                    "key": k,
                    "value": value,
                    "profile value": "(not in catalogue)",
                    "unit": "",
                    "source": source,
                }
            )
            continue
        p = CATALOGUE[k]
        try:
            same = p.text(p.parse(value)) == base.text(k)
        except (ValueError, TypeError):
            same = value == base.text(k)
        if not same:
            rows.append(
                {
                    "key": k,
                    "value": value,
                    "profile value": base.text(k),
                    "unit": p.unit,
                    "source": source,
                }
            )
    return pd.DataFrame(rows, columns=["key", "value", "profile value", "unit", "source"])


def _fmt(v: Any) -> str:
    return format_value(v, missing="–")


def _table(df: pd.DataFrame, cls: str = "") -> str:
    if df.empty:
        return '<p class="note">(none)</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False, name=None)
    )
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _figure_html(name: str, fig: Any) -> str:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(name)}</figcaption>'
        "</figure>"
    )


def _meta_table(run: Run) -> pd.DataFrame:
    m = run.meta
    keys = [
        ("mode", "mode"),
        ("target", "target"),
        ("status", "status"),
        ("experiment file", "experiment_file"),
        ("design", "design"),
        ("seed", "seed"),
        ("trials per cell", "trials"),
        ("horizon (s)", "horizon_s"),
        ("profiles", "profiles"),
        ("overrides", "overrides"),
        ("started (UTC)", "started_utc"),
        ("elapsed (s)", "elapsed_s"),
        ("chaoslab", "chaoslab_version"),
        ("python", "python"),
        ("format version", "format_version"),
    ]
    rows = [(label, m[k]) for label, k in keys if m.get(k) not in (None, "", [], {})]
    rows.append(("trials in run", len(run.trials)))
    return pd.DataFrame(rows, columns=["field", "value"])


def build_report(run: Run, vs: Run | None = None, *, figures: bool = True) -> str:
    """The HTML page (a string). ``vs``: a prediction (or baseline) to compare with."""
    from chaoslab.compare import stored_prediction

    doc = _read_yaml(Path(run.path) / "experiment.yaml")
    title = str(run.meta.get("title") or run.meta.get("experiment") or doc.get("title") or "")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>chaoslab report: {html.escape(title or str(run.path))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title or 'chaoslab run')}</h1>",
        f'<p class="note">{html.escape(str(run.path))}</p>',
    ]
    if doc.get("description"):
        parts.append(f"<p>{html.escape(str(doc['description']))}</p>")
    parts += _experiment_sections(run)
    parts += _result_sections(run)
    if vs is None and run.meta.get("mode") == "live":
        vs = stored_prediction(run)
    pred = None
    if vs is not None:
        against, ok = _comparison_section(vs, run)
        parts += against
        pred = vs if ok else None
    if figures:
        from chaoslab.plots import figures_for_run

        parts.append("<h2>Figures</h2>")
        for name, fig in figures_for_run(run, vs=pred).items():
            parts.append(_figure_html(name, fig))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _experiment_sections(run: Run) -> list[str]:
    parts = ["<h2>Experiment</h2>", _table(_meta_table(run), "meta")]
    parts += [
        "<h2>Parameters that differ from their profile</h2>",
        _table(changed_parameters(run), "meta"),
    ]
    sweep = run.meta.get("sweep") or {}
    if sweep:
        values = [(k, ", ".join(map(str, v))) for k, v in sweep.items()]
        parts += [
            "<h2>Swept parameters</h2>",
            _table(pd.DataFrame(values, columns=["key", "values"]), "meta"),
        ]
    return parts


def _result_sections(run: Run) -> list[str]:
    parts = [
        "<h2>Summary (seconds; never = not recovered within the horizon)</h2>",
        _table(run.summary()),
    ]
    trials = run.trials
    if len(trials) and milestone_columns(trials):
        keys = [*KEY, *(k for k in run.sweep_columns if k in trials.columns)]
        parts += [
            "<h2>What recovery waits for</h2>",
            '<p class="note">per cell, the milestone reached last before recovery in most '
            "recovered trials: its share of those trials and its median time (s).</p>",
            _table(bottlenecks(trials, keys)),
        ]
    comp_path = Path(run.path) / "comparison.csv"
    if comp_path.exists():
        parts += [
            "<h2>Comparison stored by the drill</h2>",
            _table(pd.read_csv(comp_path).fillna({"note": ""})),
        ]
    return parts


def _comparison_section(pred: Run, run: Run) -> tuple[list[str], bool]:
    """The comparison with ``pred``, and whether the two runs could be compared."""
    from chaoslab.compare import CompareError, compare

    parts = [f"<h2>Against {html.escape(str(pred.path))}</h2>"]
    try:
        c = compare(pred, run)
    except CompareError as e:
        parts.append(f'<p class="err">{html.escape(str(e))}</p>')
        return parts, False
    parts.append(
        '<p class="note">coverage: share of measured trials inside the predicted '
        "p5–p95; ks: two-sample Kolmogorov–Smirnov statistic (ks_crit_05: its 5 % "
        "critical value); errors: measured minus predicted median, seconds.</p>"
    )
    parts.append(_table(c.cells))
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in c.notes]
    return parts, True


def write_report(run: Run, out: str | Path, vs: Run | None = None) -> Path:
    """Write the page atomically; returns its path."""
    p = Path(out)
    atomic_write_text(p, build_report(run, vs))
    return p
