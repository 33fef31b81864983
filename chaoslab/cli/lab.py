"""``chaoslab lab``: the local lab of real daemons in network namespaces.

Registered by ``chaoslab/cli/__init__.py`` (``app.add_typer(lab.app, name="lab")``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from chaoslab.cli.common import fail, user_errors

if TYPE_CHECKING:
    from chaoslab.experiment import Experiment

app = typer.Typer(
    help="Build a lab of real daemons (keepalived, BIRD, HAProxy, nginx, iptables) in network "
    "namespaces from an experiment's lab: section, drill it, compare with the model.",
    no_args_is_help=True,
)


def _load(path: Path) -> Experiment:
    from chaoslab.experiment import load_experiment
    from chaoslab.live.lab.drill import lab_spec

    exp = load_experiment(path)
    lab_spec(exp)
    return exp


def _need_root() -> None:
    if os.geteuid() != 0:
        fail("the lab needs root (network namespaces, iptables, daemons)")


def _lab_name(experiment: Path) -> str:
    if not experiment.exists():
        return experiment.name
    from chaoslab.live.lab.drill import lab_spec

    return lab_spec(_load(experiment)).name


@app.command()
@user_errors
def up(experiment: Path = typer.Argument(..., help="experiment YAML with a lab: section")) -> None:
    """Build the lab and leave it running (inspect with `ip netns`, probe it, then `down`)."""
    _need_root()
    exp = _load(experiment)
    from chaoslab.live.lab.drill import lab_up

    topo = lab_up(exp)
    typer.echo(
        f"lab {topo.spec.name} ({topo.spec.design}) is up: {topo.target_url()} "
        f"from namespace {topo.state.ns(topo.client_role)}; state in {topo.state.dir}"
    )


@app.command()
@user_errors
def status(
    experiment: Path = typer.Argument(..., help="experiment YAML (or the lab name)"),
) -> None:
    """Show a lab's namespaces and processes and whether they are alive."""
    from chaoslab.live.lab.drill import lab_status

    typer.echo(json.dumps(lab_status(_lab_name(experiment)), indent=2))


@app.command()
@user_errors
def down(
    experiment: Path = typer.Argument(None, help="experiment YAML or lab name; omit with --all"),
    all_: bool = typer.Option(False, "--all", help="tear down every lab recorded on disk"),
) -> None:
    """Kill the lab's processes (by PID) and delete its namespaces, also after a crash."""
    _need_root()
    from chaoslab.live.lab.drill import lab_down

    if not all_ and experiment is None:
        fail("name an experiment or a lab, or pass --all")
    name = None if all_ else _lab_name(experiment)
    for n in lab_down(name):
        typer.echo(f"warning: {n}", err=True)
    typer.echo("lab down" if name else "all labs down")


def _fmt(x: object) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3f}"


@app.command()
@user_errors
def drill(
    experiment: Path = typer.Argument(None, help="experiment YAML with a lab: section"),
    trials: int = typer.Option(None, "--trials", "-k", min=1, help="trials per fault"),
    out: Path = typer.Option(Path("results"), "--out", help="results folder"),
    recover: Path = typer.Option(
        None, "--recover", metavar="RUN_DIR", help="tear down what a killed drill left"
    ),
    junit: Path = typer.Option(
        None, "--junit", help="write the expect: verdicts on what was measured as JUnit XML"
    ),
) -> None:
    """Build the lab, run K trials per fault, write a live run and compare with the model;
    exit 1 when an expectation of the file's expect: is not met (see chaoslab drill)."""
    _need_root()
    from chaoslab.live.lab.drill import lab_recover, run_lab_drill

    if recover is not None:
        ok = lab_recover(recover, log=typer.echo)
        typer.echo("rollback complete" if ok else "rollback still incomplete (see journal)")
        raise typer.Exit(0 if ok else 1)
    if experiment is None:
        fail("give an experiment file (or --recover RUN_DIR)")
    exp = _load(experiment)
    res = run_lab_drill(exp, trials=trials, out=out, log=lambda s: typer.echo(s, err=True))
    _print_comparison(res.comparison)
    typer.echo(f"run written to {res.path} ({res.status})")
    if res.status == "interrupted":
        raise typer.Exit(130)
    from chaoslab.cli.drill import drill_gate

    if drill_gate(exp, res, junit) or res.status != "complete":
        raise typer.Exit(1)


def _print_comparison(c: object) -> None:
    import pandas as pd

    assert isinstance(c, pd.DataFrame)
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
