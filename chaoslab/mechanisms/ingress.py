"""ingress-nginx: which upstreams each nginx uses, and the share of requests that succeed.

Covers (docs/model-network.md, ingress-nginx):

- nginx proxies to pod IPs directly (no kube-proxy). Its upstream list follows the
  Service's endpoints: the controller syncs at most ``nginx.sync_rate_limit`` times per
  second; then either the Lua balancer's workers pick the backends up on their
  ``backends_sync_interval`` (1 s) tick (dynamic mode, 0.18+), or nginx reloads
  (``reload_time``; the 2018 template with ``max_fails=0 fail_timeout=0``: no passive
  health checks in either mode). A sync builds the whole configuration: it takes
  ``ingress.ingresses`` x ``nginx.sync_time_per_ingress`` (a reload adds
  ``reload_time_per_ingress`` each), and the next one starts after it (`sync_time`).
- A request goes to an upstream (round robin ~ uniform); on ``error timeout`` nginx
  passes it to the next, up to ``proxy_next_upstream_tries`` (0 = all). A connect to a
  killed pod on a live node is refused at once; to a pod on a dead node it times out
  after ``proxy_connect_timeout``. The request succeeds if a live upstream is reached
  within the tries and before the client's ``client.timeout``. Which upstream a retry
  takes (``nginx.round_robin_retry``): ingress-nginx's Lua round robin (dynamic mode)
  the worker's next one, after a connect timeout any, the dead one again included
  (``cycle``, `lua_round_robin_outcomes`); nginx's own round robin (reload mode) one the
  request has not tried (``untried``, `proxy_success`).
- EHOSTUNREACH (``cni.routing: direct``, pod IPs routed to the node IP without
  encapsulation): once the nginx node's neighbour entry for a dead node has FAILED
  (Linux NUD, ``linux_reresolve_bounds`` after its last answer: 23-53 s by default), every
  connect to a pod there starts a new resolution and fails with EHOSTUNREACH when its
  ``arp.mcast_solicit`` x ``arp.retrans_time`` (3 s) ends: under steady traffic a uniform
  residual of that cycle instead of ``proxy_connect_timeout``, then nginx tries the next
  upstream. Behind an overlay (VXLAN, IP-in-IP: the default) the neighbour that fails is
  the outer packet's, the error never reaches the proxied socket: a black hole.
- ``nginx.load_balance: least_conn`` (plain nginx): a black hole holds each connect it
  got until ``proxy_connect_timeout`` or the client gives up (nginx then frees it), so it
  has the most active connections and is picked when every live upstream carries at
  least as many (idle live upstreams: one request per ``stuck + k / rate``; live ones
  busy ``nginx.upstream_time`` each: more, `least_conn_hole_share`); the retry then
  goes to an untried live one. Round robin (ingress-nginx's default) tries it 1/k of the
  time.
- ``nginx.load_balance: ewma`` (ingress-nginx's peak EWMA, ``balancer/ewma.lua``): only
  the last upstream a request tried gets its score updated, and scores decay to 0, so a
  dead upstream whose requests were passed on wins every random pair it is in (2/k of
  the first picks); one its requests end on (one try, or a client timeout within the
  connect timeout) is avoided for ``DECAY_TIME x ln(stuck / rtt)`` (`ewma_outcomes`).
- Latency: the requests that reach a live upstream only after black holes or
  EHOSTUNREACH cycles succeed late (`proxy_outcomes`, `least_conn_late`, `ewma_outcomes`);
  `IngressCluster` gives the trial these slow classes (`Trial.set_latency`).
- Non-idempotent requests (``client.non_idempotent_share``) are not passed on once sent
  (nginx 1.9.13+ without ``non_idempotent``; with upstream keep-alive the failure shows
  after sending): they succeed only if the first upstream is live.

`proxy_success` is the closed form over a random order of upstreams;
`IngressCluster` adds the ingress workloads (DaemonSet or Deployment, next to the app)
to the Kubernetes model, with hooks on their pods' deletion and removal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from math import comb, exp, factorial, floor, lgamma, log

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod, Service, Workload
from chaoslab.mechanisms.endpoints import WatchedSlices
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.node import next_tick
from chaoslab.mechanisms.workload import WorkloadController
from chaoslab.outage import BaseLatency, SlowClasses

__all__ = [
    "IngressCluster",
    "Nginx",
    "ewma_avoided_share",
    "ewma_outcomes",
    "irwin_hall_cdf",
    "least_conn_hole_share",
    "least_conn_pick_share",
    "least_conn_success",
    "lua_round_robin_outcomes",
    "proxy_outcomes",
    "proxy_success",
    "sync_time",
    "unreachable_delays",
]

register_milestones(
    {
        "ingress.upstream_removed": "an nginx stopped using a failed upstream pod",
        "ingress.restarted": "a killed or replaced ingress (nginx) serves again",
    }
)


def irwin_hall_cdf(x: float, n: int) -> float:
    """P(sum of n independent U(0, 1) < x): the Irwin-Hall distribution's CDF."""
    if n == 0:
        return 1.0 if x > 0 else 0.0
    if x <= 0:
        return 0.0
    if x >= n:
        return 1.0
    total = sum((-1) ** i * comb(n, i) * (x - i) ** n for i in range(floor(x) + 1))
    return min(1.0, max(0.0, total / factorial(n)))


#: equally likely points standing for one EHOSTUNREACH residual U(0, cycle): a p99 within
#: cycle / (2 n) of the uniform's, a threshold at a multiple of cycle / 30 exact
UNREACHABLE_POINTS = 30


