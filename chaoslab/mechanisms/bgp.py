"""BGP sessions between the nodes' speakers and one router, with BFD and graceful restart.

Closed forms (docs/model-network.md, BGP, BFD, graceful restart):

- Hold time is negotiated to the lower of both ends' proposals. The speaker sends a
  keepalive every ``keepalive_time`` (0: negotiated hold / 3; never more than hold / 3),
  each interval shortened by a uniform share up to ``bgp.keepalive_jitter`` (RFC 4271
  section 10: 0.75-1.0). When a node goes silent at t = 0, the router's hold timer runs
  out at ``last keepalive + hold``: within [hold - keepalive, hold] after the fault. The
  time since the last keepalive is the backward recurrence time of the jittered renewal
  process (a length-biased interval, then a uniform point in it).
- BFD (RFC 5880 section 6.8.4): detection = remote DetectMult x max(local
  RequiredMinRx, remote DesiredMinTx); after a silent failure the router declares the
  session down within [detection - tx, detection]. BFD down tears the BGP session down
  (BIRD restarts it, FRR ``neighbor X bfd`` resets it); stale routes are not kept.
- Graceful restart (RFC 4724): when the session drops without a Cease (hold expiry, TCP
  reset of a killed daemon) and the speaker advertised GR, the router keeps the routes
  as stale for the Restart Time, then deletes them, unless the session is back first.
- SIGTERM of the speaker sends a Cease: routes go at once. SIGKILL closes the TCP socket
  (the kernel answers for the dead process): the router sees the drop at once.
- A speaker withdraws the VIP ``bgp.withdraw_delay`` after it left the interface.
- The router programs each change into its FIB after ``router.fib_update_time``, counted
  once: a flush after a hold expiry (``bgp.hold_expiry_flush_delay`` > 0) was measured up
  to the kernel route, so it is programmed at once.
- A single-path router (``router.multipath`` false) installs one best path: the lowest
  BGP Identifier (speaker order, RFC 4271 section 9.1.2.2 f) or the oldest session
  (``router.best_path: oldest``, Cisco IOS); a dead best next hop takes all traffic until
  it is withdrawn.
- A session comes back ``bgp.connect_delay`` after the speaker (re)starts or its node
  returns, or ``bgp.error_wait_time`` after an error while both ends stayed up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node

__all__ = ["BgpFabric", "bfd_detection_time", "keepalive_age", "negotiated_hold"]

register_milestones(
    {
        "bgp.session_down": "the router declared a BGP session to a failed node down",
        "bfd.down": "BFD declared the failed node's session down",
        "bgp.withdrawn": "the router's FIB no longer has the failed node as a next hop",
        "bgp.stale_kept": "graceful restart: the router keeps the node's routes as stale",
        "bgp.established": "a BGP session to a returning node is Established again",
        "ecmp.rehashed": "the router's ECMP group changed (flows moved between next hops)",
    }
)


def negotiated_hold(local: float, remote: float) -> float:
    """RFC 4271 section 4.2: the smaller of both proposals (0 disables keepalives)."""
    if local == 0 or remote == 0:
        return 0.0
    return min(local, remote)


def keepalive_interval(configured: float, hold: float) -> float:
    if hold == 0:
        return math.inf
    return hold / 3.0 if configured <= 0 else min(configured, hold / 3.0)


def bfd_detection_time(remote_mult: float, local_rx: float, remote_tx: float) -> float:
    """RFC 5880 section 6.8.4 asynchronous-mode detection time."""
    return remote_mult * max(local_rx, remote_tx)


def keepalive_age(rng_u1: float, rng_u2: float, interval: float, jitter: float) -> float:
    """Time since the last keepalive at a random instant (stationary renewal process)."""
    a, b = interval * (1.0 - jitter), interval
    # interval lengths are U(a, b); the one covering a random instant is length-biased
    length = math.sqrt(a * a + rng_u1 * (b * b - a * a))
    return rng_u2 * length


class _Session:
    __slots__ = ("announced", "epoch", "gr_epoch", "node", "rib", "since", "up")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.up = True  # Established
        self.announced = True  # the speaker announces the VIP on this session
        self.rib = "active"  # router's routes via this node: active, stale, none
        self.epoch = 0
        self.gr_epoch = 0
        self.since = 0.0  # when the route via this node was last learned (best path: oldest)


class BgpFabric:
    """The router and one BGP session per speaker node; the FIB is an ECMP group."""

    def __init__(
        self,
        trial: Trial,
        speakers: Sequence[Node],
        announcing: Callable[[Node], bool],
        on_fib: Callable[[list[Node], list[Node]], None],
    ) -> None:
        p = trial.p
        self.trial = trial
        self.announcing = announcing
        self.on_fib = on_fib
        self.hold = negotiated_hold(p.draw("bgp.hold_time"), p.draw("bgp.peer_hold_time"))
        self.keepalive = keepalive_interval(p.draw("bgp.keepalive_time"), self.hold)
        self.jitter = p.draw("bgp.keepalive_jitter")
        self.gr = p.flag("bgp.graceful_restart")
        self.llgr = p.flag("bgp.long_lived_graceful_restart")
        self.hold_jitter = p.draw("bgp.hold_timer_jitter")
        self.bfd = p.flag("bfd.enabled")
        self.bfd_tx = p.draw("bfd.interval")
        self.bfd_detect = bfd_detection_time(
            p.draw("bfd.multiplier"), p.draw("bfd.min_rx"), self.bfd_tx
        )
        self.multipath = p.flag("router.multipath")
        self.oldest = p.choice("router.best_path") == "oldest"
        self.sessions = {n.name: _Session(n) for n in speakers}
        for s in self.sessions.values():
            s.announced = announcing(s.node)
            s.rib = "active" if s.announced else "none"
        self.fib: list[Node] = self._installed()
        self._seen = {n.name: (n.powered, n.net_up) for n in speakers}
        self._daemon = {n.name: True for n in speakers}
        self._fib_epoch = 0
        trial.listeners.append(self._on_change)

    # ------------------------------------------------------------------ detection
    def detection_delay(self) -> tuple[float, bool]:
        """(delay until the router drops a session to a node that went silent now, by BFD)."""
        rng = self.trial.rng
        hold = math.inf
        if self.hold > 0:
            # the router re-armed its (possibly jittered) hold timer at the last keepalive
            armed = self.hold * (1.0 - self.hold_jitter * rng.random())
            hold = armed - keepalive_age(rng.random(), rng.random(), self.keepalive, self.jitter)
        if self.bfd:
            bfd = self.bfd_detect - self.bfd_tx * rng.random()
            if bfd < hold:
                return (bfd, True)
        return (hold, False)

    def _on_change(self) -> None:
        for s in self.sessions.values():
            n = s.node
            state = (n.powered, n.net_up)
            old = self._seen[n.name]
            if state == old:
                # only a live speaker can send an UPDATE
                live = s.up and n.reachable and self._daemon[n.name]
                if live and s.announced != self._wants(s):
                    self._announce_change(s)
                continue
            self._seen[n.name] = state
            was_ok, ok = old[0] and old[1], n.reachable
            if was_ok and not ok:
                self._silent(s)
            elif ok and not was_ok:
                self._back(s, rebooted=not old[0])

    def _wants(self, s: _Session) -> bool:
        return self._daemon[s.node.name] and s.node.reachable and self.announcing(s.node)

    def _silent(self, s: _Session) -> None:
        s.epoch += 1
        if not s.up:
            return
        delay, by_bfd = self.detection_delay()
        self.trial.at(delay, self._detected, s, s.epoch, by_bfd)

    def _detected(self, s: _Session, epoch: int, by_bfd: bool) -> None:
        if epoch != s.epoch or not s.up:
            return
        if by_bfd:
            self.trial.milestone("bfd.down")
            self._session_down(s, keep_stale=False)
            return
        # hold expiry: NOTIFICATION, then (BIRD) a flush some time later; stale routes
        # are kept only with long-lived graceful restart (BIRD bgp_hold_timeout)
        keep = self.gr and self.llgr
        flush = self.trial.p.draw("bgp.hold_expiry_flush_delay")
        if keep or flush <= 0:
            self._session_down(s, keep_stale=keep)
        else:
            s.up = False
            self.trial.milestone("bgp.session_down")
            self.trial.at(flush, self._flush, s, s.epoch)

    def _flush(self, s: _Session, epoch: int) -> None:
        if epoch != s.epoch or s.up or s.rib == "none":
            return
        s.rib = "none"
        # the flush delay was measured up to the kernel route: no FIB time on top
        self._fib_epoch += 1
        self._program(self._fib_epoch)

    def _back(self, s: _Session, *, rebooted: bool) -> None:
        s.epoch += 1
        if s.up:
            return  # the session survived (blip shorter than the detection time)
        if rebooted:
            self._daemon[s.node.name] = True
            wait = self.trial.p.draw("bgp.connect_delay")
        else:
            wait = self.trial.p.draw("bgp.error_wait_time")
        self.trial.at(wait, self._establish, s, s.epoch)

    # ------------------------------------------------------------------ daemon faults
    def kill(self, node: Node, signal: str) -> None:
        s = self.sessions[node.name]
        self._daemon[node.name] = False
        s.epoch += 1
        if s.up:
            # TERM: Cease notification, routes go now; KILL: TCP reset, GR may keep them
            self._session_down(s, keep_stale=self.gr and signal == "KILL")

    def start(self, node: Node) -> None:
        s = self.sessions[node.name]
        self._daemon[node.name] = True
        s.epoch += 1
        if not s.up and node.reachable:
            self.trial.at(self.trial.p.draw("bgp.connect_delay"), self._establish, s, s.epoch)

    # ------------------------------------------------------------------ session state
    def _session_down(self, s: _Session, *, keep_stale: bool) -> None:
        s.up = False
        self.trial.milestone("bgp.session_down")
        if s.rib == "none":
            return
        if keep_stale:
            s.rib = "stale"
            self.trial.milestone("bgp.stale_kept")
            s.gr_epoch += 1
            self.trial.at(
                self.trial.p.draw("bgp.graceful_restart_time"), self._gr_expired, s, s.gr_epoch
            )
        else:
            s.rib = "none"
            self._fib_changed()

    def _gr_expired(self, s: _Session, epoch: int) -> None:
        if epoch == s.gr_epoch and s.rib == "stale":
            s.rib = "none"
            self._fib_changed()

    def _establish(self, s: _Session, epoch: int) -> None:
        if epoch != s.epoch or s.up or not s.node.reachable or not self._daemon[s.node.name]:
            return
        s.up = True
        s.gr_epoch += 1
        self.trial.milestone("bgp.established")
        want = self._wants(s)
        s.announced = want
        new = "active" if want else "none"
        if new != s.rib:
            self._set_rib(s, new)
            self._fib_changed()

    def _announce_change(self, s: _Session) -> None:
        want = self._wants(s)
        s.announced = want
        delay = self.trial.p.draw("bgp.withdraw_delay") if not want else 0.0
        self.trial.at(delay, self._apply_announce, s, want)

    def _apply_announce(self, s: _Session, want: bool) -> None:
        if not s.up or s.announced != want:
            return
        new = "active" if want else "none"
        if s.rib != new:
            self._set_rib(s, new)
            self._fib_changed()

    def _set_rib(self, s: _Session, rib: str) -> None:
        if s.rib == "none" and rib != "none":
            s.since = self.trial.now
        s.rib = rib

    def _installed(self) -> list[Node]:
        """Next hops in the FIB: every route (ECMP) or the one best path."""
        routes = [s for s in self.sessions.values() if s.rib != "none"]
        if self.multipath or not routes:
            return [s.node for s in routes]
        # speakers are in BGP Identifier order; min() keeps the first of equal keys
        best = min(routes, key=lambda s: s.since) if self.oldest else routes[0]
        return [best.node]

    def _fib_changed(self) -> None:
        self._fib_epoch += 1
        self.trial.at(self.trial.p.draw("router.fib_update_time"), self._program, self._fib_epoch)

    def _program(self, epoch: int) -> None:
        if epoch != self._fib_epoch:
            return
        new = self._installed()
        if new == self.fib:
            return
        old = self.fib
        if any(n not in new for n in old):
            self.trial.milestone("bgp.withdrawn")
        self.fib = new
        self.trial.milestone("ecmp.rehashed")
        self.on_fib(old, new)
        self.trial.changed()
