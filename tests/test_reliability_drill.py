"""Drills under signals and lies (issue 14, items 2, 4, 5): hooks out of reach of the
terminal's Ctrl-C, a rollback that waits for a real return of the node, results that are
written whole, interrupted trials kept out of the comparison."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from k8s.fakeapi import FakeApi, FakeCluster, Timing  # tests/ is on sys.path (rootdir)

from chaoslab.live.engine import DrillContext, DrillOutcome, Observed, run_drill
from chaoslab.live.journal import Journal, UndoStep
from chaoslab.live.k8s.inject import run_hook, run_undo
from chaoslab.live.k8s.kube import load_kube
from chaoslab.results import ProberInfo, RunWriter

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


# --------------------------------------------------------------------------- the engine


@dataclass
class _Fault:
    name: str = "pod-kill"
    target: str = "app-pod"


@dataclass
class _Target:
    """A drill target whose service drops for 0.3 s after each fault; ``on_restore`` and
    ``on_predict`` run in the rollback and while the results are written."""

    on_restore: Callable[[int], None] = lambda trial: None
    on_predict: Callable[[], None] = lambda: None
    trials: int = 3
    kind: str = "lab"
    design: str = "nodeport-lb"
    cooldown: float = 0.0
    milestone_names: Sequence[str] = ()
    slow_threshold: float = 1.0
    restored: list[int] = field(default_factory=list)

    @property
    def prober(self) -> ProberInfo:
        return ProberInfo(100.0, 1, 0.1)

    def open(self, ctx: DrillContext) -> None:
        ctx.journal.add_undo({"op": "lab-down"})

    def faults(self) -> list[_Fault]:
        return [_Fault()]

    def preflight(self, fault: _Fault, trial: int) -> None: ...

    def choose(self, fault: _Fault, trial: int) -> str:
        return "pod-1"

    def inject(self, fault: _Fault, victim: str) -> float:
        return time.monotonic()

    def observe(self, fault: _Fault, victim: str, t0: float) -> Observed:
        t = t0 + np.arange(0, 1.0, 0.01)
        outcome = np.where((t - t0 >= 0.1) & (t - t0 < 0.4), "refused", "ok")
        probes = pd.DataFrame(
            {"t": t, "outcome": outcome, "latency": 0.001, "kind": "new", "conn": -1}
        )
        return Observed(probes, 1.0)

    def restore(self, fault: _Fault, victim: str) -> bool:
        self.restored.append(len(self.restored))
        self.on_restore(len(self.restored) - 1)
        return True

    def close(self) -> list[str]:
        return []

    def predict(self, fault: _Fault) -> pd.DataFrame | str:
        self.on_predict()
        return "no model in this test"

    def undo(self, step: UndoStep) -> bool:
        return True


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here, in the middle of the work


def _run(tmp_path: Path, target: _Target) -> tuple[DrillOutcome, dict, list[dict]]:
    writer = RunWriter(tmp_path / "run", mode="live", target="lab")
    out = run_drill(target, writer, log=lambda m: None)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    return out, meta, Journal(tmp_path / "run").entries()


def test_a_trial_interrupted_in_its_rollback_is_stored_aborted_and_ends_the_drill(
    tmp_path: Path,
) -> None:
    target = _Target(on_restore=lambda trial: _ctrl_c() if trial == 0 else None)
    out, meta, journal = _run(tmp_path, target)
    assert target.restored == [0]  # the rollback finished; no further trial was started
    assert out.status == "interrupted" and meta["status"] == "interrupted"
    info = pd.read_csv(tmp_path / "run" / "trial_info.csv")
    assert info["aborted"].tolist() == [True]
    assert info["abort_reason"].tolist() == ["interrupted (SIGINT)"]
    assert meta["aborted_trials"] == 1
    assert any("left out of the comparison" in n for n in meta["notes"])
    assert not (tmp_path / "run" / "comparison.csv").exists()


def test_only_the_trials_that_ran_to_their_end_are_compared(tmp_path: Path) -> None:
    target = _Target(on_restore=lambda trial: _ctrl_c() if trial == 1 else None)
    out, meta, _ = _run(tmp_path, target)
    comp = pd.read_csv(tmp_path / "run" / "comparison.csv")
    assert set(comp["n"]) == {1}  # trial 0 only; trial 1 was cut short
    assert len(out.trials) == 2 and meta["aborted_trials"] == 1


def test_a_signal_while_the_results_are_written_waits_and_meta_and_journal_agree(
    tmp_path: Path,
) -> None:
    target = _Target(on_predict=_ctrl_c)
    out, meta, journal = _run(tmp_path, target)
    end = journal[-1]
    assert end["event"] == "run.end" and end["status"] == meta["status"] == "complete"
    assert end["meta_status"] == "complete" and end["n_trials"] == meta["n_trials"] == 3
    for name in ("trials.parquet", "summary.csv", "comparison.csv", "trial_info.csv"):
        assert (tmp_path / "run" / name).exists(), name
    assert out.status == "complete"


# --------------------------------------------------------------------------- leftovers


def test_recover_on_a_missing_path_refuses_and_creates_nothing(tmp_path: Path) -> None:
    from chaoslab.errors import LiveError
    from chaoslab.live.engine import recover
    from chaoslab.live.k8s.drill import recover as kube_recover
    from chaoslab.live.lab.drill import lab_recover

    missing = tmp_path / "no" / "such-run"
    for call in (
        lambda: recover(missing, lambda s: True, log=lambda m: None),
        lambda: lab_recover(missing, log=lambda m: None),
        lambda: kube_recover(missing, log=lambda m: None),
    ):
        with pytest.raises(LiveError, match="no journal.jsonl"):
            call()
        assert not (tmp_path / "no").exists()


def test_a_journal_with_bytes_chaoslab_never_writes_is_one_error_and_nothing_is_undone(
    tmp_path: Path,
) -> None:
    from chaoslab.live.engine import recover
    from chaoslab.live.journal import JournalError

    journal = Journal(tmp_path)
    journal.add_undo({"op": "uncordon", "node": "worker-1"})
    with journal.path.open("ab") as f:
        f.write(b'{"event": "undo.done", "id": "u1\xff\xfe"}\n')
    undone: list[UndoStep] = []
    with pytest.raises(JournalError) as bad:
        recover(tmp_path, lambda s: undone.append(s) or True, log=lambda m: None)
    assert f"{journal.path}:2:" in str(bad.value) and "\n" not in str(bad.value)
    assert undone == []


def test_a_line_a_crash_cut_short_is_skipped_and_the_next_entry_starts_a_new_line(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.add_undo({"op": "uncordon", "node": "worker-1"})
    with journal.path.open("a") as f:
        f.write('{"seq": 3, "event": "undo.do')  # SIGKILL in the middle of a write
    after = Journal(tmp_path)  # --recover, later
    after.undo_done("u1")
    assert [e["event"] for e in after.entries()] == ["undo.add", "undo.done"]
    assert after.pending() == []


def test_a_refused_lab_drill_leaves_no_run_folder_and_the_other_lab_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaoslab.experiment import load_experiment
    from chaoslab.live.lab.drill import LabError, lab_spec, run_lab_drill

    exp = load_experiment(Path(__file__).resolve().parents[1] / "experiments" / "lab-vrrp.yaml")
    monkeypatch.setenv("CHAOSLAB_LAB_STATE", str(tmp_path / "labs"))
    other = tmp_path / "labs" / lab_spec(exp).name / "state.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")  # a lab of that name is up (another operator's)
    with pytest.raises(LabError, match="already recorded"):
        run_lab_drill(exp, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert other.read_text() == "{}"  # not torn down by the refused drill's rollback


def test_the_hook_reaper_kills_at_end_of_file_only_the_groups_still_registered(
    tmp_path: Path,
) -> None:
    """Two hook groups registered, one of them ended and forgotten: when the drill's pipe
    closes (its process died), the reaper kills the other, child included, and nothing of
    a forgotten one."""

    def group(name: str) -> subprocess.Popen[bytes]:
        # a group leader and its child sleeping in the same group
        script = f"sleep 60 & echo $! > {tmp_path / name}; wait"
        return subprocess.Popen(["sh", "-c", script], start_new_session=True)

    running, finished = group("running"), group("finished")
    reaper = subprocess.Popen([sys.executable, "-m", "chaoslab.live.hookreaper"],
                              stdin=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        assert reaper.stdin is not None
        reaper.stdin.write(f"+{running.pid}\n+{finished.pid}\n-{finished.pid}\n".encode())
        reaper.stdin.close()  # what the drill's death does to the pipe
        assert reaper.wait(30) == 0
        assert running.wait(30) == -signal.SIGKILL
        child = int((tmp_path / "running").read_text())
        for _ in range(100):  # SIGKILL is delivered at once, reaping by init may lag
            try:
                if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                    break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the hook's child outlived the reaper")
        assert finished.poll() is None  # forgotten: not the reaper's to kill
    finally:
        for p in (running, finished):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
