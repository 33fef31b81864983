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

Latency (`latency_metrics`): a design with a latency model also states, at each change
point, its *slow classes* ``((share, extra_delay_s), ...)``: the shares of all new requests
that succeed only after an extra delay (nginx waited ``proxy_connect_timeout`` on a dead
upstream, then passed the request on; or the client's connect() got through at a SYN
retransmission after its first SYN was lost, `chaoslab.mechanisms.tcp`). The rest of a(t)
succeeds at the base latency (``client.request_duration``).

- ``slow_s``: integral of the share of requests whose latency (base + extra delay) is
  above ``client.slow_threshold``, in seconds of traffic that were slow (as ``lost_s``;
  failures are not slow, they are lost).
- ``p99_latency_s``: the 99th percentile of the latency of the requests that *succeeded*
  during the fault window: from the fault to the end of the last stretch with a < 1 or
  with slow classes (the horizon if a(t) never came back). An empty window (nothing
  happened) gives the base latency's p99. A window in which no request succeeded (a full
  outage, then recovery) is widened to the horizon: the first successes after recovery
  are the fault's tail, so a short full outage reads the base latency's p99, not "no
  value". NaN only if no request succeeds before the horizon at all.

A design without a latency model states no slow classes: slow_s 0 and p99_latency_s
the base latency's p99 (`no_latency_metrics`): the model says every request either
succeeds at once or fails; by the same rule NaN if a(t) is 0 until the horizon.

A live run estimates a(t) from probes (`availability_from_probes`) and then uses the same
function, so a prediction and a measurement are comparable by construction. A prober sees
a(t) only at its probes: `probed_metrics` puts the same prober on a predicted a(t) (its
rate, its bins), so a 1 ms dip counts as often as the prober would really catch it.

The probe milestones (`probe_milestones`, ``PROBE_MILESTONES``) are defined by the probes
alone: the send time of the first and of the last new-connection probe sent at or after
the fault that failed. A probe is stamped when it is sent (`chaoslab.live.probe`), so a
black-holed probe that fails only at its timeout has the same stamp as a refused one. A
prediction applies the same function to the probe train `probe_train` puts on a(t).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "LATENCY_COLUMNS",
    "PROBE_MILESTONES",
    "BaseLatency",
    "OutageMetrics",
    "SlowClasses",
    "availability_from_probes",
    "latency_from_probes",
    "latency_metrics",
    "latency_quantile",
    "latency_summary",
    "metrics",
    "milestone_column",
    "no_latency_metrics",
    "probe_milestones",
    "probe_train",
    "probed_metrics",
    "probed_trial",
    "service_recovered",
    "slow_seconds",
    "trial_row",
]

#: availability values closer than this to 1 or 0 count as 1 or 0 (float noise)
EPS = 1e-9
#: the per-trial latency columns (`latency_metrics`)
LATENCY_COLUMNS = ("slow_s", "p99_latency_s")
#: ((share of all new requests, extra delay in seconds), ...): requests that succeed late
SlowClasses = tuple[tuple[float, float], ...]
#: the milestones a prober records (`probe_milestones`), with what each one means
PROBE_MILESTONES = {
    "probe.first_failed": "the first new-connection probe sent after the fault that failed",
    "probe.last_failed": "the last new-connection probe that failed",
}
#: base-latency samples drawn (from a private stream) to tabulate a distribution's CDF
_BASE_SAMPLES = 4096


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


def probe_milestones(
    t: np.ndarray, ok: np.ndarray, *, t_fault: float, horizon: float | None = None
) -> dict[str, float]:
    """``probe.first_failed`` and ``probe.last_failed`` from new-connection probes: the send
    times ``t`` (any clock) of the first and last failed probe (``ok`` False) sent at or
    after ``t_fault`` (and before ``t_fault + horizon``), relative to the fault. Empty when
    none failed: a prober that saw nothing fail has no such milestones."""
    rel = np.asarray(t, dtype=float) - t_fault
    keep = (rel >= 0) & ~np.asarray(ok, dtype=bool)
    if horizon is not None:
        keep &= rel < horizon
    bad = rel[keep]
    if bad.size == 0:
        return {}
    return {"probe.first_failed": float(bad.min()), "probe.last_failed": float(bad.max())}


