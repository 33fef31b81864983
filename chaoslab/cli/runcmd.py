"""``chaoslab run``: check the options, call `chaoslab.run`, show progress and the summary.

Progress is a bar on a terminal and periodic log lines elsewhere (a CI log, a pipe). With
``--resume`` the run's own experiment, trials, seed, ``--set`` values and engine are used;
one given that differs from the run's is refused rather than silently ignored.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chaoslab.cli.common import console, err_console, fail, given
from chaoslab.cli.logs import Progress, event
from chaoslab.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from chaoslab.experiment import Experiment
    from chaoslab.results import Run
    from chaoslab.run import RunPlan

__all__ = ["Options", "gate", "run_command"]

ENGINES = ("simpy", "fast")
DEFAULT_ENGINE = "simpy"
# what distributed accepts as a scheduler address (distributed.comm.registry backends)
SCHEDULER_SCHEMES = ("tcp", "tls", "inproc", "ws", "wss", "ucx")


@dataclass(frozen=True)
class Options:
    """The options of ``chaoslab run`` (None: not given)."""

    trials: int | None = None
    seed: int | None = None
    workers: int = 1
    out: Path = Path("results")
    sets: list[str] = field(default_factory=list)
    resume: Path | None = None
    quiet: bool = False
    executor: str = "local"
    scheduler: str | None = None
    junit: Path | None = None
    engine: str | None = None


def run_command(path: Path, opts: Options) -> int:
    """Run (or resume) and print; returns the exit status (130 when interrupted, 1 when an
    expectation of the file's ``expect:`` is not met)."""
    from chaoslab.experiment import parse_set_option
    from chaoslab.run import RunInterrupted

    scheduler = _check_options(opts)
    overrides = parse_set_option(opts.sets)
    if opts.resume is not None:
        _check_resume(path, opts, overrides)
    plans: list[RunPlan] = []
    show = _Shown(opts, scheduler, plans)
    try:
        run = _start(path, opts, scheduler, overrides, show)
    except RunInterrupted as e:
        show.stop()  # before the message, so the bar does not overwrite it
        return _interrupted(path, e.run_dir, str(e))
    except KeyboardInterrupt:
        # before the first chunk: the folder exists (closed as partial), say how to finish it
        if not plans:
            raise
        show.stop()
        where = plans[0].run_dir
        return _interrupted(path, where, f"interrupted: partial run kept in {where}")
    finally:
        show.stop()
    summary = _print_summary(run)
    return gate(plans[0].experiment, "run", summary, opts.junit, points=run.sweep_columns)


def _interrupted(path: Path, run_dir: Path, message: str) -> int:
    # one line whatever the width: the command in it is meant to be pasted
    print(f"{message} (finish it with: chaoslab run {path} --resume {run_dir})", file=sys.stderr)
    return 130


def _start(
    path: Path, opts: Options, scheduler: str | None, overrides: dict[str, str], show: _Shown
) -> Run:
    from chaoslab.run import resume_run, run_experiment

    how: dict[str, Any] = dict(
        workers=opts.workers, executor=opts.executor, scheduler=scheduler,
        on_start=show.started, progress=show.advance, on_note=show.note,
    )  # fmt: skip
    if opts.resume is not None:
        return resume_run(opts.resume, **how)
    return run_experiment(
        path, opts.out, trials=opts.trials, seed=opts.seed, overrides=overrides,
        engine=opts.engine or DEFAULT_ENGINE, **how,
    )  # fmt: skip


class _Shown:
    """Progress as a bar on a terminal, as log lines elsewhere; notes on stderr."""

    def __init__(self, opts: Options, scheduler: str | None, plans: list[RunPlan]) -> None:
        self.opts, self.scheduler, self.plans = opts, scheduler, plans
        self.tty = err_console.is_terminal
        self.lines: Progress | None = None
        self.bar: Any = None
        self.task: Any = None

    def started(self, plan: RunPlan) -> None:
        self.plans.append(plan)
        line = _plan_line(plan, self.opts.workers, self.opts.executor, self.scheduler)
        event("run.start", line, logging.DEBUG, run_dir=str(plan.run_dir), cells=plan.cells,
              trials=plan.trials, seed=plan.seed, todo=plan.todo_trials)  # fmt: skip
        if self.opts.quiet:
            return
        console.print(line, markup=False, highlight=False)
        self.lines = Progress(plan.todo_trials)
        if self.tty:  # only now: an error before the first chunk prints no bar
            self.bar, self.task = _bar(plan.todo_trials)

    def advance(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, done)
        if self.lines is not None:
            # on a terminal the bar shows it: the lines go to --log-file / --verbose only
            self.lines.level = logging.DEBUG if self.tty else logging.INFO
            self.lines.advance(done)

    def note(self, text: str) -> None:
        event("note", f"note: {text}", logging.DEBUG)
        print(f"note: {text}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _bar(total: int) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err_console, transient=True,
    )  # fmt: skip
    task = bar.add_task("trials", total=total)
    bar.start()
    return bar, task


def gate(
    exp: Experiment,
    scope: str,
    table: pd.DataFrame,
    junit: Path | None,
    points: Sequence[str] = (),
) -> int:
    """Check the experiment's expectations of ``scope`` on ``table``: print the verdict,
    write ``junit``; 1 when one is not met, else 0."""
    from chaoslab.expect import check, failed, junit_xml, verdict_lines
    from chaoslab.results import atomic_write_text

    expectations = exp.expectations(scope)
    verdicts = check(expectations, table, points)
    if junit is not None:
        atomic_write_text(junit, junit_xml(verdicts, exp.slug()))
    if not expectations:
        return 0
    for line in verdict_lines(verdicts):
        style = "red" if line.startswith(("FAIL", "  breach")) else None
        console.print(line, style=style, markup=False, highlight=False)
    if junit is not None:
        console.print(f"wrote {junit}", markup=False)
    return 1 if failed(verdicts) else 0


def _check_options(opts: Options) -> str | None:
    from chaoslab.runner import EXECUTORS

    if opts.executor not in EXECUTORS:
        fail(f"{given('executor', '--executor', opts.executor)}: use {' or '.join(EXECUTORS)}")
    if opts.engine is not None and opts.engine not in ENGINES:
        fail(f"{given('engine', '--engine', opts.engine)}: use {' or '.join(ENGINES)}")
    if opts.seed is not None and opts.seed < 0:
        fail(f"{given('seed', '--seed', opts.seed)}: a whole number, 0 or more")
    if opts.workers < 1:
        fail(f"{given('workers', '--workers', opts.workers)}: at least 1")
    if opts.resume is None and opts.out.exists() and not opts.out.is_dir():
        fail(f"{given('out', '--out', opts.out)}: is a file; give a folder for the run folders")
    if opts.scheduler is not None and opts.executor != "dask":
        fail("--scheduler needs --executor dask")
    if opts.executor != "dask":
        return opts.scheduler
    if opts.scheduler not in (None, "local"):
        _check_scheduler(opts.scheduler)
    try:
        import distributed  # noqa: F401
    except ImportError:
        fail("--executor dask needs dask[distributed]: pip install 'chaoslab[dask]'")
    return opts.scheduler or "local"


def _check_scheduler(address: str) -> None:
    """``[scheme://]host:port`` as distributed reads it, or one line saying what is off."""
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme not in SCHEDULER_SCHEMES or not url.hostname or port is None:
        schemes = "/".join(SCHEDULER_SCHEMES)
        fail(
            f"{given('scheduler', '--scheduler', address)}: not a scheduler address "
            f"(tcp://HOST:PORT, {schemes} schemes, or local)"
        )


def _check_resume(path: Path, opts: Options, overrides: dict[str, str]) -> None:
    """Refuse an option that would change the run being finished."""
    assert opts.resume is not None
    meta_path = opts.resume / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(errors="replace"))
    except (OSError, ValueError):
        return  # resume_run says what is wrong with the folder
    if not isinstance(meta, dict):
        return
    for option, value, recorded in (
        ("--trials", opts.trials, meta.get("trials")),
        ("--seed", opts.seed, meta.get("seed")),
        ("--engine", opts.engine, meta.get("engine", DEFAULT_ENGINE)),
    ):
        if value is not None and value != recorded:
            _refuse(opts.resume, f"{option} {value}", f"it has {recorded}")
    had = {str(k): str(v) for k, v in (meta.get("overrides") or {}).items()}
    for key, value in overrides.items():
        if had.get(key) != str(value):
            was = f"{key}={had[key]}" if key in had else f"no --set {key}"
            _refuse(opts.resume, f"--set {key}={value}", f"it has {was}")
    source = opts.resume / "experiment.source.yaml"
    try:
        same = path.read_bytes() == source.read_bytes()
    except OSError:
        return  # no file to compare: the run's own copy is what resumes
    if not same:
        _refuse(opts.resume, str(path), f"it differs from the run's copy {source}")


