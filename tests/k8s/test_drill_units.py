"""Unit tests of the drill's pieces: the live: schema, the clock-offset bound, the journal,
TLS and credential handling, the chaos-pod scripts, and the comparison table."""

from __future__ import annotations

import email.utils
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chaoslab.compare import COMPARISON_COLUMNS
from chaoslab.experiment import ExperimentError, load_experiment
from chaoslab.live.journal import Journal, pending_undo
from chaoslab.live.k8s.drill import live_faults
from chaoslab.live.k8s.inject import _kill_script, _partition_script, chaos_pod
from chaoslab.live.k8s.kube import ClockOffset, KubeError, load_kube
from chaoslab.live.k8s.spec import FaultSpec, LiveSpec

from .fakeapi import FakeApi, FakeCluster

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- schema


def _fault(**kw: object) -> dict[str, object]:
    return {
        "kind": "node-crash",
        "target": {"select": "app-pod-node"},
        "method": "pod",
        "image": "busybox",
        "arm": "3s",
        **kw,
    }


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (_fault(method="api"), "cannot be done through the API"),
        (
            {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "pod", "image": "x"},
            "is an API action",
        ),
        (_fault(method="hook"), "needs hook"),
        (_fault(kind="node-partition"), "needs duration"),
        (_fault(target={"select": "app-pod"}), "hits a node"),
        (_fault(target={"select": "app-pod-node", "node": "w1"}), "exactly one"),
        ({"kind": "node-drain", "target": {"node": "w1"}, "method": "api"}, "eviction_timeout"),
        (_fault(image=None), "needs image"),
        (_fault(arm=None), "and arm"),
        (_fault(surprise=1), "Extra inputs"),
    ],
)
def test_fault_spec_rejects(fault: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FaultSpec.model_validate(fault)


def test_durations_need_units() -> None:
    with pytest.raises(ValidationError, match="has no unit"):
        FaultSpec.model_validate(_fault(kind="kubelet-stop", duration=30))
    f = FaultSpec.model_validate(_fault(kind="kubelet-stop", duration="1m"))
    assert f.duration == 60.0


def _experiment(tmp_path: Path, doc: dict[str, object]) -> Path:
    p = tmp_path / "e.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_bad_live_key_names_file_line_and_key(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "experiments" / "live-kind-node-crash.yaml").read_text())
    doc["faults"][0]["live"]["methd"] = "pod"
    p = _experiment(tmp_path, doc)
    with pytest.raises(ExperimentError) as ei:
        load_experiment(p)
    text = str(ei.value)
    assert text.startswith(f"{p}:") and "faults[0].live.methd" in text and "unknown key" in text
    line = int(text.split(":")[1])
    assert "methd" in p.read_text().splitlines()[line - 1]


def test_a_fault_key_that_does_not_fit_its_kind_is_located(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "experiments" / "live-pod-delete.yaml").read_text())
    doc["faults"][0]["live"]["method"] = "pod"  # a pod delete is an API action
    p = _experiment(tmp_path, doc)
    with pytest.raises(ExperimentError, match=r"faults\[0\]\.live: .*use method: api"):
        load_experiment(p).validate()


def test_missing_live_section(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_text("title: t\ndesigns: [clusterip]\nfaults: [{kind: node-crash}]\n")
    with pytest.raises(ExperimentError, match="no live: section"):
        live_faults(load_experiment(p))


def test_old_layout_is_refused_with_how_to_migrate(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "experiments" / "live-pod-delete.yaml").read_text())
    doc["live"]["fault"] = {"kind": "pod-delete", "method": "api"}
    doc["live"]["probe"] = doc.pop("probe")
    with pytest.raises(ExperimentError) as ei:
        load_experiment(_experiment(tmp_path, doc))
    lines = str(ei.value).splitlines()
    assert len(lines) == 2
    assert "live.fault: this file has the first layout: move it into" in lines[0]
    assert "live.probe" in lines[1] and "client.timeout" in lines[1]


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiments").glob("live-*.yaml")), ids=lambda p: p.name
)
def test_shipped_live_experiments_validate(path: Path) -> None:
    exp = load_experiment(path)
    exp.validate()
    (i,) = live_faults(exp)
    spec = exp.live_spec(i)
    assert isinstance(spec, LiveSpec) and spec.fault.kind == exp.model.faults[i].kind
    # one timeout: the probes wait what the model's client waits
    assert spec.probe.timeout == exp.probe_timeout(i)


# ----------------------------------------------------------------------------- clock


