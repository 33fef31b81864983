"""One self-contained HTML page per run — no external file, script or stylesheet, so the
page can be mailed or attached to a ticket (figures embedded as base64 PNG).

In reading order: the verdicts (design x fault: p95 recovery and mean lost seconds,
colour-coded, and whether the experiment's ``expect:`` holds), a contents list, how to read
the numbers, the advisor's answer when the run folder has ``advice.csv`` (from ``chaoslab
advise``), the comparison with a prediction, the figures with captions saying how to read
them, the experiment and the parameters that differ from their profiles (variants' own
params and profiles included), and last, collapsed, the long tables: what recovery waits
for and the summary of every cell.

Figures are the PNG files `chaoslab.plots.write_figures` keeps in ``RUN_DIR/figures``:
those `chaoslab plot` drew from the same run are reused, the others drawn once and kept.
See docs/report.md.
"""

from __future__ import annotations

import base64
import contextlib
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from chaoslab.analysis import KEY, bottlenecks, milestone_columns
from chaoslab.errors import UserError
from chaoslab.results import Run, atomic_write_text
from chaoslab.textfmt import format_value

__all__ = [
    "VERDICT_BINS",
    "build_report",
    "changed_parameters",
    "check_out",
    "figure_caption",
    "write_report",
]

_CSS = """
body{font-family:"DejaVu Sans","Noto Sans CJK KR",sans-serif;margin:1.5em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.15em .45em;text-align:right;white-space:nowrap}
th{background:#f4f4f4;text-align:left;vertical-align:bottom}
td.t,th.t{text-align:left}td.w{white-space:normal;min-width:24em;text-align:left}
.wide{max-width:100%;overflow-x:auto}
table.dense{font-size:.72em}.dense td,.dense th{padding:.1em .3em}
.note{color:#555;font-size:.9em}.err{color:#a00}
figure{margin:1.2em 0}figcaption{color:#333;font-size:.9em;max-width:60em;text-align:left}
img{max-width:100%;height:auto}
nav ol{columns:2;font-size:.9em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:bold}
.verdict td{min-width:6.5em;text-align:center}.verdict td.t{text-align:left}
.c0{background:#d9f0d3}.c1{background:#edf8c8}.c2{background:#fff3b0}
.c3{background:#fdd49e}.c4{background:#fc8d59}.c5{background:#d7301f;color:#fff}
.nr{background:repeating-linear-gradient(45deg,#eee 0 4px,#ddd 4px 8px);color:#777}
.ok{color:#1a7f37;font-weight:bold}.bad{color:#c00;font-weight:bold}
.c5 .ok,.c5 .bad{color:#fff}
.legend span{display:inline-block;padding:0 .5em;margin-right:.3em;border:1px solid #ddd}
pre{font-size:.85em;background:#f7f7f7;padding:.5em;overflow-x:auto}
"""

#: colour class of a cell by its p95 recovery (s): upper bound -> class, first match
VERDICT_BINS: tuple[tuple[float, str, str], ...] = (
    (0.0, "c0", "no outage"),
    (1.0, "c1", "≤ 1 s"),
    (10.0, "c2", "≤ 10 s"),
    (60.0, "c3", "≤ 1 min"),
    (600.0, "c4", "≤ 10 min"),
    (math.inf, "c5", "> 10 min or never"),
)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import yaml  # edge module: the core never imports yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _experiment(run: Run) -> Any:
    """The run's experiment as loaded from its source copy (None when it has none or it
    no longer loads: an older chaoslab's file)."""
    from chaoslab.experiment import load_experiment

    p = Path(run.path) / "experiment.source.yaml"
    if not p.exists():
        return None
    try:
        return load_experiment(p)
    except UserError:
        return None


# ----------------------------------------------------------------------------- parameters


