"""Monte Carlo runner: cells of design x fault x sweep point, trials, seeds, workers.

Reproducibility: trial ``i`` of a cell draws from
``SeedSequence(seed, spawn_key=(crc32(cell key), i))``, so its result depends only on the
seed, the cell and ``i`` — never on how trials are split across workers or chunks.

The runner returns DataFrames; where they go is the caller's business (the CLI streams
them into a run folder with `chaoslab.results.RunWriter`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import itertools
import math
import os
import signal
import sys
import threading
import time
import uuid
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chaoslab.designs import DESIGNS, Design
from chaoslab.errors import LiveError, UserError
from chaoslab.fast import ENGINES, FastCell, fast_frame, plan
from chaoslab.faults import FAULTS, Fault, FaultKind, ImpossibleFault
from chaoslab.mechanisms.base import MILESTONES, Trial, milestone_column
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.outage import metrics
from chaoslab.params import ParamSet, lookup
from chaoslab.results import METRIC_COLUMNS

__all__ = [
    "ENGINES",
    "EXECUTORS",
    "Cell",
    "Chunk",
    "EngineError",
    "ExecutorError",
    "FastEngineFallback",
    "run_cells",
    "run_chunk",
    "run_trial",
]

#: trials per unit of work handed to a worker
DEFAULT_CHUNK = 500
#: a fast-engine chunk costs ~3.7 ms whatever its size: at 500 trials that tripled its
#: per-trial cost, so its chunks are at least this large
FAST_CHUNK = 5000


@dataclass(frozen=True)
class Cell:
    """One design x fault x sweep point, with its fully resolved parameters."""

    design: str
    fault: Fault
    params: ParamSet
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    sweep: Mapping[str, object] = field(default_factory=dict)
    horizon: float = 1800.0
    #: the name in result tables (a design variant's label); default: the design key
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.design

    @property
    def key(self) -> str:
        sweep = ",".join(f"{k}={v}" for k, v in sorted(self.sweep.items()))
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.fault.options.items()))
        return f"{self.name}|{self.fault.kind}|{self.fault.label}|{opts}|{sweep}"

    def check(self) -> None:
        """Raise ImpossibleFault/ImpossibleTarget if this cell cannot run (build one trial)."""
        design = DESIGNS[self.design]
        if self.fault.kind in design.refuses:
            raise ImpossibleFault(
                f"{self.fault.kind} makes no sense for {self.design}: "
                f"{design.refuses[self.fault.kind]}"
            )
        run_trial(self, 0, seed=0, probe_only=True)


@dataclass(frozen=True)
class Chunk:
    cell: Cell
    seed: int
    start: int
    stop: int
    index: int = 0  # position in the run, for ordered reassembly
    #: milestone names, one ``at_*`` column each (None: this process' registry)
    milestones: tuple[str, ...] | None = None
    #: the cell's closed form when the fast engine runs it (None: the SimPy model)
    fast: FastCell | None = None


def _rng(seed: int, cell_key: str, trial: int) -> np.random.Generator:
    return _rng_crc(seed, zlib.crc32(cell_key.encode()), trial)


def _rng_crc(seed: int, crc: int, trial: int) -> np.random.Generator:
    ss = np.random.SeedSequence(seed, spawn_key=(crc, trial))
    return np.random.Generator(np.random.PCG64(ss))


# numpy's SeedSequence hash (numpy/random/bit_generator.pyx) and PCG64 seeding
# (numpy/random/src/pcg64/pcg64.c, pcg_setseq_128_srandom_r), for a whole chunk of
# spawn keys at once: a SeedSequence + PCG64 per trial cost ~15 µs, most of a short trial's
# set-up. Same states bit for bit (tests/test_scale_seeding.py checks against numpy).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341
_M128 = (1 << 128) - 1


def _words(x: int) -> list[int]:
    """numpy's _coerce_to_uint32_array of one non-negative int: little-endian words."""
    out = [x & 0xFFFFFFFF]
    x >>= 32
    while x:
        out.append(x & 0xFFFFFFFF)
        x >>= 32
    return out


