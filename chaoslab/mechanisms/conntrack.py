"""Stale conntrack entries of SYNs that timed out towards a dead endpoint (kube-proxy DNAT).

Covers the NodePort and ClusterIP paths, where a node's kube-proxy DNATs each new
connection to a pod and the kernel's connection tracking remembers the choice:

- While a node's rules still list an endpoint whose node is dead or cut off (a node crash or
  partition before the endpoint is removed and the rules synced), each new connection the
  rules DNAT there sends its SYN into a black hole. The SYN creates a conntrack entry in
  ``SYN_SENT``; each retransmission of that SYN refreshes its timeout (the ``sSS -> sSS``
  "Retransmitted SYN" row of ``tcp_conntracks`` and ``nf_ct_refresh_acct`` in
  ``nf_conntrack_tcp_packet``, Linux net/netfilter/nf_conntrack_proto_tcp.c), so the entry
  expires ``conntrack.tcp_timeout_syn_sent`` (120 s) after the last SYN the client sent.
  The client retransmits at ``tcp_timeout_init`` x (1, 3, 7, ...) after the first SYN, up to
  ``tcp_syn_retries`` times, until its own connect timeout closes the socket (no packet
  leaves a socket closed in SYN_SENT: ``tcp_need_reset`` excludes that state,
  net/ipv4/tcp.c).
- Once the client closed that socket its source port is free again. A later connection from
  the same client address to the same node address and port that picks the same source port
  matches the entry: conntrack takes its SYN for a retransmission and it follows the entry's
  DNAT to the dead pod, whatever the rules say now. kube-proxy deletes conntrack entries of
  removed endpoints only for UDP (kubernetes/kubernetes pkg/proxy/conntrack/cleanup.go at
  v1.37.2, lines 69 and 128).
- connect() picks a source port of one parity first (``__inet_hash_connect``, Linux
  net/ipv4/inet_hashtables.c: "In first pass we try ports of @low parity", since 4.6), so a
  client that never runs out of ports uses half of ``ip_local_port_range``: 14,116 ports by
  default. It does not pick them at random: successive connects to one destination *walk*
  the range from an offset hashed from the addresses, each 2-16 ports on (mean 9,
  ``client.connect_port_increment``; measured here, 8.93), and the hash is re-salted every
  10 s (net/core/secure_seq.c ``EPHEMERAL_PORT_SHUFFLE_PERIOD``), when the walk restarts
  from a new random offset. A period whose walk crosses the ports an earlier one took lands
  on each with odds 1/4.5 (usable ports per step), so while it crosses them a share d / 4.5
  of its connections collide (d: the share the rules sent to the dead pod then). The model
  draws each period's offset, so collisions come in bursts at random times over the entries'
  life; on average (and with ``client.connect_port_selection: random``) a connection
  collides with probability N / ports, N the entries collidable now.

An endpoint that answers (a killed process on a live node: RST) leaves no stale entry: the
RST moves the entry to CLOSE, and a new SYN on a CLOSE entry makes conntrack delete it and
track the connection afresh. Entries are lost with their node's power (the table is in
memory) and are harmless again once their pod serves (its node came back).

The model keeps, per entry node and dead pod, the history of entry creation (rate x the
share of that node's DNAT choices that go to the pod) and re-reads the collision share every
``conntrack.count_step``; a(t) via a node is (1 - collision share) x what it would be
without the mechanism. Not modelled: the walk's own jitter, and a colliding connection
extending its entry (the production-timer series saw no failure after
the entries' own expiry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import Node, Pod

__all__ = ["DnatPath", "StaleSynEntries", "entry_window", "stale_syn_entries", "usable_ports"]

#: one entry node of the client's traffic: (node, share of the client's new connections
#: entering there, the endpoints its rules DNAT them to, uniformly)
DnatPath = tuple[Node, float, Sequence[Pod]]


def usable_ports(low: int, high: int, *, one_parity: bool) -> int:
    """Source ports connect() uses before it has to scan the other parity."""
    remaining = high + 1 - low
    if remaining > 1:
        remaining &= ~1  # __inet_hash_connect: "remaining &= ~1U"
    if one_parity and remaining > 1:
        return remaining // 2
    return max(remaining, 1)


def entry_window(
    client_timeout: float, syn_retries: int, rto: float, syn_sent_timeout: float
) -> tuple[float, float]:
    """Ages (s after the first SYN) between which a timed-out connection's entry can be hit:
    from when the client freed the port to when conntrack expires it.

    The n-th retransmission leaves at rto x (2^n - 1); the kernel gives up one back-off
    after the last one (rto x (2^(retries+1) - 1))."""
    give_up = rto * (2.0 ** (syn_retries + 1) - 1.0)
    release = min(client_timeout, give_up)
    last_syn = 0.0
    for n in range(1, syn_retries + 1):
        sent = rto * (2.0**n - 1.0)
        if sent >= release:
            break
        last_syn = sent
    return release, last_syn + syn_sent_timeout


def black_holed(pod: Pod, via: Node) -> bool:
    """A SYN that ``via`` DNATs to ``pod`` gets no answer at all (no RST, no SYN-ACK)."""
    n = pod.node
    if n is None or pod.gone or not n.powered or not n.net_up:
        return True
    return via is not n and not via.net_up


#: a creation segment: (start, end, entries per second, the client's connections per
#: second via that node then)
Segment = tuple[float, float, float, float]


class StaleSynEntries:
    """The conntrack entries of one client address, per entry node and dead pod."""

    __slots__ = (
        "_conn_rate",
        "_expire",
        "_offsets",
        "_open",
        "_phase",
        "_pods",
        "_release",
        "_rng",
        "_segments",
        "_ticking",
        "collision",
        "increment",
        "paths",
        "period",
        "ports",
        "rate",
        "selection",
        "step",
        "trial",
    )

    def __init__(self, trial: Trial, paths: Callable[[], Iterable[DnatPath]], rate: float) -> None:
        p = trial.p
        self.trial = trial
        self.paths = paths
        self.rate = rate
        one_parity = p.flag("client.connect_port_parity")
        self.ports = usable_ports(
            p.count("client.ip_local_port_range_low"),
            p.count("client.ip_local_port_range_high"),
            one_parity=one_parity,
        )
        self.selection = p.choice("client.connect_port_selection")
        #: the walk's mean advance per connection, in usable ports
        self.increment = p.draw("client.connect_port_increment") / (2 if one_parity else 1)
        self._release, self._expire = entry_window(
            p.draw("client.timeout"),
            p.count("client.tcp_syn_retries"),
            p.draw("client.tcp_timeout_init"),
            p.draw("conntrack.tcp_timeout_syn_sent"),
        )
        self.step = p.draw("conntrack.count_step")
        self.period = p.draw("client.connect_port_shuffle_period")
        #: the walk's own random stream (a jump of the trial's): the other draws stay
        jumped = getattr(trial.rng.bit_generator, "jumped", None)
        self._rng = np.random.Generator(jumped()) if jumped is not None else trial.rng
        #: where the shuffle periods start relative to the fault (a host-wide grid)
        self._phase = 0.0 if math.isinf(self.period) else self.period * self._rng.random()
        self._offsets: dict[tuple[str, int], float] = {}
        self._segments: dict[tuple[str, str], list[Segment]] = {}
        #: (node, pod) -> the open segment (start, entries per second, connections per second)
        self._open: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._pods: dict[tuple[str, str], tuple[Node, Pod]] = {}
        self._conn_rate: dict[str, float] = {}
        self._ticking = False
        #: node name -> share of its new connections that hit an entry now
        self.collision: dict[str, float] = {}
        trial.listeners.append(self.paths_changed)

    def share(self, node: Node) -> float:
        """Share of the client's new connections via ``node`` that hit a stale entry."""
        return self.collision.get(node.name, 0.0)

    def paths_changed(self) -> None:
        """Rules or pods changed: restart each (node, pod) creation rate from now."""
        now = self.trial.now
        for via in {id(v): v for v, _ in self._pods.values()}.values():
            if not via.powered:
                self._forget(via)  # conntrack lives in memory: a power cut empties it
        rates: dict[tuple[str, str], float] = {}
        for via, weight, endpoints in self.paths():
            if weight <= 0 or not endpoints or not via.powered:
                continue  # no connection of the client's enters here
            self._conn_rate[via.name] = self.rate * weight
            each = self.rate * weight / len(endpoints)
            for pod in endpoints:
                if black_holed(pod, via):
                    key = (via.name, pod.name)
                    rates[key] = rates.get(key, 0.0) + each
                    self._pods[key] = (via, pod)
        for key in set(self._open) | set(rates):
            self._set_rate(key, rates.get(key, 0.0), now)
        if self._open and not self._ticking:
            self._ticking = True
            self.trial.at(0.0, self._tick)

    def _set_rate(self, key: tuple[str, str], rate: float, now: float) -> None:
        cur = self._open.get(key)
        if cur is not None and cur[1] == rate:
            return
        if cur is not None:
            if now > cur[0]:
                self._segments.setdefault(key, []).append((cur[0], now, cur[1], cur[2]))
            del self._open[key]
        if rate > 0:
            self._open[key] = (now, rate, self._conn_rate[key[0]])

    def _forget(self, node: Node) -> None:
        for key in [k for k in self._pods if k[0] == node.name]:
            self._segments.pop(key, None)
            self._open.pop(key, None)
            del self._pods[key]

    def _history(self, key: tuple[str, str]) -> list[Segment]:
        segs = list(self._segments.get(key, ()))
        cur = self._open.get(key)
        if cur is not None:
            segs.append((cur[0], math.inf, cur[1], cur[2]))
        return segs

    def count(self, key: tuple[str, str], t: float) -> float:
        """Expected collidable entries of (node, pod) at ``t``: created in (t - expire,
        t - release]."""
        return sum(
            rate * _overlap(start, end, t, self._expire, self._release)
            for start, end, rate, _ in self._history(key)
        )

    def hit_share(self, key: tuple[str, str], t: float) -> float:
        """Share of the client's new connections via the node that hit an entry of
        (node, pod) at ``t``."""
        segs = self._history(key)
        if not segs:
            return 0.0
        if self.selection == "random":
            return self.count(key, t) / self.ports
        node = key[0]
        where = self._position(node, t)
        share = 0.0
        for start, end, rate, conns in segs:
            a = max(start, t - self._expire)
            b = min(end, t - self._release)
            if a >= b:
                continue
            speed = self.increment * conns  # usable ports the walk moves on per second
            if self.ports / speed < 4 * self.step:
                # many passes per entry lifetime: the walk's mean is the random share
                share += rate * (b - a) / self.ports
                continue
            # the pass now lands on a port an earlier pass took with odds 1/increment
            passes = self._passes(node, where, a, b, speed)
            share += passes * rate / conns / self.increment
        return share

    def _passes(self, node: str, where: float, a: float, b: float, speed: float) -> int:
        """How often the walk of [a, b) went over port ``where`` (once per lap within a
        shuffle period, from that period's own offset)."""
        lap = self.ports / speed
        n = 0
        for j in self._periods(a, b):
            begin = self._period_start(j)
            lo, hi = max(a, begin), min(b, begin + self.period)
            first = begin + ((where - self._offset(node, j)) % self.ports) / speed
            if first < lo:
                first += math.ceil((lo - first) / lap) * lap
            if first < hi:
                n += 1 + math.floor((hi - first) / lap - 1e-12)
        return n

    def _periods(self, a: float, b: float) -> range:
        if math.isinf(self.period):
            return range(1)
        first = math.floor((a - self._phase) / self.period)
        return range(first, math.floor((b - self._phase) / self.period) + 1)

    def _period_start(self, j: int) -> float:
        return 0.0 if math.isinf(self.period) else self._phase + j * self.period

    def _position(self, node: str, t: float) -> float:
        """Where the node's walk is at ``t``, in usable ports from the range's start."""
        j = self._periods(t, t)[0]
        speed = self.increment * self._conn_rate[node]
        return (self._offset(node, j) + speed * (t - self._period_start(j))) % self.ports

    def _offset(self, node: str, j: int) -> float:
        """The walk's start in shuffle period ``j``: a new hash of the addresses each
        period, so independent and uniform."""
        key = (node, j)
        x = self._offsets.get(key)
        if x is None:
            x = self._offsets[key] = self.ports * self._rng.random()
        return x

    def _tick(self) -> None:
        """Re-read the shares (at the middle of the next step: the step's mean for a count
        that grows or decays linearly) and re-evaluate a(t)."""
        now = self.trial.now
        mid = now + self.step / 2
        shares: dict[str, float] = {}
        for key, (via, pod) in self._pods.items():
            if black_holed(pod, via):  # a pod that serves again answers a hit entry's SYN
                shares[via.name] = shares.get(via.name, 0.0) + self.hit_share(key, mid)
        self.collision = {name: min(1.0, c) for name, c in shares.items() if c > 0}
        self.trial.changed()
        if self._open or self._last_expiry() > now:
            self.trial.at(self.step, self._tick)
        else:
            self._ticking = False
            self.collision = {}

    def _last_expiry(self) -> float:
        ends = [seg[1] for segs in self._segments.values() for seg in segs]
        return max(ends, default=-math.inf) + self._expire


def _overlap(start: float, end: float, t: float, expire: float, release: float) -> float:
    """Length of [start, end) within (t - expire, t - release]."""
    return max(0.0, min(end, t - release) - max(start, t - expire))


def stale_syn_entries(
    trial: Trial, paths: Callable[[], Iterable[DnatPath]]
) -> StaleSynEntries | None:
    """The mechanism for one client address, or None when it opens no connections
    (``client.connection_rate_per_ip`` 0: many clients at low rates, no draws made)."""
    rate = trial.p.draw("client.connection_rate_per_ip")
    if rate <= 0:
        return None
    return StaleSynEntries(trial, paths, rate)
