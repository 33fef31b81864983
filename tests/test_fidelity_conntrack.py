"""Stale conntrack SYN_SENT entries after a dead endpoint, against their closed forms.

A clusterip client at rate r: while its node's rules DNAT 1 of 3 endpoints to a crashed
node (until its own kube-proxy synced, t_f), each connection sent there leaves an entry
that another connection can hit from the client's timeout (0.5 s: one SYN) until 120 s
after that SYN (``nf_conntrack_tcp_timeout_syn_sent``). With ports taken at random the
count is r t_f / 3 until 120 s, then decays linearly to 0 at t_f + 120 s, and a(t) =
1 - count / 14,116 (the even ports of 32768-60999 that connect() uses first). With the
kernel's walk (9 ports on per connect, 4.5 usable ports) the client comes back to the
crash's ports one pass later, 14,116 / (4.5 r) s, and hits them with odds 1/4.5 each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chaoslab.designs.nodeport as nodeport
from chaoslab.designs import DESIGNS
from chaoslab.faults import FAULTS, Fault
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.mechanisms.conntrack import entry_window, usable_ports
from chaoslab.params import ParamSet

HORIZON = 180.0
PORTS = 14116
STEP = 0.5  # conntrack.count_step
#: the cluster-node-crash experiment's CI-sized timers
CI = {
    "kube_controller_manager.node_monitor_period": "1s",
    "kube_controller_manager.node_monitor_grace_period": "8s",
    "kubelet.node_lease_duration_seconds": "4s",
    "kube_apiserver.default_not_ready_toleration_seconds": "10s",
    "kube_apiserver.default_unreachable_toleration_seconds": "10s",
    "client.timeout": "500ms",
}


def _trial(
    design: str, kind: str, params: dict[str, str], seed: int = 0, target: str = "app-pod-node"
) -> Trial:
    rng = np.random.default_rng(seed)
    fault = Fault(kind, target, {"duration": "20s"} if kind == "node-partition" else {})
    ps = ParamSet.resolve(None, params).with_overrides(fault.overrides(), source="fault")
    trial = Trial(ps.sampler(rng), rng, HORIZON)
    topo = DESIGNS[design].build(trial, ClusterSpec())
    nodes, pods = FAULTS[fault.kind].resolve(topo, fault)
    topo.targets_resolved(nodes, pods)
    trial.set_availability(topo.availability)
    FAULTS[fault.kind].inject(topo, nodes, pods)
    trial.env.run(until=HORIZON)
    return trial


def _a(trial: Trial, t: float) -> float:
    i = int(np.searchsorted(np.asarray(trial.a_t), t, side="right")) - 1
    return trial.a_v[i]


def _rules_fixed(trial: Trial) -> float:
    """When the client's own kube-proxy dropped the dead pod (a(t) jumps from ~2/3)."""
    return next(t for t, a in zip(trial.a_t, trial.a_v, strict=True) if a > 0.9)


def _crash(rate: float, seed: int = 0, selection: str = "random", shuffle: str = "10s") -> Trial:
    params = {
        **CI,
        "client.connection_rate_per_ip": f"{rate:g}",
        "client.connect_port_selection": selection,
        "client.connect_port_shuffle_period": shuffle,
    }
    return _trial("clusterip", "node-crash", params, seed)


def test_connect_uses_the_even_half_of_the_default_port_range() -> None:
    assert usable_ports(32768, 60999, one_parity=True) == PORTS
    assert usable_ports(32768, 60999, one_parity=False) == 2 * PORTS


def test_an_entry_lives_from_the_client_timeout_to_its_last_syn_plus_the_timeout() -> None:
    # 0.5 s: one SYN, no retransmission (the first comes after the 1 s initial RTO)
    assert entry_window(0.5, 6, 1.0, 120.0) == (0.5, 120.0)
    # 10 s: SYNs at 0, 1, 3 and 7 s; the last one refreshes the entry
    assert entry_window(10.0, 6, 1.0, 120.0) == (10.0, 127.0)
    # a client that waits longer than the kernel: it gives up at 127 s, last SYN at 63 s
    assert entry_window(600.0, 6, 1.0, 120.0) == (127.0, 183.0)


def test_a_steady_count_of_entries_is_a_steady_collision_share() -> None:
    rate = 40.0
    trial = _crash(rate)
    fixed = _rules_fixed(trial)
    count = rate / 3 * fixed  # 1 of 3 endpoints dead until the client's rules dropped it
    for t in (fixed + 1.0, 60.0, 119.0):
        assert _a(trial, t) == pytest.approx(1 - count / PORTS, rel=1e-9)


def test_no_collision_before_the_first_connection_timed_out() -> None:
    trial = _crash(40.0)
    # the ports of timed-out connections are free only from the client timeout (0.5 s)
    assert _a(trial, 0.0) == pytest.approx(2 / 3)
    assert _a(trial, 0.49) == pytest.approx(2 / 3)
    assert _a(trial, 1.0) < 2 / 3


def test_entries_expire_their_timeout_after_their_syn() -> None:
    rate = 40.0
    trial = _crash(rate)
    fixed = _rules_fixed(trial)
    # the entries of [0, t_f] expire over [120, 120 + t_f]: linear decay, then none
    mid = 120.0 + fixed / 2
    assert 1 - _a(trial, mid) == pytest.approx(
        rate / 3 * fixed / 2 / PORTS, abs=rate * STEP / PORTS
    )
    assert _a(trial, 120.0 + fixed + STEP) == 1.0
    assert trial.a_t[-1] == pytest.approx(120.0 + fixed, abs=STEP)


