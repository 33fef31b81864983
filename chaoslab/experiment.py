"""Experiment files: YAML -> validated model -> cells the runner and the drills execute.

This is the only module that reads experiment files (the lab and the Kubernetes drill get
theirs from here) and the only one that knows YAML and the file schema. Every error names
the file, the line and the key (``experiments/x.yaml:12: params.lb.intreval: unknown
parameter 'lb.intreval' (did you mean lb.interval?)``), and a file with several errors gets
one such line for each.

Shape (JSON Schema in ``experiments/schema.json``, written by ``chaoslab schema``)::

    title: Node crash under NodePort designs
    description: What an outside client sees when a controller node dies.
    profile: k8s-1.32                      # or a list, one per family
    cluster:
      nodes: {master: 3, controller: 3, compute: 2}
      app: {kind: Deployment, replicas: 3, spread: controller}
    designs: [nodeport-lb, nodeport-lb-local]
    faults:
      - {kind: node-crash, target: app-pod-node, repair: 10m}
      - kind: pod-kill
        target: app-pod
        params: {client.timeout: 500ms}      # this fault's own parameter values
        lab: {method: pod-kill}              # how the lab injects it (live/lab/spec.py)
        live: {method: pod, image: ..., arm: 5s}   # how a cluster drill does (live/k8s/spec.py)
    params:
      kube_controller_manager.node_monitor_grace_period: 40s
    sweep:
      lb.interval: [1s, 2s, 5s]
    client: {timeout: 5s}
    probe: {rate: 100, probers: 3, bin: 50ms}    # the prober of lab and cluster drills
    trials: 1000
    seed: 7
    horizon: 30m
    lab: {...}       # the lab's environment (chaoslab lab drill)
    live: {...}      # the cluster's environment (chaoslab drill)

A fault is written once: the prediction simulates it, and a drill injects it as its
``lab:`` / ``live:`` key says. Files of the first layout (faults listed again under
``lab.faults`` or ``live.fault``, tied by ``predict:``; the prober inside ``lab:`` or
``live:``) are refused with a line saying how to move each key.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chaoslab.advise.spec import AdviseSpec
from chaoslab.designs import DESIGNS, ImpossibleTarget
from chaoslab.errors import UserError, located
from chaoslab.expect import Expectation, ExpectError, parse_expectation
from chaoslab.faults import FAULTS, Fault, ImpossibleFault
from chaoslab.live.fields import Duration
from chaoslab.live.k8s.spec import FAULT_KINDS, LiveFaultKey, LiveSection, LiveSpec
from chaoslab.live.lab.spec import LabFault, LabFaultKey, LabSpec, lab_fault
from chaoslab.live.probe import Target
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import (
    ParamSet,
    ParseError,
    ProfileConflict,
    UnknownParameter,
    UnknownProfile,
    lookup,
    parse_duration,
    profile,
)
from chaoslab.params.dists import Dist
from chaoslab.runner import Cell, sweep_value

__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentFile",
    "ProbeModel",
    "load_experiment",
    "parse_set_option",
    "validate_files",
    "write_schema",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "experiments" / "schema.json"

Loc = tuple[Any, ...]


class ExperimentError(UserError):
    """Bad input: one located line ``file:line: key: message`` per problem found."""

    def __init__(self, *lines: str) -> None:
        super().__init__(*lines)
        self.lines = list(lines)

    @classmethod
    def at(cls, path: str, line: int | None, key: str, message: str) -> ExperimentError:
        return cls(located(path, line, key, message))

    def __str__(self) -> str:
        return "\n".join(self.lines)


# --------------------------------------------------------------------------- file shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeCounts(_Strict):
    master: int = Field(3, ge=0, strict=True, description="control-plane nodes (never targets)")
    controller: int = Field(
        3, ge=0, strict=True, description="nodes labelled for the app (the article's)"
    )
    compute: int = Field(2, ge=0, strict=True, description="other worker nodes")


class AppSpec(_Strict):
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    replicas: int = Field(3, ge=1, strict=True)
    spread: Literal["controller", "compute", "worker", "any"] = Field(
        "controller", description="node roles the app's pods may run on"
    )
    anti_affinity: Literal["preferred", "required", "none"] = "preferred"


class ClusterModel(_Strict):
    nodes: NodeCounts = NodeCounts()
    app: AppSpec = AppSpec()
    zones: int = Field(
        1, ge=1, strict=True, description="nodes are spread round-robin over this many zones"
    )


class FaultModel(BaseModel):
    """A fault: kind, target and the kind's options (see ``chaoslab faults``), and how the
    lab (``lab:``) and a cluster drill (``live:``) inject it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str
    target: str | list[str] | None = None
    designs: list[str] | None = Field(
        None, description="apply this fault only to these designs (default: all)"
    )
    name: str | None = Field(
        None,
        description="name in result tables (default: the kind and its options, "
        "e.g. daemon-kill/keepalived-term)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="catalogue key -> value for this fault only (e.g. client.timeout)",
    )
    lab: LabFaultKey | None = Field(None, description="how the lab injects this fault")
    live: LiveFaultKey | None = Field(None, description="how a cluster drill injects it")


class DesignVariant(_Strict):
    """A design with its own profile or parameters, e.g. BGP with BFD beside BGP without."""

    design: str
    label: str | None = Field(
        None, description="name in result tables (default: design, then its profile/params)"
    )
    profile: str | list[str] | None = Field(
        None, description="profiles replacing the experiment's ones of the same family"
    )
    params: dict[str, Any] = Field(default_factory=dict)


class ProbeModel(_Strict):
    """The prober of every drill: ``probers`` new-connection probers at ``rate`` probes/s
    each (phase-shifted), ``long`` long-lived connections, a(t) estimated in ``bin``
    bins. Its timeout is the ``client.timeout`` parameter, as in the prediction."""

    rate: float = Field(gt=0, le=1000, description="new-connection probes/s per prober")
    probers: int = Field(ge=1, le=16)
    long: int = Field(0, ge=0, le=64, description="long-lived connections")
    long_interval: Duration | None = None
    bin: Duration = Field(description="probe bin width for a(t)")

    @model_validator(mode="after")
    def _long(self) -> ProbeModel:
        if self.long and not self.long_interval:
            raise ValueError("long_interval is needed when long > 0")
        return self


