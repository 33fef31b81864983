"""Network fidelity, issue 11: the router as its own profile, GARP and neighbour caches in
every VIP design, EHOSTUNREACH after a failed neighbour entry (docs/model-network.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import chaoslab
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.bgp import BgpFabric
from chaoslab.mechanisms.cluster import Node
from chaoslab.params import ParamSet
from chaoslab.params.catalogue import PROFILES

CRASH = {"kind": "node-crash", "target": "vip-holder"}
#: an nginx drops a dead pod at most one rate-limited sync (1 / 0.3 s) and one worker
#: tick (1 s) after the first nginx does (the ingress.upstream_removed milestone)
LAG = 1 / 0.3 + 1.0
#: the client's SYN retransmissions (mechanisms/tcp.py) off: a request the failure
#: catches fails instead of succeeding late at a retransmission after the path heals,
#: so the tests that pin it keep the router's or the neighbour cache's own closed form
NO_SYN = {"client.tcp_syn_retries": 0}


def trial(profiles: list[str] | None = None, seed: int = 0, **params: object) -> Trial:
    ps = ParamSet.resolve(profiles, params)
    rng = np.random.default_rng(seed)
    return Trial(ps.sampler(rng), rng, 900.0)


def nodes(n: int) -> list[Node]:
    return [Node(f"n{i}", "controller", i, "zone-0") for i in range(n)]


def sim(design: str, fault: object, profile: list[str], trials: int = 100, **kw: object):
    return chaoslab.simulate(
        design,
        fault,  # type: ignore[arg-type]
        profile=["k8s-1.32", *profile],
        trials=trials,
        seed=3,
        **kw,  # type: ignore[arg-type]
    )


# ============================================================================ item 2: routers
def test_router_profiles_are_their_own_family_and_combine_with_any_speaker() -> None:
    routers = {p.name for p in PROFILES.values() if p.family == "router"}
    assert {"router-bird2", "router-frr", "router-hardware"} <= routers
    ps = ParamSet.resolve(["calico-bird", "router-hardware"])
    # the speaker's graceful restart and the router's hold proposal, side by side
    assert ps["bgp.graceful_restart"] is True
    assert ps["bgp.peer_hold_time"].mean() == 180.0  # type: ignore[union-attr]
    assert ps["router.multipath"] is False
    # the speakers' profiles no longer say anything about the router
    for name in ("bird2", "calico-bird", "metallb-native", "frr-datacenter"):
        assert not {"bgp.hold_timer_jitter", "bgp.hold_expiry_flush_delay"} & set(
            PROFILES[name].settings
        )


def _flush_to_fib(**params: object) -> float:
    t = trial(None, 1, **params)
    ns = nodes(3)
    at: list[float] = []
    BgpFabric(t, ns, lambda n: n.powered, lambda old, new: at.append(t.now))
    ns[0].powered = False
    t.changed()
    t.env.run(until=899)
    return at[0] - t.milestones["bgp.session_down"]


def test_fib_time_counted_once_after_a_measured_flush() -> None:
    """The flush delay was measured up to the kernel route: no FIB time on top of it; a
    router that flushes at once (delay 0) still pays its FIB time."""
    lag = _flush_to_fib(**{"bgp.hold_expiry_flush_delay": "1s", "router.fib_update_time": "5s"})
    assert lag == pytest.approx(1.0)
    lag = _flush_to_fib(**{"bgp.hold_expiry_flush_delay": "0s", "router.fib_update_time": "5s"})
    assert lag == pytest.approx(5.0)


def test_single_best_path_router_loses_all_traffic_until_withdrawal() -> None:
    """No ECMP: the dead best next hop carries every new flow until the hold timer expires
    (RFC 4271 section 9.1.2.2: one route installed); ECMP loses only 1/3 meanwhile, plus
    1/9 of the other 2/3 (the live nginx's Lua round robin retries onto the crashed node's
    app pod) until those nginx drop it, long before the hold expires."""
    one = sim("ingress-vip-bgp", CRASH, ["router-hardware"], params=NO_SYN)
    ecmp = sim("ingress-vip-bgp", CRASH, ["router-bird2"], params=NO_SYN)
    # hardware: hold 180 s, keepalive 60 s, no jitter -> withdrawn in [120, 180] s + FIB
    assert one["at_bgp_session_down"].between(120 - 1e-9, 180).all()
    assert np.allclose(one["downtime_s"], one["recovery_s"], atol=1e-9)
    assert np.allclose(one["lost_s"], one["recovery_s"], rtol=1e-6)
    assert (ecmp["downtime_s"] == 0).all()
    retries = ecmp["lost_s"] - ecmp["recovery_s"] / 3
    removed = ecmp["at_ingress_upstream_removed"]
    assert retries.between(2 / 27 * removed - 0.01, 2 / 27 * (removed + LAG)).all()


def test_single_path_router_with_oldest_path_keeps_traffic_off_a_returning_node() -> None:
    """A 2 s blip with BFD drops the first node's session; it returns after the error wait.
    lowest-router-id takes the traffic back to it (a second move), oldest does not."""
    blip = {"kind": "transient-blip", "target": "vip-holder", "duration": "2s"}
    kw = {"bfd.enabled": True, "router.multipath": False, "client.request_duration": "10ms"}
    rfc = sim("ingress-vip-bgp", blip, [], trials=30, params={**kw})
    old = sim("ingress-vip-bgp", blip, [], trials=30, params={**kw, "router.best_path": "oldest"})
    # both lose everything while the blip lasts (one path, on the cut-off node), but only
    # lowest-router-id moves the path back after BIRD's 60 s error wait
    assert (rfc["recovery_s"] > 60).all()
    assert (old["recovery_s"] < 3).all()


def test_l3_hash_with_one_client_is_all_or_nothing() -> None:
    """fib_multipath_hash_policy 0 hashes addresses only: one client address takes one path,
    so per trial the dead hop costs it everything (1/3 of trials, until BFD withdraws it) or
    nothing; the re-hash then moves it off a live hop in 1/6 more (hash-threshold, edge
    region: half the space moves), which costs only the requests in flight. nginx's own
    round robin (untried): the Lua cycle's retries onto the dead node's app pod would cost
    every trial ~5 s, whichever path its client takes."""
    params = {
        "ecmp.hash_policy": "L3",
        "client.source_addresses": 1,
        "bfd.enabled": True,
        "nginx.round_robin_retry": "untried",
        **NO_SYN,
    }
    df = sim("ingress-vip-bgp", CRASH, [], trials=600, params=params)
    dead = df["lost_s"] > 0.1
    moved = (df["lost_s"] > 0) & ~dead
    assert dead.mean() == pytest.approx(1 / 3, abs=0.06)
    assert moved.mean() == pytest.approx(1 / 6, abs=0.05)
    assert (df.loc[dead, "downtime_s"] == df.loc[dead, "lost_s"]).all()
    many = sim("ingress-vip-bgp", CRASH, [], trials=50, params={"bfd.enabled": True})
    assert (many["downtime_s"] == 0).all()  # many clients: the shares, as with L4


# ============================================================================ item 8: GARP
VIP_DESIGNS = {
    # design: (profiles, the failover's own upper bound after the crash, seconds)
    "ingress-vip-vrrp": (["keepalived-osh"], 3.5),
    "metallb-l2": ([], 60.0),
    "kube-vip-arp": ([], 60.0),
}


@pytest.mark.parametrize("design", sorted(VIP_DESIGNS))
def test_router_that_ignores_garp_waits_for_its_arp_timeout_in_every_vip_design(
    design: str,
) -> None:
    """The new holder's GARPs (keepalived, MetalLB, kube-vip) move a router's entry at
    once; a router that ignores them moves at its next ARP refresh, U(0, timeout) after the
    crash (stationary phase) or at the failover if that comes later."""
    profiles, failover = VIP_DESIGNS[design]
    router = {"arp.neighbor": "router", "arp.router_timeout": "20m"}
    heard = sim(design, CRASH, profiles, trials=60, params=router)
    deaf = sim(design, CRASH, profiles, trials=200, params={**router, "arp.accept_garp": False})
    assert (heard["downtime_s"] < failover).all()
    assert (deaf["downtime_s"] <= 1200 + failover).all()
    # the refresh lands uniformly over the 20 min: mean ~600 s, a spread over the window
    assert deaf["downtime_s"].mean() == pytest.approx(600, abs=90)
    assert deaf["downtime_s"].quantile(0.9) > 900
    assert (deaf["at_arp_updated"].dropna() >= heard["at_arp_updated"].min()).all()


def test_linux_neighbour_updates_on_garp_whatever_accept_garp_says() -> None:
    """arp_accept gates only new entries: a Linux host updates an existing one always."""
    params = {"arp.neighbor": "linux", "arp.accept_garp": False}
    df = sim("ingress-vip-vrrp", CRASH, ["keepalived-osh"], trials=50, params=params)
    assert (df["downtime_s"] < 3.5).all()


# ============================================================================ item 4: EHOSTUNREACH
def test_irwin_hall_cdf_closed_forms() -> None:
    from chaoslab.mechanisms.ingress import irwin_hall_cdf

    assert irwin_hall_cdf(0.3, 1) == pytest.approx(0.3)
    assert irwin_hall_cdf(1.0, 2) == pytest.approx(0.5)
    assert irwin_hall_cdf(0.5, 2) == pytest.approx(0.125)
    assert irwin_hall_cdf(1.5, 3) == pytest.approx(0.5)
    assert irwin_hall_cdf(-1, 2) == 0.0 and irwin_hall_cdf(9, 2) == 1.0


def _proxy_by_sampling(
    kinds: list[str], tries: int, ct: float, tau: float, cycle: float, n: int = 40_000
) -> float:
    """nginx's retries by brute force: random upstream orders, uniform EHOSTUNREACH costs."""
    rng = np.random.default_rng(9)
    ok = 0
    for _ in range(n):
        spent = 0.0
        for kind in list(rng.permutation(kinds))[: tries or len(kinds)]:
            if kind == "live":
                ok += spent < tau
                break
            spent += {"refused": 0.0, "hole": ct, "unreach": cycle * rng.random()}[kind]
    return ok / n


