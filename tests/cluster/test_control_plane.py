"""Control-plane faults against the real control plane: ``controller-manager-restart`` and
``apiserver-down`` (and a node crash with a controller-manager restart, a ``with:``
composite) through ``chaoslab drill``'s own plan and run, one trial each, on the suite's
session cluster, as the ServiceAccount of ``deploy/rbac.yaml``; the Lease read the drill
needs is refused by the real authorizer without its rule.

The session cluster keeps the catalogue's leader election (15 s lease): each trial waits
for a real new leader. Network safety as in test_drills.py: probes from the data plane's
client namespace only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from chaoslab.errors import LiveError
from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.target import LocalSession
from chaoslab.live.k8s.drill import live_spec, plan_drill, run_drill
from chaoslab.live.k8s.kube import load_kube
from chaoslab.live.k8s.leader import LeaderWatch

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def _copy(name: str, tmp: Path, keep: list[int]) -> Path:
    """The bundled experiment with the faults ``keep``, one drill trial, a smaller
    prediction, and the session cluster's shape (its timers are the CI timers)."""
    data = yaml.safe_load((ROOT / "experiments" / name).read_text())
    data["faults"] = [data["faults"][i] for i in keep]
    data["trials"] = 300
    data["live"]["trials"] = 1
    out = tmp / name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def session(local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("the data plane needs root and iptables (network namespaces)")
    path = _copy("cluster-controller-manager-restart.yaml", tmp_path_factory.mktemp("exp"), [0])
    exp = load_experiment(path)
    s = LocalSession.open(exp, live_spec(exp, 0), cluster=local_cluster)
    try:
        yield s
    finally:
        s.close()


def _run(name: str, keep: list[int], session: Any, tmp: Path) -> tuple[Any, pd.DataFrame]:
    plans = plan_drill(_copy(name, tmp, keep), session=session)
    res = run_drill(plans, out=tmp / "results", log=lambda _m: None)
    assert res.status == "complete", res.reason
    assert json.loads((res.path / "meta.json").read_text())["pending_undo"] == 0
    return res, pd.read_parquet(res.path / "milestones.parquet")


def _controller_managers(session: Any) -> list[int]:
    """PIDs of every controller manager of the session cluster running on the machine,
    found by its kubeconfig on the command line: one recorded and none beside it."""
    marker = str(session.cluster.layout.kubeconfig("controller-manager")).encode()
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if not d.name.isdigit() or marker not in (d / "cmdline").read_bytes():
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(d.name))
        except OSError:
            continue
    return sorted(pids)


def _story(session: Any, res: Any) -> str:
    """What a failed control-plane trial leaves to read: the hooks' output, the
    controller managers running now, and the leader-election lines of their log."""
    hooks = [
        str(e.get("output", ""))
        for e in map(json.loads, (res.path / "journal.jsonl").read_text().splitlines())
        if e.get("event") in ("inject.done", "inject.with_done")
    ]
    rec = session.cluster.component("kube-controller-manager")
    log = Path(rec.log).read_text(errors="replace").splitlines()
    lines = [ln[:160] for ln in log if "leaderelection" in ln or ln[:1] in "EF"][-12:]
    running = _controller_managers(session)
    return "\n".join(["hooks: " + " | ".join(hooks), f"running: {running}", *lines])


def _all_running(session: Any) -> None:
    session.cluster.state = type(session.cluster.state).load(session.cluster.state.dir)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert session.cluster.component_running(name), name
    # a restart left exactly the process it recorded: no second candidate for the Lease
    assert _controller_managers(session) == [
        session.cluster.component("kube-controller-manager").pid
    ]
    _a_leader_renews(session)


def _a_leader_renews(session: Any) -> None:
    """Wait until the Lease is renewed: the next test starts with a leading controller
    manager, not with a new process still waiting out a dead leader's Lease (client-go
    counts the lease duration from its own first read, however stale the renewTime)."""
    from kubernetes import client

    leases = client.CoordinationV1Api(session.cluster.admin_client())
    first = leases.read_namespaced_lease("kube-controller-manager", "kube-system").spec
    deadline = time.monotonic() + first.lease_duration_seconds + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        spec = leases.read_namespaced_lease("kube-controller-manager", "kube-system").spec
        if spec.renew_time != first.renew_time:
            return
    raise AssertionError(f"no controller manager renewed the Lease: {first}")


def test_a_controller_manager_restart_waits_for_the_dead_leaders_lease(
    session: Any, tmp_path: Path
) -> None:
    res, ms = _run("cluster-controller-manager-restart.yaml", [0], session, tmp_path)
    seen = dict(zip(ms["milestone"], ms["t"], strict=True))
    needed = {"controller_manager.leader_lost", "controller_manager.leader_elected"}
    assert needed <= set(seen), f"{sorted(seen)}\n{_story(session, res)}"
    # the killed leader released nothing: the new one took the Lease only after it expired
    lease = session.cluster.admin_client()
    from kubernetes import client

    spec = (
        client.CoordinationV1Api(lease)
        .read_namespaced_lease("kube-controller-manager", "kube-system")
        .spec
    )
    assert seen["controller_manager.leader_elected"] >= spec.lease_duration_seconds
    info = pd.read_csv(res.path / "trial_info.csv")
    assert (info["leader_before"] != info["leader_after"]).all()
    comp = pd.read_csv(res.path / "comparison.csv")
    row = comp[comp["metric"] == "at_controller_manager_leader_elected"]
    assert row["predicted_p50"].notna().all()  # the model's prediction beside it
    _all_running(session)


