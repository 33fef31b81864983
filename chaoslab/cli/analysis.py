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


@user_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the figures (default: RUN_DIR/figures).")
    ] = None,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="png and/or svg (repeatable).")
    ] = None,
) -> None:
    """Write the figures that fit a run (PNG and SVG)."""
    from chaoslab.plots import figures_for_run, save
    from chaoslab.results import load_run

    run = load_run(run_dir)
    formats = tuple(fmt or ("png", "svg"))
    bad = [f for f in formats if f not in ("png", "svg")]
    if bad:
        fail(f"--format: unknown format {bad[0]!r} (png, svg)")
    dest = out or Path(run_dir) / "figures"
    for name, fig in figures_for_run(run).items():
        for p in save(fig, dest / name, formats):
            console.print(f"wrote {p}")


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
) -> None:
    """Write one self-contained HTML page: experiment, changed parameters, tables, figures."""
    from chaoslab.report import write_report
    from chaoslab.results import load_run

    run = load_run(run_dir)
    other = load_run(vs) if vs is not None else None
    p = write_report(run, out or Path(run_dir) / "report.html", vs=other)
    console.print(f"wrote {p}")


@user_errors
def compare_cmd(
    pred_run: Annotated[Path, typer.Argument(help="The predicted (simulated) run folder.")],
    meas_run: Annotated[Path, typer.Argument(help="The measured (live) run folder.")],
    select: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE: the sweep point of the prediction to use (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for cells.csv and ranks.csv (default: MEAS_RUN/compare)."),
    ] = None,
) -> None:
    """Coverage of the predicted p5-p95, quantile ranks, KS statistic, milestone errors."""
    from rich.table import Table

    from chaoslab.compare import compare
    from chaoslab.results import load_run

    pred, meas = load_run(pred_run), load_run(meas_run)
    c = compare(pred, meas, select=_parse_select(select))
    t = Table(title=f"{meas_run} measured vs {pred_run} predicted — seconds")
    cols = [
        "design",
        "fault",
        "metric",
        "n_measured",
        "predicted_p5",
        "predicted_p50",
        "predicted_p95",
        "measured_median",
        "coverage",
        "ks",
        "ks_crit_05",
        "median_error_s",
    ]
    if (c.cells["point"] != "").any():
        cols.insert(2, "point")
    for col in cols:
        left = col in ("design", "fault", "point", "metric")
        t.add_column(col.replace("_", " "), justify="left" if left else "right")
    for _, r in c.cells.iterrows():
        t.add_row(*[_fmt(r[col], col) for col in cols])
    console.print(t)
    for note in c.notes:
        console.print(f"note: {escape(note)}")
    for p in c.write(out or Path(meas_run) / "compare"):
        console.print(f"wrote {p}")


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
