"""From an experiment's ``advise:`` section to points: a design at one timer setting,
with one cell per real fault and per kind of noise, each with its rate per cluster-year.

Real faults are the experiment's ``faults:``; noise runs through the fault kinds that can
express a disturbance that ends by itself:

===============  ================================================================
network-blip     ``transient-blip``: the node is cut off the network for ``duration``
kubelet-stall    ``kubelet-stop`` that ends after ``duration``: status updates stop,
                 the data plane keeps serving (a kubelet GC/CPU stall)
apiserver-stall  ``apiserver-down`` for ``duration``, per cluster: every heartbeat
                 fails meanwhile; a grace period shorter than the stall marks nodes
                 NotReady if the controller manager keeps leading through it
===============  ================================================================

A stall of a network daemon (keepalived, BIRD, BFD) that keeps its state is not among the
fault kinds: ``daemon-kill`` with a restart re-establishes sessions and would charge every
short stall with a failover. The network blip of the daemon's node stands for it (the
daemon's packets are lost for the duration, and the data plane too).

A noise entry whose target a design does not have is left out for that design (a note says
so): nothing there can be disturbed. The default blip targets the VIP holder, or an app
pod's node in designs without a VIP.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaoslab.advise.spec import AdviseSpec, NoiseSpec, noise_name, parse_rate, timer_values
from chaoslab.designs import DESIGNS, ImpossibleTarget
from chaoslab.designs.base import initial_app_nodes
from chaoslab.experiment import DesignVariant, Experiment
from chaoslab.faults import Fault, ImpossibleFault
from chaoslab.params import ParamSet
from chaoslab.params.dists import Dist
from chaoslab.params.rates import FAULT_RATE_KEYS, NOISE_KEYS, NOISE_SCOPE
from chaoslab.runner import Cell

__all__ = ["Component", "Point", "default_noise", "exposure", "grid_size", "plan_points"]


@dataclass(frozen=True)
class Component:
    """A real fault or a kind of noise of one design, with its events per cluster-year."""

    name: str
    real: bool
    rate: float


@dataclass(frozen=True)
class Point:
    """One design at one timer setting: a cell per component."""

    label: str
    timers: Mapping[str, Any]
    cells: tuple[Cell, ...]
    components: tuple[Component, ...]
    #: position in the design's grid (0 = the first value of every timer)
    index: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """``node_monitor_grace_period=20s, fall=2``: each key's last part, unless two
        keys share it."""
        short = [k.rsplit(".", 1)[-1] for k in self.timers]
        names = short if len(set(short)) == len(short) else list(self.timers)
        pairs = zip(names, self.timers.values(), strict=True)
        return ", ".join(f"{k}={v}" for k, v in pairs) or "(defaults)"

    @property
    def parts(self) -> list[tuple[str, bool, float]]:
        return [(c.name, c.real, c.rate) for c in self.components]


def default_noise() -> list[NoiseSpec]:
    """Every noise kind where it matters most: network blips on the node holding the VIP
    (an app pod's node in designs without one), kubelet stalls on app pods' nodes, API
    server stalls of the control plane."""
    return [
        NoiseSpec(kind="network-blip", target="vip-holder", name="noise/network-blip"),
        NoiseSpec(kind="kubelet-stall", target="app-pod-node", name="noise/kubelet-stall"),
        NoiseSpec(kind="apiserver-stall", target="control-plane", name="noise/apiserver-stall"),
    ]


#: noise kind -> the fault kind that expresses it, and its target (None: the entry's)
_NOISE_FAULTS: dict[str, tuple[str, str | None]] = {
    "network-blip": ("transient-blip", None),
    "kubelet-stall": ("kubelet-stop", None),
    "apiserver-stall": ("apiserver-down", "control-plane"),
}


#: where a default noise entry goes when a design has no such target
_FALLBACK = {"vip-holder": "app-pod-node"}


def exposure(exp: Experiment, scope: str, target: str) -> int:
    """How many nodes (or pods) a per-node (per-pod) rate stands for at ``target``."""
    spec = exp.cluster_spec()
    if scope == "pod":
        return spec.replicas if target in ("", "app-pod") else 1
    if scope == "node" and target in ("", "app-pod-node"):
        return max(1, len(set(initial_app_nodes(spec))))
    return 1


def _rate(exp: Experiment, raw: object, default: tuple[float, str], target: str) -> float:
    value, scope = parse_rate(raw) if raw is not None else default
    return value * exposure(exp, scope, target)


def _default_rate(ps: ParamSet, key: str) -> float:
    v = ps.values[key]
    return float(v.mean()) if isinstance(v, Dist) else float(str(v))


def _design_params(
    exp: Experiment, design: str, variant: DesignVariant | None, extra: Mapping[str, Any]
) -> ParamSet:
    own = dict(variant.params) if variant else {}
    profiles = DESIGNS[design].profiles(exp.profiles_for({}, variant))
    return ParamSet.resolve(profiles, {**exp.overrides(), **own, **extra})


def _real_cells(
    exp: Experiment, spec: AdviseSpec, entry: tuple[str, str, DesignVariant | None],
    point: Mapping[str, Any],
) -> list[tuple[Cell, Component]]:  # fmt: skip
    label, design, variant = entry
    out = []
    for fm, fault in zip(exp.model.faults, exp.faults(), strict=True):
        if fm.designs is not None and label not in fm.designs and design not in fm.designs:
            continue
        ps = _design_params(exp, design, variant, {**fm.params, **point})
        key, scope = FAULT_RATE_KEYS[fault.kind]
        raw = spec.rates.get(fault.result_name, spec.rates.get(fault.kind))
        rate = _rate(exp, raw, (_default_rate(ps, key), scope), fault.label)
        cell = Cell(design, fault, ps, exp.cluster_spec(), dict(point), exp.horizon, label=label)
        out.append((cell, Component(fault.result_name, True, rate)))
    return out


def _noise_fault(n: NoiseSpec, duration: str) -> Fault:
    kind, target = _NOISE_FAULTS[n.kind]
    return Fault(kind, target or n.target, {"duration": duration}, name=noise_name(n))


def _applicable(cell: Cell) -> str:
    """Empty if the cell can run, else why not."""
    try:
        cell.check()
    except (ImpossibleFault, ImpossibleTarget, ValueError) as e:
        return str(e)
    return ""


def _noise_fault_for(
    n: NoiseSpec, duration: str, make: Callable[[Fault], Cell], fallback: bool
) -> tuple[Fault | None, str]:
    """The noise as a fault this design can run, or why it cannot; a default entry moves
    to its fallback target when the design has no such target."""
    fault = _noise_fault(n, duration)
    why = _applicable(make(fault))
    if why and fallback and n.target in _FALLBACK:
        fault = _noise_fault(n.model_copy(update={"target": _FALLBACK[n.target]}), duration)
        why = _applicable(make(fault))
    return (None, why) if why else (fault, "")


@dataclass
class _NoisePlan:
    """A design's noise faults, worked out once (they do not depend on the timers)."""

    faults: list[tuple[Fault, Component]]
    notes: list[str]


def _plan_noise(
    exp: Experiment, spec: AdviseSpec, entry: tuple[str, str, DesignVariant | None]
) -> _NoisePlan:
    label, design, variant = entry
    ps = _design_params(exp, design, variant, {})
    out = _NoisePlan([], [])
    fallback = spec.noise is None
    for n in spec.noise if spec.noise is not None else default_noise():
        if n.designs is not None and label not in n.designs and design not in n.designs:
            continue
        rate_key, dur_key = NOISE_KEYS[n.kind]
        duration = str(n.duration) if n.duration is not None else ps.text(dur_key)

        def make(f: Fault) -> Cell:
            return Cell(design, f, ps, exp.cluster_spec(), {}, exp.horizon, label=label)

        fault, why = _noise_fault_for(n, duration, make, fallback)
        if fault is None:
            out.notes.append(f"{label}: no {noise_name(n)} ({why})")
            continue
        default = (_default_rate(ps, rate_key), NOISE_SCOPE[n.kind])
        rate = _rate(exp, n.rate, default, fault.label)
        out.faults.append((fault, Component(fault.result_name, False, rate)))
    return out


def plan_points(exp: Experiment, spec: AdviseSpec) -> list[Point]:
    """Every point of every advised design, in grid order."""
    points: list[Point] = []
    for entry in exp.design_entries():
        label, design, variant = entry
        if spec.designs is not None and label not in spec.designs:
            continue
        timers = spec.timers.get(label, {})
        keys = list(timers)
        grids = [timer_values(k, timers[k]) for k in keys]
        noise = _plan_noise(exp, spec, entry)
        for i, combo in enumerate(itertools.product(*grids)):
            point = dict(zip(keys, combo, strict=True))
            pairs = _real_cells(exp, spec, entry, point)
            ps = _design_params(exp, design, variant, point)
            for fault, comp in noise.faults:
                cell = Cell(design, fault, ps, exp.cluster_spec(), point, exp.horizon, label=label)
                pairs.append((cell, comp))
            cells = tuple(c for c, _ in pairs)
            comps = tuple(c for _, c in pairs)
            points.append(Point(label, point, cells, comps, i, tuple(noise.notes)))
    return points


def grid_size(points: list[Point]) -> int:
    """Cells of the full grid: what evaluating every point would run per trial count."""
    return sum(len(p.cells) for p in points)
