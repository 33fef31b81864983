"""The network designs end to end, and the whole design x fault matrix."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import chaoslab
from chaoslab.designs import DESIGNS, ImpossibleTarget
from chaoslab.faults import FAULTS, Fault, ImpossibleFault
from chaoslab.mechanisms.vrrp import master_down_interval, skew_time
from chaoslab.params import ParamSet
from chaoslab.runner import Cell, run_trial

N = 200
NET = [
    "ingress-hostnet",
    "ingress-vip-pod",
    "ingress-vip-bgp",
    "ingress-vip-vrrp",
    "ingress-tiered",
    "metallb-l2",
    "metallb-bgp",
    "kube-vip-arp",
    "cloud-lb",
    "cloud-lb-ip",
]


#: an nginx drops a dead pod at most one rate-limited sync (1 / 0.3 s) and one worker
#: tick (1 s) after the first nginx does (the ingress.upstream_removed milestone)
LAG = 1 / 0.3 + 1.0
#: ingress-nginx's Lua round robin, 3 upstreams, one on a dead node, tries 3, connect
#: timeout 5 s, client 10 s: the retry after the 5 s is any of the 3 again, so a request
#: fails when it draws the dead one twice (1/9) and is 5 s late when it draws it once (2/9)
CYCLE_LOST, CYCLE_LATE = 1 / 9, 2 / 9


#: the client's SYN retransmissions (mechanisms/tcp.py) off: a request sent into a
#: failover fails instead of succeeding late at a retransmission after it, so the
#: failover's own timers are the outage (the tests that pin it tell those stories)
NO_SYN = {"client.tcp_syn_retries": 0}


def within_lag(value: pd.Series, base: pd.Series | float, share: float, removed: pd.Series) -> bool:
    """value - base is ``share`` of the time until the nginx in question dropped the dead
    pod: between the first nginx's drop (``removed``) and LAG later (0.01 s: the requests
    in flight on a moved path)."""
    part = value - base
    return bool(((part >= share * removed - 0.01) & (part <= share * (removed + LAG))).all())


def sim(design: str, fault: object, profile: list[str] | None = None, **kw: object):
    kw.setdefault("trials", N)
    kw.setdefault("seed", 5)
    return chaoslab.simulate(design, fault, profile=profile or ["k8s-1.32"], **kw)  # type: ignore[arg-type]


def test_all_network_designs_registered() -> None:
    for key in NET:
        assert key in DESIGNS


# ----------------------------------------------------------------- the article's claims
@pytest.mark.parametrize(("profile", "lo", "hi"), [("k8s-1.32", 330, 380), ("k8s-1.10", 280, 330)])
def test_vip_that_follows_the_pod_costs_minutes(profile: str, lo: float, hi: float) -> None:
    """Node death: the VIP returns only with the evicted and rescheduled ingress pod."""
    df = sim("ingress-vip-pod", {"kind": "node-crash", "target": "vip-holder"}, [profile])
    assert df["recovery_s"].between(lo, hi).all()
    assert (df["downtime_s"] == df["recovery_s"]).all()  # nobody gets through meanwhile
    assert (df["at_vip_added"] >= df["at_pod_evicted"]).all()


def test_vrrp_costs_a_few_seconds() -> None:
    """Nobody gets through until the backup's Master_Down_Interval; then the new master's
    nginx still lists the crashed node's app pod, and its Lua round robin's retries draw
    it again: 1/9 of requests fail, 2/9 are 5 s late until that nginx drops it."""
    df = sim(
        "ingress-vip-vrrp",
        {"kind": "node-crash", "target": "vip-holder"},
        ["k8s-1.10", "keepalived-osh"],
        params=NO_SYN,
    )
    mdi = master_down_interval(2, 150, 1.0)
    assert df["downtime_s"].between(mdi - 1.0, mdi + 1e-6).all()
    assert (df["at_vrrp_master_changed"] == df["at_arp_updated"]).all()  # GARP at once
    assert np.allclose(df["downtime_s"], df["at_arp_updated"])
    assert df["connections_reset"].eq(1.0).all()  # every connection lands on a new node
    # the rest is the nginx's: recovery when it drops the pod, lost and late its shares
    moved, dropped = df["at_arp_updated"], df["recovery_s"] - df["at_arp_updated"]
    assert within_lag(df["recovery_s"], 0.0, 1.0, df["at_ingress_upstream_removed"])
    assert np.allclose(df["lost_s"], moved + CYCLE_LOST * dropped, rtol=1e-3)
    assert np.allclose(df["slow_s"], CYCLE_LATE * dropped, rtol=1e-3)


def test_vrrp_graceful_delete_costs_the_skew_time() -> None:
    df = sim(
        "ingress-vip-vrrp",
        {"kind": "pod-delete", "target": "ingress-pod"},
        ["k8s-1.32", "keepalived-osh"],
        params={"kube_controller_manager.controller_reaction": "0s"},
    )
    assert np.allclose(df["recovery_s"], skew_time(2, 150, 1.0))
    assert np.allclose(df["at_vrrp_prio0_sent"], 0.0)


def test_bgp_hold_time_on_one_in_n_flows_and_calico_graceful_restart() -> None:
    df = sim(
        "ingress-vip-bgp",
        {"kind": "node-crash", "target": "vip-holder"},
        ["k8s-1.32"],
        params=NO_SYN,
    )
    # BIRD 2 both ends: hold 240 s (re-armed 0-25 % short), keepalive 80 s; 1/3 of new
    # flows fail meanwhile; on the other 2/3 the live nodes' nginx lose 1/9 (their retries
    # draw the crashed node's app pod twice) until they drop it, long before the withdrawal
    assert df["at_bgp_session_down"].between(0.75 * 240 - 80, 240).all()
    assert (df["downtime_s"] == 0).all()
    removed = df["at_ingress_upstream_removed"]
    assert within_lag(df["lost_s"], df["recovery_s"] / 3, 2 / 3 * CYCLE_LOST, removed)
    cal = sim(
        "ingress-vip-bgp",
        {"kind": "node-crash", "target": "vip-holder"},
        ["k8s-1.32", "calico-bird"],
    )
    # graceful restart does not cover a hold expiry (no LLGR in Calico's config): the
    # dead next hop goes after BIRD's flush lag, not after the Restart Time
    gap = cal["at_bgp_withdrawn"] - cal["at_bgp_session_down"]
    assert gap.between(0, 2.0).all()
    assert cal["recovery_s"].between(0.75 * 240 - 80, 243).all()
    llgr = sim(
        "ingress-vip-bgp",
        {"kind": "node-crash", "target": "vip-holder"},
        ["k8s-1.32", "calico-bird"],
        params={"bgp.long_lived_graceful_restart": True},
    )
    gap = llgr["at_bgp_withdrawn"] - llgr["at_bgp_session_down"]
    assert gap.between(120, 120.2).all()


@pytest.mark.parametrize(("profile", "detect"), [("bird2", 0.5), ("frr-datacenter", 0.9)])
def test_bgp_with_bfd_about_a_second(profile: str, detect: float) -> None:
    df = sim(
        "ingress-vip-bgp",
        {"kind": "node-crash", "target": "vip-holder"},
        ["k8s-1.32", profile],
        params={"bfd.enabled": True, **NO_SYN},
    )
    assert df["at_bfd_down"].le(detect + 1e-9).all()
    moved = df["at_ecmp_rehashed"]
    assert moved.between(detect - 0.4, detect + 0.2).all()
    # until the move 1/3 of flows fail and the live 2/3 lose 1/9 (nginx's retries draw the
    # dead node's app pod twice); after it all of them 1/9 until the nginx drop the pod:
    # moved / 3 + 2/27 moved + (dropped - moved) / 9
    removed = df["at_ingress_upstream_removed"]
    assert within_lag(df["lost_s"], 8 / 27 * moved, CYCLE_LOST, removed)
    assert within_lag(df["recovery_s"], 0.0, 1.0, removed)


def test_ecmp_mode_decides_the_resets() -> None:
    shares = {}
    for mode in ("modulo", "hash-threshold", "resilient"):
        df = sim(
            "ingress-vip-bgp",
            {"kind": "node-crash", "target": "vip-holder"},
            params={"bfd.enabled": True, "ecmp.mode": mode},
            trials=50,
        )
        shares[mode] = df["connections_reset"].mean()
        # behind nginx the unmoved connections do not hang on the dead node's app pod: each
        # request is balanced (and retried) on its own (lab, docs/lab.md)
        assert df["connections_hung"].mean() == 0
    # 3 next hops: modulo resets 2/3 of the flows, hash-threshold 1/2 (edge hop), resilient
    # only the dead hop's 1/3
    assert shares["modulo"] == pytest.approx(2 / 3, abs=0.01)
    assert shares["hash-threshold"] == pytest.approx(1 / 2, abs=0.01)
    assert shares["resilient"] == pytest.approx(1 / 3, abs=0.01)


def test_bfd_turns_a_blip_into_a_false_failover() -> None:
    fault = {"kind": "transient-blip", "target": "vip-holder", "duration": "2s"}
    quiet = sim("ingress-vip-bgp", fault, trials=50)
    assert quiet["at_bgp_session_down"].isna().all()
    assert quiet["connections_reset"].eq(0).all()
    bfd = sim("ingress-vip-bgp", fault, params={"bfd.enabled": True}, trials=50)
    assert bfd["at_bfd_down"].notna().all()
    assert bfd["connections_reset"].gt(0).all()
    vrrp = sim("ingress-vip-vrrp", fault, trials=50)
    assert vrrp["at_vrrp_master_changed"].isna().all()  # 2 s < Master_Down_Interval


def test_no_garp_leaves_clients_on_the_old_mac() -> None:
    df = sim(
        "ingress-vip-pod",
        {"kind": "pod-delete", "target": "ingress-pod"},
        params={"vip.garp": False},
    )
    # the new pod adds the VIP within seconds, the neighbour re-resolves after NUD
    assert df["at_vip_added"].median() < 5 and df["at_vip_added"].lt(23).all()
    assert df["at_arp_updated"].between(15 + 8, 45 + 8 + 1).all()
    router = sim(
        "ingress-vip-pod",
        {"kind": "pod-delete", "target": "ingress-pod"},
        params={"vip.garp": False, "arp.neighbor": "router"},
        trials=50,
    )
    assert (~router["recovered"]).mean() > 0.5  # a 4 h router ARP timeout outlives 30 min


def test_memberlist_and_kube_vip_detection() -> None:
    ml = sim("metallb-l2", {"kind": "node-crash", "target": "vip-holder"})
    # 5 speakers: probe cycle + suspicion (4 s .. 24 s) + GARP, no one gets through meanwhile
    assert ml["at_memberlist_dead"].between(1 + 4, 4 + 1 + 24 + 0.2).all()
    assert (ml["at_arp_updated"] - ml["at_memberlist_dead"]).abs().max() < 1e-9
    for profile, lease, retry in (("kube-vip-1.1", 15, 2), ("kube-vip-1.0", 5, 1)):
        kv = sim(
            "kube-vip-arp", {"kind": "node-crash", "target": "vip-holder"}, ["k8s-1.32", profile]
        )
        assert (
            kv["at_kube_vip_leader_changed"].between(lease - retry, lease + 2.2 * retry * 2).all()
        )
        assert kv["downtime_s"].le(lease + 2.2 * retry * 2).all()


def test_hostnet_entry_node_death_is_an_outage_until_it_returns() -> None:
    df = sim("ingress-hostnet", {"kind": "node-crash", "target": "ingress-node"}, trials=20)
    assert (~df["recovered"]).all()
    back = sim(
        "ingress-hostnet",
        {"kind": "node-crash", "target": "ingress-node", "repair": "2m"},
        trials=20,
    )
    assert back["recovered"].all() and back["recovery_s"].gt(120).all()


def test_ingress_retries_hide_a_dead_backend_unless_non_idempotent() -> None:
    """A 5 s connect timeout + retry fits in a 10 s client: ingress-nginx's Lua round
    robin retries any pod again (the dead one 1/3 of the time), so 1/9 of requests fail and
    2/9 are late until nginx drops it; nginx's own round robin (untried) loses none."""
    fault = {"kind": "node-crash", "target": "app-pod-node"}
    get = sim("ingress-vip-vrrp", fault, trials=50)
    removed = get["at_ingress_upstream_removed"]
    assert within_lag(get["lost_s"], 0.0, CYCLE_LOST, removed)
    assert np.allclose(get["slow_s"], CYCLE_LATE / CYCLE_LOST * get["lost_s"])
    untried = sim(
        "ingress-vip-vrrp", fault, params={"nginx.round_robin_retry": "untried"}, trials=50
    )
    assert (untried["lost_s"] == 0).all()
    slow = sim("ingress-vip-vrrp", fault, params={"client.timeout": "3s"}, trials=50)
    # 1/3 of requests time out until nginx drops the upstream (~50 s grace + sync)
    assert slow["lost_s"].between(50 / 3 - 5, 58 / 3 + 1).all()
    post = sim("ingress-vip-vrrp", fault, params={"client.non_idempotent_share": 1.0}, trials=50)
    assert np.allclose(post["lost_s"], slow["lost_s"].median(), rtol=0.3)