def _hashmix(value: np.ndarray, const: list[int]) -> np.ndarray:
    value = value ^ np.uint32(const[0])
    const[0] = (const[0] * _MULT_A) & 0xFFFFFFFF
    value = value * np.uint32(const[0])
    return value ^ (value >> np.uint32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r: np.ndarray = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y  # uint32, wraps
    return r ^ (r >> np.uint32(16))


def pcg_states(seed: int, crc: int, start: int, stop: int) -> list[tuple[int, int]] | None:
    """PCG64 (state, inc) of trials ``start..stop`` — what
    ``PCG64(SeedSequence(seed, spawn_key=(crc, i)))`` holds — or None where this shortcut
    does not apply (then `_rng_crc` is used)."""
    if sys.byteorder != "little" or seed < 0 or stop > 1 << 32 or start < 0:
        return None
    run = _words(seed)
    if len(run) > _POOL:
        return None
    fixed = [*run, *([0] * (_POOL - len(run))), crc & 0xFFFFFFFF]
    n = stop - start
    entropy = [np.full(n, w, dtype=np.uint32) for w in fixed]
    entropy.append(np.arange(start, stop, dtype=np.uint64).astype(np.uint32))
    with np.errstate(over="ignore"):
        const = [_INIT_A]
        mixer = [_hashmix(entropy[i], const) for i in range(_POOL)]
        for i_src in range(_POOL):
            for i_dst in range(_POOL):
                if i_src != i_dst:
                    mixer[i_dst] = _mix(mixer[i_dst], _hashmix(mixer[i_src], const))
        for i_src in range(_POOL, len(entropy)):
            for i_dst in range(_POOL):
                mixer[i_dst] = _mix(mixer[i_dst], _hashmix(entropy[i_src], const))
        hc = _INIT_B
        words = np.empty((n, 8), dtype=np.uint32)
        for i in range(8):
            v = mixer[i % _POOL] ^ np.uint32(hc)
            hc = (hc * _MULT_B) & 0xFFFFFFFF
            v = v * np.uint32(hc)
            words[:, i] = v ^ (v >> np.uint32(16))
    out = []
    for s0, s1, i0, i1 in words.view(np.uint64).tolist():
        inc = ((((i0 << 64) | i1) << 1) | 1) & _M128
        # state 0, one step (-> inc), + initstate, one more step
        state = ((inc + ((s0 << 64) | s1)) * _PCG_MULT + inc) & _M128
        out.append((state, inc))
    return out


class _Streams:
    """One reused PCG64 whose state is set to each trial's own stream in turn."""

    def __init__(self, seed: int, crc: int, start: int, stop: int) -> None:
        self.seed, self.crc, self.start = seed, crc, start
        self.states = pcg_states(seed, crc, start, stop)
        self.bitgen = np.random.PCG64(0)
        self.rng = np.random.Generator(self.bitgen)
        #: each trial's `Trial.jumped_rng` in turn (trials of a chunk run one at a time)
        self.spare = np.random.Generator(np.random.PCG64(0))

    def rng_for(self, trial: int) -> np.random.Generator:
        if self.states is None:
            return _rng_crc(self.seed, self.crc, trial)
        state, inc = self.states[trial - self.start]
        self.bitgen.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return self.rng


@dataclass(frozen=True)
class _Prepared:
    """What every trial of a cell shares, worked out once per cell and process."""

    params: ParamSet  # the cell's parameters with the fault's options applied
    design: Design
    kind: FaultKind
    crc: int  # crc32 of the cell key: the first element of each trial's spawn key


_PREPARED: dict[int, tuple[Cell, _Prepared]] = {}


def _prepare(cell: Cell) -> _Prepared:
    # keyed by identity (a Cell holds dicts, so it is not hashable); the cell is kept in the
    # entry so its id cannot be reused while the entry lives
    hit = _PREPARED.get(id(cell))
    if hit is not None and hit[0] is cell:
        return hit[1]
    prep = _Prepared(
        cell.params.with_overrides(cell.fault.overrides(), source="fault options"),
        DESIGNS[cell.design],
        FAULTS[cell.fault.kind],
        zlib.crc32(cell.key.encode()),
    )
    if len(_PREPARED) >= 256:
        _PREPARED.clear()
    _PREPARED[id(cell)] = (cell, prep)
    return prep


def _build(
    cell: Cell,
    trial_index: int,
    seed: int,
    rng: np.random.Generator | None = None,
    spare: np.random.Generator | None = None,
) -> tuple[Trial, Any, list[Any], list[Any]]:
    """One trial wired and its fault's targets resolved, before the fault: (trial, topology,
    target nodes, target pods). The fast engine reads its topology from this too. ``rng``:
    the trial's own stream when the caller made it already (`_Streams`); ``spare``: a
    generator the trial may take over (`Trial.jumped_rng`)."""
    prep = _prepare(cell)
    if rng is None:
        rng = _rng_crc(seed, prep.crc, trial_index)
    trial = Trial(prep.params.sampler(rng), rng, cell.horizon, spare)
    topo = prep.design.build(trial, cell.cluster)
    nodes, pods = prep.kind.resolve(topo, cell.fault)
    topo.targets_resolved(nodes, pods)
    trial.set_availability(topo.availability)
    return trial, topo, nodes, pods


def _simulate(
    cell: Cell,
    trial_index: int,
    seed: int,
    probe_only: bool = False,
    rng: np.random.Generator | None = None,
    spare: np.random.Generator | None = None,
) -> tuple[Trial, float, float]:
    """Build and run one trial; returns it with the (reset, hung) shares of connections."""
    trial, topo, nodes, pods = _build(cell, trial_index, seed, rng, spare)
    if probe_only:
        return trial, math.nan, math.nan
    flows = topo.flows()
    _prepare(cell).kind.inject(topo, nodes, pods)
    reset, hung = _classify_flows(flows)
    trial.changed()
    trial.run()
    if trial.connections is not None:
        reset, hung = trial.connections
    return trial, reset, hung


def run_trial(
    cell: Cell,
    trial_index: int,
    *,
    seed: int,
    probe_only: bool = False,
    stats: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run one trial and return its row (without the cell's key columns).

    ``stats``, if given, receives ``events``: the SimPy events the trial processed (the
    benchmark's events-per-trial figure).
    """
    trial, reset, hung = _simulate(cell, trial_index, seed, probe_only)
    if probe_only:
        return {}
    if stats is not None:
        stats["events"] = stats.get("events", 0) + _processed_events(trial.env)
    m = metrics(trial.a_t, trial.a_v, cell.horizon)
    row: dict[str, Any] = {
        "trial": trial_index,
        "recovery_s": m.recovery_s,
        "recovered": m.recovered,
        "downtime_s": m.downtime_s,
        "degraded_s": m.degraded_s,
        "lost_s": m.lost_s,
        "connections_reset": reset,
        "connections_hung": hung,
    }
    row["slow_s"], row["p99_latency_s"] = trial.latency_row(m.recovery_s)
    ms = trial.milestones
    if m.recovered and m.recovery_s > 0:
        ms.setdefault("service.recovered", m.recovery_s)
    for name in MILESTONES:
        row[milestone_column(name)] = ms.get(name, math.nan)
    row["a_t"] = trial.a_t
    row["a_v"] = trial.a_v
    return row


def _processed_events(env: Any) -> int:
    # SimPy numbers every scheduled event (Environment._eid); those still queued at the
    # horizon were never processed, and the run(until=...) stop event is not the model's
    scheduled = next(env._eid)
    return scheduled - len(env._queue) - 1


def _classify_flows(flows: Sequence[tuple[float, Any, Any]]) -> tuple[float, float]:
    """Share of established connections reset (dead process, live node) or hung (dead path)."""
    if not flows:
        return (math.nan, math.nan)
    reset = hung = 0.0
    for weight, via, pod in flows:
        node = pod.node
        if (via is not None and not via.reachable) or node is None or not node.reachable:
            hung += weight
        elif not pod.running:
            reset += weight
    return (reset, hung)


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """The chunk's trials as a DataFrame: key columns, metrics, milestones, a_t/a_v.

    Same rows as `run_trial` for each trial, gathered column by column (a list of row
    dicts and pandas' dict-of-records inference cost a third of a short trial).
    """
    cell = chunk.cell
    seed = chunk.seed
    horizon = cell.horizon
    names = list(MILESTONES) if chunk.milestones is None else list(chunk.milestones)
    if chunk.fast is not None:
        # every results column, slow_s/p99_latency_s included: `fast.plan` refuses a cell
        # it has no closed form or constant for
        return fast_frame(cell, chunk.fast, seed, chunk.start, chunk.stop, names)
    # per trial one tuple of metrics and its milestone dict, made into columns at the end
    # (an append per column and milestone per trial was ~3 % of a short trial)
    rows: list[tuple[Any, ...]] = []
    marks: list[dict[str, float]] = []
    a_t: list[list[float]] = []
    a_v: list[list[float]] = []
    streams = _Streams(seed, _prepare(cell).crc, chunk.start, chunk.stop)
    for i in _one_by_one(chunk.start, chunk.stop):
        trial, reset, hung = _simulate(cell, i, seed, rng=streams.rng_for(i), spare=streams.spare)
        m = metrics(trial.a_t, trial.a_v, horizon)
        slow, p99 = trial.latency_row(m.recovery_s)
        rows.append(
            (
                m.recovery_s,
                m.recovered,
                m.downtime_s,
                m.degraded_s,
                m.lost_s,
                reset,
                hung,
                slow,
                p99,
            )
        )
        ms = trial.milestones
        if m.recovered and m.recovery_s > 0:
            ms.setdefault("service.recovered", m.recovery_s)
        marks.append(ms)
        a_t.append(trial.a_t)
        a_v.append(trial.a_v)
    data = key_columns(cell, chunk.start, chunk.stop)
    # each row holds the trial's metrics in METRIC_COLUMNS order
    by_col = dict(zip(METRIC_COLUMNS, zip(*rows, strict=True), strict=True)) if rows else {}
    for c in METRIC_COLUMNS:
        data[c] = np.asarray(by_col[c] if rows else (), dtype=bool if c == "recovered" else float)
    nan = math.nan
    for name in names:
        data[milestone_column(name)] = np.asarray([d.get(name, nan) for d in marks], dtype=float)
    data["a_t"] = a_t
    data["a_v"] = a_v
    return pd.DataFrame(data)


def _one_by_one(start: int, stop: int) -> Iterator[int]:
    """Trial indexes ``start..stop``, the cyclic garbage collector run once between trials.

    A finished trial's objects are garbage in cycles (mechanisms and their trial refer to
    each other): Python's automatic collections traversed each trial's live objects
    several times while it ran (8-9 % of a trial's CPU); one young-generation collection
    after each trial frees them at about half that. Results do not depend on it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(start, stop):
            yield i
            gc.collect(0)
    finally:
        if enabled:
            gc.enable()


def key_columns(cell: Cell, start: int, stop: int) -> dict[str, Any]:
    """The columns that name a chunk's rows (design, fault, target, swept values, trial),
    the same for every engine."""
    n = stop - start
    data: dict[str, Any] = {
        "design": [cell.name] * n,
        "fault": [cell.fault.result_name] * n,
        "target": [cell.fault.label] * n,
    }
    for key, raw in cell.sweep.items():
        data[key] = [sweep_value(key, raw)] * n
    data["trial"] = np.arange(start, stop, dtype=np.int64)
    return data


def sweep_value(key: str, raw: object) -> object:
    """Swept values as numbers (seconds for durations) when fixed, else their text."""
    if key == "profile":
        return raw if isinstance(raw, str) else "+".join(map(str, raw))  # type: ignore[call-overload]
    p = lookup(key)
    v = p.parse(raw)
    from chaoslab.params.dists import Dist

    if isinstance(v, Dist) and v.is_fixed:
        return v.mean()
    return p.text(v)


class FastEngineFallback(UserWarning):
    """A cell the fast engine does not cover ran on the SimPy model."""


def chunks_for(
    cells: Sequence[Cell],
    trials: int,
    seed: int,
    chunk_size: int,
    *,
    engine: str = "simpy",
    on_note: Callable[[str], None] | None = None,
) -> list[Chunk]:
    # the milestone columns are fixed by the process that plans the run, so a worker that
    # imported a different set of mechanism modules still writes the same columns
    names = tuple(MILESTONES)
    out: list[Chunk] = []
    for cell in cells:
        fast = _fast_plan(cell, on_note) if engine == "fast" else None
        size = max(chunk_size, FAST_CHUNK) if fast is not None else chunk_size
        for start in range(0, trials, size):
            stop = min(trials, start + size)
            out.append(Chunk(cell, seed, start, stop, len(out), names, fast))
    return out


def _fast_plan(cell: Cell, on_note: Callable[[str], None] | None) -> FastCell | None:
    fc, why = plan(cell)
    if fc is None:
        note = f"{cell.name} {cell.fault.result_name} {cell.fault.label}: SimPy engine ({why})"
        if on_note is not None:
            on_note(note)
        else:
            warnings.warn(note, FastEngineFallback, stacklevel=3)
    return fc


#: where chunks run: this process / a local process pool, or a Dask distributed cluster
EXECUTORS = ("local", "dask")


class ExecutorError(LiveError):
    """The chosen executor cannot run (dask missing, scheduler unreachable, bad workers)."""


class EngineError(UserError):
    """An engine name that does not exist."""


def run_cells(
    cells: Sequence[Cell],
    *,
    trials: int,
    seed: int,
    workers: int = 1,
    chunk_size: int = DEFAULT_CHUNK,
    skip: set[int] | None = None,
    on_chunk: Callable[[Chunk, pd.DataFrame], None] | None = None,
    executor: str = "local",
    scheduler: Any = None,
    engine: str = "simpy",
    on_note: Callable[[str], None] | None = None,
) -> Generator[tuple[Chunk, pd.DataFrame], None, None]:
    """Run every cell's trials; yields finished chunks in run order (close the generator
    to stop early: the pool's workers are killed then, not at interpreter exit).

    ``skip`` holds chunk indexes already done (resume). Results are identical for any
    ``workers`` and either executor: each trial's random stream depends on (seed, cell,
    trial) only, and a chunk's rows on its trials only.

    ``executor="local"`` runs chunks in this process (``workers`` <= 1) or a process pool;
    ``executor="dask"`` sends them to the Dask scheduler at ``scheduler``: an address
    (``tcp://host:8786``), a cluster object (``KubeCluster``, ``SLURMCluster`` ...), or
    ``"local"``/None for a `distributed.LocalCluster` of ``workers`` processes. Only a
    bounded window of chunks is in flight, so memory does not grow with the number of
    chunks.

    ``engine="fast"`` runs the cells `chaoslab.fast` has a closed form for as NumPy over a
    chunk's trials (equal in distribution to the SimPy model, not identical); every other
    cell runs on the SimPy model and is reported through ``on_note`` (or a
    `FastEngineFallback` warning).
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r} (use {' or '.join(ENGINES)})")
    planned = chunks_for(cells, trials, seed, chunk_size, engine=engine, on_note=on_note)
    work = [c for c in planned if c.index not in (skip or ())]
    if executor == "dask":
        results = _run_dask(work, workers, scheduler)
    elif workers <= 1 or len(work) <= 1:
        results = ((chunk, run_chunk(chunk)) for chunk in work)
    else:
        results = _run_pool(work, min(workers, os.cpu_count() or 1, len(work)))
    for chunk, df in results:
        if on_chunk:
            on_chunk(chunk, df)
        yield chunk, df


def _in_order(
    work: Sequence[Chunk],
    submit: Callable[[Chunk], Any],
    result: Callable[[Any], pd.DataFrame],
    window: int,
) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """Keep ``window`` chunks in flight; yield them in run order as the head finishes."""
    pending: deque[tuple[Chunk, Any]] = deque()
    it = iter(work)
    for chunk in itertools.islice(it, window):
        pending.append((chunk, submit(chunk)))
    while pending:
        chunk, fut = pending.popleft()
        df = result(fut)
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, submit(nxt)))
        yield chunk, df


#: Linux prctl(2) option: the signal a process gets when its parent dies
_PR_SET_PDEATHSIG = 1
#: seconds between a pool worker's checks that the process that started it still runs
_PARENT_POLL_S = 1.0


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_parent(ppid: int, run_pid: int) -> None:
    # reparented (to init or a subreaper), or the run's process gone: nobody wants these trials
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != ppid or not _alive(run_pid):
            os._exit(1)


def _die_with_parent(run_pid: int) -> None:
    """Pool worker initializer: never outlive the run (SIGKILL of the run included).

    PR_SET_PDEATHSIG (prctl(2)) kills the worker when the thread that forked it exits; the
    watcher thread covers platforms without prctl, a run that died before the call, and a
    forkserver parent (Python 3.14's default) that outlives the run for a moment.
    """
    _set_pdeathsig(signal.SIGKILL)
    # the run is in charge of stopping: the terminal's Ctrl-C reaches the whole process
    # group, and a worker raising KeyboardInterrupt would print a traceback (or, idle, die
    # mid-queue); SIGTERM ends a worker at once (the pool's own terminate() sends it)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        # started with SIGINT blocked (`_sigint_held`): ignored from here on
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    ppid = os.getppid()
    if not _alive(run_pid):
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(ppid, run_pid), daemon=True).start()


def _run_pool(work: Sequence[Chunk], workers: int) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    pool = ProcessPoolExecutor(
        max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
    )

    def submit(chunk: Chunk) -> Any:
        with _sigint_held():
            return pool.submit(run_chunk, chunk)

    try:
        yield from _in_order(work, submit, _pool_result, 4 * workers)
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM, the generator closed): the chunks in flight are
        # lost anyway, and waiting for them took minutes under load
        _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT blocked while the pool may start workers (in ``submit``): a process forked
    (or spawned: the mask survives exec) in that moment starts with it blocked until its
    initializer ignores it. Without this, the terminal's Ctrl-C reaching a worker before
    its initializer ran killed it with a KeyboardInterrupt, and the run ended as "a worker
    process died" (exit 1) instead of interrupted. Only this thread blocks it: a Ctrl-C
    meanwhile waits, pending, until the block ends, unless another thread of the run takes
    it (then it is raised here as usual)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _pool_result(fut: Any) -> pd.DataFrame:
    try:
        df: pd.DataFrame = fut.result()
    except BrokenProcessPool:
        raise ExecutorError(
            "a worker process died (killed from outside, or out of memory?)"
        ) from None
    return df


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the pool's worker processes (by PID: they are this run's children)."""
    # before Python 3.14 (kill_workers) ProcessPoolExecutor has no public way to stop
    # running calls; its process table is the one way to reach them
    kill_workers = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill_workers is not None:
        kill_workers()
    else:
        procs = dict(getattr(pool, "_processes", None) or {})
        for proc in procs.values():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                proc.kill()
    # A worker killed while it wrote its result leaves half a message in the result pipe,
    # and the pool's manager thread waits in recv() for the rest for ever (so did
    # shutdown(wait=True), and the run hung): this process holds the pipe's write end too,
    # so the reader never sees end of file. Closed here, the dead workers' ends were the
    # last: recv() fails with EOFError, and the manager thread marks the pool broken and
    # ends. Nothing is sent on it from this side; shutdown() closes the queue later.
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()
    # shutdown() joins them: the pool's manager thread reaps its processes itself


def _run_dask(
    work: Sequence[Chunk], workers: int, scheduler: Any
) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ExecutorError(
            "the dask executor needs dask[distributed]: pip install 'chaoslab[dask]'"
        ) from None
    cluster = None
    if scheduler is None or (isinstance(scheduler, str) and scheduler in ("", "local")):
        # one single-threaded process per worker: a trial holds the GIL all the time
        cluster = LocalCluster(
            n_workers=max(1, workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        address: Any = cluster
    else:
        address = scheduler
    try:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        try:
            slots = _check_workers(client)
            yield from _in_order(
                work,
                lambda c: client.submit(run_chunk, c, key=_chunk_key(c), pure=False),
                _dask_result,
                2 * slots,
            )
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _chunk_key(chunk: Chunk) -> str:
    # a readable task name on the dashboard; unique per run and chunk
    return f"chaoslab-{chunk.seed}-{chunk.index}-{uuid.uuid4().hex[:8]}"


def _worker_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("chaoslab")
    except metadata.PackageNotFoundError:
        return "source"


def _check_workers(client: Any) -> int:
    """Threads on the cluster; refuse workers that run another chaoslab version."""
    client.wait_for_workers(1, timeout=120)
    mine = _worker_version()
    try:
        theirs = client.run(_worker_version)
    except ModuleNotFoundError:
        raise ExecutorError(
            "the Dask workers cannot import chaoslab: install this chaoslab on every worker"
        ) from None
    other = {w: v for w, v in theirs.items() if v != mine}
    if other:
        w, v = next(iter(other.items()))
        raise ExecutorError(
            f"Dask worker {w} runs chaoslab {v}, this is {mine}: the same seeds would not give "
            "the same trials; install the same version everywhere"
        )
    return max(1, sum(client.nthreads().values()))


def _dask_result(fut: Any) -> pd.DataFrame:
    try:
        return fut.result()
    except ModuleNotFoundError as e:
        raise ExecutorError(f"a Dask worker cannot import what a chunk needs: {e}") from None
