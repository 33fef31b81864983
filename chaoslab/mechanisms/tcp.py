"""SYN retransmission: a new request whose first SYN is lost may still succeed, late.

A Linux client's connect() retransmits an unanswered SYN after the initial RTO (1 s,
``TCP_TIMEOUT_INIT`` in include/net/tcp.h, RFC 6298 section 2.1), doubling the timeout at
each expiry (``inet_csk_reset_xmit_timer`` with ``icsk_backoff`` in net/ipv4/tcp_timer.c,
capped at ``TCP_RTO_MAX``, 120 s) up to ``tcp_syn_retries`` times: the k-th retransmission
leaves ``rto x (2^k - 1)`` after the first SYN (1, 3, 7, 15, ... s). A client that gives up
after ``client.timeout`` closes the socket first, so only the retransmissions before it
count (`syn_offsets`).

Every retransmission has the same 5-tuple, so it takes the *same* path choice as the first
SYN: the same ECMP hash, the same conntrack entry and DNAT (`chaoslab.mechanisms.
conntrack`), the VIP's holder as the client's neighbour entry names it at that later
instant. A request whose SYN met a black hole succeeds at the first retransmission that
finds its path working again, ``r_k`` late. An answer ends connect() at once: an RST or an
ICMP error (EHOSTUNREACH) is not retransmitted, nor is a request nginx accepted and then
failed.

How the model finds "its path works again" without following each request: a(t) is the
share of new requests that succeed now. Requests whose SYN was lost at ``t`` are assumed
to be on the paths that come back first (nested failure sets): a single path (one VIP, one
entry node), a blackout of every path, an ECMP next hop withdrawn — then the share that
succeeds by the k-th retransmission is ``max(a(t), a(t + r_1), ..., a(t + r_k))``, exactly.
A rise of a(t) that comes from a *decision* changing — kube-proxy's rules, an LB's
rotation, nginx's upstreams, a pod's process starting or stopping — does not help a
request that was already decided: its retransmission follows the old DNAT to the same dead
pod (the SYN_SENT entry), an RST'd or nginx-failed request is over. So a retransmission
counts only if no decision changed between the first SYN and it (`late_successes`; the
design says what its decisions are, `Topology.decision_state`), and nothing sent while an
entry refuses connections (its proxy is down on a live node, `Topology.syn_refused`) comes
late. A spurious decision change only withholds late successes.

Not modelled: the kernel's give-up after the last retransmission when it comes before the
client timeout (``rto x (2^(retries+1) - 1)``, 127 s by default); a request
whose entry was black-holed getting a fresh DNAT when it finally reaches the node (it is
counted at a(t + r_k), which is that fresh choice, only while the rules did not change).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence

from chaoslab.mechanisms.base import Trial
from chaoslab.outage import EPS, SlowClasses

__all__ = ["SynRetransmission", "late_successes", "merge_late", "syn_offsets"]

#: include/net/tcp.h TCP_RTO_MAX: no retransmission timeout grows beyond 120 s
TCP_RTO_MAX = 120.0


def syn_offsets(timeout: float, retries: int, rto: float, linear: int = 0) -> tuple[float, ...]:
    """Send times of a connect()'s SYN retransmissions after its first SYN, before the
    client's ``timeout`` closes the socket.

    The timeout doubles at each expiry, after ``linear`` + 1 expiries of ``rto`` each
    (Linux 6.5+ ``tcp_syn_linear_timeouts``; 0 before). The kernel gives up when the
    time ``retries`` doubling expiries would take has passed (``retransmits_timed_out``
    with ``tcp_model_timeout``, net/ipv4/tcp_timer.c): rto x (2^(retries+1) - 1)."""
    give_up = rto * (2.0 ** (max(0, retries) + 1) - 1.0)
    stop = min(timeout, give_up)
    out: list[float] = []
    at, wait, k = 0.0, rto, 0
    while True:
        at += wait
        if at >= stop:
            return tuple(out)
        out.append(at)
        k += 1
        if k > linear:
            wait = min(2.0 * wait, TCP_RTO_MAX)


def _value(times: Sequence[float], values: Sequence[float], t: float) -> float:
    i = bisect_right(times, t) - 1
    return values[i] if i >= 0 else 1.0


#: a trial's slow classes and the a(t) they are shares of: (l_t, l_v, a_t, a_v)
Slow = tuple[Sequence[float], Sequence[SlowClasses], Sequence[float], Sequence[float]]


def _split(share: float, r: float, at: float, slow: Slow | None, timeout: float) -> SlowClasses:
    """A late share sent again at ``at``, ``r`` after its first SYN, split by the slow
    classes then (nginx waiting on a dead upstream): those that end after ``timeout`` fail."""
    if slow is None:
        return ((share, r),)
    l_t, l_v, a_t, a_v = slow
    i = bisect_right(l_t, at) - 1
    if i < 0 or not l_v[i]:
        return ((share, r),)
    classes = l_v[i]
    a = _value(a_t, a_v, at)
    if a <= EPS:
        return ((share, r),)
    out = [(share * s / a, r + d) for s, d in classes if r + d < timeout]
    out.append((share * max(0.0, a - sum(s for s, _ in classes)) / a, r))
    return tuple(c for c in out if c[0] > 0)


def _cohort(
    t: float,
    new: tuple[Sequence[float], Sequence[float], Sequence[float]],
    next_decision: float,
    offsets: Sequence[float],
    slow: Slow | None,
    timeout: float,
) -> SlowClasses:
    """The late classes of the requests first sent at ``t``."""
    times, values, weights = new
    i = bisect_right(times, t) - 1
    best = values[i] if i >= 0 else 1.0
    if best >= 1.0 - EPS:
        return ()
    w = weights[i] if i >= 0 else 1.0
    out: list[tuple[float, float]] = []
    for r in offsets:
        if t + r >= next_decision:
            break  # a decision changed: the rest is decided (DNAT'd, reset, failed)
        a = _value(times, values, t + r)
        if a > best + EPS:
            share = w * (a - best)
            if share > 0:  # a weight of a few denormals underflows to no request at all
                out += _split(share, r, t + r, slow, timeout)
            best = a
    return tuple(out)


def late_successes(
    times: Sequence[float],
    values: Sequence[float],
    weights: Sequence[float],
    decisions: Sequence[float],
    offsets: Sequence[float],
    horizon: float,
    *,
    slow: Slow | None = None,
    timeout: float = float("inf"),
) -> tuple[list[float], list[SlowClasses]]:
    """Change points of the late successes of the requests sent at each t in [0, horizon).

    ``times``/``values``: a(t) of new requests (first point at 0); ``weights``: the share
    of all requests that those make at each point; ``decisions``: sorted instants at which
    a decision changed; ``offsets``: `syn_offsets`; ``slow``: the trial's own slow classes,
    which a request that gets through late meets too, and fails if it ends after the
    client's ``timeout``. Returns (times, classes) with classes ``((share of all
    requests, delay), ...)``, piecewise constant between the points."""
    if not offsets or not times:
        return [], []
    ts, vs = list(times), list(values)
    n = len(ts)
    # only senders of failing stretches can come late: cut [0, horizon) inside them
    fail = [(ts[i], ts[i + 1] if i + 1 < n else horizon) for i in range(n) if vs[i] < 1.0 - EPS]
    if not fail:
        return [], []
    lo, hi = fail[0][0], min(fail[-1][1], horizon)
    cuts = {a for a, _ in fail} | {b for _, b in fail}
    for r in (0.0, *offsets):
        cuts.update(c for x in ts if lo <= (c := x - r) < hi)
        cuts.update(c for x in decisions if lo <= (c := x - r) < hi)
    grid = sorted(c for c in cuts if 0.0 <= c < horizon)
    out_t: list[float] = []
    out_c: list[SlowClasses] = []
    dec = list(decisions)
    for t in grid:
        j = bisect_right(dec, t)
        nxt = dec[j] if j < len(dec) else float("inf")
        classes = _cohort(t, (ts, vs, weights), nxt, offsets, slow, timeout)
        if not out_c or classes != out_c[-1]:
            out_t.append(t)
            out_c.append(classes)
    if out_c and not any(out_c):
        return [], []
    return out_t, out_c


def merge_late(
    a_t: Sequence[float],
    a_v: Sequence[float],
    l_t: Sequence[float],
    l_v: Sequence[SlowClasses],
    late_t: Sequence[float],
    late_c: Sequence[SlowClasses],
) -> tuple[list[float], list[float], list[float], list[SlowClasses]]:
    """a(t) and the slow classes with the late successes added: a(t) + their shares, and
    the classes of both (``l_t`` empty: the design had none)."""
    cuts = sorted({*a_t, *l_t, *late_t})
    lts = list(late_t)
    at: list[float] = []
    av: list[float] = []
    ct: list[float] = []
    cv: list[SlowClasses] = []
    for t in cuts:
        k = bisect_right(lts, t) - 1
        late = late_c[k] if k >= 0 else ()
        a = min(1.0, _value(a_t, a_v, t) + sum(s for s, _ in late))
        i = bisect_right(l_t, t) - 1
        classes = (tuple(l_v[i]) if i >= 0 else ()) + late
        if not av or a != av[-1]:
            at.append(t)
            av.append(a)
        if not cv or classes != cv[-1]:
            ct.append(t)
            cv.append(classes)
    return at, av, ct, cv


class SynRetransmission:
    """Follows a(t) of new requests and the design's decisions over a trial; at the last
    instant before the horizon, adds the late successes to the trial's a(t) and slow
    classes (a(t) is indexed by the instant a request is *sent*: known only afterwards)."""

    __slots__ = (
        "_armed",
        "decide",
        "decisions",
        "last_failure",
        "last_state",
        "refused",
        "times",
        "trial",
        "values",
        "weights",
        "window",
    )

    def __init__(
        self,
        trial: Trial,
        decide: Callable[[], tuple[object, ...]],
        refused: Callable[[], bool],
    ) -> None:
        self.trial = trial
        self.decide = decide
        #: whether the SYNs that fail now are answered by a reset (none is retransmitted)
        self.refused = refused
        self.times: list[float] = []
        self.values: list[float] = []
        self.weights: list[float] = []
        self.decisions: list[float] = []
        self.last_state: tuple[object, ...] | None = None
        self._armed = False
        self.last_failure = 0.0
        #: how long after a failing instant its senders may still retransmit: the client's
        #: timeout (fixed: read without a draw, so no other draw moves), else the horizon
        p = trial.p
        key = "client.timeout"
        self.window = p.draw(key) if p.dist(key) is None else float("inf")

    def record(self, a_new: float, weight: float = 1.0) -> None:
        """a(t) of new requests now and the share of all requests they are (``weight``),
        called at every change."""
        t = self.trial.now
        if not self.times:
            if a_new >= 1.0 - EPS:
                return  # nothing failed yet: nothing to retransmit
            self.times, self.values, self.weights = [0.0], [1.0], [1.0]
            self._arm()
        failing = a_new < 1.0 - EPS
        if failing or self.values[-1] < 1.0 - EPS:
            self.last_failure = t  # (a failing stretch lasts until now)
        if failing or t - self.last_failure < self.window:
            state = self.decide()
            if self.last_state is not None and state != self.last_state:
                self.decisions.append(t)
            self.last_state = state
        else:
            self.last_state = None  # no sender retransmits any more: decisions concern nobody
        if failing and self.refused():
            weight = 0.0  # a reset ends connect() at once: nothing sent now comes late
        if a_new == self.values[-1] and weight == self.weights[-1]:
            return
        if self.times[-1] == t:
            self.values[-1], self.weights[-1] = a_new, weight
        else:
            self.times.append(t)
            self.values.append(a_new)
            self.weights.append(weight)

    def _arm(self) -> None:
        """Schedule `finish` at the last representable instant before the horizon."""
        trial = self.trial
        if self._armed or trial.horizon == float("inf"):
            return
        self._armed = True
        delay = trial.horizon - trial.now
        while delay > 0 and trial.now + delay >= trial.horizon:
            delay -= max(1e-12, delay * 1e-15)
        trial.at(delay, self.finish)

    def finish(self) -> None:
        trial = self.trial
        p = trial.p
        timeout = p.draw("client.timeout")
        offsets = syn_offsets(
            timeout,
            p.count("client.tcp_syn_retries"),
            p.draw("client.tcp_timeout_init"),
            linear=p.count("client.tcp_syn_linear_timeouts"),
        )
        slow = (trial.l_t, trial.l_v, trial.a_t, trial.a_v) if trial.l_t else None
        late_t, late_c = late_successes(
            self.times,
            self.values,
            self.weights,
            self.decisions,
            offsets,
            trial.horizon,
            slow=slow,
            timeout=timeout,
        )
        if not late_t:
            return
        had_latency = bool(trial.l_t)
        a_t, a_v, c_t, c_v = merge_late(trial.a_t, trial.a_v, trial.l_t, trial.l_v, late_t, late_c)
        if not had_latency:
            trial.set_latency(tuple)  # late successes are a latency model's slow classes
        trial.a_t[:], trial.a_v[:] = a_t, a_v
        trial.l_t[:], trial.l_v[:] = c_t, c_v
