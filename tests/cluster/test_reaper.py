"""A drill's data plane is found and removed after the drill dies, however far its build got.

The drill names its data plane in the cluster folder's ``drill-dataplane`` link before the
data plane's folder exists; the reaper (`chaoslab.live.cluster.reaper`), ``cluster
status`` and ``cluster down`` follow the link. Tests with real network namespaces need
root and ``ip``; they check what is gone by the namespace's name and by each process's PID
with its start time (a reused PID is not the process). No traffic is sent: the data plane's
API bridge points at a loopback port nothing connects to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chaoslab.live.cluster import target
from chaoslab.live.cluster.dataplane import DataPlane, DataPlaneError, NodeNet
from chaoslab.live.cluster.local import LocalCluster, _claim
from chaoslab.live.cluster.procs import alive, start_time
from chaoslab.live.cluster.reaper import linked_dataplane_down
from chaoslab.live.cluster.state import (
    DATAPLANE_LINK,
    read_dataplane_link,
    write_dataplane_link,
)
from chaoslab.live.lab.netns import LabState, run

NODES = [NodeNet("compute-1", "10.244.1.0/24"), NodeNet("compute-2", "10.244.2.0/24")]
#: where the bridge would forward to: host loopback, and nothing connects in these tests
API = ("127.0.0.1", 9)


def _netns_missing() -> str | None:
    if os.geteuid() != 0:
        return "the data plane needs root (network namespaces)"
    missing = [b for b in ("ip", "iptables-restore", "iptables-save") if not shutil.which(b)]
    return f"not installed: {', '.join(missing)} (run ./install.sh)" if missing else None


needs_netns = pytest.mark.skipif(_netns_missing() is not None, reason=str(_netns_missing()))


def _netns() -> set[str]:
    return set(run(["ip", "netns", "list"], check=False).split())


def _snapshot(d: Path) -> tuple[list[str], list[tuple[int, int | None]]]:
    """The namespaces and (PID, start time) of the processes recorded in data plane ``d``."""
    st = DataPlane.load(d).state
    return list(st.namespaces), [(p.pid, p.start) for p in st.procs.values()]


def _gone(namespaces: list[str], procs: list[tuple[int, int | None]]) -> list[str]:
    """What of them is still there (empty: all gone)."""
    left = sorted(set(namespaces) & _netns())
    return left + [f"pid {pid}" for pid, start in procs if alive(pid, start)]


@pytest.fixture
def planes() -> Iterator[list[Path]]:
    """Data plane folders a test makes; afterwards each is taken down and removed, also when
    the test failed, and none may have been left with a namespace or process."""
    made: list[Path] = []
    yield made
    left: list[str] = []
    for d in made:
        with contextlib.suppress(DataPlaneError):  # a test's stand-in state.json
            left += _gone(*_snapshot(d))
            DataPlane.load(d).down()
        shutil.rmtree(d.parent, ignore_errors=True)
    assert not left, f"left behind: {left}"


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cluster"
    (d / "logs").mkdir(parents=True)
    return d


def _claim_dp(cluster_dir: Path, planes: list[Path]) -> Path:
    d = target._claim_dataplane_dir(cluster_dir)
    planes.append(d)
    return d


def _dead_process() -> tuple[int, int | None]:
    """The PID and start time of a process that ran and exited."""
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    start = start_time(p.pid)
    p.communicate(b"")
    return p.pid, start


# -- the link ---------------------------------------------------------------------------------


def test_the_link_names_the_folder_before_it_exists_and_its_owner(
    cluster_dir: Path, planes: list[Path]
) -> None:
    d = _claim_dp(cluster_dir, planes)
    link = read_dataplane_link(cluster_dir)
    assert link is not None and link.dir == d and link.tmp == d.parent
    assert link.owned_by(os.getpid(), start_time(os.getpid())) and link.owner_alive()
    assert d.parent.is_dir() and not d.exists()  # DataPlane.create makes ``dp`` itself


def test_a_link_whose_folder_was_never_made_is_dropped(cluster_dir: Path) -> None:
    """A kill between writing the link and making the folder: nothing to take down."""
    never = Path("/tmp") / f"dpd{uuid.uuid4().hex[:8]}" / "dp"
    write_dataplane_link(cluster_dir, never)
    assert linked_dataplane_down(cluster_dir) == []
    assert not (cluster_dir / DATAPLANE_LINK).exists()


def test_a_folder_without_state_is_removed_with_its_link(
    cluster_dir: Path, planes: list[Path]
) -> None:
    d = _claim_dp(cluster_dir, planes)
    d.mkdir()  # DataPlane.create made the folder, its state.json not yet written
    assert linked_dataplane_down(cluster_dir) == [f"removed data plane {d}"]
    assert not d.parent.exists() and not (cluster_dir / DATAPLANE_LINK).exists()


def test_a_damaged_link_removes_no_folder_it_names(cluster_dir: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious" / "dp"
    precious.mkdir(parents=True)
    write_dataplane_link(cluster_dir, precious)
    assert linked_dataplane_down(cluster_dir) == [
        f"{precious}: not a drill's data plane folder, kept"
    ]
    assert precious.is_dir()


def test_a_reaper_of_one_drill_spares_the_data_plane_another_drill_linked_since(
    cluster_dir: Path, planes: list[Path]
) -> None:
    d = _claim_dp(cluster_dir, planes)
    d.mkdir()
    assert linked_dataplane_down(cluster_dir, owner=_dead_process()) == []
    assert d.is_dir() and read_dataplane_link(cluster_dir) is not None


# -- real namespaces --------------------------------------------------------------------------


@needs_netns
def test_the_reaper_takes_down_a_half_built_data_plane(
    cluster_dir: Path, planes: list[Path]
) -> None:
    """Namespaces and processes that exist, a namespace recorded but never created (a kill
    between recording and ``ip netns add``) and a process record whose PID is gone: all of
    the data plane goes, its folder and the link with it."""
    d = _claim_dp(cluster_dir, planes)
    dp = DataPlane.create(d, f"t{uuid.uuid4().hex[:5]}", NODES, apiserver=API)
    dp.state.namespaces.append(dp.state.ns("never-made"))
    _record_dead_proc(dp.state)
    namespaces, procs = _snapshot(d)
    # the switch, the client and a namespace per node; the host relay and a bridge per node
    assert sum(ns in _netns() for ns in namespaces) == len(NODES) + 2
    assert sum(alive(*p) for p in procs) == len(NODES) + 1 == len(procs) - 1
    notes = linked_dataplane_down(cluster_dir)
    assert notes[-1] == f"removed data plane {d}"
    assert _gone(namespaces, procs) == []
    assert not d.parent.exists() and not (cluster_dir / DATAPLANE_LINK).exists()


def _record_dead_proc(st: LabState) -> None:
    """Record a process that ran and exited, as the lab records the ones it started."""
    from chaoslab.live.lab.netns import Proc

    pid, start = _dead_process()
    st.procs["never-ran"] = Proc("never-ran", st.ns("n1"), pid, start, ["true"], "/dev/null")
    st.save()


@needs_netns
def test_a_failed_build_removes_what_it_built_its_folder_and_the_link(
    cluster_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planes: list[Path]
) -> None:
    """The build fails after the namespaces and bridges exist (no kube-proxy binary)."""
    from chaoslab.live.cluster import build as buildmod
    from chaoslab.live.cluster import dataplane as dpmod
    from chaoslab.live.cluster.build import BuildMissing

    kc = tmp_path / "admin.kubeconfig"
    kc.write_text("clusters:\n- cluster: {server: 'https://127.0.0.1:9'}\n")
    seen: dict[str, Any] = {}

    def no_build(*_: object) -> None:
        link = read_dataplane_link(cluster_dir)
        assert link is not None
        planes.append(link.dir)
        seen["dir"], seen["built"] = link.dir, _snapshot(link.dir)
        raise BuildMissing("no kube-proxy here")

    monkeypatch.setattr(dpmod, "node_networks", lambda _kc: NODES)
    monkeypatch.setattr(buildmod, "find_build", no_build)
    cluster = SimpleNamespace(
        kubeconfig=kc,
        state=SimpleNamespace(dir=cluster_dir, info={}),
        layout=SimpleNamespace(build=None),
    )
    with pytest.raises(BuildMissing):
        target._build_dataplane(cluster, SimpleNamespace())  # type: ignore[arg-type]
    namespaces, procs = seen["built"]
    assert namespaces and procs
    assert _gone(namespaces, procs) == []
    assert not seen["dir"].parent.exists() and not (cluster_dir / DATAPLANE_LINK).exists()


_STAND_IN_DRILL = """
import sys, time
from pathlib import Path
from chaoslab.live.cluster.dataplane import DataPlane, DataPlaneError, NodeNet
from chaoslab.live.cluster.target import _claim_dataplane_dir, start_dataplane_reaper
cluster_dir = Path(sys.argv[1])
reaper = start_dataplane_reaper(cluster_dir)
print(reaper.pid, flush=True)
d = _claim_dataplane_dir(cluster_dir)
nodes = [NodeNet("compute-1", "10.244.1.0/24"), NodeNet("compute-2", "10.244.2.0/24")]
DataPlane.create(d, sys.argv[2], nodes, apiserver=("127.0.0.1", 9))
print(d, flush=True)
time.sleep(600)
"""


def _wait(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@needs_netns
def test_a_sigkilled_drill_on_an_attached_cluster_loses_its_data_plane_not_the_cluster(
    cluster_dir: Path, planes: list[Path]
) -> None:
    """A drill attached to a cluster it did not bring up starts a data-plane-only reaper,
    builds its data plane and is SIGKILLed: the reaper takes the data plane down and
    leaves the cluster's folder (its logs, its state) alone."""
    (cluster_dir / "state.json").write_text("{}\n")  # stands for the cluster: must stay
    name = f"t{uuid.uuid4().hex[:5]}"
    drill = subprocess.Popen(
        [sys.executable, "-c", _STAND_IN_DRILL, str(cluster_dir), name],
        stdout=subprocess.PIPE,
        text=True,
    )
    reaper_pid, reaper_start = 0, None
    try:
        assert drill.stdout is not None
        reaper_pid = int(drill.stdout.readline())
        reaper_start = start_time(reaper_pid)
        d = Path(drill.stdout.readline().strip())
        planes.append(d)
        built = _snapshot(d)
    finally:
        os.kill(drill.pid, signal.SIGKILL)
        drill.wait()
    try:
        _wait("the reaper to finish", lambda: not alive(reaper_pid, reaper_start))
    finally:
        if alive(reaper_pid, reaper_start):
            os.kill(reaper_pid, signal.SIGKILL)
    assert _gone(*built) == []
    assert not d.parent.exists() and not (cluster_dir / DATAPLANE_LINK).exists()
    assert (cluster_dir / "state.json").exists()
    assert f"removed data plane {d}" in (cluster_dir / "logs" / "drill-reaper.log").read_text()