@lru_cache(maxsize=1024)
def unreachable_delays(u: int, cycle: float, left: float) -> SlowClasses:
    """((weight, delay), ...) of the time u EHOSTUNREACH upstreams cost together, given
    it is below ``left``; weights sum to 1.

    Each costs a uniform residual U(0, cycle), as n points at (i + 0.5) / n x cycle (a
    mean would put the whole class on one side of a slow threshold). One: n points of
    U(0, min(cycle, left)), the truncated uniform. Several: the sum over the grid (the
    convolution of the counts), the points at or above ``left`` dropped."""
    n = UNREACHABLE_POINTS
    if u == 0 or cycle <= 0:
        return ((1.0, 0.0),)
    if u == 1:
        span = min(cycle, left) if left > 0 else cycle
        return tuple((1.0 / n, (i + 0.5) / n * span) for i in range(n))
    counts = [1]
    for _ in range(u):
        counts = [
            sum(counts[m - j] for j in range(n) if 0 <= m - j < len(counts))
            for m in range(len(counts) + n - 1)
        ]
    points = [((m + 0.5 * u) / n * cycle, c) for m, c in enumerate(counts)]
    kept = [(d, c) for d, c in points if d < left]
    if not kept:
        return ((1.0, min(left, u * cycle) / 2),)
    total = sum(c for _, c in kept)
    return tuple((c / total, d) for d, c in kept)


def _spread(
    done: dict[tuple[float, int], float], cycle: float, client_timeout: float, scale: float
) -> SlowClasses:
    """Late classes from ``{(fixed delay, unreachable ones): share}``: each share spread
    over `unreachable_delays` on top of its fixed delay; on-time ones (0, 0) left out."""
    late: dict[float, float] = {}
    for (fixed, u), v in done.items():
        if v <= 0 or (fixed <= 0 and u == 0):
            continue
        for w, d in unreachable_delays(u, cycle, client_timeout - fixed):
            late[fixed + d] = late.get(fixed + d, 0.0) + v * w * scale
    return tuple((v, d) for d, v in sorted(late.items()) if v > 0)


@lru_cache(maxsize=4096)  # pure; a trial asks the same few questions many times
def proxy_success(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    non_idempotent: float = 0.0,
    inner: float = 1.0,
    unreachable: int = 0,
    unreachable_cycle: float = 0.0,
) -> float:
    """Share of requests that succeed through one nginx (closed form).

    Upstreams are tried in a uniformly random order without repetition; refused ones
    cost nothing, black holes ``connect_timeout`` each, unreachable ones (EHOSTUNREACH
    after a failed neighbour entry) a uniform part of ``unreachable_cycle`` each.
    ``inner`` is the success of a live upstream itself (a second ingress tier); its 502
    is not retried.
    """
    k = live + refused + holes + unreachable
    if k == 0 or live == 0:
        return 0.0
    t = k if tries <= 0 else min(tries, k)
    idem = 0.0
    fk = factorial(k)
    for j in range(1, t + 1):
        before = j - 1
        for b in range(0, min(holes, before) + 1):
            left = client_timeout - b * connect_timeout
            if left <= 0:
                continue
            for u in range(0, min(unreachable, before - b) + 1):
                r = before - b - u
                if r > refused:
                    continue
                ways = comb(holes, b) * comb(unreachable, u) * comb(refused, r)
                ways *= factorial(before) * live * factorial(k - j)
                idem += ways / fk * _within(left, u, unreachable_cycle)
    first = live / k
    return inner * ((1.0 - non_idempotent) * idem + non_idempotent * first)


@lru_cache(maxsize=4096)
def proxy_outcomes(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    non_idempotent: float = 0.0,
    inner: float = 1.0,
    unreachable: int = 0,
    unreachable_cycle: float = 0.0,
) -> SlowClasses:
    """The late part of `proxy_success`: ((share, extra delay), ...) of the requests that
    reached a live upstream only after b black holes (``b * connect_timeout``) and u
    unreachable ones (`unreachable_delays`). The rest of the
    success (refused ones tried first, a non-idempotent request's first pick) is on time.
    """
    k = live + refused + holes + unreachable
    if k == 0 or live == 0:
        return ()
    t = k if tries <= 0 else min(tries, k)
    late: dict[tuple[float, int], float] = {}
    fk = factorial(k)
    for j in range(2, t + 1):
        before = j - 1
        for b in range(0, min(holes, before) + 1):
            left = client_timeout - b * connect_timeout
            if left <= 0:
                continue
            for u in range(0, min(unreachable, before - b) + 1):
                r = before - b - u
                if r > refused or b + u == 0:
                    continue
                ways = comb(holes, b) * comb(unreachable, u) * comb(refused, r)
                ways *= factorial(before) * live * factorial(k - j)
                share = ways / fk * _within(left, u, unreachable_cycle)
                key = (b * connect_timeout, u)
                late[key] = late.get(key, 0.0) + share
    scale = inner * (1.0 - non_idempotent)
    return _spread(late, unreachable_cycle, client_timeout, scale)


