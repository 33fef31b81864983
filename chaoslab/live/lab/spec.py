"""The ``lab:`` section of an experiment file, and reading a lab experiment file.

Only the file shape lives here (pydantic v2, ``extra="forbid"``). Timing values of the
daemons (VRRP advert interval, BGP hold time, HAProxy inter/fall/rise, nginx
``proxy_connect_timeout``, the client timeout) are *not* in this section: they are the
experiment's ``params:`` resolved through the parameter catalogue and its profiles, the same
values the prediction uses. The timings here are the drill's own (how long to watch, how
long to cool down): they have no defaults, an experiment states them.

Until the experiment schema (``chaoslab/experiment.py``) embeds :class:`LabSpec`,
:func:`load_lab_experiment` reads the few top-level keys the lab needs (``title``,
``profile``, ``params``, ``seed``) and the ``lab:`` section itself, and reports bad input as
one line naming file, line and key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from chaoslab.live.fields import Duration, StrictModel

__all__ = [
    "DESIGNS",
    "BgpLab",
    "Duration",
    "IngressLab",
    "LabExperiment",
    "LabFault",
    "LabSpec",
    "LbLab",
    "ProbeLab",
    "SpecError",
    "TrialLab",
    "VrrpLab",
    "load_lab_experiment",
]

#: designs the lab can host
DESIGNS = (
    "ingress-vip-vrrp",
    "ingress-vip-bgp",
    "metallb-bgp",
    "nodeport-lb",
    "nodeport-lb-local",
    "ingress-hostnet",
)


_Model = StrictModel


class ProbeLab(_Model):
    """The prober in the client namespace. Its timeout is the ``client.timeout`` parameter."""

    rate: float = Field(gt=0, le=1000, description="new-connection probes/s per prober")
    probers: int = Field(ge=1, le=16)
    long: int = Field(0, ge=0, le=64, description="long-lived connections")
    long_interval: Duration | None = None

    @model_validator(mode="after")
    def _long(self) -> ProbeLab:
        if self.long and not self.long_interval:
            raise ValueError("long_interval is needed when long > 0")
        return self


class TrialLab(_Model):
    """The drill's own clock: none of these are model parameters."""

    baseline: Duration = Field(description="probing before the fault")
    observe: Duration = Field(description="probing after the fault (the trial's horizon)")
    cooldown: Duration = Field(description="pause after restoring, before the next check")
    steady: Duration = Field(description="window of all-ok probes that counts as steady")
    settle_timeout: Duration = Field(description="give up waiting for steady state after this")
    bin: Duration = Field(description="probe bin width for a(t)")
    #: a uniform random wait in [0, jitter] between reaching steady state and the fault, so
    #: the fault falls at a random phase of the daemons' periodic timers (adverts,
    #: keepalives, health checks) as a real failure does; without it the drill's fixed
    #: pacing locks the fault to the phase at which a restored daemon resumed its timers
    jitter: Duration = Field(description="random wait before the fault (>= longest period)")


class VrrpLab(_Model):
    """Priorities, version, advert interval, nopreempt and the track script's timing are
    the parameters ``vrrp.*`` (``vrrp.priority: [150, 100]`` gives one per node)."""

    virtual_router_id: int = Field(51, ge=1, le=255)


class BgpLab(_Model):
    router_asn: int = Field(64512, ge=1, le=4294967295)
    node_asn: int = Field(64601, ge=1, le=4294967295)
    #: BIRD's 'connect retry time' (how often a session to an unreachable peer is retried
    #: while a fault is undone); the drill's pace, not a model parameter
    reconnect: Duration = Field(description="session retry pace between trials")


class LbLab(_Model):
    pods: list[int] = Field(min_length=1, description="app pods per node (0 = idle node)")


class IngressLab(_Model):
    pods: int = Field(ge=1, le=16)


FaultKind = Literal["daemon-kill", "link-down", "pod-kill", "transient-blip"]


