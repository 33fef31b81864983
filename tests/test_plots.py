"""Figures: rendered with Agg and checked for content (axes, series, labels, units)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import chaoslab
from chaoslab import analysis, plots
from chaoslab.cli import main
from chaoslab.designs import DESIGNS, ImpossibleTarget
from chaoslab.faults import ImpossibleFault
from chaoslab.outage import metrics
from chaoslab.results import RunWriter, load_run

FAULTS = [
    {"kind": "pod-kill", "target": "app-pod"},
    {"kind": "node-crash", "target": "app-pod-node"},
    {"kind": "node-crash", "target": "entry-node"},
]


def _visible_axes(fig: Figure) -> list:
    # colorbars are axes too; the figure's panels are the ones with a title
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]


def _draw(fig: Figure) -> None:
    """Render to PNG with Agg (the real drawing path: layout, fonts, ticks)."""
    from io import BytesIO

    fig.savefig(BytesIO(), format="png", dpi=60)


@pytest.fixture(scope="module")
def every_design_run(tmp_path_factory: pytest.TempPathFactory):
    """A real run folder with every registered design under pod and node faults."""
    path = tmp_path_factory.mktemp("runs") / "every-design"
    w = RunWriter(path, mode="simulate", target="model", meta={"horizon_s": 900.0})
    frames = []
    for design in DESIGNS:
        for fault in FAULTS:
            try:
                frames.append(chaoslab.simulate(design, fault, trials=12, seed=3, horizon=900.0))
            except (ImpossibleTarget, ImpossibleFault):
                continue
    w.add_trials(pd.concat(frames, ignore_index=True))
    return w.finish()


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory):
    """A run written by `chaoslab run` with a two-parameter sweep."""
    d = tmp_path_factory.mktemp("sweep")
    exp = d / "sweep.yaml"
    exp.write_text(
        "title: sweep for the plot tests\n"
        "profile: [k8s-1.32]\n"
        "designs: [nodeport-lb-local, ingress-vip-vrrp]\n"
        "faults:\n"
        "  - {kind: node-crash, target: app-pod-node, designs: [nodeport-lb-local]}\n"
        "  - {kind: node-crash, target: vip-holder, designs: [ingress-vip-vrrp]}\n"
        "sweep:\n"
        "  lb.interval: [1s, 2s, 5s]\n"
        "  vrrp.advert_int: [1s, 3s]\n"
        "trials: 20\nseed: 5\nhorizon: 10m\n"
    )
    assert main(["run", str(exp), "--out", str(d / "out"), "-q"]) == 0
    (run_dir,) = (d / "out").glob("*/*")
    return load_run(run_dir)


# ----------------------------------------------------------------------------- data helpers


def test_availability_matrix_steps() -> None:
    df = pd.DataFrame({"a_t": [[0.0, 2.0]], "a_v": [[0.5, 1.0]]})
    grid = np.array([-1.0, 0.0, 1.0, 1.999, 2.0, 3.0])
    m = analysis.availability_matrix(df, grid)
    assert m.tolist() == [[1.0, 0.5, 0.5, 0.5, 1.0, 1.0]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.01, 50.0), st.sampled_from([0.0, 1 / 3, 0.5, 2 / 3, 1.0])),
        min_size=1,
        max_size=6,
    )
)
def test_availability_matrix_integrates_to_lost_s(steps: list[tuple[float, float]]) -> None:
    """∫(1 - a) over the matrix's grid equals outage.metrics' lost_s (to the grid step)."""
    t, v = [0.0], [steps[0][1]]
    for dt, a in steps[1:]:
        t.append(t[-1] + dt)
        v.append(a)
    horizon = t[-1] + 10.0
    grid = np.linspace(0.0, horizon, 200_001)
    m = analysis.availability_matrix(pd.DataFrame({"a_t": [t], "a_v": [v]}), grid)[0]
    step = grid[1] - grid[0]
    lost = float(np.sum((1 - m[:-1]) * step))
    assert lost == pytest.approx(metrics(t, v, horizon).lost_s, abs=step * (len(t) + 1))


def test_fmt_seconds() -> None:
    assert plots.fmt_seconds(0.0) == "0 s"
    assert plots.fmt_seconds(0.25) == "0.25 s"
    assert plots.fmt_seconds(348.0) == "5.8 min"
    assert plots.fmt_seconds(math.inf) == "never"
    assert plots.fmt_seconds(math.nan) == "–"


def test_bottlenecks_names_the_last_milestone_before_recovery() -> None:
    df = pd.DataFrame(
        {
            "design": ["d"] * 3,
            "recovery_s": [5.0, 6.0, math.inf],
            "at_node_not_ready": [1.0, 1.0, 1.0],
            "at_lb_marked_down": [5.0, 6.0, math.nan],
            "at_pod_evicted": [300.0, 300.0, 300.0],
        }
    )
    b = analysis.bottlenecks(df, ["design"])
    assert b.loc[0, "waits_for"] == "lb.marked_down"
    assert b.loc[0, "share"] == 1.0  # of the two recovered trials
    assert b.loc[0, "at_s"] == pytest.approx(5.5)


# ----------------------------------------------------------------------------- figures


def test_ecdf_recovery_series_and_labels(every_design_run) -> None:
    run = every_design_run
    fig = plots.ecdf_recovery(run)
    _draw(fig)
    axes = _visible_axes(fig)
    cells = run.trials.groupby(["fault", "target"]).size()
    assert len(axes) == len(cells)
    ncols = 3
    for k, ax in enumerate(axes):
        fault, target = ax.get_title().split(" → ")
        want = set(run.trials[(run.trials.fault == fault) & (run.trials.target == target)].design)
        assert {ln.get_label() for ln in ax.get_lines()} == want
        assert ax.get_xscale() == "log"
        # the same axes in every panel: named left of each row and under each column
        bottom, first = k >= len(axes) - ncols, k % ncols == 0
        assert ("(s" in ax.get_xlabel()) == bottom == bool(ax.get_xticklabels())
        assert ("(fraction)" in ax.get_ylabel()) == first == bool(ax.get_yticklabels())
        for ln in ax.get_lines():
            assert ln.get_ydata()[-1] == pytest.approx(1.0)  # unrecovered drawn at the right
    # an entry node that never comes back: its whole ECDF sits past the horizon
    ax = next(a for a in axes if a.get_title() == "node-crash → entry-node")
    (ln,) = [x for x in ax.get_lines() if x.get_label() == "nodeport-direct"]
    x = np.asarray(ln.get_xdata())
    assert (x[1:] > 900.0).all()


def test_availability_by_fault_and_by_design(every_design_run) -> None:
    run = every_design_run
    fig = plots.availability(run)
    _draw(fig)
    axes = _visible_axes(fig)
    assert len(axes) == run.trials.groupby(["fault", "target"]).ngroups
    for k, ax in enumerate(axes):
        assert ax.get_xscale() == "symlog"
        assert "time since the fault (s" in ax.get_xlabel()
        if k % 2 == 0:  # the rows share the a(t) axis: labelled in the first column
            assert "(fraction)" in ax.get_ylabel()
        n_lines = len(ax.get_lines()) - 1  # minus the dotted fault marker at t = 0
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert n_lines == len(bands) > 0
    # small multiples: one panel per design, a never-recovering entry node ends at a = 0
    fig = plots.availability(run, faults=["node-crash"], by="design")
    _draw(fig)
    axes = _visible_axes(fig)
    assert [a.get_title() for a in axes] == list(
        dict.fromkeys(run.trials[run.trials.fault == "node-crash"].design)
    )
    ax = next(a for a in axes if a.get_title() == "nodeport-direct")
    entry = next(ln for ln in ax.get_lines() if "entry-node" in ln.get_label())
    assert entry.get_ydata()[-1] == pytest.approx(0.0, abs=0.02)


def test_availability_refuses_runs_without_a_t(every_design_run) -> None:
    with pytest.raises(ValueError, match="a_t"):
        plots.availability(every_design_run.trials.drop(columns=["a_t", "a_v"]))


def test_phase_timeline_rows_and_recovery_markers(every_design_run) -> None:
    run = every_design_run
    fig = plots.phase_timeline(run)
    _draw(fig)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    med = analysis.phase_medians(run.trials)
    med = med[med.share >= 0.5]
    assert len(labels) == med.groupby(["design", "fault", "target"]).ngroups
    assert ax.get_xscale() == "symlog" and "(s" in ax.get_xlabel()
    diamonds = [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
    arrows = [ln for ln in ax.get_lines() if ln.get_marker() == ">"]
    shown = med.groupby(["design", "fault", "target"]).size().index
    rec = (
        run.trials.set_index(["design", "fault", "target"])["recovery_s"]
        .groupby(level=[0, 1, 2])
        .quantile(0.5, interpolation="lower")
        .loc[shown]
    )
    # one marker line per kind, a point per row
    assert sum(len(ln.get_xdata()) for ln in diamonds) == int(np.isfinite(rec).sum()) > 0
    assert sum(len(ln.get_xdata()) for ln in arrows) == int(np.isinf(rec).sum()) > 0
    # a fault that never touched availability is marked as such, not as unrecovered
    assert (rec == 0).any() == any(t.get_text() == " no outage" for t in ax.texts)
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"detection", "median recovery"} <= legend


def test_loss_heatmap_cells_and_annotations(every_design_run) -> None:
    run = every_design_run
    fig = plots.loss_heatmap(run)
    _draw(fig)
    panels = _visible_axes(fig)
    assert len(panels) == 2
    n_rows = run.trials.design.nunique()
    n_cols = run.trials.groupby(["fault", "target"]).ngroups
    cost = analysis.cost_table(run.trials, "lost_s")  # NaN: not run
    cost.index = cost.index.get_level_values("design")
    mat = cost.loc[[t.get_text() for t in panels[0].get_yticklabels()]].to_numpy()
    blocks = plots.not_run_blocks(mat)
    for ax in panels:
        assert len(ax.images) == 1
        assert ax.images[0].get_array().shape == (n_rows, n_cols) == mat.shape
        # a number on every cell that was run; "not run" once per block of cells that
        # were not, down a column, on the block's middle
        at = {t.get_position(): t.get_text() for t in ax.texts}
        assert blocks and len(ax.texts) == int(np.isfinite(mat).sum()) + len(blocks)
        assert all(at[(j, (a + b) / 2)] == "not run" for j, a, b in blocks)
        ran = np.argwhere(np.isfinite(mat))
        assert all(at[(j, i)].endswith(("s", "min", "h")) for i, j in ran)
        assert "(s)" in ax.get_title()
    texts = {t.get_text() for t in panels[0].texts}
    assert "15 min" in texts  # nodeport-direct's entry node: lost for the whole 900 s horizon
    assert "not run" in texts  # designs without an entry node
    assert "0 s" in texts  # a pod kill behind nginx: nothing lost, and it says so
    # one colour scale for the panels side by side
    (a,), (b,) = panels[0].images, panels[1].images
    assert (a.norm.vmin, a.norm.vmax) == (b.norm.vmin, b.norm.vmax)


def test_not_run_cells_make_one_block_per_run_down_a_column() -> None:
    nan = np.nan
    mat = np.array([[nan, 1.0, nan], [nan, 0.0, 2.0], [3.0, nan, nan], [nan, nan, nan]])
    assert plots.not_run_blocks(mat) == [(0, 0, 1), (0, 3, 3), (1, 2, 3), (2, 0, 0), (2, 2, 3)]
    assert plots.not_run_blocks(np.ones((3, 2))) == []


def test_tornado_rows_span_the_sensitivity(sweep_run) -> None:
    df = sweep_run.trials
    lb = df[df.design == "nodeport-lb-local"]
    fig = plots.tornado(lb, sweep=["lb.interval", "vrrp.advert_int"])
    _draw(fig)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == {"lb.interval", "vrrp.advert_int"}
    assert labels[-1] == "lb.interval"  # the widest span on top
    s = analysis.sensitivity(lb, ["lb.interval", "vrrp.advert_int"])
    rows = s[s.key == "lb.interval"]["stat"]
    bars = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - 1) < 1e-9]
    left = min(p.get_x() for p in bars)
    right = max(p.get_x() + p.get_width() for p in bars)
    assert left == pytest.approx(rows.min()) and right == pytest.approx(rows.max())
    assert "(s)" in ax.get_xlabel()


def test_tornado_needs_a_sweep(every_design_run) -> None:
    with pytest.raises(ValueError, match="swept"):
        plots.tornado(every_design_run)


def test_predicted_vs_measured_panels(sweep_run) -> None:
    pred = sweep_run.trials[sweep_run.trials.design == "nodeport-lb-local"]
    meas = pred.groupby("lb.interval").head(4)
    fig = plots.predicted_vs_measured(pred, meas)
    _draw(fig)
    axes = _visible_axes(fig)
    from chaoslab.compare import compared_metrics

    assert [a.get_title().split("\n")[0] for a in axes] == compared_metrics(pred, meas)
    for ax in axes:
        kinds = {ln.get_label().split(" · ")[0] for ln in ax.get_lines()}
        assert kinds == {"predicted", "measured"}
        assert "(s)" in ax.get_xlabel()
        # three sweep points, one predicted line and one set of measured points each
        assert len(ax.get_lines()) == 6


def test_figures_for_a_run_of_every_design(every_design_run) -> None:
    figs = plots.figures_for_run(every_design_run)
    faults = set(every_design_run.trials.fault)
    assert set(figs) == {"ecdf-recovery", "loss", "availability"} | {
        f"{kind}-{f}" for f in faults for kind in ("availability", "phases")
    }
    fig = figs["availability-node-crash"]
    titles = [a.get_title() for a in _visible_axes(fig)]
    assert titles == [d for d in DESIGNS if d in titles]  # one panel per design, registry order
    assert len(titles) == every_design_run.trials.design.nunique()


def test_figures_for_run_and_save(sweep_run, tmp_path: Path) -> None:
    figs = plots.figures_for_run(sweep_run)
    # six sweep points: one phase timeline per fault, the points as rows
    assert set(figs) == {"ecdf-recovery", "availability", "phases-node-crash", "loss",
                         "sensitivity"}  # fmt: skip
    paths = plots.save(figs["availability"], tmp_path / "a", ("png", "svg"))
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:2000]


# ----------------------------------------------------------------------------- fonts


def _glyph_warnings(fig: Figure) -> list[str]:
    from io import BytesIO

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _draw(fig)
        fig.savefig(BytesIO(), format="svg")  # glyphs as paths: the same fallback
    return [str(w.message) for w in caught if "missing from" in str(w.message)]


def test_korean_and_english_render_without_missing_glyphs(every_design_run) -> None:
    fig = plots.availability(
        every_design_run, faults=["node-crash"], title="노드 장애 후 가용성 — availability (s)"
    )
    fig.axes[0].set_xlabel("장애 후 시간 (s) / time since the fault (s)")
    assert _glyph_warnings(fig) == []


def test_missing_glyphs_are_detected_without_the_fallback() -> None:
    """The check above can fail: with DejaVu alone, Hangul glyphs are reported missing."""
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        fig = Figure()
        fig.subplots().set_title("노드 장애")
        assert _glyph_warnings(fig) != []


# ----------------------------------------------------------------------------- CLI


def test_cli_plot_writes_png_and_svg_only_when_asked(sweep_run, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    assert main(["plot", str(sweep_run.path), "--out", str(out)]) == 0
    figs = ("ecdf-recovery", "availability", "phases-node-crash", "loss", "sensitivity")
    assert {p.name for p in out.glob("*.*g")} == {f"{f}.png" for f in figs}
    assert main(["plot", str(sweep_run.path), "--out", str(out), "--svg"]) == 0
    names = {p.name for p in out.iterdir()}
    for fig in figs:
        assert {f"{fig}.png", f"{fig}.svg"} <= names


def test_cli_plot_bad_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a chaoslab run folder" in err and len(err.splitlines()) == 1


def test_cli_plot_and_report_on_a_run_of_every_design(every_design_run, tmp_path: Path) -> None:
    run_dir = str(every_design_run.path)
    assert main(["plot", run_dir, "--out", str(tmp_path / "f"), "--format", "png"]) == 0
    pngs = {p.stem for p in (tmp_path / "f").glob("*.png")}
    assert pngs == set(plots.figures_for_run(every_design_run))
    assert main(["report", run_dir, "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    for design in DESIGNS:
        assert f'<td class="t">{design}</td>' in page  # every design has its summary rows


# ----------------------------------------------------------------------------- figure rules


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory: pytest.TempPathFactory):
    """Designs with variants labelled as the runner labels them (the variant's own
    params or profile, simulated for real), a 2-value profile sweep."""
    path = tmp_path_factory.mktemp("runs") / "variants"
    sweep = {"profile": ["k8s-1.10", "k8s-1.32"]}
    w = RunWriter(path, mode="simulate", target="model", meta={"horizon_s": 900.0, "sweep": sweep})
    cells = [
        ("ingress-vip-bgp", "ingress-vip-bgp", {}),
        ("ingress-vip-bgp", "ingress-vip-bgp+bfd", {"bfd.enabled": True}),
        ("ingress-vip-pod", "ingress-vip-pod", {}),
        ("ingress-vip-pod", "ingress-vip-pod-no-garp", {"vip.garp": False}),
        ("ingress-vip-vrrp", "ingress-vip-vrrp", {}),
        ("nodeport-lb", "nodeport-lb", {}),
    ]
    frames = []
    for design, label, params in cells:
        for profile in ("k8s-1.10", "k8s-1.32"):
            for fault in ({"kind": "pod-kill", "target": "app-pod"},
                          {"kind": "node-crash", "target": "app-pod-node"}):  # fmt: skip
                df = chaoslab.simulate(design, fault, profile=profile, params=params, trials=10,
                                       seed=4, horizon=900.0)  # fmt: skip
                frames.append(df.assign(design=label, profile=profile))
    w.add_trials(pd.concat(frames, ignore_index=True))
    return w.finish()


def _colors(ax) -> list[tuple[float, ...]]:
    return [tuple(matplotlib.colors.to_rgba(ln.get_color())) for ln in ax.get_lines()
            if ln.get_label() and not ln.get_label().startswith("_")]  # fmt: skip


def test_every_series_of_a_panel_has_its_own_colour(every_design_run, variant_run) -> None:
    for run in (every_design_run, variant_run):
        for fig in (plots.ecdf_recovery(run), plots.availability(run)):
            for ax in _visible_axes(fig):
                colors = _colors(ax)
                assert len(colors) == len(set(colors)) > 1, ax.get_title()


def test_variants_sit_beside_their_base_design(variant_run) -> None:
    order = plots.design_order(variant_run.trials.design)
    assert order == [
        "nodeport-lb", "ingress-vip-pod", "ingress-vip-pod-no-garp", "ingress-vip-bgp",
        "ingress-vip-bgp+bfd", "ingress-vip-vrrp",
    ]  # fmt: skip
    fig = plots.availability(variant_run, by="design")
    assert [a.get_title() for a in _visible_axes(fig)] == order
    legend = [t.get_text() for t in plots.ecdf_recovery(variant_run).legends[0].get_texts()]
    assert legend == order


def test_designs_with_no_outage_are_seen_on_the_ecdf(every_design_run) -> None:
    """A design whose every pod-kill trial is 0 s rises inside the plot, in a band of its
    own at the left, at a place no other such design takes (not on the y axis)."""
    df = every_design_run.trials
    kill = df[df.fault == "pod-kill"]
    none = {d for d, g in kill.groupby("design") if (g.recovery_s == 0).all()}
    assert len(none) >= 3
    fig = plots.ecdf_recovery(every_design_run)
    ax = next(a for a in _visible_axes(fig) if a.get_title().startswith("pod-kill"))
    left = ax.get_xlim()[0]
    rises = {}
    for ln in ax.get_lines():
        if ln.get_label() in none:
            x = np.asarray(ln.get_xdata())
            assert x[1] > left * 1.05  # the jump to 1 is inside the axes
            rises[ln.get_label()] = x[1]
    assert set(rises) == none and len(set(rises.values())) == len(none)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1e4), min_size=1, max_size=3000))
def test_decimated_ecdf_stays_within_a_step_of_the_full_one(xs: list[float]) -> None:
    x = np.asarray(xs)
    fx, fy = analysis.ecdf(x)
    dx, dy = plots.decimated_ecdf(x)
    assert dx.size <= plots.ECDF_POINTS and dy[-1] == 1.0 and dx[-1] == fx[-1]
    # both as post-steps, evaluated at every observed value
    full = fy[np.searchsorted(fx, fx, side="right") - 1]
    idx = np.searchsorted(dx, fx, side="right") - 1
    thin = np.where(idx >= 0, dy[np.maximum(idx, 0)], 0.0)
    assert np.all(np.abs(full - thin) <= 1 / plots.ECDF_POINTS + 1e-12)


def test_bands_equal_the_reference_computation(variant_run) -> None:
    grid = plots.time_grid(900.0)
    for _, g in variant_run.trials.groupby(["design", "fault", "profile"]):
        want = analysis.availability_bands(g, grid)
        got = plots.availability_bands(g, grid)
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


_step = st.tuples(st.floats(-1.0, 2000.0), st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 1.0]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(_step, max_size=6), min_size=1, max_size=40),
    st.sampled_from([(0.05, 0.95), (0.1, 0.9), (0.25, 0.75)]),
)
def test_counted_bands_are_numpys_quantiles_of_every_trial(
    trials: list[list[tuple[float, float]]], band: tuple[float, float]
) -> None:
    """The bands read off level counts are np.quantile of the trials x grid matrix, to
    the bit: several changes in one grid step, changes past the horizon, trials with none."""
    steps = [sorted(t) for t in trials]
    df = pd.DataFrame({"a_t": [[t for t, _ in s] for s in steps],
                       "a_v": [[v for _, v in s] for s in steps]})  # fmt: skip
    grid = plots.time_grid(900.0)
    want = analysis.availability_bands(df, grid, band)
    got = plots.availability_bands(df, grid, band)
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=50))
def test_the_band_is_the_polygon_fill_between_fills(pairs: list[tuple[float, float]]) -> None:
    lo = np.array([min(p) for p in pairs])
    hi = np.array([max(p) for p in pairs])
    x = np.cumsum(np.ones(lo.size))
    (path,) = Figure().subplots().fill_between(x, lo, hi, step="post").get_paths()
    assert np.array_equal(path.vertices[:-1], plots.step_band(x, lo, hi))  # [-1]: closing


def test_phases_are_split_by_fault_and_profile(variant_run) -> None:
    names = [n for n in plots.figure_makers(variant_run) if n.startswith("phases")]
    assert names == [f"phases-{f}-{p}" for f in ("pod-kill", "node-crash")
                     for p in ("k8s-1.10", "k8s-1.32")]  # fmt: skip
    fig = plots.phase_timeline(variant_run, fault="node-crash", point={"profile": "k8s-1.32"})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all("pod-kill" not in lab and "profile" not in lab for lab in labels)


def test_the_segment_that_is_the_outage_is_solid() -> None:
    """VRRP after the VIP holder crashes: the VIP-move segment ends at the recovery, so
    it is drawn solid (users are cut off during it), not faded. nginx's own round robin
    (untried): with ingress-nginx's Lua cycle the recovery waits for the new master's
    nginx to drop the crashed node's app pod instead."""
    fault = {"kind": "node-crash", "target": "vip-holder"}
    untried = {"nginx.round_robin_retry": "untried"}
    vrrp = chaoslab.simulate(
        "ingress-vip-vrrp", fault, trials=30, seed=2, horizon=900.0, params=untried
    )
    fig = plots.phase_timeline(vrrp, horizon=900.0)
    (ax,) = fig.axes
    (polys,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    green = matplotlib.colors.to_rgb("#55a868")
    (diamond,) = [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
    t_rec = float(diamond.get_xdata()[0])
    solid = [
        path.vertices[:, 0].max()
        for path, face in zip(polys.get_paths(), polys.get_facecolors(), strict=True)
        if np.allclose(face[:3], green) and face[3] == pytest.approx(0.9)
    ]
    # the VIP-move segment is solid up to the recovery (what happens after it is faded)
    assert solid and max(solid) == pytest.approx(t_rec)


def test_no_tornado_on_a_categorical_sweep(variant_run) -> None:
    assert "sensitivity" not in plots.figure_makers(variant_run)
    with pytest.raises(ValueError, match="numeric swept"):
        plots.tornado(variant_run, sweep=["profile"])


def test_plot_draws_the_readme_availability_figure(every_design_run) -> None:
    """One panel per design: the crash of the node it depends on, named in the title."""
    fig = plots.figures_for_run(every_design_run)["availability"]
    titles = {a.get_title().split(" · ")[0]: a.get_title() for a in _visible_axes(fig)}
    assert set(titles) == set(every_design_run.trials.design)
    assert titles["nodeport-direct"].endswith("crash of the entry node")
    assert titles["nodeport-lb"].endswith("crash of the app pod node")


def test_figures_already_drawn_are_kept_and_the_same_inputs_give_the_same_file(
    sweep_run, tmp_path: Path
) -> None:
    first = plots.write_figures(sweep_run, tmp_path / "a")
    assert first and not any(f.reused for f in first)
    again = plots.write_figures(sweep_run, tmp_path / "a")
    assert all(f.reused for f in again) and [f.name for f in again] == [f.name for f in first]
    other = plots.write_figures(sweep_run, tmp_path / "b")
    for f, g in zip(first, other, strict=True):
        assert f.paths[0].read_bytes() == g.paths[0].read_bytes()


def test_small_multiples_label_their_shared_axes_on_the_outer_panels_only(
    every_design_run,
) -> None:
    """Inner panels keep the grid at the outer panels' ticks, without ticks or texts."""
    fig = plots.availability(every_design_run, faults=["node-crash"], by="design", ncols=3)
    _draw(fig)
    axes = _visible_axes(fig)
    assert len(axes) > 6  # rows of three, and inner panels
    outer_x = [ax for ax in axes if ax.get_xticklabels()]
    assert outer_x == axes[-3:]
    assert [t.get_text() for t in outer_x[0].get_xticklabels()][:3] == ["0", "1", "3"]
    assert [ax for ax in axes if ax.get_yticklabels()] == axes[::3]
    inner = axes[4]
    assert not inner.xaxis.get_major_ticks() and not inner.get_xlabel()
    grids = [c for c in inner.collections if type(c).__name__ == "LineCollection"]
    xs = sorted(seg[0][0] for seg in grids[0].get_segments())
    assert xs == plots._symlog_values(900.0)  # vertical grid lines at the outer ticks


def _pngs(figs: list[plots.FigureFile]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for f in figs for p in f.paths}


def test_figures_drawn_by_helper_processes_are_the_same_bytes(
    sweep_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 2: a helper (forked with the loaded run, or spawned to read the folder)
    draws whole figures; the files and the index are those drawn in one process, and a
    second call reuses them."""
    alone = plots.write_figures(sweep_run, tmp_path / "one", workers=1)
    monkeypatch.setattr(plots.os, "cpu_count", lambda: 2)
    here: list[str] = []
    draw = plots._draw_here
    monkeypatch.setattr(plots, "_draw_here", lambda m, d, n, f: here.append(n) or draw(m, d, n, f))
    both = plots.write_figures(sweep_run, tmp_path / "two", workers=2)
    assert [f.name for f in both] == [f.name for f in alone]
    assert here and set(here) < {f.name for f in both}  # the helper drew the others
    assert _pngs(both) == _pngs(alone)
    index = (tmp_path / "two" / plots.FIGURE_INDEX).read_text()
    assert index == (tmp_path / "one" / plots.FIGURE_INDEX).read_text()
    again = plots.write_figures(sweep_run, tmp_path / "two", workers=2)
    assert all(f.reused for f in again)


def test_ctrl_c_while_helpers_draw_ends_them(
    sweep_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    monkeypatch.setattr(plots.os, "cpu_count", lambda: 2)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "_draw_here", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plots.write_figures(sweep_run, tmp_path / "f", workers=2)
    assert multiprocessing.active_children() == []
    assert not (tmp_path / "f" / plots.FIGURE_INDEX).exists()


def test_cli_plot_workers(sweep_run, tmp_path: Path) -> None:
    assert main(["plot", str(sweep_run.path), "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert main(["plot", str(sweep_run.path), "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        p.name for p in (tmp_path / "b").iterdir()
    }
    assert main(["plot", str(sweep_run.path), "--workers", "0"]) == 2
