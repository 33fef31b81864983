"""Experiment files: YAML -> validated model -> cells the runner can execute.

This is the only module that knows YAML and the file schema. Every error names the file,
the line and the key (``experiments/x.yaml:12: params.lb.intreval: unknown parameter
'lb.intreval' (did you mean lb.interval?)``).

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
      - {kind: pod-kill, target: app-pod}
    params:
      kube_controller_manager.node_monitor_grace_period: 40s
    sweep:
      lb.interval: [1s, 2s, 5s]
    client: {timeout: 5s}
    trials: 1000
    seed: 7
    horizon: 30m
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chaoslab.designs import DESIGNS, ImpossibleTarget
from chaoslab.faults import FAULTS, Fault, ImpossibleFault
from chaoslab.live.k8s.spec import LiveSpec
from chaoslab.live.lab.spec import LabSpec
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
from chaoslab.runner import Cell

__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentFile",
    "load_experiment",
    "parse_set_option",
    "write_schema",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "experiments" / "schema.json"


class ExperimentError(ValueError):
    """Bad input, located: ``file:line: key: message``."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# --------------------------------------------------------------------------- file shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeCounts(_Strict):
    master: int = Field(3, ge=0, description="control-plane nodes (never fault targets)")
    controller: int = Field(3, ge=0, description="nodes labelled for the app (the article's)")
    compute: int = Field(2, ge=0, description="other worker nodes")


class AppSpec(_Strict):
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    replicas: int = Field(3, ge=1)
    spread: Literal["controller", "compute", "worker", "any"] = Field(
        "controller", description="node roles the app's pods may run on"
    )
    anti_affinity: Literal["preferred", "required", "none"] = "preferred"


class ClusterModel(_Strict):
    nodes: NodeCounts = NodeCounts()
    app: AppSpec = AppSpec()
    zones: int = Field(1, ge=1, description="nodes are spread round-robin over this many zones")


class FaultModel(BaseModel):
    """A fault: kind, target and the kind's options (see ``chaoslab faults``)."""

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
    faults: list[FaultModel] = Field(min_length=1)
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
    trials: int = Field(1000, ge=1)
    seed: int = Field(0, ge=0)
    horizon: str | float = Field("30m", description="how long after the fault a trial runs")
    lab: LabSpec | None = Field(
        None, description="the local lab of real daemons (chaoslab lab up|drill|down)"
    )
    live: LiveSpec | None = Field(None, description="a drill on a real cluster (chaoslab drill)")

    @field_validator("sweep")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"sweep {k} has no values")
        return v


# --------------------------------------------------------------------------- YAML with lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key and sequence item."""


