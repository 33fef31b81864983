"""Signal torture of ``chaoslab drill`` against the wire-level fake API server (issue 14,
"keep it caught").

A real drill process crashes a node of the fake cluster through a hook and powers it on
again in its rollback (a hook that takes a second). Then (1) Ctrl-C is pressed every 50 ms
from the middle of the trial until the drill has written its end, as a terminal sends it
(to the whole process group); (2) the drill is SIGKILLed at seeded random moments and
``chaoslab drill --recover`` finishes the rollback from its journal. Afterwards no node of
the fake cluster is down (its own state says so), ``meta.json`` and the journal agree, no
process of the drill is left (by PID and start time, through /proc) and nothing on stderr
is a traceback.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s.conftest import SKEW, Env  # tests/ is on sys.path (rootdir)
from k8s.fakeapi import FakeApi, FakeCluster, ServiceTarget
from test_signal_torture_run import Watched, _proc_stat

from chaoslab.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc"),
]

REPO = Path(__file__).resolve().parents[1]
_MAIN = "import sys; from chaoslab.cli import main; sys.exit(main(sys.argv[1:]))"
#: SIGKILL moments, seconds after the node went down: observe, power-on hook, node wait
KILLS = 3
SEED = 1416


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    cl = FakeCluster(skew=SKEW)
    cl.add_node("cp-1", "10.0.0.1", control_plane=True)
    for i in (1, 2, 3):
        cl.add_node(f"worker-{i}", f"10.0.0.{10 + i}")
    cl.add_app("demo", "web", ["worker-1", "worker-2"])
    made = Env(cl, FakeApi(cl, tmp_path), ServiceTarget(cl), tmp_path)
    yield made
    made.api.close()
    made.target.close()


def _experiment(env: Env) -> Path:
    crash = env.control_hook("crash")
    slow_power_on = env.control_hook("poweron")
    slow_power_on[-1] = "import time; time.sleep(1)\n" + slow_power_on[-1]
    fault = {
        "kind": "node-crash",
        "target": {"select": "app-pod-node"},
        "method": "hook",
        "hook": {"inject": crash, "recover": slow_power_on, "timeout": "10s"},
    }
    return env.experiment(fault, trials=2)


def _drill(env: Env, exp: Path) -> Watched:
    cmd = [sys.executable, "-c", _MAIN, "drill", str(exp), "--yes", "--out", str(env.tmp / "r")]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,  # the drill's log
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,  # its group stands for the terminal's
    )
    return Watched(proc)


def _wait_node_down(env: Env, w: Watched) -> None:
    end = time.monotonic() + 60
    while not env.cluster.node_down:
        assert w.proc.poll() is None, f"the drill ended before the crash: {w.proc.returncode}"
        assert time.monotonic() < end, "the drill never crashed a node"
        time.sleep(0.02)


def _run_dir(env: Env) -> Path:
    (run,) = (env.tmp / "r").glob("*/*-live-*")
    return run


def _journal(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines() if x]


def _no_node_down(env: Env) -> None:
    assert env.cluster.node_down == {}, env.cluster.node_down
    for node in env.cluster.items("nodes"):
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", node["metadata"]["name"]


def _meta_and_journal_agree(run: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((run / "meta.json").read_text())
    j = _journal(run)
    ends = [e for e in j if e["event"] == "run.end"]
    if ends:  # the drill finished: both say the same
        end = ends[-1]
        assert end["meta_status"] == meta["status"] and end["n_trials"] == meta.get("n_trials")
        # a drill stopped before its first trial ended keeps no trials: the folder is
        # partial, with the drill's own status beside it
        assert end["status"] == meta.get("status_detail", meta["status"])
    else:  # killed: the results were never declared written
        assert meta["status"] == "partial"
    return meta, j


def _ended_clean(w: Watched) -> int:
    try:
        rc = w.wait(120)
        assert "Traceback" not in w.stderr + w.stdout, w.stderr
        left = w.left_behind()
        assert not left, f"processes {left} outlived the drill (pid {w.proc.pid})"
        return rc
    finally:
        w.kill_all()


def test_ctrl_c_every_50_ms_through_the_rollback_leaves_no_node_down(env: Env) -> None:
    w = _drill(env, _experiment(env))
    try:
        _wait_node_down(env, w)
        time.sleep(0.3)  # in the middle of the trial
        end = time.monotonic() + 60
        presses = 0
        while w.proc.poll() is None and time.monotonic() < end:
            runs = list((env.tmp / "r").glob("*/*-live-*/journal.jsonl"))
            if runs and '"run.end"' in runs[0].read_text():
                break  # written: what follows is the command line printing and exiting
            w.ctrl_c()
            presses += 1
            time.sleep(0.05)
    finally:
        rc = _ended_clean(w)
    assert presses > 10  # the rollback (a 1 s power-on, then the node's heartbeat) took them
    assert rc == 130, w.stderr
    _no_node_down(env)
    run = _run_dir(env)
    meta, j = _meta_and_journal_agree(run)
    assert meta.get("status_detail", meta["status"]) == "interrupted"
    assert j[-1]["event"] == "run.end" and j[-1]["pending_undo"] == []
    assert "SIGINT received: the rollback finishes first" in w.stdout
    assert any(e["event"] == "undo.done" and e.get("op") == "hook" for e in j)
    assert not any(e["event"] == "trial.start" and e["trial"] == 1 for e in j)


@pytest.mark.parametrize("n", range(KILLS))
def test_sigkill_at_a_random_moment_then_recover_leaves_no_node_down(env: Env, n: int) -> None:
    moment = random.Random(SEED + n).uniform(0.0, 3.0)
    w = _drill(env, _experiment(env))
    try:
        _wait_node_down(env, w)
        time.sleep(moment)
        w.proc.send_signal(signal.SIGKILL)
    finally:
        rc = _ended_clean(w)  # a hook still running dies with the drill (its reaper)
    assert rc in (-signal.SIGKILL, 0, 1)
    run = _run_dir(env)
    assert main(["drill", "--recover", str(run)]) == 0
    _no_node_down(env)
    _meta_and_journal_agree(run)
    j = _journal(run)
    assert not [e for e in j if e["event"] == "recover.end" and not e["ok"]]
    assert main(["drill", "--recover", str(run)]) == 0  # and again: nothing left to do
    assert _journal(run)[-1]["event"] in ("recover.end", "run.end")


def _sleeping_crash_hook(env: Env, pids: Path) -> list[str]:
    """A node-crash hook that crashes the node, then forks a child into its own process
    group and sleeps (a slow IPMI call, say): it writes both PIDs to ``pids`` and, only if
    it is ever let finish, ``pids``.done. No braces: the drill fills {placeholders}."""
    crash = env.control_hook("crash")
    code = (
        crash[-1]
        + "import os, subprocess, time\n"
        + "child = subprocess.Popen(['sleep', '600'])\n"
        + f"open({str(pids)!r}, 'w').write('%d %d' % (os.getpid(), child.pid))\n"
        + "time.sleep(600)\n"
        + f"open({str(pids) + '.done'!r}, 'w').write('finished')\n"
    )
    return [*crash[:-1], code]


def _gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        st = _proc_stat(pid)
        if st is None or st[2] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_sigkilled_drill_takes_its_running_hook_with_it_and_the_next_drill_waits(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL while the inject hook sleeps: the hook and the child it forked die with the
    drill (not 600 s later); the node it crashed stays down, and a new drill into the same
    --out refuses in one line naming the run to --recover; after --recover it drills."""
    pids = env.tmp / "hook.pids"
    fault = {
        "kind": "node-crash",
        "target": {"select": "app-pod-node"},
        "method": "hook",
        "hook": {
            "inject": _sleeping_crash_hook(env, pids),
            "recover": env.control_hook("poweron"),
            "timeout": "900s",
        },
    }
    exp = env.experiment(fault, trials=1)
    w = _drill(env, exp)
    try:
        end = time.monotonic() + 60
        while not pids.exists() or len(pids.read_text().split()) < 2:
            if w.proc.poll() is not None:
                w.wait()
                pytest.fail(f"the drill ended before its hook slept: {w.stdout}{w.stderr}")
            assert time.monotonic() < end, "the hook never started"
            time.sleep(0.05)
        hook, child = map(int, pids.read_text().split())
        w.proc.send_signal(signal.SIGKILL)
        assert w.wait(60) == -signal.SIGKILL
        assert _gone(hook, 30) and _gone(child, 30), "the hook outlived the SIGKILLed drill"
        assert not Path(f"{pids}.done").exists()
        assert not w.left_behind()
    finally:
        w.kill_all()
    assert env.cluster.node_down  # the fault stays: nothing ran the recover hook
    run = _run_dir(env)
    out = str(env.tmp / "r")
    capsys.readouterr()
    assert main(["drill", str(exp), "--yes", "--out", out]) == 1
    said = capsys.readouterr().out
    assert f"{run}: an earlier drill of this target left 2 undo step(s) not done" in said
    assert f"'chaoslab drill --recover {run}' first" in said
    assert main(["drill", "--recover", str(run)]) == 0
    _no_node_down(env)
    fault["hook"] = {"inject": env.control_hook("crash"), "recover": env.control_hook("poweron"),
                     "timeout": "10s"}  # fmt: skip
    assert main(["drill", str(env.experiment(fault, trials=1)), "--yes", "--out", out]) == 0
    _no_node_down(env)