@lru_cache(maxsize=4096)
def lua_round_robin_outcomes(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    non_idempotent: float = 0.0,
    unreachable: int = 0,
    unreachable_cycle: float = 0.0,
) -> tuple[float, SlowClasses]:
    """(success, late classes) through ingress-nginx's Lua round robin (dynamic mode).

    Each try takes the next upstream of the worker's cycle (``balancer/round_robin.lua``:
    ``resty.roundrobin`` ``find()``, no memory of the upstreams a request tried; issue
    #11852). A refused connect is retried at once: the next one in the cycle, untried. A
    retry after a black hole's ``connect_timeout`` or an unreachable one's resolution comes
    after the worker's other requests moved the cycle on: any upstream, uniformly, the
    dead one again included. Unreachable ones cost a uniform part of the cycle each: a
    request that reaches a live upstream after b black holes and u of them succeeds if
    b x ``connect_timeout`` plus their sum (Irwin-Hall) is below the client's timeout
    (`unreachable_delays` gives its delay). ``tries`` 0 (no cap) counts k tries.
    """
    k = live + refused + holes + unreachable
    if k == 0 or live == 0:
        return 0.0, ()
    t = k if tries <= 0 else tries
    total = (refused, holes, unreachable)
    fixed = (0.0, connect_timeout, 0.0)  # an unreachable one's cost is counted in u
    reached: dict[tuple[float, int], float] = {}  # (fixed delay, unreachable ones): share

    def walk(
        untried: tuple[int, ...], fresh: bool, left: int, at: tuple[float, int], prob: float
    ) -> None:
        if left == 0 or prob <= 0:
            return
        n = k if fresh else live + sum(untried)
        reached[at] = reached.get(at, 0.0) + prob * live / n
        for i, cost in enumerate(fixed):
            pool = total[i] if fresh else untried[i]
            if pool == 0 or at[0] + cost >= client_timeout:
                continue
            nxt_at = (at[0] + cost, at[1]) if i < 2 else (at[0], at[1] + 1)
            # a fresh pick may land on a tried one (no change) or an untried one
            for hit, ways in ((1, untried[i]), (0, pool - untried[i] if fresh else 0)):
                if ways:
                    nxt = tuple(x - hit * (j == i) for j, x in enumerate(untried))
                    walk(nxt, cost > 0 or i == 2, left - 1, nxt_at, prob * ways / n)

    walk(total, True, t, (0.0, 0), 1.0)
    done = {
        at: v * _within(client_timeout - at[0], at[1], unreachable_cycle)
        for at, v in reached.items()
    }
    scale = 1.0 - non_idempotent
    ok = scale * sum(done.values()) + non_idempotent * live / k
    return ok, _spread(done, unreachable_cycle, client_timeout, scale)


def least_conn_hole_share(
    k: int,
    rate: float,
    stuck: float,
    *,
    busy: float = 0.0,
    holes: int = 1,
    refused: int = 0,
) -> float:
    """Share of requests whose first pick under least_conn is one given black hole among
    ``k`` upstreams, ``busy`` = rate x a live request's hold time (its mean in flight).

    nginx 1.22.1 ``ngx_http_upstream_get_least_conn_peer`` picks the peer with the fewest
    active connections; ties go round robin (smooth weighted ``current_weight`` over the
    tied peers only). A pick holds the hole for ``stuck`` seconds, so with C connects
    stuck it is picked again only when every live upstream carries at least C requests
    (`least_conn_pick_share`). C is a birth-death chain, births ``rate x pick(C)``, each
    connect ending ``stuck`` later; its product form pi(C+1) = pi(C) rate pick(C)
    stuck / (C+1) holds for any holding-time law of that mean (an infinite-server queue
    with state-dependent arrivals is insensitive), and picks per second = E[C] / stuck
    (Little). Idle live upstreams (``busy`` 0): 1 / (rate x stuck + k), one pick per
    stuck + k / rate seconds; stuck 0: the tie share (1/k when idle), as round robin.
    """
    if k <= 0 or holes <= 0:
        return 0.0
    live = k - holes - refused
    if rate <= 0 or stuck <= 0:
        return least_conn_pick_share(0, live, refused, holes, busy)
    pi, mean, total = 1.0, 0.0, 1.0
    for c in range(_MAX_STUCK):
        p = least_conn_pick_share(c, live, refused, holes, busy)
        pi *= rate * p * stuck / (c + 1)
        if pi <= 1e-12 * total:
            break
        mean += (c + 1) * pi
        total += pi
    return mean / total / (rate * stuck)


#: stuck connects on one hole the chain is summed to (far beyond rate x stuck in use)
_MAX_STUCK = 20_000


@lru_cache(maxsize=65536)
def least_conn_pick_share(c: int, live: int, refused: int, holes: int, busy: float) -> float:
    """P(least_conn picks a given hole with ``c`` stuck connects) for one request.

    The live upstreams hold Poisson(``busy``) requests in all (M/G/inf), spread evenly
    by least_conn itself (floor(n / live) each at least); refused ones answer at once,
    so they sit at 0; other holes are taken as tied with this one. The hole wins when
    it has fewer than every other upstream, and ties (equal ``conns``) share the pick
    (round robin among them)."""
    if live <= 0:
        return 1.0 / max(holes + refused, 1)
    spread = 12.0 * busy**0.5 + 30
    share = 0.0
    for n in range(max(0, int(busy - spread)), int(busy + spread) + 1):
        w = exp(n * log(busy) - busy - lgamma(n + 1)) if busy > 0 else float(n == 0)
        m, r = divmod(n, live)
        if refused:
            m, at_min = 0, refused + (live - n if n < live else 0)
        else:
            at_min = live - r
        if m > c:
            share += w / holes
        elif m == c:
            share += w / (holes + at_min)
    return share