# -- status and down --------------------------------------------------------------------------


def chaoslab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoslab", *args], capture_output=True, text=True, timeout=120
    )


def _recorded_cluster(d: Path, says: str = "why it failed") -> int:
    """A cluster as ``cluster up`` records one: a running process (not a control-plane
    component, so ``status`` probes nothing) and its log, once it wrote ``says``. Its PID."""
    state = _claim(d, "t")
    state.ports = {p: 1 for p in ("etcd-metrics", "apiserver", "controller-manager", "scheduler")}
    code = f"print({says!r}, flush=True); import time; time.sleep(600)"
    rec = state.spawn("sleeper", [sys.executable, "-c", code], d / "logs" / "sleeper.log")
    _wait("the sleeper's line", lambda: says in (d / "logs" / "sleeper.log").read_text())
    return rec.pid


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "up"
    pid = _recorded_cluster(d)
    yield d
    cluster = LocalCluster.load(d)
    if cluster is not None:
        cluster.down()
    assert not alive(pid, None)


def test_status_shows_a_dead_drills_data_plane_and_down_removes_it_keeping_the_logs(
    recorded: Path, planes: list[Path]
) -> None:
    d = _claim_dp(recorded, planes)
    d.mkdir()
    pid, start = _dead_process()
    (recorded / DATAPLANE_LINK).write_text(f"{d}\nowner {pid} {start}\n")
    r = chaoslab("cluster", "status", "--state", str(recorded))
    assert r.returncode == 1
    assert f"drill data plane {d} (drill pid {pid}, gone)" in r.stdout
    assert "left over: the data plane of a drill that is gone" in r.stdout
    r = chaoslab("cluster", "down", "--state", str(recorded))
    assert r.returncode == 0, r.stderr
    assert f"removed data plane {d}" in r.stdout
    assert f"logs kept in {recorded / 'logs'}" in r.stdout
    assert not d.parent.exists()
    assert sorted(p.name for p in recorded.iterdir()) == ["logs"]
    assert "why it failed" in (recorded / "logs" / "sleeper.log").read_text()


