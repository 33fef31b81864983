"""Network stories with Linux's default SYN retransmission (issue 11's leftover).

The other network stories pin ``client.tcp_syn_retries: 0`` so their closed forms are the
failover timers. Here the client keeps its defaults (resends at +1, 3, 7 s after the first
SYN inside a 10 s timeout; the kernel's last at +63 s), and each story compares the same
trials (same seed) with and without retransmission: a request whose SYN the failover black
holed succeeds at its first resend after the path heals (chaoslab/mechanisms/tcp.py), so a
window W costs ``max(0, W - 7)`` of downtime and ``min(W, 7)`` of late requests, shares of
what the healed path gives then."""

from __future__ import annotations

import numpy as np
import pytest

import chaoslab
from chaoslab.mechanisms.vrrp import skew_time

N = 20
NO_SYN = {"client.tcp_syn_retries": 0}
#: the last resend inside client.timeout's default 10 s (1, 3, 7 s)
LAST = 7.0
CRASH = {"kind": "node-crash", "target": "vip-holder"}
KEEPALIVED = {"kind": "daemon-kill", "target": "vip-holder", "daemon": "keepalived"}
#: keepalived SIGKILLed, restarted 1 s later: the restart removes the VIP from the old
#: master (at_vip_removed = 1 s) while the backup takes over only at its
#: Master_Down_Interval; the node and its nginx stay alive, so the gap is a pure blackout
KILL_RESTART = {**KEEPALIVED, "signal": "KILL", "restart": "1s"}
#: kube-proxy's random DNAT over 3 app pods, one of them on the crashed node, until the
#: endpoints go (~40-50 s): a request through a healed VIP succeeds with 2/3
LIVE_PODS = 2 / 3


def pair(design: str, fault: dict[str, object], profile: list[str], params=None):  # type: ignore[no-untyped-def]
    params = dict(params or {})
    run = [
        chaoslab.simulate(design, fault, profile=["k8s-1.32", *profile], trials=N, seed=5, params=p)
        for p in (params, {**params, **NO_SYN})
    ]
    return run[0], run[1]


def close(a, b) -> bool:  # type: ignore[no-untyped-def]
    return bool(np.allclose(a, b, rtol=0, atol=1e-6))


# ------------------------------------------------------------------------------ VRRP
def test_vrrp_gap_shorter_than_the_3_s_resend_is_only_latency() -> None:
    """VIP gone from 1 s until the backup's GARP G (2.4-3.4 s): every request sent in
    [1, G) gets through at its 1 s or 3 s resend; nobody fails, the whole gap is late."""
    on, off = pair("ingress-vip-vrrp", KILL_RESTART, ["keepalived-osh"])
    gap = off["at_arp_updated"] - 1.0
    assert gap.between(1.4 - 1e-6, 2.42).all()
    assert close(off["downtime_s"], gap) and close(off["lost_s"], gap)
    assert (on["downtime_s"] == 0).all() and (on["lost_s"] == 0).all()
    assert close(on["slow_s"], gap)
    assert close(on["at_arp_updated"], off["at_arp_updated"])  # the failover is the same


def test_vrrp_priority_0_advert_gap_is_the_skew_time_of_late_requests() -> None:
    """SIGTERM: the priority-0 advert hands over after the backup's skew time
    (256 - 150) / 256 s; every request sent meanwhile comes through at +1 s."""
    on, off = pair("ingress-vip-vrrp", {**KEEPALIVED, "signal": "TERM"}, ["keepalived-osh"])
    skew = skew_time(2, 150, 1.0)
    assert close(off["downtime_s"], skew)
    assert (on["lost_s"] == 0).all() and (on["downtime_s"] == 0).all()
    assert close(on["slow_s"], skew)


def test_vrrp_gap_longer_than_the_resends_loses_all_but_its_last_7_s() -> None:
    """advert_int 5 s: the backup waits 3 x 5 s + skew, a gap W of 12-15 s; only the
    senders of its last 7 s reach the new master at a resend inside the 10 s timeout."""
    on, off = pair("ingress-vip-vrrp", KILL_RESTART, ["keepalived-osh"], {"vrrp.advert_int": "5s"})
    gap = off["at_arp_updated"] - 1.0
    assert (gap > LAST).all() and close(off["downtime_s"], gap)
    assert close(on["downtime_s"], gap - LAST) and close(on["lost_s"], gap - LAST)
    assert close(on["slow_s"], LAST)


def test_a_patient_client_is_saved_only_until_the_kernel_stops_resending_at_63_s() -> None:
    """advert_int 60 s and a 300 s client: the gap is 120-180 s, far beyond the resend
    schedule (1, 3, 7, 15, 31, 63 s; the kernel gives up at 127 s, before the client),
    so the last 63 s of senders are late and everything before is lost; a client that
    gives up in 500 ms gets no resend and loses the whole gap."""
    slow = {"vrrp.advert_int": "60s", "client.timeout": "300s"}
    on, off = pair("ingress-vip-vrrp", KILL_RESTART, ["keepalived-osh"], slow)
    gap = off["at_arp_updated"] - 1.0
    assert (gap > 63.0).all()
    assert close(on["lost_s"], gap - 63.0) and close(on["slow_s"], 63.0)
    hasty, _ = pair(
        "ingress-vip-vrrp", KILL_RESTART, ["keepalived-osh"], {**slow, "client.timeout": "500ms"}
    )
    assert close(hasty["lost_s"], gap) and (hasty["slow_s"] == 0).all()