class ExpectModel(_Strict):
    """An expectation with the cells it applies to (``chaoslab.expect``)."""

    check: str = Field(description="METRIC OP VALUE, e.g. recovery_p95 < 30s or coverage >= 0.8")
    design: str | list[str] | None = Field(None, description="only these designs (labels or keys)")
    fault: str | list[str] | None = Field(None, description="only these faults (names or kinds)")
    target: str | list[str] | None = Field(None, description="only these fault targets")
    metric: str | list[str] | None = Field(
        None, description="compare: only these compared metrics (recovery_s, lost_s, ...)"
    )
    sweep: dict[str, Any] | None = Field(
        None,
        description="only these sweep points: a swept key (or 'profile') -> a value of its "
        "sweep, or a list of them, e.g. {profile: k8s-1.32}",
    )


class Limits(_Strict):
    """How large an experiment may be: past these it is refused as a likely typo (a
    trillion trials), not left to run out of memory. Raise them here when you mean it."""

    trials: int = Field(100_000, ge=1, strict=True, description="trials per cell")
    cells: int = Field(10_000, ge=1, strict=True, description="designs x faults x sweep points")
    nodes: int = Field(1_000, ge=1, strict=True, description="nodes of the cluster")


class ExperimentFile(_Strict):
    title: str
    description: str = ""
    profile: str | list[str] | None = Field(
        None, description="profiles, at most one per family (k8s, lb, vrrp, bgp, ...)"
    )
    cluster: ClusterModel = ClusterModel()
    designs: list[str | DesignVariant] = Field(
        min_length=1,
        description="design keys, or {design, label, profile, params} for a variant",
    )
    faults: list[FaultModel] = Field(
        min_length=1,
        description="fault kinds (default target), or {kind, target, ...} mappings",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="catalogue key -> value (`chaoslab params`)"
    )
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="catalogue key (or 'profile') -> values; the grid of all combinations",
    )
    client: dict[str, Any] = Field(
        default_factory=dict, description="client.* parameters without the prefix, e.g. timeout"
    )
    probe: ProbeModel | None = Field(None, description="the prober of lab and cluster drills")
    trials: int = Field(
        1000, ge=1, strict=True, description="simulated trials per cell (and per drill fault)"
    )
    seed: int = Field(0, ge=0, strict=True)
    horizon: str | float = Field("30m", description="how long after the fault a trial runs")
    lab: LabSpec | None = Field(
        None, description="the local lab of real daemons (chaoslab lab up|drill|down)"
    )
    live: LiveSection | None = Field(None, description="a drill on a real cluster (chaoslab drill)")
    advise: AdviseSpec | None = Field(None, description="what chaoslab advise weighs")
    expect: list[str | ExpectModel] = Field(
        default_factory=list,
        description="gates checked by run, compare and drill (exit 1 on a breach): "
        "'recovery_p95 < 30s', or {check, design, fault, target, metric}",
    )
    limits: Limits = Limits()

    @field_validator("faults", mode="before")
    @classmethod
    def _fault_names(cls, value: Any) -> Any:
        """``faults: [node-crash]``: a bare kind is the fault with its default target."""
        if isinstance(value, list):
            return [{"kind": f} if isinstance(f, str) else f for f in value]
        return value


# --------------------------------------------------------------------------- YAML with lines


#: bounds on what a file may make the loader do (an experiment file is a few KB)
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # YAML nodes after aliases are expanded (a billion laughs is 10^9)
MAX_DEPTH = 64


class _YamlRefused(Exception):
    """A YAML document refused before it is built: (line, message)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _compose(text: str) -> tuple[Any, dict[Loc, int]]:
    """The document and the line of every mapping key and sequence item (by its path),
    from one parse: aliases may not expand beyond MAX_NODES nodes nor refer to
    themselves, nesting stops at MAX_DEPTH, and a key may appear once per mapping."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise _YamlRefused(None, f"nested deeper than {MAX_DEPTH} levels") from None
        if root is None:
            return None, {}
        lines: dict[Loc, int] = {}
        _walk(root, (), lines, [0], set())
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