@settings(max_examples=200, deadline=None)
@given(
    offset=st.floats(-1e6, 1e6),
    start=st.floats(0, 1e5),
    rtts=st.lists(
        st.tuples(st.floats(0, 1.5), st.floats(0.0005, 0.2), st.floats(0, 1)),
        min_size=1,
        max_size=30,
    ),
)
def test_clock_offset_bounds_contain_truth(
    offset: float, start: float, rtts: list[tuple[float, float, float]]
) -> None:
    """Whatever the request spacing and latency, the true offset stays inside the bounds."""
    c = ClockOffset()
    m = start
    for gap, rtt, where in rtts:
        m += gap
        served = m + where * rtt  # the server stamps its Date somewhere inside the request
        date = email.utils.formatdate(math.floor(served + offset), usegmt=True)
        c.add(date, m, m + rtt)
        m += rtt
    assert c.lo - 1e-6 <= offset <= c.hi + 1e-6
    assert c.conflicts == 0


def test_clock_offset_narrows_with_phases() -> None:
    c = ClockOffset()
    offset = 1234.567
    for i in range(24):
        m = 100.0 + i / 12
        c.add(email.utils.formatdate(math.floor(m + 0.001 + offset), usegmt=True), m, m + 0.002)
    assert abs(c.offset - offset) < 0.05 and c.uncertainty < 0.05


# ----------------------------------------------------------------------------- journal


