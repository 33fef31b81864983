"""The fast engine: cells whose timer chain has a closed form, as NumPy over all trials.

The SimPy model (`chaoslab.runner`) is the reference. For a cell covered here, every timer
of its causal chain is drawn for all trials of a chunk at once from the cell's `ParamSet`
(the catalogue values the SimPy model reads, through the same parameter keys) and the
chain is composed with array arithmetic. tests/test_fast_engine.py checks each covered
cell against the SimPy model with two-sample KS tests on every metric and milestone
column, and a(t) shapes.

Covered: ``node-crash`` without repair of an app-pod node or the entry node under
``clusterip``, ``nodeport-direct``, ``nodeport-lb`` and ``nodeport-lb-local``. The chain
(`chaoslab.mechanisms.node`, ``k8s``, ``endpoints``, ``workload``, ``kubelet``,
``lbcheck``)::

    last heartbeat -> probeTimestamp (next monitor pass) -> + grace: node.not_ready
      -> + API write: pods.not_ready -> + slice sync: endpoints.removed
      -> each live kube-proxy: max(removal, last sync start + min sync) + sync: programmed
    node.not_ready -> rate-limited queue tick: node.tainted -> + toleration: pod.evicted
      (<= 1.12: probeTimestamp + pod_eviction_timeout -> queue tick: pod.evicted)
      -> replacement created, scheduled, started, first readiness probe: replacement.ready
      -> endpoints.added
    LB check of the dead target: U(0, interval) + (fall - 1) x gap + timeout: lb.marked_down

a(t) between those instants is not re-derived: a probe trial built by the design itself
is put in each combination of "this kube-proxy has programmed the removal" and "the LB
has marked the target down", and the design's own ``availability()`` gives the value.

Random streams differ from the SimPy engine's (one stream per chunk, not per trial), so
the trials are equal in distribution, not identical; a cell's results depend on the seed
and the chunk size.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, product
from typing import Any

import numpy as np
import pandas as pd

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

__all__ = ["ENGINES", "FAST_DESIGNS", "FastCell", "fast_frame", "plan"]

#: the engines a run can ask for
ENGINES = ("simpy", "fast")
#: designs with a closed form under node-crash
FAST_DESIGNS = ("clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local")

_EPS = 1e-9  # the SimPy model's grid tolerance (chaoslab.mechanisms.node)
_AV_EPS = 1e-9  # chaoslab.outage.EPS


# ----------------------------------------------------------------------------- sampling


class Draws:
    """Vectorized draws of catalogue parameters: ``n`` values per call, one per trial."""

    def __init__(self, ps: ParamSet, rng: np.random.Generator, n: int) -> None:
        self.ps = ps
        self.rng = rng
        self.size = n

    def __call__(self, key: str) -> np.ndarray:
        return _sample(self.ps[key], self.rng, self.size)  # type: ignore[arg-type]

    def fixed(self, key: str) -> float:
        v = self.ps[key]
        assert isinstance(v, Dist) and v.is_fixed, key
        return v.mean()

    def flag(self, key: str) -> bool:
        return bool(self.ps[key])

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


# ----------------------------------------------------------------------------- coverage


@dataclass(frozen=True)
class FastCell:
    """What a covered cell's trials share, read once from a probe trial of the design."""

    crashed: str
    live_proxies: tuple[str, ...]  # kube-proxies on live nodes, in the cluster's order
    lb_marks_down: bool  # the design's LB checks the crashed node and had it in rotation
    #: a(t) for each (programmed removal per live proxy..., LB marked down) combination
    table: dict[tuple[bool, ...], float]
    reset: float
    hung: float


