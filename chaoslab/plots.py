"""Figures of run folders (matplotlib; an edge module, the core never imports it).

Every function takes results (a `Run` or its trials DataFrame) and returns a matplotlib
`Figure` built without pyplot, so nothing here opens a window or keeps global figure state;
callers save it (`save`) or let a notebook display it.

Figures (the numbers behind them come from `chaoslab.analysis`):

- `ecdf_recovery`       ECDF of ``recovery_s`` per design, log time axis, trials with no
                        outage in a "0 s" band at the left, unrecovered trials in a band at
                        the right;
- `availability`        median a(t) and its p5-p95 band across trials, per design, on a
                        symlog time axis (linear near the fault, logarithmic after), so a
                        3 s and a 6 min outage read at a glance on one axis;
- `phase_timeline`      waterfall of median milestone times per design x fault;
- `loss_heatmap`        mean ``lost_s`` and ``downtime_s`` per design x fault;
- `tornado`             sensitivity of a metric to each numeric swept parameter;
- `predicted_vs_measured` predicted ECDF with the measured trials as points, per metric
                        and milestone.

Series: every series of a run gets its own colour (`series_colors`: designs in registry
order, a variant right after its base design), so no two series of a panel share one.
Layout: fixed margins in inches instead of matplotlib's constrained layout, which cost more
than drawing the figures (issue 13 item 3).

Text: the article's readers are Korean-speaking operators, so the font list falls back to
Noto Sans CJK for Hangul/Kana/Han glyphs that DejaVu Sans lacks (`configure_fonts`).
Every axis label names its unit.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from chaoslab import analysis
from chaoslab.analysis import (
    KEY,
    NothingToShow,
    base_design,
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

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = [
    "AVAILABILITY_FLOOR",
    "ECDF_POINTS",
    "FigureFile",
    "availability",
    "availability_own_node",
    "configure_fonts",
    "design_color",
    "design_order",
    "ecdf_recovery",
    "figure_cost",
    "figure_makers",
    "figures_for_run",
    "fmt_seconds",
    "loss_heatmap",
    "not_run_blocks",
    "own_node_crash",
    "phase_timeline",
    "png_bytes",
    "predicted_vs_measured",
    "save",
    "series_colors",
    "step_band",
    "tornado",
    "write_figures",
]

#: fonts tried in order for every glyph: DejaVu for Latin, Noto CJK for Hangul/Kana/Han
FONT_FALLBACK = ("DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP")
#: the lowest availability the band can show below 1 is 0; kept as a name for the tests
AVAILABILITY_FLOOR = 0.0
#: symlog: linear within +-LINTHRESH s of the fault, logarithmic beyond (seconds)
LINTHRESH = 1.0
#: at most this many points per ECDF step line: the curve moves by < 1/ECDF_POINTS in
#: height between two kept points, invisible at any size a page shows
ECDF_POINTS = 200

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
    # SVG output without a date: the same inputs give the same file
    mpl.rcParams["svg.hashsalt"] = "chaoslab"


configure_fonts()


# ----------------------------------------------------------------------------- series


def _design_order() -> list[str]:
    try:
        from chaoslab.designs import DESIGNS

        return list(DESIGNS)
    except ImportError:  # pragma: no cover - the registry is part of the package
        return []


#: 20 colours, no two alike: tab10, then tab20's light shades of the same hues
_PALETTE = [mpl.colormaps["tab10"](i) for i in range(10)] + [
    mpl.colormaps["tab20"](i) for i in range(1, 20, 2)
]
#: past 20 series colours repeat, each round with its own dash pattern
_DASHES = ("-", "--", ":", "-.")


def _sort_key(label: str, order: Sequence[str]) -> tuple[int, int, str]:
    base = base_design(label, order)
    i = order.index(base) if base in order else len(order)
    return (i, 0 if label == base else 1, label if base in order else f"~{label}")


def design_order(labels: Iterable[str]) -> list[str]:
    """Design labels in registry order, each variant right after its base design
    (``ingress-vip-bgp`` then ``ingress-vip-bgp+bfd``), labels of their own last."""
    order = _design_order()
    if isinstance(labels, pd.Series):  # a trials column: its few values, not every row
        labels = labels.unique()
    return sorted(dict.fromkeys(map(str, labels)), key=lambda lab: _sort_key(lab, order))


def series_colors(labels: Iterable[str]) -> dict[str, Any]:
    """A colour per label, distinct for the first 20 (in `design_order`)."""
    return {lab: _PALETTE[i % len(_PALETTE)] for i, lab in enumerate(design_order(labels))}


def _dash(labels: Sequence[str], label: str) -> str:
    return _DASHES[(design_order(labels).index(label) // len(_PALETTE)) % len(_DASHES)]


def design_color(design: str) -> Any:
    """The colour of a design by its place in the registry (one figure of one design
    set; figures of a run use `series_colors`, which also tells variants apart)."""
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")


# ----------------------------------------------------------------------------- layout


def _grid(
    n: int, ncols: int, w: float, h: float, *, legend_rows: int = 0, top: float = 0.75
) -> tuple[Figure, list[Axes]]:
    """``n`` panels of ``w`` x ``h`` inches (axes and their labels) in ``ncols`` columns,
    room for a suptitle and ``legend_rows`` legend lines below, margins fixed in inches."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    bottom = 0.15 + 0.19 * legend_rows + (0.25 if legend_rows else 0.0)
    fig = Figure(figsize=(w * ncols, h * nrows + top + bottom))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    _margins(fig, nrows, ncols, left=0.75, right=0.2, top=top, bottom=bottom + 0.55,
             hgap=0.95, wgap=0.8)  # fmt: skip
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _margins(
    fig: Figure,
    nrows: int,
    ncols: int,
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    hgap: float = 0.0,
    wgap: float = 0.0,
) -> None:
    """Place the axes with margins and gaps in inches (what constrained layout would
    compute, known ahead here because labels and legends are sized by us)."""
    w, h = fig.get_size_inches()
    ah = max((h - top - bottom - (nrows - 1) * hgap) / nrows, 0.3)
    aw = max((w - left - right - (ncols - 1) * wgap) / ncols, 0.3)
    fig.subplots_adjust(
        left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h,
        hspace=hgap / ah, wspace=wgap / aw,
    )  # fmt: skip


def _suptitle(fig: Figure, text: str, size: float = 11) -> None:
    fig.suptitle(text, fontsize=size, y=1 - 0.12 / fig.get_figheight(), va="top")


