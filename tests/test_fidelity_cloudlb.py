"""Cloud load balancers, issue 11 item 3: marking is not routing (propagation), graceful
removal (deregistration delay) and new targets (registration) for the AWS NLB and GCP
profiles (docs/model-network.md, "Cloud load balancers")."""

from __future__ import annotations

import numpy as np
import pytest

import chaoslab
from chaoslab.designs import ImpossibleTarget
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.lbcheck import CheckResult, LbHealthChecker
from chaoslab.params import ParamSet
from chaoslab.params.catalogue import PROFILES

IDLE = {"kind": "node-crash", "target": "idle-node"}
APP_NODE = {"kind": "node-crash", "target": "app-pod-node"}
NEW_KEYS = (
    "lb.propagation",
    "lb.deregistration_propagation",
    "lb.deregistration_delay",
    "lb.registration_time",
)


def sim(design: str, fault: object, profile: str, trials: int = 400, **params: object):
    return chaoslab.simulate(
        design,
        fault,  # type: ignore[arg-type]
        profile=["k8s-1.32", profile],
        params=params,
        trials=trials,
        seed=5,
    )


# ------------------------------------------------------------------ propagation


def test_an_nlb_sends_new_connections_to_a_dead_node_until_the_mark_has_propagated() -> None:
    """A worker without app pods dies: 1 of the 5 worker targets takes new connections that
    fail until the NLB's data plane follows the mark, 30-40 s after it (containers-roadmap
    #470). Closed form: lost = (marked down + propagation) / 5."""
    df = sim("cloud-lb", IDLE, "aws-nlb")
    gap = df["at_lb_routed_out"] - df["at_lb_marked_down"]
    assert gap.between(30.0, 40.0).all()
    assert gap.mean() == pytest.approx(35.0, abs=0.6)
    assert np.allclose(df["recovery_s"], df["at_lb_routed_out"])
    assert np.allclose(df["lost_s"], df["at_lb_routed_out"] / 5)


def test_the_mean_extra_outage_is_the_share_times_the_mean_propagation() -> None:
    """Same seed, propagation 0 s against 35 s: a fixed value draws nothing, so each trial
    is the same until the mark and loses 35 s x 1/5 more."""
    none = sim("cloud-lb", IDLE, "aws-nlb", trials=200, **{"lb.propagation": "0s"})
    slow = sim("cloud-lb", IDLE, "aws-nlb", trials=200, **{"lb.propagation": "35s"})
    assert none["at_lb_routed_out"].isna().all()  # no lag, no separate milestone
    assert np.allclose(slow["at_lb_marked_down"], none["at_lb_marked_down"])
    assert np.allclose(slow["lost_s"] - none["lost_s"], 35.0 / 5)
    assert np.allclose(slow["recovery_s"] - none["recovery_s"], 35.0)


def test_after_an_app_pod_node_crash_the_nlb_not_the_endpoints_decides_recovery() -> None:
    """Endpoints are gone from every kube-proxy ~45 s after the crash; the NLB stops sending
    to the dead node at 40-70 s + 30-40 s, so it is the last step of every trial."""
    df = sim("cloud-lb", APP_NODE, "aws-nlb", trials=200)
    assert (df["at_proxy_synced"] < df["at_lb_routed_out"]).all()
    assert np.allclose(df["recovery_s"], df["at_lb_routed_out"])
    extra = df["recovery_s"] - df["at_lb_marked_down"]
    assert extra.mean() == pytest.approx(35.0, abs=0.8)


def test_a_graceful_delete_under_local_policy_costs_the_propagation_too() -> None:
    """eTP Local: the deleted pod's node answers 503 on its health-check node port and DROPs
    new connections; where its replacement lands elsewhere the NLB marks it down, and the
    node keeps 1 of the 3 app nodes' new connections 35 s longer (a fixed 35 s here)."""
    fault = {"kind": "pod-delete", "target": "app-pod"}
    local = {"cloud_lb.external_traffic_policy": "Local"}
    none = sim("cloud-lb", fault, "aws-nlb", trials=200, **local, **{"lb.propagation": "0s"})
    slow = sim("cloud-lb", fault, "aws-nlb", trials=200, **local, **{"lb.propagation": "35s"})
    marked = none["at_lb_marked_down"].notna()
    assert 0 < marked.sum() < len(none)  # a replacement on the same node is never marked
    extra = slow["recovery_s"] - none["recovery_s"]
    assert np.allclose(extra[marked], 35.0) and np.allclose(extra[~marked], 0.0)
    assert np.allclose((slow["lost_s"] - none["lost_s"])[marked], 35.0 / 3)


