"""What every closed form shares: vectorized draws, timer grids, a(t) and its metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    "code_of",
    "instants",
    "kube_proxy_syncs",
    "lookup",
    "metrics",
    "new_pod_ready",
    "next_tick",
    "probed_ready",
    "proxy_syncs",
    "relevant_bits",
    "rows",
    "seen_running",
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

    def wide(self, m: int) -> Draws:
        """Draws of ``m`` values per call from the same stream: several kube-proxies'
        timers at once (``m`` = proxies x trials). Only for keys no derived key follows."""
        return Draws(self.ps, self.rng, m)

    def _fresh(self, key: str) -> np.ndarray:
        return _sample(self.ps[key], self.rng, self.size)  # type: ignore[arg-type]

    def count(self, key: str) -> np.ndarray:
        """`Sampler.count` over arrays: rounded, at least 0 (a mechanism that needs at
        least one applies its own max(1, ...), and so do the closed forms)."""
        return np.maximum(0, np.round(self(key)))

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


def seen_running(d: Draws, t_start: np.ndarray, relist: np.ndarray, pleg: np.ndarray) -> np.ndarray:
    """When the kubelet first syncs a pod whose container process started at ``t_start``
    (new or restarted; `chaoslab.mechanisms.kubelet.Kubelet._seen_running`): at once with
    the on-demand relist (1.36+), else the node's next relist (any tick ``relist`` of its
    grid every ``pleg``) after it."""
    if d.flag("kubelet.pleg_on_demand_relist"):
        return t_start
    return relist + (np.floor((t_start - relist) / pleg + _EPS) + 1) * pleg


def new_pod_ready(d: Draws, t_sched: np.ndarray) -> np.ndarray:
    """When a new pod bound at ``t_sched`` is Ready in the kubelet (its API write not
    included): pull, the runtime's start (the process runs), the app's start-up, and the
    readiness probe from the sync that sees it running, at the node's relist grid
    (`chaoslab.mechanisms.kubelet.Kubelet.start_pod`)."""
    t_start = t_sched + d("pod.image_pull_time") + d("kubelet.container_runtime_start")
    t_run = t_start + d("pod.container_start_time")
    pleg = d("kubelet.pleg_relist_period")
    return probed_ready(d, t_start, t_run, seen_running(d, t_start, d.phase(pleg), pleg))


def probed_ready(
    d: Draws, t_start: np.ndarray, t_serving: np.ndarray, seen: np.ndarray
) -> np.ndarray:
    """When the kubelet's readiness turns Success (its API write not included) for a
    container whose process started at ``t_start`` and whose app listens at ``t_serving``:
    the probe runs at ``seen`` and every period from then, and counts once
    initialDelaySeconds have passed since the process start (`chaoslab.mechanisms.kubelet`);
    without a probe, at ``seen``: a running container without a probe worker is ready,
    whether or not its app listens yet."""
    if not d.flag("pod.readiness_probe"):
        return seen
    period = d("probe.period_seconds")
    due = np.maximum(np.maximum(seen, t_serving), t_start + d("probe.initial_delay_seconds"))
    first = next_tick(seen, period, due)
    return first + (np.maximum(1, d.count("probe.success_threshold")) - 1) * period


def relevant_bits(
    table: dict[tuple[bool, ...], Any], *more: dict[tuple[bool, ...], Any]
) -> tuple[tuple[int, ...], list[dict[tuple[bool, ...], Any]]]:
    """The state bits that change some table's value somewhere, and each table keyed by
    those alone.

    A bit no state's value depends on (a kube-proxy no client goes through) adds instants
    to every trial but never a change point; a(t) is compared exactly, as `Trial.changed`
    does, so a bit that moves it by a rounding error stays."""
    tables = (table, *more)
    width = len(next(iter(table)))

    def matters(j: int) -> bool:
        flip = {s: (*s[:j], not s[j], *s[j + 1 :]) for s in table}
        return any(t[s] != t[flip[s]] for t in tables for s in t)

    bits = tuple(j for j in range(width) if matters(j))
    return bits, [{tuple(s[j] for j in bits): v for s, v in t.items()} for t in tables]


def instants(
    on: Sequence[np.ndarray], off: Sequence[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The chain's instants and its state after each: bit j holds on ``[on[j], off[j])``.

    Returns (times, code), each instants x trials: sorted instants from t = 0 (inf for one
    that does not happen) and the state bits after each, bit j of ``code`` for state j.
    Instants are rows so that every step below and in `metrics` works on whole rows of
    trials (a reduction over a short last axis is slow)."""
    points = np.zeros((n, 1 + 2 * len(on)))
    for j, x in enumerate((*on, *off)):
        points[:, 1 + j] = x
    points.sort(axis=1)
    times = np.ascontiguousarray(points.T)
    times[np.isnan(times)] = np.inf
    code = np.zeros(times.shape, dtype=np.int64)
    for j, (a, b) in enumerate(zip(on, off, strict=True)):
        code |= ((a <= times) & (times < b)).astype(np.int64) << j
    return times, code