def test_journal_pending_undo_newest_first_and_torn_line(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    a = j.add_undo({"op": "uncordon", "node": "n1"})
    b = j.add_undo({"op": "delete-pod", "namespace": "d", "name": "p"})
    c = j.add_undo({"op": "hook", "argv": ["true"], "timeout": 1})
    j.undo_done(b)
    assert [s.id for s in j.pending()] == [c, a]
    with j.path.open("a") as f:
        f.write('{"seq": 99, "event": "undo.do')  # crash mid-write
    assert [s.id for s in pending_undo(j.path)] == [c, a]
    j2 = Journal(tmp_path)  # a --recover process continues the same journal
    d = j2.add_undo({"op": "uncordon", "node": "n2"})
    assert d not in (a, b, c)


def test_journal_entries_are_json_lines_with_both_clocks(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.write("note", value=math.inf)
    e = json.loads(j.path.read_text().splitlines()[0])
    assert e["event"] == "note" and e["value"] == "inf" and e["wall"] > e["mono"]


# ----------------------------------------------------------------------------- TLS


def _kubeconfig(api: FakeApi, tmp: Path, **cluster: object) -> Path:
    cfg = json.loads(api.kubeconfig.read_text())
    cfg["clusters"][0]["cluster"].update(cluster)
    for k, v in list(cfg["clusters"][0]["cluster"].items()):
        if v is None:
            del cfg["clusters"][0]["cluster"][k]
    p = tmp / "kc-variant"
    p.write_text(json.dumps(cfg))
    return p


def test_tls_verification_cannot_be_turned_off(tmp_path: Path) -> None:
    api = FakeApi(FakeCluster(), tmp_path)
    try:
        kc = _kubeconfig(
            api, tmp_path, **{"insecure-skip-tls-verify": True, "certificate-authority-data": None}
        )
        with pytest.raises(KubeError, match="TLS verification off"):
            load_kube(str(kc), "fake", 5)
    finally:
        api.close()


def test_wrong_ca_is_refused_without_leaking_the_token(tmp_path: Path) -> None:
    api = FakeApi(FakeCluster(), tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    api2 = FakeApi(FakeCluster(), other)  # a different CA
    try:
        ca2 = json.loads(api2.kubeconfig.read_text())["clusters"][0]["cluster"][
            "certificate-authority-data"
        ]
        kc = _kubeconfig(api, tmp_path, **{"certificate-authority-data": ca2})
        kube = load_kube(str(kc), "fake", 5)
        with pytest.raises(KubeError) as ei:
            kube.version()
        assert ei.value.status == 0 and "SSL" in str(ei.value).upper()
        assert FakeApi.TOKEN not in str(ei.value)
        good = load_kube(str(api.kubeconfig), "fake", 5)
        assert good.version()["gitVersion"].startswith("v1.")
        assert good.clock.samples == 1
    finally:
        api.close()
        api2.close()


def test_unauthorized_error_is_one_line_without_token(tmp_path: Path) -> None:
    api = FakeApi(FakeCluster(), tmp_path)
    try:
        cfg = json.loads(api.kubeconfig.read_text())
        cfg["users"][0]["user"]["token"] = "wrong-" + FakeApi.TOKEN
        p = tmp_path / "kc-bad-token"
        p.write_text(json.dumps(cfg))
        with pytest.raises(KubeError) as ei:
            load_kube(str(p), "fake", 5).get("/api/v1/nodes")
        assert ei.value.status == 401 and "\n" not in str(ei.value)
        assert FakeApi.TOKEN not in str(ei.value)
    finally:
        api.close()


def test_unknown_context_is_a_clear_error(tmp_path: Path) -> None:
    api = FakeApi(FakeCluster(), tmp_path)
    try:
        with pytest.raises(KubeError, match="context 'nope'"):
            load_kube(str(api.kubeconfig), "nope", 5)
    finally:
        api.close()


# ----------------------------------------------------------------------------- chaos pods


def test_chaos_pod_shape() -> None:
    pod = chaos_pod(
        name="chaoslab-x-t0-node-crash",
        namespace="chaos",
        node="w1",
        action="node-crash",
        image="busybox",
        script="true",
        run_id="x",
        duration=None,
    )
    spec = pod["spec"]
    assert spec["nodeName"] == "w1" and spec["hostPID"] and spec["hostNetwork"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["automountServiceAccountToken"] is False
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "chaoslab"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_partition_script_heals_itself(tmp_path: Path) -> None:
    """Run the partition script with nsenter/iptables replaced by a recorder: every rule it
    inserts it deletes again after the duration, ACCEPTs above DROPs."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    # 'nsenter -t 1 -m -n -- iptables ARGS': the recorder logs ARGS; -D fails once the rule
    # is gone (as iptables does), so the 'while -D' loops end
    (fake / "nsenter").write_text(
        '#!/bin/sh\nwhile [ "$1" != -- ]; do shift; done; shift; shift\n'
        f'echo "$*" >> {log}\n'
        f'if [ "$1" = -D ]; then n=$(grep -c -- "$*" {log}); [ $n -le 1 ]; fi\n'
    )
    (fake / "nsenter").chmod(0o755)
    script = _partition_script("chaoslab-abc", 0.2, ["192.0.2.0/24"])
    cp = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{fake}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert cp.returncode == 0, cp.stderr
    assert "partitioned" in cp.stdout and "healed" in cp.stdout
    calls = log.read_text().splitlines()
    inserted = [c for c in calls if c.startswith("-I")]
    assert len(inserted) == 7  # 3 DROPs + 2 loopback + 2 exempt ACCEPTs
    assert all("--comment chaoslab-abc" in c for c in inserted)
    assert inserted.index(next(c for c in inserted if "DROP" in c)) == 0  # DROPs first ...
    assert "ACCEPT" in inserted[-1]  # ... so the ACCEPTs end up above them
    for c in inserted:
        assert c.replace("-I", "-D", 1).replace(" 1 ", " ", 1) in calls


def test_kill_script_quotes_container_id() -> None:
    s = _kill_script("abc'; rm -rf /")
    assert "CID='abc'\"'\"'; rm -rf /'" in s and "kill -9" in s


# ----------------------------------------------------------------------------- comparison


def _drill_comparison(pred: pd.DataFrame, meas: pd.DataFrame) -> pd.DataFrame:
    """The engine's comparison.csv for one design x fault, the probe bin 0.1 s."""
    from types import SimpleNamespace

    from chaoslab.live.engine import comparison
    from chaoslab.results import ProberInfo

    fault = SimpleNamespace(name="node-crash", target="app-pod-node")
    target = SimpleNamespace(
        design="clusterip",
        prober=ProberInfo(10, 1, 0.1),
        faults=lambda: [fault],
        predict=lambda f: pred,
    )
    measured = meas.assign(design="clusterip", fault="node-crash")
    return comparison(target, measured, None, lambda s: None)  # type: ignore[arg-type]


def test_comparison_table() -> None:
    pred = pd.DataFrame(
        {
            "recovery_s": np.linspace(40, 60, 101),
            "downtime_s": 0.0,
            "degraded_s": 1.0,
            "lost_s": 5.0,
            "at_node_not_ready": np.linspace(40, 50, 101),
            "at_node_ready": math.nan,
        }
    )
    meas = pd.DataFrame(
        {
            "recovery_s": [45.0, 47.0, 90.0],
            "downtime_s": [0.0, 0.0, 0.0],
            "degraded_s": [1.0, 1.0, 1.0],
            "lost_s": [4.0, 5.0, 6.0],
            "at_node_not_ready": [41.0, math.nan, 44.0],
            "at_node_ready": [100.0, 101.0, math.nan],
            "at_pod_sigterm": [1.0, 1.0, 1.0],
        }
    )
    table = _drill_comparison(pred, meas)
    assert tuple(table.columns) == COMPARISON_COLUMNS
    c = table.set_index("metric")
    r = c.loc["recovery_s"]
    assert r["predicted_p5"] == pytest.approx(41, abs=0.3) and r["measured_median"] == 47
    assert r["measured_max"] == 90 and r["n"] == 3
    assert r["inside"] == pytest.approx(2 / 3)  # 45 and 47 inside, 90 not
    assert c.loc["lost_s", "inside"] == pytest.approx(1 / 3)  # only 5.0 within 5 +- 0.1
    assert c.loc["at_node_not_ready", "n"] == 2
    assert math.isnan(c.loc["at_node_ready", "inside"])
    assert "never reaches" in c.loc["at_node_ready", "note"]
    assert "no such milestone" in c.loc["at_pod_sigterm", "note"]


def test_live_milestones_are_the_models() -> None:
    import chaoslab.runner  # noqa: F401  (registers every mechanism's milestones)
    from chaoslab.live.k8s.observe import LIVE_MILESTONES
    from chaoslab.mechanisms.base import MILESTONES

    assert set(LIVE_MILESTONES) <= set(MILESTONES)


def test_rbac_check_denies_what_the_manifest_does_not_grant() -> None:
    from .rbac_check import denied

    assert denied([("GET", "/version")]) == []
    assert denied([("POST", "/api/v1/namespaces/chaoslab/pods")]) == []
    assert denied([("POST", "/api/v1/namespaces/demo/pods")])  # chaos pods: chaoslab ns only
    assert denied([("GET", "/api/v1/namespaces/demo/secrets")])
    assert denied([("DELETE", "/api/v1/nodes/w1")])


def test_signal_during_rollback_is_deferred() -> None:
    import os
    import signal

    from chaoslab.live.engine import DrillInterrupted, SignalGuard

    said: list[str] = []
    with SignalGuard(said.append) as guard:
        with guard.rollback():
            os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode boundary
            for _ in range(1000):
                pass
        assert guard.interrupted == "SIGINT" and "rollback finishes first" in said[0]
        # the drill is stopping now: a second signal must not cut its way out either
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        assert guard.interrupted == "SIGTERM" and "finishes first" in said[1]
    with SignalGuard(said.append), pytest.raises(DrillInterrupted):  # the first one raises
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_watcher_close_cuts_a_quiet_stream(tmp_path: Path) -> None:
    """Closing a watcher must not wait for the server's next event or bookmark."""
    import threading
    import time

    from chaoslab.live.k8s.observe import Watcher

    cl = FakeCluster()
    cl.add_node("w1", "10.0.0.1")
    api = FakeApi(cl, tmp_path)
    api.api.bookmark_every = 3600  # a quiet stream: no bookmarks
    try:
        kube = load_kube(str(api.kubeconfig), "fake", 5)
        got: list[object] = []
        w = Watcher(
            kube,
            "nodes",
            "/api/v1/nodes",
            {},
            got.append,
            threading.Event(),
            server_timeout=60,
            read_timeout=65,
            backoff=0.1,
        )
        w.start()
        assert w.listed.wait(5)
        time.sleep(0.3)  # the watch request is open and idle
        t = time.monotonic()
        w.close()
        w.join(5)
        assert not w.is_alive() and time.monotonic() - t < 1.0
    finally:
        api.close()


def test_design_notes_flag_mismatched_services() -> None:
    from chaoslab.live.k8s.drill import design_notes

    local = {"spec": {"type": "NodePort", "externalTrafficPolicy": "Local"}}
    cluster = {"spec": {"type": "NodePort", "externalTrafficPolicy": "Cluster"}}
    assert design_notes("nodeport-lb-local", local) == []
    assert design_notes("nodeport-lb", cluster) == []
    assert "Local" in design_notes("nodeport-lb-local", cluster)[0]
    assert "nodeport-lb-local may fit" in design_notes("nodeport-lb", local)[0]
    assert "type ClusterIP" in design_notes("nodeport-direct", {"spec": {}})[0]


def _pod(
    name: str, uid: str, *, ready: bool, node: str = "w1", deleting: bool = False, restarts: int = 0
) -> dict[str, object]:
    md: dict[str, object] = {"name": name, "uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:30Z"
        md["deletionGracePeriodSeconds"] = 30
    return {
        "metadata": md,
        "spec": {"nodeName": node},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


def test_tracker_statefulset_replacement_keeps_the_name() -> None:
    """A StatefulSet's replacement pod has the old name; the uid tells them apart."""
    from chaoslab.live.k8s.observe import MilestoneTracker, Observation

    tr = MilestoneTracker(
        t0=10.0,
        clock=ClockOffset(),
        fault="node-crash",
        node="w1",
        targets=frozenset({"db-0"}),
        initial_pods=frozenset({"db-0", "db-1"}),
        initial_ready_endpoints=frozenset({"db-0", "db-1"}),
        initial_uids=frozenset({"u0", "u1"}),
    )
    feed = [
        (5.0, "ADDED", _pod("db-0", "u0", ready=True)),
        (11.0, "MODIFIED", _pod("db-0", "u0", ready=False)),
        (12.0, "MODIFIED", _pod("db-0", "u0", ready=False, deleting=True)),
        (13.0, "DELETED", _pod("db-0", "u0", ready=False, deleting=True)),
        (13.5, "ADDED", _pod("db-0", "u9", ready=False, node="")),
        (14.0, "MODIFIED", _pod("db-0", "u9", ready=False, node="w2")),
        (15.0, "MODIFIED", _pod("db-0", "u9", ready=True, node="w2")),
    ]
    for mono, typ, obj in feed:
        tr.feed(Observation(mono, "pods", typ, obj))
    t = {k: m.t for k, m in tr.found.items()}
    assert t["pods.not_ready"] == 1.0 and t["pod.evicted"] == 2.0 and t["pod.gone"] == 3.0
    assert t["replacement.created"] == 3.5 and t["replacement.scheduled"] == 4.0
    assert t["replacement.ready"] == 5.0 and t["pod.ready"] == 5.0
    assert tr.pods_ready == {"db-0": True}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_fake_server_tls_without_cryptography(tmp_path: Path, monkeypatch) -> None:
    """Certificates made by the openssl command work with the client's verification too."""
    from . import fakeapi

    monkeypatch.setattr(fakeapi, "_make_tls", fakeapi._make_tls_openssl)
    api = FakeApi(FakeCluster(), tmp_path)
    try:
        assert load_kube(str(api.kubeconfig), "fake", 5).version()["major"] == "1"
    finally:
        api.close()


def test_crash_script_guards_against_a_second_run() -> None:
    """Never executed here (it would crash this machine): the marker check comes first,
    the marker is written and synced before the arm sleep and the sysrq trigger."""
    from chaoslab.live.k8s.inject import _crash_script

    s = _crash_script("poweroff", 5, "ab12-t0")
    lines = s.splitlines()
    guard = next(i for i, x in enumerate(lines) if "test -e" in x and "exit 0" in x)
    touch = next(i for i, x in enumerate(lines) if " touch " in x)
    sync = next(i for i, x in enumerate(lines) if x.endswith(" sync"))
    trigger = next(i for i, x in enumerate(lines) if "/proc/sysrq-trigger" in x)
    assert guard == 0 and guard < touch < sync < trigger
    assert "/var/lib/chaoslab/ab12-t0.crashed" in lines[guard]
    assert "echo o > /proc/sysrq-trigger" in s and "sleep 5" in s


# ----------------------------------------------------------------------------- progress


class _Snapshot:
    """What a prober hands the drill loop: its records so far (data, not a fake prober)."""

    def __init__(self, t: list[float], outcome: list[str]) -> None:
        self.df = pd.DataFrame({"t": t, "outcome": outcome})

    def snapshot(self) -> pd.DataFrame:
        return self.df


def test_progress_before_any_probe_after_the_fault_is_known() -> None:
    """Under load the first probes after the fault may not have an outcome yet: the loop
    must treat that as unknown (no outage started, not steady), not crash (seen in CI)."""
    from chaoslab.live.k8s.drill import _current

    spec = load_experiment(REPO / "experiments" / "live-pod-delete.yaml").live_spec(0)
    t0 = 100.0
    before = _Snapshot([98.0, 99.0, 99.9], ["ok", "ok", "ok"])
    now = t0 + spec.probe.timeout + 0.05
    rec, start, up, horizon, up_for = _current([before], t0, now, spec)
    assert (rec, up, up_for) == (0.0, False, 0.0) and math.isnan(start) and horizon > 0
    later = _Snapshot([99.0, t0 + 0.01, t0 + 0.02], ["ok", "timeout", "timeout"])
    _, start, up, _, _ = _current([later], t0, now, spec)
    assert not up and start == 0.0


def _written_by(now: float, t0: float, seed: int, lag: float, spec: LiveSpec) -> _Snapshot:
    """A prober's file at ``now``: 2 probers x 20/s from 5 s before the fault; after it, a
    third of new connections (at random) go to the dead pod and time out. From the fault on
    the prober's loop runs ``lag`` late (a loaded machine): every record completes that much
    later, and the file holds what completed one flush (0.1 s) before ``now``."""
    rng = np.random.default_rng(seed)
    starts = np.arange(t0 - 5.0, now, 0.025)
    dead = (starts >= t0) & (rng.random(starts.size) < 1 / 3)
    latency = np.where(dead, spec.probe.timeout, 0.005) + np.where(starts >= t0, lag, 0.0)
    seen = starts + latency <= now - 0.1
    snap = _Snapshot(list(starts[seen]), list(np.where(dead, "timeout", "ok")[seen]))
    snap.df["latency"] = latency[seen]
    snap.df["kind"] = "new"
    return snap


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), lag=st.floats(0.0, 1.0))
def test_a_service_failing_one_probe_in_three_is_never_up_for_the_settle_window(
    seed: int, lag: float
) -> None:
    """Steady means the probes' record shows a(t) = 1 for the whole settle window, whenever
    the drill loop happens to look: a node-crash trial whose loop stalled under load saw
    two clean bins of a failing service, 3 s apart, and ended 4.95 s after the fault."""
    from chaoslab.live.k8s.drill import _current

    spec = load_experiment(REPO / "experiments" / "cluster-node-crash.yaml").live_spec(0)
    t0 = 100.0
    for now in np.arange(t0 + 1.0, t0 + 8.0, 0.3):
        snap = _written_by(float(now), t0, seed, lag, spec)
        prog = _current([snap], t0, float(now), spec)
        assert prog.up_for < spec.settle, f"up for {prog.up_for:.2f} s at t0 + {now - t0:.1f}"
        df = snap.df[(snap.df["t"] >= t0) & (snap.df["t"] < t0 + prog.horizon)]
        if prog.up:  # the newest known bin really is clean: every timeout in it is written
            bins = np.floor((df["t"] - t0) / spec.probe.bin)
            assert (df[bins == bins.max()]["outcome"] == "ok").all()


def test_the_known_horizon_follows_the_prober_and_falls_back_to_the_timeout() -> None:
    from chaoslab.live.k8s.drill import _known_until

    spec = load_experiment(REPO / "experiments" / "cluster-node-crash.yaml").live_spec(0)
    behind = _Snapshot([10.0, 10.5], ["ok", "ok"])
    behind.df["latency"] = [0.01, 0.01]
    assert _known_until(behind.df, 20.0, spec) == pytest.approx(
        10.51 - spec.probe.timeout - spec.probe.bin
    )
    assert _known_until(_Snapshot([10.0], ["ok"]).df, 20.0, spec) == 20.0 - spec.probe.timeout


def test_a_server_version_picks_its_own_profile_and_a_newer_one_the_newest() -> None:
    from chaoslab.live.k8s.discover import profile_for_version

    assert profile_for_version("1", "37")[0] == "k8s-1.37"
    assert profile_for_version("1", "33")[0] == "k8s-1.33"
    assert profile_for_version("1", "34+")[0] == "k8s-1.34"
    assert profile_for_version("1", "99")[0] == "k8s-1.37"
    assert profile_for_version("1", "12")[0] == "k8s-1.10"


def test_recover_reads_around_a_garbled_meta(tmp_path) -> None:
    """--recover must roll back even when meta.json is torn or not UTF-8: it notes it and
    takes the kubeconfig and context from live.json instead."""
    from chaoslab.live.k8s.drill import _recover_meta

    notes: list[str] = []
    path = tmp_path / "meta.json"
    path.write_bytes(b'{"kubeconfig": "\xff\xfe')
    assert _recover_meta(path, notes.append) == {}
    assert len(notes) == 1 and "unreadable" in notes[0]
    path.write_text("[1, 2]")
    assert _recover_meta(path, notes.append) == {}
    path.write_text('{"context": "kind"}')
    assert _recover_meta(path, notes.append) == {"context": "kind"}
    assert _recover_meta(tmp_path / "missing.json", notes.append) == {}