def _legend_cols(fig: Figure, labels: Sequence[str]) -> int:
    # as many columns as the figure's width holds for its longest label
    longest = max((len(k) for k in labels), default=1)
    return max(1, min(len(labels), 5, int(fig.get_figwidth() * 11 // max(longest + 4, 1))))


def _legend_rows(n_labels: int, width: float, longest: int) -> int:
    ncols = max(1, min(n_labels, 5, int(width * 11 // max(longest + 4, 1))))
    return math.ceil(n_labels / ncols) + 1  # + the title line


def _legend_below(fig: Figure, axes: Sequence[Axes], title: str | None = None) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            bbox_to_anchor=(0.5, 0.1 / fig.get_figheight()),
            ncols=_legend_cols(fig, list(handles)),
            fontsize=8,
            frameon=False,
            title=title,
            title_fontsize=7,
        )


def _symlog_time(ax: Axes, horizon: float, left: float = -LINTHRESH / 2) -> None:
    ax.set_xscale("symlog", linthresh=LINTHRESH, linscale=0.6)
    ax.set_xlim(left, horizon)
    ticks = _symlog_values(horizon)
    # a locator, not set_xticks: ticks are made when drawn, so an inner panel whose axis
    # `_bare_axis` empties never makes its ten
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([_tick_label(t) for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())  # minor ticks: thousands of tick objects
    ax.axvline(0, color="0.3", lw=0.8, ls=":")


def _symlog_values(horizon: float) -> list[float]:
    """The ticks of `_symlog_time` up to ``horizon`` (s)."""
    return [t for t in (0, 1, 3, 10, 30, 60, 180, 300, 600, 1800, 3600, 7200) if t <= horizon]


def _tick_label(t: float) -> str:
    if t >= 60 and t % 60 == 0:
        return f"{int(t // 60)}m"
    return f"{t:g}"


def _panels(df: pd.DataFrame, sweep: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per fault cell x sweep point, titled, fault-major (a row of panels per
    fault, one column per sweep point when `_panel_cols` says so); empty ones dropped."""
    cells = fault_cells(df)
    multi = _multi_target(cells)
    points = sweep_points(df, sweep)
    by_panel = _groups(df, ["fault", "target", *sweep])
    out = []
    for fault, target in cells:
        for point in points:
            g = by_panel.get((fault, target, *point), df.iloc[:0])
            if g.empty and len(points) == 1:
                continue
            title = _cell_label(fault, target, multi)
            if sweep:
                title += f"\n{_point_label(sweep, point)}"
            out.append((title, g))
    return out


def _groups(df: pd.DataFrame, keys: Sequence[str]) -> dict[tuple[Any, ...], pd.DataFrame]:
    """The trials of every group of ``keys`` by its values: one groupby, where a mask
    per panel and series (`at_point`) cost more than the availability panels' drawing."""
    return {(k if isinstance(k, tuple) else (k,)): g
            for k, g in df.groupby(list(keys), sort=False)}  # fmt: skip


def _panel_cols(df: pd.DataFrame, sweep: Sequence[str], default: int) -> int:
    n = len(sweep_points(df, sweep))
    return n if 2 <= n <= 3 else default


def _multi_target(cells: Sequence[tuple[str, str]]) -> bool:
    """Whether panel titles must name the target: several targets, or a fault twice."""
    return len({t for _, t in cells}) > 1 or len(cells) != len({f for f, _ in cells})


# ----------------------------------------------------------------------------- ECDF


def decimated_ecdf(x: np.ndarray, max_points: int = ECDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The ECDF's step tops (last height per distinct value), thinned to one point per
    1/``max_points`` of height: a post-step through them is within 1/``max_points`` of
    the full ECDF everywhere, and ends at (max x, 1)."""
    xs, ys = ecdf(x)
    if xs.size == 0:
        return xs, ys
    top = np.r_[xs[1:] != xs[:-1], True]
    xs, ys = xs[top], ys[top]
    if xs.size > max_points:
        levels = np.linspace(0.0, 1.0, max_points + 1)[1:]
        keep = np.unique(np.searchsorted(ys, levels - 1e-12, side="left"))
        xs, ys = xs[keep], ys[keep]
    return xs, ys


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
    is the height of the last step. Trials of 0 s (the fault never touched availability)
    rise in a "0 s" band at the left, each design at its own place in the band, so designs
    with no outage are seen and told apart instead of sitting on the axis.
    """
    df = trials_of(results)
    hz = horizon_of(results, horizon)
    sweep = sweep_columns(results)
    panels = _panels(df, sweep)
    labels = design_order(df["design"])
    colors = series_colors(labels)
    longest = max(len(lab) for lab in labels)
    ncols = _panel_cols(df, sweep, ncols)
    rows = _legend_rows(len(labels), 4.6 * min(ncols, len(panels)), longest)
    fig, axes = _grid(len(panels), ncols, 4.6, 3.1, legend_rows=rows)
    vals = pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
    pos = vals[np.isfinite(vals) & (vals > 0)]
    floor = 10.0 ** math.floor(math.log10(float(pos.min()))) if pos.size else 0.01
    zero_band = (floor / 10**0.9, floor / 10**0.1) if (vals == 0).any() else None
    xlabel = _METRIC_LABELS.get(metric, f"{metric} (s)")
    if zero_band is not None:
        xlabel += "; green band: 0 s, no outage"
    cols = min(ncols, len(panels))
    shared = ((xlabel, "share of trials (fraction)"), (_log_values(floor, hz * 3), _SHARE_TICKS))
    for k, (ax, (ptitle, g)) in enumerate(zip(axes, panels, strict=True)):
        _ecdf_panel(ax, g, metric, (floor, hz, zero_band), colors)
        ax.set_title(ptitle, fontsize=9, y=1.0)  # y: skips the per-draw title placement
        _outer_labels(ax, k, len(panels), cols, *shared)
    _legend_below(fig, axes)
    _suptitle(fig, title or f"ECDF of {metric} per design (log time axis)")
    return fig


def _ecdf_panel(
    ax: Axes,
    g: pd.DataFrame,
    metric: str,
    span: tuple[float, float, tuple[float, float] | None],
    colors: Mapping[str, Any],
) -> None:
    """One panel: a step ECDF per design, unrecovered trials at 2 x the horizon, zeros at
    the design's own place in the 0 s band."""
    floor, hz, zero_band = span
    groups = [(str(d), gd) for d, gd in g.groupby("design", sort=False)]
    groups.sort(key=lambda kv: list(colors).index(kv[0]) if kv[0] in colors else 0)
    with_zero = [d for d, gd in groups if (gd[metric] == 0).any()]
    zx: dict[str, float] = {}
    if zero_band is not None and with_zero:
        lo, hi = math.log10(zero_band[0]), math.log10(zero_band[1])
        steps = np.linspace(lo, hi, len(with_zero) + 2)[1:-1]
        zx = {d: float(10**s) for d, s in zip(with_zero, steps, strict=True)}
    left = zero_band[0] if zero_band is not None else floor
    labels = list(colors)
    for design, gd in groups:
        x = pd.to_numeric(gd[metric], errors="coerce").to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            continue
        x = np.where(np.isinf(x), hz * 2.0, x)
        x = np.where(x == 0, zx.get(design, floor), np.maximum(x, floor))
        xs, ys = decimated_ecdf(x)
        ax.step(np.r_[left, xs], np.r_[0.0, ys], where="post", color=colors.get(design),
                ls=_dash(labels, design) if design in colors else "-", label=design)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(left, hz * 3.0)
    _log_ticks(ax, floor, hz * 3.0)
    _ecdf_bands(ax, hz, zero_band)
    if g.empty:
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.5")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_locator(FixedLocator(_SHARE_TICKS))


#: the y ticks of the ECDF panels (what matplotlib's own locator picks, fixed)
_SHARE_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _outer_labels(
    ax: Axes, k: int, n: int, ncols: int, labels: tuple[str, str], ticks: tuple[Any, Any]
) -> None:
    """Small multiples on the same axes: the x axis (its ticks and label) under each
    column's last panel, the y axis left of each row's first panel; an inner panel keeps
    only the grid of the axes it shares (each tick is a few artists to create and its
    label a text to lay out: most of the drawing time of a figure of many panels).
    The axes' locators are set already; an outer axis gets its grid here."""
    if k >= n - ncols:
        ax.set_xlabel(labels[0], fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    else:
        _bare_axis(ax, "x", ticks[0])
    if k % ncols == 0:
        ax.set_ylabel(labels[1], fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _bare_axis(ax, "y", ticks[1])


def _bare_axis(ax: Axes, which: str, ticks: Sequence[float]) -> None:
    """No ticks on one axis of a panel, its grid lines drawn as one collection instead
    (where the outer panels' ticks are, in the style of ``ax.grid(alpha=0.3)``)."""
    from matplotlib.collections import LineCollection

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(NullLocator())
    axis.set_minor_locator(NullLocator())
    if which == "x":
        segs, tr = [[(t, 0.0), (t, 1.0)] for t in ticks], ax.get_xaxis_transform()
    else:
        segs, tr = [[(0.0, t), (1.0, t)] for t in ticks], ax.get_yaxis_transform()
    rc = mpl.rcParams
    ax.add_collection(
        LineCollection(segs, transform=tr, colors=rc["grid.color"], alpha=0.3, zorder=1.5,
                       linewidths=rc["grid.linewidth"], linestyles=rc["grid.linestyle"]),
        autolim=False,
    )  # fmt: skip


def _ecdf_bands(ax: Axes, hz: float, zero_band: tuple[float, float] | None) -> None:
    ax.axvspan(hz * 1.4, hz * 3.0, color="0.88", zorder=0)
    ax.text(hz * 1.3, 0.03, f"not recovered\nwithin {fmt_seconds(hz)} →", ha="right",
            va="bottom", fontsize=7, color="0.35")  # fmt: skip
    if zero_band is not None:
        ax.axvspan(*zero_band, color="#e6f2e6", zorder=0)
        # named below the axis, where no line runs: a label in the band hid the lines
        ax.text(math.sqrt(zero_band[0] * zero_band[1]), -0.02, "0 s", ha="center", va="top",
                fontsize=7, color="#2e7d32", transform=ax.get_xaxis_transform())  # fmt: skip


def _log_values(lo: float, hi: float) -> list[float]:
    """The ticks of `_log_ticks`."""
    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 3.2 else (1.0,)
    return [
        s * 10.0**e
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for s in subs
        if lo <= s * 10.0**e <= hi
    ]


def _log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Plain-number ticks on a log axis (0.01, 1, 30 rather than 10^-2): 1-2-5 steps when
    the axis spans at most three decades, one tick per decade otherwise."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_locator(FixedLocator(_log_values(lo, hi)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


# ----------------------------------------------------------------------------- a(t)


def time_grid(horizon: float, left: float = -LINTHRESH / 2, n: int = 400) -> np.ndarray:
    """Times (s) dense where the symlog axis is: linear near 0, geometric after."""
    return analysis.time_grid(horizon, left, n, linear_to=LINTHRESH)


def availability_bands(
    trials: pd.DataFrame, grid: np.ndarray, band: tuple[float, float] = (0.05, 0.95)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`chaoslab.analysis.availability_bands` without its loop over trials, and computed
    once per cell however many figures show it (the bands of the bundled run cost more
    than drawing its figures); the same numbers."""
    ts_list, vs_list = trials["a_t"].to_numpy(), trials["a_v"].to_numpy()
    n = len(ts_list)
    lens = np.fromiter((len(t) for t in ts_list), dtype=np.int64, count=n)
    ts = np.concatenate([np.asarray(t, dtype=float) for t in ts_list]) if n else np.zeros(0)
    vs = np.concatenate([np.asarray(v, dtype=float) for v in vs_list]) if n else np.zeros(0)
    h = hashlib.sha1(lens.tobytes())
    for part in (ts, vs, grid, np.asarray(band, dtype=float)):
        h.update(part.tobytes())
    key = h.hexdigest()
    if key not in _BANDS:
        if len(_BANDS) > 1024:
            _BANDS.clear()
        lo, med, hi = _band_quantiles(lens, ts, vs, grid, (band[0], 0.5, band[1]))
        _BANDS[key] = (lo, med, hi)
    return _BANDS[key]


#: bands by a digest of the trials' change points, grid and band (content, not identity)
_BANDS: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _band_quantiles(
    lens: np.ndarray, ts: np.ndarray, vs: np.ndarray, grid: np.ndarray, qs: Sequence[float]
) -> list[np.ndarray]:
    """``np.quantile(m, q, axis=0)`` (its "linear" method) for each q, where m is a(t) of
    every trial at every grid time (a change point at t holds from the first grid time
    >= t on, a = 1 before the first), without building m: a(t) takes few values, so the
    trials at each level and grid time are counted (+1 where a trial enters a level, -1
    where it leaves it, summed along time) and each order statistic read off the
    counts: O(change points + levels x grid) instead of a sort of trials x grid."""
    n, g = lens.size, grid.size
    if n == 0:
        return [np.full(g, np.nan) for _ in qs]
    before = np.ones_like(vs)  # the level each change point leaves: 1 before the first
    before[1:] = vs[:-1]
    before[(np.cumsum(lens) - lens)[lens > 0]] = 1.0
    levels = np.unique(np.r_[vs, 1.0])
    col = np.searchsorted(grid, ts, side="left")
    inside = col < g
    enter = np.searchsorted(levels, vs[inside]) * g + col[inside]
    leave = np.searchsorted(levels, before[inside]) * g + col[inside]
    moves = np.bincount(enter, minlength=levels.size * g) - np.bincount(
        leave, minlength=levels.size * g
    )
    count = np.cumsum(moves.reshape(levels.size, g), axis=1)
    count[np.searchsorted(levels, 1.0)] += n
    at_most = np.cumsum(count, axis=0)  # trials at or below each level, per grid time

    def order_stat(r: int) -> np.ndarray:  # the r-th smallest (0-based) per grid time
        return levels[(at_most <= r).sum(axis=0)]

    out = []
    for q in qs:
        # numpy's "linear" method: virtual index (n - 1) q between two order statistics
        vi = np.float64(n - 1) * np.float64(q)
        lo_i = min(math.floor(vi), n - 1)
        hi_i = min(lo_i + 1, n - 1)
        gamma = vi - lo_i
        a, b = order_stat(lo_i), order_stat(hi_i)
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return out


_AT_LABELS = ("time since the fault (s; linear to 1 s, log after)", "a(t) (fraction)")
_AT_TICKS = (0.0, 0.5, 1.0)

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
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """Median a(t) with a p5-p95 band across trials, all panels on the same symlog time
    axis (s).

    ``by="fault"``: one panel per fault cell x sweep point, one series per design.
    ``by="design"``: small multiples, one panel per design (variants beside their base
    design), one series per fault cell x sweep point — the readable choice when many
    designs share one fault. ``titles``: panel titles by design (``by="design"``).
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
    labels = list(dict.fromkeys(lab for _, series in layout for lab, _, _ in series))
    h = 3.0 if by == "fault" or len(layout) <= ncols else 2.0
    rows = _legend_rows(len(labels), 6.0 * min(ncols, len(layout)), max(map(len, labels)))
    fig, axes = _grid(len(layout), ncols, 6.0, h, legend_rows=rows)
    for k_ax, (ax, (ptitle, series)) in enumerate(zip(axes, layout, strict=True)):
        _availability_panel(ax, series, grid, band)
        _symlog_time(ax, hz)
        ax.set_ylim(-0.05, 1.07)
        ax.yaxis.set_major_locator(FixedLocator(_AT_TICKS))
        ax.set_title((titles or {}).get(ptitle, ptitle), fontsize=9, y=1.0)
        # small multiples: the shared time axis is labelled once per column, at the bottom,
        # the a(t) axis once per row (panels by fault are few: each keeps its time labels)
        n_shared = 1 if by == "fault" else len(layout)
        _outer_labels(ax, k_ax, n_shared, min(ncols, len(layout)), _AT_LABELS,
                      (_symlog_values(hz), _AT_TICKS))  # fmt: skip
    _legend_below(
        fig, axes, title="median a(t), lines offset by < 0.02 so coinciding series stay visible"
    )
    _suptitle(
        fig,
        title
        or f"Availability after the fault: median and p{band[0] * 100:g}–p{band[1] * 100:g} "
        "band across trials",
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
    colors = series_colors(df["design"])
    out: list[_Panel] = []
    for ptitle, g in _panels(df, sweep):
        groups = {str(d): gd for d, gd in g.groupby("design", sort=False)}
        out.append((ptitle, [(d, colors[d], groups[d]) for d in design_order(groups)]))
    return out


def _by_design(df: pd.DataFrame, sweep: Sequence[str]) -> list[_Panel]:
    cells = fault_cells(df)
    multi = _multi_target(cells)
    one_fault = len({c[0] for c in cells}) == 1
    series_keys = [(f, t, pt) for f, t in cells for pt in sweep_points(df, sweep)]
    by_series = _groups(df, ["design", "fault", "target", *sweep])
    layout: list[_Panel] = []
    for d in design_order(df["design"]):  # registry order, variants beside their base
        series = []
        for k, (f, t, pt) in enumerate(series_keys):
            g = by_series.get((d, f, t, *pt))
            if g is None:
                continue
            cell = t if one_fault else _cell_label(f, t, multi)
            parts = ([cell] if len(cells) > 1 else []) + (
                [_point_label(sweep, pt)] if sweep else []
            )
            series.append((" · ".join(parts) or d, _PALETTE[k % len(_PALETTE)], g))
        layout.append((d, series))
    return layout


def _availability_panel(
    ax: Axes, series: list[_Series], grid: np.ndarray, band: tuple[float, float]
) -> None:
    for k, (label, c, g) in enumerate(series):
        lo, med, hi = availability_bands(g, grid, band)
        # series that behave the same would hide each other: offset each median line
        # by a hair (|offset| < 0.02, far below any real step in a(t))
        dodge = (k - (len(series) - 1) / 2) * min(0.008, 0.04 / max(len(series), 1))
        # the band as fill_between draws it, pixel for pixel: a collection of its own
        # (Agg draws a lone path's zero-width edge as a hairline, one of many paths' not:
        # that hairline is what shows a band narrower than a pixel), edges in its colour
        face = [mpl.colors.to_rgba(c, 0.15)]
        fill = PolyCollection([step_band(grid, lo, hi)], facecolors=face, edgecolors=face, lw=0)
        ax.add_collection(fill, autolim=False)
        ax.step(grid, med + dodge, where="post", color=c, lw=1.6, label=label)
    if not series:
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.5")


def step_band(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The polygon ``fill_between(x, lo, hi, step="post")`` fills, vertex for vertex
    (along lo from its start at hi, back along hi), built with numpy: fill_between's own
    bookkeeping cost more than drawing the band."""
    n = x.size
    xs, ls, hs = (np.empty(2 * n - 1) for _ in range(3))
    for out, v in ((xs, x), (ls, lo), (hs, hi)):
        out[0::2] = v
    xs[1::2], ls[1::2], hs[1::2] = x[1:], lo[:-1], hi[:-1]
    return np.concatenate(
        [[[xs[0], hs[0]]], np.c_[xs, ls], [[xs[-1], hs[-1]]], np.c_[xs[::-1], hs[::-1]]]
    )


def own_node_crash(df: pd.DataFrame) -> pd.DataFrame:
    """Per design, its node-crash trials of the node it depends on (entry node, ingress
    node, VIP holder), or of an app pod's node for designs that depend on none."""
    node = df[df["fault"] == "node-crash"]
    own = node[node["target"] != "app-pod-node"]
    rest = node[~node["design"].isin(set(own["design"]))]
    return pd.concat([own, rest])


def availability_own_node(results: Run | pd.DataFrame, *, ncols: int = 2) -> Figure:
    """The README's figure: a panel per design, a(t) after the node that design depends
    on crashes (its title names that node), one series per sweep point."""
    sel = own_node_crash(trials_of(results))
    if sel.empty:
        raise NothingToShow("no node-crash trials in this run")
    targets = sel.groupby("design", sort=False)["target"].first()
    names = {str(d): f"{d} · crash of the {str(t).replace('-', ' ')}" for d, t in targets.items()}
    run_like = results if isinstance(results, Run) else sel
    horizon = horizon_of(run_like)
    fig = availability(
        _with_trials(run_like, sel.assign(target="node crash")),
        horizon=horizon,
        by="design",
        ncols=ncols,
        titles=names,
        title="After the node each design depends on crashes (entry / ingress / VIP holder, "
        "else an app pod's node)",
    )
    return fig


def _with_trials(results: Run | pd.DataFrame, trials: pd.DataFrame) -> Run | pd.DataFrame:
    """The same run (meta: horizon, sweep) with other trials."""
    if isinstance(results, Run):
        return Run(results.path, results.meta, trials)
    return trials


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
            "container.serving",
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
    fault: str | None = None,
    point: Mapping[str, Any] | None = None,
) -> Figure:
    """Waterfall of median milestone times: one row per design x fault (x sweep point).

    Each row is a chain of segments from one milestone's median to the next, coloured by
    the phase of the milestone reached at its end (detection, endpoints, eviction, VIP
    move, route convergence, replacement, node back), with a dot per milestone. The black
    diamond is the median recovery; what happens after it is drawn faded (users no longer
    see it), and a segment that spans the recovery is solid up to it: that part is outage.
    Milestones seen in fewer than ``min_share`` of a row's trials are left out.
    ``fault`` and ``point`` (swept key -> value) keep one fault and one sweep point.
    """
    df = trials_of(results)
    hz = horizon_of(results, horizon)
    sweep = sweep_columns(results)
    if fault is not None:
        df = df[df["fault"] == fault]
    for k, v in (point or {}).items():
        df = df[df[k] == v]
    shown = [k for k in sweep if k not in (point or {})]
    med = phase_medians(df, shown)
    med = med[med["share"] >= min_share]
    if med.empty:
        raise NothingToShow("no milestone happened in this run's trials")
    keys = [*KEY, *shown]
    per_row = {k: g for k, g in med.groupby(keys, sort=False)}
    order = design_order(med["design"])
    rows = sorted(per_row, key=lambda k: (order.index(str(k[0])), list(per_row).index(k)))
    rec_median = analysis.recovery_medians(df, keys)
    fig = Figure(figsize=(11, 1.5 + 0.3 * len(rows)))
    _margins(fig, 1, 1, left=0.35 + 0.062 * max(len(_row_label(k, shown, fault)) for k in rows),
             right=2.1, top=0.55, bottom=0.6)  # fmt: skip
    ax = fig.subplots()
    used: dict[str, str] = {}
    tl = _Timeline()
    for y, key in enumerate(rows):
        # the median recovery of the row's trials (0: the fault never touched availability,
        # so there is no service.recovered milestone; inf: not recovered in the horizon)
        t_rec = rec_median.get(key, math.inf)
        _timeline_row(y, per_row[key].sort_values("median_s"), t_rec, tl, used)
    _draw_timeline(ax, tl, hz)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_row_label(key, shown, fault) for key in rows], fontsize=7.5)
    ax.set_ylim(len(rows) - 0.4, -0.7)
    _symlog_time(ax, hz, left=0)
    ax.set_xlabel("median time of each milestone after the fault (s; linear to 1 s, log after)")
    ax.grid(True, axis="x", alpha=0.3)
    _phase_legend(fig, used)
    what = f"{fault}" if fault else "design × fault"
    if point:
        what += " · " + ", ".join(f"{k}={_short_value(v)}" for k, v in point.items())
    _suptitle(fig, title or f"Phase timeline: median milestone times — {what}")
    return fig


@dataclass
class _Timeline:
    """What the rows of a phase timeline draw, gathered to be drawn one collection per
    kind (a scatter, a marker line and a text per row made most of the figure's cost):
    segments (y, start, end, colour, alpha), milestone dots (t, y, RGBA), median
    recoveries (t, y) and the rows not recovered within the horizon (y)."""

    segs: list[tuple[float, float, float, str, float]] = field(default_factory=list)
    dots: list[tuple[float, float, tuple[float, float, float, float]]] = field(default_factory=list)
    recovered: list[tuple[float, float]] = field(default_factory=list)
    unrecovered: list[float] = field(default_factory=list)


def _timeline_row(
    y: int, g: pd.DataFrame, t_rec: float, tl: _Timeline, used: dict[str, str]
) -> None:
    """One row's segments up to each milestone's median, solid while users are cut off
    and faded after the recovery, its dots and its recovery marker, added to ``tl``."""
    prev = 0.0
    for t, name in zip(g["median_s"].astype(float), g["milestone"].astype(str), strict=True):
        phase, color = milestone_phase(name)
        used[phase] = color
        if phase == "recovered":
            continue
        cut = min(max(t_rec, prev), t)  # the part of [prev, t] before the recovery
        if cut > prev:
            tl.segs.append((y, prev, cut, color, 0.9))
        if t > cut:
            tl.segs.append((y, cut, t, color, 0.3))
        tl.dots.append((t, y, mpl.colors.to_rgba(color, 0.4 if t > t_rec else 1.0)))
        prev = t
    if math.isfinite(t_rec):
        tl.recovered.append((t_rec, y))
    else:
        tl.unrecovered.append(y)


def _draw_timeline(ax: Axes, tl: _Timeline, hz: float) -> None:
    """Every row's segments as one collection (a patch per bar drew 20x slower), the
    dots as one scatter, the markers as one line each kind; a label per recovery."""
    polys = [[(a, y - 0.3), (b, y - 0.3), (b, y + 0.3), (a, y + 0.3)] for y, a, b, _, _ in tl.segs]
    faces = [mpl.colors.to_rgba(c, alpha) for _, _, _, c, alpha in tl.segs]
    ax.add_collection(PolyCollection(polys, facecolors=faces, edgecolors="white", linewidths=0.4))
    if tl.dots:
        ax.scatter([d[0] for d in tl.dots], [d[1] for d in tl.dots], s=12, zorder=4,
                   linewidths=0.5, edgecolors="white", c=[d[2] for d in tl.dots])  # fmt: skip
    if tl.recovered:
        ax.plot(*zip(*tl.recovered, strict=True), "D", color="black", ms=5, zorder=5)
    for t_rec, y in tl.recovered:
        note = "no outage" if t_rec == 0 else fmt_seconds(t_rec)
        ax.text(t_rec, y - 0.38, f" {note}", fontsize=6.5, va="bottom")
    if tl.unrecovered:
        ax.plot([hz] * len(tl.unrecovered), tl.unrecovered, ls="", marker=">", color="black",
                ms=5, clip_on=False)  # fmt: skip


def _row_label(key: tuple[Any, ...], sweep: Sequence[str], fault: str | None = None) -> str:
    design, f, target = key[:3]
    lab = str(design) if fault else f"{design} · {f}"
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
    handles.append(Patch(color="0.6", alpha=0.3, label="after the recovery (faded)"))
    handles.append(Line2D([], [], marker="D", color="black", ls="", label="median recovery"))
    handles.append(
        Line2D([], [], marker=">", color="black", ls="", label="not recovered in horizon")
    )
    fig.legend(
        handles=handles,
        loc="upper right",
        bbox_to_anchor=(1 - 0.05 / fig.get_figwidth(), 1 - 0.55 / fig.get_figheight()),
        fontsize=7.5,
        frameon=False,
        title="phase reached",
        title_fontsize=8,
    )


# ----------------------------------------------------------------------------- loss


#: the mark of a cell that was not run (every other cell shows a number, 0 s included)
NOT_RUN = "not run"


def _cost_matrix(
    df: pd.DataFrame, metric: str, stat: str, sweep: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> np.ndarray:
    """`chaoslab.analysis.cost_table`'s numbers with one groupby (it filters per cell)."""
    cells = fault_cells(df)
    x = df.assign(_v=pd.to_numeric(df[metric], errors="coerce"))
    agg = x.groupby(["design", *sweep, "fault", "target"], sort=False, dropna=False)["_v"]
    table = agg.mean() if stat == "mean" else agg.median()
    mat = np.full((len(rows), len(cells)), np.nan)
    where = {c: j for j, c in enumerate(cells)}
    at = {r: i for i, r in enumerate(rows)}
    for key, v in table.items():
        k = key if isinstance(key, tuple) else (key,)
        mat[at[tuple(k[:-2])], where[(k[-2], k[-1])]] = v
    return mat


def loss_heatmap(
    results: Run | pd.DataFrame,
    *,
    metrics: Sequence[str] = ("lost_s", "downtime_s"),
    stat: str = "mean",
    title: str | None = None,
) -> Figure:
    """Heat map per metric: rows design (x sweep point; variants beside their base design),
    columns fault cells, one log colour scale shared by every panel (values span
    milliseconds to the horizon), each cell annotated; 0 s is white and says "0 s", cells
    that were not run are hatched, each block of them down a column saying "not run"."""
    df = trials_of(results)
    sweep = sweep_columns(results)
    cells = fault_cells(df)
    multi = _multi_target(cells)
    order = design_order(df["design"])
    row_keys = sorted(
        df[["design", *sweep]].drop_duplicates().itertuples(index=False, name=None),
        key=lambda rk: order.index(str(rk[0])),
    )
    mats = [_cost_matrix(df, m, stat, sweep, row_keys) for m in metrics]
    row_labels = [
        str(rk[0]) + (f" · {_point_label(sweep, rk[1:])}" if sweep else "") for rk in row_keys
    ]
    stacked = len(cells) > 4  # side by side while narrow, stacked when many fault columns
    left = 0.3 + 0.058 * max(map(len, row_labels))
    cell_w, cell_h = 0.95, 0.24
    w = left + cell_w * len(cells) + 1.4
    h = 0.55 + 1.25 + cell_h * len(row_keys)
    n = len(metrics)
    fig = Figure(figsize=(w, h * n + 0.4) if stacked else (w * n, h + 0.4))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0] if stacked else fig.subplots(1, n)
    axes = np.atleast_1d(axes)
    _margins(fig, n if stacked else 1, 1 if stacked else n, left=left, right=1.4,
             top=0.9, bottom=1.25, hgap=1.7, wgap=left + 1.4)  # fmt: skip
    norm = _shared_norm(mats)
    col_labels = [_cell_label(f, t, multi) for f, t in cells]
    for ax, metric, mat in zip(axes, metrics, mats, strict=True):
        im = _heat_panel(ax, mat, norm)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels(col_labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(row_keys)))
        ax.set_yticklabels(row_labels, fontsize=8)
        ax.set_title(f"{stat} {_METRIC_LABELS.get(metric, metric)}", fontsize=9, y=1.0)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.6, fraction=0.04, pad=0.02)
    # plain-text ticks: the default 10^k labels go through mathtext, slower than the panels
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cb.ax.yaxis.set_major_locator(LogLocator(base=10))
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_seconds(v)))
    cb.ax.yaxis.set_minor_locator(NullLocator())
    cb.ax.yaxis.set_minor_formatter(NullFormatter())
    cb.set_label("seconds (log scale, shared by the panels); white: 0 s; hatched: not run",
                 fontsize=8)  # fmt: skip
    _suptitle(fig, title or "Cost of each fault per design")
    return fig


def _shared_norm(mats: Sequence[np.ndarray]) -> LogNorm:
    allv = np.concatenate([m.ravel() for m in mats])
    pos = allv[np.isfinite(allv) & (allv > 0)]
    vmin = max(float(pos.min()), 1e-3) if pos.size else 1e-3
    vmax = max(float(pos.max()), vmin * 10) if pos.size else 1.0
    return LogNorm(vmin=vmin, vmax=vmax)


def _heat_panel(ax: Axes, mat: np.ndarray, norm: LogNorm) -> Any:
    """The log-coloured matrix, each cell annotated: 0 s on white, not run hatched."""
    vmin, vmax = float(norm.vmin or 1e-3), float(norm.vmax or 1.0)
    shown = np.where(mat > 0, np.maximum(mat, vmin), np.nan)
    im = ax.imshow(np.ma.masked_invalid(shown), norm=norm, cmap="YlOrRd", aspect="auto")
    ax.set_facecolor("white")  # 0 s: the cells the colour map leaves empty
    blocks = not_run_blocks(mat)
    if blocks:
        ax.add_collection(PolyCollection(
            [[(j - 0.5, a - 0.5), (j + 0.5, a - 0.5), (j + 0.5, b + 0.5), (j - 0.5, b + 0.5)]
             for j, a, b in blocks],
            # a white rim tells the blocks of adjacent columns apart
            facecolors="0.85", edgecolors="white", hatchcolor="0.6", hatch="////",
            linewidths=1.0,
        ))  # fmt: skip
    for j, a, b in blocks:  # named once per block: the text was half the figure's cost
        ax.text(j, (a + b) / 2, NOT_RUN, ha="center", va="center", fontsize=7, color="0.35")
    # white text on the darkest 40 % of the log colour range
    dark_from = math.log(vmin) + 0.6 * (math.log(vmax) - math.log(vmin))
    for (i, j), v in np.ndenumerate(mat):
        if np.isnan(v):
            continue
        dark = math.isfinite(v) and v > 0 and math.log(max(v, vmin)) > dark_from
        ax.text(j, i, fmt_seconds(v), ha="center", va="center", fontsize=7.5,
                color="white" if dark else "black")  # fmt: skip
    return im


def not_run_blocks(mat: np.ndarray) -> list[tuple[int, int, int]]:
    """(column, first row, last row) of each run of adjacent not-run (NaN) cells down a
    column of a heat map: one hatched block and one "not run" each."""
    out = []
    for j in range(mat.shape[1]):
        edges = np.diff(np.r_[0, np.isnan(mat[:, j]).astype(np.int8), 0])
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        out += [(j, int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
    return out


# ----------------------------------------------------------------------------- tornado


def numeric_sweep(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The swept keys a tornado can rank: numeric, with more than one value. A categorical
    key (a profile, a boolean) has no below/above its middle value."""
    return [
        k
        for k in keys
        if k in df.columns
        and df[k].nunique() > 1
        and pd.api.types.is_numeric_dtype(df[k])
        and not pd.api.types.is_bool_dtype(df[k])
    ]


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
    keys = numeric_sweep(df, keys)
    if not keys:
        raise NothingToShow("no numeric swept parameter with more than one value in these trials")
    spans = analysis.sensitivity_spans(df, keys, metric=metric, stat=stat, baseline=baseline)
    if spans.empty:
        raise NothingToShow(f"{metric} never recovered at any swept value: nothing to show")
    spans = spans.iloc[-max_rows:]
    one_cell = len(df[list(KEY)].drop_duplicates()) == 1
    finite = [v for v in spans[["low", "high", "baseline"]].to_numpy().ravel() if np.isfinite(v)]
    pos = [v for v in finite if v > 0]
    log = bool(pos) and max(pos) / min(pos) > 30
    right = max([*finite, 1e-9]) * (3.0 if log else 1.15)
    labels = [
        str(r.key) if one_cell else f"{r.key} — {r.design} · {r.fault} → {r.target}"
        for r in spans.itertuples()
    ]
    fig = Figure(figsize=(10, 1.9 + 0.42 * len(spans)))
    _margins(fig, 1, 1, left=0.4 + 0.06 * max(map(len, labels)), right=0.6, top=0.55,
             bottom=1.0)  # fmt: skip
    ax = fig.subplots()
    for y, r in enumerate(spans.itertuples()):
        _tornado_bar(ax, y, r, right)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(pos) / 3, right * 3)
    else:
        ax.set_xlim(min(0.0, *spans["low"]), right * 1.1)
    ax.set_yticks(range(len(spans)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.6, len(spans) - 0.4)
    unit = "s" if metric.endswith("_s") else "fraction"
    ax.set_xlabel(f"{stat} {metric} ({unit}) over each parameter's swept values")
    _tornado_legend(fig)
    ax.grid(True, axis="x", alpha=0.3)
    _suptitle(
        fig,
        title or f"Sensitivity of {stat} {metric} to each swept parameter (labels: its values)",
        10,
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
        loc="lower center",
        bbox_to_anchor=(0.5, 0.05 / fig.get_figheight()),
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
    n_labels = 2 * len(pairs)
    longest = max(len(f"predicted · {lab}") for _, _, lab in pairs)
    width = 4.4 * min(ncols, len(metrics))
    fig, axes = _grid(len(metrics), ncols, 4.4, 3.3,
                      legend_rows=_legend_rows(n_labels, width, longest))  # fmt: skip
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
        ax.set_title(
            f"{metric}\n{'; '.join(stats)}" if len(stats) == 1 else metric, fontsize=9, y=1.0
        )
        ax.set_xlabel(
            _METRIC_LABELS.get(metric, f"{milestone_name(metric)} time after the fault (s)")
        )
        ax.set_ylabel("share of trials (fraction)")
        ax.grid(True, alpha=0.3)
    _legend_below(fig, axes)
    _suptitle(fig, title or "Predicted (lines, p5–p95 shaded) vs measured trials (points)")
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


def save(fig: Figure, path: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write a figure as ``path.<fmt>`` for each format (atomically); return the paths.
    PNG by default: SVG doubles the drawing time and is asked for (``formats``)."""
    from io import BytesIO

    from chaoslab.results import atomic_write_bytes

    base = Path(path)
    out = []
    for fmt in formats:
        if fmt == "png":
            data = png_bytes(fig)
        else:
            buf = BytesIO()
            # no date or software version in the file: the same inputs give the same bytes
            fig.savefig(buf, format=fmt, metadata={"Date": None, "Creator": None})
            data = buf.getvalue()
        p = base.parent / f"{base.name}.{fmt}"  # not with_suffix: names hold dots (k8s-1.10)
        atomic_write_bytes(p, data)
        out.append(p)
    return out


#: resolution of the PNG files (and of the report's images)
PNG_DPI = 100
#: zlib level of the PNG files: the bundled run's 12 figures cost 1.13 s CPU to compress
#: at Pillow's default 6 and 0.68 s at 3, for 1,667 -> 1,748 KiB (+5 %); same pixels
PNG_COMPRESS_LEVEL = 3


def png_bytes(fig: Figure) -> bytes:
    """The figure drawn by Agg at `PNG_DPI` as PNG, RGB when every pixel is opaque (the
    figures are): without the alpha channel the file is ~10 % smaller and compressing it
    ~40 % cheaper than ``savefig``'s RGBA. No text chunk (no date, no software version):
    the same inputs give the same bytes. Compressed at `PNG_COMPRESS_LEVEL`."""
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    dpi = fig.dpi
    fig.dpi = PNG_DPI
    try:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
    finally:
        fig.dpi = dpi
    img = Image.fromarray(rgba[..., :3] if rgba[..., 3].min() == 255 else rgba)
    buf = BytesIO()
    img.save(buf, format="png", dpi=(PNG_DPI, PNG_DPI), compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def figure_makers(run: Run, vs: Run | None = None) -> dict[str, Callable[[], Figure]]:
    """Every figure that fits a run, by name, as a function drawing it (so a caller can
    draw, save and drop them one at a time). Figures whose data the run lacks are left
    out: no a(t) columns, no milestones, no numeric sweep with two values, no prediction."""
    df = run.trials
    if df.empty:
        raise NothingToShow(f"{run.path}: the run has no trials")
    makers: dict[str, Callable[[], Figure]] = {}
    if "a_t" in df.columns and df["a_t"].notna().all():
        makers.update(_availability_makers(run, df))
    makers["ecdf-recovery"] = lambda: ecdf_recovery(run)
    makers["loss"] = lambda: loss_heatmap(run)
    if milestone_columns(df):
        makers.update(_phase_makers(run, df))
    if numeric_sweep(df, sweep_columns(run)):
        makers["sensitivity"] = lambda: tornado(run, sweep=numeric_sweep(df, sweep_columns(run)),
                                                metric="lost_s", stat="mean")  # fmt: skip
    pred = vs
    if pred is None and run.meta.get("mode") == "live":
        from chaoslab.compare import stored_prediction

        pred = stored_prediction(run)
    if pred is not None:
        makers["predicted-vs-measured"] = lambda: predicted_vs_measured(pred, run)
    return makers


def _availability_makers(run: Run, df: pd.DataFrame) -> dict[str, Callable[[], Figure]]:
    """A few designs: one figure, a panel per fault cell. Many designs on one axis do not
    read: small multiples, a figure per fault, and the README's figure (a panel per design,
    the crash of the node it depends on) when node crashes hit several targets."""
    if df["design"].nunique() <= 4:
        return {"availability": partial(availability, run)}
    out: dict[str, Callable[[], Figure]] = {}
    if df.loc[df["fault"] == "node-crash", "target"].nunique() > 1:
        out["availability"] = partial(availability_own_node, run)
    for fault in df["fault"].drop_duplicates():
        out[f"availability-{fault}"] = partial(
            availability, run, faults=[fault], by="design", ncols=3,
            title=f"Availability after {fault}: median and p5–p95 band, per design",
        )  # fmt: skip
    return out


def _phase_makers(run: Run, df: pd.DataFrame) -> dict[str, Callable[[], Figure]]:
    """A phase timeline per fault, and per sweep point when there are at most four (one
    image of every row was 5,000 px tall)."""
    sweep = sweep_columns(run)
    points = sweep_points(df, sweep)
    split = bool(sweep) and len(points) <= 4
    out: dict[str, Callable[[], Figure]] = {}
    for fault in df["fault"].drop_duplicates():
        for pt in points if split else [()]:
            point = dict(zip(sweep, pt, strict=True)) if split else None
            name = f"phases-{fault}" + (
                f"-{_slug('-'.join(map(_short_value, pt)))}" if split else ""
            )
            out[name] = partial(phase_timeline, run, fault=fault, point=point)
    return out


def figures_for_run(run: Run, vs: Run | None = None) -> dict[str, Figure]:
    """Every figure that fits a run, drawn, by name (see `figure_makers`); a phase
    timeline with no milestone above its share is left out."""
    figs: dict[str, Figure] = {}
    for name, make in figure_makers(run, vs).items():
        with contextlib.suppress(NothingToShow):
            figs[name] = make()
    return figs


# ----------------------------------------------------------------------------- figure files

#: the record of a figure folder: per figure, the digest of what it was drawn from
FIGURE_INDEX = "index.json"


@dataclass(frozen=True)
class FigureFile:
    """One figure of a folder: its files (none when the run had nothing to show) and
    whether they were reused from an earlier call with the same inputs."""

    name: str
    paths: tuple[Path, ...]
    reused: bool


def _inputs_digest(run: Run | None) -> str:
    """What a run's figures are drawn from: its meta, experiment and trial files."""
    h = hashlib.sha256()
    if run is not None:
        for p in sorted(Path(run.path).iterdir()):
            if p.is_file() and (
                p.suffix == ".parquet" or p.name in ("meta.json", "experiment.yaml")
            ):
                h.update(p.name.encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def _code_digest() -> str:
    """The drawing code and matplotlib's version: a change of either draws again."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(mpl.__version__.encode())
    return h.hexdigest()


def write_figures(
    run: Run,
    dest: str | Path,
    formats: Sequence[str] = ("png",),
    vs: Run | None = None,
    workers: int = 1,
) -> list[FigureFile]:
    """Draw every figure of `figure_makers` into ``dest`` (``name.<fmt>``), one at a time,
    and record what each was drawn from in ``dest/index.json``. A figure whose record
    matches (same run files, same drawing code, same ``vs``) and whose files exist is not
    drawn again: `chaoslab report` after `chaoslab plot` reuses every PNG.

    ``workers`` > 1: that many processes draw (this one and ``workers - 1`` helpers, see
    `_draw_figures`); the files are the same bytes as drawn here alone."""
    import json

    from chaoslab.results import atomic_write_text

    dest = Path(dest)
    index = _read_index(dest)
    base = hashlib.sha256((_inputs_digest(run) + _code_digest()).encode()).hexdigest()
    with_vs = hashlib.sha256((base + _inputs_digest(vs)).encode()).hexdigest()
    makers = figure_makers(run, vs)
    keys = {name: with_vs if name == "predicted-vs-measured" else base for name in makers}
    kept: dict[str, FigureFile] = {}
    for name in makers:
        entry = index.get(name) or {}
        paths = tuple(dest / f"{name}.{fmt}" for fmt in formats)
        if entry.get("key") == keys[name] and (
            not entry.get("files") or all(p.name in entry["files"] and p.exists() for p in paths)
        ):
            kept[name] = FigureFile(name, paths if entry.get("files") else (), True)
            continue
        for stale in dest.glob(f"{name}.*"):  # another format of an older drawing
            if stale.suffix in (".png", ".svg") and stale not in paths:
                stale.unlink()
    todo = [name for name in makers if name not in kept]
    drawn = _draw_figures(run, vs, {n: makers[n] for n in todo}, dest, formats, workers)
    out: list[FigureFile] = []
    for name in makers:
        if name in kept:
            out.append(kept[name])
            continue
        saved = drawn[name]
        index[name] = {"key": keys[name], "files": [p.name for p in saved or ()]}
        if saved is not None:
            out.append(FigureFile(name, saved, False))
    atomic_write_text(dest / FIGURE_INDEX, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return out


def _draw_here(
    make: Callable[[], Figure], dest: Path, name: str, formats: Sequence[str]
) -> tuple[Path, ...] | None:
    """Draw one figure and write its files; None when the run has nothing to show."""
    try:
        fig = make()
    except NothingToShow:
        return None
    return tuple(save(fig, dest / name, formats))


def _draw_figures(
    run: Run,
    vs: Run | None,
    makers: Mapping[str, Callable[[], Figure]],
    dest: Path,
    formats: Sequence[str],
    workers: int,
) -> dict[str, tuple[Path, ...] | None]:
    """Draw ``makers`` (files by name, None: nothing to show), here alone or with helper
    processes (`_draw_in_parallel`) when ``workers`` > 1 and there are 2+ figures."""
    n = max(1, min(workers, os.cpu_count() or 1, len(makers)))
    if n == 1 or not (Path(run.path) / "meta.json").exists():
        return {name: _draw_here(make, dest, name, formats) for name, make in makers.items()}
    return _draw_in_parallel(run, vs, makers, dest, formats, n - 1)


# ----------------------------------------------------------------------------- helpers


@dataclass
class _Helper:
    """A spawned process drawing whole figures, and the figure it is drawing."""

    proc: BaseProcess
    conn: Connection
    busy: str | None = None


@dataclass
class _Work:
    """What is left to draw: ``pending`` for anyone (costliest first), ``retry`` for this
    process only (a helper failed them), ``done`` files by name (None: nothing to show)."""

    pending: deque[str]
    retry: list[str]
    done: dict[str, tuple[Path, ...] | None]

    def left(self, helpers: Sequence[_Helper]) -> bool:
        return bool(self.pending or self.retry or any(h.busy for h in helpers))


def _draw_in_parallel(
    run: Run,
    vs: Run | None,
    makers: Mapping[str, Callable[[], Figure]],
    dest: Path,
    formats: Sequence[str],
    n_helpers: int,
) -> dict[str, tuple[Path, ...] | None]:
    """This process and ``n_helpers`` spawned helpers draw whole figures, each writing
    its own files atomically: whoever is free takes the costliest figure left
    (`figure_cost`; this process first, while the helpers start), so all finish at about
    the same time. A figure a helper could not draw (an error, a helper that died) is
    drawn here, so its error is raised as when drawn alone. The helpers end when this
    returns or raises (Ctrl-C included), and on their own when this process dies."""
    work = _Work(deque(sorted(makers, key=figure_cost, reverse=True)), [], {})
    helpers = _start_helpers(run, vs, n_helpers)
    try:
        while work.left(helpers):
            mine = work.retry.pop() if work.retry else _next(work.pending)
            for h in helpers:
                if h.busy is None and work.pending:
                    h.busy = work.pending.popleft()
                    h.conn.send((h.busy, str(dest), tuple(formats)))
            if mine is not None:
                work.done[mine] = _draw_here(makers[mine], dest, mine, formats)
            _collect(helpers, work, timeout=0 if work.pending or work.retry else None)
    finally:
        _stop_helpers(helpers)
    return work.done


#: drawing cost of a figure relative to a phase timeline, by the start of its name (the
#: CPU time of the bundled run's figures: the heat map's ~500 annotations, the a(t) and
#: ECDF small multiples); anything else counts as 1
_FIGURE_COST = (("loss", 4.0), ("ecdf", 2.5), ("availability", 2.2), ("predicted", 2.0))


def figure_cost(name: str) -> float:
    """How costly a figure of `figure_makers` is to draw, relative to the others."""
    return next((c for prefix, c in _FIGURE_COST if name.startswith(prefix)), 1.0)


def _next(pending: deque[str]) -> str | None:
    return pending.popleft() if pending else None


def _collect(helpers: list[_Helper], work: _Work, timeout: float | None) -> None:
    """Take the helpers' answers (waiting up to ``timeout`` s for one); a helper that
    died is dropped and its figure left to this process."""
    from multiprocessing.connection import wait

    busy = [h for h in helpers if h.busy]
    if not busy:
        return
    wait([x for h in busy for x in (h.conn, h.proc.sentinel)], timeout)
    for h in busy:
        name = str(h.busy)
        try:
            answer = h.conn.recv() if h.conn.poll() else None
        except (EOFError, OSError):
            answer = None
        if answer is not None:
            _, paths, ok = answer
            if ok:
                work.done[name] = None if paths is None else tuple(map(Path, paths))
            else:
                work.retry.append(name)
            h.busy = None
        elif not h.proc.is_alive():
            work.retry.append(name)
            helpers.remove(h)


def _start_helpers(run: Run, vs: Run | None, n: int) -> list[_Helper]:
    """``n`` helper processes, forked where the platform can (POSIX): a copy of this
    process with matplotlib, pandas and the run's trials already loaded, ready at once
    instead of ~2 CPU-s later (a spawned interpreter imports them and reads the run
    again; that is still the way elsewhere). They start with SIGINT ignored (a Ctrl-C
    reaches the whole process group; this process answers it and ends them)."""
    import multiprocessing as mp
    import signal
    import threading

    fork = "fork" in mp.get_all_start_methods()
    ctx = mp.get_context("fork") if fork else mp.get_context("spawn")
    # a forked helper takes the loaded runs as they are; a spawned one gets their folders
    runs = (run, vs) if fork else (str(run.path), None if vs is None else str(vs.path))
    args = (os.getpid(), *runs)
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    helpers: list[_Helper] = []
    try:
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_helper_main, args=(theirs, *args), daemon=True,
                               name="chaoslab-figures")  # fmt: skip
            proc.start()
            theirs.close()
            helpers.append(_Helper(proc, mine))
    finally:
        if main_thread and old is not None:
            signal.signal(signal.SIGINT, old)
    return helpers


def _stop_helpers(helpers: Sequence[_Helper]) -> None:
    for h in helpers:
        if h.proc.is_alive():
            h.proc.terminate()  # SIGTERM: a file being written is removed, not left half
    for h in helpers:
        h.proc.join(10)
        h.conn.close()


def _helper_main(conn: Connection, parent: int, run: Run | str, vs: Run | str | None) -> None:
    """A helper: load the run (unless forked with it), then draw the figures asked for by
    name until the pipe closes; answers (name, file paths or None, whether it worked)."""
    import signal
    import sys
    import threading

    from chaoslab.results import load_run

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    makers = figure_makers(
        run if isinstance(run, Run) else load_run(run),
        vs if vs is None or isinstance(vs, Run) else load_run(vs),
    )
    while True:
        try:
            name, dest, formats = conn.recv()
        except EOFError:
            return
        try:
            paths = _draw_here(makers[name], Path(dest), name, formats)
        except Exception:  # drawn again by the parent, which raises it
            conn.send((name, None, False))
            continue
        conn.send((name, None if paths is None else [str(p) for p in paths], True))


def _watch_parent(parent: int) -> None:
    """End this helper once the process that started it is gone (killed, not only ended)."""
    import time

    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _read_index(dest: Path) -> dict[str, Any]:
    import json

    try:
        doc = json.loads((dest / FIGURE_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
