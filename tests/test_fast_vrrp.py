"""The fast VRRP form against the closed forms it is built from (RFC 5798 section 6.1,
arp(7)), on the article's chart (keepalived-osh: priority 150 everywhere, VRRPv2,
advert 1 s)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kstest

from chaoslab.experiment import load_experiment
from chaoslab.fast import plan
from chaoslab.runner import Chunk, run_chunk

EXPERIMENT = """
title: fast VRRP closed forms
profile: [k8s-1.32, keepalived-osh]
cluster:
  nodes: {master: 3, controller: 3, compute: 2}
  app: {kind: Deployment, replicas: 3, spread: controller}
designs:
  - DESIGN
faults:
  - {kind: node-crash, target: vip-holder}
client: {timeout: 10s}
# no SYN retransmission: the fast form has none (it refuses a cell that has it)
params: {client.tcp_syn_retries: 0}
horizon: 30m
"""

#: Master_Down_Interval at priority 150, VRRPv2, advert 1 s: 3 x 1 + (256 - 150) / 256
MDI = 3 + (256 - 150) / 256


def _fast(design: str = "ingress-vip-vrrp", trials: int = 2000) -> pd.DataFrame:
    cell = load_experiment("vrrp.yaml", EXPERIMENT.replace("DESIGN", design)).cells()[0]
    fc, why = plan(cell)
    assert fc is not None, why
    return run_chunk(Chunk(cell, 5, 0, trials, fast=fc))


def test_the_backup_takes_over_within_one_advert_before_its_master_down_interval() -> None:
    # the master's last advert is uniform over the advert interval before the crash
    df = _fast()
    t = df.at_vrrp_master_changed.to_numpy()
    assert (t > MDI - 1 - 1e-9).all() and (t <= MDI + 1e-9).all()
    assert kstest(t - (MDI - 1), "uniform").pvalue > 0.01
    # the VIP is added at once and its GARP burst moves the clients' entry
    assert np.array_equal(df.at_vip_added, t) and np.array_equal(df.at_arp_updated, t)
    assert np.array_equal(df.downtime_s, t)
    # then the crashed master's app pod is still the new master's nginx's upstream: its Lua
    # round robin's retries draw it twice for 1/9 of requests (3 pods, tries 3, connect 5
    # s, client 10 s) until that nginx drops it, at most a sync (1 / 0.3 s) and a worker
    # tick (1 s) after the first nginx did
    removed = df.at_ingress_upstream_removed
    assert df.recovery_s.between(removed - 1e-9, removed + 1 / 0.3 + 1).all()
    assert np.allclose(df.lost_s, t + (df.recovery_s - t) / 9)


def test_without_garp_the_linux_neighbour_gives_up_on_the_dead_mac() -> None:
    # REACHABLE U(15, 45) s after the last confirmation (t = 0), DELAY 5 s, 3 probes 1 s
    # apart: re-resolved to the new master 23-53 s after the crash, uniform
    df = _fast("{design: ingress-vip-vrrp, params: {vrrp.garp_master_repeat: 0}}")
    t = df.at_arp_updated.to_numpy()
    assert kstest((t - 23) / 30, "uniform").pvalue > 0.01
    assert (df.at_vrrp_master_changed < t).all()


def test_connections_via_the_dead_master_are_reset_once_the_entry_moves() -> None:
    # a router ignoring GARP moves its entry at its 1 h timeout's tick: within the
    # 30 min horizon in about half the trials; until then the connections hang
    design = (
        "{design: ingress-vip-vrrp, params: "
        "{arp.neighbor: router, arp.accept_garp: false, arp.router_timeout: 1h}}"
    )
    df = _fast(design)
    moved = df.recovered.to_numpy()
    assert 0.45 < moved.mean() < 0.55
    assert (df.connections_reset[moved] == 1).all() and (df.connections_hung[moved] == 0).all()
    assert (df.connections_reset[~moved] == 0).all() and (df.connections_hung[~moved] == 1).all()
    assert np.isinf(df.recovery_s[~moved]).all()