def _upstreams(kinds: list[str]) -> tuple[int, int, int]:
    """(live, refused, black-holed) upstream counts of a list of kinds."""
    return kinds.count("live"), kinds.count("refused"), kinds.count("hole")


def _timeouts(kinds: list[str], tries: int, tau: float) -> dict[str, Any]:
    """The closed forms' keywords for these stories: 5 s connect, EHOSTUNREACH within 3 s."""
    return {
        "tries": tries,
        "connect_timeout": 5.0,
        "client_timeout": tau,
        "unreachable": kinds.count("unreach"),
        "unreachable_cycle": 3.0,
    }


@pytest.mark.parametrize(
    ("kinds", "tries", "tau"),
    [
        (["live", "unreach", "unreach"], 3, 3.0),
        (["live", "unreach", "unreach", "hole"], 3, 6.0),
        (["live", "live", "unreach", "refused", "hole"], 0, 4.0),
        (["live", "unreach", "unreach", "unreach"], 2, 2.0),
    ],
)
def test_proxy_success_with_unreachable_upstreams_matches_sampling(
    kinds: list[str], tries: int, tau: float
) -> None:
    from chaoslab.mechanisms.ingress import proxy_success

    got = proxy_success(*_upstreams(kinds), **_timeouts(kinds, tries, tau))
    assert got == pytest.approx(_proxy_by_sampling(kinds, tries, 5.0, tau, 3.0), abs=0.01)


