"""keepalived 2.2.7 (Debian 12) in the lab: vrrp_track_process, and when a new MASTER's
refresh GARPs go out (the model's ``advert`` schedule, `garp_refresh_offsets`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chaoslab
from chaoslab.live.lab.base import LabParams
from chaoslab.live.lab.drill import lab_down, lab_up, topology_class
from chaoslab.live.lab.netns import LabError, LabState, cleanup, pid_alive, state_root
from chaoslab.live.lab.netns import namespaces_with_prefix as our_namespaces
from chaoslab.live.lab.spec import LabFault
from chaoslab.live.lab.vrrp import TRACK_PROCESS_LINK, VIP, VrrpTopology, _keepalived_test
from chaoslab.mechanisms.vrrp import garp_refresh_grid, garp_refresh_offsets

Make = Callable[..., Any]


# ------------------------------------------------------------------ closed forms


def test_refresh_rides_the_adverts_up_to_keepalived_2_3_1() -> None:
    """keepalived <= 2.3.1 sends the refresh with the first advert after T + R and re-arms
    from that advert: every ceil(R / advert) adverts, garp_master_delay plays no part.
    2.3.2+ starts a timer thread at T + delay + R, then every R."""
    assert garp_refresh_grid("advert", 3.0, delay=5.0, adver=1.0) == (3.0, 3.0)
    assert garp_refresh_grid("advert", 2.5, delay=5.0, adver=1.0) == (3.0, 3.0)
    assert garp_refresh_grid("advert", 0.3, delay=5.0, adver=1.0) == (1.0, 1.0)
    assert garp_refresh_grid("advert", 10.0, delay=0.0, adver=4.0) == (12.0, 12.0)
    assert garp_refresh_grid("timer", 3.0, delay=5.0, adver=1.0) == (8.0, 3.0)
    assert garp_refresh_offsets("advert", 3.0, delay=5.0, adver=1.0, until=12.0) == [3, 6, 9, 12]
    assert garp_refresh_offsets("timer", 3.0, delay=5.0, adver=1.0, until=12.0) == [8, 11]
    assert garp_refresh_offsets("advert", 0.0, delay=5.0, adver=1.0, until=60.0) == []


def test_a_vrrp_group_on_the_advert_schedule_heals_a_router_at_those_refreshes() -> None:
    """The model's group on keepalived 2.2.7's schedule: each GARP frame lost with q = 1/2,
    one frame per burst, bursts at T, T + 3 (the first refresh), T + 5 (garp_master_delay),
    T + 6, T + 9: a router entry that only a GARP moves (4 h ARP timeout) moves at the k-th
    burst with P = 2^-(k+1)."""
    params = {
        "vrrp.garp_refresh_schedule": "advert",
        "arp.neighbor": "router",
        "arp.router_timeout": "4h",
        "arp.garp_loss": 0.5,
        "vrrp.garp_master_repeat": 1,
        "vrrp.garp_master_delay": "5s",
        "vrrp.garp_master_refresh": "3s",
    }
    df = chaoslab.simulate(
        "ingress-vip-vrrp",
        {"kind": "node-crash", "target": "vip-holder"},
        profile=["k8s-1.32", "keepalived-osh"],
        params=params,
        trials=600,
        seed=3,
    )
    moved = (df["at_arp_updated"] - df["at_vrrp_master_changed"]).to_numpy()
    for k, at in enumerate((0.0, 3.0, 5.0, 6.0, 9.0)):
        p = 2.0 ** -(k + 1)
        share = np.isclose(moved, at, atol=1e-6).mean()
        assert share == pytest.approx(p, abs=4 * (p * (1 - p) / 600) ** 0.5), at
    assert np.isclose(moved, 8.0, atol=1e-6).sum() == 0  # the timer schedule's first refresh


# ------------------------------------------------------------------ the real keepalived


def _ns_inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def _holds_vip(st: LabState, node: str) -> bool:
    out = subprocess.run(
        ["ip", "-n", st.ns(node), "-4", "addr", "show", "dev", st.info["uplinks"][node]],
        capture_output=True,
        text=True,
    ).stdout
    return f"inet {VIP}/" in out


def _wait(cond: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``cond`` held (polled every 5 ms); fails after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.005)
    return time.monotonic() - t0


def _assert_clean(name: str) -> None:
    st = LabState.load(state_root() / name / "state.down.json")
    assert our_namespaces(f"{st.prefix}-") == []
    assert [p.name for p in st.procs.values() if pid_alive(p.pid, p.start)] == []


def _host() -> tuple[set[str], set[str]]:
    """The host namespace's addresses and interface names (a lab must change neither)."""
    run = [["ip", "-br", "addr"], ["ip", "-br", "link"]]
    a, b = (subprocess.run(c, capture_output=True, text=True, check=True).stdout for c in run)
    addrs = {w for ln in a.splitlines() for w in ln.split()[2:]}
    return addrs, {ln.split()[0] for ln in b.splitlines()}


