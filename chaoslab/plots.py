"""Figures of run folders (matplotlib; an edge module, the core never imports it).

Every function takes results (a `Run` or its trials DataFrame) and returns a matplotlib
`Figure` built without pyplot, so nothing here opens a window or keeps global figure state;
callers save it (`save`) or let a notebook display it.

Figures (the numbers behind them come from `chaoslab.analysis`):

- `ecdf_recovery`       ECDF of ``recovery_s`` per design, log time axis, unrecovered
                        trials in a band at the right;
- `availability`        median a(t) and its p5-p95 band across trials, per design, on a
                        symlog time axis (linear near the fault, logarithmic after), so a
                        3 s and a 6 min outage read at a glance on one axis;
- `phase_timeline`      waterfall of median milestone times per design x fault;
- `loss_heatmap`        mean ``lost_s`` and ``downtime_s`` per design x fault;
- `tornado`             sensitivity of a metric to each swept parameter;
- `predicted_vs_measured` predicted ECDF with the measured trials as points, per metric
                        and milestone.

Text: the article's readers are Korean-speaking operators, so the font list falls back to
Noto Sans CJK for Hangul/Kana/Han glyphs that DejaVu Sans lacks (`configure_fonts`).
Every axis label names its unit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from chaoslab import analysis
from chaoslab.analysis import (
    KEY,
    NothingToShow,
    at_point,
    availability_bands,
    ecdf,
    fault_cells,
    horizon_of,
    milestone_columns,
    milestone_name,
    phase_medians,
    sweep_points,
    trials_of,
)
from chaoslab.compare import sweep_columns
from chaoslab.results import Run

__all__ = [
    "AVAILABILITY_FLOOR",
    "availability",
    "configure_fonts",
    "design_color",
    "ecdf_recovery",
    "figures_for_run",
    "fmt_seconds",
    "loss_heatmap",
    "phase_timeline",
    "predicted_vs_measured",
    "save",
    "tornado",
]

#: fonts tried in order for every glyph: DejaVu for Latin, Noto CJK for Hangul/Kana/Han
FONT_FALLBACK = ("DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP")
#: the lowest availability the band can show below 1 is 0; kept as a name for the tests
AVAILABILITY_FLOOR = 0.0
#: symlog: linear within +-LINTHRESH s of the fault, logarithmic beyond (seconds)
LINTHRESH = 1.0

_METRIC_LABELS = {
    "recovery_s": "recovery time (s)",
    "downtime_s": "downtime, a(t) = 0 (s)",
    "degraded_s": "degraded time, 0 < a(t) < 1 (s)",
    "lost_s": "lost service ∫(1 − a) dt (s)",
}


def configure_fonts() -> None:
    """Make every figure fall back to Noto Sans CJK for glyphs DejaVu Sans lacks.

    matplotlib (>= 3.6) falls back glyph by glyph through the *named* families of
    ``font.family`` (not through a generic family's list), so Korean and English mix in one
    label. Families that are not installed are left out (no findfont warnings elsewhere).
    Idempotent.
    """
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    families = [f for f in FONT_FALLBACK if f in installed]
    mpl.rcParams["font.family"] = [*families, "sans-serif"] if families else ["sans-serif"]
    mpl.rcParams["svg.fonttype"] = "path"  # self-contained SVG: glyphs as outlines


configure_fonts()


# ----------------------------------------------------------------------------- helpers


def _design_order() -> list[str]:
    try:
        from chaoslab.designs import DESIGNS

        return list(DESIGNS)
    except ImportError:  # pragma: no cover - the registry is part of the package
        return []


_PALETTE = [mpl.colormaps["tab10"](i) for i in range(10)] + [
    mpl.colormaps["tab20"](i) for i in range(1, 20, 2)
]


def design_color(design: str) -> Any:
    """The same colour for a design in every figure (by its place in the registry)."""
    order = _design_order()
    i = order.index(design) if design in order else len(order) + sum(map(ord, design))
    return _PALETTE[i % len(_PALETTE)]


def fmt_seconds(v: float) -> str:
    """Short human duration: 0.23 s, 12.6 s, 5.2 min, 1.5 h, never."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "never"
    if v == 0:
        return "0 s"
    if v < 0.01:
        return f"{v * 1000:.2g} ms"
    if v < 60:
        return f"{v:.3g} s"
    if v < 3600:
        return f"{v / 60:.3g} min"
    return f"{v / 3600:.3g} h"


def _cell_label(fault: str, target: str, multi_target: bool) -> str:
    return f"{fault} → {target}" if multi_target else fault


def _point_label(sweep: Sequence[str], point: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={_short_value(v)}" for k, v in zip(sweep, point, strict=True))


def _short_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{int(v)}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _grid(n: int, ncols: int, w: float, h: float) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _panels(df: pd.DataFrame, sweep: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per fault cell x sweep point, titled, fault-major (a row of panels per
    fault, one column per sweep point when `_panel_cols` says so); empty ones dropped."""
    cells = fault_cells(df)
    multi = _multi_target(cells)
    out = []
    for fault, target in cells:
        for point in sweep_points(df, sweep):
            sub = at_point(df, sweep, point)
            g = sub[(sub["fault"] == fault) & (sub["target"] == target)]
            if g.empty and len(sweep_points(df, sweep)) == 1:
                continue
            title = _cell_label(fault, target, multi)
            if sweep:
                title += f"\n{_point_label(sweep, point)}"
            out.append((title, g))
    return out


def _panel_cols(df: pd.DataFrame, sweep: Sequence[str], default: int) -> int:
    n = len(sweep_points(df, sweep))
    return n if 2 <= n <= 3 else default


def _symlog_time(ax: Axes, horizon: float, left: float = -LINTHRESH / 2) -> None:
    ax.set_xscale("symlog", linthresh=LINTHRESH, linscale=0.6)
    ax.set_xlim(left, horizon)
    ticks = [t for t in (0, 1, 3, 10, 30, 60, 180, 300, 600, 1800, 3600, 7200) if t <= horizon]
    ax.set_xticks(ticks)
    ax.set_xticklabels([_tick_label(t) for t in ticks])
    ax.axvline(0, color="0.3", lw=0.8, ls=":")


def _tick_label(t: float) -> str:
    if t >= 60 and t % 60 == 0:
        return f"{int(t // 60)}m"
    return f"{t:g}"


# ----------------------------------------------------------------------------- ECDF


def ecdf_recovery(
    results: Run | pd.DataFrame,
    *,
    metric: str = "recovery_s",
    horizon: float | None = None,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """ECDF of a per-trial duration per design; one panel per fault cell x sweep point.

    Log time axis. Trials that never recovered (``inf``) are drawn at the right in a grey
    band marked "not recovered", so the curve ends at 1 and the share that never recovered
    is the height of the last step. Zeros (the fault never touched availability) sit at
    the left edge.
    """
    df = trials_of(results)
    hz = horizon_of(results, horizon)
    sweep = sweep_columns(results)
    panels = _panels(df, sweep)
    fig, axes = _grid(len(panels), _panel_cols(df, sweep, ncols), 4.6, 3.4)
    vals = pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
    pos = vals[np.isfinite(vals) & (vals > 0)]
    # left edge: the decade below the fastest recovery; lower (at most 10 ms) when some
    # trials are 0, which are drawn at that edge
    decade = 10.0 ** math.floor(math.log10(float(pos.min()))) if pos.size else 0.01
    floor = min(decade, 0.01) if (vals == 0).any() else decade
    xlabel = _METRIC_LABELS.get(metric, f"{metric} (s)")
    if (vals == 0).any():
        xlabel += f"; 0 drawn at {floor:.2g} s"
    for ax, (ptitle, g) in zip(axes, panels, strict=True):
        _ecdf_panel(ax, g, metric, floor, hz)
        ax.set_title(ptitle, fontsize=9)
        ax.set_xlabel(xlabel)
    _legend_outside(fig, axes)
    fig.suptitle(title or f"ECDF of {metric} per design (log time axis)", fontsize=11)
    return fig


def _ecdf_panel(ax: Axes, g: pd.DataFrame, metric: str, floor: float, hz: float) -> None:
    """One panel: a step ECDF per design, unrecovered trials at 2 x the horizon."""
    for design, gd in g.groupby("design", sort=False):
        x = pd.to_numeric(gd[metric], errors="coerce").to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            continue
        x = np.where(np.isinf(x), hz * 2.0, np.maximum(x, floor))
        xs, ys = ecdf(x)
        xs = np.concatenate([[floor], xs])
        ys = np.concatenate([[0.0], ys])
        ax.step(xs, ys, where="post", color=design_color(str(design)), label=str(design))
    ax.set_xscale("log")
    ax.set_xlim(floor, hz * 3.0)
    _log_ticks(ax, floor, hz * 3.0)
    ax.axvspan(hz * 1.4, hz * 3.0, color="0.88", zorder=0)
    ax.text(
        hz * 1.3,
        0.03,
        f"not recovered\nwithin {fmt_seconds(hz)} →",
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.35",
    )
    if g.empty:
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.5")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of trials (fraction)")
    ax.grid(True, which="major", alpha=0.3)


def _log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Plain-number ticks on a log axis (0.01, 1, 30 rather than 10^-2): 1-2-5 steps when
    the axis spans at most three decades, one tick per decade otherwise."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 3.2 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_outside(fig: Figure, axes: Sequence[Axes], title: str | None = None) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            # as many columns as the figure's width holds for its longest label
            ncols=max(
                1,
                min(len(handles), 5, int(fig.get_figwidth() * 11 // max(len(k) for k in handles))),
            ),
            fontsize=8,
            frameon=False,
            title=title,
            title_fontsize=7,
        )


# ----------------------------------------------------------------------------- a(t)


def time_grid(horizon: float, left: float = -LINTHRESH / 2, n: int = 400) -> np.ndarray:
    """Times (s) dense where the symlog axis is: linear near 0, geometric after."""
    return analysis.time_grid(horizon, left, n, linear_to=LINTHRESH)


#: one a(t) series of a panel: (label, colour, its trials); a panel: (title, series)
_Series = tuple[str, Any, pd.DataFrame]
_Panel = tuple[str, list[_Series]]


def availability(
    results: Run | pd.DataFrame,
    *,
    horizon: float | None = None,
    designs: Iterable[str] | None = None,
    faults: Iterable[str] | None = None,
    by: str = "fault",
    ncols: int = 2,
    band: tuple[float, float] = (0.05, 0.95),
    title: str | None = None,
) -> Figure:
    """Median a(t) with a p5-p95 band across trials, all panels on the same symlog time
    axis (s).

    ``by="fault"``: one panel per fault cell x sweep point, one series per design.
    ``by="design"``: small multiples, one panel per design, one series per fault cell x
    sweep point — the readable choice when many designs share one fault.
    """
    df = _availability_trials(trials_of(results), designs, faults, by)
    hz = horizon_of(results, horizon)
    grid = time_grid(hz)
    sweep = sweep_columns(results)
    if by == "fault":
        layout = _by_fault(df, sweep)
        ncols = _panel_cols(df, sweep, ncols)
    else:
        layout = _by_design(df, sweep)
    h = 3.3 if by == "fault" or len(layout) <= ncols else 2.0
    fig, axes = _grid(len(layout), ncols, 6.0, h)
    for k_ax, (ax, (ptitle, series)) in enumerate(zip(axes, layout, strict=True)):
        _availability_panel(ax, series, grid, band)
        _symlog_time(ax, hz)
        ax.set_ylim(-0.05, 1.07)
        ax.set_title(ptitle, fontsize=9)
        # small multiples: the shared time axis is labelled once per column, at the bottom
        if by == "fault" or k_ax >= len(layout) - ncols:
            ax.set_xlabel("time since the fault (s; linear to 1 s, log after)")
        ax.set_ylabel("a(t) (fraction)" if by == "design" else "availability a(t) (fraction)")
        ax.grid(True, alpha=0.3)
    _legend_outside(
        fig, axes, title="median a(t), lines offset by < 0.02 so coinciding series stay visible"
    )
    fig.suptitle(
        title
        or f"Availability after the fault: median and p{band[0] * 100:g}–p{band[1] * 100:g} "
        "band across trials",
        fontsize=11,
    )
    return fig


def _availability_trials(
    df: pd.DataFrame, designs: Iterable[str] | None, faults: Iterable[str] | None, by: str
) -> pd.DataFrame:
    if "a_t" not in df.columns:
        raise NothingToShow("this run stores no availability change points (a_t/a_v columns)")
    if designs is not None:
        df = df[df["design"].isin(list(designs))]
    if faults is not None:
        df = df[df["fault"].isin(list(faults))]
    if df.empty:
        raise NothingToShow("no trials of the requested designs/faults in this run")
    if by not in ("fault", "design"):
        raise NothingToShow(f"by={by!r}: use 'fault' or 'design'")
    return df


def _by_fault(df: pd.DataFrame, sweep: Sequence[str]) -> list[_Panel]:
    return [
        (ptitle, [(str(d), design_color(str(d)), gd) for d, gd in g.groupby("design", sort=False)])
        for ptitle, g in _panels(df, sweep)
    ]


def _by_design(df: pd.DataFrame, sweep: Sequence[str]) -> list[_Panel]:
    cells = fault_cells(df)
    multi = _multi_target(cells)
    one_fault = len({c[0] for c in cells}) == 1
    series_keys = [(f, t, pt) for f, t in cells for pt in sweep_points(df, sweep)]
    cmap = mpl.colormaps["tab10"]
    order = _design_order()
    groups = sorted(
        df.groupby("design", sort=False),
        key=lambda kv: order.index(str(kv[0])) if kv[0] in order else len(order),
    )
    layout: list[_Panel] = []
    for d, gd in groups:  # registry order: the article's designs first
        series = []
        for k, (f, t, pt) in enumerate(series_keys):
            g = at_point(gd[(gd["fault"] == f) & (gd["target"] == t)], sweep, pt)
            if g.empty:
                continue
            cell = t if one_fault else _cell_label(f, t, multi)
            parts = ([cell] if len(cells) > 1 else []) + (
                [_point_label(sweep, pt)] if sweep else []
            )
            series.append((" · ".join(parts) or str(d), cmap(k % 10), g))
        layout.append((str(d), series))
    return layout


def _availability_panel(
    ax: Axes, series: list[_Series], grid: np.ndarray, band: tuple[float, float]
) -> None:
    for k, (label, c, g) in enumerate(series):
        lo, med, hi = availability_bands(g, grid, band)
        # series that behave the same would hide each other: offset each median line
        # by a hair (|offset| < 0.02, far below any real step in a(t))
        dodge = (k - (len(series) - 1) / 2) * min(0.008, 0.04 / max(len(series), 1))
        ax.fill_between(grid, lo, hi, step="post", color=c, alpha=0.15, lw=0)
        ax.step(grid, med + dodge, where="post", color=c, lw=1.6, label=label)
    if not series:
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.5")


def _multi_target(cells: Sequence[tuple[str, str]]) -> bool:
    """Whether panel titles must name the target: several targets, or a fault twice."""
    return len({t for _, t in cells}) > 1 or len(cells) != len({f for f, _ in cells})


# ----------------------------------------------------------------------------- phases


#: phase of a milestone, by name: (phase, colour). First matching prefix wins.
PHASES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("recovered", ("service.recovered",), "black"),
    (
        "detection",
        (
            "node.not_ready",
            "pods.not_ready",
            "container.died",
            "pod.not_ready",
            "lb.marked_down",
            "bfd.",
            "memberlist.",
            "lease.",
            "vrrp.master_down",
            "bgp.hold",
        ),
        "#c44e52",
    ),
    (
        "endpoints / proxy",
        ("endpoints.removed", "proxy.", "nginx.", "ingress.upstream_removed"),
        "#dd8452",
    ),
    (
        "eviction / deletion",
        (
            "node.tainted",
            "pod.evicted",
            "pod.deleted",
            "pod.sigterm",
            "pod.gone",
            "pod.force_deleted",
        ),
        "#8172b3",
    ),
    (
        "VIP move",
        ("vip.", "vrrp.", "arp.", "garp.", "kube_vip.", "kube-vip.", "metallb.", "leader."),
        "#55a868",
    ),
    ("route convergence", ("bgp.", "route.", "ecmp.", "fib.", "router."), "#64b5cd"),
    (
        "replacement / restart",
        (
            "replacement.",
            "container.restarted",
            "pod.ready",
            "endpoints.added",
            "lb.marked_up",
            "ingress.restarted",
        ),
        "#4c72b0",
    ),
    ("node back", ("node.ready", "node.powered_on", "node.reconnected", "kubelet."), "#937860"),
)


def milestone_phase(name: str) -> tuple[str, str]:
    """(phase, colour) of a milestone name; unknown names are 'other' (grey)."""
    for phase, prefixes, color in PHASES:
        if any(name == p or (p.endswith(".") and name.startswith(p)) for p in prefixes):
            return phase, color
    return "other", "0.6"


def phase_timeline(
    results: Run | pd.DataFrame,
    *,
    horizon: float | None = None,
    min_share: float = 0.5,
    title: str | None = None,
) -> Figure:
    """Waterfall of median milestone times: one row per design x fault (x sweep point).

    Each row is a chain of segments from one milestone's median to the next, coloured by
    the phase of the milestone reached at its end (detection, endpoints, eviction, VIP
    move, route convergence, replacement, node back), with a dot per milestone. The black
    diamond is the median recovery; what happens after it is drawn faded (users no longer
    see it). Milestones seen in fewer than ``min_share`` of a row's trials are left out.
    """
    df = trials_of(results)
    hz = horizon_of(results, horizon)
    sweep = sweep_columns(results)
    med = phase_medians(df, sweep)
    med = med[med["share"] >= min_share]
    if med.empty:
        raise NothingToShow("no milestone happened in this run's trials")
    keys = [*KEY, *sweep]
    rows = list(dict.fromkeys(med[keys].itertuples(index=False, name=None)))
    rec_median = analysis.recovery_medians(df, keys)
    fig = Figure(figsize=(11, 1.3 + 0.34 * len(rows)), layout="constrained")
    ax = fig.subplots()
    used: dict[str, str] = {}
    for y, key in enumerate(rows):
        g = med
        for k, v in zip(keys, key, strict=True):
            g = g[g[k] == v]
        # the median recovery of the row's trials (0: the fault never touched availability,
        # so there is no service.recovered milestone; inf: not recovered in the horizon)
        _timeline_row(ax, y, g.sort_values("median_s"), rec_median.get(key, math.inf), hz, used)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_row_label(key, sweep) for key in rows], fontsize=7.5)
    ax.set_ylim(len(rows) - 0.4, -0.7)
    _symlog_time(ax, hz, left=0)
    ax.set_xlabel("median time of each milestone after the fault (s; linear to 1 s, log after)")
    ax.grid(True, axis="x", alpha=0.3)
    _phase_legend(fig, used)
    fig.suptitle(title or "Phase timeline: median milestone times per design × fault", fontsize=11)
    return fig


def _timeline_row(
    ax: Axes, y: int, g: pd.DataFrame, t_rec: float, hz: float, used: dict[str, str]
) -> None:
    """One row: a segment per milestone up to its median, faded after the recovery."""
    prev = 0.0
    for t, name in zip(g["median_s"].astype(float), g["milestone"].astype(str), strict=True):
        phase, color = milestone_phase(name)
        used[phase] = color
        if phase == "recovered":
            continue
        after = t > t_rec
        ax.barh(
            y,
            t - prev,
            left=prev,
            height=0.6,
            color=color,
            alpha=0.3 if after else 0.9,
            edgecolor="white",
            lw=0.4,
        )
        ax.plot(
            [t], [y], "o", color=color, mec="white", mew=0.5, ms=3.5, alpha=0.4 if after else 1.0
        )
        prev = t
    if math.isfinite(t_rec):
        ax.plot([t_rec], [y], "D", color="black", ms=5, zorder=5)
        note = "no outage" if t_rec == 0 else fmt_seconds(t_rec)
        ax.text(t_rec, y - 0.38, f" {note}", fontsize=6.5, va="bottom")
    else:
        ax.plot([hz], [y], marker=">", color="black", ms=5, clip_on=False)


def _row_label(key: tuple[Any, ...], sweep: Sequence[str]) -> str:
    design, fault, target = key[:3]
    lab = f"{design} · {fault}"
    if target:
        lab += f" → {target}"
    if sweep:
        lab += f" · {_point_label(sweep, key[3:])}"
    return lab


def _phase_legend(fig: Figure, used: Mapping[str, str]) -> None:
    handles: list[Any] = [
        Patch(color=c, label=p)
        for p, _, c in [*PHASES, ("other", (), "0.6")]
        if p in used and p != "recovered"
    ]
    handles.append(Line2D([], [], marker="D", color="black", ls="", label="median recovery"))
    handles.append(
        Line2D([], [], marker=">", color="black", ls="", label="not recovered in horizon")
    )
    fig.legend(
        handles=handles,
        loc="outside right upper",
        fontsize=7.5,
        frameon=False,
        title="phase reached",
        title_fontsize=8,
    )


# ----------------------------------------------------------------------------- loss


def loss_heatmap(
    results: Run | pd.DataFrame,
    *,
    metrics: Sequence[str] = ("lost_s", "downtime_s"),
    stat: str = "mean",
    title: str | None = None,
) -> Figure:
    """Heat map per metric: rows design (x sweep point), columns fault cells, colour on a
    log scale (values span milliseconds to the horizon), each cell annotated."""
    df = trials_of(results)
    sweep = sweep_columns(results)
    cells = fault_cells(df)
    multi = _multi_target(cells)
    row_keys = list(df[["design", *sweep]].drop_duplicates().itertuples(index=False, name=None))
    # side by side while narrow, stacked when there are many fault columns
    stacked = len(cells) > 4
    w = 3.4 + 1.5 * len(cells)
    h = 1.8 + 0.42 * len(row_keys)
    fig = Figure(
        figsize=(w, h * len(metrics)) if stacked else (w * len(metrics), h),
        layout="constrained",
    )
    axes = (
        fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
        if stacked
        else fig.subplots(1, len(metrics), squeeze=False)[0]
    )
    col_labels = [_cell_label(f, t, multi) for f, t in cells]
    row_labels = [
        str(rk[0]) + (f" · {_point_label(sweep, rk[1:])}" if sweep else "") for rk in row_keys
    ]
    for ax, metric in zip(axes, metrics, strict=True):
        mat = analysis.cost_table(df, metric, stat, sweep).to_numpy(dtype=float)
        _heat_panel(fig, ax, mat, metric)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels(col_labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(row_keys)))
        ax.set_yticklabels(row_labels, fontsize=8)
        ax.set_title(f"{stat} {_METRIC_LABELS.get(metric, metric)}", fontsize=9)
        ax.set_xlabel("fault")
    fig.suptitle(title or "Cost of each fault per design", fontsize=11)
    return fig


def _heat_panel(fig: Figure, ax: Axes, mat: np.ndarray, metric: str) -> None:
    """The log-coloured matrix, each cell annotated, its colour bar."""
    pos = mat[np.isfinite(mat) & (mat > 0)]
    vmin = max(float(pos.min()), 1e-3) if pos.size else 1e-3
    vmax = max(float(pos.max()), vmin * 10) if pos.size else 1.0
    shown = np.where(mat > 0, np.maximum(mat, vmin), np.nan)
    im = ax.imshow(
        np.ma.masked_invalid(shown),
        norm=LogNorm(vmin=vmin, vmax=vmax),
        cmap="YlOrRd",
        aspect="auto",
    )
    ax.set_facecolor("0.93")
    # white text on the darkest 40 % of the log colour range
    dark_from = math.log(vmin) + 0.6 * (math.log(vmax) - math.log(vmin))
    for (i, j), v in np.ndenumerate(mat):
        text = "–" if np.isnan(v) else fmt_seconds(v)
        dark = np.isfinite(v) and v > 0 and math.log(max(v, vmin)) > dark_from
        color = "white" if dark else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=color)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(f"{metric} (s, log scale; grey = 0 or not run)", fontsize=8)


# ----------------------------------------------------------------------------- tornado


def _with_unit(key: str, value: Any) -> str:
    """A swept value as text with the parameter's unit when it is a duration (s)."""
    from chaoslab.params import CATALOGUE

    text = _short_value(value)
    unit = CATALOGUE[key].unit if key in CATALOGUE else ""
    return f"{text} s" if unit == "s" and not text.endswith(("s", "m", "h")) else text


def tornado(
    results: Run | pd.DataFrame,
    *,
    metric: str = "recovery_s",
    stat: str = "median",
    sweep: Sequence[str] | None = None,
    baseline: Mapping[str, Any] | None = None,
    max_rows: int = 30,
    title: str | None = None,
) -> Figure:
    """Tornado chart of one-at-a-time sensitivity (`chaoslab.analysis.sensitivity_spans`).

    One row per swept parameter (x design x fault cell when the trials hold several): the
    bar spans the statistic over the parameter's values, blue below the row's baseline
    (black tick), orange above; the end labels name the values. Rows are sorted by relative
    span, widest on top. The time axis turns logarithmic when the rows span > 30x.
    """
    df = trials_of(results)
    keys = list(sweep) if sweep is not None else sweep_columns(results)
    keys = [k for k in keys if k in df.columns and df[k].nunique() > 1]
    if not keys:
        raise NothingToShow("no swept parameter with more than one value in these trials")
    spans = analysis.sensitivity_spans(df, keys, metric=metric, stat=stat, baseline=baseline)
    if spans.empty:
        raise NothingToShow(f"{metric} never recovered at any swept value: nothing to show")
    spans = spans.iloc[-max_rows:]
    one_cell = len(df[list(KEY)].drop_duplicates()) == 1
    finite = [v for v in spans[["low", "high", "baseline"]].to_numpy().ravel() if np.isfinite(v)]
    pos = [v for v in finite if v > 0]
    log = bool(pos) and max(pos) / min(pos) > 30
    right = max([*finite, 1e-9]) * (3.0 if log else 1.15)
    fig = Figure(figsize=(10, 1.4 + 0.42 * len(spans)), layout="constrained")
    ax = fig.subplots()
    for y, r in enumerate(spans.itertuples()):
        _tornado_bar(ax, y, r, right)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(pos) / 3, right * 3)
    else:
        ax.set_xlim(min(0.0, *spans["low"]), right * 1.1)
    labels = [
        str(r.key) if one_cell else f"{r.key} — {r.design} · {r.fault} → {r.target}"
        for r in spans.itertuples()
    ]
    ax.set_yticks(range(len(spans)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.6, len(spans) - 0.4)
    unit = "s" if metric.endswith("_s") else "fraction"
    ax.set_xlabel(f"{stat} {metric} ({unit}) over each parameter's swept values")
    _tornado_legend(fig)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(
        title or f"Sensitivity of {stat} {metric} to each swept parameter (labels: its values)",
        fontsize=10,
    )
    return fig


def _tornado_bar(ax: Axes, y: int, r: Any, right: float) -> None:
    """One row of `sensitivity_spans`: blue below the baseline, orange above, values named."""
    lo, hi = float(r.low), float(r.high)
    hi_draw = hi if np.isfinite(hi) else right
    b = r.baseline if np.isfinite(r.baseline) else hi_draw
    b = min(max(b, lo), hi_draw)
    ax.barh(y, b - lo, left=lo, height=0.55, color="#4c72b0")
    ax.barh(y, hi_draw - b, left=b, height=0.55, color="#dd8452")
    ax.plot([b, b], [y - 0.36, y + 0.36], color="black", lw=1.2)
    ax.text(lo, y, f"{_with_unit(r.key, r.low_value)} ", ha="right", va="center", fontsize=7)
    never = "" if np.isfinite(hi) else " (never)"
    hi_text = f" {_with_unit(r.key, r.high_value)}{never}"
    ax.text(hi_draw, y, hi_text, ha="left", va="center", fontsize=7)


def _tornado_legend(fig: Figure) -> None:
    fig.legend(
        handles=[
            Patch(color="#4c72b0", label="below the baseline (others at their middle value)"),
            Patch(color="#dd8452", label="above the baseline"),
            Line2D([], [], color="black", label="baseline"),
        ],
        loc="outside lower center",
        ncols=3,
        fontsize=7,
        frameon=False,
    )


# ----------------------------------------------------------------------------- pred vs meas


def predicted_vs_measured(
    predicted: Run | pd.DataFrame,
    measured: Run | pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    select: Mapping[str, Any] | None = None,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """Per metric and milestone: the predicted ECDF (line, p5-p95 shaded) of each matched
    design x fault, and the measured trials as points at their measured ECDF heights.
    Against a lab run the predicted metrics are those the lab's prober would have seen
    (`chaoslab.compare.comparable_cells`)."""
    from chaoslab.compare import comparable_cells, compare, compared_metrics

    # against a lab run: the prediction as the lab's prober sees it, as compare does
    pairs, _ = comparable_cells(predicted, measured, select)
    comp = compare(predicted, measured, select=select)
    if metrics is None:
        metrics = compared_metrics(
            pd.concat([p for p, _, _ in pairs]), pd.concat([m for _, m, _ in pairs])
        )
    fig, axes = _grid(len(metrics), ncols, 4.4, 3.3)
    for ax, metric in zip(axes, metrics, strict=True):
        allx: list[float] = []
        for i, (p, m, label) in enumerate(pairs):
            c = mpl.colormaps["tab10"](i % 10)
            allx += _predicted_ecdf(ax, _finite_or_inf(p, metric), c, f"predicted · {label}")
            marker = _MARKERS[i % len(_MARKERS)]
            allx += _measured_points(ax, _finite_or_inf(m, metric), c, marker, label)
        pos = [x for x in allx if x > 0]
        if pos and max(pos) / min(pos) > 30:
            ax.set_xscale("log")
            _log_ticks(ax, min(pos), max(pos))
        ax.set_ylim(0, 1.03)
        stats = [
            f"cover {r.coverage:.0%}, KS {r.ks:.2f}"
            for r in comp.cells[comp.cells["metric"] == metric].itertuples()
        ]
        ax.set_title(f"{metric}\n{'; '.join(stats)}" if len(stats) == 1 else metric, fontsize=9)
        ax.set_xlabel(
            _METRIC_LABELS.get(metric, f"{milestone_name(metric)} time after the fault (s)")
        )
        ax.set_ylabel("share of trials (fraction)")
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes)
    fig.suptitle(
        title or "Predicted (lines, p5–p95 shaded) vs measured trials (points)", fontsize=11
    )
    return fig


_MARKERS = "osD^v<>"


def _finite_or_inf(df: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric's values without NaN (inf kept: it counts in the ECDF's denominator)."""
    x = df[metric].to_numpy(dtype=float) if metric in df else np.array([])
    return x[~np.isnan(x)]


def _predicted_ecdf(ax: Axes, px: np.ndarray, c: Any, label: str) -> list[float]:
    if not px.size:
        return []
    xs, ys = ecdf(px[np.isfinite(px)])
    if xs.size:
        ax.step(xs, ys * (xs.size / px.size), where="post", color=c, lw=1.4, label=label)
        lo, hi = np.quantile(px, [0.05, 0.95], method="inverted_cdf")
        if np.isfinite(lo) and np.isfinite(hi):
            ax.axvspan(lo, hi, color=c, alpha=0.08)
    return xs.tolist()


def _measured_points(ax: Axes, mx: np.ndarray, c: Any, marker: str, label: str) -> list[float]:
    if not mx.size:
        return []
    xs, _ = ecdf(mx[np.isfinite(mx)])
    # Hazen plotting positions (i - 0.5) / n: unbiased for a handful of trials
    ys = (np.arange(1, xs.size + 1) - 0.5) / mx.size
    ax.plot(
        xs,
        ys,
        ls="",
        marker=marker,
        mfc="none",
        color=c,
        ms=6,
        mew=1.3,
        label=f"measured · {label}",
    )
    return xs.tolist()


# ----------------------------------------------------------------------------- files


def save(fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write a figure as ``path.<fmt>`` for each format (atomically); return the paths."""
    from io import BytesIO

    from chaoslab.results import atomic_write_bytes

    base = Path(path)
    out = []
    for fmt in formats:
        buf = BytesIO()
        fig.savefig(buf, format=fmt, dpi=130 if fmt == "png" else None)
        p = base.with_suffix(f".{fmt}")
        atomic_write_bytes(p, buf.getvalue())
        out.append(p)
    return out


def figures_for_run(run: Run, vs: Run | None = None) -> dict[str, Figure]:
    """Every figure that fits a run, by name (the ones whose data the run lacks are
    skipped: no a(t) columns, no milestones, no sweep with two values, no prediction)."""
    df = run.trials
    if df.empty:
        raise NothingToShow(f"{run.path}: the run has no trials")
    figs: dict[str, Figure] = {"ecdf-recovery": ecdf_recovery(run)}
    if "a_t" in df.columns and df["a_t"].notna().all():
        if df["design"].nunique() <= 4:
            figs["availability"] = availability(run)
        else:  # many designs on one axis do not read: small multiples, a figure per fault
            for fault in df["fault"].drop_duplicates():
                figs[f"availability-{fault}"] = availability(
                    run,
                    faults=[fault],
                    by="design",
                    ncols=3,
                    title=f"Availability after {fault}: median and p5–p95 band, per design",
                )
    if milestone_columns(df):
        with contextlib.suppress(NothingToShow):
            figs["phases"] = phase_timeline(run)
    figs["loss"] = loss_heatmap(run)
    sweep = [k for k in sweep_columns(run) if df[k].nunique() > 1]
    if sweep:
        with contextlib.suppress(NothingToShow):  # nothing recovered at any value
            figs["sensitivity"] = tornado(run, sweep=sweep, metric="lost_s", stat="mean")
    pred = vs
    if pred is None and run.meta.get("mode") == "live":
        from chaoslab.compare import stored_prediction

        pred = stored_prediction(run)
    if pred is not None:
        figs["predicted-vs-measured"] = predicted_vs_measured(pred, run)
    return figs
