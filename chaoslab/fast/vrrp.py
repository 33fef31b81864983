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
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from chaoslab.fast import node_crash
from chaoslab.fast.common import Draws, next_tick

__all__ = ["chain", "probe", "states", "table"]


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


def states(ms: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The chain's state bits, [on, off): the neighbour points at the new master; its
    nginx no longer has the dead upstream."""
    t_arp, dropped = ms["arp.updated"], ms.pop("dropped")
    never = np.full(len(t_arp), np.inf)
    return [t_arp, dropped], [never, never.copy()]


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
    lazy = ours.name not in c.nginx  # else it follows the endpoints from the start
    others = sum(1 for ng in c.nginx.values() if ng.pod is not ours and ng.pod.node is not crashed)
    values, classes = table(topo, crashed, best.node)
    if values[(True, True)] < 1.0 or classes[(True, True)]:
        return None, "a(t) stays below 1 (or slow) after the upstream is dropped: no closed form"
    shape = (
        float(vrrp.prio(best)),
        float(getattr(c, "sync_time", 0.0)),
        float(getattr(c, "reload_extra", 0.0)),
        others,
        lazy,
    )
    return {"shape": shape, "table": values, "classes": classes}, ""


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
    if _retransmits(ps):
        return "SYN retransmission within client.timeout (late successes): no closed form here"
    return ""


def _retransmits(ps: Any) -> bool:
    """A client whose SYN is lost during the VIP move sends it again before its timeout
    (chaoslab.mechanisms.tcp): the SimPy model saves those requests late."""
    from chaoslab.mechanisms.tcp import syn_offsets

    v = ps.values
    timeout = v["client.timeout"].mean()
    retries = round(v["client.tcp_syn_retries"].mean())
    return bool(syn_offsets(timeout, retries, v["client.tcp_timeout_init"].mean()))