def _refuse(run_dir: Path, what: str, why: str) -> None:
    raise UserError(
        f"--resume {run_dir}: {what} would change the run ({why}); a resumed run keeps "
        "its own experiment, trials, seed, --set and engine (drop the option, or start a "
        "new run)"
    )


def _plan_line(plan: RunPlan, workers: int, executor: str, scheduler: str | None) -> str:
    where = f"{workers} worker(s)"
    if executor == "dask":
        where = f"Dask {scheduler}" + (f", {workers} worker(s)" if scheduler == "local" else "")
    resuming = f" (resuming: {plan.done_chunks} chunks done)" if plan.done_chunks else ""
    return (
        f"{plan.experiment.model.title}: {plan.cells} cells x {plan.trials} trials, "
        f"seed {plan.seed}, {where} -> {plan.run_dir}{resuming}"
    )


def _print_summary(run: Run) -> pd.DataFrame:
    import pandas as pd

    from chaoslab.cli.tables import screen_width
    from chaoslab.cli.views import summary_text

    # the summary the run just wrote: summarising the Run again would read every trial
    # (with its a(t) lists) back into memory, gigabytes for a million-trial sweep
    summary = pd.read_csv(run.path / "summary.csv")
    title = str(run.meta.get("experiment") or run.path.name)
    print(summary_text(summary, screen_width(), title=title))
    print(f"run folder: {run.path}")
    event("run.end", f"run folder: {run.path}", logging.DEBUG, run_dir=str(run.path),
          trials=int(summary["trials"].sum()))  # fmt: skip
    return summary