def test_an_unreadable_data_plane_is_named_and_the_cluster_still_goes_down(
    recorded: Path, planes: list[Path]
) -> None:
    d = _claim_dp(recorded, planes)
    d.mkdir()
    (d / "state.json").write_text("not json")
    r = chaoslab("cluster", "down", "--state", str(recorded))
    assert r.returncode == 0, r.stderr
    assert f"{d / 'state.json'}: unreadable" in r.stdout and "not taken down" in r.stdout
    assert LocalCluster.load(recorded) is None
    assert (d / "state.json").exists()  # kept for reading: what it held is unknown


def test_the_reaper_of_a_drills_own_cluster_takes_its_half_built_data_plane_down_first(
    recorded: Path, planes: list[Path]
) -> None:
    from chaoslab.live.cluster.reaper import reap

    d = _claim_dp(recorded, planes)
    d.mkdir()
    cluster = LocalCluster.load(recorded)
    assert cluster is not None
    pid = cluster.state.processes[0].pid
    notes = reap([recorded.parent], keep_logs=True)
    assert notes[0] == f"removed data plane {d}" and f"stopped sleeper (pid {pid})" in notes
    assert not d.parent.exists() and sorted(p.name for p in recorded.iterdir()) == ["logs"]


def test_down_keeps_the_logs_of_the_clusters_own_data_plane_in_its_logs(recorded: Path) -> None:
    """A cluster brought up with a data plane (as root) has it in ``dataplane/``, which
    ``down(keep_logs=True)`` removes: its components' logs move to ``logs/dataplane``."""
    (recorded / "dataplane").mkdir()
    (recorded / "dataplane" / "kube-proxy-n1.log").write_text("synced\n")
    cluster = LocalCluster.load(recorded)
    assert cluster is not None
    cluster.down(keep_logs=True)
    assert sorted(p.name for p in recorded.iterdir()) == ["logs"]
    assert (recorded / "logs" / "dataplane" / "kube-proxy-n1.log").read_text() == "synced\n"


