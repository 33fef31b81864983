"""Closed form of a crash of the keepalived MASTER of ``ingress-vip-vrrp`` (the VIP holder:
`chaoslab.mechanisms.vrrp`, ``arp``, ``ingress``; the app pod it also hosts follows
`chaoslab.fast.node_crash`)::

    the master's last advert at a random phase of its grid: U(-advert_int, 0)
      -> + Master_Down_Interval of the backup that takes over (RFC 5798 section 6.1:
         3 x advert_int + Skew_Time, v2 skew (256 - priority) / 256 s): vrrp.master_changed,
         vip.added (keepalived adds the VIP)
      -> GARP (garp_master_repeat > 0) the clients' neighbour accepts: arp.updated at once;
         else the entry gives up on the dead MAC (Linux: U(base/2, 3 base/2) + delay +
         ucast_solicit x retrans_time after it stopped answering at t = 0; a router: its
         timeout's next tick) and re-resolves to whoever holds the VIP by then
    the new master's nginx is created by the first request it gets (arp.updated): if the
    crashed node's app pod was still an endpoint then, nginx drops it at its next sync
    after endpoints.removed (rate limit, sync time, the Lua workers' tick or a reload):
    ingress.upstream_removed

a(t) is 0 until arp.updated, then what the new master's nginx gives with and without the
dead upstream (a probe trial's ``availability()``), as are its slow classes.

A client whose SYN met the dead MAC resends it (`chaoslab.mechanisms.tcp`: at
``syn_offsets`` after the first, before its timeout): a request first sent at t < arp.updated
gets through at its first resend at or after arp.updated, r_k late, and meets the new
master's nginx as it is then (its slow classes; a retry that ends after the timeout fails).
So before arp.updated a(t) is the late share of the k-th resend from arp.updated - r_k on
(state bit "late k"). That holds while no decision changes between a first SYN and its
resend (kube-proxy's rules, nginx's upstreams, the pods: `Topology.decision_state`): `plan`
covers a cell only if GARP moves the entry and the endpoints' removal, the first decision,
cannot come before the last resend (`_late_refusal`).
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from chaoslab.fast import node_crash
from chaoslab.fast.common import Draws, next_tick

__all__ = ["chain", "late_table", "probe", "resends", "states", "table"]


def chain(d: Draws, shape: tuple[float, float, float, int, bool]) -> dict[str, np.ndarray]:
    """Milestones of the crash. ``shape`` (`probe`): the priority of the backup that takes
    over, the nginx sync and reload costs (`IngressCluster`), how many other live nginx
    follow the endpoints, and whether the new master's nginx only starts with its first
    request (else it follows the endpoints from the start)."""
    prio, sync_time, reload_extra, others, lazy = shape
    ms = node_crash.chain(d)
    t_master = _takeover(d, prio)
    t_arp = _neighbour(d, t_master)
    t_rm = ms["endpoints.removed"]
    # the cluster's settings, drawn once per trial (`IngressCluster`), then each nginx's
    rate, tick = d("nginx.sync_rate_limit"), d("nginx.backends_sync_interval")
    gap = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), 0.0)
    costs = (gap, tick, sync_time, reload_extra)
    t_up = _nginx_drops(d, t_rm, *costs)
    # an nginx created after the slice write starts without the dead pod: nothing to drop
    ours = t_arp < t_rm if lazy else np.ones(d.size, dtype=bool)
    first = np.where(ours, t_up, np.inf)
    for _ in range(others):
        first = np.minimum(first, _nginx_drops(d, t_rm, *costs))
    ms["vrrp.master_changed"] = t_master
    ms["vip.added"] = t_master
    ms["arp.updated"] = t_arp
    ms["ingress.upstream_removed"] = np.where(np.isfinite(first), first, np.nan)
    ms["dropped"] = np.where(ours, t_up, t_arp)  # not a milestone: the new master's nginx
    return ms


def states(
    ms: dict[str, np.ndarray], late: tuple[float, ...] = ()
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The chain's state bits, [on, off): the neighbour points at the new master; its
    nginx no longer has the dead upstream; then for each SYN resend offset r_k (``late``),
    a request sent now gets through at its k-th resend (from arp.updated - r_k on)."""
    t_arp, dropped = ms["arp.updated"], ms.pop("dropped")
    never = np.full(len(t_arp), np.inf)
    on = [t_arp, dropped, *(np.maximum(0.0, t_arp - r) for r in late)]
    return on, [never] * len(on)