class LabFault(_Model):
    """A fault the lab injects.

    ``target``: ``vip-holder`` (the node answering now), ``idle-node`` (a node without app
    pods), ``app-pod-node``, ``ingress-node``, ``app-pod``, or a node/pod name (``n2``,
    ``n1p1``, ``p2``). ``predict`` is the fault given to the model (default: ``kind``,
    ``target``, ``daemon``, ``signal``), e.g. ``{kind: node-crash, target: vip-holder}`` for
    a SIGKILL of keepalived together with the service, which the network sees as a crash.

    ``duration``: for ``link-down`` the carrier comes back after it (the node knew it was
    cut off: keepalived went FAULT); for ``transient-blip`` (required) every packet of the
    node is dropped for that long without any carrier change.
    """

    kind: FaultKind
    target: str
    name: str | None = None
    daemon: Literal["keepalived", "bird", "haproxy", "nginx"] | None = None
    signal: Literal["KILL", "TERM"] = "KILL"
    with_service: bool = False
    duration: Duration | None = None
    client_timeout: Duration | None = None
    predict: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> LabFault:
        if self.kind == "daemon-kill" and self.daemon is None:
            raise ValueError("daemon-kill needs daemon: keepalived, bird, haproxy or nginx")
        if self.kind == "transient-blip" and not self.duration:
            raise ValueError("transient-blip needs a duration")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [self.kind]
        if self.daemon:
            parts.append(f"{self.daemon}-{self.signal.lower()}")
        if self.with_service:
            parts.append("with-service")
        if self.duration is not None:
            parts.append(f"{self.duration:g}s")
        if self.client_timeout is not None:
            parts.append(f"timeout-{self.client_timeout:g}s")
        return "/".join(parts)

    def model_fault(self) -> dict[str, Any]:
        """The fault as the model names it."""
        if self.predict is not None:
            return dict(self.predict)
        out: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.daemon:
            # the model calls every BGP speaker 'bgp'
            out["daemon"] = "bgp" if self.daemon == "bird" else self.daemon
            out["signal"] = self.signal
            # the lab restarts a killed daemon only after the trial
            out["restart"] = "inf"
        if self.kind == "link-down":
            # without a duration the link comes back after the trial
            out["duration"] = f"{self.duration}s" if self.duration else "inf"
        if self.kind == "transient-blip":
            out["duration"] = f"{self.duration}s"
        return out


class LabSpec(_Model):
    """``lab:``: which topology to build and how to drill it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,23}$")
    design: Literal[DESIGNS]  # type: ignore[valid-type]
    nodes: int = Field(ge=1, le=8)
    probe: ProbeLab
    trial: TrialLab
    faults: list[LabFault] = Field(min_length=1)
    trials: int = Field(5, ge=1, le=1000)
    predict_trials: int = Field(2000, ge=10, le=100000)
    #: the model's cluster for the prediction (default: derived from the lab's layout)
    cluster: dict[str, Any] | None = None
    vrrp: VrrpLab | None = None
    bgp: BgpLab | None = None
    lb: LbLab | None = None
    ingress: IngressLab | None = None

    @model_validator(mode="after")
    def _sections(self) -> LabSpec:
        need = {
            "ingress-vip-vrrp": "vrrp",
            "ingress-vip-bgp": "bgp",
            "metallb-bgp": "bgp",
            "nodeport-lb": "lb",
            "nodeport-lb-local": "lb",
            "ingress-hostnet": "ingress",
        }[self.design]
        if getattr(self, need) is None:
            raise ValueError(f"design {self.design} needs a '{need}:' section")
        if self.lb and len(self.lb.pods) != self.nodes:
            raise ValueError(f"lb.pods has {len(self.lb.pods)} entries for {self.nodes} nodes")
        return self


class LabExperiment(_Model):
    """The parts of an experiment file a lab drill reads."""

    title: str = ""
    description: str = ""
    profile: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    lab: LabSpec


class SpecError(ValueError):
    """Bad lab experiment file; ``str()`` is one line naming file, line and key."""


@dataclass(frozen=True)
class _Marks:
    root: yaml.Node


def _find_line(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on the path ``loc``."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                node = None
        else:
            break
        if node is None:
            break
    return line


def _top_level(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the keys the lab reads; the experiment schema owns the others."""
    out: dict[str, Any] = {
        k: doc[k] for k in ("title", "description", "params", "seed", "lab") if k in doc
    }
    prof = doc.get("profile")
    if prof is not None:
        out["profile"] = [prof] if isinstance(prof, str) else prof
    client = doc.get("client")
    if isinstance(client, dict) and client:
        # `client: {timeout: 5s}` is the experiment schema's short form of client.* params
        params = dict(out.get("params") or {})
        for k, v in client.items():
            params.setdefault(f"client.{k}", v)
        out["params"] = params
    return out


def load_lab_experiment(path: str | Path) -> LabExperiment:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        root = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{p}{where}: malformed YAML ({problem})") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{p}: an experiment file is a mapping of keys")
    if "lab" not in doc:
        raise SpecError(f"{p}: no 'lab:' section (a lab drill needs one)")
    try:
        return LabExperiment.model_validate(_top_level(doc))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _find_line(root, loc)
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        where = f":{line}" if line else ""
        raise SpecError(f"{p}{where}: {key}: {msg}") from None


def fixed_seconds(value: object, key: str) -> float:
    """A daemon takes one number: a parameter given as a distribution cannot configure it."""
    from chaoslab.params.dists import Dist

    if isinstance(value, Dist):
        lo, hi = value.bounds()
        if lo != hi or not math.isfinite(lo):
            raise SpecError(f"{key} is a distribution ({value.text()}); the lab needs one value")
        return float(lo)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key}: expected a number, got {value!r}")
    return float(value)
