"""The real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
from the Go build) with kwok nodes: what ``chaoslab cluster up`` promises."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from polling import wait_for  # tests/ is on sys.path (rootdir)

from chaoslab.live.cluster import Build, LocalCluster
from chaoslab.live.cluster.procs import alive
from chaoslab.live.cluster.state import ClusterState

pytestmark = pytest.mark.cluster

GRACE_S = 8.0  # conftest.CI_TIMERS node_monitor_grace_period


def _core(cluster: LocalCluster) -> Any:
    return client.CoreV1Api(cluster.admin_client())


def test_every_component_reports_the_release_it_was_built_from(
    local_cluster: LocalCluster, k8s_build: Build, kwok_build: Build
) -> None:
    release = k8s_build.versions["kubernetes"]
    info = client.VersionApi(local_cluster.admin_client()).get_code()
    assert info.git_version == release
    assert info.minor == release.split(".")[1]
    for command in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        out = subprocess.run([k8s_build.bin(command), "--version"], capture_output=True, text=True)
        assert out.stdout.split() == ["Kubernetes", release], command
    etcd = subprocess.run([k8s_build.bin("etcd"), "--version"], capture_output=True, text=True)
    assert f"etcd Version: {k8s_build.versions['etcd'].lstrip('v')}" in etcd.stdout
    kwok = subprocess.run([kwok_build.bin("kwok"), "--version"], capture_output=True, text=True)
    assert kwok_build.versions["kwok"].lstrip("v") in kwok.stdout


def test_status_shows_every_component_running_and_healthy(local_cluster: LocalCluster) -> None:
    rows = {r.name: r for r in local_cluster.status()}
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert rows[name].running and rows[name].healthy, rows[name]
    kwoks = [r for r in rows.values() if r.name.startswith("kwok-")]
    assert len(kwoks) == len(local_cluster.layout.config.nodes())
    assert all(r.running for r in kwoks)


def test_the_apps_pods_run_one_per_controller_and_are_ready(local_cluster: LocalCluster) -> None:
    # as `up` recorded them: drills in the same session move pods afterwards
    cfg = local_cluster.layout.config
    placed = local_cluster.state.info["app_pods"]
    controllers = {n.name for n in cfg.nodes() if n.role == "controller"}
    assert len(placed) == 3
    assert {p["node"] for p in placed.values()} == controllers
    assert all(p["ready"] == "True" for p in placed.values())
    svc = _core(local_cluster).read_namespaced_service(cfg.app, cfg.namespace)
    assert svc.spec.type == "NodePort" and svc.spec.ports[0].node_port == cfg.node_port


def test_masters_are_tainted_and_nodes_labelled_by_role(local_cluster: LocalCluster) -> None:
    nodes = {n.metadata.name: n for n in _core(local_cluster).list_node().items}
    master = nodes["master-1"]
    assert "node-role.kubernetes.io/control-plane" in master.metadata.labels
    assert any(
        t.key == "node-role.kubernetes.io/control-plane" and t.effect == "NoSchedule"
        for t in master.spec.taints or []
    )
    assert "node-role.kubernetes.io/controller" in nodes["controller-1"].metadata.labels
    assert all(n.spec.pod_cidr for n in nodes.values())


def test_an_anonymous_call_is_refused(local_cluster: LocalCluster) -> None:
    url = f"{local_cluster.layout.url('apiserver')}/api/v1/namespaces/demo/pods"
    ctx = ssl.create_default_context(cafile=str(local_cluster.layout.pki.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert e.value.code == 403
    status = json.loads(e.value.read())
    assert status["reason"] == "Forbidden"
    assert 'User "system:anonymous"' in status["message"]


FETCH = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"


def test_the_nodeport_answers_through_every_nodes_kube_proxy(local_cluster: LocalCluster) -> None:
    dp = local_cluster.dataplane()
    if dp is None:
        pytest.skip("no data plane: needs root and chaoslab.live.cluster.dataplane")
    cfg = local_cluster.layout.config
    pods = _core(local_cluster).list_namespaced_pod(cfg.namespace, label_selector=f"app={cfg.app}")
    names = {p.metadata.name for p in pods.items}
    for node in ("master-1", "compute-2"):  # neither runs an app pod: kube-proxy forwards
        url = f"http://{dp.node_ip(node)}:{cfg.node_port}/hostname"
        out = subprocess.run(
            ["ip", "netns", "exec", dp.client_ns, sys.executable, "-c", FETCH, url],
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() in names, (node, out.stderr)


def _ready(node: Any) -> Any:
    return next(c for c in node.status.conditions if c.type == "Ready")


def test_a_node_whose_kubelet_stops_goes_not_ready_after_the_grace_and_is_tainted(
    local_cluster: LocalCluster,
) -> None:
    core, node = _core(local_cluster), "compute-1"
    coord = client.CoordinationV1Api(local_cluster.admin_client())
    local_cluster.stop_kubelet(node)
    try:
        lease = coord.read_namespaced_lease(node, "kube-node-lease")
        assert lease.spec is not None
        last_renew = lease.spec.renew_time
        n = wait_for(
            "NotReady",
            lambda: (x := core.read_node(node)) and _ready(x).status != "True" and x,
        )
        cond = _ready(n)
        assert cond.status == "Unknown" and cond.reason == "NodeStatusUnknown"
        # the controller marks it no earlier than a grace after the last renewal it saw
        # (lastTransitionTime has whole seconds)
        since = (cond.last_transition_time - last_renew).total_seconds()
        assert since >= GRACE_S - 1.0
        tainted = wait_for(
            "unreachable:NoExecute taint",
            lambda: any(
                t.key == "node.kubernetes.io/unreachable" and t.effect == "NoExecute"
                for t in core.read_node(node).spec.taints or []
            ),
        )
        assert tainted
    finally:
        local_cluster.start_kubelet(node)
    wait_for("Ready again", lambda: _ready(core.read_node(node)).status == "True")


# ------------------------------------------------------------- up / status / down via the CLI


def chaoslab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoslab", *args], capture_output=True, text=True, timeout=timeout
    )


SMALL = """\
title: one node
cluster:
  nodes: {master: 0, controller: 1, compute: 0}
  app: {replicas: 1}
