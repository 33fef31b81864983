"""What every mechanism shares inside one trial.

Concepts
--------
A *trial* is one fault injection. The fault happens at t = 0 in a cluster that was in
steady state; every periodic timer starts at a random phase drawn from its stationary
distribution, so nothing before the fault is simulated.

Mechanisms are small objects holding a reference to the `Trial` and to the cluster
state they act on. They schedule their reactions on the SimPy environment, either as
processes (generators) or as plain callbacks (`Trial.at`), which cost fewer events. A
periodic timer that only matters when it crosses a threshold (the first monitor pass
after the grace period, the first health check after a target died) is *computed*, not
stepped tick by tick.

Whenever a mechanism changes state that a request's path depends on, it calls
`Trial.changed()`. The trial then re-evaluates availability a(t) through the design's
function and records a change point if it moved, and tells the listeners (e.g. an LB
health checker that must start checking a target whose health flipped).

Milestones (``node.not_ready``, ``endpoints.removed``, ...) are named instants; the first
occurrence after the fault is kept. Their names are registered in `MILESTONES`; the same
names are emitted by the live mode.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL

from chaoslab.outage import BaseLatency, SlowClasses, latency_metrics, no_latency_metrics
from chaoslab.params import Sampler

__all__ = ["MILESTONES", "Trial", "milestone_column", "register_milestones"]

_INF = float("inf")

#: milestone name -> what it marks. Columns ``at_<name with dots as underscores>``.
MILESTONES: dict[str, str] = {}


def register_milestones(names: dict[str, str]) -> None:
    for k, v in names.items():
        MILESTONES.setdefault(k, v)


def milestone_column(name: str) -> str:
    return "at_" + name.replace(".", "_").replace("-", "_")


register_milestones(
    {
        "service.recovered": "availability back to 1 for good (= recovery_s)",
    }
)


class _Call(simpy.Event):
    """A timeout that calls ``fn(*args)``: what `Trial.at` schedules.

    The same event SimPy's ``env.timeout`` makes (already triggered, value None, NORMAL
    priority, so the event order is unchanged), built without Timeout's argument checks
    and without a closure per call: per-event overhead is most of a short trial's cost.
    """

    __slots__ = ("args", "fn")

    def __init__(self, env: simpy.Environment, fn: Callable[..., Any], args: tuple[Any, ...]):
        self.env = env
        self.callbacks: list[Callable[[simpy.Event], None]] = [_fire]
        self._ok = True
        self._value = None
        self.fn = fn
        self.args = args


def _fire(ev: simpy.Event) -> None:
    ev.fn(*ev.args)  # type: ignore[attr-defined]


#: the callbacks of a `_Call` nobody else waits on: `Trial.run` calls its function itself
_FIRE_ONLY = [_fire]


_M128 = (1 << 128) - 1
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341  # numpy pcg64.h
#: PCG64.jump_inplace's step: ``jumped()`` advances a copy by this many draws
_JUMP = 0x9E3779B97F4A7C15F39CC0605CEDC835


def _lcg_advance(delta: int) -> tuple[int, int]:
    """(A, B) with state' = A x state + B x inc after ``delta`` LCG steps (numpy's
    pcg_advance_lcg_128 with the increment factored out: its sum is linear in inc)."""
    acc_mult, acc_plus, cur_mult, cur_plus = 1, 0, _PCG_MULT, 1
    while delta:
        if delta & 1:
            acc_mult = acc_mult * cur_mult & _M128
            acc_plus = (acc_plus * cur_mult + cur_plus) & _M128
        cur_plus = (cur_mult + 1) * cur_plus & _M128
        cur_mult = cur_mult * cur_mult & _M128
        delta >>= 1
    return acc_mult, acc_plus


_JUMP_A, _JUMP_B = _lcg_advance(_JUMP)


def pcg64_jump(state: int, inc: int) -> int:
    """The LCG state of ``PCG64.jumped()`` from a PCG64's (state, inc)."""
    return (_JUMP_A * state + _JUMP_B * inc) & _M128


