"""Run an experiment into a run folder: the library behind ``chaoslab run``.

>>> run = chaoslab.run_experiment("experiments/seed-designs.yaml", "results", workers=2)
>>> run = chaoslab.resume_run(run.path)       # finish a run that was interrupted

The run folder (see `chaoslab.results.RunWriter`) is written chunk by chunk, so a run that
is interrupted or whose executor fails keeps its finished chunks, says ``partial`` in
``meta.json`` and can be resumed; the resumed run's trials are the ones an uninterrupted
run would have written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from chaoslab.errors import UserError
from chaoslab.experiment import Experiment, load_experiment
from chaoslab.results import Run, RunWriteError, RunWriter, unique_id
from chaoslab.runner import (
    DEFAULT_CHUNK,
    ENGINES,
    Cell,
    EngineError,
    ExecutorError,
    chunks_for,
    run_cells,
)

__all__ = ["RunInterrupted", "RunPlan", "resume_run", "run_experiment"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run is about to do, handed to ``on_start`` before the first chunk runs."""

    experiment: Experiment
    run_dir: Path
    cells: int
    trials: int
    seed: int
    done_chunks: int
    todo_trials: int


@dataclass(frozen=True, slots=True)
class Execution:
    """Where and how the chunks run."""

    workers: int = 1
    executor: str = "local"
    scheduler: str | None = None

    def describe(self) -> str:
        return self.executor if self.scheduler is None else f"{self.executor} ({self.scheduler})"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: the folder is marked partial and can be resumed."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted: partial run kept in {run_dir}")
        self.run_dir = run_dir


#: called with (trials just finished, trials to do in all) after each chunk
Progress = Callable[[int, int], None]


def run_experiment(
    exp: Experiment | str | Path,
    out: str | Path = "results",
    *,
    trials: int | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    engine: str = "simpy",
    on_start: Callable[[RunPlan], None] | None = None,
    progress: Progress | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Run:
    """Run every cell of ``exp`` into a new folder ``out/<experiment>/<run-id>``.

    ``exp`` is a loaded `Experiment` or the path of an experiment file; ``trials`` and
    ``seed`` override the file's; ``overrides`` are parameter values like ``--set``.
    ``engine="fast"`` runs the cells `chaoslab.fast` covers as NumPy (equal in distribution,
    not trial by trial); every other cell runs on SimPy with a note to ``on_note``, and the
    notes are kept in meta.json. A resume keeps the run's engine.
    Raises `RunInterrupted` on Ctrl-C and `ExecutorError` when the executor fails, both
    after marking the folder partial.
    """
    if not isinstance(exp, Experiment):
        exp = load_experiment(exp)
    ov = dict(overrides or {})
    n = exp.model.trials if trials is None else _checked_trials(exp, trials)
    s = exp.model.seed if seed is None else seed
    run_dir = _checked_out(Path(out)) / exp.slug() / _run_id(exp, s)
    how = Execution(workers, executor, scheduler)
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r} (use {' or '.join(ENGINES)})")
    meta = {**_meta(exp, n, s, DEFAULT_CHUNK, ov), "engine": engine}
    meta.update(workers=how.workers, executor=how.describe())
    files = {
        "experiment.source.yaml": exp.text,
        "experiment.yaml": exp.effective_yaml(meta["overrides"]),
    }
    try:
        writer = RunWriter.create(run_dir, files, mode="simulate", target="model", meta=meta)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise RunWriteError(f"{run_dir}: cannot create the run folder: {_why(e)}") from None
    return _execute(exp, writer, how, _Hooks(on_start, progress, on_note))


