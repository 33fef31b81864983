"""A drill's own cluster gets a state folder of its own, and its logs outlive it.

Two drills in a row used to bring their clusters up in the same folder, the second one
overwriting the controllers' logs of the first (the evidence of a late milestone). No
real control plane is needed: a recorded ``sleep`` stands in for a component, so what
``down``, the reaper and ``LocalSession.close`` stop and remove is checked exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chaoslab.live.cluster.components import Layout
from chaoslab.live.cluster.config import ClusterConfig
from chaoslab.live.cluster.local import LocalCluster, _claim
from chaoslab.live.cluster.procs import alive, spawn
from chaoslab.live.cluster.reaper import reap
from chaoslab.live.cluster.state import ClusterState, drill_state_dir
from chaoslab.live.cluster.target import LocalSession


def _fake_cluster(state_dir: Path, line: str) -> LocalCluster:
    """A recorded cluster: one running component writing ``line`` to its log, and the
    files a real one has beside its logs."""
    state = _claim(state_dir, state_dir.name)
    layout = Layout(state_dir, {}, None, ClusterConfig())
    code = f"print({line!r}, flush=True); import time; time.sleep(600)"
    rec = spawn("kube-controller-manager", [sys.executable, "-c", code], layout.logs / "kcm.log")
    state.record(rec)
    (state_dir / "pki").mkdir()
    (state_dir / "pki" / "ca.key").write_text("not a key\n")
    (state_dir / "admin.kubeconfig").write_text("{}\n")
    return LocalCluster(state, layout)


def _drill(root: Path, monkeypatch: pytest.MonkeyPatch, line: str) -> tuple[Path, int]:
    """What a drill that brought its cluster up does at its end: close the session."""
    monkeypatch.setenv("CHAOSLAB_CLUSTER_STATE", str(root))
    cluster = _fake_cluster(drill_state_dir("cluster-node-crash-production"), line)
    _wait_logged(cluster.layout.logs / "kcm.log", line)
    pid = cluster.state.processes[0].pid
    work = root / f"work-{pid}"
    work.mkdir()
    LocalSession(cluster, Path(), work / "kc", work, owned_cluster=True).close()
    return cluster.state.dir, pid


def _wait_logged(log: Path, line: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while line not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"{log}: the component never wrote"
        time.sleep(0.05)


def test_two_drills_in_a_row_keep_both_log_sets_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, pid1 = _drill(tmp_path, monkeypatch, "first drill's controller")
    second, pid2 = _drill(tmp_path, monkeypatch, "second drill's controller")
    assert first != second
    assert "first drill's controller" in (first / "logs" / "kcm.log").read_text()
    assert "second drill's controller" in (second / "logs" / "kcm.log").read_text()
    for d in (first, second):
        assert sorted(p.name for p in d.iterdir()) == ["logs"]  # no key, state or kubeconfig
        assert ClusterState.load(d) is None
        assert LocalCluster.load(d) is None  # cluster down --state: nothing recorded
    assert reap([tmp_path]) == []  # the reaper finds nothing left to take down
    assert not any(alive(pid, None) for pid in (pid1, pid2))


def test_down_without_keep_logs_removes_the_whole_folder(tmp_path: Path) -> None:
    cluster = _fake_cluster(tmp_path / "c", "x")
    pid = cluster.state.processes[0].pid
    cluster.down()
    assert not (tmp_path / "c").exists()
    assert not alive(pid, None)


def test_the_reaper_takes_down_a_drill_cluster_whose_owner_died(tmp_path: Path) -> None:
    d = drill_state_dir("x", now=0.0)
    cluster = _fake_cluster(tmp_path / d.name, "orphan")
    pid = cluster.state.processes[0].pid
    assert reap([tmp_path]) == [
        f"stopped kube-controller-manager (pid {pid})",
        f"removed {cluster.state.dir}",
    ]
    assert not alive(pid, None)


def test_drill_folders_are_named_by_the_experiment_and_never_shared() -> None:
    names = {drill_state_dir("cluster-node-partition-production", now=0.0).name for _ in range(50)}
    assert len(names) == 50
    assert all(
        n.startswith("drill-cluster-node-partition-productio-19700101T000000-") for n in names
    )


_STAND_IN_DRILL = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from cluster.test_drill_folders import _fake_cluster
from chaoslab.live.cluster.target import start_drill_reaper
d = Path({state_dir!r})
start_drill_reaper(d)
cluster = _fake_cluster(d, "killed drill's controller")
print(cluster.state.processes[0].pid, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_drill_leaves_no_cluster_its_reaper_takes_it_down(tmp_path: Path) -> None:
    """The leak guard of per-drill folders: a stand-in drill starts the drill's reaper,
    brings a (recorded) cluster up and is SIGKILLed; the reaper stops the component and
    removes the folder but its logs, as ``down(keep_logs=True)`` does."""
    import os
    import signal
    import subprocess
    import time

    d = tmp_path / drill_state_dir("killed", now=0.0).name
    tests = str(Path(__file__).resolve().parents[1])
    code = _STAND_IN_DRILL.format(tests=tests, state_dir=str(d))
    drill = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert drill.stdout is not None
        pid = int(drill.stdout.readline())
        assert alive(pid, None)
        _wait_logged(d / "logs" / "kcm.log", "killed drill's controller")
    finally:
        os.kill(drill.pid, signal.SIGKILL)
        drill.wait()
    deadline = time.monotonic() + 30
    while (d / "state.json").exists() or alive(pid, None):
        assert time.monotonic() < deadline, "the reaper left the killed drill's cluster up"
        time.sleep(0.1)
    assert "killed drill's controller" in (d / "logs" / "kcm.log").read_text()
    assert sorted(p.name for p in d.iterdir()) == ["logs"]
    assert LocalCluster.load(d) is None


def test_pruning_keeps_the_newest_log_folders_and_never_a_cluster(tmp_path: Path) -> None:
    import os

    from chaoslab.live.cluster.state import prune_drill_dirs

    logs = [tmp_path / f"drill-x-{i:02d}" for i in range(14)]
    for i, d in enumerate(logs):
        (d / "logs").mkdir(parents=True)
        (d / "logs" / "kcm.log").write_text("kept\n")
        os.utime(d, (1000.0 + i, 1000.0 + i))
    old_cluster = tmp_path / "drill-x-up"  # older than all of them, but up
    (old_cluster / "logs").mkdir(parents=True)
    (old_cluster / "state.json").write_text("{}\n")
    os.utime(old_cluster, (1.0, 1.0))
    other = tmp_path / "default"  # not a drill's folder
    other.mkdir()
    os.utime(other, (1.0, 1.0))
    gone = prune_drill_dirs(tmp_path, keep=10)
    assert sorted(gone) == logs[:4]
    assert sorted(p for p in tmp_path.iterdir()) == sorted([*logs[4:], old_cluster, other])
    assert (old_cluster / "state.json").exists()
    assert prune_drill_dirs(tmp_path, keep=10) == []
