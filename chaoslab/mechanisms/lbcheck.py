"""External load-balancer health checks (HAProxy, AWS NLB, GCP ...).

Covers: one check per target every ``lb.interval`` on a random phase; a check of a dead or
cut-off node gets no answer and fails after ``lb.timeout``; a live node answering 503
(``externalTrafficPolicy: Local`` with no local endpoint) fails at once. ``lb.fall``
consecutive failures take the target out of rotation, ``lb.rise`` consecutive passes put
it back. With every target down the LB answers 503 itself, or sends to all of them when
it fails open (``lb.fail_open``, AWS NLB).

When the next check starts (``lb.check_schedule``):

- ``fixed-rate`` — on the grid ``phase + k * interval`` whatever the last check did. A target
  that dies at t = 0 is marked down at ``(fall - 1) * interval + U(0, interval) + timeout``,
  i.e. within [(fall - 1) * interval, fall * interval] + timeout.
- ``after-completion`` (HAProxy, ``src/check.c``: the next check is due ``inter`` after the
  previous one completed) — an unanswered check delays the next one by its timeout: marked
  down at ``U(0, interval) + fall * timeout + (fall - 1) * interval``. The lab measured this
  (docs/lab.md): 5.1-5.9 s for inter 1 s, timeout 1 s, fall 3, where the grid gives 3-4 s.

Checks are only stepped while a target's health differs from its marked state; a healthy
cluster costs no events.

Marking is not routing. ``marked`` is the health state the LB reports; ``up`` is what its
data plane sends new connections by, and follows a mark ``lb.propagation`` later (0 for
HAProxy; 30-40 s measured for an AWS NLB, aws/containers-roadmap #470). A target that dies
at t = 0 therefore takes new connections until marked down + propagation: with fixed-rate
checks, ``(fall - 1) * interval + U(0, interval) + timeout + propagation``.

Graceful removal and new targets (for topologies whose target set changes: a node leaving
or joining the target group, IP-mode pod targets):

- `deregister`: the target keeps getting new connections for
  ``lb.deregistration_propagation`` (AWS: ~120 s whatever the delay, several reports), then
  none; its established connections drain until ``max(that, lb.deregistration_delay)``
  after the call (AWS default 300 s) and are ended then (`carries_established`).
- `register`: the target's first health check comes ``lb.registration_time`` after the call
  (AWS: 70-120 s measured, "a few minutes" documented); one passing check puts it in service
  (AWS troubleshooting doc: "not in service until it passes one health check"), routed
  ``lb.propagation`` after that. Registering a target that is still draining cancels its
  deregistration and starts it over as a new target.

Targets are nodes (NodePort / instance targets) or pods (IP targets): anything with a
``name``. `unhealthy_routed_out` names the targets whose connections an LB that resets
them on unhealthy targets (``lb.unhealthy_connection_termination``) has reset; `LbResets`
keeps the entry nodes so reset for a topology's ``delivers_to``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.node import next_tick

__all__ = ["CheckResult", "LbHealthChecker", "LbResets"]

register_milestones(
    {
        "lb.marked_down": "the external LB took a failed target out of rotation",
        "lb.marked_up": "the external LB put a target back into rotation",
        "lb.routed_out": "the external LB's data plane stopped sending new connections to a "
        "target marked down (only where that lags the mark: lb.propagation > 0)",
        "lb.routed_in": "the external LB's data plane sent new connections to a target marked "
        "up again (only where that lags the mark: lb.propagation > 0)",
        "lb.deregistered": "a deregistered target's drain ended; its connections were ended",
        "cloud_lb.reset": "the LB reset the established connections of a target (routed out "
        "as unhealthy, or at the end of its drain)",
    }
)

#: (check passes, target answers at all). A target that does not answer costs the timeout.
CheckResult = tuple[bool, bool]


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class LbHealthChecker(Generic[T]):
    def __init__(
        self,
        trial: Trial,
        targets: Sequence[T],
        check: Callable[[T], CheckResult],
    ) -> None:
        p = trial.p
        self.trial = trial
        self.targets = list(targets)
        self.check = check
        self.interval = p.draw("lb.interval")
        self.timeout = p.draw("lb.timeout")
        self.fall = max(1, p.count("lb.fall"))
        self.rise = max(1, p.count("lb.rise"))
        self.fail_open = p.flag("lb.fail_open")
        self.after_completion = p.choice("lb.check_schedule") == "after-completion"
        # steady state: each target marked as its health check answers before the fault
        self.marked = {n.name: check(n)[0] for n in self.targets}
        #: what the data plane routes new connections by: follows `marked` after propagation
        self.up = dict(self.marked)
        self.phase = {n.name: trial.phase(self.interval) for n in self.targets}
        # grid of the checks of a target that stopped answering (after-completion schedule)
        self.period = {n.name: self.interval for n in self.targets}
        #: the last routing change scheduled per target (changes apply in mark order)
        self._route_at: dict[str, float] = {}
        #: registered targets not yet in service, and their first check's instant
        self._initial: dict[str, float] = {}
        #: deregistered targets whose established connections still pass: drain end
        self.draining: dict[str, float] = {}
        self._active: set[str] = set()
        #: bumped at each (re)registration: a stale drop, drain end or check loop does nothing
        self._gen: dict[str, int] = {}
        trial.listeners.append(self._on_change)

    def in_rotation(self) -> list[T]:
        nodes = [n for n in self.targets if self.up[n.name]]
        if not nodes and self.fail_open:
            return list(self.targets)
        return nodes

    def carries_established(self, node: T) -> bool:
        """The LB still forwards the target's established connections (registered or
        draining after a deregistration)."""
        return node in self.targets or node.name in self.draining

    def unhealthy_routed_out(self) -> list[T]:
        """Registered targets the data plane treats as unhealthy now (marked down and
        routed out); none while the LB fails open (every target down)."""
        if self.fail_open and not any(self.up[n.name] for n in self.targets):
            return []
        return [
            n
            for n in self.targets
            if not self.up[n.name] and not self.marked[n.name] and n.name not in self._initial
        ]

    def register(self, node: T) -> None:
        """A new target: first check ``lb.registration_time`` from now, in service after one
        passing check (then routed ``lb.propagation`` later)."""
        name = node.name
        first = self.trial.now + self.trial.p.draw("lb.registration_time")
        gen = self._gen[name] = self._gen.get(name, 0) + 1
        self.draining.pop(name, None)
        if node not in self.targets:
            self.targets.append(node)
        self.marked[name] = self.up[name] = False
        self._route_at.pop(name, None)
        self.phase[name], self.period[name] = first % self.interval, self.interval
        self._initial[name] = first
        self._active.add(name)
        self.trial.env.process(self._checking(node, gen))
        self.trial.changed()

    def deregister(self, node: T) -> None:
        """Graceful removal: new connections for ``lb.deregistration_propagation``, the
        established ones until the drain ends (``lb.deregistration_delay``, at least that)."""
        p = self.trial.p
        stop = p.draw("lb.deregistration_propagation")
        drain = max(stop, p.draw("lb.deregistration_delay"))
        gen = self._gen.get(node.name, 0)
        self.draining[node.name] = self.trial.now + drain
        self.trial.at(stop, self._drop, node, gen)
        self.trial.at(drain, self._drained, node, gen)

    def _drop(self, node: T, gen: int) -> None:
        if gen == self._gen.get(node.name, 0) and node in self.targets:
            self.targets.remove(node)
            self._initial.pop(node.name, None)
            self.trial.changed()

    def _drained(self, node: T, gen: int) -> None:
        if gen != self._gen.get(node.name, 0):
            return  # registered again meanwhile
        self.draining.pop(node.name, None)
        self.trial.milestone("lb.deregistered")
        self.trial.changed()

    def _route(self, name: str) -> None:
        """The data plane follows the new mark after ``lb.propagation``."""
        state = self.marked[name]
        delay = self.trial.p.draw("lb.propagation")
        now = self.trial.now
        last = self._route_at.get(name, -math.inf)
        if delay <= 0 and last <= now:
            self.up[name] = state  # HAProxy: the checker is the data plane
            return
        # a later mark never overtakes an earlier one still on its way
        at = max(now + delay, last)
        self._route_at[name] = at
        self.trial.at(at - now, self._routed, name, state)

    def _routed(self, name: str, state: bool) -> None:
        if self.up.get(name) == state:
            return
        self.up[name] = state
        self.trial.milestone("lb.routed_in" if state else "lb.routed_out")
        self.trial.changed()

    def _on_change(self) -> None:
        for node in self.targets:
            if node.name in self._active:
                continue
            if self.check(node)[0] != self.marked[node.name]:
                self._active.add(node.name)
                self.trial.env.process(self._checking(node, self._gen.get(node.name, 0)))

    def _threshold(self, name: str) -> int:
        if name in self._initial:
            return 1
        return self.fall if self.marked[name] else self.rise

    def _checking(self, node: T, gen: int) -> Generator[Any, Any, None]:
        env = self.trial.env
        name = node.name
        t = next_tick(self.phase[name], self.period[name], max(env.now, self._initial.get(name, 0)))
        streak = 0
        while node in self.targets:
            if t > self.trial.horizon:
                break
            yield env.timeout(t - env.now)
            if gen != self._gen.get(name, 0):
                return  # registered again: the new registration's loop checks it
            ok, answers = self.check(node)
            if ok == self.marked[name]:
                streak = 0
                if self.check(node)[0] == self.marked[name]:
                    break
            else:
                streak += 1
                if streak >= self._threshold(name):
                    done = t if (ok or answers) else t + self.timeout
                    if done > env.now:
                        yield env.timeout(done - env.now)
                    self._initial.pop(name, None)
                    self.marked[name] = not self.marked[name]
                    self.trial.milestone("lb.marked_up" if self.marked[name] else "lb.marked_down")
                    streak = 0
                    self._route(name)
                    self.trial.changed()
                    if self.check(node)[0] == self.marked[name]:
                        break
            # an unanswered check ends at its timeout; HAProxy then waits a full interval
            gap = self.interval
            if self.after_completion and not ok and not answers:
                gap += self.timeout
            self.phase[name], self.period[name] = t % gap, gap
            t += gap
        self._active.discard(name)


class LbResets(Generic[T]):
    """The entry nodes whose established connections the LB has reset (``reset``), for
    `Topology.delivers_to`: a connection of such a node is reset, not hung."""

    def __init__(
        self, trial: Trial, lb: LbHealthChecker[T], node_of: Callable[[T], Node | None]
    ) -> None:
        self.trial = trial
        self.lb = lb
        self.node_of = node_of
        self.reset: set[str] = set()
        if trial.p.flag("lb.unhealthy_connection_termination"):
            trial.listeners.append(self._unhealthy)

    def add(self, target: T) -> None:
        node = self.node_of(target)
        if node is not None and node.name not in self.reset:
            self.reset.add(node.name)
            self.trial.milestone("cloud_lb.reset")
            self.trial.changed()

    def _unhealthy(self) -> None:
        for target in self.lb.unhealthy_routed_out():
            self.add(target)
