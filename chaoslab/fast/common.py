"""What every closed form shares: vectorized draws, timer grids, a(t) and its metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chaoslab.params import ParamSet
from chaoslab.params.catalogue import DERIVED
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

__all__ = [
    "Draws",
    "availability",
    "kube_proxy_syncs",
    "metrics",
    "next_tick",
    "rows",
    "slice_delay",
    "synced_at",
]

_EPS = 1e-9  # the SimPy model's grid tolerance (chaoslab.mechanisms.node)
AV_EPS = 1e-9  # chaoslab.outage.EPS


class Draws:
    """Vectorized draws of catalogue parameters: ``n`` values per call, one per trial.

    A derived key following a distribution (``lb.timeout`` = ``lb.interval`` unless set)
    takes its parent's last draw, as `chaoslab.params.paramset.Sampler.draw` does: the
    parent is drawn first if it was not yet, and its own next draw is then that one."""

    def __init__(self, ps: ParamSet, rng: np.random.Generator, n: int) -> None:
        self.ps = ps
        self.rng = rng
        self.size = n
        self._ties = {
            key: parent
            for key in DERIVED
            if (parent := ps.derived_from(key)) is not None
            and isinstance(ps[key], Dist)
            and not ps[key].is_fixed  # type: ignore[union-attr]
        }
        self._parents = frozenset(self._ties.values())
        self._drawn: dict[str, np.ndarray] = {}
        self._ahead: dict[str, np.ndarray] = {}

    def __call__(self, key: str) -> np.ndarray:
        parent = self._ties.get(key)
        if parent is not None:
            x = self._drawn.get(parent)
            if x is None:
                x = self._drawn[parent] = self._ahead[parent] = self._fresh(parent)
            return x
        if key in self._parents:
            ahead = self._ahead.pop(key, None)
            if ahead is not None:
                return ahead  # a derived key drew it first
            x = self._drawn[key] = self._fresh(key)
            return x
        return self._fresh(key)

    def _fresh(self, key: str) -> np.ndarray:
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
    # the trials with k kept points together: their kept points, in order, reshape to
    # (trials, k), and one tolist() gives their lists
    counts = keep.sum(axis=1)
    out: list[list[float]] = [[] for _ in range(len(a))]
    for k in np.unique(counts).tolist():
        idx = np.flatnonzero(counts == k)
        packed = a[idx][keep[idx]].reshape(len(idx), k)
        for i, row in zip(idx.tolist(), packed.tolist(), strict=True):
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


def slice_delay(d: Draws, batch: np.ndarray) -> np.ndarray:
    """From a pod change to the EndpointSlice write (`EndpointSliceController.pod_changed`):
    the batch period (drawn once per trial: ``batch``), one controller hop, and from 1.35
    the pod work queue's hop (``endpointslice_pod_queue``)."""
    delay = batch + d("kube_controller_manager.controller_reaction")
    if d.flag("kube_controller_manager.endpointslice_pod_queue"):
        delay = delay + d("kube_controller_manager.controller_reaction")
    return delay


#: one kube-proxy sync: when its rules are in the kernel (inf: no such sync) and the slice
#: version it installed (how many of the published versions it read; 0: none)
Sync = tuple[np.ndarray, np.ndarray]


def kube_proxy_syncs(d: Draws, pub: np.ndarray) -> list[Sync]:
    """One kube-proxy's syncs of slice versions published at ``pub`` (trials x versions,
    sorted, inf where a version is not published), as `chaoslab.mechanisms.endpoints.
    KubeProxy` runs them, one row per sync (at most one per version).

    A sync is asked for at the first arrival of a version it has not installed, or at the
    end of the sync running when one arrived. ``completion-to-start`` (>= 1.34) starts it
    ``min_sync`` after the previous sync's end; ``burst-2`` (<= 1.33) at once when its token
    bucket (rate 1/min_sync, burst 2, full before the periodic sync at a random phase) has
    a token, else at the later of the token's return and previous end + min_sync, or at an
    arrival after the token is back, whichever comes first. A sync reads every version
    published by its start."""
    n, k = pub.shape
    last_start = -d.phase(d("kube_proxy.iptables_sync_period"))
    min_sync = d("kube_proxy.iptables_min_sync_period") + np.zeros(n)
    burst = d.choice("kube_proxy.sync_runner") == "burst-2"
    limited = min_sync > 0
    rate = np.where(limited, min_sync, 1.0)  # no bucket without a min sync period
    last_end = last_start
    tokens = np.minimum(2.0, 1.0 - last_start / rate)
    token_t = np.zeros(n)
    installed = np.zeros(n, dtype=np.int64)
    padded = np.concatenate([pub, np.full((n, 1), np.inf)], axis=1)
    out: list[Sync] = []
    for _ in range(k):
        asked = np.maximum(last_end, padded[np.arange(n), installed])
        if burst:
            have = np.minimum(2.0, tokens + (asked - token_t) / rate)
            back = asked + (1.0 - have) * min_sync  # the token's return
            retry = np.maximum(last_end + min_sync, back)
            arrival = np.where((pub > asked[:, None]) & (pub >= back[:, None]), pub, np.inf)
            waited = np.minimum(retry, arrival.min(axis=1))
            start = np.where(~limited | (have >= 1.0 - 1e-9), asked, waited)
        else:
            start = np.maximum(asked, last_end + min_sync)
        ran = np.isfinite(start)
        end = np.where(ran, start + d("kube_proxy.sync_duration"), np.inf)
        version = np.where(ran, np.sum(pub <= start[:, None], axis=1), 0)
        out.append((end, version))
        if burst:
            spent = limited & ran
            now = np.minimum(2.0, tokens + (start - token_t) / rate) - 1.0
            tokens = np.where(spent, now, tokens)
            token_t = np.where(spent, start, token_t)
        last_end = np.where(ran, end, last_end)
        installed = np.where(ran, version, installed)
    return out


def synced_at(per_proxy: Sequence[Sequence[Sync]], pub: np.ndarray) -> np.ndarray:
    """The proxy.synced milestone: the first sync end after which every proxy holds the
    slice's current version (NaN: never within the syncs)."""
    candidates = np.stack([e for syncs in per_proxy for e, _ in syncs], axis=1)
    current = np.sum(pub[:, None, :] <= candidates[:, :, None], axis=2)
    ok = np.ones(candidates.shape, dtype=bool)
    for syncs in per_proxy:
        held = np.zeros(candidates.shape, dtype=np.int64)
        for e, v in syncs:
            held = np.where(e[:, None] <= candidates, v[:, None], held)
        ok &= held == current
    first = np.min(np.where(ok & np.isfinite(candidates), candidates, np.inf), axis=1)
    return np.where(np.isfinite(first), first, np.nan)