def test_refused_requests_get_no_resend_only_the_black_holed_ones_do() -> None:
    """keepalived SIGKILLed with the node's nginx: the old master keeps the VIP and its
    kernel answers RST until the backup's GARP G. An RST ends connect(), so nothing comes
    late and retransmission changes nothing. When nginx and keepalived restart at R < G,
    the restart drops the VIP: [0, R) is refused (lost either way), [R, G) black-holed
    and saved at a 1 s or 3 s resend; a restart after G leaves the whole gap refused."""
    dead = {**KEEPALIVED, "signal": "KILL", "with_service": True, "crashes": "inf"}
    on, off = pair("ingress-vip-vrrp", dead, ["keepalived-osh"])
    gap = off["downtime_s"]
    assert (gap >= off["at_arp_updated"]).all() and (gap <= off["at_arp_updated"] + 0.01).all()
    for col in ("downtime_s", "lost_s", "slow_s", "recovery_s"):
        assert close(on[col], off[col])
    assert (on["slow_s"] == 0).all()
    on, off = pair("ingress-vip-vrrp", {**dead, "crashes": 1}, ["keepalived-osh"])
    gap, r = off["downtime_s"], off["at_ingress_restarted"]
    assert (r < gap).sum() >= N // 2 and (r > gap).any()  # both branches
    assert close(on["downtime_s"], np.minimum(r, gap)) and close(on["lost_s"], on["downtime_s"])
    assert close(on["slow_s"], np.maximum(0.0, gap - r))


# ------------------------------------------------------------------------ BGP + BFD
def test_bgp_bfd_withdrawal_heals_the_dead_hops_third_at_its_1_s_resend() -> None:
    """BFD (BIRD 2: 5 x 100 ms) withdraws the crashed node's next hop at M < 1 s; until
    then a third of new flows hash to it and the rest lose 1/9 in nginx (16/27 succeed),
    after it 8/9 do. The dead hop's senders resend at +1 s onto a live hop: 8/27 of the
    traffic sent before M turns from lost into late, nothing else changes."""
    on, off = pair("ingress-vip-bgp", CRASH, [], {"bfd.enabled": True})
    moved = off["at_ecmp_rehashed"]
    assert (moved < 1.0).all()
    saved = 8 / 27 * moved
    assert close(off["lost_s"] - on["lost_s"], saved)
    assert close(on["slow_s"] - off["slow_s"], saved)
    assert close(on["recovery_s"], off["recovery_s"]) and (on["downtime_s"] == 0).all()


# --------------------------------------------------------------- leader-elected VIPs
def test_metallb_l2_memberlist_failover_within_7_s_has_no_downtime() -> None:
    """memberlist declares the speaker dead and the new one's GARP lands at G (~5-7.5 s):
    a blackout [0, G) without retransmission; with it the senders of its last 7 s get
    through into kube-proxy's rules, which still DNAT a third to the dead pod."""
    on, off = pair("metallb-l2", CRASH, [])
    g = off["at_arp_updated"]
    assert close(off["downtime_s"], g)
    assert close(on["downtime_s"], np.maximum(0.0, g - LAST))
    assert close(on["slow_s"], LIVE_PODS * np.minimum(g, LAST))
    assert close(off["lost_s"] - on["lost_s"], on["slow_s"])
    assert (on["downtime_s"] == 0).sum() >= N // 2  # most failovers fit in the 7 s


def test_kube_vip_lease_takeover_still_costs_all_but_the_last_7_s() -> None:
    """kube-vip's 15 s lease (plus the retry jitter) expires before a backup takes the
    VIP at G (~13-18 s): longer than the resends, so G - 7 s stays down and 2/3 of the
    last 7 s (those kube-proxy sends to a live pod) come through late."""
    on, off = pair("kube-vip-arp", CRASH, [])
    g = off["at_arp_updated"]
    assert (g > LAST + 5.0).all() and close(off["downtime_s"], g)
    assert close(on["downtime_s"], g - LAST)
    assert close(on["slow_s"], LIVE_PODS * LAST)
    assert close(off["lost_s"] - on["lost_s"], LIVE_PODS * LAST)
    assert close(on["recovery_s"], off["recovery_s"])


@pytest.mark.parametrize("design", ["metallb-l2", "kube-vip-arp"])
def test_the_failover_itself_does_not_depend_on_the_client(design: str) -> None:
    on, off = pair(design, CRASH, [])
    assert close(on["at_arp_updated"], off["at_arp_updated"])
