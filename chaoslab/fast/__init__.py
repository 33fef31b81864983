"""The fast engine: cells whose timer chain has a closed form, as NumPy over all trials.

The SimPy model (`chaoslab.runner`) is the reference. For a cell covered here, every timer
of its causal chain is drawn for all trials of a chunk at once from the cell's `ParamSet`
(the catalogue values the SimPy model reads, through the same parameter keys) and the
chain is composed with array arithmetic. tests/test_fast_engine.py checks each covered
cell against the SimPy model with two-sample KS tests on every metric and milestone
column, and a(t) shapes.

Covered: ``node-crash`` without repair of an app-pod node or the entry node under
``clusterip``, ``nodeport-direct``, ``nodeport-lb`` and ``nodeport-lb-local``
(`chaoslab.fast.node_crash`), ``pod-kill`` (one crash, restarted in place) and a
graceful ``pod-delete`` under ``clusterip``, ``nodeport-direct`` and ``nodeport-lb``
(`chaoslab.fast.pod_kill`, `chaoslab.fast.pod_delete`), under every Kubernetes profile:
kube-proxy's runner is stepped per slice version with its min sync period (the burst-2
token bucket up to 1.33, completion-to-start from 1.34: `common.kube_proxy_syncs`), and
the EndpointSlice pod queue's extra hop from 1.35 (`common.slice_delay`); and the crash
of the keepalived MASTER (``vip-holder``) under ``ingress-vip-vrrp`` (`chaoslab.fast.
vrrp`: Master_Down_Interval, GARP or the neighbour's own timeout, the new master's nginx
dropping the dead upstream), with its slow requests when the design has a latency model
(`chaoslab.fast.latency`). Whatever a form does not model falls back (`plan` says why).

a(t) between the chain's instants is not re-derived: a probe trial built by the design
itself is put in each combination of the chain's states ("kube-proxy j has programmed the
removal", "the LB has marked the target down", "the pod's container runs") and the
design's own ``availability()`` gives the value.

Random streams differ from the SimPy engine's (one stream per chunk, not per trial), so
the trials are equal in distribution, not identical; a cell's results depend on the seed
and the chunk size.
"""

from __future__ import annotations

import gc
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from chaoslab.fast import node_crash, pod_delete, pod_kill, vrrp
from chaoslab.fast.common import (
    AV_EPS,
    Draws,
    availability,
    instants,
    metrics,
    relevant_bits,
    rows,
)
from chaoslab.fast.latency import Latency, latency_columns
from chaoslab.params.dists import Dist

__all__ = ["ENGINES", "FAST_DESIGNS", "FastCell", "fast_frame", "plan"]

#: the engines a run can ask for
ENGINES = ("simpy", "fast")
#: designs with a closed form under some fault (which faults: `plan`)
FAST_DESIGNS = (
    "clusterip",
    "nodeport-direct",
    "nodeport-lb",
    "nodeport-lb-local",
    "ingress-vip-vrrp",
)
_POD_DESIGNS = ("clusterip", "nodeport-direct", "nodeport-lb")


@dataclass(frozen=True)
class FastCell:
    """What a covered cell's trials share, read once from a probe trial of the design."""

    kind: str  # the fault kind: node-crash or pod-kill
    proxies: int  # kube-proxies whose syncs matter (on live nodes)
    lb_marks_down: bool  # node-crash: the design's LB checks the crashed node
    #: a(t) for each combination of the chain's state bits (see the closed forms)
    table: dict[tuple[bool, ...], float]
    reset: float
    hung: float
    #: the bits a(t) depends on (`relevant_bits`), in the chain's order; ``table`` is
    #: keyed by these only
    bits: tuple[int, ...] = ()
    #: results columns that hold one value in every trial (no latency model: slow_s 0)
    constants: Mapping[str, float] = field(default_factory=dict)
    #: VRRP: what `chaoslab.fast.vrrp.chain` needs of the probe trial (its ``shape``)
    vrrp: tuple[float, float, float, int, bool] = (0.0, 0.0, 0.0, 0, False)
    #: the slow classes per state, when the design has a latency model
    latency: Latency | None = None
    #: VRRP: the (reset, hung) shares once the clients' entry moved to the new master
    moved: tuple[float, float] | None = None
    #: VRRP: the clients' SYN resend offsets (`chaoslab.fast.vrrp.states`)
    late: tuple[float, ...] = ()