def test_down_purge_removes_the_logs_too_and_then_the_kept_logs_folder(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    pids = [_recorded_cluster(a), _recorded_cluster(b)]
    try:
        r = chaoslab("cluster", "down", "--state", str(a), "--purge")
        assert r.returncode == 0 and not a.exists() and "logs kept" not in r.stdout
        assert chaoslab("cluster", "down", "--state", str(b)).returncode == 0
        assert (b / "logs").is_dir()
        r = chaoslab("cluster", "down", "--state", str(b), "--purge")
        assert r.returncode == 0 and not b.exists()
    finally:
        for d in (a, b):
            c = LocalCluster.load(d)
            if c is not None:
                c.down()
    assert not any(alive(p, None) for p in pids)


def test_a_new_cluster_moves_the_earlier_ones_logs_aside_keeping_the_newest_three(
    tmp_path: Path,
) -> None:
    """Five clusters in turn in one folder, each taken down with its logs kept: the last
    one's log holds only its own line, the three before it are in logs.1..3 (newest first),
    the oldest is gone; down --purge then removes the folder."""
    d = tmp_path / "up"
    pids = []
    try:
        for i in range(5):
            pids.append(_recorded_cluster(d, f"cluster {i}"))
            cluster = LocalCluster.load(d)
            assert cluster is not None
            if i:
                assert cluster.state.info["earlier_logs"] == str(d.resolve() / "logs.1")
            cluster.down(keep_logs=True)
    finally:
        c = LocalCluster.load(d)
        if c is not None:
            c.down()
    assert not any(alive(p, None) for p in pids)
    assert sorted(p.name for p in d.iterdir()) == ["logs", "logs.1", "logs.2", "logs.3"]
    said = {f: (d / f / "sleeper.log").read_text() for f in ("logs", "logs.1", "logs.2", "logs.3")}
    assert said == {
        "logs": "cluster 4\n",
        "logs.1": "cluster 3\n",
        "logs.2": "cluster 2\n",
        "logs.3": "cluster 1\n",
    }
    r = chaoslab("cluster", "down", "--state", str(d), "--purge")
    assert r.returncode == 0 and not d.exists(), r.stdout


def test_the_reapers_log_in_a_new_folder_is_not_taken_for_an_earlier_clusters(
    tmp_path: Path,
) -> None:
    """A drill starts its reaper (logging to logs/reaper.log) before its cluster's up."""
    d = tmp_path / "drill"
    (d / "logs").mkdir(parents=True)
    (d / "logs" / "reaper.log").write_text("")
    state = _claim(d, "t")
    assert "earlier_logs" not in state.info
    assert sorted(p.name for p in d.iterdir()) == ["logs", "state.json"]


def test_purge_removes_no_folder_that_is_not_a_clusters_kept_logs(tmp_path: Path) -> None:
    other = tmp_path / "mine"
    (other / "logs").mkdir(parents=True)
    (other / "notes.txt").write_text("mine\n")
    r = chaoslab("cluster", "down", "--state", str(other), "--purge")
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert (other / "notes.txt").exists()


# -- the next drill ---------------------------------------------------------------------------


def _fake_cluster_for(d: Path) -> Any:
    return SimpleNamespace(state=SimpleNamespace(dir=d), layout=SimpleNamespace(dir=d))


def test_the_next_drill_removes_a_dead_drills_data_plane_before_building_its_own(
    cluster_dir: Path, planes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _claim_dp(cluster_dir, planes)
    old.mkdir()
    pid, start = _dead_process()
    (cluster_dir / DATAPLANE_LINK).write_text(f"{old}\nowner {pid} {start}\n")
    new = cluster_dir / "new-dp"
    monkeypatch.setattr(target, "_build_dataplane", lambda c, e: new)
    monkeypatch.setattr(target, "start_dataplane_reaper", lambda d: None)
    got = target._dataplane(_fake_cluster_for(cluster_dir), SimpleNamespace(), False)  # type: ignore[arg-type]
    assert got == (new, True, None)
    assert not old.parent.exists()


@pytest.fixture
def other_drill() -> Iterator[tuple[int, int | None]]:
    """A live process standing for another drill: its PID and start time."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield p.pid, start_time(p.pid)
    finally:
        p.kill()
        p.wait()


def test_another_live_drills_data_plane_is_refused_not_shared(
    cluster_dir: Path, planes: list[Path], other_drill: tuple[int, int | None]
) -> None:
    """Its owner takes it down when it ends (and its faults would hit this drill's
    measurement): a second drill on the cluster refuses with one line, built or not."""
    d = _claim_dp(cluster_dir, planes)
    d.mkdir()
    pid, start = other_drill
    (cluster_dir / DATAPLANE_LINK).write_text(f"{d}\nowner {pid} {start}\n")
    with pytest.raises(target.LocalClusterError, match=f"drill pid {pid} is building the"):
        target._dataplane(_fake_cluster_for(cluster_dir), SimpleNamespace(), False)  # type: ignore[arg-type]
    (d / "state.json").write_text("{}\n")
    with pytest.raises(target.LocalClusterError, match=f"drill pid {pid} owns the data plane"):
        target._dataplane(_fake_cluster_for(cluster_dir), SimpleNamespace(), False)  # type: ignore[arg-type]
    assert d.is_dir() and read_dataplane_link(cluster_dir) is not None  # left to its owner


def test_a_data_plane_this_process_built_is_shared_by_its_next_session(
    cluster_dir: Path, planes: list[Path]
) -> None:
    d = _claim_dp(cluster_dir, planes)
    d.mkdir()
    (d / "state.json").write_text("{}\n")
    got = target._dataplane(_fake_cluster_for(cluster_dir), SimpleNamespace(), False)  # type: ignore[arg-type]
    assert got == (d, False, None)


@needs_netns
def test_closing_a_session_keeps_its_data_planes_logs_where_the_meta_says(
    recorded: Path, planes: list[Path], tmp_path: Path
) -> None:
    cluster = LocalCluster.load(recorded)
    assert cluster is not None
    d = _claim_dp(recorded, planes)
    DataPlane.create(d, f"t{uuid.uuid4().hex[:5]}", NODES, apiserver=API)
    logs = sorted(p.name for p in d.glob("*.log"))
    assert "bridge-host.log" in logs and len(logs) == len(NODES) + 1
    session = target.LocalSession(cluster, d, tmp_path / "kc", tmp_path / "w", owned_dataplane=True)
    kept = Path(target.cluster_meta(session)["dataplane_logs"])
    assert kept == recorded.resolve() / "logs" / f"dataplane-{d.parent.name}"
    notes = session.close()
    assert f"data plane logs kept in {kept}" in notes
    assert not d.parent.exists() and sorted(p.name for p in kept.iterdir()) == logs


def test_the_run_folder_is_told_where_the_clusters_logs_stay(recorded: Path) -> None:
    cluster = LocalCluster.load(recorded)
    assert cluster is not None
    session = target.LocalSession(cluster, Path(), Path("kc"), Path("w"), owned_cluster=False)
    meta = target.cluster_meta(session)
    assert meta == {
        "state": str(recorded.resolve()),
        "logs": str(recorded.resolve() / "logs"),
        "brought_up_by_drill": False,
    }
