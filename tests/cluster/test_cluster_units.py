"""The parts of the local control plane that need no Go build: timer flags from the
catalogue, the generated go.mod replace block, PKI, processes by PID and start time,
the state folder, and the CLI's one-line refusals."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from chaoslab.live.cluster import (
    BuildMissing,
    ClusterConfig,
    StateInUse,
    UnsupportedTimer,
    config_from_experiment,
    find_build,
)
from chaoslab.live.cluster.build import REPO, Build, module_hash
from chaoslab.live.cluster.components import cert_specs
from chaoslab.live.cluster.local import _claim
from chaoslab.live.cluster.pki import Pki
from chaoslab.live.cluster.procs import ProcRecord, alive, spawn, stop
from chaoslab.params import ParamSet

GRACE = "kube_controller_manager.node_monitor_grace_period"


def timers(**overrides: str) -> ClusterConfig:
    ps = ParamSet.resolve(overrides={k.replace("__", "."): v for k, v in overrides.items()})
    return ClusterConfig.from_params(ps)


def test_controller_flags_carry_the_experiment_values() -> None:
    ps = ParamSet.resolve(
        overrides={
            GRACE: "8s",
            "kube_controller_manager.node_monitor_period": "500ms",
            "kube_apiserver.default_unreachable_toleration_seconds": "10s",
            "kubelet.node_lease_duration_seconds": "4s",
        }
    )
    t = ClusterConfig.from_params(ps).timers
    assert t.kube_controller_manager["--node-monitor-grace-period"] == "8000ms"
    assert t.kube_controller_manager["--node-monitor-period"] == "500ms"
    assert t.kube_apiserver["--default-unreachable-toleration-seconds"] == "10"
    assert t.kube_apiserver["--default-not-ready-toleration-seconds"] == "300"
    assert t.kwok["--node-lease-duration-seconds"] == "4"
    assert t.sources[GRACE].startswith("8s (experiment")


@given(hs.integers(min_value=1, max_value=3_600_000))
def test_duration_flags_are_exact_milliseconds(ms: int) -> None:
    ps = ParamSet.resolve(overrides={GRACE: f"{ms}ms"})
    flag = ClusterConfig.from_params(ps).timers.kube_controller_manager
    assert flag["--node-monitor-grace-period"] == f"{ms}ms"


def test_a_distribution_is_refused_naming_the_key() -> None:
    with pytest.raises(UnsupportedTimer, match=GRACE):
        ClusterConfig.from_params(ParamSet.resolve(overrides={GRACE: "uniform(1s, 3s)"}))


def test_fractional_toleration_seconds_are_refused() -> None:
    key = "kube_apiserver.default_unreachable_toleration_seconds"
    with pytest.raises(UnsupportedTimer, match="whole number of seconds"):
        ClusterConfig.from_params(ParamSet.resolve(overrides={key: "10.5s"}))


def test_status_post_heartbeats_of_1_10_are_refused() -> None:
    with pytest.raises(UnsupportedTimer, match="kubelet.node_lease"):
        ClusterConfig.from_params(ParamSet.resolve("k8s-1.10"))


def test_a_renew_fraction_kwok_cannot_do_is_refused() -> None:
    key = "kubelet.node_lease_renew_interval_fraction"
    with pytest.raises(UnsupportedTimer, match=key):
        ClusterConfig.from_params(ParamSet.resolve(overrides={key: "0.5"}))


EXPERIMENT = """\
title: t
profile: k8s-1.31
cluster:
  nodes: {master: 1, controller: 2, compute: 1}
  app: {replicas: 2}
designs: [nodeport-lb]
faults:
  - {kind: node-crash, target: app-pod-node}
params:
  kube_apiserver.default_unreachable_toleration_seconds: 20s
