"""The one definition of an outage, shared by the model and by live measurements.

Availability a(t) is the probability that a new request issued at t succeeds within the
client's timeout. Before the fault (t < 0) it is 1. It is represented by *change points*:
sorted times ``t[i]`` with values ``a[i]`` holding on ``[t[i], t[i+1])``; the first change
point is at t = 0 and the last value holds until the horizon.

From a(t) on ``[0, horizon]`` (README.md, "Definitions"):

- ``recovery_s``: the start of the final stretch with a = 1; ``inf`` (and
  ``recovered = False``) if a(t) is below 1 at the horizon; 0 if a(t) never dropped.
- ``downtime_s``: total time with a = 0.
- ``degraded_s``: total time with 0 < a < 1.
- ``lost_s``: integral of (1 - a) dt, the error-budget cost in seconds of traffic.

No change points at all means nothing was observed: every metric is NaN.

A live run estimates a(t) from probes (`availability_from_probes`) and then uses the same
function, so a prediction and a measurement are comparable by construction. A prober sees
a(t) only at its probes: `probed_metrics` puts the same prober on a predicted a(t) (its
rate, its bins), so a 1 ms dip counts as often as the prober would really catch it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "OutageMetrics",
    "availability_from_probes",
    "metrics",
    "milestone_column",
    "probed_metrics",
    "service_recovered",
    "trial_row",
]

#: availability values closer than this to 1 or 0 count as 1 or 0 (float noise)
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class OutageMetrics:
    recovery_s: float
    recovered: bool
    downtime_s: float
    degraded_s: float
    lost_s: float


def metrics(times: Sequence[float], values: Sequence[float], horizon: float) -> OutageMetrics:
    """Outage metrics of the availability step function given by change points."""
    n = len(times)
    if n == 0:
        nan = math.nan
        return OutageMetrics(nan, False, nan, nan, nan)
    down = degraded = lost = 0.0
    last_drop_end = 0.0  # end of the last stretch with a < 1
    for i in range(n):
        t0 = times[i]
        if t0 >= horizon:
            break
        t1 = times[i + 1] if i + 1 < n else horizon
        t1 = min(t1, horizon)
        span = t1 - t0
        if span <= 0:
            continue
        a = values[i]
        if a < 1 - EPS:
            lost += (1 - a) * span
            if a <= EPS:
                down += span
            else:
                degraded += span
            last_drop_end = t1
    final = values[-1] if times[-1] < horizon else _value_at(times, values, horizon)
    if final < 1 - EPS:
        return OutageMetrics(math.inf, False, down, degraded, lost)
    return OutageMetrics(last_drop_end, True, down, degraded, lost)


def _value_at(times: Sequence[float], values: Sequence[float], t: float) -> float:
    i = int(np.searchsorted(np.asarray(times), t, side="right")) - 1
    return values[i] if i >= 0 else 1.0


def availability_from_probes(
    t: np.ndarray,
    ok: np.ndarray,
    *,
    t_fault: float,
    bin_s: float = 0.1,
    horizon: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate a(t) change points from probe records.

    ``t`` are probe send times (seconds, any clock), ``ok`` whether each probe succeeded
    within the client timeout. Probes are grouped in bins of ``bin_s`` seconds starting at
    the fault; a(t) in a bin is the fraction of successful probes sent in it (bins without
    probes carry the previous value). Returns (times, values) relative to the fault,
    merged so consecutive equal values form one change point.
    """
    t = np.asarray(t, dtype=float) - t_fault
    ok = np.asarray(ok, dtype=bool)
    keep = t >= 0
    if horizon is not None:
        keep &= t < horizon
    t, ok = t[keep], ok[keep]
    if t.size == 0:
        # no probe after the fault: nothing was measured (a dead prober must not read as
        # "no outage"); metrics() of empty change points is NaN
        return np.array([]), np.array([])
    idx = np.floor(t / bin_s).astype(np.int64)
    nbins = int(idx.max()) + 1
    total = np.bincount(idx, minlength=nbins)
    good = np.bincount(idx, weights=ok.astype(float), minlength=nbins)
    out_t: list[float] = []
    out_a: list[float] = []
    prev = 1.0
    for b in range(nbins):
        a = good[b] / total[b] if total[b] else prev
        if not out_a or a != out_a[-1]:
            out_t.append(b * bin_s)
            out_a.append(a)
        prev = a
    return np.asarray(out_t), np.asarray(out_a)


def probed_metrics(
    times: Sequence[float],
    values: Sequence[float],
    horizon: float,
    *,
    rate_hz: float,
    probers: int,
    bin_s: float,
    rng: np.random.Generator,
) -> OutageMetrics:
    """The metrics a live prober would measure on the availability ``times``/``values``.

    ``probers`` probers each send ``rate_hz`` new requests per second, at independent
    random phases, from the fault to the horizon; a request sent at t succeeds with
    probability a(t). The outcomes go through `availability_from_probes` with ``bin_s``
    bins and then `metrics`, exactly as a live run's probes do.
    """
    if len(times) == 0:
        return metrics(times, values, horizon)
    step = 1.0 / rate_hz
    base = np.arange(0.0, horizon, step)
    sends = np.concatenate([base + step * rng.random() for _ in range(probers)])
    sends = sends[sends < horizon]
    idx = np.searchsorted(np.asarray(times, dtype=float), sends, side="right") - 1
    a = np.where(idx >= 0, np.asarray(values, dtype=float)[np.maximum(idx, 0)], 1.0)
    ok = rng.random(sends.size) < a
    ts, vs = availability_from_probes(sends, ok, t_fault=0.0, bin_s=bin_s, horizon=horizon)
    return metrics(list(ts), list(vs), horizon)


def milestone_column(name: str) -> str:
    """The trials column of a milestone: ``node.not_ready`` -> ``at_node_not_ready``."""
    return "at_" + name.replace(".", "_")


def service_recovered(m: OutageMetrics) -> float:
    """The ``service.recovered`` milestone: when a(t) came back to 1 for good, for a trial
    whose service did drop. A trial that never dropped (recovery 0) did not recover from
    anything: it has no such milestone (NaN), as the model's trials, so a measured 0 is not
    compared with predicted times of trials that did drop."""
    return m.recovery_s if m.recovered and m.recovery_s > 0 else math.nan


def trial_row(
    times: Sequence[float],
    values: Sequence[float],
    horizon: float,
    *,
    connections: tuple[float, float] = (math.nan, math.nan),
    milestones: Mapping[str, float] | None = None,
    milestone_names: Sequence[str] = (),
) -> dict[str, Any]:
    """One trial's row of trials.parquet from its a(t): the metrics, the long-lived
    connections' fates (reset, hung), one ``at_*`` column per name in ``milestone_names``
    and per milestone seen, ``service.recovered``, and the change points ``a_t``/``a_v``.
    The same row for a simulated, a lab and a cluster trial."""
    m = metrics(times, values, horizon)
    row: dict[str, Any] = {
        "recovery_s": m.recovery_s,
        "recovered": m.recovered,
        "downtime_s": m.downtime_s,
        "degraded_s": m.degraded_s,
        "lost_s": m.lost_s,
        "connections_reset": connections[0],
        "connections_hung": connections[1],
    }
    seen = dict(milestones or {})
    seen.setdefault("service.recovered", service_recovered(m))
    for name in [*milestone_names, *seen]:
        row[milestone_column(name)] = seen.get(name, math.nan)
    row["a_t"] = [float(x) for x in times]
    row["a_v"] = [float(x) for x in values]
    return row
