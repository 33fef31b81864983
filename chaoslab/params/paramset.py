"""Resolved parameter sets: profiles + overrides -> one value (and its source) per key."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from chaoslab.errors import UserError
from chaoslab.params.catalogue import (
    CATALOGUE,
    CONSTRAINTS,
    DERIVED,
    PROFILES,
    Value,
    lookup,
    profile,
)
from chaoslab.params.dists import Dist

__all__ = ["ConstraintViolated", "ParamSet", "Sampler"]


class ProfileConflict(UserError):
    pass


class ConstraintViolated(UserError):
    """Values the real software would refuse (e.g. a lease shorter than its renew deadline)."""


@dataclass(frozen=True)
class ParamSet:
    """Every catalogue key with its effective value and where that value came from."""

    values: Mapping[str, Value]
    sources: Mapping[str, str]
    profiles: tuple[str, ...]
    #: keys a profile or an override set; the others keep (or derive) their defaults
    explicit: frozenset[str] = frozenset()

    @classmethod
    def resolve(
        cls,
        profiles: str | Sequence[str] | None = None,
        overrides: Mapping[str, object] | None = None,
        *,
        override_source: str = "experiment",
    ) -> ParamSet:
        """Defaults, then each family's chosen profile, then overrides (raw values)."""
        names = [profiles] if isinstance(profiles, str) else list(profiles or [])
        chosen: dict[str, str] = {}
        for name in names:
            prof = profile(name)
            if prof.family in chosen:
                raise ProfileConflict(
                    f"profiles {chosen[prof.family]!r} and {name!r} both set the "
                    f"{prof.family} family; pick one"
                )
            chosen[prof.family] = name
        for prof in PROFILES.values():
            if prof.default and prof.family not in chosen:
                chosen[prof.family] = prof.name
        values: dict[str, Value] = {}
        sources: dict[str, str] = {}
        for key, p in CATALOGUE.items():
            values[key] = p.default
            sources[key] = p.source
        ordered = [n for n in names if n in chosen.values()]
        ordered += [n for n in chosen.values() if n not in ordered]
        explicit: set[str] = set()
        for name in ordered:
            for key, setting in PROFILES[name].settings.items():
                values[key] = setting.value
                sources[key] = f"profile {name}: {setting.source}"
                explicit.add(key)
        ps = cls(values, sources, tuple(ordered), frozenset(explicit))
        if not overrides:
            return ps._derive()
        return ps.with_overrides(overrides, source=override_source)

    def with_overrides(self, overrides: Mapping[str, object], *, source: str) -> ParamSet:
        if not overrides:
            return self
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            p = lookup(key)
            values[key] = p.parse(raw)
            sources[key] = source
        explicit = self.explicit | frozenset(overrides)
        return ParamSet(values, sources, self.profiles, explicit)._derive()

    def _derive(self) -> ParamSet:
        """Derived defaults follow their parents; then the constraints are checked."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, rule in DERIVED.items():
            if key not in self.explicit:
                values[key] = values[rule.parent]
                sources[key] = f"derived: {rule.rule} ({rule.source})"
        for c in CONSTRAINTS:
            vals = [values[k] for k in c.keys]
            fixed = [v.mean() for v in vals if isinstance(v, Dist) and v.is_fixed]
            if len(fixed) == len(vals) and not c.check(*fixed):
                shown = ", ".join(f"{k}={lookup(k).text(values[k])}" for k in c.keys)
                raise ConstraintViolated(f"{shown}: needs {c.rule} ({c.source})")
        return ParamSet(values, sources, self.profiles, self.explicit)

    def derived_from(self, key: str) -> str | None:
        """The parent whose value ``key`` takes here (None if it is set or not derived)."""
        rule = DERIVED.get(key)
        return rule.parent if rule is not None and key not in self.explicit else None

    def __getitem__(self, key: str) -> Value:
        try:
            return self.values[key]
        except KeyError:
            lookup(key)  # raises UnknownParameter with a suggestion
            raise

    def differs_from_profile(self) -> dict[str, Value]:
        """Keys whose value was set by an override rather than a default or profile."""
        base = ParamSet.resolve(self.profiles)
        return {
            k: v
            for k, v in self.values.items()
            if base.values.get(k) != v and self.derived_from(k) is None
        }

    def text(self, key: str) -> str:
        return lookup(key).text(self.values[key])

    def sampler(self, rng: np.random.Generator) -> Sampler:
        return Sampler(self, rng)

    @cached_property
    def _ties(self) -> dict[str, str]:
        """Derived keys whose parent is a distribution: child -> parent (one draw each)."""
        out: dict[str, str] = {}
        for key in DERIVED:
            parent = self.derived_from(key)
            v = self.values[key]
            if parent is not None and isinstance(v, Dist) and not v.is_fixed:
                out[key] = parent
        return out

    @cached_property
    def _split(self) -> tuple[dict[str, float], dict[str, Dist], dict[str, bool | str]]:
        """Values split by kind, once per ParamSet: every trial's Sampler shares them.

        (A cached_property writes the instance __dict__ directly, which a frozen
        dataclass allows; the tables are read-only afterwards.)
        """
        fixed: dict[str, float] = {}
        dists: dict[str, Dist] = {}
        other: dict[str, bool | str] = {}
        for k, v in self.values.items():
            if isinstance(v, Dist):
                if v.is_fixed:
                    fixed[k] = v.mean()
                elif k not in self._ties:
                    dists[k] = v
            else:
                other[k] = v
        return fixed, dists, other

    @cached_property
    def _samples(self) -> dict[str, Callable[[np.random.Generator], float]]:
        """Each distribution no derived key follows -> its bound ``sample``."""
        parents = set(self._ties.values())
        return {k: d.sample for k, d in self._split[1].items() if k not in parents}


class Sampler:
    """Fast read access for mechanisms: ``draw`` samples a fresh value at each call."""

    __slots__ = ("_ahead", "_dists", "_drawn", "_fixed", "_other", "_samples", "_ties", "rng")

    def __init__(self, ps: ParamSet, rng: np.random.Generator) -> None:
        self.rng = rng
        # shared, read-only tables of the ParamSet: building them per trial cost more
        # than a short trial's whole simulation
        self._fixed, self._dists, self._other = ps._split
        self._ties = ps._ties
        self._samples = ps._samples
        #: this trial's last draw of each parent a derived key follows
        self._drawn: dict[str, float] = {}
        #: parents drawn for a derived key before their own first draw
        self._ahead: dict[str, float] = {}

    def draw(self, key: str) -> float:
        """A value of a numeric parameter (a fresh sample if it is a distribution).

        A derived key whose parent is a distribution takes the parent's draw of this
        trial (the parent is drawn first if it was not yet)."""
        v = self._fixed.get(key)
        if v is not None:
            return v
        sample = self._samples.get(key)
        if sample is not None:
            return sample(self.rng)  # a distribution no derived key follows: the most drawn
        dist = self._dists.get(key)
        if dist is not None:  # a parent of derived keys
            ahead = self._ahead.pop(key, None)
            if ahead is not None:
                return ahead  # a derived key drew it first
            x = self._drawn[key] = dist.sample(self.rng)
            return x
        parent = self._ties[key]
        drawn = self._drawn.get(parent)
        if drawn is None:
            drawn = self._drawn[parent] = self._ahead[parent] = self._dists[parent].sample(self.rng)
        return drawn

    def count(self, key: str) -> int:
        return max(0, round(self.draw(key)))

    def flag(self, key: str) -> bool:
        return bool(self._other[key])

    def choice(self, key: str) -> str:
        return str(self._other[key])

    def is_fixed(self, key: str) -> bool:
        return key in self._fixed

    def dist(self, key: str) -> Dist | None:
        """The distribution behind a non-fixed numeric parameter (None if fixed or not numeric)."""
        return self._dists.get(key) or self._dists.get(self._ties.get(key, ""))