"""


def test_experiment_gives_nodes_profile_and_params(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    cfg = config_from_experiment(exp)
    assert [(n.name, n.role) for n in cfg.nodes()] == [
        ("master-1", "master"),
        ("controller-1", "controller"),
        ("controller-2", "controller"),
        ("compute-1", "compute"),
    ]
    assert cfg.spec.replicas == 2
    # the profile's grace (k8s-1.31: 40 s) and the file's toleration
    assert cfg.timers.kube_controller_manager["--node-monitor-grace-period"] == "40000ms"
    assert cfg.timers.kube_apiserver["--default-unreachable-toleration-seconds"] == "20"


def test_a_sweep_is_refused(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT + "sweep:\n  " + GRACE + ": [8s, 16s]\n")
    with pytest.raises(UnsupportedTimer, match="sweep"):
        config_from_experiment(exp)


# ----------------------------------------------------------------------- go.mod


def _gen_gomod() -> Any:
    spec = importlib.util.spec_from_file_location("gen_gomod", REPO / "tools" / "gen_gomod.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


UPSTREAM = textwrap.dedent(
    """\
    module k8s.io/kubernetes

    go 1.26.0

    godebug default=go1.26

    require (
    \tgo.etcd.io/etcd/client/v3 v3.7.0
    \tk8s.io/api v0.0.0
    )

    require go.etcd.io/etcd/server/v3 v3.7.0 // indirect

    replace (
    \tk8s.io/api => ./staging/src/k8s.io/api
    \tk8s.io/client-go => ./staging/src/k8s.io/client-go
    \tgithub.com/other/mod => github.com/other/mod v1.2.3
    )
    """
)


def test_replace_block_is_derived_from_the_release_go_mod() -> None:
    gen = _gen_gomod()
    args = gen.edit_args(gen.parse(UPSTREAM), "v1.37.2")
    assert "-replace=k8s.io/api=k8s.io/api@v0.37.2" in args
    assert "-replace=k8s.io/client-go=k8s.io/client-go@v0.37.2" in args
    assert not any("github.com/other" in a for a in args)
    assert "-require=go.etcd.io/etcd/server/v3@v3.7.0" in args
    assert "-go=1.26.0" in args and "-godebug=default=go1.26" in args


@pytest.mark.parametrize("module", ["k8s", "k8s-1.33"])
def test_committed_go_mod_replaces_every_staging_module_at_its_release(module: str) -> None:
    text = (REPO / "tools" / module / "go.mod").read_text()
    version = next(
        line.split()[1]
        for line in text.splitlines()
        if line.strip().startswith("k8s.io/kubernetes ")
    )
    minor = version.split(".")[1]
    replaces = [line for line in text.splitlines() if "=>" in line]
    assert replaces, "no replace block"
    for line in replaces:
        name, _, target = line.replace("replace", "").partition("=>")
        assert target.split() == [name.strip(), f"v0.{minor}.{version.split('.')[2]}"]


def test_python_and_build_script_agree_on_the_build_folder_hash() -> None:
    mod = REPO / "tools" / "k8s"
    out = subprocess.run(
        f"cat {mod}/go.mod {mod}/go.sum | sha256sum", shell=True, capture_output=True, text=True
    )
    assert out.stdout[:16] == module_hash(mod)


def test_missing_build_names_the_build_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAOSLAB_K8S_BUILD", str(tmp_path))
    with pytest.raises(BuildMissing, match="tools/build.sh k8s"):
        find_build("k8s")


# ----------------------------------------------------------------------- PKI


@pytest.mark.parametrize("backend", ["cryptography", "openssl"])
def test_certificates_chain_to_the_ca_with_kubernetes_identities(
    backend: str, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "pki", backend=backend)
    pki.create(cert_specs(ClusterConfig().nodes()))

    def openssl(*args: str) -> str:
        return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout

    for name in ("apiserver", "admin", "node-controller-1"):
        assert (
            openssl("verify", "-CAfile", str(pki.ca_cert), str(pki.cert(name)))
            .strip()
            .endswith("OK")
        )
    node = openssl("x509", "-in", str(pki.cert("node-controller-1")), "-noout", "-subject")
    assert "O = system:nodes" in node and "CN = system:node:controller-1" in node
    api = openssl("x509", "-in", str(pki.cert("apiserver")), "-noout", "-ext", "subjectAltName")
    assert "IP Address:127.0.0.1" in api and "DNS:kubernetes.default.svc" in api
    assert oct(pki.key("admin").stat().st_mode & 0o777) == "0o600"
    assert (pki.dir / "sa.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


# ----------------------------------------------------------------------- processes, state


def test_stop_leaves_a_process_whose_start_time_differs(tmp_path: Path) -> None:
    rec = spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log")
    try:
        impostor = ProcRecord(rec.name, rec.pid, rec.start + 1, rec.argv, rec.log)
        assert not stop(impostor, grace=1.0)
        assert alive(rec.pid, rec.start)
        assert stop(rec, grace=5.0)
        assert not alive(rec.pid, rec.start)
    finally:
        if alive(rec.pid, rec.start):
            os.kill(rec.pid, signal.SIGKILL)


def test_second_claim_of_a_state_folder_is_refused(tmp_path: Path) -> None:
    _claim(tmp_path / "s", "one")
    with pytest.raises(StateInUse, match="already holds a cluster") as e:
        _claim(tmp_path / "s", "two")
    assert "\n" not in str(e.value) and "cluster down --state" in str(e.value)


# ----------------------------------------------------------------------- CLI


def chaoslab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoslab", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_up_refuses_a_distribution_in_one_line(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.replace("20s", "uniform(10s, 20s)"))
    r = chaoslab("cluster", "up", str(exp), "--state", str(tmp_path / "state"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "default_unreachable_toleration_seconds" in r.stderr
    assert not (tmp_path / "state").exists()


def test_cli_status_and_down_without_a_cluster(tmp_path: Path) -> None:
    r = chaoslab("cluster", "status", "--state", str(tmp_path / "none"))
    assert r.returncode == 1 and "no cluster" in r.stdout
    r = chaoslab("cluster", "down", "--state", str(tmp_path / "none"))
    assert r.returncode == 0 and "nothing to do" in r.stdout


def _stages(tmp_path: Path, kwok: Build, *, served: bool) -> dict[str, Any]:
    import yaml

    from chaoslab.live.cluster.components import Layout

    cfg = ClusterConfig.from_params(
        ParamSet.resolve(overrides={"kubelet.status_sync_period": "4s"})
    )
    lay = Layout(tmp_path, {}, None, cfg)
    text = lay.write_kwok_stages(kwok, served=served).read_text()
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(text)}


def _selects(stage: dict[str, Any]) -> dict[str, Any]:
    return {e["key"]: e.get("values") for e in stage["spec"]["selector"]["matchExpressions"]}


def test_kwok_sets_pods_ready_again_within_the_status_sync_period(
    tmp_path: Path, kwok_build: Build
) -> None:
    stages = _stages(tmp_path, kwok_build, served=False)
    assert {"node-initialize", "node-heartbeat-with-lease", "pod-ready"} <= set(stages)
    stage = stages["chaoslab-pod-ready-again"]
    assert stage["kind"] == "Stage" and stage["spec"]["resourceRef"]["kind"] == "Pod"
    assert stage["spec"]["delay"] == {"durationMilliseconds": 0, "jitterDurationMilliseconds": 4000}
    selects = _selects(stage)
    assert selects[".status.phase"] == ["Running"]
    # a pod that was never Ready waits for its server instead (below)
    assert selects['.status.conditions.[] | select( .type == "Ready" ) | .reason'] == [
        "ContainersNotReady"
    ]


def test_with_the_runtime_stand_in_a_pod_is_ready_only_once_it_serves(
    tmp_path: Path, kwok_build: Build
) -> None:
    from chaoslab.live.cluster import dataplane_runtime
    from chaoslab.live.cluster.components import NOT_YET_READY, SERVING_CONDITION

    assert dataplane_runtime.SERVING_CONDITION == SERVING_CONDITION
    stages = _stages(tmp_path, kwok_build, served=True)
    assert "pod-ready" not in stages
    start = stages["chaoslab-pod-start"]["spec"]["next"]["statusTemplate"]
    assert "phase: Running" in start and "podIP:" in start
    assert 'status: "True"\n  type: Ready' not in start
    assert f'status: "False"\n  reason: {NOT_YET_READY}\n  type: Ready' in start
    # the stand-in writes Ready itself once it serves: no stage of kwok's may do it first
    assert "chaoslab-pod-served" not in stages
    assert "chaoslab-pod-ready-again" in stages
    again = _selects(stages["chaoslab-pod-ready-again"])
    assert again['.status.conditions.[] | select( .type == "Ready" ) | .reason'] == [NOT_YET_READY]
    conds = {c["type"]: c for c in dataplane_runtime.ready_conditions("2026-12-02T06:00:00Z")}
    assert conds[SERVING_CONDITION]["status"] == "True"
    for kind in ("Ready", "ContainersReady"):  # kwok's reason must go, or it looks not-ready
        assert conds[kind]["status"] == "True" and conds[kind]["reason"] == ""


def test_cli_up_with_an_unknown_build_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = chaoslab("cluster", "up", "--build", "k8s-0.1", "--state", str(tmp_path / "s"))
    assert r.returncode == 2 and "tools/k8s-0.1/go.mod not found" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "s").exists()


# -- the data plane's kube-proxy supervisor (a kubelet's crash-loop back-off) -------------


def test_crash_loop_restarts_at_once_then_doubles_to_the_cap_and_forgets_after_two_caps() -> None:
    from chaoslab.live.cluster.dataplane_supervise import CrashLoop

    loop = CrashLoop(initial=10.0, cap=40.0)
    # exits 1 s after each restart: at once, 10, 20, 40, 40 (kubelet doBackOff + Backoff)
    waits, t = [], 0.0
    for _ in range(5):
        w = loop.wait_after_exit(t)
        waits.append(w)
        t += w + 1.0
    assert waits == [0.0, 10.0, 20.0, 40.0, 40.0]
    # stable for more than twice the cap: the next exit is a first exit again
    assert loop.wait_after_exit(t + 80.5) == 0.0
    assert loop.wait_after_exit(t + 81.0) == 10.0


@given(hs.lists(hs.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=30))
def test_crash_loop_never_waits_past_the_cap(gaps: list[float]) -> None:
    from chaoslab.live.cluster.dataplane_supervise import CrashLoop

    loop, t = CrashLoop(initial=10.0, cap=300.0), 0.0
    for gap in gaps:
        t += gap
        assert 0.0 <= loop.wait_after_exit(t) <= 300.0


def _supervise(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen[bytes], Path]:
    script = Path(__file__).resolve().parents[2] / "chaoslab/live/cluster/dataplane_supervise.py"
    log = tmp_path / "kube-proxy.log"
    fh = log.open("wb")
    p = subprocess.Popen(
        [sys.executable, "-P", "-u", str(script), "--backoff", "0.2", "0.4", "--", *argv],
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    fh.close()
    return p, log


def _lines(log: Path, word: str, n: int) -> list[str]:
    for _ in range(600):  # up to 60 s on a loaded machine
        lines = [ln for ln in log.read_text().splitlines() if f"supervise {word}" in ln]
        if len(lines) >= n:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} '{word}' lines in {log}:\n{log.read_text()}")


def test_an_exiting_process_is_restarted_with_the_back_off_and_each_restart_is_logged(
    tmp_path: Path,
) -> None:
    p, log = _supervise(tmp_path, "sh", "-c", "echo NodeIPs changed; exit 1")
    try:
        exits = _lines(log, "exited", 4)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    waits = [ln.rsplit("restart in ", 1)[1] for ln in exits[:4]]
    assert waits == ["0 s", "0.2 s", "0.4 s", "0.4 s"]
    assert all("rc=1" in ln for ln in exits)
    text = log.read_text()
    assert text.count("NodeIPs changed") >= 4  # the child's own output lands in the same log


def test_killing_the_supervisor_kills_its_kube_proxy(tmp_path: Path) -> None:
    p, log = _supervise(tmp_path, "sleep", "600")
    child = int(_lines(log, "start", 1)[0].rsplit("pid=", 1)[1])
    p.kill()  # a node crash SIGKILLs the recorded process: the supervisor
    p.wait(timeout=30)
    for _ in range(300):
        if not Path(f"/proc/{child}").exists() or "Z" in _proc_state(child):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the supervised child outlived its supervisor")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