def least_conn_success(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    rate: float,
    non_idempotent: float = 0.0,
    hold: float = 0.0,
) -> float:
    """Share of requests that succeed through an nginx balancing with least_conn.

    Holes are first picks only at `least_conn_hole_share` each (``hold``: a live
    request's mean time in flight, so live upstreams are sometimes busy); a request that
    drew one waits ``connect_timeout`` and is passed to an untried upstream, which
    least_conn picks among the live and refused ones. Refused ones cost nothing.
    """
    parts = _least_conn_parts(
        live, refused, holes, tries, connect_timeout, client_timeout, rate, hold
    )
    if parts is None:
        return 0.0
    h, rest, after_hole, first_live = parts
    idem = (1.0 - h) * rest + h * after_hole
    return (1.0 - non_idempotent) * idem + non_idempotent * first_live


def least_conn_late(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    rate: float,
    non_idempotent: float = 0.0,
    hold: float = 0.0,
) -> SlowClasses:
    """The late part of `least_conn_success`: the requests that drew a hole first and
    succeeded on the next upstream, ``connect_timeout`` late."""
    parts = _least_conn_parts(
        live, refused, holes, tries, connect_timeout, client_timeout, rate, hold
    )
    if parts is None:
        return ()
    share = (1.0 - non_idempotent) * parts[0] * parts[2]
    return ((share, connect_timeout),) if share > 0 else ()


def _least_conn_parts(
    live: int,
    refused: int,
    holes: int,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    rate: float,
    hold: float,
) -> tuple[float, float, float, float] | None:
    """(share drawing a hole first, success without one, success after one, first pick
    live) under least_conn; None if nothing can succeed. A hole's connect is stuck until
    it times out or the client gives up: nginx then finalizes the request (499,
    ngx_http_upstream_check_broken_connection, proxy_ignore_client_abort off) and frees
    the peer's connection count."""
    k = live + refused + holes
    if k == 0 or live == 0:
        return None
    stuck = min(connect_timeout, client_timeout)
    per_hole = least_conn_hole_share(k, rate, stuck, busy=rate * hold, holes=holes, refused=refused)
    h = min(1.0, holes * per_hole)
    rest = proxy_success(
        live, refused, 0, tries=tries, connect_timeout=0.0, client_timeout=client_timeout
    )
    if tries == 1 or connect_timeout >= client_timeout:
        after_hole = 0.0
    else:
        after_hole = proxy_success(
            live,
            refused,
            0,
            tries=max(0, tries - 1),
            connect_timeout=0.0,
            client_timeout=client_timeout - connect_timeout,
        )
    first_live = (1.0 - h) * live / (live + refused)  # a POST is not passed on
    return h, rest, after_hole, first_live


def _pair_pick(live: int, failed: tuple[int, ...]) -> tuple[float, tuple[float, ...]]:
    """ingress-nginx ewma's pick among untried upstreams: two distinct at random, the
    lower score wins. A failed upstream's score has decayed below every live one's, so
    it wins any pair it is in (two failed ones: either). (P(live), P(each failed kind))."""
    f = sum(failed)
    n = live + f
    if n <= 1:
        return float(live), tuple(float(x) for x in failed)
    pairs = n * (n - 1) / 2
    kinds = tuple((x * live + comb(x, 2) + x * (f - x) / 2) / pairs for x in failed)
    return comb(live, 2) / pairs, kinds


def ewma_avoided_share(k: int, rate: float, stuck: float, rtt: float, decay: float) -> float:
    """Share of requests whose first pick under ewma is one given black hole when the
    requests that pick it *end* on it (no try or no time left), ``stuck`` seconds each.

    Renewal: such a request updates the hole's score to ~``stuck`` (ewma.lua
    ``after_balance``: connect + response time of the last upstream), so it loses every
    pair until ``stuck * exp(-t / decay)`` falls below the live ones' ~``rtt``:
    ``decay * ln(stuck / rtt)`` after the last of them ended; then the next request whose
    pair holds it (2/k of them) picks it, and until that one ends (``stuck``) every pair
    holding it picks it too; those end up to ``stuck`` later still.
    """
    if k <= 1:
        return 1.0
    if rate <= 0:
        return 2.0 / k
    avoid = decay * log(stuck / rtt) if stuck > rtt > 0 else 0.0
    per_cycle = 1.0 + 2.0 * rate * stuck / k
    cycle = avoid + k / (2.0 * rate) + 2.0 * stuck
    return min(2.0 / k, per_cycle / (rate * cycle))


@lru_cache(maxsize=4096)
def ewma_outcomes(
    live: int,
    refused: int,
    holes: int,
    *,
    tries: int,
    connect_timeout: float,
    client_timeout: float,
    rate: float,
    rtt: float,
    decay: float,
    non_idempotent: float = 0.0,
    unreachable: int = 0,
    unreachable_cycle: float = 0.0,
) -> tuple[float, SlowClasses]:
    """(success, late classes) through an nginx balancing with ingress-nginx's ewma.

    ewma.lua (controller-v1.15.0) updates only the *last* upstream a request tried, and a
    score decays towards 0 (``exp(-t / DECAY_TIME)``) when not updated. A failed upstream
    whose requests went on to a live one is never updated: its score sinks below the live
    ones' and it is the first pick of every pair it is in (`_pair_pick`); tried upstreams
    are skipped (0.42.0+). When the requests that pick a black hole end on it (one try,
    or the client's timeout within the connect timeout) it is avoided instead
    (`ewma_avoided_share`) and those requests fail. Unreachable upstreams cost a uniform
    part of the cycle (`unreachable_delays`; the timeout's cut by their mean).
    """
    k = live + refused + holes + unreachable
    if k == 0 or live == 0:
        return 0.0, ()
    t = k if tries <= 0 else min(tries, k)
    if holes and (t == 1 or client_timeout <= connect_timeout):
        stuck = min(connect_timeout, client_timeout)
        h = min(1.0, holes * ewma_avoided_share(k, rate, stuck, rtt, decay))
        ok, late = ewma_outcomes(
            live,
            refused,
            0,
            tries=tries,
            connect_timeout=connect_timeout,
            client_timeout=client_timeout,
            rate=rate,
            rtt=rtt,
            decay=decay,
            non_idempotent=non_idempotent,
            unreachable=unreachable,
            unreachable_cycle=unreachable_cycle,
        )
        return (1.0 - h) * ok, tuple((v * (1.0 - h), d) for v, d in late)
    costs = (0.0, connect_timeout, unreachable_cycle / 2)
    done = _ewma_walk(live, (refused, holes, unreachable), t, costs, client_timeout)
    first = _pair_pick(live, (refused, holes, unreachable))[0]
    ok = (1.0 - non_idempotent) * sum(done.values()) + non_idempotent * first
    return ok, _spread(done, unreachable_cycle, client_timeout, 1.0 - non_idempotent)


