"""What a pending SYN's retransmission depends on: each design names its decisions
(`Topology.decision_pods`, `Topology.decision_extra`), and a change in any of them shows in
`decision_state` (`chaoslab.mechanisms.tcp`: a changed decision ends late successes)."""

from __future__ import annotations

from pathlib import Path

from chaoslab.experiment import load_experiment
from chaoslab.mechanisms.ingress import IngressCluster
from chaoslab.runner import Cell, _build

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "seed-designs.yaml"


def _cell(design: str) -> Cell:
    return next(c for c in load_experiment(EXPERIMENT).cells() if c.design == design)


def test_lb_rotation_is_a_decision() -> None:
    _, topo, _, _ = _build(_cell("nodeport-lb"), 0, seed=7)
    before = topo.decision_state()
    topo.lb.up[topo.lb.in_rotation()[0].name] = False  # the LB takes a node out
    assert topo.decision_state() != before


def test_ingress_pods_and_upstreams_are_decisions() -> None:
    _, topo, _, _ = _build(_cell("ingress-vip-vrrp"), 0, seed=7)
    c = topo.cluster
    assert isinstance(c, IngressCluster)
    ingress = [p for wl in c.extra.values() for p in wl.pods]
    assert ingress and all(p in topo.decision_pods() for p in ingress)
    before = topo.decision_state()
    ingress[0].running = False  # the ingress pod's nginx process stops
    assert topo.decision_state() != before


def test_a_plain_design_decides_by_rules_and_app_pods_only() -> None:
    _, topo, _, _ = _build(_cell("clusterip"), 0, seed=7)
    assert topo.decision_pods() == topo.cluster.app.pods
    assert topo.decision_extra() == []