def test_ingress_tiered_and_cloud_lb_end_to_end() -> None:
    t = sim(
        "ingress-tiered", {"kind": "node-crash", "target": "vip-holder"}, trials=50, params=NO_SYN
    )
    assert t["downtime_s"].between(2.6, 3.61).all()  # the VIP's move (VRRP)
    # then the namespace-level nginx retry onto the crashed node's app pod (Lua cycle):
    # 1/9 lost and 2/9 late from the move until each of them drops it
    removed, moved = t["at_ingress_upstream_removed"], t["downtime_s"]
    assert within_lag(t["recovery_s"], 0.0, 1.0, removed)
    assert within_lag(t["lost_s"], moved - CYCLE_LOST * moved, CYCLE_LOST, removed)
    assert within_lag(t["slow_s"], -CYCLE_LATE * moved, CYCLE_LATE, removed)
    c = sim("cloud-lb", {"kind": "node-crash", "target": "app-pod-node"}, ["k8s-1.32", "aws-nlb"])
    assert c["recovered"].all()
    assert c["at_lb_marked_down"].between(30, 70).all()


def test_long_lived_connections_fail_while_hung() -> None:
    fault = {"kind": "node-crash", "target": "vip-holder"}
    # nginx's own round robin (untried): new requests lose only the dead hop's 1/3, not the
    # Lua cycle's retries onto the dead node's app pod, which have nothing to do with
    # established connections
    p = {"bfd.enabled": True, "nginx.round_robin_retry": "untried"}
    new = sim("ingress-vip-bgp", fault, params=p, trials=50)
    ll = sim("ingress-vip-bgp", fault, params={**p, "client.long_lived_share": 1.0}, trials=50)
    # established connections on the dead node fail until the re-hash resets them
    assert (ll["lost_s"] >= new["lost_s"] - 1e-9).all()