def _lua_cycle_by_sampling(
    kinds: list[str], tries: int, ct: float, tau: float, cycle: float, n: int = 40_000
) -> float:
    """ingress-nginx's Lua round robin by brute force: a try after a refused one takes an
    upstream this request has not tried (the next of the cycle), a try after a timeout or
    EHOSTUNREACH any upstream (the cycle moved on meanwhile); uniform EHOSTUNREACH costs."""
    rng = np.random.default_rng(9)
    ok = 0
    for _ in range(n):
        spent, tried, fresh = 0.0, set(), True
        for _try in range(tries or len(kinds)):
            pool = [i for i in range(len(kinds)) if fresh or i not in tried]
            i = pool[rng.integers(len(pool))]
            if kinds[i] == "live":
                ok += spent < tau
                break
            tried.add(i)
            cost = {"refused": 0.0, "hole": ct, "unreach": cycle * rng.random()}[kinds[i]]
            spent, fresh = spent + cost, kinds[i] != "refused"
            if spent >= tau:
                break
    return ok / n


@pytest.mark.parametrize(
    ("kinds", "tries", "tau"),
    [
        (["live", "live", "unreach"], 3, 3.0),
        (["live", "unreach", "unreach"], 3, 3.0),
        (["live", "unreach", "unreach", "hole"], 3, 6.0),
        (["live", "live", "unreach", "refused", "hole"], 4, 11.0),
        (["live", "unreach", "refused", "refused"], 2, 2.0),
    ],
)
def test_lua_round_robin_with_unreachable_upstreams_matches_sampling(
    kinds: list[str], tries: int, tau: float
) -> None:
    """The cycle's closed form sums the EHOSTUNREACH residuals exactly (Irwin-Hall), not
    by their mean: with 2 of 3 pods unreachable and 3 s, two draws of them fit half the
    time."""
    from chaoslab.mechanisms.ingress import lua_round_robin_outcomes

    got, _ = lua_round_robin_outcomes(*_upstreams(kinds), **_timeouts(kinds, tries, tau))
    assert got == pytest.approx(_lua_cycle_by_sampling(kinds, tries, 5.0, tau, 3.0), abs=0.01)


