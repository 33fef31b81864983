"""``chaoslab run``: experiment -> cells -> chunks -> run folder, with progress and resume."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chaoslab.cli.common import console, err_console, fail, summary_table
from chaoslab.experiment import Experiment, load_experiment, parse_set_option
from chaoslab.results import RunWriter
from chaoslab.runner import DEFAULT_CHUNK, EXECUTORS, ExecutorError, chunks_for, run_cells


def _run_id(exp: Experiment, seed: int) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha1(f"{exp.text}{seed}{stamp}".encode()).hexdigest()[:6]
    return f"{stamp}-{digest}"


def run_experiment(
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
) -> int:
    if executor not in EXECUTORS:
        fail(f"--executor {executor}: use {' or '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        fail("--scheduler needs --executor dask")
    if workers < 1:
        fail(f"--workers {workers}: at least 1")
    if executor == "dask":
        _check_dask()
        scheduler = scheduler or "local"
    chunk_size = DEFAULT_CHUNK
    if resume is not None:
        meta_path = resume / "meta.json"
        if not meta_path.exists():
            fail(f"{resume}: not a run folder (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("status") == "complete":
            fail(f"{resume}: this run is already complete")
        source = resume / "experiment.source.yaml"
        exp = load_experiment(meta.get("experiment_file", str(source)), source.read_text())
        overrides: dict[str, Any] = meta.get("overrides", {})
        trials, seed = int(meta["trials"]), int(meta["seed"])
        chunk_size = int(meta.get("chunk_size", chunk_size))
        run_dir = resume
    else:
        exp = load_experiment(path)
        overrides = parse_set_option(sets)
        trials = trials or exp.model.trials
        seed = exp.model.seed if seed is None else seed
        run_dir = out / exp.slug() / _run_id(exp, seed)
    exp.validate(overrides)
    cells = exp.cells(overrides)

    writer = RunWriter(
        run_dir,
        mode="simulate",
        target="model",
        meta={
            "experiment": exp.model.title,
            "experiment_file": str(path if resume is None else exp.path),
            "seed": seed,
            "trials": trials,
            "chunk_size": chunk_size,
            "workers": workers,
            "executor": executor if scheduler is None else f"{executor} ({scheduler})",
            "profiles": exp.profiles,
            "overrides": overrides,
            "horizon_s": exp.horizon,
            "designs": [label for label, _, _ in exp.design_entries()],
            "faults": [f.kind for f in exp.faults()],
            "sweep": {k: [str(v) for v in vs] for k, vs in exp.model.sweep.items()},
            "cells": len(cells),
        },
    )
    if resume is None:
        writer.write_text("experiment.source.yaml", exp.text)
    writer.write_text("experiment.yaml", exp.effective_yaml(overrides))
    done = writer.done_chunks()
    all_chunks = chunks_for(cells, trials, seed, chunk_size)
    todo = [c for c in all_chunks if c.index not in done]
    n_trials = sum(c.stop - c.start for c in todo)
    if not quiet:
        where = f"{workers} worker(s)"
        if executor == "dask":
            where = f"Dask {scheduler}" + (f", {workers} worker(s)" if scheduler == "local" else "")
        console.print(
            f"{exp.model.title}: {len(cells)} cells x {trials} trials, seed {seed}, "
            f"{where} -> {run_dir}" + (f" (resuming: {len(done)} chunks done)" if done else "")
        )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("trials", total=n_trials)
            for chunk, df in run_cells(
                cells,
                trials=trials,
                seed=seed,
                workers=workers,
                chunk_size=chunk_size,
                skip=done,
                executor=executor,
                scheduler=scheduler,
            ):
                writer.add_trials(df, chunk.index)
                progress.advance(task, chunk.stop - chunk.start)
    except ExecutorError as e:
        writer.finish_partial()
        fail(f"{e} (finished chunks kept in {run_dir}; resume with --resume {run_dir})", 1)
    except KeyboardInterrupt:
        writer.finish_partial()
        err_console.print(
            f"interrupted: partial run kept in {run_dir} "
            f"(finish it with: chaoslab run {path} --resume {run_dir})"
        )
        return 130
    writer.finish()
    # the summary finish() just wrote: summarising the Run again would read every trial
    # (with its a(t) lists) back into memory, gigabytes for a million-trial sweep
    summary = pd.read_csv(run_dir / "summary.csv")
    console.print(summary_table(summary, title=f"{exp.model.title} — seconds"))
    console.print(f"run folder: {run_dir}")
    return 0


def _check_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        fail("--executor dask needs dask[distributed]: pip install 'chaoslab[dask]'")