def _ewma_walk(
    live: int,
    fails: tuple[int, int, int],
    tries: int,
    costs: tuple[float, float, float],
    client_timeout: float,
) -> dict[tuple[float, int], float]:
    """{(fixed delay, unreachable ones tried): share reaching a live upstream} over the
    ewma picks (`_pair_pick`) of up to ``tries`` tries among the live and the failed
    (refused, holes, unreachable) ones, each failed kind costing ``costs`` (an
    unreachable one its mean, to cut at the client's timeout)."""
    done: dict[tuple[float, int], float] = {}

    def walk(fails: tuple[int, int, int], left: int, at: tuple[float, int], prob: float) -> None:
        if left == 0 or prob == 0:
            return
        p_live, p_kind = _pair_pick(live, fails)
        done[at] = done.get(at, 0.0) + prob * p_live
        spent = at[0] + at[1] * costs[2]
        for i, pk in enumerate(p_kind):
            if pk > 0 and spent + costs[i] < client_timeout:
                nxt = tuple(x - (j == i) for j, x in enumerate(fails))
                nxt_at = (at[0] + costs[i], at[1]) if i < 2 else (at[0], at[1] + 1)
                walk(nxt, left - 1, nxt_at, prob * pk)  # type: ignore[arg-type]

    walk(fails, tries, (0.0, 0), 1.0)
    return done


def _within(left: float, u: int, cycle: float) -> float:
    """P(u unreachable upstreams cost less than ``left`` seconds together)."""
    if u == 0 or cycle <= 0:
        return 1.0
    return irwin_hall_cdf(left / cycle, u)


def upstream_counts(
    upstreams: Sequence[Pod], via: Node, failed: Callable[[Node, Node], bool] | None = None
) -> tuple[int, int, int, int]:
    """(live, refused, black holes, unreachable) upstreams as seen from nginx on ``via``;
    ``failed(via, node)``: via's neighbour entry for node has FAILED (EHOSTUNREACH)."""
    live = refused = holes = unreachable = 0
    for u in upstreams:
        if u.serves_from(via):
            live += 1
        elif u.node is not None and u.node.reachable:
            refused += 1  # killed process or removed pod IP on a live node: fast error
        elif u.node is not None and failed is not None and failed(via, u.node):
            unreachable += 1
        else:
            holes += 1
    return live, refused, holes, unreachable


def sync_time(ingresses: int, per_ingress: float) -> float:
    """Duration of one controller sync for a configuration of ``ingresses`` Ingresses: a
    line through the origin (``nginx.sync_time_per_ingress`` and
    ``nginx.reload_time_per_ingress`` are its slopes, fitted to published points)."""
    return max(0, ingresses) * per_ingress