def test_direct_routing_turns_a_dead_pod_from_a_black_hole_into_a_fast_error() -> None:
    """Client timeout 3 s < proxy_connect_timeout 5 s: behind an overlay the requests that
    try the dead node's pod first fail (1/3) until nginx drops it; with direct routing
    1/3 only until the ingress node's neighbour entry for it FAILS (Linux NUD, 23-53 s),
    then EHOSTUNREACH within U(0, 3 s) lets nginx retry in time. The Lua round robin's
    retry is any pod again; drawing the dead one twice fails when the two residuals pass
    3 s (1/2, Irwin-Hall) unless the third try is live (2/3): 1/9 x (1 - 1/2 x 2/3) = 2/27."""
    fault = {"kind": "node-crash", "target": "app-pod-node"}
    p = {"client.timeout": "3s", **NO_SYN}
    over = sim("ingress-hostnet", fault, [], trials=100, params={**p, "cni.routing": "overlay"})
    direct = sim("ingress-hostnet", fault, [], trials=100, params={**p, "cni.routing": "direct"})
    for df in (over, direct):  # recovery: the entry's nginx dropped the pod
        removed = df["at_ingress_upstream_removed"]
        assert df["recovery_s"].between(removed - 1e-9, removed + LAG).all()
    assert np.allclose(over["lost_s"], over["recovery_s"] / 3, rtol=1e-3)
    # lost = failed / 3 + (dropped - failed) x 2/27: the NUD failure each trial implies
    # (the drop itself if nginx dropped the pod first)
    dropped = direct["recovery_s"]
    failed = (27 * direct["lost_s"] - 2 * dropped) / 7
    assert failed.between(
        15 + 5 + 3 - 0.05, 45 + 5 + 3 + 0.05
    ).all()  # U(15, 45) + DELAY + 3 probes
    assert (failed <= dropped + 0.05).all()
    assert direct["lost_s"].mean() < over["lost_s"].mean() - 2


# ============================================================================ item 4: least_conn
def _least_conn_by_events(k: int, rate: float, stuck: float, n: int = 60_000) -> float:
    """Poisson arrivals to least_conn over k upstreams, one a black hole holding each
    connect for ``stuck`` s, the live ones answering at once; ties broken at random."""
    rng = np.random.default_rng(4)
    t, pending, hits = 0.0, [], 0
    for _ in range(n):
        t += rng.exponential(1 / rate)
        pending = [end for end in pending if end > t]
        if not pending and rng.random() < 1 / k:  # a tie at 0 connections: any of k
            hits += 1
            pending.append(t + stuck)
    return hits / n


@pytest.mark.parametrize(("k", "rate", "stuck"), [(3, 300.0, 5.0), (3, 2.0, 1.0), (5, 10.0, 0.5)])
def test_least_conn_picks_a_black_hole_once_per_stuck_connect(
    k: int, rate: float, stuck: float
) -> None:
    from chaoslab.mechanisms.ingress import least_conn_hole_share

    want = least_conn_hole_share(k, rate, stuck)
    got = _least_conn_by_events(k, rate, stuck)
    assert got == pytest.approx(want, rel=0.1, abs=2e-4)
    assert least_conn_hole_share(k, rate, 0.0) == pytest.approx(1 / k)


def test_least_conn_hides_a_black_holed_pod_that_round_robin_charges_a_third() -> None:
    """Client timeout 3 s < connect timeout 5 s: round robin fails the third of requests
    that try the dead node's pod first until its endpoint goes; least_conn sends it about
    one request per 5 s (at 300 requests/s: 1/1503 of them)."""
    fault = {"kind": "node-crash", "target": "app-pod-node"}
    p = {"client.timeout": "3s"}
    rr = sim("ingress-hostnet", fault, [], trials=50, params=p)
    lc = sim(
        "ingress-hostnet", fault, [], trials=50, params={**p, "nginx.load_balance": "least_conn"}
    )
    assert np.allclose(rr["lost_s"], rr["recovery_s"] / 3, rtol=0.02)
    # the client's 3 s give-up frees the stuck connect; live pods busy 0.6 ms each
    from chaoslab.mechanisms.ingress import least_conn_hole_share

    share = least_conn_hole_share(3, 300, 3.0, busy=300 * 0.0006)
    assert np.allclose(lc["lost_s"], lc["recovery_s"] * share, rtol=0.05)
    assert (lc["downtime_s"] == 0).all()


