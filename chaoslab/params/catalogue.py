"""The parameter catalogue: every knob the model reads, its default, unit, versions and source.

A parameter key is ``<component>.<knob_in_snake_case>`` after the real flag or field
(``kube_controller_manager.node_monitor_grace_period``). Defaults live here and nowhere
else; a mechanism that reads a key the catalogue does not define fails its tests.

A *profile* is a named set of values for a real version or vendor (``k8s-1.10``,
``haproxy``). Profiles belong to a *component family* (``k8s``, ``lb``, ...); an
experiment picks at most one profile per family, and each family has a default profile
whose values are the catalogue defaults.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from chaoslab.errors import UserError
from chaoslab.params.dists import Dist, ParseError, parse_value

__all__ = [
    "CATALOGUE",
    "CONSTRAINTS",
    "DERIVED",
    "PROFILES",
    "Constraint",
    "Derived",
    "Param",
    "Profile",
    "Setting",
    "UnknownParameter",
    "UnknownProfile",
    "lookup",
    "register",
    "register_constraint",
    "register_derived",
    "register_profile",
    "require_positive",
]

#: What a parameter's value is. Durations are seconds and may be distributions; counts,
#: ratios and rates are numbers (counts may be distributions too); flags are booleans;
#: choices are one of ``Param.choices``.
Kind = Literal["duration", "count", "ratio", "rate", "flag", "choice"]

_UNIT_OF_KIND: dict[str, str] = {
    "duration": "s",
    "count": "count",
    "ratio": "ratio",
    "rate": "1/s",
    "flag": "bool",
    "choice": "choice",
}

Value = Dist | bool | str


class UnknownParameter(UserError, KeyError):
    """A key that is not in the catalogue (the message suggests the nearest keys).

    Still a KeyError for callers that look keys up; printed plain, not quoted."""


class UnknownProfile(UserError, KeyError):
    """A profile name that does not exist (the message lists the known ones)."""


@dataclass(frozen=True, slots=True)
class Param:
    """One knob. ``default`` is the value of the family's default profile."""

    key: str
    kind: Kind
    default: Value
    versions: str
    source: str
    doc: str
    choices: tuple[str, ...] = ()
    #: a period or interval: zero would make a timer tick continuously (refused)
    positive: bool = False

    @property
    def unit(self) -> str:
        return _UNIT_OF_KIND[self.kind]

    @property
    def component(self) -> str:
        return self.key.split(".", 1)[0]

    def parse(self, raw: object) -> Value:
        """Read a value given in an experiment file or on the command line."""
        if self.kind == "flag":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in {"true", "false", "yes", "no", "on", "off"}:
                return raw.lower() in {"true", "yes", "on"}
            raise ParseError(f"{self.key} is a flag: write true or false, got {raw!r}")
        if self.kind == "choice":
            if raw not in self.choices:
                choices = ", ".join(self.choices)
                raise ParseError(f"{self.key} must be one of {choices}; got {raw!r}")
            return str(raw)
        if isinstance(raw, bool):
            raise ParseError(f"{self.key} takes a {self.kind}, not {raw!r}")
        dist = parse_value(raw, unit=self.unit)  # type: ignore[arg-type]
        lo, _ = dist.bounds()
        if lo < 0:
            raise ParseError(f"{self.key} cannot be negative (got {raw!r})")
        if self.positive and lo <= 0:
            raise ParseError(f"{self.key} is a period and must be greater than 0 (got {raw!r})")
        if self.kind == "ratio" and dist.bounds()[1] > 1:
            raise ParseError(f"{self.key} is a ratio between 0 and 1 (got {raw!r})")
        return dist

    def text(self, value: Value | None = None) -> str:
        v = self.default if value is None else value
        if isinstance(v, Dist):
            return v.text("s" if self.kind == "duration" else self.unit)
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)


@dataclass(frozen=True, slots=True)
class Setting:
    """A profile's value for one key, with its own source."""

    value: Value
    source: str


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    family: str
    doc: str
    settings: Mapping[str, Setting] = field(default_factory=dict)
    default: bool = False
    #: exactly which releases or products the profile's values hold for, and at which
    #: tags or documents they were read ("" for a profile that names no version)
    covers: str = ""


@dataclass(frozen=True, slots=True)
class Derived:
    """A default the real daemon computes from another setting (HAProxy: the check
    timeout is ``inter`` unless ``timeout check`` is set).

    Where neither a profile nor an override sets ``key``, its value is ``parent``'s
    value, whatever set the parent; a distribution is shared, not copied: a trial draws
    the parent once and the child takes that draw (`Sampler`).
    """

    key: str
    parent: str
    rule: str
    source: str