def test_gcp_propagation_is_the_assumed_few_seconds() -> None:
    df = sim("cloud-lb", IDLE, "gcp", trials=200)
    gap = df["at_lb_routed_out"] - df["at_lb_marked_down"]
    assert gap.between(0.0, 5.0).all()
    assert gap.mean() == pytest.approx(2.5, abs=0.4)


def test_haproxy_routes_by_its_own_marks() -> None:
    """HAProxy's checker is its data plane: nothing lags, recovery is the mark itself."""
    df = sim("nodeport-lb", IDLE, "haproxy", trials=100)
    assert df["at_lb_routed_out"].isna().all()
    assert np.allclose(df["recovery_s"], df["at_lb_marked_down"])


# ------------------------------------------------- the mechanism, target by target


def checker(profile: str, health: dict[str, bool], **params: object) -> LbHealthChecker:
    ps = ParamSet.resolve([profile], params)
    rng = np.random.default_rng(0)
    trial = Trial(ps.sampler(rng), rng, 3600.0)
    targets = [Node(name, "compute", i, "zone-0") for i, name in enumerate(health)]

    def check(node: Node) -> CheckResult:
        return (health[node.name], True)

    return LbHealthChecker(trial, targets, check)


def rotation_at(lb: LbHealthChecker, t: float) -> set[str]:
    lb.trial.env.run(until=t)
    return {n.name for n in lb.in_rotation()}


def test_a_deregistered_target_takes_new_connections_then_drains_for_300_s() -> None:
    """AWS: new connections for ~2 min after DeregisterTargets, established ones until the
    deregistration delay (default 300 s) ends."""
    lb = checker("aws-nlb", {"a": True, "b": True}, **{"lb.deregistration_propagation": "120s"})
    a = lb.targets[0]
    lb.deregister(a)
    assert rotation_at(lb, 119.9) == {"a", "b"}
    assert rotation_at(lb, 120.1) == {"b"}
    assert lb.carries_established(a)
    lb.trial.env.run(until=300.1)
    assert not lb.carries_established(a)
    assert lb.trial.milestones["lb.deregistered"] == pytest.approx(300.0)


def test_a_short_deregistration_delay_still_drains_until_traffic_stops() -> None:
    """aws-load-balancer-controller #3270: a 5 s delay, yet requests for about 2 minutes;
    the drain cannot end before the last new connection."""
    params = {"lb.deregistration_propagation": "120s", "lb.deregistration_delay": "5s"}
    lb = checker("aws-nlb", {"a": True, "b": True}, **params)
    lb.deregister(lb.targets[0])
    lb.trial.env.run(until=200.0)
    assert lb.trial.milestones["lb.deregistered"] == pytest.approx(120.0)


def test_a_registered_target_waits_for_its_first_check_and_the_propagation() -> None:
    """AWS: first check 70-120 s after registration (here 90 s, on a 30 s grid), in
    service after one passing check, routed 35 s after that mark."""
    params = {"lb.registration_time": "90s", "lb.propagation": "35s"}
    lb = checker("aws-nlb", {"a": True}, **params)
    lb.register(Node("new", "compute", 9, "zone-0"))
    lb.check = lambda node: (True, True)
    assert rotation_at(lb, 89.9) == {"a"}
    lb.trial.env.run(until=90.1)
    assert lb.trial.milestones["lb.marked_up"] == pytest.approx(90.0)
    assert rotation_at(lb, 124.9) == {"a"}
    assert rotation_at(lb, 125.1) == {"a", "new"}
    assert lb.trial.milestones["lb.routed_in"] == pytest.approx(125.0)


def test_haproxy_serves_a_new_server_after_its_first_check() -> None:
    lb = checker("haproxy", {"a": True})
    lb.register(Node("new", "compute", 9, "zone-0"))
    lb.check = lambda node: (True, True)
    assert rotation_at(lb, 0.01) == {"a", "new"}


