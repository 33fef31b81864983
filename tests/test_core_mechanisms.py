"""Each Kubernetes mechanism against its closed form (docs/model-kubernetes.md)."""

from __future__ import annotations

import numpy as np
import pytest

import chaoslab
from chaoslab.mechanisms.node import last_tick, next_tick

N = 400


def sim(design: str, fault: object, **kw: object):
    kw.setdefault("trials", N)
    kw.setdefault("seed", 3)
    return chaoslab.simulate(design, fault, **kw)  # type: ignore[arg-type]


def test_tick_grid() -> None:
    assert next_tick(1.0, 5.0, 1.0) == 1.0
    assert next_tick(1.0, 5.0, 1.1) == 6.0
    assert next_tick(1.0, 5.0, -3.0) == 1.0
    assert last_tick(1.0, 5.0, 0.0) == -4.0


# ---------------------------------------------------------------- node lifecycle


@pytest.mark.parametrize(
    ("profile", "grace", "renew"), [("k8s-1.32", 50.0, 10.0), ("k8s-1.31", 40.0, 10.0)]
)
def test_endpoints_removed_within_grace_window(
    profile: str, grace: float, renew: float, no_latency: dict[str, str]
) -> None:
    """A crashed node's pods leave the EndpointSlice in [G - renew, G + monitor period]."""
    df = sim("nodeport-lb", "node-crash", profile=profile, params=no_latency)
    period = 5.0
    nr = df["at_node_not_ready"]
    assert nr.between(grace - renew, grace + period).all()
    assert (df["at_pods_not_ready"] - nr).abs().max() < 1e-9  # same pass (MarkPodsNotReady)
    assert df["at_endpoints_removed"].between(grace - renew, grace + period).all()
    # the whole window is used, not one point of it
    assert nr.max() - nr.min() > 0.8 * (renew + period)


def test_pods_evicted_after_grace_plus_toleration(no_latency: dict[str, str]) -> None:
    """k8s-1.37: taint at NotReady (token bucket full), eviction 300 s later: about 350 s
    (<= 1.33 one monitor pass later: tests/test_fidelity_versions.py)."""
    df = sim("nodeport-lb", "node-crash", profile="k8s-1.37", params=no_latency)
    tainted = df["at_node_tainted"]
    assert (tainted - df["at_node_not_ready"]).between(0, 0.1 + 1e-9).all()  # 100 ms pass grid
    ev = df["at_pod_evicted"]
    assert np.allclose(ev - tainted, 300.0)
    assert ev.between(350 - 10, 350 + 5 + 0.1).all()
    assert df["at_replacement_created"].ge(ev).all()
    assert df["at_replacement_ready"].gt(df["at_replacement_created"]).all()


def test_legacy_eviction_counts_from_the_last_heartbeat(no_latency: dict[str, str]) -> None:
    """k8s-1.10: pod-eviction-timeout from probeTimestamp: about 300 s, not 340 s."""
    df = sim("nodeport-lb", "node-crash", profile="k8s-1.10", params=no_latency)
    assert df["at_node_tainted"].isna().all()
    assert df["at_pod_evicted"].between(300 - 10, 300 + 5 + 0.1).all()
    assert df["at_node_not_ready"].between(40 - 10, 40 + 5).all()


def test_toleration_seconds_move_eviction(no_latency: dict[str, str]) -> None:
    params = {**no_latency, "kube_apiserver.default_unreachable_toleration_seconds": "30s"}
    df = sim("nodeport-lb", "node-crash", params=params)
    assert np.allclose(df["at_pod_evicted"] - df["at_node_tainted"], 30.0)


def test_statefulset_pod_on_a_dead_node_is_never_replaced() -> None:
    df = sim(
        "nodeport-lb",
        "node-crash",
        cluster={"app_kind": "StatefulSet"},
        trials=100,
    )
    assert df["at_pod_evicted"].notna().all()
    assert df["at_replacement_created"].isna().all()