designs: [nodeport-lb]
faults:
  - {kind: pod-kill, target: app-pod}
"""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_cli_up_status_down_leaves_nothing_behind(tmp_path: Path, k8s_build: Build) -> None:
    exp, state = tmp_path / "small.yaml", tmp_path / "state"
    exp.write_text(SMALL)
    up = chaoslab("cluster", "up", str(exp), "--state", str(state))
    try:
        assert up.returncode == 0, up.stderr
        recorded = ClusterState.load(state)
        assert recorded is not None and recorded.phase == "up"
        again = chaoslab("cluster", "up", str(exp), "--state", str(state))
        assert again.returncode == 2 and again.stderr.count("\n") == 1
        assert "already holds a cluster" in again.stderr
        status = chaoslab("cluster", "status", "--state", str(state))
        assert status.returncode == 0 and "unhealthy" not in status.stdout
    finally:
        down = chaoslab("cluster", "down", "--state", str(state))
    assert down.returncode == 0, down.stderr
    assert sorted(p.name for p in state.iterdir()) == ["logs"]  # kept for reading
    assert f"logs kept in {state / 'logs'}" in down.stdout
    assert chaoslab("cluster", "down", "--state", str(state), "--purge").returncode == 0
    assert not state.exists()
    assert not [p.name for p in recorded.processes if alive(p.pid, p.start)]
    assert not [n for n, port in recorded.ports.items() if _listening(port)]


def test_down_cleans_up_after_up_was_killed(tmp_path: Path, k8s_build: Build) -> None:
    exp, state = tmp_path / "small.yaml", tmp_path / "state"
    exp.write_text(SMALL)
    up = subprocess.Popen(
        [sys.executable, "-m", "chaoslab", "cluster", "up", str(exp), "--state", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # kill it once the API server has been started (two processes recorded)
        wait_for(
            "kube-apiserver started",
            lambda: (s := ClusterState.load(state)) is not None and len(s.processes) >= 2,
        )
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    recorded = ClusterState.load(state)
    assert recorded is not None and recorded.phase == "starting"
    status = chaoslab("cluster", "status", "--state", str(state))
    assert "phase starting" in status.stdout
    down = chaoslab("cluster", "down", "--state", str(state), "--purge")
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert not [p.name for p in recorded.processes if alive(p.pid, p.start)]


ORPHAN_PARENT = """\
import sys, time
from pathlib import Path
from chaoslab.live.cluster import LocalCluster, config_from_experiment
from chaoslab.live.cluster.reaper import start_reaper
root, exp = Path(sys.argv[1]), Path(sys.argv[2])
reaper = start_reaper([root], root / "reaper.log")
print(reaper.pid, flush=True)
LocalCluster.up(config_from_experiment(exp), state_dir=root / "state", name="orphan")
print("up", flush=True)
time.sleep(900)
"""


def test_a_cluster_outlives_no_owner_killed_with_sigkill(tmp_path: Path, k8s_build: Build) -> None:
    """A pytest-like owner brings a cluster up (with its data plane when root) under a
    reaper and is SIGKILLed: no teardown of its own runs, and still nothing is left."""
    from chaoslab.live.lab.netns import namespaces_with_prefix

    exp, root = tmp_path / "small.yaml", tmp_path / "owned"
    exp.write_text(SMALL)
    root.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, str(root), str(exp)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        reaper_pid = int(owner.stdout.readline())
        assert owner.stdout.readline().strip() == "up", "the owner's cluster did not come up"
        recorded = ClusterState.load(root / "state")
        assert recorded is not None and recorded.phase == "up"
        prefix = recorded.info.get("dataplane") and _netns_prefix(root / "state")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    wait_for("the reaper to finish", lambda: not alive(reaper_pid), timeout=120)
    assert not [p.name for p in recorded.processes if alive(p.pid, p.start)]
    assert not [n for n, port in recorded.ports.items() if _listening(port)]
    assert not (root / "state").exists()
    if prefix:
        assert namespaces_with_prefix(prefix) == []
    assert "removed" in (root / "reaper.log").read_text()


def _netns_prefix(state: Path) -> str:
    from chaoslab.live.cluster.local import _netns_name

    return f"dp-{_netns_name(state.resolve())}-"