def probe_train(
    times: Sequence[float],
    values: Sequence[float],
    horizon: float,
    *,
    rate_hz: float,
    probers: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The send times on [0, horizon) and outcomes of a live prober's new-connection
    probes on the availability ``times``/``values``.

    ``probers`` probers at ``rate_hz`` each interleave, as `chaoslab.live.probe` starts
    them, into one grid of spacing 1 / (rate_hz * probers) whose phase against the fault
    is uniform (a prober starts before the fault, at no instant tied to it); a probe sent
    at t succeeds with probability a(t)."""
    step = 1.0 / (rate_hz * max(probers, 1))
    sends = (rng.random() + np.arange(math.ceil(horizon / step))) * step
    sends = sends[sends < horizon]
    idx = np.searchsorted(np.asarray(times, dtype=float), sends, side="right") - 1
    a = np.where(idx >= 0, np.asarray(values, dtype=float)[np.maximum(idx, 0)], 1.0)
    return sends, rng.random(sends.size) < a


def probed_trial(
    times: Sequence[float],
    values: Sequence[float],
    horizon: float,
    *,
    rate_hz: float,
    probers: int,
    bin_s: float,
    rng: np.random.Generator,
) -> tuple[OutageMetrics, dict[str, float]]:
    """The metrics and probe milestones a live prober would measure on the availability
    ``times``/``values``: `probe_train`'s probes through `availability_from_probes` with
    ``bin_s`` bins and `metrics`, and through `probe_milestones`, exactly as a live run's
    probes are."""
    if len(times) == 0:
        return metrics(times, values, horizon), {}
    sends, ok = probe_train(times, values, horizon, rate_hz=rate_hz, probers=probers, rng=rng)
    ts, vs = availability_from_probes(sends, ok, t_fault=0.0, bin_s=bin_s, horizon=horizon)
    return metrics(list(ts), list(vs), horizon), probe_milestones(sends, ok, t_fault=0.0)


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
    """The metrics of `probed_trial` (what a live prober measures on a(t))."""
    return probed_trial(
        times, values, horizon, rate_hz=rate_hz, probers=probers, bin_s=bin_s, rng=rng
    )[0]


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
    latency: tuple[float, float] = (math.nan, math.nan),
    milestones: Mapping[str, float] | None = None,
    milestone_names: Sequence[str] = (),
) -> dict[str, Any]:
    """One trial's row of trials.parquet from its a(t): the metrics, the long-lived
    connections' fates (reset, hung), ``slow_s``/``p99_latency_s`` (NaN: not measured),
    one ``at_*`` column per name in ``milestone_names`` and per milestone seen,
    ``service.recovered``, and the change points ``a_t``/``a_v``. The same row for a
    simulated, a lab and a cluster trial."""
    m = metrics(times, values, horizon)
    row: dict[str, Any] = {
        "recovery_s": m.recovery_s,
        "recovered": m.recovered,
        "downtime_s": m.downtime_s,
        "degraded_s": m.degraded_s,
        "lost_s": m.lost_s,
        "connections_reset": connections[0],
        "connections_hung": connections[1],
        "slow_s": latency[0],
        "p99_latency_s": latency[1],
    }
    seen = dict(milestones or {})
    seen.setdefault("service.recovered", service_recovered(m))
    for name in [*milestone_names, *seen]:
        row[milestone_column(name)] = seen.get(name, math.nan)
    row["a_t"] = [float(x) for x in times]
    row["a_v"] = [float(x) for x in values]
    return row


# --------------------------------------------------------------------------- latency


class _Sampled(Protocol):
    def sample(self, rng: np.random.Generator) -> float: ...


class BaseLatency:
    """The base latency's distribution (``client.request_duration``) as sorted samples.

    Drawn once per distribution from a private stream (seed 0), never from a trial's, so
    no trial's draws move; a fixed value is one sample."""

    __slots__ = ("p99", "samples")

    def __init__(self, samples: Sequence[float]) -> None:
        self.samples = sorted(float(x) for x in samples)
        self.p99 = self.quantile(0.99)

    @staticmethod
    @lru_cache(maxsize=64)
    def of(dist: _Sampled | float) -> BaseLatency:
        if isinstance(dist, int | float):
            return BaseLatency([float(dist)])
        rng = np.random.default_rng(0)
        return BaseLatency([dist.sample(rng) for _ in range(_BASE_SAMPLES)])

    def cdf(self, x: float) -> float:
        return bisect_right(self.samples, x) / len(self.samples)

    def exceeds(self, x: float) -> float:
        """P(base latency > x)."""
        return 1.0 - self.cdf(x)

    def quantile(self, q: float) -> float:
        """The smallest sample with a CDF of at least ``q`` (inverted CDF)."""
        n = len(self.samples)
        return self.samples[min(n - 1, max(0, math.ceil(q * n) - 1))]


def _segments(
    times: Sequence[float], horizon: float, end: float | None = None
) -> list[tuple[int, float]]:
    """(index of the change point, span) of each stretch inside [0, min(end, horizon)]."""
    stop = horizon if end is None else min(end, horizon)
    out = []
    n = len(times)
    for i in range(n):
        t0 = times[i]
        if t0 >= stop:
            break
        t1 = min(times[i + 1] if i + 1 < n else stop, stop)
        if t1 > t0:
            out.append((i, t1 - t0))
    return out


def slow_seconds(
    times: Sequence[float],
    classes: Sequence[SlowClasses],
    horizon: float,
    *,
    threshold: float,
    base: BaseLatency,
) -> float:
    """Integral over [0, horizon] of the share of requests slower than ``threshold``: a
    slow class (share s, delay d) adds s * P(base + d > threshold)."""
    total = 0.0
    for i, span in _segments(times, horizon):
        share = sum(s * base.exceeds(threshold - d) for s, d in classes[i])
        total += share * span
    return total


def _value_before(times: Sequence[float], values: Sequence[float], t: float) -> float:
    """The value holding on the stretch that starts at or before ``t`` (``times`` a list:
    callers in a loop convert once)."""
    i = bisect_right(times, t) - 1
    return float(values[i]) if i >= 0 else 1.0


def _any_success(a_t: Sequence[float], a_v: Sequence[float], horizon: float) -> bool:
    """Whether a(t) is above 0 on some stretch of [0, horizon) (before the fault it is 1,
    so a first change point after 0 leaves a stretch of successes)."""
    if not a_t or a_t[0] > 0:
        return True
    return any(a_v[i] > 0 for i, _ in _segments(a_t, horizon))


def latency_quantile(
    a_t: Sequence[float],
    a_v: Sequence[float],
    times: Sequence[float],
    classes: Sequence[SlowClasses],
    *,
    end: float,
    base: BaseLatency,
    q: float = 0.99,
) -> float:
    """The ``q`` quantile of the latency of requests that succeeded in [0, end].

    Each stretch of constant a(t) and classes weighs its successes by its span: the slow
    classes at base + delay, the rest of a(t) at the base latency. The quantile of that
    mixture of shifted base distributions is the smallest latency whose mixture CDF
    reaches ``q``."""
    if end <= 0:
        return base.p99 if q == 0.99 else base.quantile(q)
    cuts = sorted({t for t in (*a_t, *times) if 0 <= t < end} | {0.0})
    a_times, c_times = list(a_t), list(times)
    weight: dict[float, float] = {}
    for k, t0 in enumerate(cuts):
        span = (cuts[k + 1] if k + 1 < len(cuts) else end) - t0
        a = _value_before(a_times, a_v, t0)
        j = bisect_right(c_times, t0) - 1
        slow = classes[j] if j >= 0 else ()
        late = 0.0
        for s, d in slow:
            weight[d] = weight.get(d, 0.0) + s * span
            late += s
        weight[0.0] = weight.get(0.0, 0.0) + max(0.0, a - late) * span
    total = sum(weight.values())
    if total <= 0:
        return math.nan  # no request succeeded in the window: nothing to time
    return _mixture_quantile([(w / total, d) for d, w in weight.items() if w > 0], base, q)


def _mixture_quantile(parts: Sequence[tuple[float, float]], base: BaseLatency, q: float) -> float:
    """The smallest x with sum of w * P(base + d <= x) >= q, by bisection on x (the CDF is
    a step function; 60 halvings of the range leave less than a nanosecond)."""
    b = base.samples
    n = len(b)
    parts = sorted(parts, key=lambda wd: wd[1])
    spread = b[-1] - b[0]
    if all(parts[i + 1][1] - parts[i][1] > spread for i in range(len(parts) - 1)):
        # the shifted copies do not overlap: the quantile is inside the one that reaches q
        below = 0.0
        for w, d in parts:
            if below + w >= q - 1e-12:
                return d + base.quantile(min(1.0, (q - below) / w))
            below += w

    def cdf(x: float) -> float:
        return sum(w * bisect_right(b, x - d) for w, d in parts) / n

    lo = b[0] + min(d for _, d in parts)
    hi = b[-1] + max(d for _, d in parts)
    if cdf(lo) >= q:
        return lo
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) >= q - 1e-12:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return hi


