"""Drills against the real control plane: each fault kind of ``experiments/cluster-*.yaml``
through ``chaoslab drill``'s own plan and run (`plan_drill`, `run_drill`), one trial each,
on the suite's session cluster with its data plane, as the ServiceAccount of
``deploy/rbac.yaml``.

Network safety: the prober runs in the data plane's client namespace and reaches node
addresses inside namespaces the session created; nothing is sent from the host namespace
to a pod, node or Service address. The session (data plane, RBAC objects aside, token
kubeconfig) is taken down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.target import LocalSession
from chaoslab.live.k8s.drill import plan_drill, run_drill
from chaoslab.live.lab.netns import namespaces_with_prefix

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
#: control-plane milestones each fault must show (the model's names, MILESTONES)
SEEN = {
    "pod-delete": {"pod.deleted", "endpoints.removed", "replacement.created", "replacement.ready"},
    "node-drain": {"pod.evicted", "endpoints.removed", "replacement.created", "replacement.ready"},
    "node-crash": {
        "node.not_ready",
        "pods.not_ready",
        "node.tainted",
        "endpoints.removed",
        "pod.evicted",
        "replacement.created",
        "replacement.ready",
        "proxy.synced",
        "probe.first_failed",
        "probe.last_failed",
    },
    # cut off from the network too: new connections to its pod fail until the endpoints move
    "node-partition": {
        "node.not_ready",
        "pods.not_ready",
        "endpoints.removed",
        "node.ready",
        "probe.first_failed",
    },
    "kubelet-stop": {"node.not_ready", "pods.not_ready", "endpoints.removed", "node.ready"},
}


def _needs_root() -> None:
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("the data plane needs root and iptables (network namespaces)")


def _ci_copy(name: str, tmp: Path) -> Path:
    """The bundled experiment with one drill trial and a smaller prediction."""
    text = (ROOT / "experiments" / name).read_text()
    text = re.sub(r"(?m)^  trials: \d+", "  trials: 1", text)
    text = re.sub(r"(?m)^trials: \d+", "trials: 300", text)
    # node-crash settles 90 s for the prober's stale conntrack entries: CI checks the wiring
    text = re.sub(r"(?m)^  settle: \d+s", "  settle: 3s", text)
    out = tmp / name
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def session(local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One drill session on the suite's cluster: its data plane, the ServiceAccount."""
    _needs_root()
    path = _ci_copy("cluster-pod-delete.yaml", tmp_path_factory.mktemp("exp"))
    exp = load_experiment(path)
    s = LocalSession.open(exp, exp.live_spec(0), cluster=local_cluster)
    prefix = s.dataplane().state.prefix
    try:
        yield s
    finally:
        s.close()
        if s.owned_dataplane:  # else it is the cluster's, taken down with it
            assert namespaces_with_prefix(prefix) == []
        assert not s.workdir.exists()


def _kwok_pids(state_dir: Path) -> dict[int, list[str]]:
    """The kwok processes (read from /proc) whose command line names this cluster's state."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv[0].endswith("/kwok") and any(str(state_dir) in a for a in argv):
            out[int(d.name)] = argv
    return out


def _check_kubelets(session: Any) -> None:
    """After a node fault: one kwok per node, each recorded (so ``down`` stops it), alive,
    with the lease duration the cluster was brought up with (not the catalogue's 40 s)."""
    session.cluster.state = type(session.cluster.state).load(session.cluster.state.dir)
    dp = session.dataplane()
    running = _kwok_pids(session.cluster.state.dir)
    recorded = {p.pid: n for n, p in dp.state.procs.items() if n.startswith("kwok-")}
    assert sorted(running) == sorted(recorded), (running, recorded)
    lease = {a for argv in running.values() for a in argv if "lease-duration" in a}
    assert lease == {"--node-lease-duration-seconds=4"}, lease
    _check_node_addresses(session)


def _check_node_addresses(session: Any) -> None:
    """Every Node keeps its address through a fault and its restore: kwok's node-initialize
    stage runs again on a NotReady node, and without a Hostname address it deleted every
    address; kube-proxy then exited ("NodeIPs changed ... null")."""
    from kubernetes import client

    dp = session.dataplane()
    core = client.CoreV1Api(session.cluster.admin_client())
    for node in core.list_node().items:
        addrs = {(a.type, a.address) for a in node.status.addresses or []}
        name = node.metadata.name
        assert ("InternalIP", dp.node_ip(name)) in addrs and ("Hostname", name) in addrs, addrs
    for name, proc in dp.state.procs.items():
        if name.startswith("kube-proxy-"):
            assert "NodeIPs changed" not in Path(proc.log).read_text(), proc.log


def _drill(name: str, session: Any, tmp: Path) -> Any:
    plans = plan_drill(_ci_copy(name, tmp), session=session)
    return run_drill(plans, out=tmp / "results", log=lambda _m: None)


def _check_run(res: Any, fault: str) -> pd.DataFrame:
    assert res.status == "complete", res.reason
    meta = json.loads((res.path / "meta.json").read_text())
    assert meta["mode"] == "live" and meta["pending_undo"] == 0
    assert Path(meta["local_cluster"]["logs"]).is_dir()  # where the components' logs stay
    for f in ("probes.parquet", "milestones.parquet", "trial_info.csv", "prediction.parquet"):
        assert (res.path / f).exists(), f
    ms = pd.read_parquet(res.path / "milestones.parquet")
    missing = SEEN[fault] - set(ms["milestone"])
    assert not missing, f"{fault}: not seen {sorted(missing)}"
    comp = pd.read_csv(res.path / "comparison.csv")
    rows = set(comp["metric"])
    assert {"recovery_s", "lost_s"} <= rows
    assert {f"at_{m.replace('.', '_')}" for m in SEEN[fault]} <= rows
    probes = pd.read_parquet(res.path / "probes.parquet")
    assert (probes["outcome"] == "ok").mean() > 0.5  # the client reached the NodePort
    return comp


@pytest.mark.parametrize(
    "name, fault",
    [
        ("cluster-pod-delete.yaml", "pod-delete"),
        ("cluster-node-drain.yaml", "node-drain"),
        ("cluster-node-crash.yaml", "node-crash"),
        ("cluster-node-partition.yaml", "node-partition"),
        ("cluster-kubelet-stop.yaml", "kubelet-stop"),
    ],
)
def test_each_fault_drills_the_real_control_plane_as_the_service_account(
    name: str, fault: str, session: Any, tmp_path: Path
) -> None:
    comp = _check_run(_drill(name, session, tmp_path), fault)
    _check_kubelets(session)
    row = comp[comp["metric"] == "at_node_not_ready"]
    if fault in ("node-crash", "node-partition", "kubelet-stop"):
        assert row["predicted_p50"].notna().all()  # the model has the milestone beside it


def test_a_call_outside_the_role_is_refused_by_the_real_authorizer(session: Any) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(session.kubeconfig))
    core = client.CoreV1Api(api)
    assert core.list_namespaced_pod("demo").items  # inside the role
    with pytest.raises(ApiException) as e:
        core.list_namespaced_secret("kube-system")
    assert e.value.status == 403
    assert "system:serviceaccount:chaoslab:chaoslab-drill" in str(e.value.body)
    with pytest.raises(ApiException) as e:
        core.delete_node("compute-2")
    assert e.value.status == 403