def lookup(table: Mapping[tuple[bool, ...], float]) -> np.ndarray:
    """``table`` (state bits -> value) as an array indexed by the state's code."""
    out = np.zeros(1 << len(next(iter(table))))
    for state, v in table.items():
        out[code_of(state)] = v
    return out


def code_of(state: tuple[bool, ...]) -> int:
    return sum(int(s) << j for j, s in enumerate(state))


def availability(
    table: dict[tuple[bool, ...], float], times: np.ndarray, code: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """a(t) after each of the `instants` and which are change points (within the horizon,
    value changed) as `Trial.changed` records them. ``table`` maps each combination of
    bits to the design's a(t) (read off a probe trial)."""
    values = lookup(table)[code]
    keep = times <= horizon
    keep[1:] &= values[1:] != values[:-1]
    return values, keep


def metrics(
    times: np.ndarray, values: np.ndarray, keep: np.ndarray, horizon: float
) -> dict[str, np.ndarray]:
    """`chaoslab.outage.metrics` on many step functions at once (kept change points,
    instants x trials as `availability` gives them)."""
    t = np.where(keep, times, np.inf)
    # each kept point holds until the next kept one (or the horizon)
    t1 = np.empty_like(t)
    t1[-1] = horizon
    np.minimum(np.minimum.accumulate(t[:0:-1], axis=0)[::-1], horizon, out=t1[:-1])
    span = np.where(keep, np.maximum(t1 - times, 0.0), 0.0)
    low = values < 1 - AV_EPS
    lost = np.where(low, (1 - values) * span, 0.0).sum(axis=0)
    down = np.where(low & (values <= AV_EPS), span, 0.0).sum(axis=0)
    degraded = np.where(low & (values > AV_EPS), span, 0.0).sum(axis=0)
    last_drop = np.where(low & (span > 0), t1, 0.0).max(axis=0)
    last = len(t) - 1 - np.argmax(keep[::-1], axis=0)  # the last kept point
    final = values[last, np.arange(t.shape[1])]
    recovered = final >= 1 - AV_EPS
    return {
        "recovery_s": np.where(recovered, last_drop, np.inf),
        "recovered": recovered,
        "downtime_s": down,
        "degraded_s": degraded,
        "lost_s": lost,
    }


def rows(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each trial's kept points as a list (the a_t / a_v cells of a results table), in an
    object array (a column pandas takes as it is, without looking into each list); ``a``
    and ``keep`` are instants x trials."""
    # the trials with k kept points together: their kept points, in order, reshape to
    # (trials, k), and one tolist() gives their lists
    a, keep = a.T, keep.T
    n = len(a)
    counts = keep.sum(axis=1)
    if n and counts.min() == counts.max():  # one count for all: most cells
        return _objects(a[keep].reshape(n, int(counts[0])).tolist())
    out = np.empty(n, dtype=object)
    for k in np.unique(counts).tolist():
        idx = np.flatnonzero(counts == k)
        out[idx] = _objects(a[idx][keep[idx]].reshape(len(idx), k).tolist())
    return out


def _objects(lists: list[list[float]]) -> np.ndarray:
    # np.array(lists, dtype=object) would make a 2-D array of floats; fromiter keeps lists
    return np.fromiter(lists, dtype=object, count=len(lists))


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
#: version it installed (how many of the published versions it read; 0: none); from
#: `proxy_syncs` each array is (kube-proxies, trials)
Sync = tuple[np.ndarray, np.ndarray]


def kube_proxy_syncs(d: Draws, pub: np.ndarray) -> list[Sync]:
    """One kube-proxy's syncs of slice versions published at ``pub`` (trials x versions,
    sorted, inf where a version is not published), as `chaoslab.mechanisms.endpoints.
    KubeProxy` runs them, one row per sync (at most one per version).

    A sync is asked for at the first arrival of a version it has not installed, or at the
    end of the sync running when one arrived. ``completion-to-start`` (>= 1.34) starts it
    ``min_sync`` after the previous sync's end; ``burst-2`` (<= 1.33) at once when its token
    bucket (rate 1/min_sync, burst 2, full before the periodic sync at a random phase) has
    a token, else at the later of the token's return and previous end + min sync, or at an
    arrival after the token is back, whichever comes first. A sync reads every version
    published by its start."""
    n, k = pub.shape
    # versions as rows: every reduction below runs over k contiguous rows, not k columns
    cols = np.ascontiguousarray(pub.T)
    last_start = -d.phase(d("kube_proxy.iptables_sync_period"))
    min_sync = d("kube_proxy.iptables_min_sync_period") + np.zeros(n)
    burst = d.choice("kube_proxy.sync_runner") == "burst-2"
    limited = min_sync > 0
    rate = np.where(limited, min_sync, 1.0)  # no bucket without a min sync period
    last_end = last_start
    tokens = np.minimum(2.0, 1.0 - last_start / rate)
    token_t = np.zeros(n)
    installed = np.zeros(n, dtype=np.int64)
    padded = np.concatenate([cols, np.full((1, n), np.inf)])
    trial = np.arange(n)
    bucket = burst and bool(limited.any())  # burst-2 without a min sync starts at once
    out: list[Sync] = []
    for _ in range(k):
        asked = np.maximum(last_end, padded[installed, trial])
        if bucket:
            have = np.minimum(2.0, tokens + (asked - token_t) / rate)
            back = asked + (1.0 - have) * min_sync  # the token's return
            retry = np.maximum(last_end + min_sync, back)
            arrival = np.where((cols > asked) & (cols >= back), cols, np.inf).min(axis=0)
            waited = np.minimum(retry, arrival)
            start = np.where(~limited | (have >= 1.0 - 1e-9), asked, waited)
        elif burst:
            start = asked
        else:
            start = np.maximum(asked, last_end + min_sync)
        ran = np.isfinite(start)
        end = start + d("kube_proxy.sync_duration")  # inf where no sync starts
        version = np.where(ran, (cols <= start).sum(axis=0), 0)
        out.append((end, version))
        if bucket:
            spent = limited & ran
            now = np.minimum(2.0, tokens + (start - token_t) / rate) - 1.0
            tokens = np.where(spent, now, tokens)
            token_t = np.where(spent, start, token_t)
        last_end = np.where(ran, end, last_end)
        installed = np.where(ran, version, installed)
    return out


def proxy_syncs(d: Draws, pub: np.ndarray, count: int) -> list[Sync]:
    """`kube_proxy_syncs` of ``count`` kube-proxies, each with its own timers, in one pass
    over (proxies x trials) rows; each array of a `Sync` is (proxies, trials)."""
    n = d.size
    syncs = kube_proxy_syncs(d.wide(count * n), np.tile(pub, (count, 1)))
    return [(e.reshape(count, n), v.reshape(count, n)) for e, v in syncs]


def synced_at(syncs: Sequence[Sync], pub: np.ndarray) -> np.ndarray:
    """The proxy.synced milestone: the first sync end after which every proxy holds the
    slice's current version (NaN: never within the syncs), from `proxy_syncs`.

    The versions a proxy holds only grow, and never past the current one; so while
    version v is current (from pub[v] to pub[v + 1]) all proxies hold it from the latest of
    their first syncs that installed v or later, if that comes before pub[v + 1]."""
    n, k = pub.shape
    first = np.full(n, np.inf)
    for v in range(1, k + 1):
        holds = np.full(syncs[0][0].shape, np.inf)  # (proxies, trials)
        for end, version in syncs:
            holds = np.minimum(holds, np.where(version >= v, end, np.inf))
        everyone = holds.max(axis=0)
        until = pub[:, v] if v < k else np.inf
        first = np.minimum(first, np.where(everyone < until, everyone, np.inf))
    return np.where(np.isfinite(first), first, np.nan)
