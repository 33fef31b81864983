"""Resolved parameter sets: profiles + overrides -> one value (and its source) per key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from chaoslab.errors import UserError
from chaoslab.params.catalogue import CATALOGUE, PROFILES, Value, lookup, profile
from chaoslab.params.dists import Dist

__all__ = ["ParamSet", "Sampler"]


class ProfileConflict(UserError):
    pass


@dataclass(frozen=True)
class ParamSet:
    """Every catalogue key with its effective value and where that value came from."""

    values: Mapping[str, Value]
    sources: Mapping[str, str]
    profiles: tuple[str, ...]

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
        for name in ordered:
            for key, setting in PROFILES[name].settings.items():
                values[key] = setting.value
                sources[key] = f"profile {name}: {setting.source}"
        ps = cls(values, sources, tuple(ordered))
        return ps.with_overrides(overrides or {}, source=override_source)

    def with_overrides(self, overrides: Mapping[str, object], *, source: str) -> ParamSet:
        if not overrides:
            return self
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            p = lookup(key)
            values[key] = p.parse(raw)
            sources[key] = source
        return ParamSet(values, sources, self.profiles)

    def __getitem__(self, key: str) -> Value:
        try:
            return self.values[key]
        except KeyError:
            lookup(key)  # raises UnknownParameter with a suggestion
            raise

    def differs_from_profile(self) -> dict[str, Value]:
        """Keys whose value was set by an override rather than a default or profile."""
        base = ParamSet.resolve(self.profiles)
        return {k: v for k, v in self.values.items() if base.values.get(k) != v}

    def text(self, key: str) -> str:
        return lookup(key).text(self.values[key])

    def sampler(self, rng: np.random.Generator) -> Sampler:
        return Sampler(self, rng)

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
                else:
                    dists[k] = v
            else:
                other[k] = v
        return fixed, dists, other


class Sampler:
    """Fast read access for mechanisms: ``draw`` samples a fresh value at each call."""

    __slots__ = ("_dists", "_fixed", "_other", "rng")

    def __init__(self, ps: ParamSet, rng: np.random.Generator) -> None:
        self.rng = rng
        # shared, read-only tables of the ParamSet: building them per trial cost more
        # than a short trial's whole simulation
        self._fixed, self._dists, self._other = ps._split

    def draw(self, key: str) -> float:
        """A value of a numeric parameter (a fresh sample if it is a distribution)."""
        v = self._fixed.get(key)
        if v is not None:
            return v
        return self._dists[key].sample(self.rng)

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
        return self._dists.get(key)
