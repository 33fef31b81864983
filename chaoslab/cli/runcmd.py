"""``chaoslab run``: check the options, call `chaoslab.run`, show progress and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chaoslab.cli.common import console, err_console, fail, summary_table
from chaoslab.expect import check, failed, junit_xml, verdict_lines
from chaoslab.experiment import Experiment, parse_set_option
from chaoslab.results import Run, atomic_write_text
from chaoslab.run import RunInterrupted, RunPlan, resume_run, run_experiment
from chaoslab.runner import EXECUTORS


def run_command(
    path: Path,
    *,
    trials: int | None,
    seed: int | None,
    workers: int,
    out: Path,
    sets: list[str],
    resume: Path | None,
    quiet: bool,
    executor: str = "local",
    scheduler: str | None = None,
    junit: Path | None = None,
    engine: str = "simpy",
) -> int:
    """Run (or resume) and print; returns the exit status (130 when interrupted, 1 when an
    expectation of the file's ``expect:`` is not met)."""
    scheduler = _check_options(workers, executor, scheduler)
    overrides = parse_set_option(sets)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )
    task = bar.add_task("trials", total=None)
    plans: list[RunPlan] = []

    def started(plan: RunPlan) -> None:
        plans.append(plan)
        bar.update(task, total=plan.todo_trials)
        if not quiet:
            console.print(_plan_line(plan, workers, executor, scheduler))
        bar.start()  # only now: an error before the first chunk prints no bar

    def advance(done: int, total: int) -> None:
        bar.advance(task, done)

    def note(text: str) -> None:
        err_console.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)

    try:
        if resume is not None:
            run = resume_run(
                resume, workers=workers, executor=executor, scheduler=scheduler,
                on_start=started, progress=advance, on_note=note,
            )  # fmt: skip
        else:
            run = run_experiment(
                path, out, trials=trials, seed=seed, overrides=overrides,
                workers=workers, executor=executor, scheduler=scheduler, engine=engine,
                on_start=started, progress=advance, on_note=note,
            )  # fmt: skip
    except RunInterrupted as e:
        bar.stop()  # before the message, so the bar does not overwrite it
        err_console.print(
            f"{e} (finish it with: chaoslab run {path} --resume {e.run_dir})", markup=False
        )
        return 130
    finally:
        bar.stop()
    summary = _print_summary(run)
    return gate(plans[0].experiment, "run", summary, junit, points=run.sweep_columns)


def gate(
    exp: Experiment,
    scope: str,
    table: pd.DataFrame,
    junit: Path | None,
    points: Sequence[str] = (),
) -> int:
    """Check the experiment's expectations of ``scope`` on ``table``: print the verdict,
    write ``junit``; 1 when one is not met, else 0."""
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


def _check_options(workers: int, executor: str, scheduler: str | None) -> str | None:
    if executor not in EXECUTORS:
        fail(f"--executor {executor}: use {' or '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        fail("--scheduler needs --executor dask")
    if workers < 1:
        fail(f"--workers {workers}: at least 1")
    if executor != "dask":
        return scheduler
    try:
        import distributed  # noqa: F401
    except ImportError:
        fail("--executor dask needs dask[distributed]: pip install 'chaoslab[dask]'")
    return scheduler or "local"


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
    # the summary the run just wrote: summarising the Run again would read every trial
    # (with its a(t) lists) back into memory, gigabytes for a million-trial sweep
    summary = pd.read_csv(run.path / "summary.csv")
    console.print(summary_table(summary, title=f"{run.meta.get('experiment')} — seconds"))
    console.print(f"run folder: {run.path}")
    return summary
