"""Drills under signals and lies (issue 14, items 2, 4, 5): hooks out of reach of the
terminal's Ctrl-C, a rollback that waits for a real return of the node, results that are
written whole, interrupted trials kept out of the comparison."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s.fakeapi import FakeApi, FakeCluster, Timing  # tests/ is on sys.path (rootdir)

from chaoslab.live.journal import Journal
from chaoslab.live.k8s.inject import run_hook, run_undo
from chaoslab.live.k8s.kube import load_kube

ROLLBACK_CHILD = """
import sys, time
from chaoslab.live.engine import SignalGuard
from chaoslab.live.k8s.inject import run_hook
log = lambda m: print(m, flush=True)
with SignalGuard(log) as guard, guard.rollback():
    print("rolling back", flush=True)
    out = run_hook([sys.executable, "-c", "import time; time.sleep(1.5); print('powered on')"], 20)
    print("hook said", out, flush=True)
"""


def _wait_for(proc: subprocess.Popen[str], text: str) -> str:
    seen = ""
    assert proc.stdout is not None
    while text not in seen:
        line = proc.stdout.readline()
        assert line, f"child ended before {text!r}: {seen}"
        seen += line
    return seen


def test_ctrl_c_during_a_rollback_reaches_chaoslab_only_and_the_hook_finishes() -> None:
    """The terminal sends SIGINT to the whole foreground process group: chaoslab's and,
    were it in that group, the hook's. Two presses 50 ms apart during the rollback."""
    child = subprocess.Popen(
        [sys.executable, "-c", ROLLBACK_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the child's group stands for the terminal's
    )
    try:
        _wait_for(child, "rolling back")
        time.sleep(0.5)  # the hook is running
        for _ in range(2):
            os.killpg(child.pid, signal.SIGINT)
            time.sleep(0.05)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert "SIGINT received: the rollback finishes first" in out
    assert "hook said powered on" in out and child.returncode == 0


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(Exception, match="did not finish within 0.5s"):
        run_hook(["sh", "-c", script], 0.5)
    grandchild = int(pidfile.read_text())
    for _ in range(100):  # SIGKILL is delivered at once, reaping by init may lag
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("the hook's child outlived the hook's timeout")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeCluster, FakeApi]]:
    cl = FakeCluster(timing=Timing(grace=30.0))  # Ready stays (stale) long after a crash
    cl.add_node("worker-1", "10.0.0.11")
    cl.add_app("demo", "web", ["worker-1"])
    api = FakeApi(cl, tmp_path)
    yield cl, api
    api.close()


def _undo_node_crash(tmp_path: Path, recover: list[str]) -> tuple[Journal, list]:
    """The journal a hook node-crash trial leaves: wait-node-ready, then its recover hook."""
    journal = Journal(tmp_path / "run")
    journal.add_undo({"op": "wait-node-ready", "node": "worker-1", "trial": 0}, trial=0)
    hook = {"op": "hook", "argv": recover, "timeout": 5, "node": "worker-1", "trial": 0}
    journal.add_undo(hook, trial=0)
    return journal, journal.pending()


def test_a_failed_power_on_never_marks_a_stale_ready_node_back(
    cluster: tuple[FakeCluster, FakeApi], tmp_path: Path
) -> None:
    cl, api = cluster
    cl.start_node_fault("worker-1", "node-crash", None)  # the kubelet is gone; still "Ready"
    kube = load_kube(str(api.kubeconfig), "fake", 5)
    journal, steps = _undo_node_crash(tmp_path, ["false"])  # the power-on hook fails
    done = [run_undo(kube, journal, s, node_ready_timeout=1.0, poll=0.05) for s in steps]
    assert done == [False, False]
    assert [s.step["op"] for s in journal.pending()] == ["hook", "wait-node-ready"]
    assert any(e["event"] == "attention" for e in journal.entries())


def test_a_node_that_heartbeats_after_the_undo_is_back(
    cluster: tuple[FakeCluster, FakeApi], tmp_path: Path
) -> None:
    cl, api = cluster
    cl.start_node_fault("worker-1", "node-crash", None)
    kube = load_kube(str(api.kubeconfig), "fake", 5)
    cl.after(0.3, lambda: cl.heal_node("worker-1"))  # powered on by hand, a moment later
    journal, steps = _undo_node_crash(tmp_path, ["true"])
    done = [run_undo(kube, journal, s, node_ready_timeout=10.0, poll=0.05) for s in steps]
    assert done == [True, True] and journal.pending() == []