def test_statefulset_is_replaced_after_force_delete() -> None:
    df = sim(
        "nodeport-lb",
        "node-crash",
        cluster={"app_kind": "StatefulSet"},
        params={"cluster.force_delete_after": "600s"},
        trials=50,
    )
    assert (df["at_pod_force_deleted"] == 600).all()
    assert df["at_replacement_created"].between(600, 601).all()


def test_daemonset_pods_are_never_evicted_for_unreachable() -> None:
    df = sim("nodeport-lb", "node-crash", cluster={"app_kind": "DaemonSet"}, trials=100)
    assert df["at_node_tainted"].notna().all()
    assert df["at_pod_evicted"].isna().all()
    assert df["at_replacement_created"].isna().all()


def test_taints_are_rate_limited_per_zone(no_latency: dict[str, str]) -> None:
    """Two nodes lost at once: the second taint waits for a token (0.1 node/s -> 10 s)."""
    from chaoslab.faults import Fault
    from chaoslab.mechanisms.cluster import ClusterSpec
    from chaoslab.params import ParamSet
    from chaoslab.runner import Cell, run_trial

    ps = ParamSet.resolve(None, no_latency)
    fault = Fault("node-crash", ("controller-1", "controller-2"))
    cell = Cell("nodeport-lb", fault, ps, ClusterSpec(), {}, 1800.0)
    for i in range(50):
        row = run_trial(cell, i, seed=11)
        assert row["at_node_tainted"] == pytest.approx(row["at_node_not_ready"], abs=10.2)


def _run_to_horizon(design: str, fault: object, spec: object, params: dict, seed: int):
    """Build and run one trial by hand; return its topology for inspection."""
    from chaoslab.designs import DESIGNS
    from chaoslab.faults import FAULTS
    from chaoslab.mechanisms.base import Trial
    from chaoslab.params import ParamSet

    rng = np.random.default_rng(seed)
    trial = Trial(ParamSet.resolve(None, params).sampler(rng), rng, 1800.0)
    topo = DESIGNS[design].build(trial, spec)
    nodes, pods = FAULTS[fault.kind].resolve(topo, fault)
    trial.set_availability(topo.availability)
    FAULTS[fault.kind].inject(topo, nodes, pods)
    trial.env.run(until=1800.0)
    return topo, nodes


def test_partial_zone_disruption_stops_evictions(no_latency: dict[str, str]) -> None:
    """Losing 3 of 5 nodes (> 2 and >= 55 %): once the zone is PartialDisruption no more taints.

    The first node to go NotReady finds a token and is tainted at once; the next one waits
    10 s for a token, and by then the zone is partially disrupted: a small zone's rate is 0.
    """
    from chaoslab.faults import Fault
    from chaoslab.mechanisms.cluster import ClusterSpec

    spec = ClusterSpec(masters=1, controllers=3, computes=1)
    for seed in range(20):
        topo, nodes = _run_to_horizon(
            "nodeport-lb", Fault("node-crash", "app-pod-nodes"), spec, no_latency, seed
        )
        assert all(not n.ready for n in nodes)
        evicted = [n for n in nodes if any(p.deleting for p in n.pods)]
        assert len(evicted) <= 1
        assert topo.cluster.nlc.zone_state["zone-0"] == "PartialDisruption"
    # the same loss in the article's 8-node cluster (3/8 < 55 %) is evicted node by node
    topo, nodes = _run_to_horizon(
        "nodeport-lb", Fault("node-crash", "app-pod-nodes"), ClusterSpec(), no_latency, 1
    )
    assert all(any(p.deleting for p in n.pods) for n in nodes)


