"""Control-plane faults (issue 11 item 5) against their closed forms (docs/model-kubernetes.md).

- Leader election (client-go ``leaderelection.go``, defaults 15 s / 10 s / 2 s): after the
  leader's process dies a standby takes the Lease within [lease - retry, lease + 2 x 2.2
  retry] (its observation of the last renewal and its acquiring poll each lag up to
  2.2 retry); with one master only the restarted process can, a full lease after it starts.
- A leader that cannot renew (API server down) stops after the renew deadline, 10-12 s,
  and exits; a controller manager started while no API server answers exits at start-up
  and the kubelet restarts it after its crash-loop back-off (10 s, doubling): it reads
  the Lease at the first start after the API server serves again (its start-up after
  the outage: ``kube_apiserver.start_time``).
- A new leader's node lifecycle controller starts with an empty nodeHealthMap: a node that
  stopped heartbeating goes Unknown exactly one grace period after the new leader's first
  pass (the monitor grid starts there), whatever happened before.
- etcd: a write needs more than half of the members (one per master).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chaoslab
from chaoslab.faults import FAULTS, Fault
from chaoslab.params import lookup

LEASE, RENEW, RETRY, JITTER = 15.0, 10.0, 2.0, 1.2
G = 50.0
G50 = {"kube_controller_manager.node_monitor_grace_period": f"{G:g}s"}
N = 200


def never(df, milestone: str) -> bool:
    """No trial reached ``milestone`` (its column is absent or all NaN)."""
    col = "at_" + milestone.replace(".", "_")
    return col not in df or bool(df[col].isna().all())


def run(design: str, fault: object, params: dict[str, str], masters: int = 3, n: int = N):
    return chaoslab.simulate(
        design, fault, params=params, cluster={"masters": masters}, trials=n, seed=5
    )


def test_a_restarted_controller_manager_is_replaced_by_a_standby_within_the_lease(
    no_latency: dict[str, str],
) -> None:
    df = run("nodeport-lb", "controller-manager-restart", no_latency)
    elected = df["at_controller_manager_leader_elected"]
    assert elected.min() >= LEASE - RETRY - 1e-9
    assert elected.max() <= LEASE + 2 * (1 + JITTER) * RETRY + 1e-9
    # nothing failed in the data plane: users see nothing
    assert (df["lost_s"] == 0).all()
    assert never(df, "node.not_ready") and never(df, "endpoints.removed")


def test_with_one_master_only_the_restarted_process_can_lead(no_latency: dict[str, str]) -> None:
    params = {**no_latency, "kube_controller_manager.restart_time": "3s"}
    df = run("nodeport-lb", "controller-manager-restart", params, masters=1)
    elected = df["at_controller_manager_leader_elected"].to_numpy()
    # a new process reads the record at its start and waits a full lease from there
    assert elected.min() >= 3.0 + LEASE - 1e-9
    assert elected.max() <= 3.0 + LEASE + (1 + JITTER) * RETRY + 1e-9


def test_the_new_leader_starts_the_grace_period_over(no_latency: dict[str, str]) -> None:
    """A node crashes; the controller manager restarts 30 s later, before the grace period
    is up. NotReady comes one grace period after the new leader's first pass, not 50 s
    after the last heartbeat."""
    fault = {"kind": "node-crash", "with": "controller-manager-restart", "with_delay": "30s"}
    df = run("nodeport-lb", fault, no_latency)
    gap = df["at_node_not_ready"] - df["at_controller_manager_started"]
    assert np.allclose(gap, G, atol=1e-6)
    # without the restart the NotReady is within [G - h, G + P] of the crash
    plain = run("nodeport-lb", "node-crash", no_latency)
    assert plain["at_node_not_ready"].max() <= G + 5.0 + 1e-9
    assert df["at_node_not_ready"].min() > plain["at_node_not_ready"].max()


def test_the_taint_manager_counts_toleration_seconds_again(no_latency: dict[str, str]) -> None:
    """A restart after the taint: the new taint manager's queue is empty, so eviction comes
    tolerationSeconds after the new leader started, not after the taint."""
    fault = {"kind": "node-crash", "with": "controller-manager-restart", "with_delay": "120s"}
    df = run("nodeport-lb", fault, no_latency)
    assert (df["at_node_tainted"] < 120).all()
    gap = df["at_pod_evicted"] - df["at_controller_manager_started"]
    assert np.allclose(gap, 300.0, atol=1e-6)


def test_a_leader_without_the_api_server_exits_after_the_renew_deadline(
    no_latency: dict[str, str],
) -> None:
    params = {**no_latency, "kube_apiserver.start_time": "5s"}
    df = run("nodeport-lb", "apiserver-down", params)
    lost = df["at_controller_manager_leader_lost"]
    assert lost.min() >= RENEW - 1e-9 and lost.max() <= RENEW + RETRY + 1e-9
    # the API server serves its start-up time after the 60 s stop
    assert np.allclose(df["at_apiserver_up"], 65.0)
    # standbys saw the last renewal long ago and never exited: they take the Lease at
    # their first poll after the API server answers again
    elected = df["at_controller_manager_leader_elected"]
    assert elected.min() >= 65.0 and elected.max() <= 65.0 + (1 + JITTER) * RETRY + 1e-9
    # kube-proxy kept its rules and no endpoint changed: nothing for the users
    assert (df["lost_s"] == 0).all()
    assert never(df, "node.not_ready") and never(df, "endpoints.removed")


#: restart 1 s, API server start-up 2 s, back-off 10 s doubling (the catalogue's)
CRASH_LOOP = {"kube_controller_manager.restart_time": "1s", "kube_apiserver.start_time": "2s"}


@pytest.mark.parametrize(
    ("outage", "first_run"),
    [
        # up at 17 s; starts at lost + 1 (11-13 s: exits), lost + 1 + 10 + 1 (22-24 s: runs)
        (15.0, 12.0),
        # up at 32 s; the second start (22-24 s) exits too, the third is 20 s + 1 s later
        (30.0, 33.0),
    ],
)
def test_a_controller_manager_started_without_the_api_server_crash_loops(
    outage: float, first_run: float, no_latency: dict[str, str]
) -> None:
    """One master: the leader exits a renew deadline after the API server went away; each
    process the kubelet starts before the API server serves exits at start-up, so the Lease
    is read at the first back-off slot after the return and taken a full lease later."""
    fault = {"kind": "apiserver-down", "duration": f"{outage}s"}
    df = run("nodeport-lb", fault, {**no_latency, **CRASH_LOOP}, masters=1)
    assert np.allclose(df["at_apiserver_up"], outage + 2.0)
    gap = df["at_controller_manager_leader_elected"] - df["at_controller_manager_leader_lost"]
    assert gap.min() >= first_run + LEASE - 1e-9
    assert gap.max() <= first_run + LEASE + (1 + JITTER) * RETRY + 1e-9


def test_after_the_crash_loop_the_node_lifecycle_rows_follow_the_new_leader(
    no_latency: dict[str, str],
) -> None:
    """A node crashes and the API server stops 4 s later for 15 s (one master): the crash
    is noticed one grace period after the crash-looped controller manager's first pass."""
    fault = {"kind": "node-crash", "with": "apiserver-down", "with_delay": "4s"}
    params = {**no_latency, **CRASH_LOOP, "fault.apiserver_down_time": "15s"}
    df = run("nodeport-lb", fault, params, masters=1)
    # lost 14-16 s, the first run 12 s later, then the whole lease
    assert df["at_controller_manager_leader_elected"].min() >= 14.0 + 12.0 + LEASE - 1e-9
    gap = df["at_node_not_ready"] - df["at_controller_manager_started"]
    assert np.allclose(gap, G, atol=1e-6)


