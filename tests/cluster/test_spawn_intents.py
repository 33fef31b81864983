"""A process started for the local cluster is found again even when its starter was killed
between starting it and saving its PID.

The starter saves an intent (a mark the child's environment carries) before the start;
``down`` and the reaper find an intent's process by that mark in /proc/PID/environ and kill
it by PID, after checking its start time. The tests stop a real starter at that point (its
process-starting call patched to wait after the start), SIGKILL it, and check the child is
gone by PID and start time. No network namespace is made and no traffic is sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.live.cluster.dataplane import DataPlane
from chaoslab.live.cluster.local import LocalCluster, _claim
from chaoslab.live.cluster.procs import alive, find_marked, new_mark, spawn, start_time, stop
from chaoslab.live.cluster.reaper import reap
from chaoslab.live.lab.netns import LabState

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]

#: a starter stopped between the start and the save: it writes the child's PID, then waits
_STARTER = """
import subprocess, sys, time
from pathlib import Path
kind, d, pidfile = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]

def stopped_after(start):
    def started(*a, **kw):
        child = start(*a, **kw)
        pidfile.write_text(str(child.pid))
        time.sleep(600)  # SIGKILLed here: the PID is never saved
    return started

if kind == "cluster":
    from chaoslab.live.cluster import state
    from chaoslab.live.cluster.local import LocalCluster
    state.spawn = stopped_after(state.spawn)
    LocalCluster.load(d)._spawn("sleeper", SLEEPER)
else:
    from chaoslab.live.cluster.dataplane import DataPlane
    subprocess.Popen = stopped_after(subprocess.Popen)
    DataPlane.load(d)._spawn_host("bridge-host", SLEEPER)
"""


@pytest.fixture
def children() -> Iterator[list[tuple[int, int | None]]]:
    """(PID, start time) of the processes a test started; killed by PID afterwards if the
    test left one, and the test fails then."""
    made: list[tuple[int, int | None]] = []
    yield made
    left = [pid for pid, start in made if alive(pid, start)]
    for pid, start in made:
        if alive(pid, start):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"left running: {left}"


def _kill_starter_after_start(kind: str, d: Path, children: list[tuple[int, int | None]]) -> int:
    """Run the starter, SIGKILL it once it has started its child; the child's PID."""
    pidfile = d.parent / f"{kind}.pid"
    starter = subprocess.Popen([sys.executable, "-c", _STARTER, kind, str(d), str(pidfile)])
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text():
            assert starter.poll() is None, "the starter exited before starting its child"
            assert time.monotonic() < deadline, "the starter did not start its child"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        children.append((pid, start_time(pid)))
    finally:
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
    return pid


def _recorded_cluster(d: Path) -> None:
    state = _claim(d, "t")
    state.ports = {p: 1 for p in ("etcd-metrics", "apiserver", "controller-manager", "scheduler")}
    state.save()


def test_only_the_process_carrying_a_mark_is_found_by_it(
    tmp_path: Path, children: list[tuple[int, int | None]]
) -> None:
    mine, other = new_mark(), new_mark()
    a = spawn("a", SLEEPER, tmp_path / "a.log", mark=mine)
    b = spawn("b", SLEEPER, tmp_path / "b.log", mark=other)
    children += [(a.pid, a.start), (b.pid, b.start)]
    try:
        assert [(p.pid, p.start) for p in find_marked(mine)] == [(a.pid, a.start)]
        assert find_marked(new_mark()) == []
    finally:
        stop(a, 5.0)
        stop(b, 5.0)


def test_down_stops_a_cluster_process_whose_starter_was_killed_before_saving_it(
    tmp_path: Path, children: list[tuple[int, int | None]]
) -> None:
    d = tmp_path / "up"
    _recorded_cluster(d)
    pid = _kill_starter_after_start("cluster", d, children)
    cluster = LocalCluster.load(d)
    assert cluster is not None
    assert cluster.state.processes == [] and list(cluster.state.intents.values()) == ["sleeper"]
    assert alive(*children[0])  # nothing records its PID: without the mark it would stay
    assert [(r.name, r.pid, r.running) for r in cluster.status()] == [("sleeper", pid, True)]
    notes = cluster.down(keep_logs=True)
    assert f"stopped sleeper (pid {pid})" in notes
    assert not alive(*children[0])
    assert sorted(p.name for p in d.iterdir()) == ["logs"]


def test_the_reaper_kills_a_data_plane_relay_whose_starter_was_killed_before_saving_it(
    tmp_path: Path, children: list[tuple[int, int | None]]
) -> None:
    d = tmp_path / "dp"
    d.mkdir()
    LabState(name="t", prefix="dp-t", design="cluster-dataplane", dir=str(d)).save()
    _kill_starter_after_start("dataplane", d, children)
    st = DataPlane.load(d).state
    assert st.procs == {} and list(st.info["intents"].values()) == ["bridge-host"]
    assert alive(*children[0])
    reap([tmp_path])
    assert not alive(*children[0])