def _takeover(d: Draws, prio: float) -> np.ndarray:
    adver = d("vrrp.advert_int")
    version = d.count("vrrp.version")
    adverts = np.maximum(1, d.count("vrrp.down_timer_adverts"))
    skew = np.where(version >= 3, (256.0 - prio) * adver / 256.0, (256.0 - prio) / 256.0)
    last_advert = d.phase(adver) - adver  # last_tick of the master's grid before t = 0
    return last_advert + adverts * adver + skew


def _neighbour(d: Draws, t_master: np.ndarray) -> np.ndarray:
    """When the clients' neighbour entry points at the new master (`VipNeighbour`)."""
    linux = d.choice("arp.neighbor") == "linux"
    accepts = linux or d.flag("arp.accept_garp")
    # a burst of GARPs the neighbour takes (frames are never lost here: `plan`)
    garp = (d.count("vrrp.garp_master_repeat") > 0) & accepts
    if linux:
        # the kernel's reachable time U(base/2, 3 base/2), then DELAY and the unicast probes
        gives_up = (
            d("arp.base_reachable_time") * (0.5 + d.rng.random(d.size))
            + d("arp.delay_first_probe_time")
            + d.count("arp.ucast_solicit") * d("arp.retrans_time")
        )
    else:
        gives_up = d.phase(d("arp.router_timeout"))  # the timeout's next tick after t = 0
    return np.where(garp, t_master, np.maximum(t_master, gives_up))


def _nginx_drops(
    d: Draws,
    t_rm: np.ndarray,
    gap: np.ndarray,
    tick: np.ndarray,
    sync_time: float,
    reload_extra: float,
) -> np.ndarray:
    """One nginx's first sync after the slice write (``gap``: 1 / its rate limit), and
    when its workers use it (Lua tick ``tick``) or its reload ends (`Nginx`)."""
    last_sync = -gap * d.rng.random(d.size)
    start = np.maximum(t_rm, last_sync + gap)
    if d.flag("nginx.dynamic_configuration"):
        return next_tick(d.phase(tick), tick, start + sync_time)
    return start + sync_time + d("nginx.reload_time") + reload_extra


def table(
    topo: Any, crashed: Any, backup: Any
) -> tuple[dict[tuple[bool, ...], float], dict[tuple[bool, ...], tuple[tuple[float, float], ...]]]:
    """a(t) and the slow classes in each state (neighbour moved, upstream dropped) on a
    probe trial just after the crash; ``backup``: the node that takes over."""
    trial = topo.trial
    c = topo.cluster
    nginx = c.nginx_of(topo.ingress_pod_on(backup))
    before = nginx.upstreams
    after = tuple(p for p in before if p.node is not crashed)
    latency = getattr(trial, "_latency", None)
    values: dict[tuple[bool, ...], float] = {}
    classes: dict[tuple[bool, ...], tuple[tuple[float, float], ...]] = {}
    for state in product((False, True), repeat=2):
        moved, dropped = state
        topo.vip_nodes[:] = [backup] if moved else []
        topo.neighbour.mac = backup if moved else crashed
        nginx.upstreams = after if dropped else before
        values[state] = topo.availability()
        classes[state] = tuple(latency()) if latency is not None else ()
    return values, classes


#: keys whose value the probe trial's cluster holds for every trial: they must be fixed
_FIXED = (
    "vrrp.priority",
    "ingress.ingresses",
    "nginx.sync_time_per_ingress",
    "nginx.reload_time_per_ingress",
    "client.slow_threshold",
    "arp.garp_loss",
)


