"""``chaoslab drill EXP.yaml``: a live drill on a Kubernetes cluster (the ``live:`` section).

Register with ``app.command("drill")(drill)`` in ``chaoslab/cli/__init__.py``; runnable on
its own as ``python -m chaoslab.cli.drill``.

Exit status: 0 done (or dry run), 1 the drill failed, was aborted or left undo steps,
2 bad input, 130 interrupted (after the rollback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["drill", "main"]


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


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
    from chaoslab.cli.common import USER_ERRORS
    from chaoslab.experiment import ExperimentError
    from chaoslab.live.k8s.drill import plan_drill, run_drill
    from chaoslab.live.k8s.drill import recover as do_recover
    from chaoslab.live.k8s.inject import DrillRefused
    from chaoslab.live.k8s.kube import KubeError

    if recover is not None:
        try:
            ok = do_recover(
                recover, kubeconfig=kubeconfig, context=context, log=lambda s: typer.echo(s)
            )
        except FileNotFoundError as e:
            _err(str(e))
            raise typer.Exit(2) from None
        typer.echo("rollback complete" if ok else "rollback still incomplete (see journal)")
        raise typer.Exit(0 if ok else 1)
    if experiment is None:
        _err("give an experiment file (or --recover RUN_DIR)")
        raise typer.Exit(2)
    try:
        plan = plan_drill(experiment, kubeconfig=kubeconfig, context=context)
    except KeyboardInterrupt:
        _err("interrupted while planning; nothing was injected")
        raise typer.Exit(130) from None
    except (ExperimentError, *USER_ERRORS) as e:
        _err(str(e))
        raise typer.Exit(2) from None
    except (KubeError, DrillRefused) as e:
        _err(f"{experiment}: {e}")
        raise typer.Exit(1) from None
    for line in plan.lines:
        typer.echo(line)
    if not yes:
        typer.echo("dry run: nothing was injected. Run again with --yes to drill.")
        raise typer.Exit(0)
    run_dir = run_drill(plan, out=out, log=lambda s: typer.echo(s))
    meta = json.loads((run_dir / "meta.json").read_text())
    status = meta.get("status_detail", meta.get("status"))
    typer.echo(f"run folder: {run_dir} ({status})")
    comp = run_dir / "comparison.csv"
    if comp.exists():
        typer.echo(comp.read_text().rstrip())
    if status == "interrupted":
        raise typer.Exit(130)
    if status != "complete" or meta.get("pending_undo"):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(drill)
    try:
        # standalone_mode=False: click returns the code of typer.Exit instead of exiting
        rc = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except SystemExit as e:  # click usage errors
        return int(e.code or 0)
    except Exception as e:  # click.UsageError and friends: one line
        _err(str(e))
        return 2
    return int(rc or 0) if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