def test_marks_reach_the_data_plane_in_their_order() -> None:
    """Down then up again before the first change has propagated: the target is routed out
    and back in that order, never left out."""
    health = {"a": True, "b": True}
    lb = checker("aws-nlb", health, **{"lb.propagation": "35s", "lb.rise": 2})
    health["a"] = False
    lb.trial.changed()
    lb.trial.env.run(until=100.0)
    down = lb.trial.milestones["lb.marked_down"]
    health["a"] = True
    lb.trial.changed()
    lb.trial.env.run(until=3000.0)
    assert lb.trial.milestones["lb.routed_out"] == pytest.approx(down + 35.0)
    assert lb.trial.milestones["lb.routed_in"] > lb.trial.milestones["lb.routed_out"]
    assert {n.name for n in lb.in_rotation()} == {"a", "b"}


# -------------------------------------------------------------------- catalogue


def test_every_cloud_value_has_a_source_and_unpublished_ones_say_so() -> None:
    for name in ("aws-nlb", "gcp"):
        settings = PROFILES[name].settings
        assert set(NEW_KEYS) <= set(settings), name
    aws = PROFILES["aws-nlb"].settings
    assert "#470" in aws["lb.propagation"].source
    assert "300 seconds" in aws["lb.deregistration_delay"].source
    assert "#469" in aws["lb.registration_time"].source
    gcp = PROFILES["gcp"].settings
    assert all("[assumption]" in gcp[k].source for k in NEW_KEYS)
    hap = ParamSet.resolve(["haproxy"])
    assert all(hap.text(k) == "0s" for k in NEW_KEYS)


# ------------------------------------------------- IP targets (cloud-lb-ip), NLB resets
DELETE = {"kind": "pod-delete", "target": "app-pod"}
LONG = {"client.long_lived_share": 0.3}
#: connections that stay open past the NLB's ~90 s to routing out: a client gives a hung
#: connection up after client.timeout and reconnects, and the LB then has nothing to reset
PINNED = {**LONG, "client.timeout": "30m"}


def test_ip_targets_keep_a_deleted_pod_in_rotation_until_its_health_check_routes_it_out() -> None:
    """IP mode: the deleted pod's IP is deregistered at once but keeps getting new
    connections for ~2 min (aws-load-balancer-controller #2366); it is gone ~1 s after
    SIGTERM, so its own health checks stop the traffic first: marked down at (fall - 1) x
    30 s + U(0, 30 s) + the 10 s timeout (a gone pod IP answers nothing) after it went, then
    30-40 s propagation: 70-110 s. 1/3 of new connections fail until then. Behind NodePorts
    (cloud-lb) kube-proxy drops the endpoint within a second."""
    ip = sim("cloud-lb-ip", DELETE, "aws-nlb", trials=200)
    assert np.allclose(ip["recovery_s"], ip["at_lb_routed_out"])
    since = ip["recovery_s"] - ip["at_pod_gone"]
    assert since.between(70.0, 110.0).all()
    assert since.max() - since.min() > 25  # the check grid's phase and the propagation
    assert (ip["at_lb_routed_out"] < ip["at_cloud_lb_deregistering"] + 120.0).all()
    assert np.allclose(ip["lost_s"], ip["at_lb_routed_out"] / 3, rtol=0.02)
    node = sim("cloud-lb", DELETE, "aws-nlb", trials=100)
    assert (node["recovery_s"] < 3.0).all()


def test_a_prestop_longer_than_the_deregistration_costs_nothing_in_ip_mode() -> None:
    """The documented cure: keep serving (preStop sleep 150 s, grace 200 s) until the NLB
    has stopped sending new connections (120-140 s after the deregistration)."""
    params = {"pod.prestop_sleep": "150s", "pod.termination_grace_period_seconds": "200s"}
    df = sim("cloud-lb-ip", DELETE, "aws-nlb", trials=100, **params)
    assert (df["lost_s"] == 0).all()
    assert df["at_lb_routed_out"].isna().all()


