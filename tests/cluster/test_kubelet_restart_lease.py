"""A restarted kwok (the kubelet stand-in) takes its node back at once, as a kubelet does.

A kubelet GETs its Lease from the API and renews it at once (k8s.io/component-helpers
apimachinery/lease/controller.go ensureLease). kwok v0.8.0 looks in its informer cache
instead, which it does not wait to fill, and takes a Lease held by its previous process
only once it expired: either way it writes the node's status a renew interval or more
late. The stand-in's start deletes the Lease first (`kubelets.forget_lease`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from polling import wait_for  # tests/ is on sys.path (rootdir)

from chaoslab.live.cluster import Build, ClusterConfig, LocalCluster
from chaoslab.live.cluster.kubelets import forget_lease
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import ParamSet

#: a lease long enough that the node is NotReady (8 s grace) before the stopped kwok's
#: Lease expires: a restart then finds it held by the old process in any case
LEASE_S = 20
#: kwok renews every lease / 4 (sigs.k8s.io/kwok v0.8.0 controller.go
#: initNodeLeaseController), the kubelet's fraction
RENEW_S = LEASE_S / 4
NODE = "compute-1"
#: the CI timers of tests/cluster/conftest.py but that lease
TIMERS = {
    "kube_controller_manager.node_monitor_period": "1s",
    "kube_controller_manager.node_monitor_grace_period": "8s",
    "kubelet.node_lease_duration_seconds": f"{LEASE_S}s",
    "kube_apiserver.default_not_ready_toleration_seconds": "10s",
    "kube_apiserver.default_unreachable_toleration_seconds": "10s",
}


@pytest.fixture(scope="module")
def cluster(
    k8s_build: Build, kwok_build: Build, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    spec = ClusterSpec(masters=0, controllers=1, computes=1, replicas=1)
    config = ClusterConfig.from_params(ParamSet.resolve(overrides=TIMERS), spec, source="test")
    state = Path(tmp_path_factory.mktemp("lease")) / "state"
    c = LocalCluster.up(config, state_dir=state, name="pytest-lease", build=k8s_build)
    try:
        yield c
    finally:
        c.down()


def _ready(core: Any, node: str) -> str:
    n = core.read_node(node)
    return next(c.status for c in n.status.conditions if c.type == "Ready")


def _kwok_lines(log: Path, offset: int) -> list[dict[str, Any]]:
    """kwok's JSON log lines written after ``offset`` (its log is appended to)."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _when(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


@pytest.mark.cluster
def test_a_kwok_restarted_after_not_ready_writes_ready_within_half_a_renew_interval(
    cluster: LocalCluster,
) -> None:
    core = client.CoreV1Api(cluster.admin_client())
    # on the host in logs/, inside the node's namespace in the data plane's folder
    log = next(cluster.layout.dir.rglob(f"kwok-{NODE}.log"))
    cluster.stop_kubelet(NODE)
    try:
        wait_for("NotReady", lambda: _ready(core, NODE) != "True", timeout=60)
    finally:
        offset = log.stat().st_size
        cluster.start_kubelet(NODE)
    wait_for("Ready again", lambda: _ready(core, NODE) == "True", timeout=60)
    lines = _kwok_lines(log, offset)
    failed = [ln for ln in lines if ln["msg"] == "Failed to sync lease"]
    patched = [ln for ln in lines if ln["msg"] == "Patch node" and ln.get("node") == NODE]
    assert not failed, failed[0]["err"]
    assert patched, f"the restarted kwok never patched {NODE}: {[ln['msg'] for ln in lines]}"
    # kwok's own clock, from its first line to its first write of the node's status: the
    # 10 s (here RENEW_S) retry of a lease it could not take would miss this bound
    took = _when(patched[0]) - _when(lines[0])
    assert took < RENEW_S / 2, f"{took:.2f} s: {[ln['msg'] for ln in lines[:6]]}"


@pytest.mark.cluster
def test_forgetting_a_lease_that_is_not_there_is_no_error(cluster: LocalCluster) -> None:
    assert forget_lease(cluster.layout.dir, "no-such-node") is False


def test_an_unreachable_api_leaves_a_warning_and_kwok_starts_anyway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # port 1 on loopback: nothing listens, the connection is refused at once
    (tmp_path / "admin.kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    assert forget_lease(tmp_path, NODE) is False
    err = capsys.readouterr().err
    assert err.startswith(f"kwok-{NODE}: could not delete its Lease (") and err.count("\n") == 1
