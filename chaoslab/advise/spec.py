"""The ``advise:`` section of an experiment file: its shape, and its meaning checked.

Shape (pydantic, embedded in `chaoslab.experiment.ExperimentFile`)::

    advise:
      designs: [nodeport-lb, ingress-vip-vrrp]        # labels of designs:; default all
      timers:                                         # per design label: key -> values
        nodeport-lb:
          lb.fall: [1, 2, 3]
          kube_controller_manager.node_monitor_grace_period: {from: 10s, to: 50s, steps: 3}
      rates: {node-crash: 0.2/node-year, pod-kill: 4/pod-year}   # by fault name or kind
      noise:                                          # default: the catalogue's noise set
        - {kind: network-blip, target: app-pod-node, rate: 52/node-year,
           duration: lognormal(median=1s, p95=20s)}
      constraints: {spurious_failovers: 1/cluster-year, connections_reset: 10/cluster-year}
      objective: lost                                 # or downtime
      search: {min_trials: 50, max_trials: 1600, eta: 3, tolerance: 0.1}

A rate is a number per exposure unit and period: ``0.2/node-year``, ``2/cluster-month``,
``4/pod-year`` (``0`` alone means never). Node rates multiply by the nodes the fault's
target stands for, pod rates by the app's replicas (`exposure`).

`problems` checks what pydantic cannot (units, catalogue keys, empty ranges, names) and
returns located problems like the experiment's own checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from chaoslab.params import ParseError, UnknownParameter, lookup, parse_duration
from chaoslab.params.rates import FAULT_RATE_KEYS, NOISE_KEYS, NOISE_SCOPE

__all__ = [
    "AdviseSpec",
    "Constraints",
    "NoiseSpec",
    "RateError",
    "SearchSpec",
    "TimerRange",
    "noise_name",
    "parse_rate",
    "problems",
    "timer_values",
]

Loc = tuple[Any, ...]
Scope = Literal["node", "pod", "cluster"]

_DAYS = {"year": 365.25, "month": 365.25 / 12, "week": 7.0, "day": 1.0}
_RATE = re.compile(
    r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/|per\s+)\s*(node|pod|cluster)-"
    r"(year|month|week|day)s?\s*$"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimerRange(_Strict):
    """``steps`` values from ``from`` to ``to``, evenly (or ``scale: log``) spaced."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    start: str | float = Field(alias="from")
    stop: str | float = Field(alias="to")
    steps: int = Field(ge=1, le=64, strict=True)
    scale: Literal["linear", "log"] = "linear"


class NoiseSpec(_Strict):
    """A transient disturbance that is not a failure: how often, how long, where."""

    kind: Literal["network-blip", "kubelet-stall", "apiserver-stall"]
    target: str = Field("app-pod-node", description="where it happens (a node target)")
    rate: str | float | None = Field(None, description="e.g. 52/node-year (catalogue default)")
    duration: str | float | None = Field(
        None, description="a duration or distribution (catalogue default)"
    )
    designs: list[str] | None = Field(None, description="only for these design labels")
    name: str | None = Field(None, description="name in result tables (noise/<kind>/<target>)")


class Constraints(_Strict):
    spurious_failovers: str | float | None = Field(
        None,
        description="most spurious detections per cluster-year, e.g. 1/cluster-year "
        "(default advise.max_spurious_failovers_per_cluster_year)",
    )
    connections_reset: str | float | None = Field(
        None,
        description="most resets of the established connections per cluster-year "
        "(a reset of all of them counts 1)",
    )


class SearchSpec(_Strict):
    """Successive halving: every point at ``min_trials`` per cell, then the best 1/eta at
    eta times the trials, until one point is left and its interval is tight (relative
    half-width <= tolerance) or ``max_trials`` is reached. Defaults: advise.search_*."""

    min_trials: int | None = Field(None, ge=1, strict=True)
    max_trials: int | None = Field(None, ge=1, strict=True)
    eta: int | None = Field(None, ge=2, le=10, strict=True)
    tolerance: float | None = Field(None, gt=0, lt=1)