def test_kube_vip_needs_the_api_server_to_move_its_vip() -> None:
    """kube-vip's leader holds a Lease: while no API server answers, its death is taken
    over only once the API server is back (fault.apiserver_down_time 60 s); MetalLB's
    memberlist moves the IP without it. Alone, the outage drops the VIP after
    RenewDeadline (10 s) and a candidate takes the expired Lease within one poll of the
    API server's return, while the old node's kube-proxy keeps serving the neighbour's
    cached MAC: no request is lost."""
    crash = {"kind": "node-crash", "target": "vip-holder", "with": "apiserver-down"}
    kv = chaoslab.simulate("kube-vip-arp", crash, trials=100, seed=2)
    ml = chaoslab.simulate("metallb-l2", crash, trials=100, seed=2)
    assert kv["at_kube_vip_leader_changed"].between(60.0, 60.0 + 2.2 * 2.0).all()
    assert kv["at_vip_added"].min() >= 60.0
    assert ml["at_vip_added"].max() < 15.0  # memberlist: no Lease, no API server
    assert kv["lost_s"].min() > ml["lost_s"].max()
    alone = chaoslab.simulate("kube-vip-arp", "apiserver-down", trials=100, seed=2)
    assert alone["at_vip_removed"].round(6).eq(10.0).all()
    assert alone["at_vip_added"].between(60.0, 60.0 + 2.2 * 2.0).all()
    assert (alone["lost_s"] == 0).all()


# ============================================================================ item 8: GARP refresh
ROUTER_4H = {"arp.neighbor": "router", "arp.router_timeout": "4h"}


def _arp_offsets(params: dict[str, object], trials: int) -> np.ndarray:
    df = sim("ingress-vip-vrrp", CRASH, ["keepalived-osh"], trials=trials, params=params)
    return (df["at_arp_updated"] - df["at_vrrp_master_changed"]).to_numpy()


def test_refresh_garps_heal_a_router_entry_that_missed_the_takeover_bursts() -> None:
    """Each GARP frame lost with q = 1/2, one frame per burst: the router's entry moves at
    the takeover (p 1/2), at the second burst 5 s later (1/4), else at the first refresh
    that arrives, P = 2^-(k+2) for the k-th: keepalived 2.3.2+ (timer) at 5 + 10 k s;
    keepalived <= 2.3.1 (advert, the osh profile's 1.4.5) with the first advert after each
    deadline, 10 k s with 1 s adverts."""
    lossy = {
        **ROUTER_4H,
        "arp.garp_loss": 0.5,
        "vrrp.garp_master_repeat": 1,
        "vrrp.garp_master_delay": "5s",
        "vrrp.garp_master_refresh": "10s",
    }
    for schedule, refreshes in (("timer", (15, 25)), ("advert", (10, 20))):
        off = _arp_offsets({**lossy, "vrrp.garp_refresh_schedule": schedule}, 600)
        assert np.isfinite(off).all()  # every trial healed within the horizon
        for at, p in zip((0, 5, *refreshes), (1 / 2, 1 / 4, 1 / 8, 1 / 16), strict=True):
            share = np.isclose(off, at, atol=1e-6).mean()
            assert share == pytest.approx(p, abs=4 * (p * (1 - p) / 600) ** 0.5), schedule
    # without the refresh a quarter of the trials wait for the router's own 4 h timeout
    stale = _arp_offsets({**lossy, "vrrp.garp_master_refresh": "0s"}, 400)
    assert np.mean(~np.isfinite(stale) | (stale > 60)) == pytest.approx(1 / 4, abs=0.07)


def test_garp_repeats_make_a_lost_burst_rare() -> None:
    """A burst of r frames is missed with q^r: keepalived's default 5 frames at q = 1/2
    leave 1/32 of the takeovers to the second burst."""
    off = _arp_offsets({**ROUTER_4H, "arp.garp_loss": 0.5}, 400)
    assert np.isclose(off, 0, atol=1e-6).mean() == pytest.approx(31 / 32, abs=0.03)


