"""slow_s and p99_latency_s of many trials at once (`chaoslab.outage.latency_metrics`).

A design with a latency model (`Trial.set_latency`) has, in each state of a closed form's
chain, slow classes: shares of the new requests that succeed ``d`` seconds late (an nginx
whose first pick is a dead upstream retries after its connect timeout). A probe trial
gives them per state (`Latency.classes`), as it gives a(t) (`chaoslab.fast.FastCell.
table`); from the chain's `instants` this module computes what `latency_metrics` computes
from a trial's change points:

- slow_s: the integral over [0, horizon] of the share slower than the threshold, a class
  (s, d) adding s x P(base + d > threshold);
- p99_latency_s: the 0.99 quantile of the latency of the requests that succeeded in
  [0, end] (end: the recovery, or the end of the last slow stretch if later; the horizon
  if a(t) never comes back, or if no request succeeded before end), a mixture of the base
  latency shifted by each delay, weighed by share x time: the weights for all trials at
  once, the quantile of each distinct mixture by the reference's own function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chaoslab.fast.common import code_of

__all__ = ["Latency", "latency_columns"]


@dataclass(frozen=True)
class Latency:
    """A design's slow classes in each state of the chain, and the client's view of them."""

    #: state bits (as `FastCell.table`) -> ((share, delay), ...)
    classes: dict[tuple[bool, ...], tuple[tuple[float, float], ...]]
    threshold: float  # client.slow_threshold
    base: Any  # chaoslab.outage.BaseLatency of client.request_duration


def latency_columns(
    lat: Latency,
    table: dict[tuple[bool, ...], float],
    times: np.ndarray,
    code: np.ndarray,
    recovery: np.ndarray,
    horizon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(slow_s, p99_latency_s) per trial from the chain's `instants` (times, code: instants
    x trials), a(t) per state (``table``) and each trial's recovery_s (inf: never)."""
    delays = sorted({0.0} | {d for cl in lat.classes.values() for _, d in cl})
    slow_share, late, nonempty, share, a = _per_state(lat, table, delays)
    nxt = np.empty_like(times)
    nxt[:-1] = times[1:]
    nxt[-1] = np.inf  # the last instant's stretch runs to the end of the window

    def spans(stop: Any) -> np.ndarray:
        return np.maximum(0.0, np.minimum(nxt, stop) - np.minimum(times, stop))

    slow = (slow_share[code] * spans(horizon)).sum(axis=0)
    slow_end = np.where(nonempty[code] & (times < horizon), np.minimum(nxt, horizon), 0.0)
    end = np.where(np.isinf(recovery), horizon, np.maximum(recovery, slow_end.max(axis=0)))

    def weights(stop: np.ndarray) -> np.ndarray:
        within = spans(stop)
        w = np.stack([(share[j][code] * within).sum(axis=0) for j in range(len(delays))])
        w[delays.index(0.0)] += (np.maximum(0.0, a[code] - late[code]) * within).sum(axis=0)
        return w

    weight = weights(end)
    # nothing succeeded in the window: its tail is the first successes after it, as the
    # reference widens it to the horizon
    widen = (weight.sum(axis=0) <= 0) & (end > 0) & (end < horizon)
    if widen.any():
        weight[:, widen] = weights(np.where(widen, horizon, end))[:, widen]
    total = weight.sum(axis=0)
    some = total > 0  # else no request succeeded before the horizon: nothing to time
    p99 = np.full(len(total), np.nan)
    if some.any():
        p99[some] = _quantiles(weight[:, some] / total[some], delays, lat.base)
    return slow, np.where(end <= 0, lat.base.p99, p99)


def _per_state(
    lat: Latency, table: dict[tuple[bool, ...], float], delays: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per state code: the slow share, the late share, any class at all, each delay's
    share (delays x codes), and a(t)."""
    size = 1 << len(next(iter(table)))
    slow_share, late, a = np.zeros(size), np.zeros(size), np.zeros(size)
    nonempty = np.zeros(size, dtype=bool)
    share = np.zeros((len(delays), size))
    for state, v in table.items():
        a[code_of(state)] = v
    for state, cl in lat.classes.items():
        i = code_of(state)
        slow_share[i] = sum(s * lat.base.exceeds(lat.threshold - d) for s, d in cl)
        late[i] = sum(s for s, _ in cl)
        nonempty[i] = bool(cl)
        for s, d in cl:
            share[delays.index(d), i] += s
    return slow_share, late, nonempty, share, a


def _quantiles(w: np.ndarray, delays: list[float], base: Any) -> np.ndarray:
    """Per trial (columns of ``w``: each delay's share of the successes, summing to 1) the
    0.99 quantile of the mixture, by `chaoslab.outage.latency_quantile` itself on one
    stretch holding those shares: one call per distinct mixture (rounded to 1e-12; a
    chain's trials share a few), so the quantile is the reference's own."""
    from chaoslab.outage import latency_quantile

    order = np.argsort(delays)
    ds = np.asarray(delays, dtype=float)[order]
    samples = base.samples
    if len(ds) > 1 and bool(np.all(np.diff(ds) > samples[-1] - samples[0])):
        return _apart(w[order], ds, np.asarray(samples))
    rounded = np.round(w.T, 12)
    mixtures, which = np.unique(rounded, axis=0, return_inverse=True)
    out = np.empty(len(mixtures))
    for i, mix in enumerate(mixtures):
        late = tuple((float(s), d) for s, d in zip(mix, delays, strict=True) if d and s > 0)
        out[i] = latency_quantile([0.0], [1.0], [0.0], [late], end=1.0, base=base)
    return out[which.reshape(-1)]


def _apart(w: np.ndarray, ds: np.ndarray, samples: np.ndarray, q: float = 0.99) -> np.ndarray:
    """The quantiles of mixtures whose shifted copies of the base latency do not overlap
    (delays ``ds`` sorted, further apart than the samples' spread), for every trial at
    once, as `chaoslab.outage._mixture_quantile`'s shortcut computes them: inside the
    first copy whose cumulative share reaches q, the base's inverted-CDF quantile there.
    With the resent SYNs' delays each trial's mixture is its own: one call per trial
    cost ~15 us."""
    cum = np.cumsum(w, axis=0)
    j = np.argmax(cum >= q - 1e-12, axis=0)  # the first copy that reaches q
    cols = np.arange(w.shape[1])
    share, below = w[j, cols], cum[j, cols] - w[j, cols]
    x = np.minimum(1.0, (q - below) / share)
    n = len(samples)
    idx = np.clip(np.ceil(x * n) - 1, 0, n - 1).astype(np.intp)
    return ds[j] + samples[idx]