def changed_parameters(run: Run) -> pd.DataFrame:
    """Parameters whose effective value differs from what the run's profiles give.

    From ``experiment.yaml``'s ``effective_params`` (simulated and Kubernetes runs) or the
    ``params`` of the run's meta (lab runs), compared with the catalogue resolved under the
    run's profiles; then each design variant's own params and profile (source: the
    variant). Columns: key, value, profile value, unit, source.
    """
    from chaoslab.params import ParamSet

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
    rows = [r for k, (v, src) in sorted(effective.items()) if (r := _row(base, k, v, src, True))]
    rows += _variant_rows(run, base, profiles)
    return pd.DataFrame(rows, columns=["key", "value", "profile value", "unit", "source"])


def _row(base: Any, key: str, value: str, source: str, only_changed: bool) -> dict[str, str]:
    """A row of the table, or {} when ``only_changed`` and the value is the profile's."""
    from chaoslab.params import CATALOGUE

    if key not in CATALOGUE:
        return {
            "key": key,
            "value": value,
            "profile value": "(not in catalogue)",
            "unit": "",
            "source": source,
        }
    p = CATALOGUE[key]
    try:
        same = p.text(p.parse(value)) == base.text(key)
    except (ValueError, TypeError):
        same = value == base.text(key)
    if same and only_changed:
        return {}
    return {
        "key": key,
        "value": value,
        "profile value": base.text(key),
        "unit": p.unit,
        "source": source,
    }


def _variant_rows(run: Run, base: Any, profiles: Sequence[str]) -> list[dict[str, str]]:
    exp = _experiment(run)
    if exp is None:
        return []
    rows: list[dict[str, str]] = []
    for label, _, variant in exp.design_entries():
        if variant is None:
            continue
        src = f"variant {label}"
        vp = variant.profile
        if vp:
            value = vp if isinstance(vp, str) else ", ".join(vp)
            rows.append(
                {
                    "key": "profile",
                    "value": value,
                    "profile value": ", ".join(profiles),
                    "unit": "",
                    "source": src,
                }
            )
        for k, v in variant.params.items():
            text = str(v).lower() if isinstance(v, bool) else str(v)
            rows.append(_row(base, k, text, src, False))
    return rows


# ----------------------------------------------------------------------------- tables


def _fmt(v: Any) -> str:
    return format_value(v, missing="–")


def _is_text(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def _table(df: pd.DataFrame, cls: str = "") -> str:
    if df.empty:
        return '<p class="note">(none)</p>'
    text = [_is_text(df[c]) for c in df.columns]
    # prose (a source, a note) wraps at its spaces; names and numbers never break
    prose = [
        t and bool(df[c].astype(str).str.len().max() > 48) for c, t in zip(df, text, strict=True)
    ]
    head = "".join(
        f'<th class="t">{html.escape(str(c))}</th>' if t else f"<th>{html.escape(str(c))}</th>"
        for c, t in zip(df.columns, text, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"w" if w else "t"}">{html.escape(_fmt(v))}</td>'
            if t
            else f"<td>{html.escape(_fmt(v))}</td>"
            for v, t, w in zip(row, text, prose, strict=True)
        )
        + "</tr>"
        for row in df.itertuples(index=False, name=None)
    )
    return f'<div class="wide"><table class="{cls}"><tr>{head}</tr>{body}</table></div>'


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
    rows = [(label, _plain(m[k])) for label, k in keys if m.get(k) not in (None, "", [], {})]
    rows.append(("trials in run", str(len(run.trials))))
    return pd.DataFrame(rows, columns=["field", "value"])


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


# ----------------------------------------------------------------------------- verdicts


def _seconds(v: float) -> str:
    from chaoslab.plots import fmt_seconds

    return fmt_seconds(v)


def _bin(p95: float) -> str:
    if math.isnan(p95):
        return "nr"
    return next(cls for top, cls, _ in VERDICT_BINS if p95 <= top)


def _cell_label(fault: str, target: str) -> str:
    return f"{html.escape(fault)}<br>→ {html.escape(target)}"


