"""Each lab topology comes up, reaches a steady state, runs real trials and leaves nothing.

Bounds below come from the daemons' documented timers (keepalived skew and
Master_Down_Interval, HAProxy's check scheduling, BFD detection); they are wide enough for a
busy 2-core machine and narrow enough to catch a wrong configuration.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from chaoslab.compare import COMPARISON_COLUMNS
from chaoslab.live.lab.drill import lab_down, lab_recover, lab_status, lab_up, run_lab_drill
from chaoslab.live.lab.netns import LabState, pid_alive, state_root
from chaoslab.live.lab.netns import namespaces_with_prefix as our_namespaces

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(240)]

Make = Callable[..., Any]


#: a short trial pace: the bounds below hold for any phase of the daemons' timers
TRIAL = {
    "baseline": "1s",
    "cooldown": "500ms",
    "steady": "1s",
    "settle_timeout": "30s",
    "jitter": "1s",
}


def _assert_clean(name: str) -> None:
    st = LabState.load(state_root() / name / "state.down.json")
    assert our_namespaces(f"{st.prefix}-") == []
    alive = [p.name for p in st.procs.values() if pid_alive(p.pid, p.start)]
    assert alive == [], f"processes left: {alive}"


def _row(trials: pd.DataFrame, fault: str) -> pd.Series:
    rows = trials[trials.fault == fault]
    assert len(rows) == 1, f"{fault}: {len(rows)} trials"
    return rows.iloc[0]


def test_vrrp_sigterm_sigkill_and_link_down(lab_env: Make, tmp_path: Path) -> None:
    kill = {"kind": "daemon-kill", "target": "vip-holder", "daemon": "keepalived", "restart": "inf"}
    faults = [
        {**kill, "signal": "TERM"},
        {**kill, "signal": "KILL"},
        {"kind": "link-down", "target": "vip-holder", "duration": "inf"},
        {"kind": "transient-blip", "target": "vip-holder", "duration": "500ms"},
    ]
    exp = lab_env(
        "lab-vrrp.yaml", trials=1, faults=faults, trial=TRIAL, horizon="5s", predict_trials=100
    )
    res = run_lab_drill(exp, out=tmp_path / "runs")
    t = res.trials
    meta = json.loads((res.path / "meta.json").read_text())
    assert (meta["mode"], meta["target"], meta["status"]) == ("live", "lab", "complete")
    assert meta["format_version"] == 2
    assert meta["prober"] == {"rate_hz": 100.0, "probers": 3, "bin_s": 0.02}
    for name in ("probes.parquet", "comparison.csv", "trials.parquet", "prediction.parquet"):
        assert (res.path / name).exists(), name
    assert tuple(res.comparison.columns) == COMPARISON_COLUMNS

    # SIGTERM: priority-0 advert, the backup (priority 100) takes over after its skew 0.609 s
    term = _row(t, "daemon-kill/keepalived-term")
    assert 0.3 <= term.recovery_s <= 1.3
    assert term.at_vip_removed < 0.1  # keepalived removes the VIP as it stops
    assert abs(term.at_vrrp_master_changed - 0.609) < 0.25

    # SIGKILL of keepalived alone: the old master keeps the VIP and still serves; the backup
    # takes over after Master_Down_Interval, so both hold the VIP. No request fails except,
    # sometimes, one whose SYN reached the old master and whose next segment followed the
    # backup's GARP (reset): a probe or two at the takeover, never a gap before it
    kill = _row(t, "daemon-kill/keepalived-kill")
    assert math.isnan(kill.at_vip_removed)
    assert 2.4 <= kill.at_vrrp_master_changed <= 4.2
    # one 20 ms bin at most: under load a bin may hold only the probe or two that fail there
    assert kill.downtime_s <= 0.02 + 1e-9 and kill.lost_s <= 0.02 + 1e-9
    assert kill.recovery_s == 0.0 or abs(kill.recovery_s - kill.at_vrrp_master_changed) < 0.2

    # link down: Master_Down_Interval 3.609 s after the last advert the backup received
    down = _row(t, "link-down")
    assert 2.4 <= down.recovery_s <= 4.3
    assert down.downtime_s >= 2.0
    assert abs(down.at_vrrp_master_changed - down.recovery_s) < 0.3

    # 0.5 s of packet loss with the carrier up: shorter than Master_Down_Interval, so no
    # failover happens and the outage is the blip itself
    blip = _row(t, "transient-blip/0.5s")
    assert 0.45 <= blip.recovery_s <= 0.7
    assert math.isnan(blip.at_vrrp_master_changed)
    _assert_clean(exp.model.lab.name)


def test_nodeport_lb_local_link_down(lab_env: Make, tmp_path: Path) -> None:
    exp = lab_env("lab-nodeport-lb-local.yaml", trials=1, trial=TRIAL, predict_trials=100)
    res = run_lab_drill(exp, out=tmp_path / "runs")
    r = res.trials.iloc[0]
    # HAProxy starts the next check `inter` after the previous one ended, so with a
    # black-holed node each failed check takes inter + timeout: detection is
    # U(0, inter) + fall*timeout + (fall-1)*inter = 5..6 s for inter 1 s, timeout 1 s, fall 3
    assert 4.6 <= r.recovery_s <= 6.6
    assert r.downtime_s == 0.0
    assert 0.35 <= r.lost_s / r.recovery_s <= 0.65  # 1 of 2 nodes with local pods
    assert abs(r.at_lb_marked_down - r.recovery_s) < 0.3
    _assert_clean(exp.model.lab.name)


def test_bgp_bfd_link_down(lab_env: Make, tmp_path: Path) -> None:
    faults = [{"kind": "node-crash", "target": "ingress-node", "lab": {"method": "link-down"}}]
    exp = lab_env(
        "lab-bgp-bfd.yaml", trials=1, faults=faults, trial=TRIAL, horizon="4s", predict_trials=100
    )
    res = run_lab_drill(exp, out=tmp_path / "runs")
    r = res.trials.iloc[0]
    assert r.recovery_s <= 0.6  # BFD 100 ms x 3
    assert r.at_bfd_down <= 0.45
    assert r.downtime_s == 0.0
    assert 0.15 <= r.lost_s / max(r.recovery_s, 0.05) <= 0.55  # 1 of 3 ECMP paths
    # connections of the dead node hang until the re-hash, then they and those moved off
    # surviving paths are reset: by the end of the window none is still hung
    assert r.connections_reset > 0
    assert r.connections_hung <= 0.1
    _assert_clean(exp.model.lab.name)


def test_hostnet_pod_kill_vs_link_down(lab_env: Make, tmp_path: Path) -> None:
    timeout = {"client.timeout": "500ms"}
    faults = [
        {
            "kind": "pod-kill",
            "target": "app-pod",
            "name": "pod-kill/timeout-0.5s",
            "params": timeout,
        },
        {
            "kind": "node-crash",
            "target": "app-pod-node",
            "name": "link-down/timeout-0.5s",
            "params": timeout,
            "lab": {"method": "link-down", "target": "app-pod"},
        },
    ]
    exp = lab_env(
        "lab-ingress-hostnet.yaml",
        trials=1,
        faults=faults,
        trial=TRIAL,
        horizon="4s",
        predict_trials=100,
    )
    res = run_lab_drill(exp, out=tmp_path / "runs")
    killed = _row(res.trials, "pod-kill/timeout-0.5s")
    cut = _row(res.trials, "link-down/timeout-0.5s")
    # refused: nginx retries the next pod at once
    assert killed.lost_s < 0.05
    # black-holed: every third request waits proxy_connect_timeout (1 s) > client timeout
    assert not cut.recovered
    assert 0.25 <= cut.lost_s / 4.0 <= 0.42
    _assert_clean(exp.model.lab.name)


def test_up_status_down(lab_env: Make) -> None:
    exp = lab_env("lab-nodeport-lb.yaml")
    topo = lab_up(exp)
    st = lab_status(exp.model.lab.name)
    # sw, lb, client, 3 nodes, 2 pods
    assert all(st["namespaces"].values()) and len(st["namespaces"]) == 8
    assert all(alive for _, alive in st["processes"].values())
    assert lab_down(exp.model.lab.name) == []
    assert our_namespaces(f"{topo.state.prefix}-") == []
    _assert_clean(exp.model.lab.name)


_DRILL = """
import sys
from pathlib import Path
from chaoslab.experiment import load_experiment
from chaoslab.live.lab.drill import run_lab_drill
run_lab_drill(load_experiment(sys.argv[1]), out=Path(sys.argv[2]))
"""


def _start_drill(yaml: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _DRILL, str(yaml), str(out)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def _wait_first_trial(name: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the drill has its lab up and a trial's prober running."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "drill exited early"
        p = state_root() / name / "state.json"
        if p.exists() and "probe" in LabState.load(p).procs:
            time.sleep(2)
            return
        time.sleep(0.2)
    raise AssertionError("the drill did not reach its first trial")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_drill_killed_half_way_leaves_nothing(lab_env: Make, tmp_path: Path, sig: int) -> None:
    exp = lab_env("lab-vrrp.yaml", trials=5)  # a unique name and the leftover check
    name = exp.model.lab.name
    proc = _start_drill(Path(exp.path), tmp_path / "runs")
    try:
        _wait_first_trial(name, proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGTERM:
        # the drill tore its lab down itself and marked its run partial
        _assert_clean(name)
        metas = list((tmp_path / "runs").glob("*/*/meta.json"))
        assert metas and json.loads(metas[0].read_text())["status"] == "partial"
    else:
        # a crash leaves the lab; the run's journal says to take it down, and --recover does
        assert our_namespaces(f"cl-{name}-")
        (run,) = (tmp_path / "runs").glob("*/*")
        assert lab_recover(run, log=lambda s: None)
        _assert_clean(name)
        assert lab_recover(run, log=lambda s: None)  # nothing left: idempotent