def resume_run(
    run_dir: str | Path,
    *,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    on_start: Callable[[RunPlan], None] | None = None,
    progress: Progress | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Run:
    """Finish an interrupted run folder with the experiment, seed, trials and engine it
    recorded."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        raise UserError(f"{run_dir}: not a run folder (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text(errors="replace"))
    except ValueError as e:
        raise UserError(f"{meta_path}: unreadable ({e}); this folder cannot be resumed") from None
    if not isinstance(meta, dict) or not {"trials", "seed"} <= meta.keys():
        raise UserError(f"{meta_path}: not the meta of a chaoslab run (no trials/seed)")
    if meta.get("status") == "complete":
        raise UserError(f"{run_dir}: this run is already complete")
    source = run_dir / "experiment.source.yaml"
    exp = load_experiment(meta.get("experiment_file", str(source)), source.read_text())
    chunk_size = int(meta.get("chunk_size", DEFAULT_CHUNK))
    recorded = _meta(
        exp, int(meta["trials"]), int(meta["seed"]), chunk_size, meta.get("overrides", {})
    )
    recorded["engine"] = meta.get("engine", "simpy")
    how = Execution(workers, executor, scheduler)
    hooks = _Hooks(on_start, progress, on_note)
    try:
        writer = _writer(exp, run_dir, how, recorded)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise RunWriteError(f"{run_dir}: cannot write: {_why(e)}") from None
    return _execute(exp, writer, how, hooks)


def _checked_trials(exp: Experiment, trials: int) -> int:
    """A trials override (``--trials``): a whole number from 1 to the file's limit."""
    limit = exp.model.limits.trials
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"--trials {trials}: at least 1 trial per cell")
    if trials > limit:
        raise UserError(
            f"--trials {trials}: over the experiment's limit of {limit} per cell; "
            "raise limits.trials in the file if you mean it"
        )
    return trials


def _checked_out(out: Path) -> Path:
    """The results folder (``--out``): a folder or nothing yet, never a file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"--out {out}: {p} is a file, not a folder")
            break
    return out


def _run_id(exp: Experiment, seed: int) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha1(f"{exp.text}{seed}{stamp}".encode()).hexdigest()[:6]
    return f"{stamp}-{digest}-{unique_id()}"  # random: two runs in one second differ


def _meta(
    exp: Experiment, trials: int, seed: int, chunk_size: int, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The run's identity in meta.json: what a resume reads back."""
    exp.validate(overrides)
    return {
        "experiment": exp.model.title,
        "experiment_file": str(exp.path),
        "seed": seed,
        "trials": trials,
        "chunk_size": chunk_size,
        "profiles": exp.profiles,
        "overrides": dict(overrides),
        "horizon_s": exp.horizon,
        "designs": [label for label, _, _ in exp.design_entries()],
        "faults": [f.kind for f in exp.faults()],
        "sweep": {k: [str(v) for v in vs] for k, vs in exp.model.sweep.items()},
        "cells": len(exp.cells(overrides)),
    }


def _writer(exp: Experiment, run_dir: Path, how: Execution, meta: dict[str, Any]) -> RunWriter:
    meta = {**meta, "workers": how.workers, "executor": how.describe()}
    writer = RunWriter(run_dir, mode="simulate", target="model", meta=meta)
    writer.write_text("experiment.yaml", exp.effective_yaml(meta["overrides"]))
    return writer


@dataclass(frozen=True, slots=True)
class _Hooks:
    """What the caller hears while a run goes: its plan, its progress, engine notes."""

    on_start: Callable[[RunPlan], None] | None = None
    progress: Progress | None = None
    on_note: Callable[[str], None] | None = None


def _execute(exp: Experiment, writer: RunWriter, how: Execution, hooks: _Hooks) -> Run:
    on_start, progress = hooks.on_start, hooks.progress
    meta = writer.meta
    notes: list[str] = list(meta.get("engine_notes", []))

    def note(text: str) -> None:
        if text not in notes:
            notes.append(text)
            writer.meta["engine_notes"] = notes
            if hooks.on_note is not None:
                hooks.on_note(text)

    cells: list[Cell] = exp.cells(meta["overrides"])
    trials, seed, chunk_size = int(meta["trials"]), int(meta["seed"]), int(meta["chunk_size"])
    done = writer.done_chunks()
    todo = [c for c in chunks_for(cells, trials, seed, chunk_size) if c.index not in done]
    total = sum(c.stop - c.start for c in todo)
    if on_start is not None:
        on_start(RunPlan(exp, writer.path, len(cells), trials, seed, len(done), total))
    results = run_cells(
        cells,
        trials=trials,
        seed=seed,
        workers=how.workers,
        chunk_size=chunk_size,
        skip=done,
        executor=how.executor,
        scheduler=how.scheduler,
        engine=meta.get("engine", "simpy"),
        on_note=note,
    )
    kept = f"finished chunks kept in {writer.path}; resume with --resume {writer.path}"
    try:
        with _dask_interrupts(how.executor == "dask"):
            try:
                for chunk, df in results:
                    writer.add_trials(df, chunk.index)
                    if progress is not None:
                        progress(chunk.stop - chunk.start, total)
            finally:
                # now, not when the generator is collected: the pool's workers stop here,
                # instead of finishing every chunk in flight at interpreter exit
                results.close()
        return writer.finish()
    except ExecutorError as e:
        writer.finish_partial()
        raise ExecutorError(f"{e} ({kept})") from e
    except KeyboardInterrupt:
        writer.finish_partial()
        raise RunInterrupted(writer.path) from None
    except OSError as e:  # disk full, file size limit: keep what is on disk
        if e.errno not in _WRITE_ERRNOS:
            raise
        with contextlib.suppress(OSError):
            writer.finish_partial()
        writer.release()
        raise RunWriteError(f"{writer.path}: cannot write: {_why(e)}; {kept}") from None