def test_refresh_does_not_help_a_router_that_ignores_garp() -> None:
    """A router that ignores GARP ignores the refreshes too: it moves at its ARP timeout."""
    deaf = {**ROUTER_4H, "arp.router_timeout": "20m", "arp.accept_garp": False}
    df = sim("ingress-vip-vrrp", CRASH, ["keepalived-osh"], trials=100, params=deaf)
    refreshed = sim(
        "ingress-vip-vrrp",
        CRASH,
        ["keepalived-osh"],
        trials=100,
        params={**deaf, "vrrp.garp_master_refresh": "10s"},
    )
    assert refreshed["downtime_s"].tolist() == pytest.approx(df["downtime_s"].tolist())


# ============================================================================ item 6: dead service
SERVICE_KILL = {"kind": "pod-kill", "target": "ingress-pod", "crashes": "inf"}
LONG = {"client.long_lived_share": 0.5}


def test_dead_service_without_a_track_never_moves_the_vip() -> None:
    """The ingress dies, keepalived lives and tracks nothing: the VIP stays on a node whose
    kernel refuses every connection; established connections are reset, none hangs."""
    df = sim("ingress-vip-vrrp", SERVICE_KILL, [], trials=30, params=LONG, horizon=120)
    assert not df["recovered"].any()
    assert df["lost_s"].tolist() == pytest.approx([120.0] * 30)
    assert df["at_vrrp_master_changed"].isna().all()
    assert (df["connections_reset"] == 1).all() and (df["connections_hung"] == 0).all()


@pytest.mark.parametrize(
    ("track", "low", "high"),
    [
        # vrrp_script, fall 2, interval 1 s: KO at the second failed run, U(1, 2) s
        ({"vrrp.track_script": True, "vrrp.script_fall": 2}, 1.0, 2.0),
        # vrrp_track_process: the exit event, then terminate_delay 0.25 s
        ({"vrrp.track_process": True, "vrrp.process_delay": "250ms"}, 0.25, 0.25),
    ],
)
def test_a_tracked_dead_service_fails_over_after_the_track_and_the_skew(
    track: dict[str, object], low: float, high: float
) -> None:
    """weight 0: FAULT, priority-0 advert, the backup (priority 100) takes over after its
    Skew_Time 0.609 s: recovery in [low, high] + skew."""
    skew = (256 - 100) / 256
    df = sim("ingress-vip-vrrp", SERVICE_KILL, [], trials=60, params={**LONG, **track})
    assert df["recovered"].all()
    assert df["recovery_s"].min() >= low + skew - 1e-6
    assert df["recovery_s"].max() <= high + skew + 1e-6
    assert (df["connections_reset"] == 1).all() and (df["connections_hung"] == 0).all()


KA_SERVICE = {
    "kind": "daemon-kill",
    "target": "vip-holder",
    "daemon": "keepalived",
    "signal": "KILL",
    "with_service": True,
    "crashes": "inf",
}


def test_keepalived_and_service_killed_on_a_live_node_keep_answering_arp() -> None:
    """keepalived and its service SIGKILLed, the node alive: the VIP stays configured and
    the old node answers ARP for it, so without GARPs a Linux neighbour never moves (a
    crashed node would be re-resolved by NUD in 23-53 s); garp_master_refresh 30 s heals it
    at the takeover + garp_master_delay (5 s) + 30 s."""
    quiet = {**LONG, "vrrp.garp_master_repeat": 0}
    never = sim("ingress-vip-vrrp", KA_SERVICE, [], trials=30, params=quiet, horizon=120)
    assert not never["recovered"].any() and never["at_arp_updated"].isna().all()
    assert never["fault"].iloc[0] == "daemon-kill/keepalived-kill/with-service"
    crash = sim("ingress-vip-vrrp", CRASH, [], trials=30, params=quiet, horizon=120)
    assert crash["recovery_s"].between(23, 53.7).all()
    healed = sim(
        "ingress-vip-vrrp",
        KA_SERVICE,
        [],
        trials=30,
        params={**quiet, "vrrp.garp_master_refresh": "30s"},
        horizon=120,
    )
    moved = healed["at_arp_updated"] - healed["at_vrrp_master_changed"]
    assert moved.tolist() == pytest.approx([35.0] * 30)
    # the move off a node that still answers resets the requests in flight (Trial.blip)
    late = healed["recovery_s"] - healed["at_arp_updated"]
    assert late.between(0, 0.05).all()


def test_with_service_needs_an_ingress_on_the_node() -> None:
    with pytest.raises(chaoslab.UserError, match="no ingress"):
        sim("metallb-l2", {**KA_SERVICE, "daemon": "metallb-speaker"}, [], trials=2)
