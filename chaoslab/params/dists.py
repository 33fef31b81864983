"""Parameter values: fixed numbers and distributions, and the text syntax that writes them.

A value in an experiment file or on the command line is one of

    40s   300ms   2m   1.5        fixed (durations carry a unit; counts and ratios do not)
    5m0s  1m30s   1h2m3.5s        Go's duration text, as Kubernetes prints its flags
    uniform(1s, 3s)                uniform between two bounds
    normal(mean=2s, sd=500ms)      normal, truncated at zero
    lognormal(median=2s, p95=8s)   log-normal from two quantiles (how latencies are published)
    exponential(mean=1s)
    empirical(1.2s, 0.8s, 3s)      resample measured values
    2s + uniform(0s, 1s)           sums of the above

Every `sample` takes an explicit ``numpy.random.Generator``: there is no global random state.
Inside the model every duration is float seconds.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from chaoslab.errors import UserError

__all__ = [
    "Dist",
    "Empirical",
    "Exponential",
    "Fixed",
    "LogNormal",
    "Normal",
    "ParseError",
    "Sum",
    "Uniform",
    "format_seconds",
    "parse_duration",
    "parse_value",
]

#: Seconds per unit accepted in durations.
UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}

# z of the 95th percentile of the standard normal (lognormal(median, p95) parametrisation)
_Z95 = 1.6448536269514722


class ParseError(UserError):
    """A value could not be read; the message says what was expected."""


class Dist(ABC):
    """A distribution of a scalar parameter (seconds for durations)."""

    __slots__ = ()

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> float:
        """One draw."""

    @abstractmethod
    def mean(self) -> float:
        """Expected value."""

    @abstractmethod
    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the distribution can produce (inf if unbounded)."""

    @property
    def is_fixed(self) -> bool:
        return False

    def __add__(self, other: Dist) -> Dist:
        return Sum((self, other))

    @abstractmethod
    def text(self, unit: str = "s") -> str:
        """The value in the experiment-file syntax."""

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True, slots=True)
class Fixed(Dist):
    value: float

    def sample(self, rng: np.random.Generator) -> float:
        return self.value

    def mean(self) -> float:
        return self.value

    def bounds(self) -> tuple[float, float]:
        return (self.value, self.value)

    @property
    def is_fixed(self) -> bool:
        return True

    def text(self, unit: str = "s") -> str:
        return format_seconds(self.value) if unit == "s" else _num(self.value)


