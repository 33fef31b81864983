"""VRRP (keepalived): who holds the VIP, and when a backup takes over.

Closed forms (docs/model-network.md, VRRP; RFC 3768/5798 section 6.1):

- Skew_Time: v2 ``(256 - prio) / 256`` s, independent of the advert interval;
  v3 ``(256 - prio) * Master_Adver_Interval / 256``.
- Master_Down_Interval = ``down_timer_adverts`` (3) x advert + Skew_Time:
  3.609 s at priority 100, 3.414 s at 150 (1 s adverts).
- A crashed master (SIGKILL, power loss, cut off): each backup becomes MASTER at the
  master's last advert + its Master_Down_Interval; the master's adverts run on a grid at
  a random phase, so takeover after the fault is in [MDI - advert, MDI].
- SIGTERM (and a vrrp_script with weight 0 going KO -> FAULT): the master sends a
  priority-0 advert; backups set their down timer to Skew_Time.
- Preemption (default on): a backup with a higher priority than the master discards its
  adverts and takes over after its own Master_Down_Interval (+ ``preempt_delay``) from the
  last accepted advert (or from its start). ``nopreempt`` disables it.
- Two masters that hear each other (a healed partition): the one with the lower
  priority, or on a tie the lower IP (node index), goes back to BACKUP; the winner
  answers the loser's advert with GARPs (``vrrp_garp_lower_prio_repeat``).
- ``vrrp_script`` (interval, fall, rise, weight): KO after ``fall`` failed runs on the
  script's own grid. weight 0 -> FAULT; weight w -> priority lowered by |w|.
- ``vrrp_track_process`` (keepalived 2.0.11+): the tracker hears the process's exit from
  the kernel's process events, so it changes state ``process_delay`` after the exit (no
  grid, no fall count); weight as for a script.
- A new MASTER adds the VIP and sends ``garp_master_repeat`` GARPs at once, again after
  ``garp_master_delay``, and with ``garp_master_refresh`` R > 0 ``garp_master_refresh_repeat``
  more while it stays MASTER, on one of two schedules (`garp_refresh_offsets`):
  ``timer`` (keepalived 2.3.2+, commit b1d9e375: vrrp.c vrrp_state_become_master starts a
  timer thread at delay + R, vrrp_scheduler.c re-arms it every R) or ``advert`` (keepalived
  1.2.10-2.3.1, Debian 12's 2.2.7: become_master sets the refresh timer to T + R, and
  vrrp_state_master_tx sends the refresh with the first advert after it, re-arming from that
  advert: every ceil(R / advert) adverts, the delay plays no part).
  ``on_garp(node, frames)`` gets each burst's frame count: a neighbour that loses frames
  (``arp.garp_loss``) misses a burst of r with loss^r.

Adverts are never stepped: the group re-evaluates who hears whom when something changes
(node power/network, daemon, script) and computes each backup's down-timer deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.node import last_tick, next_tick

__all__ = ["VrrpGroup", "garp_refresh_offsets", "master_down_interval", "skew_time"]

register_milestones(
    {
        "vrrp.master_changed": "a keepalived instance other than the old master is MASTER",
        "vrrp.prio0_sent": "the old master sent a priority-0 advert (SIGTERM or FAULT)",
        "vrrp.fault": "a vrrp_script put the master in FAULT (weight 0)",
    }
)


def skew_time(version: int, priority: float, adver: float) -> float:
    """RFC 3768 (v2) / RFC 5798 (v3) Skew_Time in seconds."""
    if version >= 3:
        return (256.0 - priority) * adver / 256.0
    return (256.0 - priority) / 256.0


def master_down_interval(version: int, priority: float, adver: float, adverts: int = 3) -> float:
    return adverts * adver + skew_time(version, priority, adver)


def garp_refresh_grid(
    schedule: str, refresh: float, *, delay: float, adver: float
) -> tuple[float, float]:
    """(first, period) of the refresh bursts after becoming MASTER (``refresh`` > 0).

    ``timer``: delay + k * refresh, k >= 1. ``advert``: the refresh rides the master's
    adverts at k * adver; it goes with the first advert after the refresh deadline
    (``timercmp(&time_now, &garp_refresh_timer, >)``: each advert runs a little after its
    tick, so one due exactly on a tick goes with it), and the deadline is re-armed from that
    advert: every n = ceil(refresh / adver) adverts.
    """
    if schedule == "timer":
        return delay + refresh, refresh
    # the 1e-9 keeps a refresh of a whole number of adverts on that advert
    period = adver * max(1, math.ceil(refresh / adver - 1e-9))
    return period, period


def garp_refresh_offsets(
    schedule: str, refresh: float, *, delay: float, adver: float, until: float
) -> list[float]:
    """Offsets after becoming MASTER of the refresh bursts up to ``until`` (none if off)."""
    if refresh <= 0:
        return []
    first, period = garp_refresh_grid(schedule, refresh, delay=delay, adver=adver)
    n = math.floor((until - first) / period + 1e-9) + 1 if until >= first else 0
    return [first + k * period for k in range(n)]


class _Inst:
    __slots__ = (
        "base_prio",
        "daemon",
        "deadline_epoch",
        "garp_epoch",
        "heard",
        "index",
        "last_rx",
        "node",
        "phase",
        "script_ok",
        "script_pending",
        "state",
    )

    def __init__(self, node: Node, prio: float, index: int) -> None:
        self.node = node
        self.base_prio = prio
        self.index = index
        self.daemon = True  # keepalived process running
        self.state = "BACKUP"  # BACKUP, MASTER, FAULT, DOWN
        self.phase = 0.0  # advert grid of a master
        self.last_rx = 0.0  # last accepted advert (backup)
        self.heard: _Inst | None = None  # master whose adverts it accepts now
        self.deadline_epoch = 0
        self.garp_epoch = 0  # bumped at every MASTER transition: old refresh loops stop
        self.script_ok = True
        self.script_pending = False


class VrrpGroup:
    """One virtual router (one VIP) over keepalived instances on ``nodes``.

    ``on_vip(node, present)`` is called when a node adds or removes the VIP; ``on_garp(node,
    frames)`` when it sends a burst of gratuitous ARPs; ``healthy(node)`` is what a
    vrrp_script or vrrp_track_process checks.
    """

    def __init__(
        self,
        trial: Trial,
        nodes: list[Node],
        priorities: list[float],
        *,
        on_vip: Callable[[Node, bool], None],
        on_garp: Callable[[Node, int], None],
        healthy: Callable[[Node], bool] | None = None,
    ) -> None:
        p = trial.p
        self.trial = trial
        self.version = p.count("vrrp.version")
        self.adver = p.draw("vrrp.advert_int")
        self.adverts = max(1, p.count("vrrp.down_timer_adverts"))
        self.preempt = not p.flag("vrrp.nopreempt")
        self.preempt_delay = p.draw("vrrp.preempt_delay")
        self.garp_repeat = p.count("vrrp.garp_master_repeat")
        self.garp_delay = p.draw("vrrp.garp_master_delay")
        self.garp_refresh = p.draw("vrrp.garp_master_refresh")
        self.garp_refresh_repeat = p.count("vrrp.garp_master_refresh_repeat")
        #: (first, period) of the refresh bursts after a MASTER transition
        self.garp_grid = (
            garp_refresh_grid(
                p.choice("vrrp.garp_refresh_schedule"),
                self.garp_refresh,
                delay=self.garp_delay,
                adver=self.adver,
            )
            if self.garp_refresh > 0
            else (math.inf, math.inf)
        )
        #: vrrp_track_process (event-driven) instead of a polling vrrp_script
        self.by_process = p.flag("vrrp.track_process") and healthy is not None
        self.track = (p.flag("vrrp.track_script") or self.by_process) and healthy is not None
        self.script_interval = p.draw("vrrp.script_interval")
        self.script_fall = max(1, p.count("vrrp.script_fall"))
        self.script_rise = max(1, p.count("vrrp.script_rise"))
        if self.by_process:
            self.process_delay = p.draw("vrrp.process_delay")
            self.script_weight = abs(p.draw("vrrp.process_weight"))
        else:
            self.script_weight = abs(p.draw("vrrp.script_weight"))
        self.script_phase = trial.phase(self.script_interval)
        self.on_vip = on_vip
        self.on_garp = on_garp
        self.healthy = healthy
        self.insts = [
            _Inst(n, pr, i) for i, (n, pr) in enumerate(zip(nodes, priorities, strict=True))
        ]
        self.by_node = {i.node.name: i for i in self.insts}
        # steady state: the highest (priority, IP) is MASTER, the others accept its adverts
        master = max(self.insts, key=lambda i: (i.base_prio, i.index))
        master.state = "MASTER"
        master.phase = trial.phase(self.adver)
        for inst in self.insts:
            if inst is not master:
                inst.heard = master
        self.initial_master = master.node
        self._seen = {i.node.name: (i.node.powered, i.node.net_up) for i in self.insts}
        trial.listeners.append(self._on_change)

    # ------------------------------------------------------------------ queries
    def masters(self) -> list[Node]:
        return [i.node for i in self.insts if i.state == "MASTER"]

    def prio(self, inst: _Inst) -> float:
        if self.track and not inst.script_ok and self.script_weight > 0:
            return max(1.0, inst.base_prio - self.script_weight)
        return inst.base_prio

    def mdi(self, inst: _Inst) -> float:
        return master_down_interval(self.version, self.prio(inst), self.adver, self.adverts)

    def skew(self, inst: _Inst) -> float:
        return skew_time(self.version, self.prio(inst), self.adver)

    @staticmethod
    def _talk(a: _Inst, b: _Inst) -> bool:
        return a.node.reachable and b.node.reachable

    def _active(self, inst: _Inst) -> bool:
        return inst.daemon and inst.node.powered and inst.state != "DOWN"

    # ------------------------------------------------------------------ faults
    def kill(self, node: Node, signal: str) -> None:
        """keepalived gets SIGKILL (silent) or SIGTERM (priority-0 advert, VIPs released)."""
        inst = self.by_node[node.name]
        if not inst.daemon:
            return
        was_master = inst.state == "MASTER"
        inst.daemon = False
        inst.state = "DOWN"
        inst.deadline_epoch += 1
        if was_master:
            if signal == "TERM":
                self._prio0(inst)
            # keepalived removes its VIPs on TERM; after SIGKILL they stay configured
            # (no one answers VRRP, but the address still answers ARP and serves)
            self.on_vip(node, signal != "TERM")
        self.trial.changed()
        self._reevaluate()

    def start(self, node: Node) -> None:
        """keepalived (re)starts on ``node`` in state BACKUP."""
        inst = self.by_node[node.name]
        if inst.daemon and inst.state != "DOWN":
            return
        inst.daemon = True
        inst.state = "BACKUP"
        inst.heard = None
        inst.last_rx = self.trial.now
        # entering BACKUP at startup, keepalived removes the VIPs it manages (a SIGKILLed
        # master left them configured): vrrp_init_state -> vrrp_restore_interface
        self.on_vip(node, False)
        # at startup the down timer runs from now (+ preempt_delay when preempting)
        self._arm(inst, self.trial.now + self.mdi(inst) + self.preempt_delay)
        self._reevaluate()

    def _prio0(self, old: _Inst) -> None:
        self.trial.milestone("vrrp.prio0_sent")
        for b in self.insts:
            if b is not old and b.state == "BACKUP" and self._active(b) and self._talk(old, b):
                if b.heard is old:
                    b.heard = None
                    b.last_rx = self.trial.now
                self._arm(b, self.trial.now + self.skew(b))

    # ------------------------------------------------------------------ timers
    def _arm(self, inst: _Inst, at: float) -> None:
        inst.deadline_epoch += 1
        self.trial.at(at - self.trial.now, self._down_timer, inst, inst.deadline_epoch)

    def _down_timer(self, inst: _Inst, epoch: int) -> None:
        if epoch != inst.deadline_epoch or inst.state != "BACKUP" or not self._active(inst):
            return
        if inst.heard is not None and self._accepts(inst, inst.heard):
            return
        self._become_master(inst)

    def _accepts(self, b: _Inst, m: _Inst) -> bool:
        """Does backup ``b`` accept master ``m``'s adverts (and so stay BACKUP)?"""
        if not (m.state == "MASTER" and self._active(m) and self._talk(m, b)):
            return False
        return not (self.preempt and self.prio(b) > self.prio(m))

    def _become_master(self, inst: _Inst) -> None:
        inst.state = "MASTER"
        inst.heard = None
        now = self.trial.now
        inst.phase = now % self.adver
        if inst.node is not self.initial_master:
            self.trial.milestone("vrrp.master_changed")
        self.on_vip(inst.node, True)
        inst.garp_epoch += 1
        if self.garp_repeat > 0:
            self.on_garp(inst.node, self.garp_repeat)
            if self.garp_delay > 0:
                self.trial.at(self.garp_delay, self._garp_again, inst, inst.garp_epoch)
        if self.garp_refresh > 0 and self.garp_refresh_repeat > 0:
            first = self.garp_grid[0]
            self.trial.at(first, self._garp_refresh, inst, inst.garp_epoch)
        self.trial.changed()
        self._reevaluate()

    def _garp_again(self, inst: _Inst, epoch: int) -> None:
        if inst.state == "MASTER" and epoch == inst.garp_epoch:
            self.on_garp(inst.node, self.garp_repeat)

    def _garp_refresh(self, inst: _Inst, epoch: int) -> None:
        # keepalived re-arms the refresh timer unconditionally (vrrp_scheduler.c) and sends
        # nothing while the VIP is not set (vrrp.c vrrp_send_link_update); becoming MASTER
        # again sets the timer afresh. So ending this chain on leaving MASTER and starting
        # a new one (a new epoch) at each transition sends the same frames at the same times
        if inst.state != "MASTER" or epoch != inst.garp_epoch or not self._active(inst):
            return
        self.on_garp(inst.node, self.garp_refresh_repeat)
        period = self.garp_grid[1]
        if self.trial.now + period <= self.trial.horizon:
            self.trial.at(period, self._garp_refresh, inst, epoch)

    # ------------------------------------------------------------------ re-evaluation
    def _on_change(self) -> None:
        changed = False
        for inst in self.insts:
            n = inst.node
            now_state = (n.powered, n.net_up)
            if now_state != self._seen[n.name]:
                was_powered = self._seen[n.name][0]
                self._seen[n.name] = now_state
                changed = True
                if not n.powered and inst.state != "DOWN":
                    was_master = inst.state == "MASTER"
                    inst.state = "DOWN"
                    inst.daemon = False
                    inst.deadline_epoch += 1
                    if was_master:
                        self.on_vip(n, False)  # the address went with the machine
                elif n.powered and not was_powered:
                    pass  # keepalived starts with the node's pods: the design calls start()
            if self.track and self._active(inst):
                self._check_script(inst)
        if changed:
            self._reevaluate()

    def _reevaluate(self) -> None:
        now = self.trial.now
        masters = [m for m in self.insts if m.state == "MASTER" and self._active(m)]
        # masters that hear a better master step down (healed partition, preemption)
        for m in masters:
            for o in masters:
                if o is m or not self._talk(m, o):
                    continue
                if (self.prio(o), o.index) > (self.prio(m), m.index):
                    # o's next advert tells m; m removes the VIP
                    at = next_tick(o.phase, self.adver, now)
                    self.trial.at(at - now, self._step_down, m, o)
                    break
        for b in self.insts:
            if b.state != "BACKUP" or not self._active(b):
                continue
            best = None
            for m in masters:
                if self._talk(m, b) and (best is None or self.prio(m) > self.prio(best)):
                    best = m
            if best is not None and self._accepts(b, best):
                if b.heard is not best:
                    b.heard = best
                    b.deadline_epoch += 1  # adverts keep resetting the down timer
                continue
            if b.heard is not None:
                # the master went silent or is now discarded: last accepted advert
                m = b.heard
                b.last_rx = last_tick(m.phase, self.adver, now)
                b.heard = None
                extra = self.preempt_delay if best is not None else 0.0
                self._arm(b, b.last_rx + self.mdi(b) + extra)

    def _step_down(self, m: _Inst, o: _Inst) -> None:
        if m.state != "MASTER" or o.state != "MASTER" or not self._talk(m, o):
            return
        if (self.prio(o), o.index) <= (self.prio(m), m.index):
            return
        m.state = "BACKUP"
        m.heard = o
        self.on_vip(m.node, False)
        # the winner heard the loser's lower-priority advert and answers with GARPs
        # (vrrp_garp_lower_prio_repeat, default garp_master_repeat)
        if self.garp_repeat > 0:
            self.on_garp(o.node, self.garp_repeat)
        self.trial.changed()
        self._reevaluate()

    # ------------------------------------------------------------------ vrrp_script
    def _check_script(self, inst: _Inst) -> None:
        assert self.healthy is not None
        ok = self.healthy(inst.node)
        if ok == inst.script_ok or inst.script_pending:
            return
        inst.script_pending = True
        if self.by_process:
            # the exit (or the new process) is a kernel event: no grid, no streak
            self.trial.at(self.process_delay, self._script_result, inst, ok)
            return
        runs = self.script_rise if ok else self.script_fall
        at = next_tick(self.script_phase, self.script_interval, self.trial.now)
        at += (runs - 1) * self.script_interval
        self.trial.at(at - self.trial.now, self._script_result, inst, ok)

    def _script_result(self, inst: _Inst, ok: bool) -> None:
        inst.script_pending = False
        assert self.healthy is not None
        if not self._active(inst) and inst.state != "FAULT":
            return
        if self.healthy(inst.node) != ok:
            self._check_script(inst)  # flapped back before the streak completed
            return
        inst.script_ok = ok
        if self.script_weight == 0:
            if not ok and inst.state in ("MASTER", "BACKUP"):
                was_master = inst.state == "MASTER"
                inst.state = "FAULT"
                inst.deadline_epoch += 1
                if was_master:
                    self.trial.milestone("vrrp.fault")
                    self._prio0(inst)
                    self.on_vip(inst.node, False)
                self.trial.changed()
            elif ok and inst.state == "FAULT":
                inst.state = "BACKUP"
                inst.heard = None
                inst.last_rx = self.trial.now
                self._arm(inst, self.trial.now + self.mdi(inst))
        self._reevaluate()
