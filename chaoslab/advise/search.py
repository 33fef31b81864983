"""The search: successive halving on trial counts over each design's timer grid, with
every cell's trials cached on disk so a second call (or a wider one) reruns nothing.

Round r runs every surviving point at ``min_trials · eta^r`` trials per cell (only the
trials it lacks: trial i of a cell is the same whenever it runs, see `chaoslab.runner`),
ranks them — points meeting the constraints first, by annual loss; the others by how far
they miss — and keeps the best ``1/eta``. A design is done when one point is left and its
95 % interval is within ``tolerance`` of its estimate, or at ``max_trials``.

Cache: ``<cache>/batch-*.parquet``, one file per round, holds the trials it ran in the
results format plus a ``cell_id`` column. The id hashes everything a trial depends on
(the cell's key, every parameter value, the cluster, the horizon, the seed), never the
rates, which only weigh trials.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chaoslab.advise.cost import Annual, CellStats, annual, cell_stats
from chaoslab.advise.plan import Point
from chaoslab.results import KEY_COLUMNS, METRIC_COLUMNS, atomic_write_parquet
from chaoslab.runner import Cell, run_cells

__all__ = ["Evaluated", "Evaluator", "Limits", "SearchResult", "feasible", "successive_halving"]


def cell_id(cell: Cell, seed: int) -> str:
    values = sorted((k, repr(v)) for k, v in cell.params.values.items())
    text = repr((cell.key, cell.design, values, cell.cluster, cell.horizon, seed))
    return hashlib.sha1(text.encode()).hexdigest()[:20]


#: columns every cell's trials have (the rest are swept timers, one cell's own)
_BASE = {*KEY_COLUMNS, "trial", *METRIC_COLUMNS, "a_t", "a_v"}


class Evaluator:
    """Runs the trials cells lack and keeps every cell's trials: in memory, and on disk
    as one ``batch-*.parquet`` per round (a ``cell_id`` column tells the cells apart)."""

    def __init__(
        self, cache: Path | None, seed: int, workers: int, chunk: int, objective: str
    ) -> None:
        self.cache, self.seed, self.workers = cache, seed, workers
        self.chunk, self.objective = chunk, objective
        self.frames: dict[str, pd.DataFrame] = {}
        self.ran = 0  # trials run by this evaluator
        self.reused = 0  # trials found in the cache
        self._ids: dict[int, tuple[Cell, str]] = {}
        self._stored: dict[str, list[pd.DataFrame]] = {}
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            self._load(cache)

    def _load(self, cache: Path) -> None:
        for f in sorted(cache.glob("batch-*.parquet")):
            with contextlib.suppress(OSError, ValueError):
                df = pd.read_parquet(f)
                for cid, g in df.groupby("cell_id", sort=False):
                    self._stored.setdefault(str(cid), []).append(g.drop(columns="cell_id"))

    def cell_id(self, cell: Cell) -> str:
        hit = self._ids.get(id(cell))
        if hit is None or hit[0] is not cell:
            hit = (cell, cell_id(cell, self.seed))
            self._ids[id(cell)] = hit
        return hit[1]

    def trials(self, cell: Cell, n: int | None = None) -> pd.DataFrame:
        df = self.frames[self.cell_id(cell)]
        return df if n is None else df.iloc[:n]

    def stats(self, cell: Cell, n: int) -> CellStats:
        return cell_stats(self.trials(cell, n), self.objective)

    def _have(self, cell: Cell) -> int:
        cid = self.cell_id(cell)
        parts = self._stored.pop(cid, None)
        if parts and cid not in self.frames:
            df = pd.concat(parts).sort_values("trial", kind="stable")
            df = df.drop_duplicates("trial").reset_index(drop=True)
            keep = [c for c in df.columns if c in _BASE or c in cell.sweep or c.startswith("at_")]
            n = len(df) - len(df) % self.chunk  # whole chunks only
            if n and (df["trial"].to_numpy()[:n] == np.arange(n)).all():
                self.frames[cid] = df[keep].iloc[:n]
                self.reused += n
        return len(self.frames.get(cid, ()))

    def ensure(self, cells: Sequence[Cell], n: int) -> None:
        """Every cell has at least ``n`` trials (a multiple of the chunk size)."""
        groups: dict[int, list[Cell]] = {}
        seen: set[str] = set()
        for cell in cells:
            cid = self.cell_id(cell)
            if cid in seen:
                continue
            seen.add(cid)
            have = self._have(cell)
            if have < n:
                groups.setdefault(have, []).append(cell)
        fresh: list[pd.DataFrame] = []
        for have, group in sorted(groups.items()):
            fresh += self._run(group, have, n)
        if fresh and self.cache is not None:
            atomic_write_parquet(self.cache / f"batch-{uuid.uuid4().hex[:12]}.parquet",
                           pd.concat(fresh, ignore_index=True))  # fmt: skip

    def _run(self, group: list[Cell], have: int, n: int) -> list[pd.DataFrame]:
        """Run trials ``have..n`` of each cell; returns them with their cell_id."""
        per = n // self.chunk
        skip = {i * per + j for i in range(len(group)) for j in range(have // self.chunk)}
        new: dict[int, list[pd.DataFrame]] = {}
        for chunk, df in run_cells(
            group, trials=n, seed=self.seed, workers=self.workers, chunk_size=self.chunk,
            skip=skip,
        ):  # fmt: skip
            new.setdefault(chunk.index // per, []).append(df)
            self.ran += len(df)
        out = []
        for i, cell in enumerate(group):
            cid = self.cell_id(cell)
            old = [self.frames[cid]] if cid in self.frames else []
            self.frames[cid] = pd.concat([*old, *new.get(i, [])], ignore_index=True)
            out += [df.assign(cell_id=cid) for df in new.get(i, [])]
        return out


@dataclass(frozen=True)
class Limits:
    """What the operator will not accept, per cluster-year (inf: no limit)."""

    spurious: float = math.inf
    resets: float = math.inf


def feasible(a: Annual, limits: Limits) -> bool:
    return a.spurious <= limits.spurious and a.resets <= limits.resets


def _violation(a: Annual, limits: Limits) -> float:
    """How far a point misses the constraints, relative to each limit."""
    out = 0.0
    for got, limit in ((a.spurious, limits.spurious), (a.resets, limits.resets)):
        if got > limit:
            out += (got - limit) / limit if limit > 0 else got
    return out


def rank_key(a: Annual, limits: Limits) -> tuple[float, float]:
    return (_violation(a, limits), a.total_s)


@dataclass(frozen=True)
class Evaluated:
    point: Point
    annual: Annual
    trials: int


@dataclass
class SearchResult:
    #: design label -> its points, each with its estimate at the most trials it got
    evaluated: dict[str, list[Evaluated]]
    #: design label -> the recommended point (the best at the last round)
    best: dict[str, Evaluated]
    rounds: int
    trials_run: int
    trials_reused: int
    cells_grid: int  # cells of the full grid


def _estimate(ev: Evaluator, p: Point, n: int) -> Evaluated:
    a = annual(p.parts, [ev.stats(c, n) for c in p.cells])
    return Evaluated(p, a, n)


def _tight(e: Evaluated, tolerance: float) -> bool:
    a = e.annual
    return a.half_s <= tolerance * a.total_s or a.half_s == 0


Progress = Callable[[str], None]


def successive_halving(
    points: Sequence[Point],
    ev: Evaluator,
    *,
    limits: Limits,
    trials: tuple[int, int, int],
    tolerance: float,
    progress: Progress | None = None,
) -> SearchResult:
    """``trials``: (min per cell, max per cell, eta)."""
    lo, hi, eta = trials
    alive: dict[str, list[Point]] = {}
    for p in points:
        alive.setdefault(p.label, []).append(p)
    latest: dict[str, dict[int, Evaluated]] = {k: {} for k in alive}
    best: dict[str, Evaluated] = {}
    n, rounds = lo, 0
    while alive:
        rounds += 1
        ev.ensure([c for ps in alive.values() for p in ps for c in p.cells], n)
        for label in list(alive):
            ranked = sorted(
                (_estimate(ev, p, n) for p in alive[label]),
                key=lambda e: rank_key(e.annual, limits),
            )
            for e in ranked:
                latest[label][e.point.index] = e
            best[label] = ranked[0]
            done = n >= hi or (len(ranked) == 1 and _tight(ranked[0], tolerance))
            if done:
                del alive[label]
            else:
                alive[label] = [e.point for e in ranked[: max(1, math.ceil(len(ranked) / eta))]]
        if progress is not None:
            progress(_round_line(rounds, n, best, alive, ev))
        n = min(hi, n * eta)
    return SearchResult(
        {k: sorted(v.values(), key=lambda e: e.point.index) for k, v in latest.items()},
        best,
        rounds,
        ev.ran,
        ev.reused,
        sum(len(p.cells) for p in points),
    )


def _round_line(
    r: int, n: int, best: Mapping[str, Evaluated], alive: Mapping[str, list[Point]], ev: Evaluator
) -> str:
    left = sum(len(v) for v in alive.values())
    lead = min(best.values(), key=lambda e: e.annual.total_s)
    lo, hi = lead.annual.ci_minutes
    return (
        f"round {r}: {n} trials per cell; {ev.ran:,} trials run, {ev.reused:,} from the "
        f"cache; {left} point(s) left; lowest so far {lead.point.label} "
        f"[{lead.point.text}] {lead.annual.minutes:.3g} min/yr ({lo:.3g}-{hi:.3g})"
    )
