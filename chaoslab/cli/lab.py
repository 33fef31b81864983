"""``chaoslab lab``: the local lab of real daemons in network namespaces."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Build a lab of real daemons (keepalived, BIRD, HAProxy, nginx, iptables) in network "
    "namespaces from an experiment's lab: section, drill it, compare with the model.",
    no_args_is_help=True,
)


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _load(path: Path):  # type: ignore[no-untyped-def]
    from chaoslab.live.lab.spec import SpecError, load_lab_experiment

    try:
        return load_lab_experiment(path)
    except SpecError as exc:
        _fail(str(exc))


def _need_root() -> None:
    if os.geteuid() != 0:
        _fail("the lab needs root (network namespaces, iptables, daemons)")


def _guard(fn):  # type: ignore[no-untyped-def]
    """Turn lab errors into one line and exit code; Ctrl-C exits 130 after cleanup."""
    from chaoslab.live.lab.netns import LabError
    from chaoslab.live.lab.spec import SpecError

    try:
        return fn()
    except (LabError, SpecError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; the lab was torn down", err=True)
        raise typer.Exit(130) from None


@app.command()
def up(experiment: Path = typer.Argument(..., help="experiment YAML with a lab: section")) -> None:
    """Build the lab and leave it running (inspect with `ip netns`, probe it, then `down`)."""
    _need_root()
    exp = _load(experiment)
    from chaoslab.live.lab.drill import lab_up

    topo = _guard(lambda: lab_up(exp))
    typer.echo(
        f"lab {exp.lab.name} ({exp.lab.design}) is up: {topo.target_url()} "
        f"from namespace {topo.state.ns(topo.client_role)}; state in {topo.state.dir}"
    )


@app.command()
def status(
    experiment: Path = typer.Argument(..., help="experiment YAML (or the lab name)"),
) -> None:
    """Show a lab's namespaces and processes and whether they are alive."""
    name = experiment.name if not experiment.exists() else _load(experiment).lab.name
    from chaoslab.live.lab.drill import lab_status

    st = _guard(lambda: lab_status(name))
    typer.echo(json.dumps(st, indent=2))


@app.command()
def down(
    experiment: Path = typer.Argument(None, help="experiment YAML or lab name; omit with --all"),
    all_: bool = typer.Option(False, "--all", help="tear down every lab recorded on disk"),
) -> None:
    """Kill the lab's processes (by PID) and delete its namespaces, also after a crash."""
    _need_root()
    from chaoslab.live.lab.drill import lab_down

    if all_:
        name = None
    elif experiment is None:
        _fail("name an experiment or a lab, or pass --all")
        return
    else:
        name = experiment.name if not experiment.exists() else _load(experiment).lab.name
    notes = _guard(lambda: lab_down(name))
    for n in notes:
        typer.echo(f"warning: {n}", err=True)
    typer.echo("lab down" if name else "all labs down")


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3f}"


@app.command()
def drill(
    experiment: Path = typer.Argument(..., help="experiment YAML with a lab: section"),
    trials: int = typer.Option(None, "--trials", "-k", min=1, help="trials per fault"),
    out: Path = typer.Option(Path("results"), "--out", help="results folder"),
) -> None:
    """Build the lab, run K trials per fault, write a live run and compare with the model."""
    _need_root()
    exp = _load(experiment)
    from chaoslab.live.lab.drill import run_drill

    res = _guard(
        lambda: run_drill(
            exp,
            trials=trials,
            out=out,
            source=str(experiment),
            log=lambda s: typer.echo(s, err=True),
        )
    )
    c = res.comparison
    typer.echo(
        f"{'fault':38} {'metric':11} {'pred p5':>8} {'p50':>8} {'p95':>8} "
        f"{'meas min':>8} {'median':>8} {'max':>8} {'n':>3} inside"
    )
    for r in c.itertuples():
        typer.echo(
            f"{r.fault:38.38} {r.metric:11} {_fmt(r.predicted_p5):>8} "
            f"{_fmt(r.predicted_p50):>8} {_fmt(r.predicted_p95):>8} "
            f"{_fmt(r.measured_min):>8} {_fmt(r.measured_median):>8} "
            f"{_fmt(r.measured_max):>8} {r.n:>3} {_fmt(r.inside)} {r.note}"
        )
    typer.echo(f"run written to {res.path}")


def main() -> None:  # `python -m chaoslab.cli.lab` without the lead's CLI
    app()


if __name__ == "__main__":
    sys.exit(main())
