"""Each network mechanism against its closed form (docs/model-network.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.mechanisms.arp import VipNeighbour, linux_reresolve_bounds
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.bgp import (
    BgpFabric,
    bfd_detection_time,
    keepalive_age,
    negotiated_hold,
)
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.ecmp import (
    SPACE,
    moved_from,
    moved_share,
    resilient_buckets,
    route,
)
from chaoslab.mechanisms.ingress import proxy_success
from chaoslab.mechanisms.kubevip import graceful_takeover, silent_takeover
from chaoslab.mechanisms.memberlist import (
    detection_time,
    suspicion_bounds,
    suspicion_timeout,
)
from chaoslab.mechanisms.vrrp import VrrpGroup, master_down_interval, skew_time
from chaoslab.params import ParamSet


def trial(seed: int = 0, horizon: float = 600.0, **params: object) -> Trial:
    ps = ParamSet.resolve(None, params)
    rng = np.random.default_rng(seed)
    return Trial(ps.sampler(rng), rng, horizon)


def nodes(n: int) -> list[Node]:
    return [Node(f"n{i}", "controller", i, "zone-0") for i in range(n)]


# ============================================================================ VRRP
def test_master_down_interval_closed_forms() -> None:
    assert master_down_interval(2, 100, 1.0) == pytest.approx(3.609, abs=5e-4)
    assert master_down_interval(2, 150, 1.0) == pytest.approx(3.414, abs=5e-4)
    assert master_down_interval(3, 150, 1.0) == pytest.approx(3.414, abs=5e-4)
    # v2 skew does not scale with the advert interval, v3 does
    assert skew_time(2, 150, 0.1) == skew_time(2, 150, 5.0) == pytest.approx(106 / 256)
    assert skew_time(3, 150, 0.1) == pytest.approx(106 / 256 * 0.1)
    assert master_down_interval(3, 254, 0.1) == pytest.approx(0.3 + 2 * 0.1 / 256)


class VrrpRig:
    """A VrrpGroup on bare nodes, recording who holds the VIP and when."""

    def __init__(self, t: Trial, prios: list[float], **kw: object) -> None:
        self.t = t
        self.nodes = nodes(len(prios))
        self.vip: list[tuple[float, str, bool]] = []
        self.garps: list[tuple[float, str]] = []
        self.frames: list[int] = []
        self.healthy = {n.name: True for n in self.nodes}
        self.g = VrrpGroup(
            t,
            self.nodes,
            prios,
            on_vip=lambda n, up: self.vip.append((t.now, n.name, up)),
            on_garp=self._garp,
            healthy=lambda n: self.healthy[n.name],
        )

    def _garp(self, node: Node, frames: int) -> None:
        self.garps.append((self.t.now, node.name))
        self.frames.append(frames)

    def takeover(self) -> float:
        return next(t for t, _n, up in self.vip if up)


def test_vrrp_crash_takeover_within_master_down_window() -> None:
    """SIGKILL/power loss: the backup takes over in [MDI - advert, MDI] after the fault."""
    times = []
    for seed in range(300):
        rig = VrrpRig(trial(seed), [150, 150])
        master = rig.g.initial_master
        master.powered = False
        rig.t.changed()
        rig.t.env.run(until=20)
        times.append(rig.takeover())
        assert rig.garps and rig.garps[0][0] == times[-1]
    mdi = master_down_interval(2, 150, 1.0)
    assert min(times) >= mdi - 1.0 - 1e-9 and max(times) <= mdi + 1e-9
    assert max(times) - min(times) > 0.9  # the advert phase is random


def test_vrrp_priority0_advert_fails_over_after_skew() -> None:
    rig = VrrpRig(trial(1), [150, 150])
    rig.t.env.run(until=0.2)
    rig.g.kill(rig.g.initial_master, "TERM")
    rig.t.env.run(until=10)
    assert rig.takeover() - 0.2 == pytest.approx(skew_time(2, 150, 1.0))
    # the old master released its VIP at SIGTERM
    assert (0.2, rig.g.initial_master.name, False) in rig.vip


def test_vrrp_highest_priority_backup_wins() -> None:
    rig = VrrpRig(trial(2), [100, 200, 254])
    assert rig.g.initial_master.name == "n2"
    rig.g.initial_master.powered = False
    rig.t.changed()
    rig.t.env.run(until=20)
    assert [n for _t, n, up in rig.vip if up] == ["n1"]


def test_vrrp_preemption_when_higher_priority_returns_and_nopreempt() -> None:
    for nopreempt, expect in ((False, ["n0", "n1"]), (True, ["n0"])):
        rig = VrrpRig(trial(3, **{"vrrp.nopreempt": nopreempt}), [100, 200])
        hi = rig.nodes[1]
        hi.powered = False
        rig.t.changed()
        rig.t.env.run(until=10)
        hi.powered = True
        rig.t.changed()
        rig.g.start(hi)
        t0 = rig.t.now
        rig.t.env.run(until=40)
        ups = [n for _t, n, up in rig.vip if up]
        assert ups == expect
        if not nopreempt:
            t_pre = next(t for t, n, up in rig.vip if up and n == "n1")
            assert t_pre - t0 == pytest.approx(master_down_interval(2, 200, 1.0))
            assert rig.g.masters() == [hi]


def test_vrrp_partition_split_brain_then_lower_ip_yields() -> None:
    rig = VrrpRig(trial(4), [150, 150])
    m = rig.g.initial_master
    m.net_up = False
    rig.t.changed()
    rig.t.env.run(until=10)
    assert len(rig.g.masters()) == 2  # both MASTER: the cut-off one cannot hear adverts
    m.net_up = True
    rig.t.changed()
    rig.t.env.run(until=20)
    assert rig.g.masters() == [max(rig.nodes, key=lambda n: n.index)]


@pytest.mark.parametrize("weight", [0, 60])
def test_vrrp_track_script(weight: int) -> None:
    """weight 0: FAULT + prio-0 -> skew; weight w: preempting backup takes over after MDI."""
    rig = VrrpRig(trial(5, **{"vrrp.track_script": True, "vrrp.script_weight": weight}), [150, 120])
    m = rig.g.initial_master
    rig.healthy[m.name] = False
    rig.t.changed()
    rig.t.env.run(until=20)
    t = rig.takeover()
    if weight == 0:
        assert t <= 1.0 + skew_time(2, 120, 1.0) + 1e-9
        assert t >= skew_time(2, 120, 1.0)
    else:
        assert t <= 1.0 + master_down_interval(2, 120, 1.0) + 1e-9
        assert t >= master_down_interval(2, 120, 1.0) - 1.0


def test_vrrp_garp_bursts_then_refresh_on_their_own_grid() -> None:
    """keepalived after a takeover at T: garp_master_repeat frames at T and T + delay, then
    garp_master_refresh_repeat frames at T + delay + k * refresh while MASTER (vrrp.c
    vrrp_state_become_master, vrrp_scheduler.c vrrp_gratuitous_arp_refresh_thread)."""
    params = {
        "vrrp.garp_master_delay": "5s",
        "vrrp.garp_master_refresh": "60s",
        "vrrp.garp_master_refresh_repeat": 2,
    }
    rig = VrrpRig(trial(6, horizon=300.0, **params), [150, 100])
    rig.g.initial_master.powered = False
    rig.t.changed()
    rig.t.env.run(until=300)
    t0 = rig.takeover()
    offsets = [t - t0 for t, _n in rig.garps]
    assert offsets == pytest.approx([0, 5, 65, 125, 185, 245][: len(offsets)])
    assert len(offsets) == sum(1 for o in (0, 5, 65, 125, 185, 245) if t0 + o <= 300)
    assert rig.frames[:2] == [5, 5] and set(rig.frames[2:]) == {2}


def test_vrrp_refresh_stops_when_the_master_steps_down() -> None:
    """The refresh thread belongs to one MASTER period: a preempted master sends no more."""
    params = {"vrrp.garp_master_refresh": "10s", "vrrp.garp_master_delay": "0s"}
    rig = VrrpRig(trial(7, horizon=200.0, **params), [100, 200])
    hi = rig.nodes[1]
    hi.powered = False
    rig.t.changed()
    rig.t.env.run(until=30)
    hi.powered = True
    rig.t.changed()
    rig.g.start(hi)
    rig.t.env.run(until=200)
    preempt = next(t for t, n, up in rig.vip if up and n == hi.name)
    low = [t for t, n in rig.garps if n == "n0"]
    assert low and max(low) < preempt
    # the returning master refreshes from its own transition on (at 0 it also answers the
    # old master's lower-priority advert with a burst)
    high = sorted({round(t - preempt, 9) for t, n in rig.garps if n == hi.name})
    assert high[:3] == pytest.approx([0, 10, 20])


@pytest.mark.parametrize("delay", ["0s", "500ms"])
def test_vrrp_track_process_reacts_to_the_exit_not_on_a_grid(delay: str) -> None:
    """vrrp_track_process (weight 0): FAULT process_delay after the exit, then the backup
    takes over after its Skew_Time: exactly delay + skew, whatever the script grid."""
    params = {"vrrp.track_process": True, "vrrp.process_delay": delay}
    for seed in range(20):
        rig = VrrpRig(trial(seed, **params), [150, 100])
        rig.t.env.run(until=0.3)
        rig.healthy[rig.g.initial_master.name] = False
        rig.t.changed()
        rig.t.env.run(until=20)
        wait = 0.5 if delay == "500ms" else 0.0
        assert rig.takeover() - 0.3 == pytest.approx(wait + skew_time(2, 100, 1.0))


def test_vrrp_tracks_nothing_by_default() -> None:
    """Without vrrp_script or vrrp_track_process a dead service moves no VIP."""
    rig = VrrpRig(trial(8), [150, 100])
    rig.healthy[rig.g.initial_master.name] = False
    rig.t.changed()
    rig.t.env.run(until=60)
    assert [n for _t, n, up in rig.vip if up] == []
    assert rig.g.masters() == [rig.g.initial_master]


# ============================================================================ BFD, BGP
def test_bfd_detection_formula() -> None:
    assert bfd_detection_time(5, 0.01, 0.1) == pytest.approx(0.5)  # BIRD defaults
    assert bfd_detection_time(3, 0.3, 0.3) == pytest.approx(0.9)  # FRR / MetalLB
    assert bfd_detection_time(3, 1.0, 0.3) == pytest.approx(3.0)  # local rx dominates


def test_hold_negotiation() -> None:
    assert negotiated_hold(240, 90) == 90
    assert negotiated_hold(9, 180) == 9
    assert negotiated_hold(0, 180) == 0


@given(st.floats(0, 1), st.floats(0, 1), st.floats(1, 100), st.floats(0, 0.5))
def test_keepalive_age_bounded(u1: float, u2: float, k: float, jit: float) -> None:
    assert 0 <= keepalive_age(u1, u2, k, jit) <= k


def fabric_detection(seed: int, **params: object) -> tuple[float, dict[str, float]]:
    t = trial(seed, **params)
    ns = nodes(3)
    fib_log: list[float] = []
    fab = BgpFabric(t, ns, lambda n: n.powered, lambda old, new: fib_log.append(t.now))
    ns[0].powered = False
    t.changed()
    t.env.run(until=599)
    assert [n.name for n in fab.fib] == ["n1", "n2"]
    return fib_log[0], t.milestones


def test_hold_timer_detection_within_hold_minus_keepalive() -> None:
    """RFC speaker (no hold jitter): session down in [hold - keepalive, hold] (9 s / 3 s)."""
    rfc = {"bgp.hold_time": "9s", "bgp.keepalive_time": "3s", "bgp.hold_timer_jitter": 0}
    downs = [fabric_detection(s, **rfc)[1]["bgp.session_down"] for s in range(300)]
    assert min(downs) >= 6.0 - 1e-9 and max(downs) <= 9.0
    assert max(downs) - min(downs) > 2.0


def test_bird_jitters_its_hold_timer() -> None:
    """BIRD 2 re-arms the hold timer 0-25 % short (bgp_start_timer): [0.75 hold - ka, hold]."""
    bird = {"bgp.hold_time": "9s", "bgp.keepalive_time": "3s", "bgp.hold_timer_jitter": 0.25}
    downs = [fabric_detection(s, **bird)[1]["bgp.session_down"] for s in range(300)]
    assert min(downs) >= 0.75 * 9 - 3 - 1e-9 and max(downs) <= 9.0
    assert min(downs) < 6.0  # below the RFC window: what the lab measured (docs/lab.md)


def test_bfd_detection_in_simulation() -> None:
    downs = [fabric_detection(s, **{"bfd.enabled": True})[1]["bfd.down"] for s in range(200)]
    assert min(downs) >= 0.5 - 0.1 - 1e-9 and max(downs) <= 0.5


def test_graceful_restart_keeps_stale_routes_only_with_llgr_on_hold_expiry() -> None:
    """BIRD: a hold expiry ends the session with a NOTIFICATION (routes go) unless long-lived
    GR was negotiated; then the stale routes stay for the Restart Time."""
    base = {
        "bgp.hold_time": "9s",
        "bgp.graceful_restart": True,
        "router.fib_update_time": "0s",
        "bgp.hold_expiry_flush_delay": "0s",
    }
    fib_at, ms = fabric_detection(7, **base)
    assert fib_at == pytest.approx(ms["bgp.session_down"])
    fib_at, ms = fabric_detection(7, **base, **{"bgp.long_lived_graceful_restart": True})
    assert fib_at == pytest.approx(ms["bgp.session_down"] + 120.0)


def test_bird_flushes_some_time_after_a_hold_expiry() -> None:
    lag = {
        "bgp.hold_time": "9s",
        "router.fib_update_time": "0s",
        "bgp.hold_expiry_flush_delay": "1s",
    }
    fib_at, ms = fabric_detection(3, **lag)
    assert fib_at == pytest.approx(ms["bgp.session_down"] + 1.0)


# ============================================================================ ECMP
def _moved_over_flows(mode: str, before: list[str], after: list[str], n: int = 50_000) -> float:
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, SPACE, n)
    b0 = resilient_buckets(before)
    b1 = resilient_buckets(after, b0)
    moved = 0
    for h in hashes:
        h = int(h)
        if route(mode, before, h, buckets=b0) != route(mode, after, h, buckets=b1):
            moved += 1
    return moved / n


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_ecmp_moved_fractions_over_many_flows(n: int) -> None:
    hops = [f"h{i}" for i in range(n)]
    for gone in range(n):
        after = [h for h in hops if h != hops[gone]]
        mod = _moved_over_flows("modulo", hops, after)
        assert mod == pytest.approx((n - 1) / n, abs=0.01)
        assert moved_share("modulo", hops, after) == pytest.approx((n - 1) / n)
        ht = _moved_over_flows("hash-threshold", hops, after)
        assert ht == pytest.approx(moved_share("hash-threshold", hops, after), abs=0.01)
        assert 0.25 - 0.01 <= ht <= 0.5 + 0.01
        res = _moved_over_flows("resilient", hops, after)
        assert res == pytest.approx(1 / n, abs=0.01)
    # hash-threshold: an edge removal moves exactly 1/2
    assert moved_share("hash-threshold", hops, hops[1:]) == pytest.approx(0.5)


def test_ecmp_moved_from_adds_up() -> None:
    hops = ["a", "b", "c", "d"]
    for mode in ("modulo", "hash-threshold", "resilient"):
        per = moved_from(mode, hops, ["a", "c", "d"])
        assert per["b"] == pytest.approx(1.0)
        assert sum(per.values()) / 4 == pytest.approx(moved_share(mode, hops, ["a", "c", "d"]))


# ============================================================================ memberlist
def test_memberlist_suspicion_bounds() -> None:
    assert suspicion_bounds(3, 4, 6, 1.0) == (4.0, 24.0)
    assert suspicion_bounds(10, 4, 6, 1.0) == (4.0, 24.0)
    lo, hi = suspicion_bounds(100, 4, 6, 1.0)
    assert lo == pytest.approx(8.0) and hi == pytest.approx(48.0)
    assert suspicion_timeout(0, 2, 4, 24) == 24
    assert suspicion_timeout(2, 2, 4, 24) == pytest.approx(4)
    assert suspicion_timeout(5, 0, 4, 24) == 4


@pytest.mark.parametrize("n", [3, 5, 10])
def test_memberlist_detection_bounds(n: int) -> None:
    rng = np.random.default_rng(5)
    lo, hi = suspicion_bounds(n, 4, 6, 1.0)
    ds = [detection_time(rng, n, probe=1.0, mult=4, max_mult=6, gossip=0.2) for _ in range(500)]
    assert min(ds) >= 1.0 + lo - 1e-9
    assert max(ds) <= (n - 1) * 1.0 + 1.0 + hi + 0.2
    if n <= 3:  # k = 0 confirmations wanted: always the minimum
        assert max(ds) <= (n - 1) + 1.0 + lo + 0.2


# ============================================================================ kube-vip
@pytest.mark.parametrize(("lease", "retry"), [(15.0, 2.0), (5.0, 1.0)])
def test_kube_vip_takeover_within_lease_and_jitter(lease: float, retry: float) -> None:
    rng = np.random.default_rng(9)
    for _ in range(300):
        t, observed = silent_takeover(rng, 3, lease=lease, retry=retry, jitter=1.2)
        assert lease - 1e-9 <= t - observed <= lease + 2.2 * retry + 1e-9
        # the last renewal was at most one retry period before the fault
        assert -retry <= observed <= 2.2 * retry + 1e-9
    gs = [graceful_takeover(rng, 1, retry=retry, jitter=1.2) for _ in range(300)]
    assert min(gs) >= 0 and max(gs) <= 2.2 * retry


# ============================================================================ ARP
def test_arp_neighbour_without_garp_reresolves_in_nud_window() -> None:
    lo, hi = linux_reresolve_bounds(30.0, 5.0, 3, 1.0)
    assert (lo, hi) == (23.0, 53.0)
    for seed in range(100):
        t = trial(seed)
        a, b = nodes(2)
        holder = {"n": a}
        nb = VipNeighbour(
            t,
            lambda h=holder: h["n"],
            lambda n, h=holder: n.reachable and n is h["n"],
        )
        a.powered = False
        holder["n"] = b
        t.changed()
        assert nb.mac is a
        t.env.run(until=100)
        assert nb.mac is b
        assert lo <= t.milestones["arp.updated"] <= hi


def test_arp_garp_updates_at_once_and_router_waits_for_timeout() -> None:
    t = trial(1)
    a, b = nodes(2)
    cur = {"n": a}
    nb = VipNeighbour(t, lambda: cur["n"], lambda n: n is cur["n"])
    t.env.run(until=1.0)
    cur["n"] = b
    nb.garp(b)
    assert nb.mac is b and t.milestones["arp.updated"] == 1.0
    t = trial(2, **{"arp.neighbor": "router"}, horizon=20000.0)
    a, b = nodes(2)
    cur2 = {"n": a}
    nb = VipNeighbour(t, lambda: cur2["n"], lambda n: n is cur2["n"])
    cur2["n"] = b
    t.changed()
    t.env.run(until=19000)
    assert 0 <= t.milestones["arp.updated"] <= 14400.0


# ============================================================================ nginx
def test_proxy_success_cases() -> None:
    kw = {"tries": 3, "connect_timeout": 5.0, "client_timeout": 10.0}
    assert proxy_success(3, 0, 0, **kw) == 1.0
    assert proxy_success(0, 2, 1, **kw) == 0.0
    # a refused upstream is retried at no cost
    assert proxy_success(2, 1, 0, **kw) == 1.0
    # one black hole costs 5 s < 10 s: still a success; two cost 10 s: the client gave up
    assert proxy_success(2, 0, 1, **kw) == 1.0
    assert proxy_success(1, 0, 2, **kw) == pytest.approx(1 / 3 + 2 / 3 * 1 / 2)
    # the client's timeout decides: 4 s client, one hole first -> failure
    assert proxy_success(2, 0, 1, tries=3, connect_timeout=5.0, client_timeout=4.0) == (
        pytest.approx(2 / 3)
    )
    # non-idempotent requests are not retried
    assert proxy_success(2, 1, 0, **kw, non_idempotent=1.0) == pytest.approx(2 / 3)
    # tries=1 and unlimited tries (0)
    assert proxy_success(1, 3, 0, tries=1, connect_timeout=5, client_timeout=10) == 0.25
    assert proxy_success(1, 5, 0, tries=0, connect_timeout=5, client_timeout=10) == pytest.approx(1)


@settings(max_examples=200)
@given(
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 5),
    st.floats(0.1, 20),
    st.floats(0.1, 30),
    st.floats(0, 1),
)
def test_proxy_success_is_a_probability_and_monotone(
    live: int, refused: int, holes: int, tries: int, ct: float, client: float, ni: float
) -> None:
    kw = {"tries": tries, "connect_timeout": ct, "client_timeout": client, "non_idempotent": ni}
    s = proxy_success(live, refused, holes, **kw)
    assert 0.0 <= s <= 1.0 + 1e-12
    # one more live upstream in place of a hole never hurts
    if holes:
        assert proxy_success(live + 1, refused, holes - 1, **kw) >= s - 1e-12
    # non-idempotent requests never do better than idempotent ones
    kw0 = dict(kw, non_idempotent=0.0)
    assert proxy_success(live, refused, holes, **kw0) >= s - 1e-12
    if live and not holes and (tries == 0 or tries >= refused + 1):
        assert math.isclose(proxy_success(live, refused, holes, **kw0), 1.0)


# ============================================================================ invariants
@given(st.integers(2, 16), st.data())
def test_hash_threshold_moves_between_a_quarter_and_a_half(n: int, data: st.DataObject) -> None:
    hops = [f"h{i}" for i in range(n)]
    gone = data.draw(st.integers(0, n - 1))
    after = hops[:gone] + hops[gone + 1 :]
    share = moved_share("hash-threshold", hops, after)
    assert 0.25 - 1e-9 <= share <= 0.5 + 1e-9
    assert moved_share("resilient", hops, after) == pytest.approx(1 / n)
    assert moved_share("modulo", hops, after) == pytest.approx((n - 1) / n)
    # the removed hop's own flows always move
    assert moved_from("hash-threshold", hops, after)[hops[gone]] == pytest.approx(1.0)


@given(st.integers(1, 254), st.integers(1, 254), st.sampled_from([2, 3]), st.floats(0.01, 10))
def test_higher_priority_never_waits_longer(p1: int, p2: int, version: int, adv: float) -> None:
    lo, hi = sorted((p1, p2))
    assert master_down_interval(version, hi, adv) <= master_down_interval(version, lo, adv)
    assert 0 < skew_time(version, hi, adv) < (adv if version == 3 else 1.0)