class AdviseSpec(_Strict):
    """What ``chaoslab advise`` weighs: timers to try, how often failures and noise come,
    what the operator will not accept, and what to minimise."""

    designs: list[str] | None = Field(None, description="design labels (default: all)")
    timers: dict[str, dict[str, list[Any] | TimerRange]] = Field(
        default_factory=dict, description="design label -> catalogue key -> values or range"
    )
    rates: dict[str, str | float] = Field(
        default_factory=dict, description="fault name or kind -> rate, e.g. 0.2/node-year"
    )
    noise: list[NoiseSpec] | None = Field(
        None, description="transient disturbances (default: every noise kind, catalogue rates)"
    )
    constraints: Constraints = Constraints()
    objective: Literal["lost", "downtime"] = Field(
        "lost", description="lost: request-seconds lost (integral of 1 - a); downtime: a = 0"
    )
    search: SearchSpec = SearchSpec()


class RateError(ValueError):
    """A rate that is not ``N/<node|pod|cluster>-<year|month|week|day>``."""


def parse_rate(raw: object) -> tuple[float, Scope]:
    """``0.2/node-year`` -> (0.2, "node"), per year; ``0`` -> (0.0, "cluster")."""
    if isinstance(raw, bool):
        raise RateError(f"a rate is a number per node-, pod- or cluster-year, not {raw!r}")
    if isinstance(raw, int | float) or (isinstance(raw, str) and _is_zero(raw)):
        if float(raw) == 0:
            return 0.0, "cluster"
        raise RateError(
            f"{raw!r} has no unit: write it as {raw}/node-year, {raw}/pod-year or "
            f"{raw}/cluster-year"
        )
    m = _RATE.match(str(raw))
    if m is None:
        raise RateError(
            f"cannot read {raw!r} as a rate: write a number per node-, pod- or cluster- year, "
            "month, week or day, e.g. 0.5/node-year or 2/cluster-month"
        )
    value = float(m.group(1)) * 365.25 / _DAYS[m.group(3)]
    if not math.isfinite(value):
        raise RateError(f"{raw!r} is not a finite rate")
    return value, m.group(2)  # type: ignore[return-value]


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:
        return False


def timer_values(key: str, spec: list[Any] | TimerRange) -> list[Any]:
    """The values to try for ``key``, as written (a range expanded into seconds or counts)."""
    if isinstance(spec, list):
        return list(spec)
    param = lookup(key)
    unit = "s" if param.kind == "duration" else param.unit
    a, b = (parse_duration(v, unit=unit) for v in (spec.start, spec.stop))
    if spec.steps == 1:
        grid = np.array([a])
    elif spec.scale == "log":
        grid = np.geomspace(a, b, spec.steps)
    else:
        grid = np.linspace(a, b, spec.steps)
    if param.kind == "count":
        return sorted({round(float(v)) for v in grid})
    suffix = "s" if param.kind == "duration" else ""
    return [f"{float(f'{v:.4g}'):g}{suffix}" for v in grid]


# ----------------------------------------------------------------------------- meaning


def problems(
    spec: AdviseSpec,
    labels: Sequence[str],
    fault_names: Mapping[str, str],
    variant_params: Mapping[str, Mapping[str, Any]],
) -> Iterator[tuple[Loc, str]]:
    """Located problems of ``spec``: ``labels`` are the experiment's design labels,
    ``fault_names`` maps each fault's result name to its kind, ``variant_params`` a
    label's own params (a timer may not be one of them)."""
    base: Loc = ("advise",)
    known = ", ".join(labels)
    for i, label in enumerate(spec.designs or []):
        if label not in labels:
            yield (*base, "designs", i), f"{label!r} is not among the designs ({known})"
    for label, timers in spec.timers.items():
        if label not in labels:
            yield (*base, "timers", label), f"{label!r} is not among the designs ({known})"
            continue
        for key, values in timers.items():
            loc = (*base, "timers", label, key)
            if key in variant_params.get(label, {}):
                yield loc, f"{key} is fixed by the design's own params; drop one of them"
                continue
            yield from _timer_problems(loc, key, values)
    yield from _rate_problems(spec, fault_names)
    yield from _noise_problems(spec, labels)
    for field in ("spurious_failovers", "connections_reset"):
        raw = getattr(spec.constraints, field)
        if raw is not None:
            yield from _rate_problem((*base, "constraints", field), raw, cluster_only=True)
    s = spec.search
    if s.min_trials and s.max_trials and s.min_trials > s.max_trials:
        yield (*base, "search", "min_trials"), "min_trials is larger than max_trials"