def _verdicts(run: Run, summary: pd.DataFrame) -> tuple[list[str], dict[str, list[Any]]]:
    """The expectation lines and the verdicts by cell name (empty without ``expect:``)."""
    from chaoslab.expect import check, verdict_lines

    exp = _experiment(run)
    if exp is None:
        return [], {}
    expectations = exp.expectations("run")
    if not expectations:
        return [], {}
    verdicts = check(expectations, summary, run.sweep_columns)
    by: dict[str, list[Any]] = {}
    for v in verdicts:
        by.setdefault(v.cell, []).append(v)
    return verdict_lines(verdicts), by


def _verdict_section(run: Run, summary: pd.DataFrame) -> list[str]:
    """One screen: a row per design (x sweep point), a column per fault cell; each cell
    the p95 recovery and the mean lost seconds, coloured by the p95."""
    from chaoslab.expect import cell_name
    from chaoslab.plots import design_order

    sweep = [c for c in run.sweep_columns if c in summary.columns]
    cells = list(dict.fromkeys(zip(summary["fault"], summary["target"], strict=True)))
    points = (
        list(dict.fromkeys(summary[sweep].itertuples(index=False, name=None))) if sweep else [()]
    )
    lines, by_cell = _verdicts(run, summary)
    records = [{str(k): v for k, v in r.items()} for r in summary.to_dict("records")]
    rows = {tuple(r[k] for k in ("design", "fault", "target", *sweep)): r for r in records}
    head = '<th class="t">design</th>' + "".join(
        f'<th class="t">{html.escape(k)}</th>' for k in sweep
    )
    head += "".join(f"<th>{_cell_label(f, t)}</th>" for f, t in cells)
    body = []
    for design in design_order(summary["design"]):
        for i, pt in enumerate(points):
            tds = []
            if i == 0:
                tds.append(f'<td class="t" rowspan="{len(points)}">{html.escape(design)}</td>')
            tds += [f'<td class="t">{html.escape(str(v))}</td>' for v in pt]
            for f, t in cells:
                r = rows.get((design, f, t, *pt))
                tds.append(_verdict_cell(r, by_cell.get(cell_name(r, sweep), []) if r else []))
            body.append("<tr>" + "".join(tds) + "</tr>")
    parts = [
        '<h2 id="verdicts">Verdicts</h2>',
        '<p class="note">Each cell: <b>p95 recovery</b> · mean lost seconds, coloured by the '
        "p95; ✓/✗: the experiment's expectations on that cell. Hatched: not run.</p>",
        '<div class="wide"><table class="verdict"><tr>'
        + head
        + "</tr>"
        + "".join(body)
        + "</table></div>",
        '<p class="legend note">'
        + "".join(f'<span class="{c}">{html.escape(text)}</span>' for _, c, text in VERDICT_BINS)
        + '<span class="nr">not run</span></p>',
    ]
    if lines:
        parts.append("<pre>" + html.escape("\n".join(lines)) + "</pre>")
    else:
        parts.append(
            '<p class="note">No <code>expect:</code> in the experiment: nothing is gated '
            "(docs/analysis.md: expectations a CI can fail on).</p>"
        )
    return parts


def _verdict_cell(r: Mapping[str, Any] | None, verdicts: Sequence[Any]) -> str:
    if r is None:
        return '<td class="nr">not run</td>'
    p95, lost = float(r["recovery_p95"]), float(r["lost_mean"])
    mark = ""
    if verdicts:
        ok = all(v.passed for v in verdicts)
        tip = html.escape(
            "; ".join(f"{'PASS' if v.passed else 'FAIL'} {v.expectation.text}" for v in verdicts)
        )
        mark = f' <span class="{"ok" if ok else "bad"}" title="{tip}">{"✓" if ok else "✗"}</span>'
    return f'<td class="{_bin(p95)}"><b>{_seconds(p95)}</b> · {_seconds(lost)}{mark}</td>'