#: the results columns the closed forms compute (`metrics`, and the connection shares)
_COMPUTED = frozenset(
    {"recovery_s", "recovered", "downtime_s", "degraded_s", "lost_s"}
    | {"connections_reset", "connections_hung"}
)


def plan(cell: Any) -> tuple[FastCell | None, str]:
    """(the fast form of ``cell``, "") or (None, why the fast engine does not cover it)."""
    why = _refusal(cell)
    if why:
        return None, why
    from chaoslab.runner import _build

    trial, topo, nodes, pods = _build(cell, 0, 0)
    modelled = getattr(trial, "_latency", None) is not None
    if modelled and cell.design != "ingress-vip-vrrp":
        return None, f"{cell.design} has a latency model (slow requests): no closed form here"
    fc, why = _plan_form(cell, trial, topo, nodes, pods)
    if fc is None:
        return None, why
    constants = {} if fc.latency is not None else _constant_columns(trial)
    from chaoslab.results import METRIC_COLUMNS

    computed = _COMPUTED | ({"slow_s", "p99_latency_s"} if fc.latency is not None else set())
    for col in METRIC_COLUMNS:
        if col not in computed and col not in constants:
            return None, f"the results column {col} has no closed form here"
    if fc.latency is None:
        bits, (table,) = relevant_bits(fc.table)
        return replace(fc, table=table, bits=bits, constants=constants), ""
    bits, (table, classes) = relevant_bits(fc.table, fc.latency.classes)
    lat = replace(fc.latency, classes=classes)
    return replace(fc, table=table, bits=bits, latency=lat), ""


def _constant_columns(trial: Any) -> dict[str, float]:
    """(slow_s, p99_latency_s) of a design without a latency model: the same in every
    trial (`Trial.latency_row`; nothing if this model has no such columns)."""
    row = getattr(trial, "latency_row", None)
    if row is None:
        return {}
    slow, p99 = row(math.inf)
    return {"slow_s": float(slow), "p99_latency_s": float(p99)}


def _plan_form(
    cell: Any, trial: Any, topo: Any, nodes: list[Any], pods: list[Any]
) -> tuple[FastCell | None, str]:
    from chaoslab.runner import _classify_flows, _prepare

    flows = topo.flows()
    if cell.fault.kind in ("pod-kill", "pod-delete"):
        if len(pods) != 1 or getattr(topo, "local", False):
            return None, "the fast engine covers one pod behind eTP Cluster"
        _prepare(cell).kind.inject(topo, nodes, pods)
        if cell.fault.kind == "pod-delete":
            pods[0].running = False  # the state once it stopped accepting: flows reset
            trial.changed()
        reset, hung = trial.connections or _classify_flows(flows)
        proxies = list(topo.cluster.proxies)
        form = pod_kill if cell.fault.kind == "pod-kill" else pod_delete
        table = form.table(topo, pods[0], proxies)
        return FastCell(cell.fault.kind, len(proxies), False, table, reset, hung), ""
    if cell.design == "ingress-vip-vrrp":
        return _plan_vrrp(cell, trial, topo, nodes, pods, flows)
    return _plan_node_crash(cell, trial, topo, nodes, pods, flows)


def _plan_vrrp(
    cell: Any, trial: Any, topo: Any, nodes: list[Any], pods: list[Any], flows: list[Any]
) -> tuple[FastCell | None, str]:
    from chaoslab.runner import _classify_flows, _prepare

    why = _crash_shape_refusal(topo, nodes, pods)
    if why:
        return None, why
    prep = _prepare(cell)
    prep.kind.inject(topo, nodes, pods)
    trial.changed()
    reset, hung = trial.connections or _classify_flows(flows)
    shared, why = vrrp.probe(topo, nodes[0], prep.params)
    if shared is None:
        return None, why
    lat = None
    if getattr(trial, "_latency", None) is not None:
        from chaoslab.outage import BaseLatency

        key = "client.request_duration"
        base = BaseLatency.of(trial.p.dist(key) or trial.p.draw(key))
        lat = Latency(shared["classes"], trial.p.draw("client.slow_threshold"), base)
    # the probe is in the last state now (entry moved, upstream dropped): packets of the
    # connections opened via the dead master reach the new one, which resets them
    moved = trial.connections if topo.conns is not None and topo.conns.update() else None
    shape = shared["shape"]
    fc = FastCell("vrrp", 0, False, shared["table"], reset, hung, vrrp=shape, latency=lat)
    return replace(fc, moved=moved or trial.connections, late=shared["late"]), ""