def probe(topo: Any, crashed: Any, ps: Any) -> tuple[dict[str, Any] | None, str]:
    """What every trial of a crash of ``crashed`` shares, read off the probe trial just
    after it (``ps``: the cell's parameters): the backup's priority, its nginx's sync
    costs, a(t) and the slow classes per state; or None and why the closed form does not
    hold."""
    vrrp = topo.vrrp
    if crashed is not vrrp.initial_master:
        return None, "the fast engine covers the crash of the VRRP master (target vip-holder)"
    why = _params_refusal(ps)
    if why:
        return None, why
    backups = [
        i for i in vrrp.insts if i.node is not crashed and i.state == "BACKUP" and vrrp._active(i)
    ]
    if not backups:
        return None, "no keepalived backup takes over"
    best = min(backups, key=vrrp.mdi)  # the first of equals: its timer fires first
    if topo.ingress_pod_on(best.node) is None:
        return None, "the backup that takes over runs no ingress pod"
    c = topo.cluster
    ours = topo.ingress_pod_on(best.node)
    # never True today: every ingress pod placed at setup gets its nginx then
    # (`IngressCluster.add_ingress`); only a later pod (a replacement) starts one lazily
    lazy = ours.name not in c.nginx  # else it follows the endpoints from the start
    others = sum(1 for ng in c.nginx.values() if ng.pod is not ours and ng.pod.node is not crashed)
    values, classes = table(topo, crashed, best.node)
    if values[(True, True)] < 1.0 or classes[(True, True)]:
        return None, "a(t) stays below 1 (or slow) after the upstream is dropped: no closed form"
    late, timeout, why = resends(ps)
    why = why or _late_refusal(ps, late)
    if not why and late and lazy:  # its creation at ~arp.updated is a decision (tcp._cohort)
        why = "SYN resends with a lazily started nginx: SimPy"
    if not why and late and getattr(topo.trial, "_latency", None) is None:
        why = "SYN resends without the design's latency model: no closed form here"
    if why:
        return None, why
    if late:
        values, classes = late_table(values, classes, late, timeout)
    shape = (
        float(vrrp.prio(best)),
        float(getattr(c, "sync_time", 0.0)),
        float(getattr(c, "reload_extra", 0.0)),
        others,
        lazy,
    )
    return {"shape": shape, "table": values, "classes": classes, "late": late}, ""


def _params_refusal(ps: Any) -> str:
    from chaoslab.params.dists import Dist, Empirical

    if str(ps["cni.routing"]) == "direct":
        return "cni.routing: direct (nginx's neighbour entries of dead nodes): no closed form"
    for key in _FIXED:
        v = ps.values.get(key)
        if v is None or (key == "vrrp.priority" and isinstance(v, Empirical)):
            continue  # not in this catalogue, or one priority per node (a YAML list)
        if not (isinstance(v, Dist) and v.is_fixed):
            return f"{key} follows a distribution (the probe trial holds one value)"
    loss = ps.values.get("arp.garp_loss")
    if loss is not None and loss.mean() > 0:
        return "arp.garp_loss > 0 (lost GARP bursts): no closed form here"
    return ""


def resends(ps: Any) -> tuple[tuple[float, ...], float, str]:
    """(the SYN resend offsets, the client timeout, "") of a cell's clients
    (`chaoslab.mechanisms.tcp.syn_offsets`), or ((), 0, why not) if they are drawn."""
    from chaoslab.mechanisms.tcp import syn_offsets
    from chaoslab.params.dists import Dist

    v = ps.values
    retries = v["client.tcp_syn_retries"]
    if isinstance(retries, Dist) and retries.is_fixed and round(retries.mean()) <= 0:
        return (), 0.0, ""
    keys: tuple[str, ...] = ("client.timeout", "client.tcp_syn_retries", "client.tcp_timeout_init")
    keys += ("client.tcp_syn_linear_timeouts",) if "client.tcp_syn_linear_timeouts" in v else ()
    for key in keys:
        if not (isinstance(v[key], Dist) and v[key].is_fixed):
            return (), 0.0, f"{key} follows a distribution (SYN resends): no closed form here"
    timeout, rto = v["client.timeout"].mean(), v["client.tcp_timeout_init"].mean()
    linear = round(v[keys[3]].mean()) if len(keys) > 3 else 0
    return syn_offsets(timeout, round(retries.mean()), rto, linear=max(0, linear)), timeout, ""


