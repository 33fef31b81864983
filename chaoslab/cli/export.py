"""``chaoslab export``: a run folder as metrics, Grafana annotations or a Chaos Toolkit journal.

`register` adds the command to the root app; pandas and prometheus_client are imported
only when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chaoslab.cli.common import console, fail, user_errors

if TYPE_CHECKING:
    from chaoslab.results import Run

__all__ = ["export", "register"]

_FORMATS = ("openmetrics", "prometheus", "grafana", "ctk-journal")


@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (model run or drill).")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="openmetrics, prometheus (node_exporter textfile collector), "
            "grafana (annotations of a drill's fault windows) or ctk-journal "
            "(a drill as a Chaos Toolkit journal).",
        ),
    ] = "openmetrics",
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default: RUN_DIR/<format's file name>; - for stdout)."),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(help="Also PUT the metrics to this Pushgateway URL (metrics formats)."),
    ] = None,
    job: Annotated[str, typer.Option(help="Pushgateway job name.")] = "chaoslab",
) -> None:
    """Export a run folder for Prometheus, Grafana or Chaos Toolkit."""
    if fmt not in _FORMATS:
        fail(f"--format {fmt}: use one of {', '.join(_FORMATS)}")
    if push is not None and fmt not in ("openmetrics", "prometheus"):
        fail(f"--push: only with --format openmetrics or prometheus, not {fmt}")
    from chaoslab import export as ex
    from chaoslab.results import atomic_write_bytes, load_run

    run = load_run(run_dir)
    data = _render(run, fmt)
    if push is not None:
        ex.push(run, push, job=job)
        console.print(f"pushed {run_dir} to {push} (job {job}, run_id {ex.run_id(run)})")
    if out is not None and str(out) == "-":
        typer.echo(data.decode(), nl=False)
        return
    dest = out or Path(run_dir) / ex.FORMATS[fmt]
    if dest.is_dir():
        fail(f"--out {dest}: is a directory; give a file name")
    if not dest.parent.is_dir():
        fail(f"--out {dest}: folder {dest.parent} does not exist")
    atomic_write_bytes(dest, data)
    console.print(f"wrote {dest}", markup=False)


def _render(run: Run, fmt: str) -> bytes:
    from chaoslab import export as ex

    if fmt in ("openmetrics", "prometheus"):
        return ex.metrics_text(run, fmt)
    doc = ex.grafana_annotations(run) if fmt == "grafana" else ex.ctk_journal(run)
    return (json.dumps(doc, indent=2, default=str) + "\n").encode()


def register(app: typer.Typer) -> None:
    app.command("export")(export)