def test_one_walk_comes_back_to_the_crashs_ports_one_pass_later() -> None:
    """Without the 10 s re-salt (before Linux 5.18) one walk per destination."""
    rate = 40.0
    trial = _crash(rate, selection="walk", shuffle="inf")
    fixed = _rules_fixed(trial)
    lap = PORTS / (4.5 * rate)  # 78.4 s
    assert _a(trial, fixed + 1.0) == 1.0  # the walk has moved on past the entries
    assert _a(trial, lap - 1.0) == 1.0
    # each port the crash took is hit with odds 1 / 4.5; a third of them are stale
    assert _a(trial, lap + fixed / 2) == pytest.approx(1 - 1 / 3 / 4.5)
    # two passes on (157 s) every entry has expired (120 s)
    assert _a(trial, lap + fixed + STEP) == 1.0
    assert trial.a_t[-1] == pytest.approx(lap + fixed, abs=STEP)


def test_reshuffled_walks_lose_on_average_what_random_ports_lose() -> None:
    """Every 10 s the walk starts from a new random offset: a period whose walk crosses
    the crash's ports loses d / 4.5 of its connections while it does. Over many trials
    the loss after the rules were fixed is the random share's, r d t_f / 14,116 per
    second of the entries' life."""

    def after_fix(trial: Trial) -> float:
        fixed = _rules_fixed(trial)
        ts, vs = np.asarray([*trial.a_t, HORIZON]), np.asarray(trial.a_v)
        keep = ts[:-1] >= fixed
        return float(np.sum((1 - vs[keep]) * np.diff(ts)[keep]))

    seeds = range(200)
    walk = np.mean([after_fix(_crash(40.0, s, selection="walk")) for s in seeds])
    random = np.mean([after_fix(_crash(40.0, s)) for s in seeds])
    assert walk == pytest.approx(random, rel=0.15)


def test_a_fast_walk_passes_often_and_averages_to_the_random_share() -> None:
    """At 3,000 connections a second a pass takes ~1 s: within an entry's life the walk
    comes back to it ~100 times, and the share is the random one."""
    walk, random = _crash(3000.0, selection="walk"), _crash(3000.0)
    assert _a(walk, 60.0) == pytest.approx(_a(random, 60.0))


def test_the_effect_grows_with_the_clients_rate() -> None:
    low, high = _crash(10.0), _crash(40.0)
    assert _rules_fixed(low) == _rules_fixed(high)  # the same trial otherwise
    assert 1 - _a(high, 60.0) == pytest.approx(4 * (1 - _a(low, 60.0)))


def test_an_endpoint_removed_before_its_pod_stops_leaves_no_entry() -> None:
    """A graceful delete with a preStop sleep: the rules drop the pod while it still
    serves, so no SYN ever goes unanswered."""
    params = {"pod.prestop_sleep": "5s", "client.timeout": "500ms"}
    quiet = _trial("clusterip", "pod-delete", params, target="app-pod")
    busy = _trial(
        "clusterip",
        "pod-delete",
        {**params, "client.connection_rate_per_ip": "40"},
        target="app-pod",
    )
    assert (busy.a_t, busy.a_v) == (quiet.a_t, quiet.a_v)


def test_a_killed_process_on_a_live_node_answers_with_a_reset_and_leaves_no_entry() -> None:
    params = {"client.timeout": "500ms"}
    quiet = _trial("clusterip", "pod-kill", params, target="app-pod")
    busy = _trial(
        "clusterip", "pod-kill", {**params, "client.connection_rate_per_ip": "40"}, target="app-pod"
    )
    assert (busy.a_t, busy.a_v) == (quiet.a_t, quiet.a_v)


@pytest.mark.parametrize(
    "design", ["clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local"]
)
def test_a_zero_rate_is_the_model_without_the_mechanism(
    design: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue's default (0) takes no draw and adds no event: the bundled experiment's
    trials are those of the model without stale entries."""
    target = "entry-node" if design == "nodeport-direct" else "app-pod-node"
    runs: list[tuple[Any, ...]] = []
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(nodeport, "stale_syn_entries", lambda trial, paths: None)
        t = _trial(design, "node-crash", {}, seed=3, target=target)
        runs.append((t.a_t, t.a_v, t.milestones))
    assert runs[0] == runs[1]


@settings(max_examples=30, deadline=None)
@given(
    design=st.sampled_from(["clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local"]),
    kind=st.sampled_from(["node-crash", "node-partition"]),
    rate=st.floats(1.0, 3000.0),
    timeout=st.sampled_from(["500ms", "2s", "10s"]),
    seed=st.integers(0, 2**16),
)
def test_stale_entries_only_ever_lower_availability(
    design: str, kind: str, rate: float, timeout: str, seed: int
) -> None:
    base = {**CI, "client.timeout": timeout}
    without = _trial(design, kind, base, seed)
    with_ = _trial(design, kind, {**base, "client.connection_rate_per_ip": f"{rate:g}"}, seed)
    assert all(0.0 <= a <= 1.0 for a in with_.a_v)
    for t in sorted(set(without.a_t) | set(with_.a_t)):
        assert _a(with_, t) <= _a(without, t) + 1e-12, f"t = {t}"