# ----------------------------------------------------------------- the matrix
TARGETS = [
    "app-pod",
    "app-pod-node",
    "idle-node",
    "entry-node",
    "vip-holder",
    "ingress-node",
    "ingress-pod",
    "router-link",
]


def test_every_design_fault_pair_runs_or_says_why() -> None:
    """Walk every design x fault kind x target: it runs one trial or is refused with a reason."""
    ps = ParamSet.resolve(["k8s-1.32"])
    ran = refused = 0
    for design in DESIGNS:
        for kind in FAULTS:
            for target in TARGETS:
                cell = Cell(design, Fault(kind, target), ps, horizon=900.0)
                try:
                    cell.check()
                except (ImpossibleFault, ImpossibleTarget) as e:
                    msg = str(e)
                    assert len(msg) > 20, (design, kind, target, msg)
                    refused += 1
                    continue
                row = run_trial(cell, 0, seed=1)
                assert row["recovery_s"] >= 0 or math.isinf(row["recovery_s"])
                ran += 1
    assert ran > 150 and refused > 50


def test_keepalived_sigkill_leaves_the_vip_until_keepalived_restarts() -> None:
    """SIGKILL: the old master keeps answering for the VIP, so nothing breaks while a backup
    takes over, except the requests in flight when the backup's GARP moves the clients'
    ARP entry; a keepalived restarted before that removes the VIP and opens a gap."""
    kill = {"kind": "daemon-kill", "target": "vip-holder", "daemon": "keepalived"}
    dead = sim(
        "ingress-vip-vrrp",
        {**kill, "signal": "KILL"},
        ["k8s-1.32", "keepalived-osh"],
        params={"client.request_duration": "2ms", **NO_SYN},
    )
    assert dead["at_vrrp_master_changed"].between(2.4, 3.42).all()
    assert np.allclose(dead["lost_s"], 0.002) and np.allclose(dead["downtime_s"], 0.002)
    assert np.allclose(dead["recovery_s"], dead["at_arp_updated"] + 0.002)
    back = sim(
        "ingress-vip-vrrp",
        {**kill, "signal": "KILL", "restart": "1s"},
        ["k8s-1.32", "keepalived-osh"],
        params=NO_SYN,
    )
    # VIP gone at 1 s, the backup's GARP at 2.4-3.4 s
    assert back["downtime_s"].between(1.4 - 1e-6, 2.42).all()
    term = sim(
        "ingress-vip-vrrp",
        {**kill, "signal": "TERM"},
        ["k8s-1.32", "keepalived-osh"],
        params=NO_SYN,
    )
    assert np.allclose(term["recovery_s"], skew_time(2, 150, 1.0))


