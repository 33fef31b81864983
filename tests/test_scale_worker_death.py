"""Pool workers die with their run: a SIGKILLed `chaoslab run --workers 2` leaves no worker.

Before, the workers were reparented to PID 1 and kept running for good (~105 MB each). The
test starts a real run, finds its worker processes by PID through /proc, SIGKILLs the run
and waits for each recorded PID to disappear. It only ever signals the PIDs it recorded,
and kills those that survive so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaoslab.runner import _set_pdeathsig

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

EXPERIMENT = """\
title: orphans
profile: [k8s-1.32, haproxy]
designs: [nodeport-lb, clusterip, nodeport-lb-local]
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
trials: 50000
seed: 3
horizon: 30m
"""


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (field 4 of /proc/PID/stat, after the command name)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has exited


def _wait(predicate, deadline_s: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_prctl_is_available_here() -> None:
    # the kernel path is the one the run relies on; the watcher thread is the fallback
    assert _set_pdeathsig(0)


@pytest.mark.slow
def test_sigkill_of_the_run_ends_its_pool_workers(tmp_path: Path) -> None:
    exp = tmp_path / "orphans.yaml"
    exp.write_text(EXPERIMENT)
    cmd = [sys.executable, "-m", "chaoslab", "run", str(exp), "--workers", "2"]
    run = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "out"), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    try:
        # the pool's workers: two children of the run that stay (the run has no others)
        assert _wait(lambda: len(_children(run.pid)) >= 2, 120), "the pool never started"
        workers = _children(run.pid)
        assert all(_running(w) for w in workers)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        survivors = workers
        _wait(lambda: not any(_running(w) for w in workers), 30)
        survivors = [w for w in workers if _running(w)]
        assert not survivors, f"pool workers {survivors} outlived the killed run"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)
        if run.stderr is not None:
            run.stderr.close()