def test_all_nodes_lost_is_master_disruption(no_latency: dict[str, str]) -> None:
    """Every node of the only zone NotReady: the controller removes taints, evicts nothing."""
    from chaoslab.faults import Fault
    from chaoslab.mechanisms.cluster import ClusterSpec

    spec = ClusterSpec(masters=0, controllers=3, computes=0)
    topo, nodes = _run_to_horizon(
        "nodeport-lb", Fault("node-crash", "app-pod-nodes"), spec, no_latency, 2
    )
    assert topo.cluster.nlc.master_disruption
    assert not any(n.tainted for n in nodes)
    assert len([p for p in topo.cluster.app.pods if p.deleting]) <= 1


# ---------------------------------------------------------------- external LB


@pytest.mark.parametrize(
    ("interval", "fall", "timeout"), [(2.0, 3, 2.0), (1.0, 3, 0.5), (5.0, 2, 5.0)]
)
def test_lb_detection_window_fixed_rate(interval: float, fall: int, timeout: float) -> None:
    """Checks on a grid: a dead target is down in [(fall-1) interval, fall interval] + timeout."""
    params = {
        "lb.interval": f"{interval}s",
        "lb.fall": fall,
        "lb.timeout": f"{timeout}s",
        "lb.check_schedule": "fixed-rate",
    }
    df = sim("nodeport-lb", "node-crash", params=params)
    d = df["at_lb_marked_down"]
    lo, hi = (fall - 1) * interval + timeout, fall * interval + timeout
    assert d.between(lo - 1e-9, hi + 1e-9).all()
    assert d.mean() == pytest.approx((lo + hi) / 2, abs=0.1 * interval)


@pytest.mark.parametrize(("interval", "fall", "timeout"), [(1.0, 3, 1.0), (2.0, 3, 2.0)])
def test_lb_detection_window_haproxy(interval: float, fall: int, timeout: float) -> None:
    """HAProxy starts a check `inter` after the last one completed: each unanswered check
    costs timeout + inter, so down in U(0, inter) + fall timeout + (fall-1) inter."""
    params = {"lb.interval": f"{interval}s", "lb.fall": fall, "lb.timeout": f"{timeout}s"}
    df = sim("nodeport-lb", "node-crash", params=params)
    d = df["at_lb_marked_down"]
    lo = fall * timeout + (fall - 1) * interval
    assert d.between(lo - 1e-9, lo + interval + 1e-9).all()
    assert d.mean() == pytest.approx(lo + interval / 2, abs=0.1 * interval)


def test_lb_puts_a_repaired_node_back_after_rise(no_latency: dict[str, str]) -> None:
    params = {**no_latency, "fault.repair_time": "100s", "kubelet.node_boot_time": "20s"}
    df = sim("nodeport-lb", "node-crash", params=params)
    up = df["at_lb_marked_up"]
    # back at 120 s; rise 2 checks every 2 s: first passing check in [120, 122], then +2 s
    assert up.between(120 + 2, 120 + 4 + 1e-9).all()


def test_local_policy_drops_until_the_lb_gives_up() -> None:
    """kubelet-stop with eTP Local: endpoints go, the node DROPs until the LB marks it down."""
    df = sim("nodeport-lb-local", "kubelet-stop", trials=200)
    gap = df["at_lb_marked_down"] - df["at_proxy_synced"]
    assert (gap > 0).all() and (gap < 2 * 3 + 2 + 0.5).all()
    assert (df["lost_s"] > 0).all()
    cluster = sim("nodeport-lb", "kubelet-stop", trials=200)
    assert (cluster["lost_s"] == 0).all()  # the pods keep serving; nothing is lost


# ---------------------------------------------------------------- pods


def test_pod_kill_restarts_in_place() -> None:
    df = sim("clusterip", "pod-kill")
    assert df["at_container_died"].between(0, 1.0).all()  # PLEG relist every 1 s
    assert df["at_container_restarted"].ge(df["at_container_died"]).all()
    assert df["at_container_serving"].gt(df["at_container_restarted"]).all()
    assert df["at_replacement_created"].isna().all()
    # a third of new connections hit the dead process until the endpoint is removed
    assert df["lost_s"].between(0, 2.0).all() and df["recovered"].all()