class _SyncCancelNameError(logging.Filter):
    """Drops one record: distributed's ``utils.sync`` (2026.8.0) waits for a coroutine it
    hands to the event loop's thread; a Ctrl-C or SIGTERM that comes before that coroutine
    has set its ``future`` makes the ``cancel`` callback it schedules raise NameError
    (``future`` is declared, never assigned), and tornado logs that with a traceback. The
    run is cut cleanly all the same (a partial folder), so the traceback only alarms."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        if not exc or not isinstance(exc[1], NameError) or exc[2] is None:
            return True
        tb = exc[2]
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        where = Path(code.co_filename).parts[-2:]
        return not (code.co_name == "cancel" and where == ("distributed", "utils.py"))


#: how long a signal that came during a finalizer waits to be delivered again
_REDELIVER_S = 0.05


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _finalizer_safe(old: Callable[[int, FrameType | None], Any]) -> Any:
    """A signal handler that never raises inside a ``__del__``: Python drops any exception
    there ("Exception ignored in"), so the Ctrl-C would be lost while the run waits for a
    result that no worker computes any more (the terminal's Ctrl-C ended them too: the
    run hung). distributed's Futures release themselves in ``__del__``; the signal is
    delivered again a moment later, outside it."""

    def handler(signum: int, frame: FrameType | None) -> Any:
        if _in_finalizer(frame):
            # to the main thread itself: its blocking wait is cut short only there
            main = threading.main_thread().ident
            assert main is not None
            threading.Timer(_REDELIVER_S, signal.pthread_kill, (main, signum)).start()
            return None
        return old(signum, frame)

    return handler


#: a Dask worker preload (its text: distributed writes it to a file and imports it): the
#: local cluster's worker processes are in the terminal's process group, and a Ctrl-C
#: made each print a KeyboardInterrupt traceback; the run stops them itself, as it stops
#: its pool workers
_WORKER_IGNORES_SIGINT = """\
import signal


def dask_setup(worker):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
"""


@contextlib.contextmanager
def _dask_interrupts(on: bool) -> Iterator[None]:
    """While a Dask run goes: `_finalizer_safe` SIGINT and SIGTERM handlers (main thread
    only: elsewhere Python has none to replace), `_SyncCancelNameError` on tornado's
    callback logger, and local workers that leave the terminal's Ctrl-C to the run."""
    log, quiet = logging.getLogger("tornado.application"), _SyncCancelNameError()
    with contextlib.ExitStack() as stack:
        if on:
            with contextlib.suppress(ImportError):  # else the executor says what is missing
                import dask

                preload = dask.config.get("distributed.worker.preload", [])
                preload = [*preload, _WORKER_IGNORES_SIGINT]
                stack.enter_context(dask.config.set({"distributed.worker.preload": preload}))
            log.addFilter(quiet)
            stack.callback(log.removeFilter, quiet)
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    h = signal.getsignal(sig)
                    if callable(h):
                        signal.signal(sig, _finalizer_safe(h))
                        stack.callback(signal.signal, sig, h)
        yield


#: what the world says when a run folder cannot take more (anything else is a bug)
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
)


def _why(e: OSError) -> str:
    """An OSError in words, without the temporary file's name."""
    return e.strerror or str(e)