class Nginx:
    """One ingress-nginx pod: its controller's sync and its workers' upstream list."""

    __slots__ = (
        "_busy_until",
        "_last_sync",
        "_pending",
        "_version",
        "cluster",
        "phase",
        "pod",
        "trial",
        "upstreams",
    )

    def __init__(self, trial: Trial, cluster: IngressCluster, pod: Pod) -> None:
        self.trial = trial
        self.cluster = cluster
        self.pod = pod
        svc = cluster.upstream_service(pod)
        self.upstreams: tuple[Pod, ...] = svc.ready
        self._version = svc.version
        self._pending = False
        self._last_sync = -cluster.sync_gap * trial.rng.random()
        self._busy_until = 0.0  # the sync in progress (syncs run one at a time) ends
        self.phase = trial.phase(cluster.worker_tick)

    def endpoints_changed(self) -> None:
        node = self.pod.node
        if self._pending or node is None or not node.reachable or self.pod.gone:
            return
        self._pending = True
        now = self.trial.now
        start = max(now, self._last_sync + self.cluster.sync_gap, self._busy_until)
        self.trial.at(start - now, self._sync)

    def _sync(self) -> None:
        self._pending = False
        now = self._last_sync = self.trial.now
        svc = self.cluster.upstream_service(self.pod)
        snap = (svc.ready, svc.version)
        c = self.cluster
        # the sync builds the whole configuration (longer with more Ingresses), then the
        # Lua workers pick the backends up on their tick, or nginx reloads
        done = now + c.sync_time
        self._busy_until = done
        if c.dynamic:
            at = next_tick(self.phase, c.worker_tick, done) - now
        else:
            at = c.sync_time + self.trial.p.draw("nginx.reload_time") + c.reload_extra
        self.trial.at(at, self._apply, snap)

    def _apply(self, snap: tuple[tuple[Pod, ...], int]) -> None:
        ready, version = snap
        if version <= self._version or self.pod.gone:
            return
        removed = any(u not in ready for u in self.upstreams)
        self.upstreams = ready
        self._version = version
        if removed:
            self.trial.milestone("ingress.upstream_removed")
        self.trial.changed()

    def restart_view(self) -> None:
        """A (re)started nginx loads the current endpoints at start."""
        svc = self.cluster.upstream_service(self.pod)
        self.upstreams = svc.ready
        self._version = svc.version

    def _counts(self) -> tuple[int, int, int, int] | None:
        """(live, refused, holes, unreachable) upstreams; None if this nginx is down."""
        pod = self.pod
        node = pod.node
        if node is None or not pod.running or not node.reachable:
            return None
        c = self.cluster
        failed = c.neighbours.failed if c.neighbours is not None else None
        return upstream_counts(self.upstreams, node, failed)

    def _inner_share(self, inner: Callable[[Pod], float] | None, live: int) -> float:
        """Mean success of the live upstreams themselves (a second ingress tier)."""
        node = self.pod.node
        if inner is None or not live or node is None:
            return 1.0
        c = self.cluster
        mode, c.latency_mode = c.latency_mode, None  # the tier's own success, not its delays
        try:
            return sum(inner(u) for u in self.upstreams if u.serves_from(node)) / live
        finally:
            c.latency_mode = mode

    def success(self, inner: Callable[[Pod], float] | None = None) -> float:
        """Share of new requests arriving at this nginx that succeed; while the cluster
        asks for one delay (`IngressCluster.latency_mode`), the share that succeeds that
        late."""
        c = self.cluster
        if c.latency_mode is not None:
            d = c.latency_mode
            return sum(v for v, late in self.slow_classes(inner) if late == d)
        counts = self._counts()
        if counts is None:
            return 0.0
        live, refused, holes, unreachable = counts
        s = self._inner_share(inner, live)
        return s * self._own(live, refused, holes, unreachable)[0]

    def _lua_rr(
        self, live: int, refused: int, holes: int, unreachable: int
    ) -> tuple[float, SlowClasses]:
        c = self.cluster
        return lua_round_robin_outcomes(
            live,
            refused,
            holes,
            tries=c.tries,
            connect_timeout=c.connect_timeout,
            client_timeout=c.client_timeout,
            non_idempotent=c.non_idempotent,
            unreachable=unreachable,
            unreachable_cycle=c.neighbours_cycle,
        )

    def _ewma(
        self, live: int, refused: int, holes: int, unreachable: int
    ) -> tuple[float, SlowClasses]:
        c = self.cluster
        return ewma_outcomes(
            live,
            refused,
            holes,
            tries=c.tries,
            connect_timeout=c.connect_timeout,
            client_timeout=c.client_timeout,
            rate=c.request_rate,
            rtt=c.live_rtt,
            decay=c.ewma_decay,
            non_idempotent=c.non_idempotent,
            unreachable=unreachable,
            unreachable_cycle=c.neighbours_cycle,
        )

    def slow_classes(self, inner: Callable[[Pod], float] | None = None) -> SlowClasses:
        """The requests arriving at this nginx that succeed late: ((share, delay), ...).
        Behind a second ingress tier, its late requests add their delays to this one's."""
        counts = self._counts()
        if counts is None:
            return ()
        live, refused, holes, unreachable = counts
        tier = self._tier_late(live)
        if not (holes or unreachable or tier):
            return ()  # only black holes and unreachable upstreams cost time
        s = self._inner_share(inner, live)
        ok, own = self._own(live, refused, holes, unreachable)
        if not tier:
            return tuple((v * s, d) for v, d in own) if s != 1.0 else own
        # a request's delays in the two tiers add up (independent outcomes)
        first = {0.0: ok - sum(v for v, _ in own)} | {d: v for v, d in own}
        second = {0.0: s - sum(tier.values())} | tier
        late: dict[float, float] = {}
        for d1, v1 in first.items():
            for d2, v2 in second.items():
                if d1 + d2 > 0 and v1 * v2 > 0:
                    late[d1 + d2] = late.get(d1 + d2, 0.0) + v1 * v2
        return tuple((v, d) for d, v in sorted(late.items()))

    def _tier_late(self, live: int) -> dict[float, float]:
        """{delay: share} of this nginx's requests that a second-tier nginx (its live
        upstreams, when they are ingress pods) answers late, each upstream 1/live."""
        node = self.pod.node
        nginx = self.cluster.nginx
        out: dict[float, float] = {}
        if node is None or not live:
            return out
        for u in self.upstreams:
            ng = nginx.get(u.name)
            if ng is None or not u.serves_from(node):
                continue
            for v, d in ng.slow_classes():
                out[d] = out.get(d, 0.0) + v / live
        return out

    def _own(
        self, live: int, refused: int, holes: int, unreachable: int
    ) -> tuple[float, SlowClasses]:
        """(success, late classes) of this tier alone (its upstreams' own success 1)."""
        c = self.cluster
        if c.ewma:
            return self._ewma(live, refused, holes, unreachable)
        if c.lua_rr and not c.least_conn:
            return self._lua_rr(live, refused, holes, unreachable)
        if c.least_conn:
            stuck = c.neighbours_cycle if unreachable and not holes else c.connect_timeout
            args = (live, refused, holes + unreachable)
            ok = least_conn_success(
                *args,
                tries=c.tries,
                connect_timeout=stuck,
                client_timeout=c.client_timeout,
                rate=c.worker_rate,
                non_idempotent=c.non_idempotent,
                hold=c.live_hold,
            )
            late = least_conn_late(
                *args,
                tries=c.tries,
                connect_timeout=stuck,
                client_timeout=c.client_timeout,
                rate=c.worker_rate,
                non_idempotent=c.non_idempotent,
                hold=c.live_hold,
            )
            return ok, late
        ok = proxy_success(
            live,
            refused,
            holes,
            tries=c.tries,
            connect_timeout=c.connect_timeout,
            client_timeout=c.client_timeout,
            non_idempotent=c.non_idempotent,
            unreachable=unreachable,
            unreachable_cycle=c.neighbours_cycle,
        )
        late = proxy_outcomes(
            live,
            refused,
            holes,
            tries=c.tries,
            connect_timeout=c.connect_timeout,
            client_timeout=c.client_timeout,
            non_idempotent=c.non_idempotent,
            unreachable=unreachable,
            unreachable_cycle=c.neighbours_cycle,
        )
        return ok, late