def test_a_stall_shorter_than_the_renew_deadline_marks_nodes_not_ready_when_grace_is_short(
    no_latency: dict[str, str],
) -> None:
    """The controller manager keeps leading through an 8 s API stall, with its old probe
    timestamps: under a 10 s grace period a pass after the stall that comes before the
    node's next renewal is seen marks it Unknown (spuriously). Under 50 s it never does."""
    stall = {"kind": "apiserver-down", "duration": "8s"}
    grace10 = {
        **no_latency,
        "kube_controller_manager.node_monitor_grace_period": "10s",
        "kube_apiserver.start_time": "0s",  # a stall: no process restarts
    }
    short = run("nodeport-lb", stall, grace10)
    assert short["at_node_not_ready"].notna().mean() > 0.5
    assert short["at_node_not_ready"].min() >= 8.0  # written only once the API answers
    assert never(short, "controller_manager.leader_lost")
    assert never(run("nodeport-lb", stall, {**grace10, **G50}), "node.not_ready")


@pytest.mark.parametrize(("masters", "quorum"), [(3, True), (2, False), (1, False)])
def test_one_master_down_keeps_etcd_quorum_only_with_three(
    masters: int, quorum: bool, no_latency: dict[str, str]
) -> None:
    df = run("nodeport-lb", "master-crash", no_latency, masters=masters, n=20)
    if quorum:
        assert never(df, "apiserver.down")
        # the leader was on the crashed master: a standby leads within the lease
        assert df["at_controller_manager_leader_elected"].max() <= LEASE + 4.4 * RETRY + 1e-9
    else:
        assert (df["at_apiserver_down"] == 0).all()
        assert never(df, "apiserver.up") and never(df, "controller_manager.leader_elected")