def _assert_host_untouched(before: tuple[set[str], set[str]]) -> None:
    addrs, links = _host()
    assert not any(a.startswith(f"{VIP}/") for a in addrs) and TRACK_PROCESS_LINK not in links
    assert addrs == before[0] and links == before[1]


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_track_process_hands_the_vip_over_at_the_service_exit(lab_env: Make) -> None:
    """keepalived starts in the host's namespace for the process events and is inside the
    node's before it sends anything; the service's SIGKILL is a kernel event, the master goes
    FAULT at once (weight 0) and the backup takes over after its Skew_Time, 0.609 s."""
    exp = lab_env("lab-vrrp-track-process.yaml")
    before = _host()
    topo = lab_up(exp)
    st = topo.state

    def inside(node: str) -> None:
        proc = st.procs[f"keepalived-{node}"]
        assert proc.enters_ns and proc.argv[-2:] == ["-s", st.ns(node)]
        pids = proc.all_pids()
        assert len(pids) >= 2  # the parent and its VRRP child
        for pid in pids:
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == _ns_inode(st.ns(node))

    try:
        for node in ("n1", "n2"):
            inside(node)
            assert "net_namespace" not in Path(st.dir, f"keepalived-{node}.conf").read_text()
        _wait(lambda: _holds_vip(st, "n1"), 15.0)
        _assert_host_untouched(before)
        st.stop("srv-n1")
        took = _wait(lambda: _holds_vip(st, "n2"), 5.0)
        assert 0.5 <= took <= 1.5
        log = Path(st.procs["keepalived-n1"].log).read_text()
        assert "Quorum lost for tracked process chk_service" in log
        assert "Entering FAULT STATE" in log
        # a daemon-kill's restore starts keepalived on the host again, checked again
        st.stop("keepalived-n1")
        fault = LabFault(kind="daemon-kill", target="n1", name="k", daemon="keepalived")
        topo.restore(fault, "n1")
        inside("n1")
        _wait(lambda: _holds_vip(st, "n1"), 15.0)  # priority 150 preempts again
        _assert_host_untouched(before)
    finally:
        lab_down(exp.model.lab.name)
    _assert_clean(exp.model.lab.name)
    _assert_host_untouched(before)
    assert not any(Path(d).exists() for d in st.info.get("keepalived_run_dirs", []))


def _group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            out.append(int(d.name))
    return out


@pytest.mark.lab
def test_a_daemon_that_does_not_enter_its_namespace_is_killed(lab_env: Make) -> None:
    """The guard behind keepalived's start on the host: a process started with enters_ns
    that is not inside the namespace 0.25 s later is killed with its process group (what it
    forked meanwhile) and the start fails."""
    lab_env("lab-vrrp.yaml")  # only for the private state folder and the leftover check
    st = LabState.create(f"g{os.getpid()}", f"cl-g{os.getpid()}", "ingress-vip-vrrp")
    try:
        st.add_ns("n1")
        argv = ["sh", "-c", "sleep 30 & sleep 30 & wait", st.ns("n1")]  # $0 names the ns
        t0 = time.monotonic()
        with pytest.raises(LabError, match=r"did not enter namespace \S+ within 0.25 s"):
            st.spawn("stays", "n1", argv, enters_ns=True)
        assert time.monotonic() - t0 < 2.0
        proc = st.procs["stays"]
        assert not proc.alive()
        assert _wait(lambda: _group(proc.pid) == [], 2.0) < 2.0
    finally:
        cleanup(st)
    assert our_namespaces(f"{st.prefix}-") == []


def _track_process_topology(lab_env: Make) -> VrrpTopology:
    exp = lab_env("lab-vrrp-track-process.yaml")
    name = exp.model.lab.name
    st = LabState.create(name, f"cl-{name}", "ingress-vip-vrrp")
    params = LabParams(exp.profiles, exp.overrides())
    topo = topology_class("ingress-vip-vrrp")(st, exp.model.lab, params, exp.horizon)
    assert isinstance(topo, VrrpTopology)
    return topo


