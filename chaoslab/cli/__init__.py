"""Command line: thin commands over experiments and run folders.

Every command loads, validates, calls the library and reports; bad input ends in one
line naming file, line and key, and exit status 2 (1 for a failed run, 130 on Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from chaoslab.cli.common import console, exit_code_for, fail, user_errors

__all__ = ["app", "main", "user_errors"]

app = typer.Typer(
    name="chaoslab",
    help="Predict and measure how long users of a Kubernetes service are cut off when a pod, "
    "node or network element fails.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain help (click's): rich's help formatter costs more start-up than all the rest
    rich_markup_mode=None,
    # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    add_completion=True,
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
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", envvar="CHAOSLAB_VERBOSE", help="Debug lines on stderr too."
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            envvar="CHAOSLAB_LOG_FILE", metavar="FILE", help="Append the log lines to FILE."
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            envvar="CHAOSLAB_LOG_FORMAT",
            help="Log lines as text or json (one object a line: ts, level, event, fields).",
        ),
    ] = "text",
) -> None:
    """chaoslab: outage windows of Kubernetes exposure designs, predicted and measured."""
    from chaoslab.cli.logs import setup

    setup(verbose, log_file, log_format)


# ----------------------------------------------------------------------------- run


@app.command()
@user_errors
def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    *,
    trials: Annotated[
        int | None,
        typer.Option(envvar="CHAOSLAB_TRIALS", help="Trials per cell (overrides the file)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(envvar="CHAOSLAB_SEED", help="Root seed, 0 or more (overrides the file)."),
    ] = None,
    workers: Annotated[int, typer.Option(envvar="CHAOSLAB_WORKERS", help="Worker processes.")] = 1,
    out: Annotated[Path, typer.Option(envvar="CHAOSLAB_OUT", help="Results folder.")] = Path(
        "results"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a parameter (repeatable)."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Finish an interrupted run folder instead of a new one (with the run's own "
            "experiment, trials, seed, --set and engine: a different one is refused)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
    executor: Annotated[
        str,
        typer.Option(
            envvar="CHAOSLAB_EXECUTOR",
            help="Where chunks run: local (process pool) or dask (distributed).",
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="CHAOSLAB_SCHEDULER",
            help="Dask scheduler address (tcp://host:8786), or 'local' for a LocalCluster of "
            "--workers processes (the default with --executor dask).",
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Write the expect: verdicts as JUnit XML (one case per cell)."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            envvar="CHAOSLAB_ENGINE",
            help="simpy (the reference model; the default) or fast (NumPy closed forms where "
            "chaoslab.fast covers a cell, SimPy with a note elsewhere; equal in distribution, "
            "not per trial).",
        ),
    ] = None,
) -> None:
    """Run an experiment's designs x faults x sweep and write a run folder; exit 1 when an
    expectation of its expect: block is not met."""
    from chaoslab.cli.runcmd import Options, run_command

    code = run_command(
        experiment,
        Options(
            trials=trials, seed=seed, workers=workers, out=out, sets=set_ or [],
            resume=resume, quiet=quiet, executor=executor, scheduler=scheduler,
            junit=junit, engine=engine,
        ),
    )  # fmt: skip
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
        list[str] | None,
        typer.Option(
            "--profile", "-p", help="Apply profile(s).", autocompletion=lambda: _names("profiles")
        ),
    ] = None,
    grep: Annotated[
        str | None, typer.Option(help="Only keys containing this text (exit 1 if none).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, md or csv.")] = "table",
) -> None:
    """Print the parameter catalogue: value, unit, versions and source of every knob (the
    keys are what --set and params: take)."""
    from chaoslab.cli.common import params_frame, print_params

    df = params_frame(profile or [], grep)
    if df.empty:
        print(f"no parameter key contains {grep!r}", file=sys.stderr)
        raise typer.Exit(1)
    print_params(df, fmt)


def _names(kind: str) -> list[str]:
    from chaoslab.cli.listing import listing

    rows = listing()[kind]
    return [r if isinstance(r, str) else r[0] for r in rows]


def _print_listing(kind: str, headers: tuple[str, ...], numbers: tuple[str, ...] = ()) -> None:
    from chaoslab.cli.listing import listing
    from chaoslab.cli.tables import Col, render

    # names whole: they are what an experiment file and the options take
    cols = [Col(h, rigid=i == 0 or h in numbers, right=h in numbers) for i, h in enumerate(headers)]
    print(render(cols, listing()[kind]))


@app.command()
def profiles() -> None:
    """List the profiles (named defaults of real versions and vendors)."""
    headers = ("profile", "family", "default", "covers", "settings", "what")
    _print_listing("profiles", headers, numbers=("settings",))


@app.command()
def designs() -> None:
    """List the exposure designs."""
    _print_listing("designs", ("design", "from", "entry", "failover decided by"))


@app.command()
def faults() -> None:
    """List the fault kinds, their targets and options."""
    _print_listing("faults", ("fault", "acts on", "default target", "options", "what"))


@app.command()
@user_errors
def schema(
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print (or write) the JSON Schema of experiment files (parameter keys, design, fault
    and profile names included, so an editor flags a typo)."""
    import json

    from chaoslab.experiment import json_schema, write_schema

    if out is None:
        print(json.dumps(json_schema(), indent=2))
        return
    if not out.parent.is_dir():
        fail(f"--out {out}: no folder {out.parent}")
    if out.is_dir():
        fail(f"--out {out}: is a folder; give a file name")
    try:
        write_schema(out)
    except OSError as e:
        fail(f"--out {out}: {e.strerror or e}")
    console.print(f"wrote {out}", markup=False)


