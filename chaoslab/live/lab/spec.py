"""The lab's parts of an experiment file: the ``lab:`` environment and a fault's ``lab:`` key.

Only the file shape lives here (pydantic v2, ``extra="forbid"``); the one reader is
`chaoslab.experiment.load_experiment`. Timing values of the daemons (VRRP advert interval,
BGP hold time, HAProxy inter/fall/rise, nginx ``proxy_connect_timeout``, the client
timeout) are *not* here: they are the experiment's ``params:`` resolved through the
parameter catalogue and its profiles, the same values the prediction uses. The timings in
``lab.trial`` are the drill's own (how long to wait for a steady state, how long to cool
down): they have no defaults, an experiment states them.

A fault is written once, in the experiment's ``faults:`` list, as the model sees it; its
``lab:`` key says how the lab injects it when that differs from the kind itself (a SIGKILL
of keepalived with its service is what the network sees as a ``node-crash``)::

    faults:
      - kind: node-crash
        target: vip-holder
        lab: {method: daemon-kill, daemon: keepalived, signal: KILL, with_service: true}
      - {kind: link-down, target: vip-holder, duration: 500ms}   # the lab does the same
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from chaoslab.live.fields import Duration, StrictModel

__all__ = [
    "DESIGNS",
    "LAB_METHODS",
    "BgpLab",
    "Duration",
    "IngressLab",
    "LabFault",
    "LabFaultKey",
    "LabSpec",
    "LbLab",
    "TrialLab",
    "VrrpLab",
    "lab_fault",
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
#: how the lab can break something
LAB_METHODS = ("daemon-kill", "link-down", "pod-kill", "transient-blip")
#: the model's faults of the Kubernetes control plane (chaoslab.faults), which the lab lacks
CONTROL_PLANE_KINDS = ("controller-manager-restart", "apiserver-down", "master-crash")
#: the model's name of a daemon -> the program the lab runs for it
LAB_DAEMONS = {"keepalived": "keepalived", "bgp": "bird", "haproxy": "haproxy", "nginx": "nginx"}


_Model = StrictModel


class TrialLab(_Model):
    """The drill's own clock: none of these are model parameters. A trial observes for the
    experiment's ``horizon``, the same window the prediction simulates."""

    baseline: Duration = Field(description="probing before the fault")
    cooldown: Duration = Field(description="pause after restoring, before the next check")
    steady: Duration = Field(description="window of all-ok probes that counts as steady")
    settle_timeout: Duration = Field(description="give up waiting for steady state after this")
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


_NEEDS = {
    "ingress-vip-vrrp": "vrrp",
    "ingress-vip-bgp": "bgp",
    "metallb-bgp": "bgp",
    "nodeport-lb": "lb",
    "nodeport-lb-local": "lb",
    "ingress-hostnet": "ingress",
}


class LabSpec(_Model):
    """``lab:``: which topology to build and how to pace its trials (the environment only;
    the faults and the prober are the experiment's ``faults:`` and ``probe:``)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,23}$")
    design: Literal[DESIGNS]  # type: ignore[valid-type]
    nodes: int = Field(ge=1, le=8)
    trial: TrialLab
    trials: int = Field(5, ge=1, le=1000, description="trials per fault")
    vrrp: VrrpLab | None = None
    bgp: BgpLab | None = None
    lb: LbLab | None = None
    ingress: IngressLab | None = None

    @model_validator(mode="after")
    def _sections(self) -> LabSpec:
        need = _NEEDS[self.design]
        if getattr(self, need) is None:
            raise ValueError(f"design {self.design} needs a '{need}:' section")
        if self.lb and len(self.lb.pods) != self.nodes:
            raise ValueError(f"lb.pods has {len(self.lb.pods)} entries for {self.nodes} nodes")
        return self


class LabFaultKey(_Model):
    """A fault's ``lab:`` key: how the lab injects the fault, where that is not the fault's
    own kind and options. ``target``: ``vip-holder`` (the node answering now),
    ``idle-node``, ``app-pod-node``, ``ingress-node``, ``app-pod``, or a node/pod name
    (``n2``, ``n1p1``); default the fault's target. ``duration``: for ``link-down`` the
    carrier comes back after it; for ``transient-blip`` every packet of the node is dropped
    for that long without any carrier change."""

    method: Literal[LAB_METHODS] | None = None  # type: ignore[valid-type]
    target: str | None = None
    daemon: Literal["keepalived", "bird", "haproxy", "nginx"] | None = None
    signal: Literal["KILL", "TERM"] | None = None
    with_service: bool = False
    duration: Duration | None = None


@dataclass(frozen=True)
class LabFault:
    """A fault as the lab injects it, resolved from an entry of ``faults:``. ``name`` is
    the entry's ``fault`` column, the same as the prediction's."""

    kind: str
    target: str
    name: str
    daemon: str | None = None
    signal: str = "KILL"
    with_service: bool = False
    duration: float | None = None
    #: the fault's own ``client.timeout`` (its ``params:``), else the experiment's
    client_timeout: float | None = None

    @property
    def label(self) -> str:
        return self.name


def lab_fault(
    kind: str, target: str, options: Mapping[str, object], key: LabFaultKey | None, name: str
) -> LabFault:
    """The lab's injection of the model fault ``kind``/``target``/``options``, refined by
    its ``lab:`` key; ValueError says what is missing."""
    from chaoslab.params import parse_duration

    key = key or LabFaultKey()
    method = key.method or kind
    for part in (kind, str(options.get("with", "none"))):
        if part in CONTROL_PLANE_KINDS:
            raise ValueError(
                f"{part}: the lab has no Kubernetes control plane (it runs the network "
                "daemons only); drill it on a cluster (live: {cluster: local} or a hook)"
            )
    second = str(options.get("with", "none"))
    if second != "none":
        raise ValueError(
            f"with: {second}: the lab injects one effect per fault; drill the composite on "
            "a cluster (live:) or give each effect its own fault"
        )
    if method not in LAB_METHODS:
        raise ValueError(
            f"the lab cannot inject {kind} itself; say how with lab: {{method: "
            f"{' | '.join(LAB_METHODS)}}}"
        )
    daemon: str | None = key.daemon
    if daemon is None and method == "daemon-kill":
        model_daemon = str(options.get("daemon", ""))
        daemon = LAB_DAEMONS.get(model_daemon)
        if daemon is None:
            raise ValueError("daemon-kill needs lab: {daemon: keepalived | bird | haproxy | nginx}")
    duration = key.duration
    if duration is None and method == kind and "duration" in options:
        duration = parse_duration(str(options["duration"]))
    if duration is not None and math.isinf(duration):
        duration = None  # the link comes back only after the trial
    if method == "transient-blip" and not duration:
        raise ValueError("transient-blip needs a duration")
    signal = key.signal or str(options.get("signal", "KILL")).upper()
    # the model's own option says it too: daemon-kill {with_service: true} needs no lab: copy
    with_service = key.with_service or (method == kind and options.get("with_service") is True)
    return LabFault(method, key.target or target, name, daemon, signal, with_service, duration)