def _crash_shape_refusal(topo: Any, nodes: list[Any], pods: list[Any]) -> str:
    """Why the crash of ``nodes`` is not one node whose app pod the cluster replaces
    through the plain eviction chain ("" if it is)."""
    if len(nodes) != 1 or pods:
        return "the fast engine covers the crash of one node"
    crashed = nodes[0]
    app = [p for p in topo.cluster.app.pods if not p.gone]
    if sum(1 for p in app if p.node is crashed) > 1 or any(p.node is None for p in app):
        return "the fast engine covers at most one app pod on the crashed node"
    if sum(1 for n in topo.cluster.nodes if n.zone == crashed.zone) < 3:
        return "zone disruption (a zone of fewer than 3 nodes) has no closed form here"
    return ""


def _plan_node_crash(
    cell: Any, trial: Any, topo: Any, nodes: list[Any], pods: list[Any], flows: list[Any]
) -> tuple[FastCell | None, str]:
    from chaoslab.runner import _classify_flows, _prepare

    why = _crash_shape_refusal(topo, nodes, pods)
    if why:
        return None, why
    crashed = nodes[0]
    _prepare(cell).kind.inject(topo, nodes, pods)
    reset, hung = trial.connections or _classify_flows(flows)
    proxies = [px for px in topo.cluster.proxies if px.node.reachable]
    lb = getattr(topo, "lb", None)
    marks = lb is not None and crashed in lb.targets and lb.up[crashed.name]
    if marks and not _fixed_at_most(cell.params, "lb.propagation", 0.0):
        return None, "lb.propagation > 0 (the LB's data plane follows its mark later)"
    table = node_crash.table(topo, proxies, lb if marks else None, crashed)
    entry_dead = topo.entry is crashed and len(set(table.values())) == 1
    if table[(True,) * (len(proxies) + int(marks))] < 1 - AV_EPS and not entry_dead:
        # below 1 after the removal, the replacement would decide: not in this closed form
        return None, "a(t) stays below 1 after the removal: no closed form here"
    if lb is not None and not _replacement_keeps_rotation(topo, lb, crashed):
        return None, "the replacement pod may land on a node outside the LB's rotation"
    return FastCell("node-crash", len(proxies), bool(marks), table, reset, hung), ""


def _fixed_at_least(ps: Any, key: str, bound: float) -> bool:
    v = ps[key]
    return isinstance(v, Dist) and v.is_fixed and v.mean() >= bound


def _fixed_at_most(ps: Any, key: str, bound: float) -> bool:
    v = ps[key]
    return isinstance(v, Dist) and v.is_fixed and v.mean() <= bound


def _refusal(cell: Any) -> str:
    """Why the closed forms do not hold for ``cell`` ("" if they may: `plan` checks the
    topology next). Every fault option is checked here: ``with`` (a second effect),
    ``crashes`` (pod-kill), ``repair`` (node-crash); ``with_delay`` matters only with
    ``with``."""
    kind = cell.fault.kind
    why = _kind_refusal(cell.design, kind)
    if why:
        return why
    ps = cell.params.with_overrides(cell.fault.overrides(), source="fault options")
    second = str(ps["fault.with"])
    if second != "none":
        return f"fault.with = {second} (a second effect: no closed form for the pair)"
    ll = ps["client.long_lived_share"]
    if not (isinstance(ll, Dist) and ll.is_fixed and ll.mean() == 0):
        return "client.long_lived_share > 0 (connections followed over the trial)"
    # looked up softly: the stale-conntrack mechanism may not be in this catalogue
    rate = ps.values.get("client.connection_rate_per_ip")
    if rate is not None and not (isinstance(rate, Dist) and rate.is_fixed and rate.mean() == 0):
        return "client.connection_rate_per_ip > 0 (stale conntrack entries: no closed form)"
    spec = cell.cluster
    if spec.app_kind != "Deployment" or spec.anti_affinity == "required":
        return "the fast engine covers Deployments without required anti-affinity"
    if kind in ("pod-delete", "node-crash") and not ps["pod.readiness_probe"]:
        # the replacement is Ready once the kubelet sees its process, before its app
        # listens: its endpoint refuses connections for a while, a state the tables lack
        # (and under pod-delete its Ready and the old pod's exit race for one slice sync)
        return (
            f"{kind} without a readiness probe (the replacement's endpoint is Ready before "
            "its app listens and refuses connections: not in this closed form)"
        )
    if kind == "pod-kill":
        return _crash_refusal(ps["fault.crash_count"])
    if kind == "node-crash":
        return _node_crash_refusal(ps, cell.horizon)
    return ""