def test_seed_designs_file_shows_the_articles_claims() -> None:
    """The bundled experiment's network rows: ~6 min for the VIP that follows the pod,
    a few seconds for VRRP, BGP's hold time (+ Calico's graceful restart) on 1/3 of the
    flows, with ECMP resets, and behind it the nginx's retries onto the crashed node's app
    pod (`test_bgp_with_bfd_about_a_second`); the two timer experiments validate too."""
    from pathlib import Path

    from chaoslab.experiment import load_experiment
    from chaoslab.runner import Chunk, run_chunk

    root = Path(__file__).resolve().parents[1] / "experiments"
    for extra in ("network-timers.yaml", "network-arp.yaml"):
        load_experiment(root / extra).validate()
    exp = load_experiment(root / "seed-designs.yaml")
    exp.validate()
    cells = {
        (c.name, c.fault.kind, c.fault.label, str(c.sweep.get("profile"))): c for c in exp.cells()
    }

    def run(design: str, target: str, profile: str):  # type: ignore[no-untyped-def]
        cell = cells[(design, "node-crash", target, profile)]
        cell = replace(cell, params=cell.params.with_overrides(NO_SYN, source="test"))
        return run_chunk(Chunk(cell, 7, 0, 100))

    for profile, lo in (("k8s-1.10", 280), ("k8s-1.32", 330)):
        pod = run("ingress-vip-pod", "vip-holder", profile)
        assert pod["downtime_s"].between(lo, lo + 50).all()
        vrrp = run("ingress-vip-vrrp", "vip-holder", profile)
        assert vrrp["downtime_s"].between(2.4, 3.42).all()
        bgp = run("ingress-vip-bgp", "vip-holder", profile)
        assert (bgp["downtime_s"] == 0).all()
        assert bgp["recovery_s"].between(0.75 * 240 - 80, 243).all()
        # the dead hop's 1/3, and the live nginx's Lua retries on the other 2/3
        removed = bgp["at_ingress_upstream_removed"]
        assert within_lag(bgp["lost_s"], bgp["recovery_s"] / 3, 2 / 3 * CYCLE_LOST, removed)
        assert bgp["connections_reset"].gt(0.3).all()
        bfd = run("ingress-vip-bgp+bfd", "vip-holder", profile)
        moved = bfd["at_ecmp_rehashed"]
        assert moved.between(0.1, 0.6).all()  # BIRD BFD 5 x 100 ms
        removed = bfd["at_ingress_upstream_removed"]
        assert within_lag(bfd["lost_s"], 8 / 27 * moved, CYCLE_LOST, removed)
        # a crash: the clients' entry for the dead MAC failed long before the VIP moved
        nogarp = run("ingress-vip-pod-no-garp", "vip-holder", profile)
        assert abs(nogarp["downtime_s"].mean() - pod["downtime_s"].mean()) < 10
        # a planned move (ingress pod deleted): without GARP, the neighbour cache decides
        moved = run_chunk(
            Chunk(cells[("ingress-vip-pod", "pod-delete", "ingress-pod", profile)], 7, 0, 100)
        )
        stale = run_chunk(
            Chunk(
                cells[("ingress-vip-pod-no-garp", "pod-delete", "ingress-pod", profile)], 7, 0, 100
            )
        )
        assert stale["downtime_s"].mean() > moved["downtime_s"].mean() + 15