def test_a_node_crash_with_a_controller_manager_restart_runs_both_effects(
    session: Any, tmp_path: Path
) -> None:
    res, ms = _run("cluster-controller-manager-restart.yaml", [1], session, tmp_path)
    seen = dict(zip(ms["milestone"], ms["t"], strict=True))
    needed = {"controller_manager.leader_lost", "controller_manager.leader_elected"}
    needed |= {"node.not_ready", "pod.evicted", "replacement.ready"}
    assert needed <= set(seen), f"{sorted(seen)}\n{_story(session, res)}"
    # the second effect came with_delay after the crash (its hook waited for {at})
    assert seen["controller_manager.leader_lost"] >= 5.0 - 1e-5  # {at} has 6 decimals
    # the new leader's node lifecycle controller starts its grace period afresh
    assert seen["node.not_ready"] > seen["controller_manager.leader_elected"]
    _all_running(session)


def test_apiserver_down_restarts_the_controllers_and_the_api_comes_back(
    session: Any, tmp_path: Path
) -> None:
    res, ms = _run("cluster-apiserver-down.yaml", [0], session, tmp_path)
    seen = dict(zip(ms["milestone"], ms["t"], strict=True))
    needed = {"apiserver.down", "apiserver.up", "controller_manager.leader_lost"}
    needed |= {"controller_manager.leader_elected"}
    assert needed <= set(seen), f"{sorted(seen)}\n{_story(session, res)}"
    assert seen["apiserver.up"] >= 15.0  # stopped for --for 15 s, then its start-up
    info = pd.read_csv(res.path / "trial_info.csv")
    assert "'kube-controller-manager'" in str(info["hook_output"].iloc[0])  # restarted
    assert (info["lease_failed_reads"] > 0).all()  # the drill's own reads failed meanwhile
    _all_running(session)


def test_the_leader_lease_is_read_only_by_name_and_only_with_its_rule(session: Any) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    sa = client.CoordinationV1Api(
        config.new_client_from_config(config_file=str(session.kubeconfig))
    )
    assert sa.read_namespaced_lease("kube-controller-manager", "kube-system").spec
    with pytest.raises(ApiException) as e:
        sa.read_namespaced_lease("kube-scheduler", "kube-system")  # not in resourceNames
    assert e.value.status == 403
    rbac = client.RbacAuthorizationV1Api(session.cluster.admin_client())
    binding = rbac.read_namespaced_role_binding("chaoslab-drill-leader", "kube-system")
    rbac.delete_namespaced_role_binding("chaoslab-drill-leader", "kube-system")
    try:
        kube = load_kube(str(session.kubeconfig), None, 10.0, retries=0, retry_wait=0.2)
        deadline = time.monotonic() + 30
        while True:  # the authorizer's cache follows the delete within moments
            try:
                LeaderWatch(kube, 0.2, lambda t: t).start().stop()
            except LiveError as err:
                assert "403" in str(err) and "deploy/rbac.yaml" in str(err)
                break
            assert time.monotonic() < deadline, "the Lease stayed readable without its rule"
            time.sleep(0.2)
    finally:
        binding.metadata = client.V1ObjectMeta(
            name="chaoslab-drill-leader", namespace="kube-system"
        )
        rbac.create_namespaced_role_binding("kube-system", binding)


def test_a_restarted_controller_manager_that_cannot_bind_is_restarted_after_its_back_off(
    session: Any,
) -> None:
    """The restart hook's kubelet part, with the real binary: the new process finds its
    secure port taken (as when a connection's ephemeral port took it in the instant
    between the kill and the restart), exits, and is started again after the crash-loop
    back-off, once the port is free; then it takes the Lease."""
    import socket
    import threading

    from kubernetes import client

    from chaoslab.live.cluster import hooks

    cluster = session.cluster
    cluster.state = type(cluster.state).load(cluster.state.dir)
    port = cluster.layout.ports["controller-manager"]
    kubelet = hooks._Kubelet(cluster, hooks._backoff(cluster))
    t = cluster.kill_component(hooks.KCM)
    kubelet.lost = t
    holder = socket.socket()
    # as Go's listeners do: the dead process's accepted connections are in TIME_WAIT
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))  # the dead process's port, free again after its kill
    holder.listen()
    done = threading.Event()

    def free_once_it_exited() -> None:
        # the first start has exited: it waits out its back-off now
        while not done.is_set() and not (kubelet.restarts and hooks.KCM in kubelet.due):
            time.sleep(0.05)
        holder.close()

    freer = threading.Thread(target=free_once_it_exited, daemon=True)
    freer.start()
    try:
        healthy = hooks._supervise_until_healthy(cluster, kubelet, hooks.KCM)
    finally:
        done.set()
        freer.join()
    assert kubelet.restarts[hooks.KCM] >= 2, kubelet.restarts  # the first start failed
    assert healthy - t >= kubelet.backoff[0]  # the second came after the back-off
    lease = client.CoordinationV1Api(cluster.admin_client())
    old = lease.read_namespaced_lease("kube-controller-manager", "kube-system").spec
    _all_running(session)  # a leader renews again: the restarted process took the Lease
    new = lease.read_namespaced_lease("kube-controller-manager", "kube-system").spec
    assert new.holder_identity != old.holder_identity