_READING = """<h2 id="reading">How to read the numbers</h2>
<p class="note"><b>a(t)</b> is the availability at time t after the fault: the share of new
requests that succeed (1 = all, 2/3 = one backend of three is still sent traffic and fails).
<b>recovery</b> is when a(t) is back to 1 for good (never: not within the horizon);
<b>downtime</b> the time with a(t) = 0; <b>lost</b> = ∫(1 − a) dt, the error-budget cost in
seconds of full outage (30 s at a(t) = 2/3 lose 10 s). <b>reset</b> and <b>hung</b> are
shares of the established long-lived connections: reset ones see an error at once, hung
ones see nothing until the client's own timeout. p95: 95 % of trials recovered sooner.</p>
"""


# ----------------------------------------------------------------------------- figures

_CAPTIONS: tuple[tuple[str, str], ...] = (
    (
        "availability-",
        "Availability a(t) after {what}, one panel per design (variants beside "
        "their base design): the line is the median over trials, the band the p5–p95 range. "
        "A drop to 0 is a full outage, to 2/3 a third of requests failing. Time is linear for "
        "the first second, logarithmic after, so a 3 s takeover and a 6 min eviction share one "
        "axis.",
    ),
    (
        "availability",
        "Availability a(t) after the node each design depends on crashes (its "
        "entry node, ingress node or VIP holder; an app pod's node for designs without one): "
        "median line and p5–p95 band over trials, one series per sweep point. A drop to 0 is a "
        "full outage; the time axis is linear to 1 s, logarithmic after.",
    ),
    (
        "ecdf-recovery",
        "Recovery time per design: for each time x, the share of trials "
        "recovered within x (higher and further left is better). Lines in the green band at the "
        "left are trials with no outage at all, each design at its own place in the band; a "
        "curve that reaches 1 only in the grey band at the right did not recover within the "
        "horizon in that share of trials.",
    ),
    (
        "loss",
        "Mean lost seconds (∫(1 − a) dt) and mean downtime (a(t) = 0) per design and "
        "fault. Both panels share one log colour scale; white cells are 0 s, hatched cells were "
        "not run (the fault does not apply to that design).",
    ),
    (
        "phases-",
        "Phase timeline, {what}: per design and target, the median time of each "
        "milestone, each segment coloured by the phase it ends in (detection, endpoints, "
        "eviction, VIP move, route convergence, replacement). Solid while users are cut off, "
        "faded after the median recovery (black diamond); an arrow at the right: not "
        "recovered.",
    ),
    (
        "sensitivity",
        "Sensitivity of mean lost seconds to each numeric swept parameter: the "
        "bar spans the statistic over the parameter's values with the others at their middle "
        "value (black tick); widest on top.",
    ),
    (
        "predicted-vs-measured",
        "Predicted ECDF (line, p5–p95 shaded) against the measured "
        "trials (points) per metric and milestone; points inside the shaded band are covered "
        "by the prediction.",
    ),
)


def figure_caption(name: str) -> str:
    """What a figure of `chaoslab.plots.figure_makers` shows and how to read it."""
    for prefix, text in _CAPTIONS:
        if name == prefix or (prefix.endswith("-") and name.startswith(prefix)):
            what = (
                name.removeprefix(prefix).replace("-k8s", " · k8s") if prefix.endswith("-") else ""
            )
            return text.format(what=what.replace("-", " ", 1) if what else "the fault")
    return name


def _figures(run: Run, vs: Run | None, workers: int = 1) -> list[tuple[str, bytes]]:
    """(name, PNG) of every figure: kept in RUN_DIR/figures (reused when `plot` drew them
    from the same run), or drawn in memory when the run folder cannot be written."""
    from chaoslab.analysis import NothingToShow
    from chaoslab.plots import figure_makers, png_bytes, write_figures

    try:
        files = write_figures(run, Path(run.path) / "figures", ("png",), vs=vs, workers=workers)
        return [(f.name, f.paths[0].read_bytes()) for f in files if f.paths]
    except OSError:  # the bytes the files would hold, drawn one figure at a time
        out = []
        for name, make in figure_makers(run, vs).items():
            with contextlib.suppress(NothingToShow):  # as write_figures: no file
                out.append((name, png_bytes(make())))
        return out