def test_a_new_pod_ip_takes_traffic_after_registration_its_first_check_and_propagation() -> None:
    """The replacement: registered cloud_lb.controller_sync after its endpoint is written,
    first check lb.registration_time later (fixed), one pass, in rotation lb.propagation later.
    Its app starts up in 3 s: the probe of the sync that first sees it fails and Ready comes
    one 10 s period later, after the old pod's last reconcile (an app up by that sync would
    be Ready at once, and registered by the removal's reconcile)."""
    params = {
        "pod.container_start_time": "3s",
        "cloud_lb.controller_sync": "1s",
        "lb.registration_time": "90s",
        "lb.propagation": "35s",
    }
    df = sim("cloud-lb-ip", DELETE, "aws-nlb", trials=100, **params)
    assert np.allclose(df["at_cloud_lb_registered"] - df["at_endpoints_added"], 1.0)
    assert np.allclose(df["at_lb_marked_up"] - df["at_cloud_lb_registered"], 90.0)
    assert np.allclose(df["at_lb_routed_in"] - df["at_lb_marked_up"], 35.0)


def test_ip_targets_are_refused_under_gcp() -> None:
    """GKE's pod-IP NEGs sit behind proxy LBs, not a passthrough L4 LB: the gcp profile
    sets lb.pod_ip_targets false and cloud-lb-ip refuses it, with the reason."""
    assert ParamSet.resolve(["aws-nlb"]).text("lb.pod_ip_targets") == "true"
    with pytest.raises(ImpossibleTarget, match="proxy load balancers"):
        sim("cloud-lb-ip", DELETE, "gcp", trials=1)


def test_an_nlb_resets_the_connections_of_a_target_it_routes_out() -> None:
    """AWS NLB: 'sends a TCP RST for packets received on the client connections associated
    with the target' once it is unhealthy: connections through the crashed node are reset
    at the routing change instead of hanging; GCP's passthrough LB keeps them (they hang)."""
    for design, share in (("cloud-lb-ip", 1 / 3), ("cloud-lb", 1 / 5)):  # the dead target's
        aws = sim(design, APP_NODE, "aws-nlb", trials=50, **PINNED)
        assert np.allclose(aws["at_cloud_lb_reset"], aws["at_lb_routed_out"])
        assert np.allclose(aws["connections_reset"], share)
    gcp = sim("cloud-lb", APP_NODE, "gcp", trials=50, **PINNED)  # aws: cloud-lb's, the last
    assert gcp["at_cloud_lb_reset"].isna().all()
    assert np.allclose(gcp["connections_hung"] - aws["connections_hung"], 1 / 5)


def test_nodeport_lb_behind_an_nlb_resets_what_cloud_lb_resets() -> None:
    """nodeport-lb is the same NodePort-behind-an-LB topology as cloud-lb: under the aws-nlb
    profile the crashed app-pod node's connections (1 of 5 workers) are reset when the NLB
    routes it out, and only those: the other nodes' flows DNATed to the dead pod (4/5 x 1/3)
    still hang, as under cloud-lb."""
    for design in ("nodeport-lb", "cloud-lb"):
        df = sim(design, APP_NODE, "aws-nlb", trials=50, **PINNED)
        assert np.allclose(df["at_cloud_lb_reset"], df["at_lb_routed_out"])
        assert np.allclose(df["connections_reset"], 1 / 5)
        assert np.allclose(df["connections_hung"], 4 / 5 * 1 / 3)


def test_nodeport_lb_resets_only_where_the_lb_profile_says_so() -> None:
    """HAProxy keeps a server's sessions when it marks it DOWN (no 'on-marked-down
    shutdown-sessions'): every flow through the crashed node hangs, 1/5 + 4/5 x 1/3. The
    same HAProxy told to reset (lb.unhealthy_connection_termination) resets the crashed
    node's 1/5 at its mark (no propagation: the checker is the data plane)."""
    kept = sim("nodeport-lb", APP_NODE, "haproxy", trials=50, **PINNED)
    assert kept["at_cloud_lb_reset"].isna().all()
    assert np.allclose(kept["connections_reset"], 0.0)
    assert np.allclose(kept["connections_hung"], 1 / 5 + 4 / 5 * 1 / 3)
    cut = sim(
        "nodeport-lb",
        APP_NODE,
        "haproxy",
        trials=50,
        **PINNED,
        **{"lb.unhealthy_connection_termination": True},
    )
    assert np.allclose(cut["at_cloud_lb_reset"], cut["at_lb_marked_down"])
    assert np.allclose(cut["connections_reset"], 1 / 5)