def _kind_refusal(design: str, kind: str) -> str:
    if kind in ("pod-kill", "pod-delete"):
        if design not in _POD_DESIGNS:
            return f"the fast engine has no closed form for {design} under {kind}"
    elif kind == "node-crash":
        if design not in FAST_DESIGNS:
            return f"the fast engine has no closed form for {design} under node-crash"
    else:
        return f"the fast engine covers node-crash, pod-kill and pod-delete, not {kind}"
    return ""


def _crash_refusal(crashes: Any) -> str:
    if not (isinstance(crashes, Dist) and crashes.is_fixed):
        return "fault.crash_count follows a distribution (a crash loop in some trials)"
    n = crashes.mean()
    if math.isinf(n):
        return "fault.crash_count = inf (the pod stays dead in CrashLoopBackOff)"
    if round(n) > 1:
        return "fault.crash_count > 1 (a crash loop with back-off)"
    return ""


def _node_crash_refusal(ps: Any, horizon: float) -> str:
    for key in ("fault.repair_time", "cluster.force_delete_after"):
        if not _fixed_at_least(ps, key, horizon):
            return f"{key} within the horizon (the node or its pods come back)"
    if not _fixed_at_least(ps, "kube_controller_manager.node_eviction_rate", 1e-12):
        return "kube_controller_manager.node_eviction_rate must be a fixed rate > 0"
    return ""


def _replacement_keeps_rotation(topo: Any, lb: Any, crashed: Any) -> bool:
    # a replacement on a node the LB had out of rotation would bring a marked_up later
    wl = topo.cluster.app
    for n in topo.cluster.nodes:
        if n is not crashed and n.role in wl.roles and n in lb.targets and not lb.up[n.name]:
            return False
    return True


#: milestones, and the chain's state bits: bit j holds on [on[j], off[j]) in each trial
_Trials = tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray]]


def _node_crash_trials(d: Draws, fc: FastCell) -> _Trials:
    ms = node_crash.chain(d)
    on = node_crash.proxy_syncs(d, ms["endpoints.removed"], fc.proxies)
    if on:
        ms["proxy.synced"] = np.max(np.stack(on, axis=1), axis=1)
    if fc.lb_marks_down:
        ms["lb.marked_down"] = node_crash.lb_marked_down(d)
        on.append(ms["lb.marked_down"])
    return ms, on, [np.full(d.size, np.inf) for _ in on]


def _pod_kill_trials(d: Draws, fc: FastCell) -> _Trials:
    ms = pod_kill.chain(d)
    removed, added = ms["endpoints.removed"], ms["endpoints.added"]
    on, off, synced = pod_kill.proxies(d, removed, added, fc.proxies)
    ms["proxy.synced"] = synced
    on.append(ms["container.serving"])
    off.append(np.full(d.size, np.inf))
    return ms, on, off


def _pod_delete_trials(d: Draws, fc: FastCell) -> _Trials:
    ms = pod_delete.chain(d)
    stopped = ms.pop("stopped")
    publishes = [ms["endpoints.removed"], ms.pop("terminating.removed"), ms["endpoints.added"]]
    on, synced = pod_delete.proxies(d, publishes, fc.proxies)
    ms["proxy.synced"] = synced
    off = [np.full(d.size, np.inf) for _ in on]
    on.append(np.zeros(d.size))  # the deleted pod accepts until it stopped
    off.append(stopped)
    return ms, on, off