def _figure_html(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (
        f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(name)}</b>: '
        f"{html.escape(caption)}</figcaption></figure>"
    )


# ----------------------------------------------------------------------------- advice


#: the columns of advice.csv the report shows (the per-noise and per-fault ones are left out)
_ADVICE_COLUMNS = (
    "design",
    "role",
    "timers",
    "unavailability_min_per_year",
    "ci95_low_min",
    "ci95_high_min",
    "nines",
    "real_failures_min",
    "side_effects_min",
    "spurious_per_year",
    "resets_per_year",
    "feasible",
)


def _advice_section(run: Run) -> list[str]:
    """The advisor's answer (advice.csv) and the frontier figure of each design."""
    p = Path(run.path) / "advice.csv"
    if not p.exists():
        return []
    adv = pd.read_csv(p)
    cols = [c for c in _ADVICE_COLUMNS if c in adv.columns]
    parts = [
        '<h2 id="advice">Advice: timers priced against their side effects</h2>',
        '<p class="note">From <code>chaoslab advise</code> (docs/advise.md): per design the '
        "recommended timers, the most aggressive ones and the Pareto frontier; minutes of "
        "unavailability per year with their 95 % interval, split into real failures and side "
        "effects (spurious failovers under noise), spurious failovers and connection resets "
        "per year.</p>",
        _table(adv[cols].rename(columns=lambda c: c.replace("_", " "))),
    ]
    for fig in sorted(Path(run.path).glob("frontier-*.png")):
        design = fig.stem.removeprefix("frontier-")
        cap = (
            f"{design}: expected minutes of unavailability per year against spurious "
            "failovers per cluster-year for every evaluated timer setting (95 % intervals), "
            "the Pareto frontier, the constraint and the recommendation (star)."
        )
        parts.append(_figure_html(fig.stem, fig.read_bytes(), cap))
    return parts


# ----------------------------------------------------------------------------- page


def build_report(run: Run, vs: Run | None = None, *, figures: bool = True, workers: int = 1) -> str:
    """The HTML page (a string). ``vs``: a prediction (or baseline) to compare with."""
    from chaoslab.compare import stored_prediction

    doc = _read_yaml(Path(run.path) / "experiment.yaml")
    title = str(run.meta.get("title") or run.meta.get("experiment") or doc.get("title") or "")
    summary = run.summary()
    if vs is None and run.meta.get("mode") == "live":
        vs = stored_prediction(run)
    sections: list[tuple[str, str, list[str]]] = [
        ("verdicts", "Verdicts", _verdict_section(run, summary))
    ]
    sections.append(("reading", "How to read the numbers", [_READING]))
    advice = _advice_section(run)
    if advice:
        sections.append(("advice", "Advice", advice))
    pred = None
    if vs is not None:
        against, ok = _comparison_section(vs, run)
        sections.append(("against", "Comparison", against))
        pred = vs if ok else None
    if figures:
        figs = [_figure_html(n, png, figure_caption(n)) for n, png in _figures(run, pred, workers)]
        sections.append(("figures", "Figures", ['<h2 id="figures">Figures</h2>', *figs]))
    sections.append(("experiment", "Experiment and parameters", _experiment_sections(run)))
    sections.append(("tables", "Tables (collapsed)", _result_sections(run, summary)))
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>chaoslab report: {html.escape(title or str(run.path))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title or 'chaoslab run')}</h1>",
        f'<p class="note">{html.escape(str(run.path))}</p>',
    ]
    if doc.get("description"):
        parts.append(f"<p>{html.escape(str(doc['description']))}</p>")
    parts.append(_contents(sections, figures))
    for _, _, body in sections:
        parts += body
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _contents(sections: Sequence[tuple[str, str, list[str]]], figures: bool) -> str:
    items = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t, _ in sections)
    return f'<nav id="contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _experiment_sections(run: Run) -> list[str]:
    parts = ['<h2 id="experiment">Experiment</h2>', _table(_meta_table(run), "meta")]
    parts += [
        "<h3>Parameters that differ from their profile (variants' own included)</h3>",
        _table(changed_parameters(run), "meta"),
    ]
    sweep = run.meta.get("sweep") or {}
    if sweep:
        values = [(k, ", ".join(map(str, v))) for k, v in sweep.items()]
        parts += [
            "<h3>Swept parameters</h3>",
            _table(pd.DataFrame(values, columns=["key", "values"]), "meta"),
        ]
    return parts