def _hi(ps: Any, key: str) -> float:
    v = ps[key]
    return float(v.bounds()[1]) if hasattr(v, "bounds") else float(v)


def _late_refusal(ps: Any, late: tuple[float, ...]) -> str:
    """Why the late successes of resent SYNs have no closed form ("" if they have): the
    entry must move at the takeover (GARP the neighbour accepts) and the last resend come
    before the first decision can change, the endpoints' removal (node-crash chain:
    last heartbeat + grace at the earliest)."""
    if not late:
        return ""
    linux = str(ps["arp.neighbor"]) == "linux"
    garp = ps["vrrp.garp_master_repeat"]
    if not (linux or bool(ps["arp.accept_garp"])) or not (garp.is_fixed and garp.mean() >= 0.5):
        return "SYN resends while the neighbour's own timeout moves the entry: no closed form"
    adver = _hi(ps, "vrrp.advert_int")
    takeover = round(_hi(ps, "vrrp.down_timer_adverts")) * adver + max(1.0, adver)
    if bool(ps["kubelet.node_lease"]):
        hb = _hi(ps, "kubelet.node_lease_duration_seconds") * _hi(
            ps, "kubelet.node_lease_renew_interval_fraction"
        )
    else:
        hb = _hi(ps, "kubelet.node_status_update_frequency")
    hb *= 1.0 + _hi(ps, "kubelet.heartbeat_jitter_factor") / 2
    removal = float(ps["kube_controller_manager.node_monitor_grace_period"].bounds()[0]) - hb
    if takeover + late[-1] >= removal:
        return "SYN resends may outlast the endpoints' removal (a decision): no closed form"
    return ""


def late_table(
    values: dict[tuple[bool, ...], float],
    classes: dict[tuple[bool, ...], tuple[tuple[float, float], ...]],
    late: tuple[float, ...],
    timeout: float,
) -> tuple[dict[tuple[bool, ...], float], dict[tuple[bool, ...], tuple[tuple[float, float], ...]]]:
    """a(t) and the slow classes in each state of `states` with the resend bits: before the
    entry moved, the first resend whose bit holds adds its late successes (`tcp.merge_late`:
    a(t) + their shares, the classes of both)."""
    out_v: dict[tuple[bool, ...], float] = {}
    out_c: dict[tuple[bool, ...], tuple[tuple[float, float], ...]] = {}
    for state in product((False, True), repeat=2 + len(late)):
        moved, dropped, *bits = state
        v, c = values[(moved, dropped)], classes[(moved, dropped)]
        k = next((i for i, b in enumerate(bits) if b), None)
        if not moved and k is not None:
            extra = _resent(values[(True, False)], classes[(True, False)], late[k], timeout)
            v, c = min(1.0, v + sum(s for s, _ in extra)), c + extra
        out_v[state], out_c[state] = v, c
    return out_v, out_c


def _resent(
    a: float, classes: tuple[tuple[float, float], ...], r: float, timeout: float
) -> tuple[tuple[float, float], ...]:
    """The late classes of requests that get through at a resend ``r`` after their first
    SYN, into a(t) = ``a`` with ``classes`` (`tcp._cohort` and `tcp._split` from a(t) = 0)."""
    from chaoslab.outage import EPS

    if a <= EPS:
        return ()
    share = a - 0.0
    if not classes:
        return ((share, r),)
    out = [(share * s / a, r + d) for s, d in classes if r + d < timeout]
    out.append((share * max(0.0, a - sum(s for s, _ in classes)) / a, r))
    return tuple(x for x in out if x[0] > 0)