def test_without_quorum_a_dead_pods_endpoint_is_never_removed(no_latency: dict[str, str]) -> None:
    """A worker crashes while etcd has no quorum (2 masters, one down): the endpoint stays,
    every surviving kube-proxy keeps DNATing 1/3 of new connections to the dead pod."""
    fault = {"kind": "node-crash", "with": "master-crash"}
    frozen = run("nodeport-lb", fault, no_latency, masters=2, n=50)
    assert never(frozen, "endpoints.removed")
    assert np.isinf(frozen["recovery_s"]).all()
    # the LB drops the crashed node within fall x interval; the other nodes lose 1/3 after
    assert frozen["lost_s"].min() > (1800.0 - 20.0) / 3
    healthy = run("nodeport-lb", fault, no_latency, masters=3, n=50)
    assert healthy["at_endpoints_removed"].notna().all()
    assert healthy["lost_s"].max() < 100.0


def test_the_control_plane_comes_back_with_its_master(no_latency: dict[str, str]) -> None:
    fault = {"kind": "master-crash", "repair": "120s"}
    df = run("nodeport-lb", fault, {**no_latency, "kubelet.node_boot_time": "60s"}, masters=1, n=20)
    assert np.allclose(df["at_apiserver_up"], 180.0)
    # the new process reads the record when it starts: a lease from then
    assert (df["at_controller_manager_leader_elected"] >= 180.0 + LEASE).all()


def test_with_names_every_fault_kind_and_shows_in_the_result_name() -> None:
    choices = set(lookup("fault.with").choices)
    assert choices == set(FAULTS) | {"none"}
    f = Fault("node-crash", "app-pod-node", {"with": "apiserver-down", "with_delay": "20s"})
    assert f.result_name == "node-crash/with-apiserver-down/with_delay-20s"
    assert f.overrides() == {"fault.with": "apiserver-down", "fault.with_delay": "20s"}


def test_workers_only_faults_refuse_a_master_and_control_plane_faults_a_worker() -> None:
    from chaoslab.designs.base import ImpossibleTarget

    with pytest.raises(ImpossibleTarget, match="control-plane node"):
        chaoslab.simulate("nodeport-lb", {"kind": "node-crash", "target": "master-1"}, trials=1)
    with pytest.raises(ImpossibleTarget, match="acts on a control-plane node"):
        chaoslab.simulate(
            "nodeport-lb", {"kind": "master-crash", "target": "controller-1"}, trials=1
        )


def test_no_master_no_control_plane_fault() -> None:
    from chaoslab.faults import ImpossibleFault

    with pytest.raises(ImpossibleFault, match="no control-plane node"):
        chaoslab.simulate("nodeport-lb", "apiserver-down", cluster={"masters": 0}, trials=1)


def test_a_heal_just_before_the_grace_period_still_costs_a_notready(
    no_latency: dict[str, str],
) -> None:
    """A partition healing 3 s before the grace period ends: the first renewal lands up
    to 7 s later (back-off) and is seen at the next pass; a pass past probe + grace in
    between marks the node Unknown after the heal. A 20 s partition never can."""
    late = run("nodeport-lb", {"kind": "node-partition", "duration": "47s"}, no_latency)
    after_heal = (late["at_node_not_ready"] >= 47.0).mean()
    assert 0.1 < after_heal < 1.0
    short = run("nodeport-lb", {"kind": "node-partition", "duration": "20s"}, no_latency)
    assert never(short, "node.not_ready")


@settings(max_examples=12, deadline=None)
@given(outage=st.floats(min_value=0.5, max_value=300.0), masters=st.sampled_from([1, 3]))
def test_an_api_outage_alone_never_costs_users_under_the_default_grace(
    outage: float, masters: int
) -> None:
    """Whatever its length: shorter than the renew deadline, the leader keeps probe
    timestamps no more than 15.2 s old and sees renewals again within 12 s (grace 50 s);
    longer, a new leader counts the grace period from its first pass."""
    fault = {"kind": "apiserver-down", "duration": f"{outage}s"}
    # the outage is the whole time no API server answers: no start-up on top
    df = run("nodeport-lb", fault, {"kube_apiserver.start_time": "0s"}, masters=masters, n=20)
    assert never(df, "node.not_ready") and (df["lost_s"] == 0).all()
    lost_leader = df["at_controller_manager_leader_lost"].notna()
    if outage < RENEW:
        assert not lost_leader.any()
    elif outage > RENEW + RETRY:
        assert lost_leader.all()