def _walk(
    node: yaml.Node, path: Loc, lines: dict[Loc, int], count: list[int], up: set[int]
) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _YamlRefused(None, f"the document expands to more than {MAX_NODES} nodes (aliases?)")
    if len(path) > MAX_DEPTH:
        raise _YamlRefused(node.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
    if id(node) in up:
        raise _YamlRefused(node.start_mark.line + 1, "an alias refers to a node that contains it")
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        up.add(id(node))
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else f"<{k.tag}>"
            line = k.start_mark.line + 1
            if key in seen and key != "<<":
                raise _YamlRefused(
                    line, f"key {key!r} is given twice (lines {seen[key]} and {line})"
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(v, (*path, key), lines, count, up)
        up.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        up.add(id(node))
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, count, up)
        up.discard(id(node))


def _key_text(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Experiment:
    """A validated experiment file with its source, ready to expand into cells."""

    path: str
    model: ExperimentFile
    text: str
    lines: dict[Loc, int]

    # ------------------------------------------------------------------ errors
    def line(self, *loc: Any) -> int | None:
        loc_t = tuple(loc)
        while loc_t and loc_t not in self.lines:
            loc_t = loc_t[:-1]
        return self.lines.get(loc_t)

    def located(self, loc: Sequence[Any], message: str) -> str:
        return located(self.path, self.line(*loc), _key_text(loc), message)

    def error(self, loc: Sequence[Any], message: str) -> ExperimentError:
        return ExperimentError(self.located(loc, message))

    # ------------------------------------------------------------------ pieces
    @property
    def profiles(self) -> list[str]:
        p = self.model.profile
        return [p] if isinstance(p, str) else list(p or [])

    def profiles_for(
        self, point: Mapping[str, Any], variant: DesignVariant | None = None
    ) -> list[str]:
        """The file's profiles, then a variant's, then a swept ``profile``; a later one
        replaces the earlier ones of its family."""
        names = list(self.profiles)
        layers: list[object] = [variant.profile if variant else None, point.get("profile")]
        for layer in layers:
            if layer is None:
                continue
            new = [layer] if isinstance(layer, str) else list(layer)  # type: ignore[call-overload]
            families = {profile(n).family for n in new}
            names = [n for n in names if profile(n).family not in families] + new
        return names

    def design_entries(self) -> list[tuple[str, str, DesignVariant | None]]:
        """(label, design key, variant) for every entry of ``designs:``."""
        out: list[tuple[str, str, DesignVariant | None]] = []
        for entry in self.model.designs:
            if isinstance(entry, str):
                out.append((entry, entry, None))
            else:
                out.append((entry.label or _variant_label(entry), entry.design, entry))
        return out

    @property
    def horizon(self) -> float:
        return parse_duration(self.model.horizon)

    def cluster_spec(self) -> ClusterSpec:
        c = self.model.cluster
        return ClusterSpec(
            masters=c.nodes.master,
            controllers=c.nodes.controller,
            computes=c.nodes.compute,
            app_kind=c.app.kind,
            replicas=c.app.replicas,
            spread=c.app.spread,
            anti_affinity=c.app.anti_affinity,
            zones=c.zones,
        )

    def overrides(self) -> dict[str, Any]:
        out = dict(self.model.params)
        for k, v in self.model.client.items():
            out[f"client.{k}"] = v
        return out

    def fault_overrides(self, i: int) -> dict[str, Any]:
        """The experiment's parameter values with fault ``i``'s own ``params:`` on top."""
        return {**self.overrides(), **self.model.faults[i].params}

    def faults(self) -> list[Fault]:
        out = []
        for f in self.model.faults:
            extra = dict(f.model_extra or {})
            target: str | tuple[str, ...] = (
                tuple(f.target) if isinstance(f.target, list) else (f.target or "")
            )
            out.append(Fault(f.kind, target, extra, name=f.name or ""))
        return out

    def model_fault(self, i: int) -> dict[str, Any]:
        """Fault ``i`` as a mapping (``chaoslab.simulate`` takes it)."""
        f = self.faults()[i]
        return {"kind": f.kind, "target": f.label, **dict(f.options)}

    def sweep_points(self) -> list[dict[str, Any]]:
        sweep = self.model.sweep
        keys = list(sweep)
        return [dict(zip(keys, c, strict=True)) for c in itertools.product(*sweep.values())]

    def _applies(self, fm: FaultModel, label: str, key: str) -> bool:
        return fm.designs is None or label in fm.designs or key in fm.designs

    def cells(self, extra_overrides: Mapping[str, Any] | None = None) -> list[Cell]:
        """design x fault x sweep point, each with its resolved ParamSet."""
        base = self.overrides()
        base.update(extra_overrides or {})
        spec = self.cluster_spec()
        out = []
        for point in self.sweep_points():
            swept = {k: v for k, v in point.items() if k != "profile"}
            for label, key, variant in self.design_entries():
                own = dict(variant.params) if variant else {}
                profiles = DESIGNS[key].profiles(self.profiles_for(point, variant))
                ps = ParamSet.resolve(profiles, {**base, **own, **swept})
                for fm, fault in zip(self.model.faults, self.faults(), strict=True):
                    if not self._applies(fm, label, key):
                        continue
                    fps = ps
                    if fm.params:  # this fault's own values, under the swept ones
                        fps = ParamSet.resolve(profiles, {**base, **own, **fm.params, **swept})
                    out.append(Cell(key, fault, fps, spec, point, self.horizon, label=label))
        return out

    def slug(self) -> str:
        stem = Path(self.path).stem if self.path != "<string>" else self.model.title
        return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "experiment"

    # ------------------------------------------------------------------ drills
    def lab_faults(self) -> list[LabFault]:
        """Every fault as the lab injects it, with its own client timeout when it has one."""
        out = []
        for fm, fault in zip(self.model.faults, self.faults(), strict=True):
            lf = lab_fault(fm.kind, fault.label, fault.options, fm.lab, fault.result_name)
            raw = fm.params.get("client.timeout")
            if raw is not None:
                lf = dataclasses.replace(lf, client_timeout=parse_duration(str(raw)))
            out.append(lf)
        return out

    def probe_timeout(self, i: int) -> float:
        """Fault ``i``'s client timeout: what a probe waits, what a(t) is defined by."""
        ps = ParamSet.resolve(self.profiles, self.fault_overrides(i))
        value = ps.values["client.timeout"]
        lo, hi = value.bounds() if isinstance(value, Dist) else (math.nan, math.nan)
        if lo != hi or not math.isfinite(lo):
            raise self.error(("client", "timeout"), "a drill's prober needs one timeout value")
        return float(lo)

    @property
    def raw(self) -> dict[str, Any]:
        """The file as YAML data (durations still as written, with their units)."""
        data = _compose(self.text)[0] if self.text else {}
        return data if isinstance(data, dict) else {}

    def live_data(self, i: int) -> dict[str, Any]:
        """What `LiveSpec` is built from for fault ``i``: the ``live:`` section as written,
        the fault's ``live:`` key (target and duration default to the fault's own, with its
        ``with:`` and ``with_delay:``), the
        top-level ``probe:`` with ``client.timeout``, the experiment's trials and seed."""
        m, raw = self.model, self.raw
        fm, fraw = m.faults[i], _fault_raw(raw["faults"][i])
        if m.live is None or m.probe is None or fm.live is None:
            missing = "live:" if m.live is None else "probe:" if m.probe is None else "its live:"
            raise self.error(("faults", i), f"a cluster drill of this fault needs {missing}")
        key = dict(fraw.get("live") or {})
        target = fm.target if isinstance(fm.target, str) else None
        key.setdefault("target", {"select": target or FAULTS[fm.kind].default_target})
        if "duration" in fraw:
            key.setdefault("duration", fraw["duration"])
        fault = {"kind": fm.kind, **key}
        # the second effect of a composite: the drill injects it by with_hook, so
        # `chaoslab validate` must see it to refuse what the drill would
        opts = self.faults()[i].options
        for opt in ("with", "with_delay"):
            if opt in opts:
                fault.setdefault(opt, str(opts[opt]))
        return {
            **raw["live"],
            "fault": fault,
            "probe": {**raw["probe"], "timeout": f"{self.probe_timeout(i)}s"},
            "predict_trials": m.trials,
            "seed": m.seed,
        }

    def live_spec(self, i: int) -> LiveSpec:
        """The Kubernetes drill of fault ``i`` (ExperimentError, located, when the fault's
        ``live:`` key does not fit its kind)."""
        try:
            return LiveSpec.model_validate(self.live_data(i))
        except ValidationError as e:
            err = e.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            loc = tuple(err["loc"])
            where = ("faults", i, "live", *loc[2:]) if loc[:1] == ("fault",) else ("faults", i)
            raise self.error(where, msg) from None

    # ------------------------------------------------------------------ checks
    def validate(self, extra_overrides: Mapping[str, Any] | None = None) -> None:
        """Semantic checks beyond the file shape; raises one ExperimentError listing every
        problem found (checks that need a sound file run once the basics are sound)."""
        found = list(self._size_problems())
        if not found:
            found = list(self._basic_problems(extra_overrides))
        if not found:
            found = list(self._cell_problems(extra_overrides))
        if not found:
            found = list(self._drill_problems())
        if found:
            found.sort(key=lambda p: self.line(*p[0]) or 0)  # in file order
            raise ExperimentError(*[self._where(loc, msg) for loc, msg in found])

    def _where(self, loc: Loc, message: str) -> str:
        if loc[:1] == ("--set",):  # a command-line value, not a line of the file
            return located("--set", None, str(loc[1]), message)
        return self.located(loc, message)

    def _size_problems(self) -> Iterator[tuple[Loc, str]]:
        m, lim = self.model, self.model.limits
        hint = "raise limits.{} if you mean it"
        if m.trials > lim.trials:
            yield (
                ("trials",),
                f"{m.trials} trials per cell, over {lim.trials}; " + hint.format("trials"),
            )
        n = m.cluster.nodes
        if n.master + n.controller + n.compute > lim.nodes:
            total = n.master + n.controller + n.compute
            yield ("cluster", "nodes"), f"{total} nodes, over {lim.nodes}; " + hint.format("nodes")
        cells = len(m.designs) * len(m.faults) * math.prod(len(v) for v in m.sweep.values())
        if cells > lim.cells:
            where: Loc = ("sweep",) if m.sweep else ("designs",)
            yield where, f"{cells} cells, over {lim.cells}; " + hint.format("cells")

    def _basic_problems(self, extra: Mapping[str, Any] | None) -> Iterator[tuple[Loc, str]]:
        yield from self._profile_problems()
        m = self.model
        for section, mapping in (("params", m.params), ("client", m.client)):
            for key, raw in mapping.items():
                full = key if section == "params" else f"client.{key}"
                yield from _param_problem((section, key), full, raw)
        yield from self._sweep_problems()
        for key, raw in (extra or {}).items():
            for _, msg in _param_problem((), key, raw):
                yield ("--set", key), msg
            yield from self._shadowed_set(key)
        yield from self._horizon_problems()
        yield from self._design_problems()
        yield from self._fault_problems()
        yield from self._cluster_problems()
        yield from self._expect_problems()

    def _profile_problems(self) -> Iterator[tuple[Loc, str]]:
        listed = isinstance(self.model.profile, list)
        for i, name in enumerate(self.profiles):
            yield from _profile_problem(("profile", i) if listed else ("profile",), name)
        if all(not list(_profile_problem((), n)) for n in self.profiles):
            try:
                ParamSet.resolve(self.profiles)
            except ProfileConflict as e:
                yield ("profile",), str(e)

    def _sweep_problems(self) -> Iterator[tuple[Loc, str]]:
        for key, values in self.model.sweep.items():
            if not values:
                yield ("sweep", key), "a swept key needs at least one value"
                continue
            if key != "profile":
                try:
                    lookup(key)
                except UnknownParameter as e:  # once for the key, not for each value
                    yield ("sweep", key), str(e)
                    continue
            for j, raw in enumerate(values):
                if key != "profile":
                    yield from _param_problem(("sweep", key, j), key, raw)
                    continue
                names = [raw] if isinstance(raw, str) else list(raw)
                bad = [p for n in names for p in _profile_problem(("sweep", key, j), n)]
                yield from bad
                if not bad:
                    try:
                        ParamSet.resolve(self.profiles_for({"profile": raw}))
                    except (ProfileConflict, UnknownProfile) as e:
                        yield ("sweep", key, j), str(e)

    def _shadowed_set(self, key: str) -> Iterator[tuple[Loc, str]]:
        """A ``--set`` the file would override in some cells: refused, so that no run
        records a value it did not use (a sweep, a variant's or a fault's own params)."""
        m = self.model
        if key in m.sweep:
            yield (
                ("sweep", key),
                f"--set {key} cannot change a swept key (the sweep sets it in every cell); "
                "edit the sweep: in the file instead",
            )
        for i, entry in enumerate(m.designs):
            if isinstance(entry, DesignVariant) and key in entry.params:
                yield (
                    ("designs", i, "params", key),
                    f"--set {key} would not apply to this design, which sets its own value; "
                    "edit it here instead",
                )
        for i, fm in enumerate(m.faults):
            if key in fm.params:
                yield (
                    ("faults", i, "params", key),
                    f"--set {key} would not apply to this fault, which sets its own value; "
                    "edit it here instead",
                )

    def _expect_problems(self) -> Iterator[tuple[Loc, str]]:
        entries = self.design_entries()
        designs = {label for label, _, _ in entries} | {key for _, key, _ in entries}
        faults = self.faults()
        fault_names = {f.result_name for f in faults} | {f.kind for f in faults}
        for i, entry in enumerate(self.model.expect):
            where: Loc = ("expect", i) if isinstance(entry, str) else ("expect", i, "check")
            try:
                self._expectation(entry)
            except ExpectError as e:
                yield where, str(e)
                continue
            if isinstance(entry, str):
                continue
            yield from self._expect_sweep_problems(i, entry)
            for key, known in (("design", designs), ("fault", fault_names)):
                raw = getattr(entry, key)
                names = [raw] if isinstance(raw, str) else list(raw or [])
                for name in names:
                    if name not in known:
                        yield (
                            ("expect", i, key),
                            f"{name!r} is not among the experiment's {key}s "
                            f"({', '.join(sorted(known))})",
                        )

    def _expect_sweep_problems(self, i: int, entry: ExpectModel) -> Iterator[tuple[Loc, str]]:
        """An expectation's sweep: names swept keys, each with values of its sweep."""
        swept = self.model.sweep
        for key, raw in (entry.sweep or {}).items():
            where: Loc = ("expect", i, "sweep", key)
            if key not in swept:
                known = ", ".join(swept) or "nothing is swept"
                yield where, f"{key!r} is not a swept key of this experiment ({known})"
                continue
            try:
                values = set(self._sweep_values(key, swept[key]))
                for given in raw if isinstance(raw, list) else [raw]:
                    if self._sweep_values(key, [given])[0] not in values:
                        shown = ", ".join(map(str, swept[key]))
                        yield where, f"{given!r} is not a value of the sweep of {key} ({shown})"
            except (ParseError, UserError, TypeError, ValueError) as e:
                yield where, str(e)

    @staticmethod
    def _sweep_values(key: str, raws: Sequence[Any]) -> list[object]:
        """Sweep values as the cells' columns hold them (the runner's own conversion)."""
        return [sweep_value(key, raw) for raw in raws]

    def _expectation(self, entry: str | ExpectModel) -> Expectation:
        if isinstance(entry, str):
            return parse_expectation(entry)
        designs = [entry.design] if isinstance(entry.design, str) else list(entry.design or [])
        labels = [
            label for label, key, _ in self.design_entries() if label in designs or key in designs
        ]
        return parse_expectation(
            entry.check,
            design=labels or designs or None,
            fault=entry.fault,
            target=entry.target,
            metric=entry.metric,
            point=self._expect_points(entry),
        )

    def _expect_points(self, entry: ExpectModel) -> dict[str, list[object]]:
        out: dict[str, list[object]] = {}
        for key, raw in (entry.sweep or {}).items():
            try:
                out[key] = self._sweep_values(key, raw if isinstance(raw, list) else [raw])
            except (ParseError, UserError, TypeError, ValueError):
                out[key] = [raw]  # validate() says what is wrong with it
        return out

    def expectations(self, scope: str | None = None) -> list[Expectation]:
        """The file's ``expect:`` entries (``scope``: only ``run`` or ``compare`` ones)."""
        out = [self._expectation(e) for e in self.model.expect]
        return [e for e in out if scope is None or e.scope == scope]

    def _horizon_problems(self) -> Iterator[tuple[Loc, str]]:
        raw = self.model.horizon
        if isinstance(raw, float) and not math.isfinite(raw):
            yield ("horizon",), "the horizon must be a finite time, e.g. 30m"
            return
        try:
            horizon = parse_duration(raw)
        except ParseError as e:
            yield ("horizon",), str(e)
            return
        if not 0 < horizon < math.inf:
            yield ("horizon",), f"the horizon must be a positive time, got {raw}"

    def _design_problems(self) -> Iterator[tuple[Loc, str]]:
        labels: set[str] = set()
        for i, (label, name, variant) in enumerate(self.design_entries()):
            loc: Loc = ("designs", i) if variant is None else ("designs", i, "design")
            if name not in DESIGNS:
                near = difflib.get_close_matches(name, DESIGNS, n=2)
                hint = f" (did you mean {' or '.join(near)}?)" if near else ""
                yield loc, f"unknown design {name!r}{hint}; known: {', '.join(DESIGNS)}"
            if label in labels:
                yield ("designs", i), f"two designs are named {label!r}; give one a label"
            labels.add(label)
            if variant is None:
                continue
            for key, raw in variant.params.items():
                yield from _param_problem(("designs", i, "params", key), key, raw)
            vp = variant.profile
            listed = not isinstance(vp, str)
            for j, pname in enumerate([vp] if isinstance(vp, str) else list(vp or [])):
                where = ("designs", i, "profile", j) if listed else ("designs", i, "profile")
                yield from _profile_problem(where, pname)

    def _fault_problems(self) -> Iterator[tuple[Loc, str]]:
        entries = self.design_entries()
        names = {label for label, _, _ in entries} | {key for _, key, _ in entries}
        for i, f in enumerate(self.model.faults):
            if f.kind not in FAULTS:
                near = difflib.get_close_matches(f.kind, FAULTS, n=2)
                hint = f" (did you mean {' or '.join(near)}?)" if near else ""
                yield (
                    ("faults", i, "kind"),
                    f"unknown fault {f.kind!r}{hint}; known: {', '.join(FAULTS)}",
                )
                continue
            kind = FAULTS[f.kind]
            for opt, raw in (f.model_extra or {}).items():
                if opt not in kind.options:
                    known = ", ".join(kind.options) or "none"
                    yield ("faults", i, opt), f"{f.kind} has no option {opt!r} (options: {known})"
                    continue
                yield from _param_problem(("faults", i, opt), kind.options[opt], raw)
            for key, raw in f.params.items():
                yield from _param_problem(("faults", i, "params", key), key, raw)
            for j, name in enumerate(f.designs or []):
                if name not in names:
                    yield (
                        ("faults", i, "designs", j),
                        f"{name!r} is not among the experiment's designs ({', '.join(names)})",
                    )

    def _cluster_problems(self) -> Iterator[tuple[Loc, str]]:
        from chaoslab.designs.base import initial_app_nodes

        spec = self.cluster_spec()
        try:
            if not initial_app_nodes(spec):
                yield ("cluster",), f"no node of role {'/'.join(spec.app_roles())} for the app"
        except ValueError as e:
            yield ("cluster",), str(e)

    def _cell_problems(self, extra: Mapping[str, Any] | None) -> Iterator[tuple[Loc, str]]:
        """Every design x fault pair the file asks for must be possible, and named once."""
        m, spec, faults = self.model, self.cluster_spec(), self.faults()
        for label, design, variant in self.design_entries():
            own = dict(variant.params) if variant else {}
            vps = ParamSet.resolve(
                DESIGNS[design].profiles(self.profiles_for({}, variant)),
                {**self.overrides(), **own, **(extra or {})},
            )
            seen: dict[tuple[str, str], int] = {}
            for i, fault in enumerate(faults):
                if not self._applies(m.faults[i], label, design):
                    continue
                row = (fault.result_name, fault.label)
                if row in seen:
                    yield (
                        ("faults", i),
                        f"faults {seen[row]} and {i} are both {row[0]} on {row[1]} for "
                        f"{label}; give one a name:",
                    )
                seen[row] = i
                try:
                    Cell(design, fault, vps, spec, {}, self.horizon, label=label).check()
                except (ImpossibleTarget, ImpossibleFault, ValueError) as e:
                    loc = ("faults", i, "target") if m.faults[i].target else ("faults", i)
                    yield loc, f"{label} x {fault.kind}: {e}"

    def _drill_problems(self) -> Iterator[tuple[Loc, str]]:
        m = self.model
        if (m.lab or m.live) and m.probe is None:
            yield (), "a lab: or live: drill needs a probe: section (rate, probers, bin)"
        if m.lab is not None:
            yield from self._lab_problems(m.lab)
        if m.live is not None and m.probe is not None:
            yield from self._live_problems(m.live)

    def _lab_problems(self, lab: LabSpec) -> Iterator[tuple[Loc, str]]:
        if lab.design not in {key for _, key, _ in self.design_entries()}:
            yield ("lab", "design"), f"{lab.design!r} is not among the experiment's designs"
        for i, (fm, fault) in enumerate(zip(self.model.faults, self.faults(), strict=True)):
            try:
                lab_fault(fm.kind, fault.label, fault.options, fm.lab, fault.result_name)
            except ValueError as e:
                yield ("faults", i, "lab") if fm.lab else ("faults", i), str(e)

    def _live_problems(self, live: LiveSection) -> Iterator[tuple[Loc, str]]:
        keys = [key for _, key, _ in self.design_entries()]
        design = live.design or (keys[0] if len(keys) == 1 else None)
        if design is None:
            yield (
                ("live",),
                "the experiment has several designs; say which one the cluster runs with "
                "live.design",
            )
        elif design not in keys:
            yield ("live", "design"), f"{design!r} is not among the experiment's designs"
        for j, url in enumerate(live.urls):
            try:
                Target.parse(url)
            except ValueError as e:
                yield ("live", "urls", j), str(e)
        for i, fm in enumerate(self.model.faults):
            if fm.kind not in FAULT_KINDS:
                yield ("faults", i, "kind"), f"a cluster drill cannot inject {fm.kind}"
            elif fm.live is None:
                yield ("faults", i), "a cluster drill needs live: {method: api | pod | hook}"
            else:
                try:
                    LiveSpec.model_validate(self.live_data(i))
                except ValidationError as e:
                    err = e.errors()[0]
                    loc = tuple(err["loc"])
                    tail = loc[2:] if loc[:1] == ("fault",) else ()
                    yield ("faults", i, "live", *tail), err["msg"].removeprefix("Value error, ")

    # ------------------------------------------------------------------ output
    def effective_yaml(self, extra_overrides: Mapping[str, Any] | None = None) -> str:
        """The experiment plus every parameter's effective value and source."""
        ps = ParamSet.resolve(self.profiles, {**self.overrides(), **(extra_overrides or {})})
        data = self.model.model_dump(mode="json", exclude_none=True)
        data["effective_params"] = {
            k: {"value": ps.text(k), "unit": lookup(k).unit, "source": ps.sources[k]}
            for k in sorted(ps.values)
        }
        if extra_overrides:
            data["command_line_overrides"] = {k: str(v) for k, v in extra_overrides.items()}
        data["profiles_applied"] = list(ps.profiles)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _param_problem(loc: Loc, key: str, raw: Any) -> Iterator[tuple[Loc, str]]:
    try:
        param = lookup(key)
        value = param.parse(raw)
    except (UnknownParameter, ParseError) as e:
        yield loc, str(e)
        return
    # a fault's own duration or repair may be never; a timer of the path may not
    never = key.startswith("fault.") or (
        isinstance(param.default, Dist) and math.isinf(param.default.bounds()[1])
    )
    if isinstance(value, Dist) and value.is_fixed and math.isinf(value.bounds()[0]) and not never:
        yield loc, f"{key} cannot be infinite (inf/never is for times that may never come)"


def _profile_problem(loc: Loc, name: str) -> Iterator[tuple[Loc, str]]:
    try:
        profile(name)
    except UnknownProfile as e:
        yield loc, str(e)


def _fault_raw(entry: Any) -> dict[str, Any]:
    """A ``faults:`` entry as written, the ``node-crash`` shorthand as its mapping."""
    return {"kind": entry} if isinstance(entry, str) else dict(entry)


def _variant_label(v: DesignVariant) -> str:
    """A readable default name for a design variant: design[profile,key=value]."""
    bits = [v.profile] if isinstance(v.profile, str) else list(v.profile or [])
    bits += [
        f"{k}={str(val).lower() if isinstance(val, bool) else val}" for k, val in v.params.items()
    ]
    return f"{v.design}[{','.join(bits)}]" if bits else v.design


# --------------------------------------------------------------------------- reading

#: keys of the first file layout -> how to write them now (docs/lab.md, "Experiment files")
_MOVED = {
    ("lab", "faults"): "list each fault once in the top-level faults:, with a lab: key "
    "saying how the lab injects it (e.g. lab: {method: link-down}); see docs/lab.md",
    ("lab", "probe"): "move it to a top-level probe: section (rate, probers, long, "
    "long_interval, and bin from lab.trial.bin)",
    ("lab", "predict_trials"): "the prediction uses the experiment's trials:; move it there",
    ("lab", "cluster"): "the prediction uses the experiment's cluster:; remove it",
    ("lab", "trial", "observe"): "a trial observes for the experiment's horizon:; remove it",
    ("lab", "trial", "bin"): "move it to probe.bin",
    ("live", "fault"): "move it into its entry of the top-level faults: as a live: key "
    "(method, target, hook, ...); see docs/live-kubernetes.md",
    ("live", "probe"): "move it to a top-level probe: section; its timeout is the "
    "client.timeout parameter (client: {timeout: ...})",
    ("live", "predict_trials"): "the prediction uses the experiment's trials:; move it there",
    ("live", "seed"): "the drill uses the experiment's seed:; move it there",
}


def _old_layout(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Keys of the first layout, each with how to migrate it."""
    out: list[tuple[Loc, str]] = []
    for loc, how in _MOVED.items():
        node: Any = data
        for part in loc:
            node = node.get(part) if isinstance(node, Mapping) and part in node else None
        if node is not None:
            out.append((loc, f"this file has the first layout: {how}"))
    faults = data.get("faults")
    for i, f in enumerate(faults if isinstance(faults, list) else []):
        if isinstance(f, Mapping) and "predict" in f:
            out.append(
                (("faults", i, "predict"), "predict: is gone: the fault is what is predicted")
            )
    return out


def _read_text(p: str) -> str:
    """The file's text, reading at most MAX_FILE_BYTES (+1, to tell a larger file)."""
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ExperimentError.at(p, None, "", "no such file") from None
    except OSError as e:
        raise ExperimentError.at(p, None, "", f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        raise ExperimentError.at(p, None, "", f"larger than {limit} MiB: not an experiment file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExperimentError.at(p, None, "", f"not UTF-8 text (byte {e.start})") from None


def _read(path: str | Path, text: str | None) -> tuple[str, Any, dict[Loc, int]]:
    p = str(path)
    text = _read_text(p) if text is None else text
    if len(text) > MAX_FILE_BYTES:
        raise ExperimentError.at(p, None, "", "larger than 4 MiB: not an experiment file")
    try:
        data, lines = _compose(text)
    except _YamlRefused as e:
        raise ExperimentError.at(p, e.line, "", f"refused YAML: {e.message}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ExperimentError.at(p, line, "", f"malformed YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as e:  # a scalar the constructor refuses
        raise ExperimentError.at(p, None, "", f"malformed YAML: {e}") from None
    if not isinstance(data, dict):
        raise ExperimentError.at(p, 1, "", "an experiment file is a YAML mapping (title:, ...)")
    return text, data, lines


def load_experiment(path: str | Path, text: str | None = None) -> Experiment:
    """Read the file and check its shape; `Experiment.validate` checks the meaning. Every
    problem of the file is reported, one located line each."""
    text, data, lines = _read(path, text)
    exp = Experiment(str(path), ExperimentFile.model_construct(), text, lines)  # type: ignore[call-arg]
    old = sorted(_old_layout(data), key=lambda p: exp.line(*p[0]) or 0)
    if old:
        raise ExperimentError(*[exp.located(loc, msg) for loc, msg in old])
    try:
        model = ExperimentFile.model_validate(data)
    except ValidationError as e:
        problems = _shape_problems(e, data)
        raise ExperimentError(*[exp.located(loc, msg) for loc, msg in problems]) from None
    return Experiment(str(path), model, text, lines)


def _shape_problems(e: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    """pydantic's errors as (location in the file, message), one per location: union
    branch tags are dropped, and a key reported missing next to a typo of it is left out."""
    out: dict[Loc, str] = {}
    typos: set[Loc] = set()
    for err in sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden"):
        loc = _data_loc(err["loc"], data, err["type"] == "missing")
        msg = re.sub(r" or instance of \w+", "", str(err["msg"]).removeprefix("Value error, "))
        if _other_branch(err["loc"], data):
            continue
        if loc[:1] == ("designs",) and len(loc) == 2 and err["type"] in _TYPE_ERRORS:
            msg = "a design is a name or a mapping {design: ..., label: ..., params: ...}"
        if err["type"] == "extra_forbidden":
            near, hint = _near_field(loc)
            if near:
                typos.add((*loc[:-1], near))
            msg = f"unknown key{hint}"
        elif err["type"] == "missing":
            if loc in typos:
                continue
            msg = "required key is missing"
        out.setdefault(loc, msg)
    return list(out.items())


_TYPE_ERRORS = {"string_type", "model_type", "dict_type"}


def _other_branch(loc: Sequence[Any], data: Any) -> bool:
    """An error of the union branch the value plainly is not: ``str`` for a mapping,
    a model for a string (pydantic reports every branch of ``str | DesignVariant``)."""
    node = data
    for part in loc:
        if (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif part == "str":
            return isinstance(node, Mapping)
        elif isinstance(part, str) and part[:1].isupper():
            return isinstance(node, str)
        else:
            return False
    return False


def _data_loc(loc: Sequence[Any], data: Any, missing: bool) -> Loc:
    """The error's path through the document, without pydantic's union-branch tags
    (``str``, ``DesignVariant``): a part that is not in the document is a tag, except the
    last part of a missing key, which names it."""
    out: list[Any] = []
    node = data
    for n, part in enumerate(loc):
        inside = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if inside:
            node = node[part]
            out.append(part)
        elif missing and n == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _model_of(ann: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _near_field(loc: Sequence[Any]) -> tuple[str | None, str]:
    """The field a misspelt key most likely means, and the hint that says so."""
    model: type[BaseModel] = ExperimentFile
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # a list index: stay on the item's model
        field = model.model_fields.get(part)
        inner = _model_of(field.annotation) if field else None
        if inner is None:
            return None, ""
        model = inner
    near = difflib.get_close_matches(str(loc[-1]), model.model_fields, n=1)
    if near:
        return near[0], f" (did you mean {near[0]}?)"
    return None, f"; known: {', '.join(model.model_fields)}"


def validate_files(paths: Sequence[str | Path]) -> list[str]:
    """Load and validate every file; every problem of every file, one located line each
    (empty: all files are good)."""
    out: list[str] = []
    for path in paths:
        try:
            exp = load_experiment(path)
            exp.validate()
        except ExperimentError as e:
            out += e.lines
    return out


def parse_set_option(items: Sequence[str]) -> dict[str, str]:
    """``--set key=value`` pairs -> mapping (values stay text; the catalogue parses them)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ExperimentError.at("--set", None, item, "expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# What the loader reads as a value (chaoslab/params/dists.py), as JSON Schema patterns
# (ECMA-262), so an editor flags a duration without a unit or a time unit on a count
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TIME = r"(?:ns|us|µs|ms|s|min|m|h)"
_DIST = r"[a-z]+\([^()]*\)"
_SECONDS_TERM = rf"(?:(?:{_NUM}\s*{_TIME})+|{_DIST}|inf|never|0)"
_NUMBER_TERM = rf"(?:{_NUM}|{_DIST}|inf|never)"


def _value_pattern(term: str) -> str:
    return rf"^\s*{term}(?:\s*\+\s*{term})*\s*$"


def _value_schemas() -> dict[str, Any]:
    """A value of each kind of parameter: seconds, plain numbers (counts, ratios, rates)."""
    seconds = {"type": "string", "pattern": _value_pattern(_SECONDS_TERM)}
    number = {"type": "string", "pattern": _value_pattern(_NUMBER_TERM)}
    one_s = {"anyOf": [{"const": 0}, seconds]}
    one_n = {"anyOf": [{"type": "number"}, number]}
    return {
        "Seconds": {
            "description": "a duration with its unit (40s, 1m30s), a distribution or a list",
            "anyOf": [*one_s["anyOf"], {"type": "array", "items": one_s, "minItems": 1}],
        },
        "Number": {
            "description": "a plain number (no time unit), a distribution or a list",
            "anyOf": [*one_n["anyOf"], {"type": "array", "items": one_n, "minItems": 1}],
        },
    }


_UNIT_WORDS = {"s": "seconds", "bool": "true or false", "choice": "one of the listed words"}


def _param_value(key: str) -> dict[str, Any]:
    from chaoslab.params import CATALOGUE

    p = CATALOGUE[key]
    # the unit, not the catalogue's prose: the file stays current while sources are reworded
    doc = {"description": _UNIT_WORDS.get(p.unit, p.unit)}
    if p.unit == "s":
        return {"$ref": "#/$defs/Seconds", **doc}
    if p.unit == "bool":  # as Param.parse reads a flag
        words = ["true", "false", "yes", "no", "on", "off"]
        return {"anyOf": [{"type": "boolean"}, {"enum": words}], **doc}
    if p.unit == "choice":
        return {"enum": list(p.choices), **doc}
    return {"$ref": "#/$defs/Number", **doc}


def _names() -> dict[str, Any]:
    """Design, fault and profile names and parameter keys as enums and closed objects."""
    from chaoslab.params import CATALOGUE, PROFILES

    keys = sorted(CATALOGUE)
    client = [k for k in keys if k.startswith("client.")]
    return {
        "DesignName": {"enum": list(DESIGNS)},
        "FaultKind": {"enum": list(FAULTS)},
        "ProfileName": {"enum": sorted(PROFILES)},
        "Profiles": {
            "anyOf": [
                {"$ref": "#/$defs/ProfileName"},
                {"type": "array", "items": {"$ref": "#/$defs/ProfileName"}},
                {"type": "null"},
            ]
        },
        "ParamKey": {"enum": keys},
        "Params": {
            "type": "object",
            "properties": {k: _param_value(k) for k in keys},
            "additionalProperties": False,
        },
        "ClientParams": {
            "type": "object",
            "properties": {k.removeprefix("client."): _param_value(k) for k in client},
            "additionalProperties": False,
        },
        "Sweep": {
            "type": "object",
            "properties": {
                "profile": {"type": "array", "items": {"$ref": "#/$defs/Profiles"}},
                **{k: {"type": "array", "items": _param_value(k)} for k in keys},
            },
            "additionalProperties": False,
        },
    }


_DURATION_CHECK = typing.get_args(Duration)[1]


def _says_duration(annotation: Any, metadata: Sequence[Any]) -> bool:
    """A field read as a duration (``Duration``, alone or ``| None``)."""
    if _DURATION_CHECK in metadata:
        return True
    args = typing.get_args(annotation)
    return any(_DURATION_CHECK in getattr(a, "__metadata__", ()) for a in args)


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model a schema's $defs can name, by class name."""
    found: dict[str, type[BaseModel]] = {}
    todo: list[Any] = [root]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t.__name__ in found:
                continue
            found[t.__name__] = t
            todo += [f.annotation for f in t.model_fields.values()]
        else:
            todo += list(typing.get_args(t))
    return found


def _durations_as_text(schema: dict[str, Any], root: type[BaseModel]) -> None:
    """Duration fields take "500ms" in a file; pydantic's schema says number."""
    sections = {root.__name__: schema, **schema["$defs"]}
    for name, model in _models(root).items():
        props = sections.get(name, {}).get("properties", {})
        for field, info in model.model_fields.items():
            key = info.alias or field
            if key not in props or not _says_duration(info.annotation, info.metadata):
                continue
            optional = type(None) in typing.get_args(info.annotation)
            ref: dict[str, Any] = {"$ref": "#/$defs/Seconds"}
            props[key] = _keep_doc(
                props[key], {"anyOf": [ref, {"type": "null"}]} if optional else ref
            )


def _keep_doc(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {**{k: old[k] for k in ("title", "description", "default") if k in old}, **new}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of experiment files, with the names an editor should check."""
    schema = ExperimentFile.model_json_schema()
    defs, props = schema["$defs"], schema["properties"]
    defs.update(_value_schemas())
    defs.update(_names())
    design_item = {"anyOf": [{"$ref": "#/$defs/DesignName"}, {"$ref": "#/$defs/DesignVariant"}]}
    fault_item = {"anyOf": [{"$ref": "#/$defs/FaultKind"}, {"$ref": "#/$defs/FaultModel"}]}
    props["designs"]["items"] = design_item
    props["faults"]["items"] = fault_item
    for name, ref in (("profile", "Profiles"), ("params", "Params"), ("client", "ClientParams")):
        props[name] = _keep_doc(props[name], {"$ref": f"#/$defs/{ref}"})
    props["sweep"] = _keep_doc(props["sweep"], {"$ref": "#/$defs/Sweep"})
    variant, fault = defs["DesignVariant"]["properties"], defs["FaultModel"]["properties"]
    variant["design"] = _keep_doc(variant["design"], {"$ref": "#/$defs/DesignName"})
    variant["profile"] = _keep_doc(variant["profile"], {"$ref": "#/$defs/Profiles"})
    variant["params"] = _keep_doc(variant["params"], {"$ref": "#/$defs/Params"})
    fault["kind"] = _keep_doc(fault["kind"], {"$ref": "#/$defs/FaultKind"})
    fault["params"] = _keep_doc(fault["params"], {"$ref": "#/$defs/Params"})
    _durations_as_text(schema, ExperimentFile)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://chaoslab.dev/schema/experiment.json"
    return schema


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    import json

    from chaoslab.results import atomic_write_text

    atomic_write_text(path, json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
    return path
