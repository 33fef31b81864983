"""``chaoslab drill EXP.yaml``: live drills on a Kubernetes cluster (the ``live:`` section).

Registered by ``chaoslab/cli/__init__.py`` (``app.command("drill")(drill)``). Exit status:
0 done (or dry run), 1 the drill failed, was aborted or left undo steps, 2 bad input, 130
interrupted (after the rollback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chaoslab.cli.common import fail, user_errors

__all__ = ["drill"]


@user_errors
def drill(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment YAML with a live: section.")
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Inject for real; without it the drill only prints its plan (dry run)."
        ),
    ] = False,
    recover: Annotated[
        Path | None,
        typer.Option(
            "--recover",
            help="Finish the rollback a crashed drill left undone in RUN_DIR (reads its journal).",
            metavar="RUN_DIR",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    context: Annotated[
        str | None, typer.Option(help="kubeconfig context (overrides live.context).")
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig file (overrides live.kubeconfig and KUBECONFIG).")
    ] = None,
) -> None:
    """Discover the cluster, predict, then (with --yes) inject, probe, watch, roll back and
    compare the measured outage with the prediction."""
    from chaoslab.live.k8s.drill import plan_drill, run_drill
    from chaoslab.live.k8s.drill import recover as do_recover

    if recover is not None:
        ok = do_recover(recover, kubeconfig=kubeconfig, context=context, log=typer.echo)
        typer.echo("rollback complete" if ok else "rollback still incomplete (see journal)")
        raise typer.Exit(0 if ok else 1)
    if experiment is None:
        fail("give an experiment file (or --recover RUN_DIR)")
    try:
        plans = plan_drill(experiment, kubeconfig=kubeconfig, context=context)
    except KeyboardInterrupt:
        fail("interrupted while planning; nothing was injected", 130)
    for plan in plans:
        for line in plan.lines:
            typer.echo(line)
    if not yes:
        typer.echo("dry run: nothing was injected. Run again with --yes to drill.")
        raise typer.Exit(0)
    res = run_drill(plans, out=out, log=typer.echo)
    typer.echo(f"run folder: {res.path} ({res.status})")
    comp = res.path / "comparison.csv"
    if comp.exists():
        typer.echo(comp.read_text().rstrip())
    if res.status == "interrupted":
        raise typer.Exit(130)
    if res.status != "complete" or res.run.meta.get("pending_undo"):
        raise typer.Exit(1)