def plan(cell: Any) -> tuple[FastCell | None, str]:
    """(the fast form of ``cell``, "") or (None, why the fast engine does not cover it)."""
    why = _refusal(cell)
    if why:
        return None, why
    from chaoslab.runner import _build, _classify_flows, _prepare

    trial, topo, nodes, pods = _build(cell, 0, 0)
    if len(nodes) != 1 or pods:
        return None, "the fast engine covers the crash of one node"
    crashed = nodes[0]
    app = [p for p in topo.cluster.app.pods if not p.gone]
    dead = [p for p in app if p.node is crashed]
    if len(dead) > 1 or any(p.node is None for p in app):
        return None, "the fast engine covers at most one app pod on the crashed node"
    zone = [n for n in topo.cluster.nodes if n.zone == crashed.zone]
    if len(zone) < 3:
        return None, "zone disruption (a zone of fewer than 3 nodes) has no closed form here"
    flows = topo.flows()
    _prepare(cell).kind.inject(topo, nodes, pods)
    reset, hung = trial.connections or _classify_flows(flows)
    proxies = [px for px in topo.cluster.proxies if px.node.reachable]
    lb = getattr(topo, "lb", None)
    marks = lb is not None and crashed in lb.targets and lb.up[crashed.name]
    table = _availability_table(topo, proxies, lb if marks else None, crashed)
    entry_dead = topo.entry is crashed and len(set(table.values())) == 1
    if table[(True,) * (len(proxies) + int(marks))] < 1 - _AV_EPS and not entry_dead:
        # below 1 after the removal, the replacement would decide: not in this closed form
        return None, "a(t) stays below 1 after the removal: no closed form here"
    if lb is not None and not _replacement_keeps_rotation(topo, lb, crashed):
        return None, "the replacement pod may land on a node outside the LB's rotation"
    names = tuple(px.node.name for px in proxies)
    return FastCell(crashed.name, names, bool(marks), table, reset, hung), ""


def _refusal(cell: Any) -> str:
    if cell.design not in FAST_DESIGNS:
        return f"the fast engine has no closed form for {cell.design}"
    if cell.fault.kind != "node-crash":
        return f"the fast engine covers node-crash only, not {cell.fault.kind}"
    ps = cell.params.with_overrides(cell.fault.overrides(), source="fault options")
    horizon = cell.horizon
    for key in ("fault.repair_time", "cluster.force_delete_after"):
        v = ps[key]
        if not (isinstance(v, Dist) and v.is_fixed and v.mean() >= horizon):
            return f"{key} within the horizon (the node or its pods come back)"
    ll = ps["client.long_lived_share"]
    if not (isinstance(ll, Dist) and ll.is_fixed and ll.mean() == 0):
        return "client.long_lived_share > 0 (connections followed over the trial)"
    for key in ("kube_controller_manager.node_eviction_rate",):
        v = ps[key]
        if not (isinstance(v, Dist) and v.is_fixed and v.mean() > 0):
            return f"{key} must be a fixed rate > 0"
    spec = cell.cluster
    if spec.app_kind != "Deployment" or spec.anti_affinity == "required":
        return "the fast engine covers Deployments without required anti-affinity"
    return ""


def _availability_table(
    topo: Any, proxies: Sequence[Any], lb: Any, crashed: Any
) -> dict[tuple[bool, ...], float]:
    """The design's a(t) in every state of the removal's progress (probe trial, after the
    crash): each live kube-proxy has or has not programmed it, the LB has or has not
    marked the crashed target down."""
    svc = topo.cluster.service
    removed = tuple(p for p in svc.ready if p.node is not crashed)
    terminating = tuple(p for p in svc.serving_terminating if p.node is not crashed)
    before = [(px.programmed, px.local, px.local_terminating) for px in proxies]
    table: dict[tuple[bool, ...], float] = {}
    for state in product((False, True), repeat=len(proxies) + (lb is not None)):
        for px, done, old in zip(proxies, state, before, strict=False):
            if done:
                px.programmed = removed
                px._split_local(removed, terminating)
            else:
                px.programmed, px.local, px.local_terminating = old
        if lb is not None:
            lb.up[crashed.name] = not state[-1]
        table[state] = topo.availability()
    return table


def _replacement_keeps_rotation(topo: Any, lb: Any, crashed: Any) -> bool:
    # a replacement on a node the LB had out of rotation would bring a marked_up later
    wl = topo.cluster.app
    for n in topo.cluster.nodes:
        if n is not crashed and n.role in wl.roles and n in lb.targets and not lb.up[n.name]:
            return False
    return True


# ----------------------------------------------------------------------------- the chain