def _slow_end(times: Sequence[float], classes: Sequence[SlowClasses], horizon: float) -> float:
    """End of the last stretch with slow classes (0 if none)."""
    end = 0.0
    for i, c in enumerate(classes):
        if c and times[i] < horizon:
            end = min(times[i + 1] if i + 1 < len(times) else horizon, horizon)
    return end


def latency_metrics(
    a_t: Sequence[float],
    a_v: Sequence[float],
    times: Sequence[float],
    classes: Sequence[SlowClasses],
    horizon: float,
    *,
    recovery_s: float,
    threshold: float,
    base: BaseLatency,
) -> tuple[float, float]:
    """(slow_s, p99_latency_s) of one trial from a(t) and its slow classes' change points
    (``times``/``classes``); ``recovery_s`` is inf if a(t) never came back."""
    slow = slow_seconds(times, classes, horizon, threshold=threshold, base=base)
    end = horizon if math.isinf(recovery_s) else max(recovery_s, _slow_end(times, classes, horizon))
    p99 = latency_quantile(a_t, a_v, times, classes, end=end, base=base)
    if math.isnan(p99) and end < horizon:
        # nothing succeeded in the window: its tail is the first successes after it
        p99 = latency_quantile(a_t, a_v, times, classes, end=horizon, base=base)
    return slow, p99