@pytest.mark.lab
def test_keepalived_left_on_the_host_would_find_no_interface(lab_env: Make) -> None:
    """The interlock behind ``keepalived -s NAMESPACE`` (only config tests here, no daemon
    starts): the config passes ``-t -s`` (inside the namespace, which has kvrrp0) and fails
    ``-t`` without ``-s`` on the host, which has no kvrrp0 (2.2.7: rc 5, "Non-existent
    interface"); a config naming an interface the host has too (eth0) is refused."""
    before = _host()
    topo = _track_process_topology(lab_env)
    st = topo.state
    try:
        st.add_ns("n1")
        st.ip("n1", "link", "add", TRACK_PROCESS_LINK, "type", "veth", "peer", "name", "p")
        conf = topo.write("k.conf", topo.keepalived_conf("n1", 1))
        argv = ["keepalived", "-n", "-l", "-D", "-f", conf, "-s", st.ns("n1")]
        topo.check_conf("n1", argv)  # passes
        host = _keepalived_test([*argv[:-2], "-t"])
        assert host.returncode != 0
        assert f"interface {TRACK_PROCESS_LINK} for vrrp_instance VI_1 doesn't exist" in (
            host.stderr + host.stdout
        )
        assert _keepalived_test([*argv, "-t"]).returncode == 0
        # the namespace has an eth0 too: only the host-side test can tell this config apart
        st.ip("n1", "link", "add", "eth0", "type", "veth", "peer", "name", "p2")
        bad = topo.write("bad.conf", Path(conf).read_text().replace(TRACK_PROCESS_LINK, "eth0"))
        with pytest.raises(LabError, match=r"without -s \S+ did not fail on the host"):
            topo.check_conf("n1", [*argv[:5], bad, *argv[6:]])
        # 2.2.7 passes -t unchecked when setns() fails: the lab refuses a missing namespace
        with pytest.raises(LabError, match="namespace .* does not exist"):
            topo.check_conf("n2", [*argv[:-1], st.ns("n2")])
    finally:
        cleanup(st)
    assert our_namespaces(f"{st.prefix}-") == []
    _assert_host_untouched(before)


#: prints "t op sender_mac sender_ip target_ip" for every ARP frame on the client's eth0
_CAPTURE = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
s.settimeout(0.1)
end = time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while time.monotonic() < end:
    try:
        f = s.recv(128)
    except socket.timeout:
        continue
    t = time.monotonic()
    op = struct.unpack("!H", f[20:22])[0]
    print(t, op, f[22:28].hex(), socket.inet_ntoa(f[28:32]), socket.inet_ntoa(f[38:42]), flush=True)
"""


def _mac(st: LabState, node: str) -> str:
    out = subprocess.run(
        ["ip", "-n", st.ns(node), "link", "show", "eth0"], capture_output=True, text=True
    ).stdout
    return out.split("link/ether ")[1].split()[0].replace(":", "")


def _bursts(times: list[float], gap: float = 0.2) -> list[tuple[float, int]]:
    """(start, frames) of each burst: frames less than ``gap`` apart are one burst."""
    out: list[tuple[float, int]] = []
    for t in sorted(times):
        if out and t - out[-1][0] < gap:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_keepalived_2_2_7_refreshes_with_its_adverts_not_after_the_delay(lab_env: Make) -> None:
    """garp_master_refresh 3 s, garp_master_delay 5 s, advert 1 s. After the backup takes
    over at T (SIGTERM of the master): 5 frames at T and at T + 5 (the delayed burst), one
    refresh frame at T + 3, 6, 9, 12 (the advert schedule), none at T + 8 or 11 (the timer
    schedule of keepalived 2.3.2+, and the model's before this test)."""
    params = {"vrrp.garp_master_refresh": "3s", "vrrp.garp_master_delay": "5s"}
    exp = lab_env("lab-vrrp.yaml", params=params)
    topo = lab_up(exp)
    st = topo.state
    window = 13.5
    try:
        _wait(lambda: _holds_vip(st, "n1"), 15.0)
        mac = _mac(st, "n2")
        cap = subprocess.Popen(
            ["ip", "netns", "exec", st.ns("client"), sys.executable, "-c", _CAPTURE, str(window)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
            st.stop("keepalived-n1", signal.SIGTERM)
            out, _ = cap.communicate(timeout=window + 10)
        finally:
            if cap.poll() is None:
                cap.kill()
                cap.wait()
    finally:
        lab_down(exp.model.lab.name)
    _assert_clean(exp.model.lab.name)
    frames = [
        float(t)
        for t, _op, sha, spa, tpa in (ln.split() for ln in out.splitlines())
        if sha == mac and spa == VIP and tpa == VIP
    ]
    bursts = _bursts(frames)
    t0 = bursts[0][0]
    offsets = [round(b[0] - t0, 2) for b in bursts]
    want = sorted([0.0, 5.0, *garp_refresh_offsets("advert", 3, delay=5, adver=1, until=12.5)])
    assert len(offsets) == len(want), offsets
    assert all(abs(o - w) < 0.3 for o, w in zip(offsets, want, strict=True)), offsets
    sizes = {round(w): n for w, (_, n) in zip(want, bursts, strict=True)}
    assert sizes[0] == sizes[5] == 5 and {sizes[k] for k in (3, 6, 9, 12)} == {1}
