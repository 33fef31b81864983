"""What the fast engine's closed forms do not model falls back to SimPy with a note.

Each story: a cell the fast engine covers, changed in one way its closed form does not
model (a fault option, a client setting), runs on the SimPy model, and the note names the
cell and the reason. The rows are the SimPy model's own.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from chaoslab.experiment import load_experiment
from chaoslab.fast import plan
from chaoslab.params import ParamSet
from chaoslab.params.dists import Fixed
from chaoslab.runner import Cell, run_cells

EXPERIMENT = """
title: fast engine refusals
profile: [k8s-1.32, haproxy]
cluster:
  nodes: {master: 3, controller: 3, compute: 2}
  app: {kind: Deployment, replicas: 3, spread: controller}
designs: [nodeport-lb]
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
  - FAULT
client: {timeout: 10s}
horizon: 30m
"""


def _cell(fault: str) -> Cell:
    """The experiment's cell for ``fault`` (a YAML flow mapping)."""
    text = EXPERIMENT.replace("FAULT", fault)
    return load_experiment("refusals.yaml", text).cells()[-1]


def _falls_back(cell: Cell, reason: str) -> None:
    notes: list[str] = []
    frames = [
        df for _, df in run_cells([cell], trials=3, seed=4, engine="fast", on_note=notes.append)
    ]
    assert len(notes) == 1, notes
    assert cell.name in notes[0] and "SimPy engine" in notes[0] and reason in notes[0], notes[0]
    reference = [df for _, df in run_cells([cell], trials=3, seed=4)]
    pd.testing.assert_frame_equal(frames[0], reference[0])


def test_the_plain_cells_are_covered() -> None:
    # the stories below change one thing of a cell the engine runs
    cells = load_experiment("refusals.yaml", EXPERIMENT.replace("  - FAULT\n", "")).cells()
    assert [plan(c)[1] for c in cells] == ["", ""]


def test_a_second_effect_falls_back() -> None:
    _falls_back(_cell("{kind: pod-kill, target: app-pod, with: apiserver-down}"), "fault.with")


def test_a_second_effect_of_a_node_crash_falls_back() -> None:
    cell = _cell("{kind: node-crash, target: app-pod-node, with: pod-kill, with_delay: 5s}")
    _falls_back(cell, "fault.with = pod-kill")


def test_a_pod_that_stays_dead_falls_back() -> None:
    _falls_back(_cell("{kind: pod-kill, target: app-pod, crashes: inf}"), "crash_count = inf")


def test_a_crash_loop_falls_back() -> None:
    _falls_back(_cell("{kind: pod-kill, target: app-pod, crashes: 3}"), "crash_count > 1")


def test_a_drawn_crash_count_falls_back() -> None:
    cell = _cell('{kind: pod-kill, target: app-pod, crashes: "uniform(1, 3)"}')
    _falls_back(cell, "crash_count follows a distribution")


def test_a_repaired_node_falls_back() -> None:
    _falls_back(_cell("{kind: node-crash, target: app-pod-node, repair: 10m}"), "repair_time")


@pytest.mark.parametrize("fault", ["pod-kill", "node-crash"])
def test_clients_that_open_many_connections_fall_back(fault: str) -> None:
    # a stale conntrack entry per client source IP (NodePort designs) has no closed form;
    # the key is put in the cell's values directly, so the story holds before and after
    # the catalogue has it
    target = "app-pod" if fault == "pod-kill" else "app-pod-node"
    cell = _cell(f"{{kind: {fault}, target: {target}}}")
    ps = cell.params
    values = {**ps.values, "client.connection_rate_per_ip": Fixed(2.0)}
    cell = dataclasses.replace(cell, params=ParamSet(values, ps.sources, ps.profiles, ps.explicit))
    _falls_back(cell, "client.connection_rate_per_ip > 0")


def test_no_connections_per_ip_is_covered() -> None:
    cell = _cell("{kind: pod-kill, target: app-pod}")
    ps = cell.params
    values = {**ps.values, "client.connection_rate_per_ip": Fixed(0.0)}
    cell = dataclasses.replace(cell, params=ParamSet(values, ps.sources, ps.profiles, ps.explicit))
    assert plan(cell)[0] is not None


def test_the_heartbeat_jitter_moves_not_ready_as_in_the_simpy_model() -> None:
    # JitterUntil factor 1: the heartbeat grid runs at 1.5 x the renew interval, so the
    # last heartbeat before the crash is on average ~2.4 s older than at the default
    # 0.04, and NotReady that much earlier; the fast form must follow (KS against SimPy)
    from scipy.stats import ks_2samp

    from chaoslab.runner import Chunk, run_chunk

    text = EXPERIMENT.replace("  - FAULT\n", "").replace(
        "client: {timeout: 10s}",
        "client: {timeout: 10s}\nparams: {kubelet.heartbeat_jitter_factor: 1}",
    )
    cell = load_experiment("jitter.yaml", text).cells()[-1]
    fc, why = plan(cell)
    assert fc is not None, why
    simpy = run_chunk(Chunk(cell, 3, 0, 1500)).at_node_not_ready
    fast = run_chunk(Chunk(cell, 3, 0, 1500, fast=fc)).at_node_not_ready
    assert ks_2samp(simpy, fast).pvalue > 0.01
    plain = load_experiment("plain.yaml", EXPERIMENT.replace("  - FAULT\n", "")).cells()[-1]
    fc0, _ = plan(plain)
    assert fc0 is not None
    without = run_chunk(Chunk(plain, 3, 0, 1500, fast=fc0)).at_node_not_ready
    assert ks_2samp(simpy, without).pvalue < 1e-3  # the factor is visible at this size


