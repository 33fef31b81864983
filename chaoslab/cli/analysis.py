"""``plot``, ``report`` and ``compare``: analysis commands over run folders.

`register` adds them to the root app (called from ``chaoslab.cli._register_edges``), so
matplotlib is imported only when one of them runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chaoslab.cli.common import console, fail, user_errors

__all__ = ["compare_cmd", "plot", "register", "report"]


def _parse_select(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--select {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def default_workers() -> int:
    """Figure-drawing processes by default: two, fewer on a one-CPU machine."""
    import os

    return min(2, os.cpu_count() or 1)


@user_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the figures (default: RUN_DIR/figures).")
    ] = None,
    svg: Annotated[bool, typer.Option("--svg", help="Write SVG beside each PNG.")] = False,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="png and/or svg (repeatable).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes drawing figures (this one and N-1 helpers; 1: this one alone; "
            "default: min(2, CPUs)).",
            min=1,
        ),
    ] = None,
) -> None:
    """Write the figures that fit a run (PNG; SVG too with --svg). Figures already drawn
    from the same run and code are kept, not drawn again."""
    formats = tuple(dict.fromkeys(fmt or (("png", "svg") if svg else ("png",))))
    bad = [f for f in formats if f not in ("png", "svg")]
    if bad:
        fail(f"--format: unknown format {bad[0]!r} (png, svg)")
    n = workers if workers is not None else default_workers()
    from chaoslab.plots import write_figures
    from chaoslab.results import load_run

    run = load_run(run_dir)
    dest = out or Path(run_dir) / "figures"
    if dest.exists() and not dest.is_dir():
        fail(f"--out {dest}: a file, not a folder")
    for f in write_figures(run, dest, formats, workers=n):
        for p in f.paths:
            console.print(f"{'kept' if f.reused else 'wrote'} {p}", markup=False, highlight=False)


@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    vs: Annotated[
        Path | None,
        typer.Option("--vs", help="Another run to compare with (the prediction/baseline)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="HTML file (default: RUN_DIR/report.html).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes drawing figures not drawn yet (as plot --workers).", min=1),
    ] = None,
) -> None:
    """Write one self-contained HTML page: verdicts, advice, figures, experiment, tables.
    Figures `chaoslab plot` already drew from the same run are reused."""
    from chaoslab.report import check_out

    dest = check_out(out or Path(run_dir) / "report.html", default=out is None, force=force)
    from chaoslab.report import write_report
    from chaoslab.results import load_run

    run = load_run(run_dir)
    other = load_run(vs) if vs is not None else None
    n = workers if workers is not None else default_workers()
    p = write_report(run, dest, vs=other, workers=n)
    console.print(f"wrote {p}", markup=False, highlight=False)


@user_errors
def compare_cmd(
    pred_run: Annotated[
        Path,
        typer.Argument(
            help="The predicted run folder (a simulation), or a live run's "
            "prediction.parquet; alone, a live run folder: its stored prediction against its "
            "measurements.",
            show_default=False,
        ),
    ],
    meas_run: Annotated[
        Path | None,
        typer.Argument(
            help="The measured (live) run folder (default: PRED_RUN, a live run folder).",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE: the sweep point of the prediction to use (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for cells.csv and ranks.csv (default: MEAS_RUN/compare)."),
    ] = None,
    experiment: Annotated[
        Path | None,
        typer.Option(
            help="Experiment file whose compare expectations (expect: coverage >= 0.8, ...) "
            "to check (default: the one the measured run stored, else the prediction's)."
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Write the expect: verdicts as JUnit XML (one case per cell)."),
    ] = None,
) -> None:
    """Coverage of the predicted p5-p95, quantile ranks, KS statistic, milestone errors;
    exit 1 when an expectation of the experiment's expect: block is not met.

    'chaoslab compare RUN' with one live run (or 'chaoslab compare RUN/prediction.parquet
    RUN', or the run twice) compares the prediction the drill stored with its measured
    trials, through the drill's prober and seeds: the predicted p5/p50/p95 of its
    comparison.csv."""
    from chaoslab.compare import compare

    pred, meas = _sides(pred_run, meas_run)
    exp = _gate_experiment(experiment, junit, meas, pred)
    c = compare(pred, meas, select=_parse_select(select))
    _print_comparison(c, f"{meas.path} measured vs {pred.path} predicted")
    for p in c.write(out or Path(meas.path) / "compare"):
        console.print(f"wrote {p}", markup=False, highlight=False)
    if exp is not None:
        from chaoslab.cli.runcmd import gate

        code = gate(exp, "compare", c.cells, junit)
        if code:
            raise typer.Exit(code)


def _sides(pred_path: Path, meas_path: Path | None) -> tuple[Any, Any]:
    """The predicted and measured runs of ``compare``. A live run's own folder (alone,
    twice, or its prediction.parquet) stands for the prediction it stored beside its
    trials (`chaoslab.compare.stored_prediction`): its measured trials are no prediction."""
    from chaoslab.compare import stored_prediction
    from chaoslab.results import load_run

    own = pred_path.name == "prediction.parquet" and pred_path.is_file()
    folder = pred_path.parent if own else pred_path
    meas = load_run(meas_path if meas_path is not None else folder)
    same = folder.resolve() == Path(meas.path).resolve()
    if not own and not same:
        return load_run(folder), meas  # two runs: a simulation (or a baseline) and a run
    source = meas if same else load_run(folder)
    pred = stored_prediction(source) if source.meta.get("mode") == "live" else None
    if pred is None and same and not own and meas_path is not None:
        return meas, meas  # a simulation twice: compared with itself, as always
    if pred is None:
        fail(
            f"{folder}: not a live run with a stored prediction (prediction.parquet); "
            "give the predicted run and the measured run: chaoslab compare PRED_RUN MEAS_RUN"
        )
    return pred, meas


def _gate_experiment(path: Path | None, junit: Path | None, *runs: Any) -> Any:
    """The experiment whose expectations compare checks: ``path``, else the first run
    folder's stored experiment that loads (None when there is none; a stored one with
    nothing for compare to check counts as none, unless ``junit`` wants its empty
    verdicts)."""
    if path is not None:
        from chaoslab.experiment import load_experiment

        exp = load_experiment(path)
        exp.validate()
        return exp
    for run in runs:
        exp = _stored_experiment(Path(run.path), junit)
        if exp is not None:
            return exp
    return None


def _stored_experiment(run_dir: Path, junit: Path | None = None) -> Any:
    """A run folder's experiment: its source copy, else experiment.yaml up to the values
    chaoslab appended to it (effective_params and after are not part of the file)."""
    src = run_dir / "experiment.source.yaml"
    eff = run_dir / "experiment.yaml"
    try:
        path = src if src.exists() else eff
        text = path.read_text()
    except OSError:
        return None
    if path == eff:
        cut = text.find("\neffective_params:")
        text = text[: cut + 1] if cut >= 0 else text
    if junit is None and not _checks_a_comparison(text):
        return None  # nothing for compare to check: no need to load the model
    from chaoslab.errors import UserError
    from chaoslab.experiment import load_experiment

    try:
        return load_experiment(path, text)
    except UserError:
        return None


def _checks_a_comparison(text: str) -> bool:
    """Whether the file's ``expect:`` may hold a comparison's expectation (``coverage >=
    80%``, ...); read with YAML alone, since loading an experiment imports every design,
    the runner and the fast engine (0.4-0.5 s). An entry it cannot read counts: the full
    loader decides about it."""
    import yaml

    from chaoslab.expect import COMPARE_METRICS, metric_of

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return True
    entries = data.get("expect") if isinstance(data, dict) else None
    if not entries:
        return False
    if not isinstance(entries, list):
        return True
    return any(metric_of(e) is None or metric_of(e) in COMPARE_METRICS for e in entries)


#: (column, header) of compare's terminal table; seconds except coverage (a share) and ks
_COMPARE_COLS = (
    ("n_measured", "n"),
    ("predicted_p5", "pred p5"),
    ("predicted_p50", "pred p50"),
    ("predicted_p95", "pred p95"),
    ("measured_median", "meas p50"),
    ("coverage", "coverage"),
    ("ks", "ks"),
    ("ks_crit_05", "ks crit"),
    ("median_error_s", "p50 err"),
)


def _print_comparison(c: Any, title: str) -> None:
    """The comparison at the screen's width: one heading per cell, a row per metric."""
    from chaoslab.cli.tables import Col, Heading, Row, fold, render, screen_width

    cols = [Col("metric"), *(Col(h, rigid=True, right=True) for _, h in _COMPARE_COLS)]
    rows: list[Row] = []
    last = None
    for r in c.cells.to_dict("records"):
        cell = " / ".join(str(r[k]) for k in ("design", "fault", "point") if r.get(k))
        if cell != last:
            rows.append(Heading(cell))
            last = cell
        rows.append([str(r["metric"]), *(_fmt(r[k], k) for k, _ in _COMPARE_COLS)])
    width = screen_width()
    lines = [*fold(title, width), render(cols, rows, width, keep=1)]
    lines.append("seconds, except coverage (share of measured trials inside p5..p95) and ks")
    console.print("\n".join(lines), markup=False, highlight=False)
    for note in c.notes:
        console.print(f"note: {escape(note)}")


def _fmt(v: Any, col: str) -> str:
    import math

    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "never" if v > 0 else "-never"
        if col == "coverage":
            return f"{v:.0%}"
        return f"{v:.3g}"
    return str(v)


def register(app: typer.Typer) -> None:
    """Add ``plot``, ``report`` and ``compare`` to the root app."""
    app.command("plot")(plot)
    app.command("report")(report)
    app.command("compare")(compare_cmd)
