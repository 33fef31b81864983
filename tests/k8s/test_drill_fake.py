"""End-to-end drills with the real ``kubernetes`` client against the wire-level fake server.

discovery -> prediction -> injection -> watches -> milestones -> rollback -> results ->
comparison, and the failure paths (API errors, a failing hook, Ctrl-C/SIGTERM, watches
that drop or expire, a node that never comes back). Timelines are compressed to seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from chaoslab.cli import main
from chaoslab.compare import COMPARISON_COLUMNS
from chaoslab.results import load_run

from .conftest import SKEW, Env
from .fakeapi import FakeApi, Timing
from .rbac_check import denied

REPO = Path(__file__).resolve().parents[2]
#: the chaoslab command line as a program
_MAIN = "import sys; from chaoslab.cli import main; sys.exit(main(sys.argv[1:]))"


def _drill(env: Env, exp: Path, *extra: str) -> int:
    return main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results"), *extra])


def _milestones(run: Path) -> dict[str, float]:
    ms = pd.read_parquet(run / "milestones.parquet")
    return dict(zip(ms["milestone"], ms["t"], strict=True))


def _chaos_pods(env: Env) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in env.cluster.items("pods")
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "chaoslab"
    ]


def _node(env: Env, name: str) -> dict:
    n = env.cluster.get("nodes", "", name)
    assert n is not None
    return n


def test_node_crash_by_chaos_pod_end_to_end(make_env) -> None:
    # the kubelet reports the chaos pod Running 0.25 s after its start: the drill must watch
    env = make_env(timing=Timing(status_delay=0.25))
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "500ms",
            "crash": "poweroff",
            "hook": {"recover": env.control_hook("poweron"), "timeout": "5s"},
        },
        chaos_namespace="chaoslab",
    )
    assert _drill(env, exp) == 0
    assert denied(env.cluster.calls) == []  # deploy/rbac.yaml is enough
    run = env.only_run()
    loaded = load_run(run)
    assert loaded.meta["mode"] == "live" and loaded.meta["target"] == "kubernetes"
    assert loaded.complete and len(loaded.trials) == 1
    tr = loaded.trials.iloc[0]
    assert tr["design"] == "clusterip" and tr["fault"] == "node-crash"
    # one of two replicas black-holed until the endpoint is removed after the grace period:
    # degraded, never fully down, recovered once kube-proxy dropped the endpoint
    t = env.cluster.timing
    info = pd.read_csv(run / "trial_info.csv").iloc[0]
    # the fault instant the drill took vs the true one (the fake logs it): the container
    # started in [startedAt, startedAt + 1 s) and before it was seen Running; t0 is the
    # earliest possible instant, never late, at most the recorded width early
    true_t0 = next(tt for tt, what in env.cluster.log if what.startswith("node-crash"))
    early = true_t0 - info["t0_mono"]
    assert -0.05 <= early <= info["t0_uncertainty_s"] + 0.05
    assert 0 <= info["t0_uncertainty_s"] <= 1.0
    assert tr["recovered"] and tr["downtime_s"] == 0
    assert t.grace - 0.2 <= tr["recovery_s"] - early <= t.grace + 0.6
    ms = _milestones(run)
    order = [
        "node.not_ready",
        "node.tainted",
        "pod.evicted",
        "replacement.created",
        "replacement.scheduled",
        "replacement.ready",
    ]
    assert all(name in ms for name in order), ms
    assert ms["endpoints.added"] >= ms["replacement.scheduled"]
    assert [ms[n] for n in order] == sorted(ms[n] for n in order)
    assert ms["node.not_ready"] - early == pytest.approx(t.grace, abs=0.2)
    assert ms["pod.evicted"] - ms["node.tainted"] == pytest.approx(1.0, abs=0.3)
    assert ms["endpoints.removed"] <= ms["pod.evicted"]
    assert "service.recovered" in ms
    # clock offset: the fake server runs SKEW seconds ahead
    offset = info["server_minus_monotonic_s"] - info["wall_minus_monotonic_s"]
    assert offset == pytest.approx(SKEW, abs=0.15)
    assert info["method"] == "pod" and info["node"] in ("worker-1", "worker-2")
    assert any(
        m == "GET" and "/chaoslab/pods?" in p and "watch=true" in p for m, p in env.cluster.calls
    )
    # the prediction used what was discovered: tolerationSeconds 1 s on the pods
    pred = pd.read_parquet(run / "prediction.parquet")
    gap = (pred["at_pod_evicted"] - pred["at_node_tainted"]).dropna()
    assert len(gap) and gap.median() == pytest.approx(1.0, abs=0.2)
    disc = json.loads((run / "discovery.json").read_text())
    assert (
        disc["discovered"]["kube_apiserver.default_unreachable_toleration_seconds"]["value"] == "1s"
    )
    assert "kube_controller_manager.node_monitor_grace_period" in disc["assumed"]
    comp = pd.read_csv(run / "comparison.csv")
    assert tuple(comp.columns) == COMPARISON_COLUMNS
    assert {"recovery_s", "downtime_s", "lost_s", "at_node_not_ready"} <= set(comp["metric"])
    # compressed timeline vs real defaults: far outside the predicted band, and it says so
    row = comp.set_index("metric").loc["at_node_not_ready"]
    assert row["n"] == 1 and row["inside"] == 0 and row["measured_max"] < row["predicted_p5"]
    assert (comp["tolerance_s"] == 0.1).all()
    # the lead's compare() takes the live run and the prediction it stored
    from chaoslab.compare import compare, stored_prediction

    pred_run = stored_prediction(loaded)
    assert pred_run is not None
    cells = compare(pred_run, loaded).cells
    assert {"recovery_s", "at_node_not_ready"} <= set(cells["metric"])
    probes = pd.read_parquet(run / "probes.parquet")
    assert {"trial", "url", "t", "t_rel", "outcome"} <= set(probes.columns)
    assert (probes["outcome"] != "ok").any() and (probes["outcome"] == "ok").any()
    # rollback: chaos pod gone, the node powered on again and Ready
    assert _chaos_pods(env) == []
    ready = [c for c in _node(env, info["node"])["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    j = env.journal(run)
    assert [e["event"] for e in j][-1] == "run.end" and j[-1]["pending_undo"] == []
    # the chaos pod was privileged, pinned, host PID/network, and wrote sysrq poweroff
    posts = [p for m, p in env.cluster.calls if m == "POST" and p.endswith("/pods")]
    assert posts == ["/api/v1/namespaces/chaoslab/pods"]


def test_token_never_written(make_env) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "pod-delete",
            "target": {"select": "app-pod"},
            "method": "api",
            "grace_period": "1s",
        }
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    for f in run.rglob("*"):
        if f.is_file():
            assert FakeApi.TOKEN.encode() not in f.read_bytes(), f


def test_pod_delete_api_two_trials(make_env) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "pod-delete",
            "target": {"select": "app-pod"},
            "method": "api",
            "grace_period": "2s",
        },
        trials=2,
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    all_ms = pd.read_parquet(run / "milestones.parquet")
    for trial in (0, 1):
        ms = dict(all_ms[all_ms["trial"] == trial][["milestone", "t"]].itertuples(index=False))
        for name in (
            "pod.deleted",
            "pod.sigterm",
            "endpoints.removed",
            "replacement.created",
            "replacement.ready",
            "endpoints.added",
            "pod.gone",
        ):
            assert name in ms, (trial, name, ms)
        # one watch stream keeps the server's order; the Killing event comes on another
        # (the events watch), whose thread may deliver it first on a loaded machine, so
        # only its presence after the fault is asserted, and no bound on wall-clock lag
        assert 0 <= ms["pod.deleted"] <= ms["pod.gone"]
        assert ms["pod.sigterm"] >= 0
    deletes = [p for m, p in env.cluster.calls if m == "DELETE" and "/pods/web-" in p]
    assert len(deletes) == 2 and deletes[0] != deletes[1]
    assert denied(env.cluster.calls) == []
    trials = load_run(run).trials
    assert list(trials["trial"]) == [0, 1] and trials["recovered"].all()
    info = pd.read_csv(run / "trial_info.csv")
    assert info["pod"].nunique() == 2  # the second trial picked a pod that exists now


def test_pod_kill_by_chaos_pod(make_env) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "pod-kill",
            "target": {"select": "app-pod"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
        }
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    ms = _milestones(run)
    for name in (
        "pod.not_ready",
        "endpoints.removed",
        "container.restarted",
        "pod.ready",
        "endpoints.added",
    ):
        assert name in ms, (name, ms)
    assert "replacement.created" not in ms  # restarted in place
    tr = load_run(run).trials.iloc[0]
    assert tr["recovered"] and tr["lost_s"] > 0
    body = next(
        o
        for o in env.cluster.history
        if o[1] == "pods" and o[2] == "ADDED" and o[3]["metadata"]["name"].startswith("chaoslab-")
    )[3]
    spec = body["spec"]
    assert spec["hostPID"] and spec["hostNetwork"]
    assert spec["containers"][0]["securityContext"]["privileged"]
    assert "kill -9" in spec["containers"][0]["command"][-1]
    assert _chaos_pods(env) == []


def test_node_drain_respects_pdb_and_uncordons(make_env) -> None:
    env = make_env(pdb_min_available=1)
    exp = env.experiment(
        {
            "kind": "node-drain",
            "target": {"node": "worker-1"},
            "method": "api",
            "eviction_timeout": "5s",
            "eviction_retry": "200ms",
        }
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    j = env.journal(run)
    events = [e["event"] for e in j]
    assert "drain.evicted" in events and "drain.done" in events
    assert denied(env.cluster.calls) == []
    assert "uncordon" in [e["step"]["op"] for e in j if e["event"] == "undo.add"]
    assert not _node(env, "worker-1")["spec"].get("unschedulable")
    ms = _milestones(run)
    assert "pod.evicted" in ms and "replacement.ready" in ms
    assert not any(p["spec"].get("nodeName") == "worker-1" for p in env.cluster.app_pods())
    # the fault instant is the first accepted eviction, as in the model; the cordon before it
    info = pd.read_csv(run / "trial_info.csv")
    assert (info["t0_cordon_s"] < 0).all() and (info["t0_uncertainty_s"] > 0).all()
    assert ms["pod.evicted"] >= 0


def test_node_drain_blocked_by_pdb(make_env) -> None:
    env = make_env(pdb_min_available=2)
    exp = env.experiment(
        {
            "kind": "node-drain",
            "target": {"node": "worker-1"},
            "method": "api",
            "eviction_timeout": "1s",
            "eviction_retry": "200ms",
        },
        settle="1500ms",
    )
    _drill(env, exp)
    run = env.only_run()
    events = [e["event"] for e in env.journal(run)]
    assert "drain.blocked_by_pdb" in events and "drain.gave_up" in events
    evictions = [p for m, p in env.cluster.calls if p.endswith("/eviction")]
    assert len(evictions) >= 2  # retried, never forced
    assert len(env.cluster.app_pods()) == 2 and not any(
        p["metadata"].get("deletionTimestamp") for p in env.cluster.app_pods()
    )
    assert not _node(env, "worker-1")["spec"].get("unschedulable")


def test_partition_by_hook_heals_itself(make_env) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "node-partition",
            "target": {"select": "app-pod-node"},
            "method": "hook",
            "duration": "2s",
            "hook": {
                "inject": env.control_hook("partition", duration="{duration}"),
                "timeout": "5s",
            },
        }
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    ms = _milestones(run)
    assert {"node.not_ready", "node.tainted", "node.ready"} <= set(ms)
    info = pd.read_csv(run / "trial_info.csv").iloc[0]
    assert info["method"] == "hook" and 0 < info["t0_uncertainty_s"] < 5
    hook = json.loads(info["hook"])
    assert hook[0] == sys.executable and info["node"] in hook[-1]


def test_failing_hook_fails_the_drill_and_rolls_back(make_env) -> None:
    env = make_env()
    bad = [sys.executable, "-c", "import sys; print('no such VM', file=sys.stderr); sys.exit(3)"]
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "hook",
            "hook": {"inject": bad, "timeout": "5s"},
        }
    )
    assert _drill(env, exp) == 1
    run = env.only_run()
    j = env.journal(run)
    err = [e for e in j if e["event"] == "run.error"]
    assert err and "exited 3" in err[0]["error"] and "no such VM" in err[0]["error"]
    assert j[-1]["event"] == "run.end" and j[-1]["status"] == "failed"
    assert j[-1]["pending_undo"] == []
    assert env.cluster.node_down == {}


def test_api_error_mid_drill(make_env) -> None:
    env = make_env()
    env.cluster.fail("POST", r"/namespaces/demo/pods$", 500)
    exp = env.experiment(
        {
            "kind": "kubelet-stop",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
            "duration": "1s",
        }
    )
    assert _drill(env, exp) == 1
    run = env.only_run()
    j = env.journal(run)
    assert any(e["event"] == "run.error" and "500" in e["error"] for e in j)
    # the chaos pod's undo was journaled before the failed POST and ran anyway (404 is fine)
    assert any(e["event"] == "undo.done" and e.get("op") == "delete-pod" for e in j)
    assert j[-1]["status"] == "failed" and j[-1]["pending_undo"] == []
    assert _chaos_pods(env) == []


def test_transient_api_errors_are_retried(make_env) -> None:
    env = make_env()
    env.cluster.fail("GET", r"/namespaces/demo/pods$", 503, count=2)
    env.cluster.fail("GET", r"/api/v1/nodes$", 500, count=1)
    exp = env.experiment({"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api"})
    assert _drill(env, exp) == 0
    info = pd.read_csv(env.only_run() / "trial_info.csv").iloc[0]
    assert info["api_reads_retried"] >= 3
    assert not env.cluster.failures


def test_watch_drops_and_expires_midtrial(make_env) -> None:
    env = make_env(timing=Timing(grace=1.0))
    cl = env.cluster

    def sabotage() -> None:
        cl.drop_watches()

    def expire() -> None:
        cl.compact()
        cl.drop_watches()

    # first chaos pod starts the fault; the watches are cut twice while the node dies
    orig = cl.start_node_fault

    def fault_and_sabotage(node: str, kind: str, duration: float | None) -> None:
        orig(node, kind, duration)
        cl.after(0.3, sabotage)
        cl.after(0.9, expire)

    cl.start_node_fault = fault_and_sabotage  # type: ignore[method-assign]
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
            "crash": "reboot",
            "hook": {"recover": env.control_hook("poweron"), "timeout": "5s"},
        }
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    ms = _milestones(run)
    for name in (
        "node.not_ready",
        "node.tainted",
        "pod.evicted",
        "replacement.ready",
        "endpoints.added",
    ):
        assert name in ms, (name, ms)
    obs = pd.read_parquet(run / "observations.parquet")
    assert (obs["type"] == "DROPPED").sum() >= 4  # every watch, twice
    assert (obs["type"] == "GONE").sum() + (obs["type"] == "RELIST").sum() >= 1


def test_node_never_comes_back_then_recover(make_env) -> None:
    env = make_env(replicas_on=("worker-1",), toleration=None)
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
            "crash": "poweroff",
        },
        limits={"trial_timeout": "4s", "node_return": "500ms", "max_outage": "30s"},
    )
    assert _drill(env, exp) == 1
    run = env.only_run()
    tr = load_run(run).trials.iloc[0]
    assert not tr["recovered"] and math.isinf(tr["recovery_s"])
    assert tr["downtime_s"] > 2
    j = env.journal(run)
    assert any(e["event"] == "attention" and e["node"] == "worker-1" for e in j)
    assert j[-1]["pending_undo"]  # wait-node-ready is still open
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "needs-recovery"
    # the operator powers the node on; --recover finishes the rollback
    env.cluster.heal_node("worker-1")
    assert main(["drill", "--recover", str(run)]) == 0
    j = env.journal(run)
    assert j[-1]["event"] == "recover.end" and j[-1]["ok"]
    assert main(["drill", "--recover", str(run)]) == 0  # idempotent: nothing left


def test_abort_at_outage_limit(make_env) -> None:
    env = make_env(replicas_on=("worker-1",), toleration=30)
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
            "crash": "poweroff",
            "hook": {"recover": env.control_hook("poweron"), "timeout": "5s"},
        },
        limits={"max_outage": "1s"},
        trials=3,
    )
    assert _drill(env, exp) == 1
    run = env.only_run()
    info = pd.read_csv(run / "trial_info.csv")
    assert len(info) == 1 and info.iloc[0]["aborted"]
    assert "max_outage" in info.iloc[0]["abort_reason"]
    # recovery started at once: after the abort the drill did nothing but roll back (no
    # wait for the trial timeout, no other trial), the power-on among the first steps.
    # Judged by the journal's order, not by wall time, which a loaded machine stretches.
    events = [(e["event"], e.get("op")) for e in env.journal(run)]
    abort = events.index(("trial.abort", None))
    power_on = events.index(("undo.done", "hook"))
    between = {ev for ev, _ in events[abort + 1 : power_on]}
    assert abort < power_on and between <= {"rollback.start", "undo.start", "undo.done"}
    assert ("trial.timeout", None) not in events
    assert sum(1 for ev, _ in events if ev == "trial.start") == 1
    assert json.loads((run / "meta.json").read_text())["status"] == "aborted"


def test_dry_run_injects_nothing(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
        }
    )
    assert main(["drill", str(exp), "--out", str(env.tmp / "results")]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "prediction" in out and "assumed" in out
    assert all(m == "GET" for m, _ in env.cluster.calls)
    assert not (env.tmp / "results").exists()


def test_refuses_control_plane(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"node": "cp-1"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
        }
    )
    assert main(["drill", str(exp), "--out", str(env.tmp / "results")]) == 1  # already in the plan
    assert "control-plane" in capsys.readouterr().err
    assert all(m == "GET" for m, _ in env.cluster.calls)


def test_refuses_second_node(make_env) -> None:
    env = make_env()
    n = env.cluster.get("nodes", "", "worker-3")
    n["spec"]["unschedulable"] = True  # someone else's maintenance
    env.cluster.put("nodes", n)
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
        }
    )
    assert _drill(env, exp) == 1
    j = env.journal(env.only_run())
    assert any("max_nodes" in e.get("error", "") for e in j if e["event"] == "run.error")
    assert not any(m == "POST" for m, _ in env.cluster.calls)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_trial_rolls_back(make_env, sig: signal.Signals) -> None:
    env = make_env(pdb_min_available=2)  # the drain blocks: the node stays cordoned
    exp = env.experiment(
        {
            "kind": "node-drain",
            "target": {"node": "worker-1"},
            "method": "api",
            "eviction_timeout": "30s",
            "eviction_retry": "200ms",
        },
        limits={"trial_timeout": "30s"},
    )
    out = env.tmp / "results"
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "drill", str(exp), "--yes", "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _node(env, "worker-1")["spec"].get("unschedulable"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the drill never cordoned the node")
        time.sleep(0.5)
        proc.send_signal(sig)
        try:
            text, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
            pytest.fail(f"the drill did not exit within 30 s of {sig.name}:\n{text}")
    finally:
        if proc.poll() is None:
            proc.kill()
    # (failed once in a loaded full-suite run, not reproduced since: say what happened)
    assert proc.returncode == 130, text
    assert not _node(env, "worker-1")["spec"].get("unschedulable"), text
    run = env.only_run()
    j = env.journal(run)
    tail = "\n".join(map(str, j[-6:]))
    assert j[-1]["event"] == "run.end" and j[-1]["status"] == "interrupted", tail
    assert j[-1]["pending_undo"] == [], tail
    assert any(e["event"] == "undo.done" and e.get("op") == "uncordon" for e in j), tail
    # what was measured until the signal is kept
    assert (run / "probes.parquet").exists()


def test_vip_holder_from_lease_or_metallb_event(make_env) -> None:
    import random

    from chaoslab.experiment import load_experiment
    from chaoslab.live.k8s.discover import discover
    from chaoslab.live.k8s.inject import DrillRefused, choose_target
    from chaoslab.live.k8s.kube import load_kube

    env = make_env()
    cl = env.cluster
    fault = {"kind": "node-crash", "method": "hook", "hook": {"inject": ["true"], "timeout": "5s"}}
    exp_lease = env.experiment(
        {**fault, "target": {"select": "vip-holder", "vip_lease": "kube-system/plndr-svcs-lock"}}
    )
    spec = load_experiment(exp_lease).live_spec(0)
    kube = load_kube(str(env.api.kubeconfig), "fake", 5)
    disc = discover(kube, spec)
    rng = random.Random(0)
    with pytest.raises(DrillRefused, match="no Lease"):
        choose_target(kube, spec, disc, rng)
    cl.put(
        "leases",
        {
            "metadata": {"name": "plndr-svcs-lock", "namespace": "kube-system"},
            "spec": {"holderIdentity": "worker-3", "leaseDurationSeconds": 15},
        },
    )
    assert choose_target(kube, spec, disc, rng).node.name == "worker-3"
    # without a Lease: MetalLB's event on the Service names the announcing node
    exp_ev = env.experiment({**fault, "target": {"select": "vip-holder"}})
    spec = load_experiment(exp_ev).live_spec(0)
    with pytest.raises(DrillRefused, match="no MetalLB nodeAssigned"):
        choose_target(kube, spec, disc, rng)
    svc = cl.get("services", "demo", "web")
    cl.event("demo", svc, "nodeAssigned", 'announcing from node "worker-1" with protocol "layer2"')
    assert choose_target(kube, spec, disc, rng).node.name == "worker-1"
    # the safety rules hold for a VIP on the control plane too
    cl.event("demo", svc, "nodeAssigned", 'announcing from node "cp-1" with protocol "layer2"')
    with pytest.raises(DrillRefused, match="control-plane"):
        choose_target(kube, spec, disc, rng)


def test_internal_error_still_rolls_back(make_env, monkeypatch) -> None:
    from chaoslab.live.k8s import drill as drill_mod

    def broken(*args: object, **kwargs: object) -> float:
        raise RuntimeError("bug in the observer")

    monkeypatch.setattr(drill_mod, "_observe", broken)
    env = make_env()
    exp = env.experiment(
        {
            "kind": "node-drain",
            "target": {"node": "worker-1"},
            "method": "api",
            "eviction_timeout": "5s",
            "eviction_retry": "200ms",
        }
    )
    assert _drill(env, exp) == 1
    run = env.only_run()
    j = env.journal(run)
    err = next(e for e in j if e["event"] == "run.error")
    assert "bug in the observer" in err["error"] and "Traceback" in err["traceback"]
    assert j[-1]["status"] == "failed" and j[-1]["pending_undo"] == []
    assert not _node(env, "worker-1")["spec"].get("unschedulable")


def test_single_node_cluster_plan(make_env, capsys) -> None:
    """kind's default: one control-plane node running the app. The model has no client
    node there, so the plan says there is no prediction in one line (exit 1), nothing is
    injected."""
    from .fakeapi import FakeApi as _Api
    from .fakeapi import FakeCluster, ServiceTarget

    cl = FakeCluster()
    cl.add_node("kind-control-plane", "10.0.0.2", control_plane=True)
    cl.add_app("demo", "web", ["kind-control-plane"])
    env0 = make_env()  # for its helpers and tmp dir
    (env0.tmp / "single").mkdir()
    api, tgt = _Api(cl, env0.tmp / "single"), ServiceTarget(cl)
    try:
        env = type(env0)(cl, api, tgt, env0.tmp)
        exp = env.experiment(
            {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api"}
        )
        assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "r")]) == 1
        err = capsys.readouterr().err
        assert "no prediction for clusterip x pod-delete" in err and "\n" not in err.strip()
        assert all(m == "GET" for m, _ in cl.calls)
    finally:
        api.close()
        tgt.close()


def test_killed_drill_is_finished_by_recover(make_env) -> None:
    """SIGKILL leaves no chance to roll back: the journal on disk is what --recover uses."""
    env = make_env(pdb_min_available=2)
    exp = env.experiment(
        {
            "kind": "node-drain",
            "target": {"node": "worker-2"},
            "method": "api",
            "eviction_timeout": "30s",
            "eviction_retry": "200ms",
        },
        limits={"trial_timeout": "30s"},
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _MAIN,
            "drill",
            str(exp),
            "--yes",
            "--out",
            str(env.tmp / "results"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        while not _node(env, "worker-2")["spec"].get("unschedulable"):
            assert time.monotonic() < deadline, "the drill never cordoned the node"
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _node(env, "worker-2")["spec"].get("unschedulable")  # left cordoned
    run = env.only_run()
    assert main(["drill", "--recover", str(run)]) == 0
    assert not _node(env, "worker-2")["spec"].get("unschedulable")
    j = env.journal(run)
    assert j[-1]["event"] == "recover.end" and j[-1]["ok"]
    assert any(e["event"] == "undo.done" and e.get("op") == "uncordon" for e in j)


def test_long_lived_connections_reset_by_a_killed_pod(make_env) -> None:
    env = make_env(replicas_on=("worker-1",))
    exp = env.experiment(
        {
            "kind": "pod-kill",
            "target": {"select": "app-pod"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
        },
        probe={"long": 2, "long_interval": "50ms"},
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    tr = load_run(run).trials.iloc[0]
    # both long-lived connections were pinned to the only pod, which died under them
    assert tr["connections_reset"] == 1.0 and tr["connections_hung"] == 0.0
    assert tr["downtime_s"] > 0
    probes = pd.read_parquet(run / "probes.parquet")
    long = probes[probes["kind"] == "long"]
    assert (long["outcome"] == "reset").any() and long["conn"].nunique() > 2  # reconnected


def test_out_of_service_taint_frees_pods_of_a_lost_node(make_env) -> None:
    """Pods tolerating unreachable forever stay on a crashed node until an operator taints
    it out-of-service; the drill does that after out_of_service_after and undoes it."""
    env = make_env(replicas_on=("worker-1",), toleration=None)
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "pod",
            "image": "busybox:1.36",
            "arm": "300ms",
            "crash": "poweroff",
            "out_of_service_after": "1500ms",
            "hook": {"recover": env.control_hook("poweron"), "timeout": "5s"},
        },
        limits={"max_outage": "30s"},
    )
    assert _drill(env, exp) == 0
    run = env.only_run()
    tr = load_run(run).trials.iloc[0]
    assert tr["recovered"] and 1.5 <= tr["recovery_s"] <= 4
    ms = _milestones(run)
    assert "pod.evicted" not in ms  # never evicted by the taint manager ...
    assert ms["pod.gone"] >= 1.5 and "replacement.ready" in ms  # ... force-deleted
    j = env.journal(run)
    assert any(e["event"] == "inject.out_of_service" for e in j)
    assert any(e["event"] == "undo.done" and e.get("op") == "remove-taint" for e in j)
    taints = _node(env, "worker-1")["spec"].get("taints", [])
    assert not any(t["key"] == "node.kubernetes.io/out-of-service" for t in taints)
    # the prediction force-deletes at the same time (cluster.force_delete_after)
    pred = pd.read_parquet(run / "prediction.parquet")
    assert (pred["at_pod_gone"] == 1.5).all()