# ------------------------------------------------ a path moving off a live node costs the
# requests in flight on it (client.request_duration of traffic, a(t) = 0 for that long)
def test_preemption_after_a_link_blip_fails_the_requests_in_flight() -> None:
    """The master (150) loses carrier for 0.5 s; the backup (100) takes over after its
    Master_Down_Interval; the master comes back in BACKUP, ignores the backup's lower
    adverts and preempts after its own Master_Down_Interval: link-up + 3 x advert +
    skew(150). That second move fails the requests in flight, so the outage ends there."""
    lab_cluster = {
        "masters": 0,
        "controllers": 2,
        "computes": 1,
        "replicas": 1,
        "spread": "compute",
    }
    df = sim(
        "ingress-vip-vrrp",
        {"kind": "link-down", "target": "vip-holder", "duration": "500ms"},
        params={
            "client.request_duration": "2ms",
            "vrrp.priority": [150, 100],
            "vrrp.nopreempt": False,
            **NO_SYN,
        },
        cluster=lab_cluster,
        horizon=10.0,
    )
    preempt = 0.5 + master_down_interval(2, 150, 1.0)
    assert np.allclose(df["recovery_s"], preempt + 0.002)
    # the first move came from a cut-off master: no requests in flight to lose there
    assert np.allclose(df["downtime_s"], df["at_vrrp_master_changed"] + 0.002)


@pytest.mark.parametrize(
    ("mode", "share"), [("hash-threshold", 1 / 2), ("resilient", 1 / 3), ("modulo", 2 / 3)]
)
def test_ecmp_rehash_resets_the_requests_in_flight_on_moved_paths(mode: str, share: float) -> None:
    """SIGKILL of one of three speakers' BGP daemon: the session closes, the route is
    withdrawn at once and the node keeps serving. All of its in-flight requests move, plus
    the survivors' moved share: hash-threshold 3 -> 2 moves 1/2 of one survivor's flows,
    resilient none, modulo-N 1/2 of each; nothing else is lost."""
    df = sim(
        "ingress-vip-bgp",
        {"kind": "daemon-kill", "target": "vip-holder", "daemon": "bgp", "signal": "KILL"},
        params={"client.request_duration": "2ms", "ecmp.mode": mode},
        horizon=60.0,
    )
    assert np.allclose(df["lost_s"], share * 0.002)
    assert (df["downtime_s"] == 0).all()
    assert np.allclose(df["recovery_s"], df["at_ecmp_rehashed"] + 0.002)
