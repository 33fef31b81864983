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
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.node import next_tick

__all__ = ["CheckResult", "LbHealthChecker"]

register_milestones(
    {
        "lb.marked_down": "the external LB took a failed target out of rotation",
        "lb.marked_up": "the external LB put a target back into rotation",
    }
)

#: (check passes, target answers at all). A target that does not answer costs the timeout.
CheckResult = tuple[bool, bool]


class LbHealthChecker:
    def __init__(
        self,
        trial: Trial,
        targets: Sequence[Node],
        check: Callable[[Node], CheckResult],
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
        self.up = {n.name: check(n)[0] for n in self.targets}
        self.phase = {n.name: trial.phase(self.interval) for n in self.targets}
        # grid of the checks of a target that stopped answering (after-completion schedule)
        self.period = {n.name: self.interval for n in self.targets}
        self._active: set[str] = set()
        trial.listeners.append(self._on_change)

    def in_rotation(self) -> list[Node]:
        nodes = [n for n in self.targets if self.up[n.name]]
        if not nodes and self.fail_open:
            return list(self.targets)
        return nodes

    def _on_change(self) -> None:
        for node in self.targets:
            if node.name in self._active:
                continue
            if self.check(node)[0] != self.up[node.name]:
                self._active.add(node.name)
                self.trial.env.process(self._checking(node))

    def _checking(self, node: Node) -> Generator[Any, Any, None]:
        env = self.trial.env
        name = node.name
        t = next_tick(self.phase[name], self.period[name], env.now)
        streak = 0
        while True:
            if t > self.trial.horizon:
                break
            yield env.timeout(t - env.now)
            ok, answers = self.check(node)
            if ok == self.up[name]:
                streak = 0
                if self.check(node)[0] == self.up[name]:
                    break
            else:
                streak += 1
                if streak >= (self.fall if self.up[name] else self.rise):
                    done = t if (ok or answers) else t + self.timeout
                    if done > env.now:
                        yield env.timeout(done - env.now)
                    self.up[name] = not self.up[name]
                    self.trial.milestone("lb.marked_up" if self.up[name] else "lb.marked_down")
                    streak = 0
                    self.trial.changed()
                    if self.check(node)[0] == self.up[name]:
                        break
            # an unanswered check ends at its timeout; HAProxy then waits a full interval
            gap = self.interval
            if self.after_completion and not ok and not answers:
                gap += self.timeout
            self.phase[name], self.period[name] = t % gap, gap
            t += gap
        self._active.discard(name)
