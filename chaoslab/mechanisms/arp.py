"""A VIP on a node's interface, and the neighbour cache that maps it to a MAC.

Covers (docs/model-network.md, VIP and the neighbour cache):

- the clients' next hop (a Linux host/gateway, or a router) holds one MAC for the VIP;
  traffic for the VIP goes to that node, whether or not it still holds the VIP;
- a gratuitous ARP from the new holder updates an existing entry at once (``arp_accept``
  does not matter for an entry that exists);
- without a GARP, a Linux neighbour keeps the old MAC while the entry is REACHABLE: a
  uniform U(base/2, 3 base/2) after the last confirmation (the old node's TCP answers
  confirm it until it stops answering), then DELAY (``delay_first_probe_time``), then
  ``ucast_solicit`` unicast probes ``retrans_time`` apart, then FAILED and a broadcast
  re-resolution that the current holder answers. Closed form after the old node goes
  silent at t0: re-resolved at t0 + U(15, 45) + 5 + 3 s with the defaults (20-53 s);
- a router has no NUD: its entry is refreshed only when its timer (``arp.router_timeout``,
  4 h on Cisco IOS) runs out, at a stationary random phase; a router that ignores GARP
  (``arp.accept_garp`` false) moves only then, whichever VIP design sent the GARPs
  (keepalived, the chart's arping, MetalLB, kube-vip: all reach it through `garp`);
- an entry that failed while nobody held the VIP is re-resolved on the next request once
  some node answers again;
- each GARP frame is lost with probability ``arp.garp_loss`` (0 by default), independently,
  so a burst of r frames is missed with loss^r; a missed burst changes nothing, and the
  entry moves only at the next burst that arrives (keepalived's second burst or refresh,
  MetalLB's and kube-vip's repeats) or by NUD/its own timeout;
- moving the entry away from a node that still answers resets the requests in flight
  (``client.request_duration`` of them: `Trial.blip`).

The neighbour is a *listener*: it notices when the node it points to stops confirming
(died, cut off, removed the VIP) and computes when it gives up, instead of stepping NUD.
"""

from __future__ import annotations

from collections.abc import Callable

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node
from chaoslab.mechanisms.node import next_tick

__all__ = ["VipNeighbour", "linux_reresolve_bounds"]

register_milestones(
    {
        "vip.added": "the VIP was configured on a new node (init container, VRRP/leader)",
        "vip.removed": "the holder at the fault took the VIP off (preStop, SIGTERM, lease "
        "lost); not recorded when the holder just died",
        "arp.updated": "the clients' neighbour cache points the VIP at a new node's MAC",
    }
)


def linux_reresolve_bounds(
    base_reachable: float, delay_probe: float, ucast: int, retrans: float
) -> tuple[float, float]:
    """Bounds of the time from the last confirmation to re-resolution (no GARP)."""
    tail = delay_probe + ucast * retrans
    return (base_reachable / 2 + tail, 1.5 * base_reachable + tail)


class VipNeighbour:
    """The clients' neighbour cache entry for one VIP.

    ``answering()`` names the node that currently answers ARP for the VIP (None: nobody);
    ``confirms(node)`` says whether traffic sent to ``node``'s MAC still gets answered
    (a live node that still serves the VIP), which keeps a Linux entry REACHABLE.
    """

    __slots__ = (
        "_epoch",
        "_pending",
        "accept_garp",
        "answering",
        "confirms",
        "garp_loss",
        "initial",
        "kind",
        "mac",
        "p",
        "router_phase",
        "router_timeout",
        "trial",
    )

    def __init__(
        self,
        trial: Trial,
        answering: Callable[[], Node | None],
        confirms: Callable[[Node], bool],
    ) -> None:
        self.trial = trial
        self.p = trial.p
        self.answering = answering
        self.confirms = confirms
        self.kind = trial.p.choice("arp.neighbor")
        # Linux updates an existing entry on any GARP (arp_accept only gates new entries)
        self.accept_garp = self.kind == "linux" or trial.p.flag("arp.accept_garp")
        self.garp_loss = trial.p.draw("arp.garp_loss")
        self.mac: Node | None = answering()
        self.initial = self.mac
        self.router_timeout = trial.p.draw("arp.router_timeout")
        self.router_phase = trial.phase(self.router_timeout) if self.kind == "router" else 0.0
        self._pending = False
        self._epoch = 0
        trial.listeners.append(self._on_change)

    # ------------------------------------------------------------------ events
    def garp(self, node: Node, frames: int = 1) -> None:
        """A burst of ``frames`` gratuitous ARPs from ``node`` reaches the neighbour (if the
        node can send and not every frame is lost)."""
        if not node.reachable or not self.accept_garp or frames < 1:
            return
        # no draw without loss: trials of the default catalogue keep their random stream
        if self.garp_loss > 0 and self.trial.rng.random() < self.garp_loss**frames:
            return
        self._epoch += 1
        self._pending = False
        self._point(node)

    def _point(self, node: Node | None) -> None:
        old = self.mac
        if node is old:
            return
        if old is not None and node is not None and self.confirms(old):
            # the old holder still answered: requests in flight on it are reset on the new
            # one (the backup's GARP while the old master keeps the VIP, a preemption)
            self.trial.blip(self.p.draw("client.request_duration"))
        self.mac = node
        if node is not None and node is not self.initial:
            self.trial.milestone("arp.updated")
        self.trial.changed()

    def _on_change(self) -> None:
        mac = self.mac
        if mac is None:
            # a failed entry: the next request broadcasts a request and gets the holder
            holder = self.answering()
            if holder is not None and holder.reachable:
                self._point(holder)
            return
        if self._pending or self.confirms(mac):
            return
        self._pending = True
        self._epoch += 1
        if self.kind == "linux":
            p = self.p
            base = p.draw("arp.base_reachable_time")
            # the kernel draws each reachable time uniformly in [base/2, 3 base/2]
            # (arp(7), neigh_rand_reach_time): a formula, not a default
            wait = (
                base * (0.5 + self.trial.rng.random())
                + p.draw("arp.delay_first_probe_time")
                + p.count("arp.ucast_solicit") * p.draw("arp.retrans_time")
            )
        else:
            wait = next_tick(self.router_phase, self.router_timeout, self.trial.now)
            wait -= self.trial.now
        self.trial.at(wait, self._expire, self._epoch)

    def _expire(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        self._pending = False
        mac = self.mac
        if mac is not None and self.confirms(mac):
            return  # confirmed again (e.g. the node came back with the VIP)
        holder = self.answering()
        self._point(holder if holder is not None and holder.reachable else None)
        if self.mac is not None and not self.confirms(self.mac):
            self._on_change()