def no_latency_metrics(
    base: BaseLatency,
    a_t: Sequence[float] = (),
    a_v: Sequence[float] = (),
    horizon: float = math.inf,
) -> tuple[float, float]:
    """(slow_s, p99_latency_s) of a trial whose design has no latency model: no request
    succeeds late, so 0 s slow and the base latency's p99; NaN if a(t) (when given) lets
    no request succeed before the horizon, as `latency_metrics`."""
    if not _any_success(a_t, a_v, horizon):
        return 0.0, math.nan
    return 0.0, base.p99


def latency_summary(slow_s: npt.ArrayLike, p99_latency_s: npt.ArrayLike) -> dict[str, float]:
    """A cell's latency summary over its trials: slow seconds (mean, p95) and the trials'
    p99 latency (p50, p95 over the trials that had a successful request to time)."""
    slow = np.asarray(slow_s, dtype=float)
    p99 = np.asarray(p99_latency_s, dtype=float)
    p99 = p99[~np.isnan(p99)]

    def q(x: np.ndarray, at: float) -> float:
        return float(np.quantile(x, at, method="inverted_cdf")) if x.size else math.nan

    return {
        "slow_mean": float(slow.mean()) if slow.size else math.nan,
        "slow_p95": q(slow, 0.95),
        "p99_latency_p50": q(p99, 0.5),
        "p99_latency_p95": q(p99, 0.95),
    }


def latency_from_probes(
    t: np.ndarray,
    ok: np.ndarray,
    latency: np.ndarray,
    *,
    t_fault: float,
    bin_s: float,
    horizon: float,
    threshold: float,
    recovery_s: float,
) -> tuple[float, float]:
    """The measured (slow_s, p99_latency_s) of a live trial, defined as `latency_metrics`.

    ``t`` probe send times, ``ok`` success within the client timeout, ``latency`` seconds
    until the answer. slow_s: per ``bin_s`` bin from the fault, the share of probes that
    succeeded slower than ``threshold``, times the bin. p99: over the successful probes
    sent from the fault to the end of the last stretch with a failure or a slow one
    (``recovery_s``; the horizon if not recovered); an empty window, or one in which no
    probe succeeded, uses every successful probe before the horizon; none at all, NaN."""
    rel = np.asarray(t, dtype=float) - t_fault
    good = np.asarray(ok, dtype=bool)
    lat = np.asarray(latency, dtype=float)
    keep = (rel >= 0) & (rel < horizon)
    rel, good, lat = rel[keep], good[keep], lat[keep]
    if rel.size == 0:
        return math.nan, math.nan
    idx = np.floor(rel / bin_s).astype(np.int64)
    slow = good & (lat > threshold)
    total = np.bincount(idx)
    late = np.bincount(idx, weights=slow.astype(float), minlength=total.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, late / np.maximum(total, 1), 0.0)
    slow_s = float(share.sum() * bin_s)
    end = horizon if math.isinf(recovery_s) else float(recovery_s)
    if slow.any():
        end = max(end, float((idx[slow].max() + 1) * bin_s))
    window = good & (rel < end) if end > 0 else good
    if not window.any():
        window = good  # widened to the horizon, as `latency_metrics`
    if not window.any():
        return slow_s, math.nan
    return slow_s, float(np.quantile(lat[window], 0.99, method="inverted_cdf"))