VRRP = """
title: fast engine VRRP refusals
profile: [k8s-1.32, keepalived-osh]
cluster:
  nodes: {master: 3, controller: 3, compute: 2}
  app: {kind: Deployment, replicas: 3, spread: controller}
designs:
  - DESIGN
faults:
  - {kind: node-crash, target: TARGET}
client: {timeout: 10s}
# no SYN retransmission: the closed form has none (a story below)
params: {client.tcp_syn_retries: RETRIES}
horizon: 30m
"""


def _vrrp_cell(
    design: str = "ingress-vip-vrrp", target: str = "vip-holder", retries: int = 0
) -> Cell:
    text = VRRP.replace("DESIGN", design).replace("TARGET", target)
    return load_experiment("vrrp.yaml", text.replace("RETRIES", str(retries))).cells()[0]


def test_the_crash_of_the_vrrp_master_is_covered() -> None:
    assert plan(_vrrp_cell())[0] is not None


def test_clients_that_resend_their_syn_during_a_garp_move_are_covered() -> None:
    # a 10 s client resends a lost SYN at 1, 3 and 7 s: late successes before the GARP
    # moves the entry, long before the endpoints' removal could change a decision
    fc, why = plan(_vrrp_cell(retries=6))
    assert fc is not None, why
    assert fc.late == (1.0, 3.0, 7.0)


def test_resends_while_the_neighbour_times_out_fall_back() -> None:
    # without GARP the entry moves 15-53 s after the crash: a resend may come after the
    # endpoints' removal, a decision the closed form does not follow
    cell = _vrrp_cell("{design: ingress-vip-vrrp, params: {vrrp.garp_master_repeat: 0}}", retries=6)
    _falls_back(cell, "neighbour's own timeout")


def test_resends_that_may_outlast_the_removal_fall_back() -> None:
    # a 5 s grace: the node's pods leave the endpoints while a 7 s resend is pending
    grace = "kube_controller_manager.node_monitor_grace_period"
    text = f"{{design: ingress-vip-vrrp, params: {{{grace}: 5s}}}}"
    _falls_back(_vrrp_cell(text, retries=6), "outlast the endpoints' removal")


def test_a_drawn_client_timeout_with_resends_falls_back() -> None:
    # each trial's timeout cuts its resends elsewhere: no one table of resend states
    text = '{design: ingress-vip-vrrp, params: {client.timeout: "uniform(5s, 15s)"}}'
    _falls_back(_vrrp_cell(text, retries=6), "client.timeout follows a distribution")


def test_the_new_masters_nginx_is_never_lazy_in_a_covered_cell() -> None:
    # every ingress pod placed at setup has its nginx from the start (`add_ingress`), so
    # SYN resends never meet an nginx created (a decision) at ~arp.updated
    cells = [_vrrp_cell(retries=r) for r in (0, 6)]
    text = "{design: ingress-vip-vrrp, profile: ingress-nginx-2018}"
    cells.append(_vrrp_cell(text, retries=6))
    for cell in cells:
        fc, why = plan(cell)
        assert fc is not None and fc.vrrp is not None, why
        assert fc.vrrp[4] is False  # shape: (prio, sync, reload, others, lazy)


def test_resends_with_a_lazily_started_nginx_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # were the new master's nginx started by its first request, its creation at
    # ~arp.updated would stop every resend (tcp._cohort): no late successes in SimPy
    from chaoslab.mechanisms.ingress import IngressCluster

    add = IngressCluster.add_ingress

    def lazy_add(self: IngressCluster, *args: object, **kwargs: object) -> object:
        wl = add(self, *args, **kwargs)  # type: ignore[arg-type]
        for pod in wl.pods:
            self.nginx.pop(pod.name, None)
        return wl

    monkeypatch.setattr(IngressCluster, "add_ingress", lazy_add)
    fc, why = plan(_vrrp_cell())
    assert fc is not None and fc.vrrp is not None and fc.vrrp[4] is True, why
    fc, why = plan(_vrrp_cell(retries=6))
    assert fc is None and why == "SYN resends with a lazily started nginx: SimPy"


def test_the_crash_of_a_backup_falls_back() -> None:
    _falls_back(_vrrp_cell(target="app-pod-node"), "crash of the VRRP master")


def test_lost_garp_frames_fall_back() -> None:
    cell = _vrrp_cell("{design: ingress-vip-vrrp, params: {arp.garp_loss: 0.5}}")
    _falls_back(cell, "arp.garp_loss > 0")


def test_routed_pod_ips_fall_back() -> None:
    # nginx's own neighbour entry of the dead node (EHOSTUNREACH after NUD) is not modelled
    cell = _vrrp_cell("{design: ingress-vip-vrrp, params: {cni.routing: direct}}")
    _falls_back(cell, "cni.routing: direct")


def test_a_drawn_priority_falls_back() -> None:
    cell = _vrrp_cell('{design: ingress-vip-vrrp, params: {vrrp.priority: "uniform(100, 150)"}}')
    _falls_back(cell, "vrrp.priority follows a distribution")