@dataclass(frozen=True, slots=True)
class Constraint:
    """A relation the real software refuses to start without (fixed values only)."""

    keys: tuple[str, ...]
    check: Callable[..., bool]
    rule: str
    source: str


#: key -> Param, filled by the ``params.*`` modules at import time
#: key -> Param, filled by the ``params.*`` modules at import time
CATALOGUE: dict[str, Param] = {}
#: name -> Profile
PROFILES: dict[str, Profile] = {}
#: child key -> its derivation rule
DERIVED: dict[str, Derived] = {}
#: relations checked whenever a parameter set is resolved
CONSTRAINTS: list[Constraint] = []


def register(params: Iterable[Param]) -> None:
    for p in params:
        if p.key in CATALOGUE:
            raise ValueError(f"parameter {p.key} defined twice")
        if not p.source.strip():
            raise ValueError(f"parameter {p.key} has no source")
        # the default must be readable as a value of its own kind
        if p.kind == "choice" and p.default not in p.choices:
            raise ValueError(f"{p.key}: default {p.default!r} not among its choices")
        CATALOGUE[p.key] = p


def register_profile(
    name: str,
    family: str,
    doc: str,
    settings: Mapping[str, tuple[object, str]] | None = None,
    *,
    default: bool = False,
    covers: str = "",
) -> Profile:
    """Register a profile; ``settings`` maps key -> (value as written in YAML, source)."""
    if name in PROFILES:
        raise ValueError(f"profile {name} defined twice")
    parsed: dict[str, Setting] = {}
    for key, (raw, source) in (settings or {}).items():
        param = lookup(key)
        parsed[key] = Setting(param.parse(raw), source)
    prof = Profile(name, family, doc, parsed, default, covers)
    PROFILES[name] = prof
    return prof


def register_derived(key: str, parent: str, rule: str, source: str) -> None:
    """``key`` defaults to ``parent``'s value unless a profile or an override sets it."""
    child, par = lookup(key), lookup(parent)
    if child.kind != par.kind or child.kind not in ("duration", "count", "ratio", "rate"):
        raise ValueError(f"{key} cannot derive from {parent}: kinds {child.kind}/{par.kind}")
    if key in DERIVED or parent in DERIVED:
        raise ValueError(f"{key} <- {parent}: one level of derivation only")
    DERIVED[key] = Derived(key, parent, rule, source)


def register_constraint(
    keys: tuple[str, ...], check: Callable[..., bool], rule: str, source: str
) -> None:
    """Refuse parameter sets whose fixed values of ``keys`` fail ``check(*values)``.

    The keys are looked up when a set is resolved (they may be registered later)."""
    CONSTRAINTS.append(Constraint(keys, check, rule, source))


def require_positive(*keys: str) -> None:
    """Mark periods and intervals: a value of 0 (or a distribution reaching 0) is refused."""
    import dataclasses

    for key in keys:
        CATALOGUE[key] = dataclasses.replace(lookup(key), positive=True)


def lookup(key: str) -> Param:
    try:
        return CATALOGUE[key]
    except KeyError:
        near = difflib.get_close_matches(key, CATALOGUE, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        raise UnknownParameter(f"unknown parameter {key!r}{hint}") from None


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        near = difflib.get_close_matches(name, PROFILES, n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        known = ", ".join(sorted(PROFILES))
        raise UnknownProfile(f"unknown profile {name!r}{hint}; known: {known}") from None


# ---------------------------------------------------------------- relations between knobs
_LEADERELECTION = (
    "kubernetes/client-go tools/leaderelection/leaderelection.go NewLeaderElector "
    "('leaseDuration must be greater than renewDeadline', 'renewDeadline must be greater "
    "than retryPeriod*JitterFactor'); kube-vip elects its leader through it"
)
register_constraint(
    ("kube_vip.lease_duration", "kube_vip.renew_deadline"),
    lambda lease, renew: lease > renew,
    "kube_vip.lease_duration > kube_vip.renew_deadline",
    _LEADERELECTION,
)
register_constraint(
    ("kube_vip.renew_deadline", "kube_vip.retry_period", "kube_vip.retry_jitter_factor"),
    lambda renew, retry, factor: renew > factor * retry,
    "kube_vip.renew_deadline > kube_vip.retry_jitter_factor x kube_vip.retry_period",
    _LEADERELECTION,
)