def test_crash_loop_backs_off(no_latency: dict[str, str]) -> None:
    """Three deaths in a row: restarts immediately, then after 10 s and 20 s of back-off."""
    df = sim("clusterip", {"kind": "pod-kill", "crashes": 3}, params=no_latency, trials=100)
    # deaths at ~0, +1 s start (dies), +10 s back-off, +1 s start (dies), +20 s, +1 s start
    assert df["at_container_serving"].between(33.0, 34.0 + 1e-9).all()


def test_graceful_delete_replaces_at_once() -> None:
    df = sim("clusterip", "pod-delete")
    assert (df["at_pod_deleted"] == 0).all()
    assert df["at_replacement_created"].lt(1.0).all()
    assert df["at_endpoints_removed"].lt(1.0).all()


def test_prestop_sleep_closes_the_endpoint_race() -> None:
    race = sim("nodeport-lb", "pod-delete", trials=300)
    safe = sim("nodeport-lb", "pod-delete", params={"pod.prestop_sleep": "5s"}, trials=300)
    assert race["lost_s"].mean() > 0
    assert (safe["lost_s"] == 0).all()


def test_drain_is_graceful() -> None:
    df = sim("nodeport-lb", {"kind": "node-drain", "target": "app-pod-node"}, trials=200)
    assert (df["downtime_s"] == 0).all()
    assert df["at_replacement_ready"].notna().all()


# ---------------------------------------------------------------- the event loop


def _loop_record(run_with_simpy: bool) -> tuple[list[tuple[float, str]], float, int]:
    """Callbacks, a process and same-instant ties run by `Trial.run` or by SimPy itself."""
    from chaoslab.mechanisms.base import Trial
    from chaoslab.params import ParamSet

    rng = np.random.default_rng(1)
    trial = Trial(ParamSet.resolve().sampler(rng), rng, horizon=10.0)
    seen: list[tuple[float, str]] = []

    def note(name: str) -> None:
        seen.append((trial.now, name))
        if name == "a":
            trial.at(0.0, note, "a-then")  # same instant, after what was queued already

    def proc():  # a SimPy process among the callbacks (the LB checker is one)
        yield trial.env.timeout(2.0)
        seen.append((trial.now, "proc"))

    trial.at(2.0, note, "a")
    trial.at(2.0, note, "b")
    trial.env.process(proc())
    trial.at(10.0, note, "at the horizon")  # behind SimPy's stop event: never run
    trial.at(1.0, note, "first")
    if run_with_simpy:
        trial.env.run(until=trial.horizon)
    else:
        trial.run()
    return seen, trial.now, next(trial.env._eid) - len(trial.env._queue)


def test_trial_run_processes_events_as_simpy_does() -> None:
    ours = _loop_record(run_with_simpy=False)
    assert ours == _loop_record(run_with_simpy=True)
    assert [name for _, name in ours[0]] == ["first", "a", "b", "proc", "a-then"]


@pytest.mark.parametrize("spare", [True, False])
def test_jumped_rng_is_numpys_jumped_stream(spare: bool) -> None:
    """`Trial.jumped_rng` computes PCG64.jumped() itself; the stream must be numpy's."""
    from chaoslab.mechanisms.base import Trial
    from chaoslab.params import ParamSet

    rng = np.random.Generator(np.random.PCG64(11))
    rng.random(7)
    rng.integers(0, 9, dtype=np.uint32)  # a buffered half word the jump must drop
    expected = np.random.Generator(rng.bit_generator.jumped()).random(4)
    given = np.random.Generator(np.random.PCG64(0)) if spare else None
    trial = Trial(ParamSet.resolve().sampler(rng), rng, 10.0, spare=given)
    assert trial.jumped_rng().random(4).tolist() == expected.tolist()