def _node_crash_chain(d: Draws, horizon: float) -> dict[str, np.ndarray]:
    """Milestone times of a node crash at t = 0 (no repair), one value per trial."""
    lease = d.flag("kubelet.node_lease")
    if lease:
        hb = d("kubelet.node_lease_duration_seconds") * d(
            "kubelet.node_lease_renew_interval_fraction"
        )
    else:
        hb = d("kubelet.node_status_update_frequency")
    last_hb = d.phase(hb) - hb  # last_tick(phase, hb, 0)
    period = d("kube_controller_manager.node_monitor_period")
    phase = d.phase(period)
    probe = next_tick(phase, period, last_hb)
    t_nr = next_tick(phase, period, probe + d("kube_controller_manager.node_monitor_grace_period"))
    react = "kube_controller_manager.controller_reaction"
    batch = "kube_controller_manager.endpointslice_updates_batch_period"
    t_pnr = t_nr + d(react)
    t_rm = t_pnr + d(batch) + d(react)
    q_period = d("kube_controller_manager.node_eviction_period")
    q_phase = d.phase(q_period)
    out = {"node.not_ready": t_nr, "pods.not_ready": t_pnr, "endpoints.removed": t_rm}
    if d.flag("kube_controller_manager.taint_based_evictions"):
        t_taint = next_tick(q_phase, q_period, t_nr)
        out["node.tainted"] = t_taint
        t_ev = (
            t_taint
            + d("kube_controller_manager.taint_manager_delay")
            + d("kube_apiserver.default_unreachable_toleration_seconds")
        )
    else:
        due = next_tick(phase, period, probe + d("kube_controller_manager.pod_eviction_timeout"))
        t_ev = next_tick(q_phase, q_period, due)
    out["pod.evicted"] = t_ev
    out.update(_replacement(d, t_ev))
    return {k: np.where(v <= horizon, v, np.nan) for k, v in out.items()}


def _replacement(d: Draws, t_ev: np.ndarray) -> dict[str, np.ndarray]:
    """ReplicaSet -> scheduler -> kubelet start -> readiness probe -> EndpointSlice."""
    react = "kube_controller_manager.controller_reaction"
    t_created = t_ev + d(react)
    t_sched = t_created + d("kube_scheduler.scheduling_latency")
    t_run = t_sched + d("pod.container_start_time") + d("pod.image_pull_time")
    period = d("probe.period_seconds")
    if d.flag("pod.readiness_probe"):
        success = np.maximum(1, np.round(d("probe.success_threshold")))
        first = next_tick(t_sched % period, period, t_run + d("probe.initial_delay_seconds"))
        ready_at = first + (success - 1) * period
    else:
        ready_at = t_run
    t_ready = ready_at + d(react)
    t_add = t_ready + d("kube_controller_manager.endpointslice_updates_batch_period") + d(react)
    return {
        "replacement.created": t_created,
        "replacement.scheduled": t_sched,
        "replacement.ready": t_ready,
        "pod.ready": t_ready,
        "endpoints.added": t_add,
    }


def _proxy_syncs(d: Draws, t_rm: np.ndarray, count: int) -> np.ndarray:
    """(trials, proxies): when each live kube-proxy has the removal in the kernel."""
    out = np.empty((d.size, count))
    for j in range(count):
        last_start = -d.phase(d("kube_proxy.iptables_sync_period"))
        start = np.maximum(t_rm, last_start + d("kube_proxy.iptables_min_sync_period"))
        out[:, j] = start + d("kube_proxy.sync_duration")
    return out


def _lb_marked_down(d: Draws) -> np.ndarray:
    """`LbHealthChecker` on a target dead at t = 0: fall unanswered checks, then timeout."""
    interval = d("lb.interval")
    timeout = d("lb.timeout")
    fall = np.maximum(1, np.round(d("lb.fall")))
    gap = interval + timeout if d.ps["lb.check_schedule"] == "after-completion" else interval
    return d.phase(interval) + (fall - 1) * gap + timeout


# ----------------------------------------------------------------------------- a(t), metrics