class _Environment(simpy.Environment):
    """SimPy's environment without binding its event classes to each instance.

    ``Environment.__init__`` walks the class to bind ``process``/``timeout``/... early
    (~7 µs, a trial's own environment each time); here they bind on access, as methods do.
    """

    def __init__(self) -> None:
        self._now = 0  # SimPy's initial time, an int as there
        self._queue = []
        self._eid = count()
        self._active_proc = None


class Trial:
    """One trial's environment, random stream, parameters, milestones and a(t)."""

    __slots__ = (
        "_availability",
        "_blips",
        "_in_change",
        "_latency",
        "a_t",
        "a_v",
        "connections",
        "env",
        "horizon",
        "l_t",
        "l_v",
        "listeners",
        "milestones",
        "p",
        "rng",
        "spare",
    )

    def __init__(
        self,
        p: Sampler,
        rng: np.random.Generator,
        horizon: float,
        spare: np.random.Generator | None = None,
    ) -> None:
        self.env: simpy.Environment = _Environment()
        self.rng = rng
        #: a PCG64 generator this trial may take over for `jumped_rng` (the runner reuses
        #: one per chunk: making a bit generator costs more than a short trial's draws)
        self.spare = spare
        self.p = p
        self.horizon = horizon
        self.milestones: dict[str, float] = {}
        self.a_t: list[float] = [0.0]
        self.a_v: list[float] = [1.0]
        self.listeners: list[Callable[[], None]] = []
        self._availability: Callable[[], float] = lambda: 1.0
        #: (reset, hung) shares of established connections, if the design computed them
        #: over the trial itself (e.g. an ECMP re-hash long after the fault)
        self.connections: tuple[float, float] | None = None
        self._in_change = 0  # 0 idle, 1 notifying listeners, 2 dirty again
        #: (until, share): requests in flight when their path moved, see `blip`
        self._blips: list[tuple[float, float]] = []
        #: the design's slow classes, if it has a latency model (`set_latency`)
        self._latency: Callable[[], SlowClasses] | None = None
        self.l_t: list[float] = []
        self.l_v: list[SlowClasses] = []

    @property
    def now(self) -> float:
        return self.env._now  # (Environment.now is a property too: one call, not two)

    def at(self, delay: float, fn: Callable[..., Any], *args: Any) -> simpy.Event | None:
        """Call ``fn(*args)`` after ``delay`` seconds (nothing if beyond the horizon)."""
        if delay < 0:
            delay = 0.0
        env = self.env
        at = env._now + delay
        if at > self.horizon or delay == _INF:
            return None
        ev = _Call(env, fn, args)
        heappush(env._queue, (at, NORMAL, next(env._eid), ev))  # = env.schedule
        return ev

    def run(self) -> None:
        """Process every event before the horizon: ``env.run(until=horizon)``, same order.

        SimPy's ``run`` steps through ``Environment.step`` and an URGENT stop event at the
        horizon; this loop calls a `_Call`'s function directly (most of a trial's events)
        and steps any other event as SimPy does. Events at the horizon itself stay queued,
        as behind SimPy's stop event.
        """
        env = self.env
        queue = env._queue
        horizon = self.horizon
        next(env._eid)  # the stop event's id: event ids (and counts) stay SimPy's
        while queue and queue[0][0] < horizon:
            env._now, _, _, ev = heappop(queue)
            if type(ev) is _Call and ev.callbacks == _FIRE_ONLY:
                ev.callbacks = None  # type: ignore[assignment]  # processed
                ev.fn(*ev.args)
                continue
            callbacks, ev.callbacks = ev.callbacks, None  # type: ignore[assignment]
            for callback in callbacks:
                callback(ev)
            if not ev._ok and not hasattr(ev, "_defused"):
                raise type(ev._value)(*ev._value.args) from ev._value
        env._now = horizon

    def jumped_rng(self) -> np.random.Generator:
        """A stream of its own, independent of the trial's: what
        ``Generator(rng.bit_generator.jumped())`` gives now, bit for bit."""
        bitgen = self.rng.bit_generator
        if not isinstance(bitgen, np.random.PCG64):
            return np.random.Generator(bitgen.jumped())  # type: ignore[attr-defined]
        st = bitgen.state["state"]
        out = self.spare
        self.spare = None  # handed out: a second call gets its own
        if out is None:
            out = np.random.Generator(np.random.PCG64(0))
        out.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": pcg64_jump(st["state"], st["inc"]), "inc": st["inc"]},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return out

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.rng.random()

    def phase(self, period: float) -> float:
        """Offset of a periodic timer's next tick after t=0, stationary: U(0, period)."""
        return period * self.rng.random()

    def milestone(self, name: str) -> None:
        if name not in self.milestones:
            self.milestones[name] = self.env._now

    def set_availability(self, fn: Callable[[], float]) -> None:
        self._availability = fn
        self.a_v[0] = fn()

    def availability(self) -> float:
        """a(t) now as the design computes it (before blips)."""
        return self._availability()

    def set_latency(self, fn: Callable[[], SlowClasses]) -> None:
        """Record ``fn()``, the requests that succeed late (``((share, extra delay), ...)``,
        shares of all new requests), at every `changed`; no fault, nothing late at t=0."""
        self._latency = fn
        self.l_t = [0.0]
        self.l_v = [()]

    def latency_row(self, recovery_s: float) -> tuple[float, float]:
        """This trial's (slow_s, p99_latency_s) (`chaoslab.outage.latency_metrics`)."""
        p = self.p
        key = "client.request_duration"
        base = BaseLatency.of(p.dist(key) or p.draw(key))
        if self._latency is None:
            return no_latency_metrics(base, self.a_t, self.a_v, self.horizon)
        return latency_metrics(
            self.a_t,
            self.a_v,
            self.l_t,
            self.l_v,
            self.horizon,
            recovery_s=recovery_s,
            threshold=p.draw("client.slow_threshold"),
            base=base,
        )

    def _record_latency(self, t: float, factor: float) -> None:
        assert self._latency is not None
        classes = self._latency()
        if factor != 1.0:
            classes = tuple((s * factor, d) for s, d in classes)
        if classes == self.l_v[-1]:
            return
        if self.l_t[-1] == t:
            self.l_v[-1] = classes
        else:
            self.l_t.append(t)
            self.l_v.append(classes)

    def blip(self, duration: float, share: float = 1.0) -> None:
        """A path moved to another live node: requests in flight on it are reset there.

        The requests that fail are those sent during the last ``duration`` (their SYN went
        the old way, the rest of the exchange the new way), a ``share`` of all requests.
        a(t) cannot be rewritten backwards, so the dip is placed just after the move: the
        same ``lost_s``, ``recovery_s`` late by at most ``duration``.
        """
        if duration <= 0 or share <= 0:
            return
        self._blips.append((self.env.now + duration, min(share, 1.0)))
        self.changed()
        self.at(duration, self.changed)

    def changed(self) -> None:
        """Re-evaluate a(t) after a state change and notify listeners."""
        a = self._availability()
        t = self.env._now
        factor = 1.0
        if self._blips:
            live = [b for b in self._blips if b[0] > t]
            self._blips = live
            for _, share in live:
                a *= 1.0 - share
                factor *= 1.0 - share
        if self._latency is not None:
            self._record_latency(t, factor)
        a_v = self.a_v
        if a != a_v[-1]:
            a_t = self.a_t
            if a_t[-1] == t:
                a_v[-1] = a
                # merging may make two neighbours equal
                if len(a_v) > 1 and a_v[-2] == a:
                    a_t.pop()
                    a_v.pop()
            else:
                a_t.append(t)
                a_v.append(a)
        if self._in_change:
            self._in_change = 2  # a listener changed state: run the listeners once more
            return
        self._in_change = 1
        try:
            for _ in range(10):
                for listener in self.listeners:
                    listener()
                if self._in_change == 1:
                    break
                self._in_change = 1
        finally:
            self._in_change = 0
