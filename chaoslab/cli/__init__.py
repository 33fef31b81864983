"""Command line: thin commands over experiments and run folders.

Every command loads, validates, calls the library and reports; bad input ends in one
line naming file, line and key, and exit status 2 (1 for a failed run, 130 on Ctrl-C).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from chaoslab.cli.common import (
    console,
    err_console,
    exit_code_for,
    fail,
    summary_table,
    user_errors,
)

__all__ = ["app", "main", "user_errors"]

app = typer.Typer(
    name="chaoslab",
    help="Predict and measure how long users of a Kubernetes service are cut off when a pod, "
    "node or network element fails.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from chaoslab import __version__

        console.print(f"chaoslab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """chaoslab: outage windows of Kubernetes exposure designs, predicted and measured."""


# ----------------------------------------------------------------------------- run


@app.command()
@user_errors
def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    trials: Annotated[
        int | None, typer.Option(help="Trials per cell (overrides the file).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Root seed (overrides the file).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a parameter: key=value (repeatable)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Finish an interrupted run folder instead of a new one.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor: Annotated[
        str,
        typer.Option(help="Where chunks run: local (process pool) or dask (distributed)."),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address (tcp://host:8786), or 'local' for a LocalCluster of "
            "--workers processes (the default with --executor dask)."
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Write the expect: verdicts as JUnit XML (one case per cell)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="simpy (the reference model) or fast (NumPy closed forms where chaoslab.fast "
            "covers a cell, SimPy with a note elsewhere; equal in distribution, not per trial)."
        ),
    ] = "simpy",
) -> None:
    """Run an experiment's designs x faults x sweep and write a run folder; exit 1 when an
    expectation of its expect: block is not met."""
    from chaoslab.cli.runcmd import run_command

    code = run_command(
        experiment,
        trials=trials,
        seed=seed,
        workers=workers,
        out=out,
        sets=set_ or [],
        resume=resume,
        quiet=quiet,
        executor=executor,
        scheduler=scheduler,
        junit=junit,
        engine=engine,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def validate(
    experiments: Annotated[list[Path], typer.Argument(help="Experiment YAML files.")],
) -> None:
    """Check experiment files without running them; every problem of every file is listed."""
    from chaoslab.experiment import load_experiment, validate_files

    problems: list[str] = []
    for path in experiments:
        found = validate_files([path])
        problems += found
        if not found:
            exp = load_experiment(path)
            cells = len(exp.cells())
            gates = len(exp.model.expect)
            checks = f", {gates} expectation{'s' if gates != 1 else ''}" if gates else ""
            console.print(
                f"[green]ok[/green] {path}: {cells} cells x {exp.model.trials} trials{checks}"
            )
    if problems:
        fail("\nerror: ".join(problems))


@app.command()
@user_errors
def params(
    profile: Annotated[
        list[str] | None, typer.Option("--profile", "-p", help="Apply profile(s).")
    ] = None,
    grep: Annotated[str | None, typer.Option(help="Only keys containing this text.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, md or csv.")] = "table",
) -> None:
    """Print the parameter catalogue: value, unit, versions and source of every knob."""
    from chaoslab.cli.common import params_frame, print_params

    df = params_frame(profile or [], grep)
    print_params(df, fmt)


@app.command()
def profiles() -> None:
    """List the profiles (named defaults of real versions and vendors)."""
    from rich.table import Table

    from chaoslab.params import PROFILES

    t = Table("profile", "family", "default", "covers", "settings", "what")
    for p in sorted(PROFILES.values(), key=lambda p: (p.family, p.name)):
        default = "yes" if p.default else ""
        t.add_row(p.name, p.family, default, escape(p.covers), str(len(p.settings)), escape(p.doc))
    console.print(t)


@app.command()
def designs() -> None:
    """List the exposure designs."""
    from rich.table import Table

    from chaoslab.designs import DESIGNS

    t = Table("design", "from", "entry", "failover decided by")
    for d in DESIGNS.values():
        t.add_row(d.key, d.origin, escape(d.entry), escape(d.failover))
    console.print(t)


@app.command()
def faults() -> None:
    """List the fault kinds, their targets and options."""
    from rich.table import Table

    from chaoslab.faults import FAULTS

    t = Table("fault", "acts on", "default target", "options", "what")
    for f in FAULTS.values():
        opts = ", ".join(f"{o} ({k})" for o, k in f.options.items())
        t.add_row(f.kind, f.target_kind, f.default_target, escape(opts), escape(f.doc))
    console.print(t)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print (or write) the JSON Schema of experiment files."""
    import json

    from chaoslab.experiment import json_schema, write_schema

    if out is None:
        print(json.dumps(json_schema(), indent=2))
    else:
        write_schema(out)
        console.print(f"wrote {out}")


@app.command()
@user_errors
def show(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Print a run's metadata line and summary table."""
    from chaoslab.results import load_run

    r = load_run(run_dir)
    m = r.meta
    console.print(
        f"{run_dir}: {m.get('mode')} / {m.get('target')}, {m.get('status')}, "
        f"{len(r.trials)} trials, seed {m.get('seed')}, profiles {m.get('profiles')}"
    )
    console.print(summary_table(r.summary()))


# ----------------------------------------------------------------------------- edges
# Subcommands of the live lab, Kubernetes drills and analysis live in their own modules.


_registered = False


def _register_edges() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from chaoslab.cli import analysis, cluster
    from chaoslab.cli import lab as _lab
    from chaoslab.cli.drill import drill

    app.add_typer(_lab.app, name="lab")
    app.command("drill")(drill)
    analysis.register(app)
    cluster.register(app)
    __import__("chaoslab.cli.advise", fromlist=["register"]).register(app)


def _sigterm(signum: int, frame: object) -> None:
    # SIGTERM ends a run like Ctrl-C, so run folders are closed as partial
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The one entry point; returns the exit status (tests call it in-process)."""
    _register_edges()
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        rv = app(args=argv, prog_name="chaoslab", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:
        return _exit_status(e)
    return rv if isinstance(rv, int) else 0


def _exit_status(e: Exception) -> int:
    """A chaoslab error or a usage error as one line and its status; a bug raises."""
    import click

    # typer vendors its own copy of click: accept either's exception classes
    from typer import _click as tclick

    usage = (click.exceptions.ClickException, tclick.exceptions.ClickException)
    aborts = tuple(
        c for c in (click.exceptions.Abort, getattr(tclick.exceptions, "Abort", None)) if c
    )
    if isinstance(e, usage):
        e.show(file=sys.stderr)
        return int(e.exit_code)
    if isinstance(e, aborts):
        return 130
    code = exit_code_for(e)
    if code is None:
        raise e
    try:
        fail(str(e), code)
    except typer.Exit as done:
        return int(done.exit_code)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
