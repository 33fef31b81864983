"""What every closed form shares: vectorized draws, timer grids, a(t) and its metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chaoslab.params import ParamSet
from chaoslab.params.dists import (
    Dist,
    Empirical,
    Exponential,
    Fixed,
    LogNormal,
    Normal,
    Sum,
    Uniform,
)

__all__ = ["Draws", "availability", "metrics", "next_tick", "rows"]

_EPS = 1e-9  # the SimPy model's grid tolerance (chaoslab.mechanisms.node)
AV_EPS = 1e-9  # chaoslab.outage.EPS


class Draws:
    """Vectorized draws of catalogue parameters: ``n`` values per call, one per trial."""

    def __init__(self, ps: ParamSet, rng: np.random.Generator, n: int) -> None:
        self.ps = ps
        self.rng = rng
        self.size = n

    def __call__(self, key: str) -> np.ndarray:
        return _sample(self.ps[key], self.rng, self.size)  # type: ignore[arg-type]

    def count(self, key: str) -> np.ndarray:
        """`Sampler.count` over arrays: rounded, at least 1 where the model says so."""
        return np.maximum(1, np.round(self(key)))

    def flag(self, key: str) -> bool:
        return bool(self.ps[key])

    def choice(self, key: str) -> str:
        return str(self.ps[key])

    def phase(self, period: np.ndarray | float) -> np.ndarray:
        """A periodic timer's stationary offset, U(0, period) (`Trial.phase`)."""
        return period * self.rng.random(self.size)


def _sample(d: Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of ``d``, distributed as ``d.sample`` (chaoslab.params.dists)."""
    if isinstance(d, Fixed):
        return np.full(n, d.value)
    if isinstance(d, Uniform):
        return d.low + (d.high - d.low) * rng.random(n)
    if isinstance(d, Normal):
        return np.maximum(0.0, d.mu + d.sd * rng.standard_normal(n))
    if isinstance(d, LogNormal):
        return d.median * np.exp(d.sigma * rng.standard_normal(n))
    if isinstance(d, Exponential):
        return d.scale * rng.standard_exponential(n)
    if isinstance(d, Empirical):
        return np.asarray(d.values)[rng.integers(len(d.values), size=n)]
    if isinstance(d, Sum):
        return np.sum([_sample(t, rng, n) for t in d.terms], axis=0)
    return np.array([d.sample(rng) for _ in range(n)])


def next_tick(phase: np.ndarray | float, period: np.ndarray | float, t: np.ndarray) -> np.ndarray:
    """`chaoslab.mechanisms.node.next_tick` over arrays."""
    return phase + np.ceil((t - phase) / period - _EPS) * period


def availability(
    table: dict[tuple[bool, ...], float],
    on: Sequence[np.ndarray],
    off: Sequence[np.ndarray],
    horizon: float,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a(t) change points from state bits: bit j holds on ``[on[j], off[j])`` per trial.

    ``table`` maps each combination of bits to the design's a(t) (read off a probe trial).
    Returns (times, values, keep): sorted instants from t = 0, a(t) after each, and which
    are change points (within the horizon, value changed) as `Trial.changed` records them.
    """
    instants = [np.zeros((n, 1))]
    instants += [np.asarray(x)[:, None] for x in (*on, *off)]
    times = np.sort(np.concatenate(instants, axis=1), axis=1)
    times = np.where(np.isnan(times), np.inf, times)
    code = np.zeros(times.shape, dtype=np.int64)
    for j, (a, b) in enumerate(zip(on, off, strict=True)):
        bit = (a[:, None] <= times) & (times < b[:, None])
        code |= bit.astype(np.int64) << j
    lookup = np.empty(1 << len(on))
    for state, v in table.items():
        lookup[sum(int(s) << j for j, s in enumerate(state))] = v
    values = lookup[code]
    keep = times <= horizon
    keep[:, 1:] &= values[:, 1:] != values[:, :-1]
    return times, values, keep


def metrics(
    times: np.ndarray, values: np.ndarray, keep: np.ndarray, horizon: float
) -> dict[str, np.ndarray]:
    """`chaoslab.outage.metrics` on many step functions at once (kept change points)."""
    t = np.where(keep, times, np.inf)
    # each kept point holds until the next kept one (or the horizon)
    nxt = np.minimum.accumulate(t[:, ::-1], axis=1)[:, ::-1]
    t1 = np.concatenate([nxt[:, 1:], np.full((len(t), 1), np.inf)], axis=1)
    t1 = np.minimum(t1, horizon)
    span = np.where(keep, np.maximum(t1 - times, 0.0), 0.0)
    low = values < 1 - AV_EPS
    lost = np.sum(np.where(low, (1 - values) * span, 0.0), axis=1)
    down = np.sum(np.where(low & (values <= AV_EPS), span, 0.0), axis=1)
    degraded = np.sum(np.where(low & (values > AV_EPS), span, 0.0), axis=1)
    last_drop = np.max(np.where(low & (span > 0), t1, 0.0), axis=1)
    last = np.max(np.where(keep, np.arange(times.shape[1]), 0), axis=1)
    final = values[np.arange(len(t)), last]
    recovered = final >= 1 - AV_EPS
    return {
        "recovery_s": np.where(recovered, last_drop, np.inf),
        "recovered": recovered,
        "downtime_s": down,
        "degraded_s": degraded,
        "lost_s": lost,
    }


def rows(a: np.ndarray, keep: np.ndarray) -> list[list[float]]:
    """Each trial's kept points as a list (the a_t / a_v cells of a results table)."""
    # kept points moved to the front (stable), then one tolist() per distinct count
    order = np.argsort(~keep, axis=1, kind="stable")
    packed = np.take_along_axis(a, order, axis=1)
    counts = keep.sum(axis=1)
    out: list[list[float]] = [[] for _ in range(len(a))]
    for k in np.unique(counts).tolist():
        idx = np.flatnonzero(counts == k)
        for i, row in zip(idx.tolist(), packed[idx, :k].tolist(), strict=True):
            out[i] = row
    return out


def set_proxies(
    proxies: Sequence[Any],
    programmed: Sequence[bool],
    before: Sequence[tuple[Any, Any, Any]],
    removed: tuple[Any, ...],
    terminating: tuple[Any, ...],
) -> None:
    """Put each kube-proxy in one corner of an a(t) table: the removal programmed (its
    endpoints without the pod) or its state before the fault (``before``)."""
    for px, done, old in zip(proxies, programmed, before, strict=False):
        if done:
            px.programmed = removed
            px._split_local(removed, terminating)
        else:
            px.programmed, px.local, px.local_terminating = old
