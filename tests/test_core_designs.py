"""Each NodePort-family design end to end, told as the article tells it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chaoslab
from chaoslab.designs import DESIGNS
from chaoslab.faults import FAULTS, Fault
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import ParamSet
from chaoslab.runner import Cell

NODEPORT = ["clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local"]
K8S_FAULTS = [
    "pod-kill",
    "pod-delete",
    "node-crash",
    "node-partition",
    "kubelet-stop",
    "node-drain",
]


def sim(design: str, fault: object, trials: int = 300, **kw: object):
    return chaoslab.simulate(design, fault, trials=trials, seed=21, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("design", NODEPORT)
@pytest.mark.parametrize("kind", K8S_FAULTS)
def test_every_pair_runs_and_recovers(design: str, kind: str) -> None:
    """With three replicas, no single pod or backend-node fault is a lasting outage."""
    df = sim(design, kind, trials=100)
    assert df["recovered"].all(), df["recovery_s"].describe()
    assert (df["downtime_s"] == 0).all()  # two replicas always serve


def test_nodeport_direct_dies_with_its_entry_node() -> None:
    """The article: clients use one node's IP; nothing moves it when the node dies."""
    df = sim("nodeport-direct", {"kind": "node-crash", "target": "entry-node"})
    assert not df["recovered"].any()
    assert np.allclose(df["downtime_s"], 1800.0)
    repaired = sim(
        "nodeport-direct",
        {"kind": "node-crash", "target": "entry-node", "repair": "5m"},
        params={"kubelet.node_boot_time": "60s"},
    )
    assert repaired["recovered"].all()
    # back when the node has booted (360 s) and its own pod is Ready again
    assert repaired["recovery_s"].between(360, 360 + 30).all()


def test_entry_node_of_an_lb_design_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="no single entry node"):
        sim("nodeport-lb", {"kind": "node-crash", "target": "entry-node"}, trials=1)


def test_lb_with_cluster_policy_pays_the_grace_period() -> None:
    """eTP Cluster: every node forwards 1/3 of new connections to the dead pod until the
    endpoint is removed (~grace), whatever the LB does; eTP Local: only the LB's detection."""
    cluster = sim("nodeport-lb", "node-crash")
    local = sim("nodeport-lb-local", "node-crash")
    assert cluster["recovery_s"].median() > 40
    assert local["recovery_s"].median() < 13  # HAProxy: 3 x (2 s timeout) + 2 x 2 s + U(0, 2 s)
    assert local["lost_s"].mean() < cluster["lost_s"].mean() / 4
    # the LB marked the dead node down long before the endpoints moved
    assert (cluster["at_lb_marked_down"] < cluster["at_endpoints_removed"]).all()


def test_article_era_is_faster_to_notice_but_slower_to_evict() -> None:
    old = sim("nodeport-lb", "node-crash", profile="k8s-1.10")
    new = sim("nodeport-lb", "node-crash", profile="k8s-1.32")
    assert old["at_node_not_ready"].median() + 8 < new["at_node_not_ready"].median()
    assert old["at_pod_evicted"].median() < 310 < new["at_pod_evicted"].median()


def test_idle_node_crash_costs_only_lb_traffic() -> None:
    """A worker without app pods: eTP Cluster loses its share of LB traffic until marked down."""
    df = sim("nodeport-lb", {"kind": "node-crash", "target": "idle-node"})
    lb_down = df["at_lb_marked_down"]
    assert np.allclose(df["recovery_s"], lb_down)
    assert df["at_pod_evicted"].isna().all()
    local = sim("nodeport-lb-local", {"kind": "node-crash", "target": "idle-node"})
    assert (local["lost_s"] == 0).all()  # never in rotation: no local endpoint


def test_partition_heals_and_pods_come_back_in_place() -> None:
    df = sim("clusterip", {"kind": "node-partition", "duration": "60s"})
    assert df["at_node_reconnected"].eq(60).all()
    assert df["at_pod_evicted"].isna().all()  # healed before tolerationSeconds
    assert df["at_node_ready"].between(60, 60 + 7 + 5 + 1e-9).all()


def test_statefulset_single_replica_waits_forever() -> None:
    """A single StatefulSet replica on a dead node: outage for the whole horizon."""
    spec = {"app_kind": "StatefulSet", "replicas": 1}
    df = sim("nodeport-lb", "node-crash", cluster=spec, trials=50)
    assert not df["recovered"].any()
    deployment = sim("nodeport-lb", "node-crash", cluster={"replicas": 1}, trials=50)
    assert deployment["recovered"].all()
    assert deployment["recovery_s"].between(340, 420).all()  # grace + 300 s + start + probe


def test_design_fault_matrix_is_total() -> None:
    """Every design x fault x common target either builds or is refused with a reason, and
    the pairs every design must support (a pod fault, an app node's crash) do build."""
    ps = ParamSet.resolve()
    for design in DESIGNS:
        for kind in FAULTS:
            for target in ("", "app-pod", "app-pod-node", "idle-node", "entry-node"):
                cell = Cell(design, Fault(kind, target), ps, ClusterSpec(), {}, 60.0)
                try:
                    cell.check()
                except ValueError as e:
                    assert len(str(e)) > 20, (design, kind, target)
                    assert (kind, target) not in MUST_RUN, (design, kind, target, str(e))


MUST_RUN = {
    ("pod-kill", "app-pod"),
    ("pod-delete", "app-pod"),
    ("node-crash", "app-pod-node"),
    ("node-partition", "app-pod-node"),
    ("kubelet-stop", "app-pod-node"),
    ("node-drain", "app-pod-node"),
}


def test_connections_hang_on_a_dead_node_and_reset_on_a_killed_pod() -> None:
    crash = sim("clusterip", "node-crash", trials=20)
    kill = sim("clusterip", "pod-kill", trials=20)
    assert np.allclose(crash["connections_hung"], 1 / 3)
    assert np.allclose(kill["connections_reset"], 1 / 3)
    assert np.allclose(kill["connections_hung"], 0)


def test_availability_curve_is_stored_per_trial() -> None:
    df = sim("nodeport-lb", "node-crash", trials=5)
    for t, a in zip(df["a_t"], df["a_v"], strict=True):
        assert t[0] == 0 and len(t) == len(a)
        assert a[-1] == 1.0 and min(a) < 1.0
    assert math.isfinite(df["recovery_s"].max())