def _compose_lines(text: str) -> dict[tuple[Any, ...], int]:
    lines: dict[tuple[Any, ...], int] = {}
    root = yaml.compose(text, Loader=_LineLoader)

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                lines[(*path, key)] = k.start_mark.line + 1
                walk(v, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


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
    lines: dict[tuple[Any, ...], int]

    # ------------------------------------------------------------------ errors
    def line(self, *loc: Any) -> int | None:
        loc_t = tuple(loc)
        while loc_t and loc_t not in self.lines:
            loc_t = loc_t[:-1]
        return self.lines.get(loc_t)

    def error(self, loc: Sequence[Any], message: str) -> ExperimentError:
        return ExperimentError(self.path, self.line(*loc), _key_text(loc), message)

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
        out = []
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

    def faults(self) -> list[Fault]:
        out = []
        for f in self.model.faults:
            extra = dict(f.model_extra or {})
            target: str | tuple[str, ...] = (
                tuple(f.target) if isinstance(f.target, list) else (f.target or "")
            )
            out.append(Fault(f.kind, target, extra, name=f.name or ""))
        return out

    def sweep_points(self) -> list[dict[str, Any]]:
        import itertools

        sweep = self.model.sweep
        keys = list(sweep)
        return [dict(zip(keys, c, strict=True)) for c in itertools.product(*sweep.values())]

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
                    if fm.designs is None or label in fm.designs or key in fm.designs:
                        cell = Cell(key, fault, ps, spec, point, self.horizon, label=label)
                        out.append(cell)
        return out

    def slug(self) -> str:
        stem = Path(self.path).stem if self.path != "<string>" else self.model.title
        return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "experiment"

    # ------------------------------------------------------------------ checks
    def validate(self, extra_overrides: Mapping[str, Any] | None = None) -> None:
        """Semantic checks beyond the file shape; raises ExperimentError at the first problem."""
        m = self.model
        for i, name in enumerate(self.profiles):
            loc: tuple[Any, ...] = ("profile", i) if isinstance(m.profile, list) else ("profile",)
            try:
                profile(name)
            except UnknownProfile as e:
                raise self.error(loc, str(e)) from None
        try:
            ParamSet.resolve(self.profiles)
        except ProfileConflict as e:
            raise self.error(("profile",), str(e)) from None
        for section, mapping in (("params", m.params), ("client", m.client)):
            for key, raw in mapping.items():
                full = key if section == "params" else f"client.{key}"
                self._check_param((section, key), full, raw)
        for key, values in m.sweep.items():
            for j, raw in enumerate(values):
                if key == "profile":
                    for name in [raw] if isinstance(raw, str) else list(raw):
                        try:
                            profile(name)
                        except UnknownProfile as e:
                            raise self.error(("sweep", key, j), str(e)) from None
                    try:
                        ParamSet.resolve(self.profiles_for({"profile": raw}))
                    except ProfileConflict as e:
                        raise self.error(("sweep", key, j), str(e)) from None
                    continue
                self._check_param(("sweep", key, j), key, raw)
        for key, raw in (extra_overrides or {}).items():
            try:
                lookup(key).parse(raw)
            except (UnknownParameter, ParseError) as e:
                raise ExperimentError("--set", None, key, str(e)) from None
        try:
            horizon = parse_duration(m.horizon)
        except ParseError as e:
            raise self.error(("horizon",), str(e)) from None
        if not 0 < horizon < float("inf"):
            raise self.error(("horizon",), f"the horizon must be a positive time, got {m.horizon}")
        labels: set[str] = set()
        for i, (label, name, variant) in enumerate(self.design_entries()):
            loc: tuple[Any, ...] = ("designs", i) if variant is None else ("designs", i, "design")
            if name not in DESIGNS:
                near = difflib.get_close_matches(name, DESIGNS, n=2)
                hint = f" (did you mean {' or '.join(near)}?)" if near else ""
                raise self.error(loc, f"unknown design {name!r}{hint}; known: {', '.join(DESIGNS)}")
            if label in labels:
                raise self.error(
                    ("designs", i), f"two designs are named {label!r}; give one a label"
                )
            labels.add(label)
            if variant is None:
                continue
            for key, raw in variant.params.items():
                self._check_param(("designs", i, "params", key), key, raw)
            vp = variant.profile
            for j, pname in enumerate([vp] if isinstance(vp, str) else list(vp or [])):
                try:
                    profile(pname)
                except UnknownProfile as e:
                    where = (
                        ("designs", i, "profile")
                        if isinstance(vp, str)
                        else ("designs", i, "profile", j)
                    )
                    raise self.error(where, str(e)) from None
        for i, f in enumerate(m.faults):
            if f.kind not in FAULTS:
                near = difflib.get_close_matches(f.kind, FAULTS, n=2)
                hint = f" (did you mean {' or '.join(near)}?)" if near else ""
                raise self.error(
                    ("faults", i, "kind"),
                    f"unknown fault {f.kind!r}{hint}; known: {', '.join(FAULTS)}",
                )
            kind = FAULTS[f.kind]
            for opt, raw in (f.model_extra or {}).items():
                if opt not in kind.options:
                    known = ", ".join(kind.options) or "none"
                    raise self.error(
                        ("faults", i, opt), f"{f.kind} has no option {opt!r} (options: {known})"
                    )
                self._check_param(("faults", i, opt), kind.options[opt], raw)
        spec = self.cluster_spec()
        try:
            from chaoslab.designs.base import initial_app_nodes

            if not initial_app_nodes(spec):
                raise ValueError(f"no node of role {'/'.join(spec.app_roles())} for the app")
        except ValueError as e:
            raise self.error(("cluster",), str(e)) from None
        faults = self.faults()
        entries = self.design_entries()
        names = {label for label, _, _ in entries} | {key for _, key, _ in entries}
        for i, fm in enumerate(m.faults):
            for j, name in enumerate(fm.designs or []):
                if name not in names:
                    raise self.error(
                        ("faults", i, "designs", j),
                        f"{name!r} is not among the experiment's designs ({', '.join(names)})",
                    )
        for label, design, variant in entries:
            own = dict(variant.params) if variant else {}
            vps = ParamSet.resolve(
                DESIGNS[design].profiles(self.profiles_for({}, variant)),
                {**self.overrides(), **own, **(extra_overrides or {})},
            )
            seen: dict[tuple[str, str], int] = {}
            for i, fault in enumerate(faults):
                fdesigns = m.faults[i].designs
                if fdesigns is not None and label not in fdesigns and design not in fdesigns:
                    continue
                row = (fault.result_name, fault.label)
                if row in seen:
                    raise self.error(
                        ("faults", i),
                        f"faults {seen[row]} and {i} are both {row[0]} on {row[1]} for {label}; "
                        "give one a name:",
                    )
                seen[row] = i
                cell = Cell(design, fault, vps, spec, {}, self.horizon, label=label)
                try:
                    cell.check()
                except (ImpossibleTarget, ImpossibleFault, ValueError) as e:
                    loc = ("faults", i, "target") if m.faults[i].target else ("faults", i)
                    raise self.error(loc, f"{label} x {fault.kind}: {e}") from None

    def _check_param(self, loc: tuple[Any, ...], key: str, raw: Any) -> None:
        try:
            lookup(key).parse(raw)
        except UnknownParameter as e:
            raise self.error(loc, str(e)) from None
        except ParseError as e:
            raise self.error(loc, str(e)) from None

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


def _variant_label(v: DesignVariant) -> str:
    """A readable default name for a design variant: design[profile,key=value]."""
    bits = [v.profile] if isinstance(v.profile, str) else list(v.profile or [])
    bits += [
        f"{k}={str(val).lower() if isinstance(val, bool) else val}" for k, val in v.params.items()
    ]
    return f"{v.design}[{','.join(bits)}]" if bits else v.design


def load_experiment(path: str | Path, text: str | None = None) -> Experiment:
    """Read and validate the file's shape; `Experiment.validate` checks the meaning."""
    p = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ExperimentError(p, None, "", "no such file") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
            raise ExperimentError(p, None, "", f"cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
        lines = _compose_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ExperimentError(p, line, "", f"malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ExperimentError(
            p, 1, "", "an experiment file is a YAML mapping (title:, designs:...)"
        )
    try:
        model = ExperimentFile.model_validate(data)
    except ValidationError as e:
        # a typo'd key also makes the real one "missing": report the typo first
        errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
        err = errs[0]
        loc = tuple(err["loc"])
        exp = Experiment(p, ExperimentFile.model_construct(), text, lines)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            near = _near_field(loc)
            msg = f"unknown key{near}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        raise exp.error(loc, msg) from None
    return Experiment(p, model, text, lines)


def _model_of(ann: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``)."""
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _near_field(loc: Sequence[Any]) -> str:
    model: type[BaseModel] = ExperimentFile
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # a list index: stay on the item's model
        field = model.model_fields.get(part)
        inner = _model_of(field.annotation) if field else None
        if inner is None:
            return ""
        model = inner
    near = difflib.get_close_matches(str(loc[-1]), model.model_fields, n=1)
    return f" (did you mean {near[0]}?)" if near else f"; known: {', '.join(model.model_fields)}"


def parse_set_option(items: Sequence[str]) -> dict[str, str]:
    """``--set key=value`` pairs -> mapping (values stay text; the catalogue parses them)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ExperimentError("--set", None, item, "expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def json_schema() -> dict[str, Any]:
    schema = ExperimentFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://chaoslab.dev/schema/experiment.json"
    return schema


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    import json

    path.write_text(json.dumps(json_schema(), indent=2) + "\n")
    return path