def _vrrp_trials(d: Draws, fc: FastCell) -> _Trials:
    ms = vrrp.chain(d, fc.vrrp)
    on, off = vrrp.states(ms, fc.late)
    return ms, on, off


_FORMS = {"node-crash": _node_crash_trials, "pod-kill": _pod_kill_trials, "vrrp": _vrrp_trials}


def fast_frame(
    cell: Any, fc: FastCell, seed: int, start: int, stop: int, milestones: Sequence[str]
) -> pd.DataFrame:
    """A chunk's trials (rows ``start`` to ``stop``), the columns `run_chunk` writes."""
    # the chunk allocates two lists per trial (a_t, a_v); with the cyclic collector on,
    # its passes over every live object of the process cost more than building them
    # (4.2 -> 0.9 us per trial measured), and lists of floats hold no cycles
    collecting = gc.isenabled()
    gc.disable()
    try:
        # fresh arrays, or shared ones pandas copies before any write (copy on write)
        return pd.DataFrame(_columns(cell, fc, seed, start, stop, milestones), copy=False)
    finally:
        if collecting:
            gc.enable()


def _columns(
    cell: Any, fc: FastCell, seed: int, start: int, stop: int, milestones: Sequence[str]
) -> dict[str, Any]:
    from chaoslab.mechanisms.base import milestone_column
    from chaoslab.results import METRIC_COLUMNS
    from chaoslab.runner import _prepare, key_columns

    n = stop - start
    # one stream per chunk; the extra spawn-key word keeps it apart from the SimPy trials'
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(cell.key.encode()), start, 1))
    d = Draws(_prepare(cell).params, np.random.Generator(np.random.PCG64(ss)), n)
    horizon = cell.horizon
    ms, on, off = _FORMS.get(fc.kind, _pod_delete_trials)(d, fc)
    on, off = [on[j] for j in fc.bits], [off[j] for j in fc.bits]
    times, code = instants(on, off, n)
    values, keep = availability(fc.table, times, code, horizon)
    m = metrics(times, values, keep, horizon)
    recovered = m["recovered"] & (m["recovery_s"] > 0)
    ms["service.recovered"] = np.where(recovered, m["recovery_s"], np.nan)
    data = {k: _repeated(v, n) for k, v in key_columns(cell, start, stop).items()}
    shares = {"connections_reset": fc.reset, "connections_hung": fc.hung, **fc.constants}
    if fc.latency is not None:
        m["slow_s"], m["p99_latency_s"] = latency_columns(
            fc.latency, fc.table, times, code, m["recovery_s"], horizon
        )
    elif "p99_latency_s" in fc.constants:
        # no request succeeds before the horizon: nothing to time (`outage.no_latency_metrics`)
        m["p99_latency_s"] = np.where(
            m["downtime_s"] >= horizon, math.nan, fc.constants["p99_latency_s"]
        )
    if fc.moved is not None:
        moved = ms["arp.updated"] <= horizon
        m["connections_reset"] = np.where(moved, fc.moved[0], fc.reset)
        m["connections_hung"] = np.where(moved, fc.moved[1], fc.hung)
    for col in METRIC_COLUMNS:
        data[col] = m[col] if col in m else np.full(n, shares[col])
    nan = np.full(n, math.nan)  # one array for every milestone of other mechanisms
    for name in milestones:
        v = ms.get(name)
        data[milestone_column(name)] = nan if v is None else np.where(v <= horizon, v, nan)
    data["a_t"] = rows(times, keep)
    data["a_v"] = rows(values, keep)
    return data


def _repeated(column: Any, n: int) -> Any:
    """A key column (one value repeated, as a list) as the array pandas would make of it:
    converting n equal strings one by one costs ~0.15 us each, a one-element Series ~90 us;
    so a string column is taken from one element, once per value and length."""
    if not isinstance(column, list) or not column or not isinstance(column[0], str):
        return column
    return _strings(column[0], n)


@lru_cache(maxsize=256)
def _strings(value: str, n: int) -> Any:
    # pandas' string arrays are immutable (Arrow memory): one serves every chunk's frame
    return pd.Series([value]).array.take(np.zeros(n, dtype=np.intp))