def _collapsed(title: str, body: str, note: str = "") -> str:
    extra = f'<p class="note">{note}</p>' if note else ""
    return f"<details><summary>{html.escape(title)}</summary>{extra}{body}</details>"


#: the summary's headers, short enough for every column to fit the page
_SHORT = {
    "recovered": "recovered",
    "recovery_p50": "rec p50",
    "recovery_p95": "rec p95",
    "recovery_p99": "rec p99",
    "recovery_max": "rec max",
    "downtime_mean": "down",
    "downtime_p95": "down p95",
    "degraded_mean": "degraded",
    "lost_mean": "lost",
    "lost_p95": "lost p95",
    "connections_reset_mean": "reset",
    "connections_hung_mean": "hung",
}


def _result_sections(run: Run, summary: pd.DataFrame) -> list[str]:
    parts = ['<h2 id="tables">Tables</h2>']
    trials = run.trials
    if len(trials) and milestone_columns(trials):
        keys = [*KEY, *(k for k in run.sweep_columns if k in trials.columns)]
        parts.append(
            _collapsed(
                "What recovery waits for",
                _table(bottlenecks(trials, keys)),
                "per cell, the milestone reached last before recovery in most recovered trials: "
                "its share of those trials and its median time (s).",
            )
        )
    parts.append(
        "<h3>Summary</h3>"
        + _collapsed(
            f"Summary of every cell ({len(summary)} rows; seconds; never = not recovered "
            "within the horizon; recovered, reset, hung: shares; down, degraded, lost: means)",
            _table(summary.rename(columns=_SHORT), "dense"),
        )
    )
    comp_path = Path(run.path) / "comparison.csv"
    if comp_path.exists():
        parts.append(
            _collapsed(
                "Comparison stored by the drill",
                _table(pd.read_csv(comp_path).fillna({"note": ""})),
            )
        )
    return parts


def _comparison_section(pred: Run, run: Run) -> tuple[list[str], bool]:
    """The comparison with ``pred``, and whether the two runs could be compared."""
    from chaoslab.compare import CompareError, compare

    parts = [f'<h2 id="against">Against {html.escape(str(pred.path))}</h2>']
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


def check_out(out: str | Path, *, default: bool, force: bool = False) -> Path:
    """Refuse, before any work, an ``--out`` that is a folder, or a file that exists
    (unless ``force``, or it is the run's own report.html: ``default``)."""
    p = Path(out)
    if p.is_dir():
        raise UserError(f"--out {p}: a folder; give the HTML file to write, e.g. {p}/report.html")
    if p.exists() and not (default or force):
        raise UserError(f"--out {p}: the file exists; pass --force to replace it")
    if not p.parent.exists():
        raise UserError(f"--out {p}: no folder {p.parent}")
    return p


def write_report(run: Run, out: str | Path, vs: Run | None = None, workers: int = 1) -> Path:
    """Write the page atomically; returns its path. ``workers``: processes drawing the
    figures not drawn yet (`chaoslab.plots.write_figures`)."""
    p = Path(out)
    atomic_write_text(p, build_report(run, vs, workers=workers))
    return p