def _availability(fc: FastCell, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted change times (trials, 1 + events) from t = 0 and a(t) after each."""
    n, m = events.shape
    order = np.argsort(events, axis=1)
    times = np.concatenate([np.zeros((n, 1)), np.take_along_axis(events, order, 1)], axis=1)
    done = np.zeros((n, m), dtype=bool)
    values = np.empty((n, m + 1))
    codes = {state: v for state, v in fc.table.items()}
    weights = 1 << np.arange(m)
    lookup = np.empty(1 << m)
    for state, v in codes.items():
        lookup[int(np.dot(np.asarray(state, dtype=int), weights))] = v
    values[:, 0] = lookup[0]
    rows = np.arange(n)
    for k in range(m):
        done[rows, order[:, k]] = True
        values[:, k + 1] = lookup[done @ weights]
    return times, values


def _metrics(
    times: np.ndarray, values: np.ndarray, keep: np.ndarray, horizon: float
) -> dict[str, np.ndarray]:
    """`chaoslab.outage.metrics` on many step functions at once (kept change points)."""
    t = np.where(keep, times, np.inf)
    # each kept point holds until the next kept one (or the horizon)
    nxt = np.minimum.accumulate(t[:, ::-1], axis=1)[:, ::-1]
    t1 = np.concatenate([nxt[:, 1:], np.full((len(t), 1), np.inf)], axis=1)
    t1 = np.minimum(t1, horizon)
    span = np.where(keep, np.maximum(t1 - times, 0.0), 0.0)
    low = values < 1 - _AV_EPS
    lost = np.sum(np.where(low, (1 - values) * span, 0.0), axis=1)
    down = np.sum(np.where(low & (values <= _AV_EPS), span, 0.0), axis=1)
    degraded = np.sum(np.where(low & (values > _AV_EPS), span, 0.0), axis=1)
    last_drop = np.max(np.where(low & (span > 0), t1, 0.0), axis=1)
    last = np.max(np.where(keep, np.arange(times.shape[1]), 0), axis=1)
    final = values[np.arange(len(t)), last]
    recovered = final >= 1 - _AV_EPS
    return {
        "recovery_s": np.where(recovered, last_drop, np.inf),
        "recovered": recovered,
        "downtime_s": down,
        "degraded_s": degraded,
        "lost_s": lost,
    }


def fast_frame(
    cell: Any, fc: FastCell, seed: int, start: int, stop: int, milestones: Sequence[str]
) -> pd.DataFrame:
    """A chunk's trials (rows ``start`` to ``stop``), the columns `run_chunk` writes."""
    from chaoslab.mechanisms.base import milestone_column
    from chaoslab.runner import _prepare

    n = stop - start
    crc = zlib.crc32(cell.key.encode())
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(crc, start, 1)))
    )
    d = Draws(_prepare(cell).params, rng, n)
    horizon = cell.horizon
    ms = _node_crash_chain(d, horizon)
    columns = [_proxy_syncs(d, ms["endpoints.removed"], len(fc.live_proxies))]
    if fc.lb_marks_down:
        columns.append(_lb_marked_down(d)[:, None])
        ms["lb.marked_down"] = columns[-1][:, 0]
    events = np.concatenate(columns, axis=1)
    if fc.live_proxies:
        ms["proxy.synced"] = events[:, : len(fc.live_proxies)].max(axis=1)
    events = np.where(np.isnan(events) | (events > horizon), np.inf, events)
    times, values = _availability(fc, events)
    keep = np.isfinite(times)
    keep[:, 1:] &= values[:, 1:] != values[:, :-1]
    m = _metrics(times, values, keep, horizon)
    ms["service.recovered"] = np.where(
        m["recovered"] & (m["recovery_s"] > 0), m["recovery_s"], np.nan
    )
    data: dict[str, Any] = {
        "design": [cell.name] * n,
        "fault": [cell.fault.result_name] * n,
        "target": [cell.fault.label] * n,
    }
    from chaoslab.runner import _sweep_value

    for key, raw in cell.sweep.items():
        data[key] = [_sweep_value(key, raw)] * n
    data["trial"] = np.arange(start, stop, dtype=np.int64)
    data.update(m)
    data["connections_reset"] = np.full(n, fc.reset)
    data["connections_hung"] = np.full(n, fc.hung)
    nan = np.full(n, math.nan)
    for name in milestones:
        v = ms.get(name, nan)
        data[milestone_column(name)] = np.where(v <= horizon, v, np.nan)
    data["a_t"] = _rows(times, keep)
    data["a_v"] = _rows(values, keep)
    return pd.DataFrame(data)


def _rows(a: np.ndarray, keep: np.ndarray) -> list[list[float]]:
    # one tolist() for the matrix; most rows keep every point, the rest are filtered
    full = keep.all(axis=1)
    rows: list[list[float]] = a.tolist()
    if full.all():
        return rows
    for i in np.flatnonzero(~full).tolist():
        rows[i] = list(compress(rows[i], keep[i].tolist()))
    return rows


#: the callback `chaoslab.runner.run_cells` reports a cell the fast engine does not cover to
NoteFn = Callable[[str], None]