class NodeNeighbours:
    """The ingress nodes' kernel neighbour entries for the other nodes' IPs (direct pod
    routing): an entry for a node that stopped answering FAILS after Linux NUD, then
    connects to its pods get EHOSTUNREACH within a resolution cycle."""

    __slots__ = ("_epoch", "_failed", "_seen", "cycle", "nodes", "trial")

    def __init__(self, trial: Trial, nodes: Sequence[Node]) -> None:
        p = trial.p
        self.trial = trial
        self.nodes = list(nodes)
        # a FAILED entry is probed again by broadcast: mcast_solicit probes retrans apart
        self.cycle = p.count("arp.mcast_solicit") * p.draw("arp.retrans_time")
        self._failed: set[tuple[str, str]] = set()
        self._seen = {n.name: n.reachable for n in self.nodes}
        self._epoch = {n.name: 0 for n in self.nodes}
        trial.listeners.append(self._on_change)

    def failed(self, via: Node, node: Node) -> bool:
        return (via.name, node.name) in self._failed

    def _on_change(self) -> None:
        for n in self.nodes:
            if n.reachable == self._seen[n.name]:
                continue
            self._seen[n.name] = n.reachable
            self._epoch[n.name] += 1
            if n.reachable:
                self._failed = {k for k in self._failed if k[1] != n.name}
                continue
            for via in self.nodes:
                if via is not n:
                    self.trial.at(self._nud_failure(), self._fail, via, n, self._epoch[n.name])

    def _nud_failure(self) -> float:
        # REACHABLE for U(base/2, 3 base/2) after the last answer (arp(7)), then DELAY,
        # then the unicast probes: linux_reresolve_bounds
        p, rng = self.trial.p, self.trial.rng
        base = p.draw("arp.base_reachable_time")
        tail = p.draw("arp.delay_first_probe_time")
        return (
            base * (0.5 + rng.random())
            + tail
            + p.count("arp.ucast_solicit") * p.draw("arp.retrans_time")
        )

    def _fail(self, via: Node, node: Node, epoch: int) -> None:
        if epoch == self._epoch[node.name] and not node.reachable and via.reachable:
            self._failed.add((via.name, node.name))
            self.trial.changed()


class _TierSlices(WatchedSlices):
    """EndpointSlices of a second Service (the namespace-level ingress's own pods)."""

    __slots__ = ("workload",)

    def __init__(
        self, trial: Trial, cluster: KubernetesCluster, service: Service, workload: Workload
    ) -> None:
        self.workload = workload
        super().__init__(trial, cluster, service)

    def _publish(self, initial: bool) -> None:
        svc = self.service
        pods = self.workload.pods
        ready = tuple(p for p in pods if p.ready and not p.deleting and not p.gone)
        if ready == svc.ready and not initial:
            return
        svc.ready = ready
        svc.version += 1
        if not initial:
            for h in self.hooks:
                h()


