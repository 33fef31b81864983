"""pod-kill against real kubelet code: hollow nodes (`chaoslab.live.cluster.hollow`).

The cluster tests bring up a small cluster of their own (1 master, 2 controllers that run
kubemark's hollow kubelet, 1 compute on kwok) from ``experiments/cluster-pod-kill.yaml``
and drill one pod-kill through ``chaoslab drill``'s plan and run. The other tests check
the configuration without a cluster.

Network safety: the prober runs in the data plane's client namespace; the kubelets' HTTP
readiness probes run inside the node namespaces against pod IPs there; nothing is sent
from the host namespace to a pod, node or Service address. The cluster is taken down at
the end, also on failure (and by the session's reaper if pytest is killed).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from polling import wait_for  # tests/ is on sys.path (rootdir)

from chaoslab.errors import LiveError, UserError
from chaoslab.live.cluster import ClusterConfig, ClusterError, LocalCluster, config_from_experiment
from chaoslab.live.cluster.hollow import argv, kill, renew, targets, with_readiness_probe
from chaoslab.live.cluster.objects import app_objects
from chaoslab.params import ParamSet

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "cluster-pod-kill.yaml"
#: what the real kubelet, prober and controllers must show after one kill
SEEN = {
    "container.died",
    "container.restarted",
    "pod.not_ready",
    "endpoints.removed",
    "pod.ready",
    "endpoints.added",
    "proxy.synced",
    "probe.first_failed",
    "probe.last_failed",
}


def _ps(**over: str) -> ParamSet:
    """The catalogue with a fixed app start (its default is a distribution)."""
    return ParamSet.resolve(overrides={"pod.container_start_time": "2s", **over})


# --------------------------------------------------------------------------- no cluster


def test_hollow_nodes_are_named_by_node_or_role_and_an_unknown_one_is_refused() -> None:
    cfg = ClusterConfig.from_params(_ps(), hollow=["controller", "compute-2"])
    assert cfg.hollow_nodes == ("controller-1", "controller-2", "controller-3", "compute-2")
    assert ClusterConfig.from_params(_ps()).hollow_nodes == ()
    with pytest.raises(UserError, match=r"live.hollow_nodes: no node or role workr"):
        ClusterConfig.from_params(_ps(), hollow=["workr"])


def test_hollow_timers_come_from_the_catalogue_and_what_the_kubelet_cannot_run_is_refused() -> None:
    cfg = ClusterConfig.from_params(
        _ps(**{"probe.period_seconds": "2s", "pod.container_start_time": "1.5s"}),
        hollow=["controller"],
    )
    assert cfg.timers.readiness_probe == {
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "initialDelaySeconds": 0,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert cfg.timers.hollow["--app-start-time"] == "1500ms"
    assert "probe.period_seconds" in cfg.timers.sources
    with pytest.raises(UserError, match="pod.container_start_time: the real components take"):
        ClusterConfig.from_params(ParamSet.resolve(), hollow=["master"])
    with pytest.raises(UserError, match="kubelet.pleg_relist_period: the hollow kubelet"):
        ClusterConfig.from_params(_ps(**{"kubelet.pleg_relist_period": "2s"}), hollow=["master"])
    with pytest.raises(UserError, match="probe.period_seconds: .* whole number of seconds"):
        ClusterConfig.from_params(_ps(**{"probe.period_seconds": "0.5s"}), hollow=["master"])
    # a kwok-only cluster takes what it ignores
    ClusterConfig.from_params(_ps(**{"probe.period_seconds": "0.5s"}))


def test_the_app_gets_its_readiness_probe_only_with_hollow_nodes() -> None:
    kwok_only = ClusterConfig.from_params(_ps())
    hollow = ClusterConfig.from_params(_ps(), hollow=["controller"])

    def probes(cfg: ClusterConfig) -> list[Any]:
        objs = with_readiness_probe(app_objects(cfg), cfg)
        pods = [o["spec"]["template"]["spec"] for o in objs if "template" in o.get("spec", {})]
        return [c.get("readinessProbe") for p in pods for c in p["containers"]]

    assert probes(kwok_only) == [None]
    assert probes(hollow) == [
        {
            "httpGet": {"path": "/", "port": 8080},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "initialDelaySeconds": 0,
            "successThreshold": 1,
            "failureThreshold": 3,
        }
    ]


def test_a_hollow_node_without_the_data_plane_is_refused_with_one_line() -> None:
    class _Layout:
        config = ClusterConfig.from_params(_ps(), hollow=["controller"])

    with pytest.raises(ClusterError, match="controller-1: a hollow node needs the data plane"):
        argv(_Layout(), None, "controller-1")  # type: ignore[arg-type]


def test_the_bundled_experiment_asks_for_hollow_controllers() -> None:
    cfg = config_from_experiment(EXPERIMENT)
    assert cfg.hollow_nodes == ("controller-1", "controller-2", "controller-3")
    assert cfg.timers.readiness_probe is not None


# --------------------------------------------------------------------------- the cluster


def _ci_copy(tmp: Path) -> Path:
    """The bundled experiment on a 4-node cluster, one drill trial, a smaller prediction."""
    text = EXPERIMENT.read_text()
    text = re.sub(r"(?m)^  trials: \d+", "  trials: 1", text)
    text = re.sub(r"(?m)^trials: \d+", "trials: 300", text)
    text = text.replace(
        "designs: [clusterip]",
        "cluster:\n  nodes: {master: 1, controller: 2, compute: 1}\n"
        "  app: {kind: Deployment, replicas: 2, spread: controller}\ndesigns: [clusterip]",
    )
    out = tmp / EXPERIMENT.name
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def hollow_cluster(
    k8s_build: Any, kwok_build: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalCluster, Path]]:
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("hollow nodes need the data plane: root and iptables (network namespaces)")
    path = _ci_copy(tmp_path_factory.mktemp("exp"))
    state = tmp_path_factory.mktemp("hollow") / "state"
    cluster = LocalCluster.up(config_from_experiment(path), state_dir=state, build=k8s_build)
    try:
        yield cluster, path
    finally:
        cluster.down()
    assert not state.exists()
    assert _processes_naming(state) == []  # the hollow kubelets (and their apps) are gone


def _processes_naming(path: Path) -> list[int]:
    """PIDs whose command line names ``path`` (read from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().decode() if d.name.isdigit() else ""
        except OSError:
            continue
        if str(path) in argv:
            out.append(int(d.name))
    return out


def _core(cluster: LocalCluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.admin_client())


@pytest.mark.cluster
def test_hollow_nodes_run_the_real_kubelet_and_give_pods_ips_of_their_podcidr(
    hollow_cluster: tuple[LocalCluster, Path],
) -> None:
    cluster, _ = hollow_cluster
    core = _core(cluster)
    nodes = {n.metadata.name: n for n in core.list_node().items}
    for name in ("controller-1", "controller-2"):
        assert nodes[name].status.node_info.kubelet_version == "v1.37.2"
    assert nodes["compute-1"].status.node_info.kubelet_version.startswith("kwok")
    pods = core.list_namespaced_pod("demo", label_selector="app=web").items
    assert len(pods) == 2
    for p in pods:
        cidr = ipaddress.ip_network(nodes[p.spec.node_name].spec.pod_cidr)
        assert ipaddress.ip_address(p.status.pod_ip) in cidr
        (c,) = p.status.container_statuses
        assert c.ready and c.container_id.startswith("fakeRuntime://")
        assert p.spec.containers[0].readiness_probe.http_get.port == 8080


@pytest.mark.cluster
def test_a_killed_container_exits_137_and_its_kubelet_restarts_it_in_place(
    hollow_cluster: tuple[LocalCluster, Path],
) -> None:
    cluster, _ = hollow_cluster
    core = _core(cluster)
    name = core.list_namespaced_pod("demo", label_selector="app=web").items[0].metadata.name
    binary, sockets = targets(cluster.state.dir, None)
    assert len(sockets) == 2  # the two controllers; compute-1 and master-1 run kwok
    out = kill(binary, sockets, "demo", name)
    assert re.search(r"(?m)^fault_at=\d+\.\d+$", out) and "killed app " in out, out

    def restarted() -> Any:
        p = core.read_namespaced_pod(name, "demo")
        (c,) = p.status.container_statuses
        return c if c.restart_count == 1 and c.ready else None

    c = wait_for("restartCount 1 and Ready again", restarted, timeout=60)
    assert (c.last_state.terminated.exit_code, c.last_state.terminated.reason) == (137, "Error")
    with pytest.raises(LiveError, match="no running container of demo/nosuchpod"):
        kill(binary, sockets, "demo", "nosuchpod")
    # a fresh pod for the drill below: this one would restart after the crash-loop back-off
    assert renew(cluster.state.dir, "demo", name) == f"deleted demo/{name}\n"
    renew(cluster.state.dir, "demo", name)  # again while it terminates: no error

    def fresh() -> bool:
        pods = core.list_namespaced_pod("demo", label_selector="app=web").items
        names = {p.metadata.name for p in pods}
        ready = all(
            p.status.container_statuses and all(c.ready for c in p.status.container_statuses)
            for p in pods
        )
        return name not in names and len(pods) == 2 and ready

    wait_for("the killed pod replaced", fresh, timeout=60)
    assert renew(cluster.state.dir, "demo", name) == f"demo/{name} already gone\n"


@pytest.mark.cluster
def test_pod_kill_is_drilled_against_the_hollow_kubelet(
    hollow_cluster: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    from chaoslab.experiment import load_experiment
    from chaoslab.live.cluster.target import LocalSession
    from chaoslab.live.k8s.drill import plan_drill, run_drill

    cluster, path = hollow_cluster
    exp = load_experiment(path)
    session = LocalSession.open(exp, exp.live_spec(0), cluster=cluster)
    try:
        res = run_drill(plan_drill(path, session=session), out=tmp_path, log=lambda _m: None)
    finally:
        session.close()
    assert res.status == "complete", res.reason
    meta = json.loads((res.path / "meta.json").read_text())
    assert meta["mode"] == "live" and meta["pending_undo"] == 0
    ms = pd.read_parquet(res.path / "milestones.parquet")
    missing = SEEN - set(ms["milestone"])
    assert not missing, f"not seen {sorted(missing)}"
    t = ms.groupby("milestone")["t"].min()
    # PLEG relists every second; the app listens 2 s after its container starts
    assert 0 < t["container.died"] <= 1.5
    assert t["pod.not_ready"] < t["endpoints.removed"] < t["pod.ready"] < t["endpoints.added"]
    assert t["pod.ready"] - t["container.died"] >= 2
    comp = pd.read_csv(res.path / "comparison.csv")
    assert {f"at_{m.replace('.', '_')}" for m in SEEN} <= set(comp["metric"])
    # the recover step replaced the killed pod: the next kill hits a container with no
    # crash-loop back-off
    victim = pd.read_csv(res.path / "trial_info.csv")["victim"].iloc[0]
    names = {p.metadata.name for p in _core(cluster).list_namespaced_pod("demo").items}
    assert victim not in names