def test_no_reset_while_the_nlb_fails_open() -> None:
    """Unhealthy targets' connections are reset only while some target is healthy: with
    every target unhealthy the NLB fails open and sends to all of them, no RST."""
    health = {"a": True, "b": True}
    lb = checker("aws-nlb", health, **{"lb.propagation": "35s"})
    health["a"] = False
    lb.trial.changed()
    lb.trial.env.run(until=lb.trial.milestones.get("lb.marked_down", 0) + 200.0)
    assert [n.name for n in lb.unhealthy_routed_out()] == ["a"]
    health["b"] = False
    lb.trial.changed()
    lb.trial.env.run(until=lb.trial.now + 200.0)
    assert {n.name for n in lb.in_rotation()} == {"a", "b"}  # fail open
    assert lb.unhealthy_routed_out() == []


def test_deregistration_connection_termination_resets_at_the_end_of_the_drain() -> None:
    """deregistration_delay.connection_termination.enabled (default false): true resets
    what is left on a deregistered, still serving pod when its drain ends."""
    params = {
        **LONG,
        "pod.prestop_sleep": "600s",
        "pod.termination_grace_period_seconds": "700s",
        "lb.deregistration_delay": "300s",
    }
    kept = sim("cloud-lb-ip", DELETE, "aws-nlb", trials=30, **params)
    cut = sim(
        "cloud-lb-ip",
        DELETE,
        "aws-nlb",
        trials=30,
        **params,
        **{"lb.deregistration_connection_termination": True},
    )
    assert kept["at_cloud_lb_reset"].isna().all()
    assert np.allclose(cut["at_cloud_lb_reset"] - cut["at_cloud_lb_deregistering"], 300.0)
    assert np.allclose(cut["at_cloud_lb_reset"], cut["at_lb_deregistered"])


def test_a_pod_restarted_in_place_is_registered_again_from_scratch() -> None:
    """A killed container restarts in ~1-5 s: its requests fail meanwhile (refused), its
    endpoint goes not-ready and back, so the controller deregisters and registers the same
    IP again: out of rotation for the registration (70-120 s) + propagation (30-40 s),
    capacity lost but no request. A restart before the controller reconciles leaves the
    target alone (it reads the slices as they are then): a trial churns with the chance
    that the sync delay, uniform(0.2 s, 2 s), is shorter than its not-ready window."""
    df = sim("cloud-lb-ip", {"kind": "pod-kill", "target": "app-pod"}, "aws-nlb", trials=100)
    assert (df["recovery_s"] < 10).all()
    churn = df[df["at_cloud_lb_deregistering"].notna()]
    window = df["at_endpoints_added"] - df["at_endpoints_removed"]
    chance = np.clip((window - 0.2) / 1.8, 0.0, 1.0)
    spread = np.sqrt((chance * (1 - chance)).sum())
    assert abs(len(churn) - chance.sum()) < 4 * spread + 1
    assert 0 < len(churn) < len(df)
    assert (churn["at_cloud_lb_deregistering"] < churn["at_cloud_lb_registered"]).all()
    back = churn["at_lb_routed_in"] - churn["at_cloud_lb_registered"]
    assert back.between(70.0 + 30.0, 120.0 + 40.0).all()
    assert df.loc[df["at_cloud_lb_deregistering"].isna(), "at_cloud_lb_registered"].isna().all()


def test_ip_targets_under_a_drain_and_a_stopped_kubelet() -> None:
    """A drain evicts gracefully: each evicted pod is a deregistration like a delete, and
    its own checks route it out 70-110 s after it went. A stopped kubelet leaves the pods
    serving: NotReady takes their endpoints, the controller deregisters them, and they go
    on answering the ~2 min of new connections: nothing is lost."""
    drain = sim("cloud-lb-ip", {"kind": "node-drain", "target": "app-pod-node"}, "aws-nlb", 100)
    since = drain["recovery_s"] - drain["at_pod_gone"]
    assert since.between(70.0, 110.0).all()
    stop = sim("cloud-lb-ip", {"kind": "kubelet-stop", "target": "app-pod-node"}, "aws-nlb", 50)
    assert (stop["lost_s"] == 0).all()
    assert (stop["at_cloud_lb_deregistering"] > stop["at_node_not_ready"]).all()