def _timer_problems(
    loc: Loc, key: str, values: list[Any] | TimerRange
) -> Iterator[tuple[Loc, str]]:
    try:
        param = lookup(key)
    except UnknownParameter as e:
        yield loc, str(e)
        return
    if isinstance(values, list) and not values:
        yield loc, "an empty list of values: give at least one"
        return
    if isinstance(values, TimerRange):
        if param.kind not in ("duration", "count", "ratio", "rate"):
            yield loc, f"{key} is a {param.kind}: list its values instead of a range"
            return
        try:
            expanded = timer_values(key, values)
        except ParseError as e:
            yield loc, str(e)
            return
        a, b = (parse_duration(v, unit="s" if param.kind == "duration" else param.unit)
                for v in (values.start, values.stop))  # fmt: skip
        if a > b:
            yield loc, f"an empty range: from ({values.start}) is after to ({values.stop})"
            return
        if values.scale == "log" and a <= 0:
            yield loc, "a log range starts above 0"
            return
        values = expanded
    for j, raw in enumerate(values):
        try:
            param.parse(raw)
        except ParseError as e:
            yield (*loc, j), str(e)


def _rate_problems(spec: AdviseSpec, fault_names: Mapping[str, str]) -> Iterator[tuple[Loc, str]]:
    kinds = set(fault_names.values())
    names = ", ".join(sorted(set(fault_names) | kinds))
    for name, raw in spec.rates.items():
        loc: Loc = ("advise", "rates", name)
        if name not in fault_names and name not in kinds:
            yield loc, f"no fault is named {name!r} (faults: {names})"
            continue
        kind = fault_names.get(name, name)
        yield from _rate_problem(
            loc, raw, FAULT_RATE_KEYS[kind][1] if kind in FAULT_RATE_KEYS else None
        )


def _rate_problem(
    loc: Loc, raw: object, scope: str | None = None, *, cluster_only: bool = False
) -> Iterator[tuple[Loc, str]]:
    try:
        _, got = parse_rate(raw)
    except RateError as e:
        yield loc, str(e)
        return
    if cluster_only and got != "cluster":
        yield loc, f"a constraint is per cluster: write it per cluster-year, not per {got}-year"
    elif scope == "cluster" and got != "cluster":
        yield (
            loc,
            f"this noise hits the whole cluster: give its rate per cluster-year, "
            f"not per {got}-year",
        )
    elif scope == "node" and got == "pod":
        yield loc, "this fault hits a node: give its rate per node- or cluster-year"
    elif scope == "pod" and got == "node":
        yield loc, "this fault hits a pod: give its rate per pod- or cluster-year"


def _noise_problems(spec: AdviseSpec, labels: Sequence[str]) -> Iterator[tuple[Loc, str]]:
    names: set[str] = set()
    for i, n in enumerate(spec.noise or []):
        loc: Loc = ("advise", "noise", i)
        if n.rate is not None:
            yield from _rate_problem((*loc, "rate"), n.rate, NOISE_SCOPE[n.kind])
        if n.duration is not None:
            try:
                lookup(NOISE_KEYS[n.kind][1]).parse(n.duration)
            except ParseError as e:
                yield (*loc, "duration"), str(e)
        for j, label in enumerate(n.designs or []):
            if label not in labels:
                yield (*loc, "designs", j), f"{label!r} is not among the designs"
        name = noise_name(n)
        if name in names:
            yield loc, f"two noise entries are named {name!r}; give one a name:"
        names.add(name)


def noise_name(n: NoiseSpec) -> str:
    if n.name:
        return n.name
    if NOISE_SCOPE[n.kind] == "cluster":
        return f"noise/{n.kind}"  # it has no target: the whole control plane
    return f"noise/{n.kind}/{n.target}"