class IngressCluster(KubernetesCluster):
    """A Kubernetes cluster with ingress workloads beside the app.

    ``pod_hooks`` get ``("deleting" | "gone", pod)`` for ingress pods: a preStop that
    removes a VIP, a keepalived that sends its priority-0 advert on SIGTERM.
    """

    def __init__(self, trial: Trial, spec: ClusterSpec, **kw: object) -> None:
        super().__init__(trial, spec, **kw)  # type: ignore[arg-type]
        p = trial.p
        self.endpoints = WatchedSlices(trial, self, self.service)
        self.extra: dict[str, Workload] = {}
        self.controllers: dict[str, WorkloadController] = {}
        self.services: dict[str, Service] = {}  # workload name -> Service it proxies to
        self.tier_slices: dict[str, _TierSlices] = {}
        self.pod_hooks: list[Callable[[str, Pod], None]] = []
        self.nginx: dict[str, Nginx] = {}
        self.dynamic = p.flag("nginx.dynamic_configuration")
        rate = p.draw("nginx.sync_rate_limit")
        self.sync_gap = 1.0 / rate if rate > 0 else 0.0
        self.worker_tick = p.draw("nginx.backends_sync_interval")
        self.tries = p.count("nginx.proxy_next_upstream_tries")
        self.connect_timeout = p.draw("nginx.proxy_connect_timeout")
        self.client_timeout = p.draw("client.timeout")
        self.non_idempotent = p.draw("client.non_idempotent_share")
        direct = p.choice("cni.routing") == "direct"
        self.neighbours = NodeNeighbours(trial, self.nodes) if direct else None
        self.neighbours_cycle = self.neighbours.cycle if self.neighbours is not None else 0.0
        self.least_conn = p.choice("nginx.load_balance") == "least_conn"
        self.request_rate = p.draw("client.request_rate")
        # least_conn without a zone: each worker balances its share on its own counts
        self.worker_rate = self.request_rate / p.count("nginx.worker_processes")
        self.endpoints.hooks.append(self._app_endpoints_changed)
        self.ewma = p.choice("nginx.load_balance") == "ewma"
        self.lua_rr = self.dynamic and p.choice("nginx.round_robin_retry") == "cycle"
        self.ewma_decay = p.draw("nginx.ewma_decay_time")
        key = "client.request_duration"  # a live upstream's EWMA score: its usual latency
        self.live_rtt = BaseLatency.of(p.dist(key) or p.draw(key)).quantile(0.5)
        self.live_hold = p.draw("nginx.upstream_time")  # least_conn: a live pod's busy time
        ingresses = p.count("ingress.ingresses")
        self.sync_time = sync_time(ingresses, p.draw("nginx.sync_time_per_ingress"))
        self.reload_extra = sync_time(ingresses, p.draw("nginx.reload_time_per_ingress"))
        #: the one delay `Nginx.success` answers for while `_latency` asks (None: a(t))
        self.latency_mode: float | None = None
        trial.set_latency(self._latency)

    def _latency(self) -> SlowClasses:
        """The design's late requests: for each delay some nginx has, a(t) evaluated with
        every nginx answering the share that succeeds that late (a(t) is linear in the
        nginx successes: a VIP's one nginx, ECMP's mean over next hops)."""
        delays = sorted({d for ng in list(self.nginx.values()) for _, d in ng.slow_classes()})
        out = []
        for d in delays:
            self.latency_mode = d
            try:
                share = self.trial.availability()
            finally:
                self.latency_mode = None
            if share > 0:
                out.append((share, d))
        return tuple(out)

    # ------------------------------------------------------------------ workloads
    def add_ingress(
        self, name: str, kind: str, nodes: Sequence[Node], replicas: int, *, upstream: str = "app"
    ) -> Workload:
        """Place an ingress workload (running and ready in steady state)."""
        roles = tuple(dict.fromkeys(n.role for n in nodes))
        wl = Workload(name, kind, replicas, roles, "preferred")  # type: ignore[arg-type]
        targets = (
            list(nodes) if kind == "DaemonSet" else [nodes[i % len(nodes)] for i in range(replicas)]
        )
        wl.replicas = len(targets)
        for i, node in enumerate(targets):
            pod = Pod(f"{name}-{node.name}-{i}", wl, node)
            pod.running = pod.ready = True
            pod.probe_phase = self.trial.phase(self.trial.p.draw("probe.period_seconds"))
            node.pods.append(pod)
            wl.pods.append(pod)
        self.extra[name] = wl
        self.controllers[name] = WorkloadController(self.trial, self, wl)
        self.services[name] = self.service if upstream == "app" else self.services_of(upstream)
        for pod in wl.pods:
            self.nginx[pod.name] = Nginx(self.trial, self, pod)
        return wl

    def services_of(self, workload: str) -> Service:
        """The Service in front of an ingress workload (for a tier in front of it)."""
        if workload not in self.tier_slices:
            svc = Service("Cluster")
            sl = _TierSlices(self.trial, self, svc, self.extra[workload])
            sl.hooks.append(lambda: self._tier_changed(workload))
            self.tier_slices[workload] = sl
        return self.tier_slices[workload].service

    def upstream_service(self, pod: Pod) -> Service:
        return self.services[pod.workload.name]

    def nginx_of(self, pod: Pod) -> Nginx:
        ng = self.nginx.get(pod.name)
        if ng is None:
            ng = self.nginx[pod.name] = Nginx(self.trial, self, pod)
        return ng

    def _app_endpoints_changed(self) -> None:
        for ng in list(self.nginx.values()):
            if self.services[ng.pod.workload.name] is self.service:
                ng.endpoints_changed()

    def _tier_changed(self, workload: str) -> None:
        svc = self.tier_slices[workload].service
        for ng in list(self.nginx.values()):
            if self.services[ng.pod.workload.name] is svc:
                ng.endpoints_changed()

    # ------------------------------------------------------------------ events
    def pod_ready_changed(self, pod: Pod) -> None:
        super().pod_ready_changed(pod)
        for name, sl in self.tier_slices.items():
            if pod.workload.name == name:
                sl.pod_changed()

    def _mark_not_ready(self, node: Node, epoch: int) -> None:
        super()._mark_not_ready(node, epoch)
        for sl in self.tier_slices.values():
            sl.pod_changed()

    def delete_pod(self, pod: Pod, *, milestone: str = "pod.deleted") -> None:
        if pod.workload is self.app:
            super().delete_pod(pod, milestone=milestone)
            return
        if pod.deleting or pod.gone:
            return
        pod.deleting = True
        self.controllers[pod.workload.name].pod_deleting(pod)
        for sl in self.tier_slices.values():
            sl.pod_changed()
        self.kubelet.graceful_stop(pod)
        for h in self.pod_hooks:
            h("deleting", pod)

    def pod_gone(self, pod: Pod) -> None:
        if pod.workload is self.app:
            super().pod_gone(pod)
            return
        if pod.gone:
            return
        pod.gone = True
        pod.running = False
        pod.ready = False
        self.controllers[pod.workload.name].pod_gone(pod)
        for sl in self.tier_slices.values():
            sl.pod_changed()
        for h in self.pod_hooks:
            h("gone", pod)
        self.trial.changed()

    def ingress_pods(self, name: str) -> list[Pod]:
        return [p for p in self.extra[name].pods if not p.gone]