@app.command()
@user_errors
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    fmt: Annotated[
        str, typer.Option("--format", help="table (fits the screen), csv, md or json.")
    ] = "table",
    pivot: Annotated[
        str | None,
        typer.Option(
            metavar="METRIC",
            help="One metric with designs as rows and faults as columns (recovery_p95 or "
            "p95, lost_mean or lost, downtime_mean, recovered, ...).",
        ),
    ] = None,
    design: Annotated[
        list[str] | None,
        typer.Option("--design", "-d", metavar="DESIGN", help="Only this design (repeatable)."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", "-f", metavar="KIND", help="Only this fault kind (repeatable)."),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", "-p", metavar="PROFILE", help="Only this profile (repeatable)."),
    ] = None,
) -> None:
    """Print a run's metadata line and summary (seconds as seconds, shares as %)."""
    from chaoslab.cli.showcmd import show_command
    from chaoslab.cli.views import Filters

    show_command(run_dir, fmt, pivot, Filters(design or (), fault or (), profile or ()))


# ----------------------------------------------------------------------------- edges
# Subcommands of the live lab, Kubernetes drills and analysis live in their own modules.


_registered = False


def _register_edges() -> None:
    """Add the commands of the lab, drill, analysis, cluster, advise and export modules; each
    imports its heavy libraries inside its command bodies, so this costs only Typer."""
    global _registered
    if _registered:
        return
    _registered = True
    from chaoslab.cli import advise, analysis, cluster, export
    from chaoslab.cli import lab as _lab
    from chaoslab.cli.drill import drill

    for sub in (_lab.app, cluster.app):
        sub.rich_markup_mode = None  # their help plain like the rest
    app.add_typer(_lab.app, name="lab")
    app.command("drill")(drill)
    analysis.register(app)
    cluster.register(app)
    advise.register(app)
    export.register(app)


def _sigterm(signum: int, frame: object) -> None:
    # SIGTERM ends a run like Ctrl-C, so run folders are closed as partial
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The one entry point; returns the exit status (tests call it in-process)."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # `chaoslab params | head`: the reader left; no traceback, and none at exit when
        # Python flushes stdout into the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(args: list[str]) -> int:
    if len(args) == 1 and args[0] in _LISTINGS:
        # a listing takes no option: answered before Typer, whose option parsing (through
        # pydantic) would double its start-up time
        _LISTINGS[args[0]]()
        return 0
    _register_edges()
    # from here a Ctrl-C is a KeyboardInterrupt that closes a run as partial (until now
    # it ended the program at once: see chaoslab/__init__.py)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        rv = app(args=args, prog_name="chaoslab", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:
        return _exit_status(e)
    return rv if isinstance(rv, int) else 0


_LISTINGS = {"designs": designs, "faults": faults, "profiles": profiles}


def _exit_status(e: Exception) -> int:
    """A chaoslab error or a usage error as one line and its status; a bug raises."""
    from typer import _click as tclick

    if isinstance(e, tclick.exceptions.ClickException):
        line = _from_environment(e)
        if line is not None:
            print(f"error: {line}", file=sys.stderr, flush=True)
        else:
            e.show(file=sys.stderr)
        return int(e.exit_code)
    if isinstance(e, typer.Abort):  # Typer's word for a Ctrl-C inside a command
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    code = exit_code_for(e)
    if code is None:
        raise e
    print(f"error: {e}", file=sys.stderr, flush=True)
    return code


def _from_environment(e: Exception) -> str | None:
    """A bad value that came from an environment variable, as one line naming it."""
    from typer import _click as tclick

    if not isinstance(e, tclick.exceptions.BadParameter) or e.param is None or e.ctx is None:
        return None
    name = e.param.name or ""
    if e.ctx.get_parameter_source(name) is not tclick.core.ParameterSource.ENVIRONMENT:
        return None
    var = e.param.envvar if isinstance(e.param.envvar, str) else (e.param.envvar or ["?"])[0]
    value = os.environ.get(var, "")
    return f"{var}={value}: {e.format_message()}"


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