@dataclass(frozen=True, slots=True)
class Uniform(Dist):
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ParseError(f"uniform(low, high) needs low <= high, got {self.low} > {self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        return self.low + (self.high - self.low) * rng.random()

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def text(self, unit: str = "s") -> str:
        f = format_seconds if unit == "s" else _num
        return f"uniform({f(self.low)}, {f(self.high)})"


@dataclass(frozen=True, slots=True)
class Normal(Dist):
    mu: float
    sd: float

    def __post_init__(self) -> None:
        if self.sd < 0:
            raise ParseError("normal(mean, sd) needs sd >= 0")

    def sample(self, rng: np.random.Generator) -> float:
        return max(0.0, self.mu + self.sd * rng.standard_normal())

    def mean(self) -> float:
        return self.mu

    def bounds(self) -> tuple[float, float]:
        return (0.0, math.inf)

    def text(self, unit: str = "s") -> str:
        f = format_seconds if unit == "s" else _num
        return f"normal(mean={f(self.mu)}, sd={f(self.sd)})"


@dataclass(frozen=True, slots=True)
class LogNormal(Dist):
    """Log-normal given by its median and 95th percentile."""

    median: float
    p95: float
    #: log-space sd, worked out once: a trial samples a dozen log-normals
    _sigma: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.median <= self.p95:
            raise ParseError("lognormal(median, p95) needs 0 < median <= p95")
        object.__setattr__(self, "_sigma", math.log(self.p95 / self.median) / _Z95)

    @property
    def sigma(self) -> float:
        return self._sigma

    def sample(self, rng: np.random.Generator) -> float:
        return self.median * math.exp(self._sigma * rng.standard_normal())

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def bounds(self) -> tuple[float, float]:
        return (0.0, math.inf) if self.sigma > 0 else (self.median, self.median)

    def text(self, unit: str = "s") -> str:
        f = format_seconds if unit == "s" else _num
        return f"lognormal(median={f(self.median)}, p95={f(self.p95)})"


@dataclass(frozen=True, slots=True)
class Exponential(Dist):
    scale: float

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ParseError("exponential(mean) needs mean > 0")

    def sample(self, rng: np.random.Generator) -> float:
        return self.scale * rng.standard_exponential()

    def mean(self) -> float:
        return self.scale

    def bounds(self) -> tuple[float, float]:
        return (0.0, math.inf)

    def text(self, unit: str = "s") -> str:
        f = format_seconds if unit == "s" else _num
        return f"exponential(mean={f(self.scale)})"


@dataclass(frozen=True, slots=True)
class Empirical(Dist):
    """Resampling of measured values (e.g. image pull times taken from a real cluster)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ParseError("empirical(...) needs at least one value")

    def sample(self, rng: np.random.Generator) -> float:
        return self.values[int(rng.integers(len(self.values)))]

    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def bounds(self) -> tuple[float, float]:
        return (min(self.values), max(self.values))

    def text(self, unit: str = "s") -> str:
        f = format_seconds if unit == "s" else _num
        return "empirical(" + ", ".join(f(v) for v in self.values) + ")"


@dataclass(frozen=True, slots=True)
class Sum(Dist):
    terms: tuple[Dist, ...]

    def sample(self, rng: np.random.Generator) -> float:
        return sum(t.sample(rng) for t in self.terms)

    def mean(self) -> float:
        return sum(t.mean() for t in self.terms)

    def bounds(self) -> tuple[float, float]:
        lo = sum(t.bounds()[0] for t in self.terms)
        hi = sum(t.bounds()[1] for t in self.terms)
        return (lo, hi)

    @property
    def is_fixed(self) -> bool:
        return all(t.is_fixed for t in self.terms)

    def text(self, unit: str = "s") -> str:
        return " + ".join(t.text(unit) for t in self.terms)


# --------------------------------------------------------------------------- parsing

_DURATION = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zµ]*)\s*$")


#: Go's time.Duration text, as Kubernetes prints its flags: 5m0s, 1m30s, 1h2m3.5s
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = r"(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"^\s*[+-]?(?:{_GO_PART}){{2,}}\s*$")
_GO_PIECE = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")


def _go_duration(text: str) -> float:
    """Seconds of a Go duration of two or more parts (one part is an ordinary duration)."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    total = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PIECE.findall(body.lstrip("+-")))
    return sign * total


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def format_seconds(x: float) -> str:
    """Shortest readable text of a duration in seconds: 0.3 -> '300ms', 40 -> '40s'."""
    if math.isinf(x):
        return "inf"
    if x != 0 and abs(x) < 1:
        ms = x * 1000
        return f"{_num(round(ms, 6))}ms"
    return f"{_num(round(x, 6))}s"


def parse_duration(text: str | float | int, *, unit: str = "s") -> float:
    """Parse one fixed quantity. Durations (unit 's') need a unit suffix unless they are 0."""
    if isinstance(text, bool):
        raise ParseError(f"expected a number, got {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text):  # YAML's .inf: "inf" (text) is the way to say never
            raise ParseError(f"{text!r} is not a finite number (write inf or never as text)")
        if unit == "s" and text != 0:
            raise ParseError(f"{text!r} has no unit; write it as {text}s or {text}ms")
        return float(text)
    if str(text).strip().lower() in {"inf", "never"}:
        return math.inf
    if unit == "s" and _GO_DURATION.match(str(text)):
        return _go_duration(str(text))
    m = _DURATION.match(str(text))
    if not m:
        raise ParseError(f"cannot read {text!r} as a {'duration' if unit == 's' else 'number'}")
    number, suffix = float(m.group(1)), m.group(2)
    if not math.isfinite(number * UNITS.get(suffix, 1.0)):
        raise ParseError(f"{text!r} is too large (write inf or never for no limit)")
    if unit == "s":
        if not suffix:
            if number == 0:
                return 0.0
            raise ParseError(f"{text!r} has no unit; write it as {m.group(1)}s or {m.group(1)}ms")
        if suffix not in UNITS:
            raise ParseError(
                f"unknown time unit {suffix!r} in {text!r} (use one of {', '.join(UNITS)})"
            )
        return number * UNITS[suffix]
    if suffix:
        raise ParseError(f"{text!r}: this parameter is a plain number ({unit}), not a duration")
    return number


_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)
_DISTS = ("uniform", "normal", "lognormal", "exponential", "empirical", "fixed")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _args(body: str, unit: str) -> tuple[list[float], dict[str, float]]:
    pos: list[float] = []
    kw: dict[str, float] = {}
    for raw in _split_top(body, ","):
        item = raw.strip()
        if not item:
            continue
        if "=" in item:
            k, v = item.split("=", 1)
            kw[k.strip()] = parse_duration(v.strip(), unit=unit)
        else:
            pos.append(parse_duration(item, unit=unit))
    return pos, kw


def _one(text: str, unit: str) -> Dist:
    m = _CALL.match(text)
    if not m:
        return Fixed(parse_duration(text, unit=unit))
    name, body = m.group(1), m.group(2)
    if name not in _DISTS:
        raise ParseError(
            f"unknown distribution {name!r} in {text.strip()!r} (use {', '.join(_DISTS)})"
        )
    pos, kw = _args(body, unit)
    bad = [v for v in (*pos, *kw.values()) if not math.isfinite(v) or (unit == "s" and v < 0)]
    if bad:
        raise ParseError(f"{text.strip()!r}: {name}() takes finite, non-negative times")

    def need(*names: str) -> list[float]:
        vals = list(pos) + [kw[n] for n in names[len(pos) :] if n in kw]
        extra = set(kw) - set(names)
        if extra or len(vals) != len(names):
            raise ParseError(f"{name}() takes ({', '.join(names)}), got {text.strip()!r}")
        return vals

    if name == "uniform":
        lo, hi = need("low", "high")
        return Uniform(lo, hi)
    if name == "normal":
        mu, sd = need("mean", "sd")
        return Normal(mu, sd)
    if name == "lognormal":
        med, p95 = need("median", "p95")
        return LogNormal(med, p95)
    if name == "exponential":
        (mean,) = need("mean")
        return Exponential(mean)
    if name == "empirical":
        if kw:
            raise ParseError("empirical() takes values only, e.g. empirical(1s, 2s, 5s)")
        return Empirical(tuple(pos))
    if name == "fixed":
        (v,) = need("value")
        return Fixed(v)
    raise ParseError(
        f"unknown distribution {name!r} in {text.strip()!r} "
        "(use uniform, normal, lognormal, exponential, empirical)"
    )


def parse_value(value: str | float | int | Sequence[float] | Dist, *, unit: str = "s") -> Dist:
    """Parse a parameter value in the text syntax above into a ``Dist``."""
    if isinstance(value, Dist):
        return value
    if isinstance(value, list | tuple):
        return Empirical(tuple(parse_duration(v, unit=unit) for v in value))
    if isinstance(value, str):
        terms = _split_top(value, "+")
        if not value.strip():
            raise ParseError("empty value")
        if any(not t.strip() for t in terms):
            raise ParseError(f"{value!r}: a '+' needs a value on each side")
        dists = [_one(t, unit) for t in terms]
        return dists[0] if len(dists) == 1 else Sum(tuple(dists))
    if isinstance(value, bool | int | float):
        return Fixed(parse_duration(value, unit=unit))
    raise ParseError(f"cannot read {value!r} as a value")
