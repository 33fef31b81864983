"""ingress-nginx: which upstreams each nginx uses, and the share of requests that succeed.

Covers (docs/model-network.md, ingress-nginx):

- nginx proxies to pod IPs directly (no kube-proxy). Its upstream list follows the
  Service's endpoints: the controller syncs at most ``nginx.sync_rate_limit`` times per
  second; then either the Lua balancer's workers pick the backends up on their
  ``backends_sync_interval`` (1 s) tick (dynamic mode, 0.18+), or nginx reloads
  (``reload_time``; the 2018 template with ``max_fails=0 fail_timeout=0``: no passive
  health checks in either mode).
- A request goes to an upstream (round robin ~ uniform); on ``error timeout`` nginx
  passes it to the next, up to ``proxy_next_upstream_tries`` (0 = all). A connect to a
  killed pod on a live node is refused at once; to a pod on a dead node it times out
  after ``proxy_connect_timeout``. The request succeeds if a live upstream is reached
  within the tries and before the client's ``client.timeout``.
- EHOSTUNREACH (``cni.routing: direct``, pod IPs routed to the node IP without
  encapsulation): once the nginx node's neighbour entry for a dead node has FAILED
  (Linux NUD, ``linux_reresolve_bounds`` after its last answer: 23-53 s by default), every
  connect to a pod there starts a new resolution and fails with EHOSTUNREACH when its
  ``arp.mcast_solicit`` x ``arp.retrans_time`` (3 s) ends: under steady traffic a uniform
  residual of that cycle instead of ``proxy_connect_timeout``, then nginx tries the next
  upstream. Behind an overlay (VXLAN, IP-in-IP: the default) the neighbour that fails is
  the outer packet's, the error never reaches the proxied socket: a black hole.
- ``nginx.load_balance: least_conn`` (plain nginx): a black hole holds each connect it
  got for ``proxy_connect_timeout``, so it has the most active connections and is picked
  first only when its last connect timed out and it ties with the (fast) live upstreams:
  one request per ``connect_timeout + k / rate`` (`least_conn_hole_share`); the retry then
  goes to an untried live one. Round robin (ingress-nginx's default) tries it 1/k of the
  time.
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
from math import comb, factorial, floor

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod, Service, Workload
from chaoslab.mechanisms.endpoints import EndpointSliceController
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.node import next_tick
from chaoslab.mechanisms.workload import WorkloadController

__all__ = [
    "IngressCluster",
    "Nginx",
    "irwin_hall_cdf",
    "least_conn_hole_share",
    "least_conn_success",
    "proxy_success",
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


def least_conn_hole_share(k: int, rate: float, stuck: float) -> float:
    """Share of requests whose first pick under least_conn is one given black hole among
    ``k`` upstreams (live ones answer at once, so they sit at 0 active connections).

    Renewal argument: a pick holds the hole at 1 connection for ``stuck`` seconds; then it
    ties at 0 with the others and each Poisson arrival (``rate``) picks it with 1/k, so the
    next pick comes a mean k/rate later: one request per (stuck + k/rate) seconds, i.e. a
    share 1 / (rate * stuck + k) of all requests (1/k when stuck is 0, as round robin).
    """
    if k <= 0:
        return 0.0
    if rate <= 0:
        return 1.0 / k
    return 1.0 / (rate * stuck + k)


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
) -> float:
    """Share of requests that succeed through an nginx balancing with least_conn.

    Holes are first picks only at `least_conn_hole_share` each; a request that drew one
    waits ``connect_timeout`` and is passed to an untried upstream, which least_conn picks
    among the live and refused ones (both at 0 connections). Refused ones cost nothing.
    """
    k = live + refused + holes
    if k == 0 or live == 0:
        return 0.0
    per_hole = least_conn_hole_share(k, rate, connect_timeout)
    h = min(holes / k, holes * per_hole)
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
    idem = (1.0 - h) * rest + h * after_hole
    first_live = (1.0 - h) * live / (live + refused)  # a POST is not passed on
    return (1.0 - non_idempotent) * idem + non_idempotent * first_live


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


class Nginx:
    """One ingress-nginx pod: its controller's sync and its workers' upstream list."""

    __slots__ = (
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
        self.phase = trial.phase(cluster.worker_tick)

    def endpoints_changed(self) -> None:
        node = self.pod.node
        if self._pending or node is None or not node.reachable or self.pod.gone:
            return
        self._pending = True
        now = self.trial.now
        start = max(now, self._last_sync + self.cluster.sync_gap)
        self.trial.at(start - now, self._sync)

    def _sync(self) -> None:
        self._pending = False
        self._last_sync = self.trial.now
        svc = self.cluster.upstream_service(self.pod)
        snap = (svc.ready, svc.version)
        c = self.cluster
        if c.dynamic:
            at = next_tick(self.phase, c.worker_tick, self.trial.now) - self.trial.now
        else:
            at = self.trial.p.draw("nginx.reload_time")
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

    def success(self, inner: Callable[[Pod], float] | None = None) -> float:
        """Share of new requests arriving at this nginx that succeed."""
        pod = self.pod
        node = pod.node
        if node is None or not pod.running or not node.reachable:
            return 0.0
        c = self.cluster
        failed = c.neighbours.failed if c.neighbours is not None else None
        live, refused, holes, unreachable = upstream_counts(self.upstreams, node, failed)
        s = 1.0
        if inner is not None and live:
            s = sum(inner(u) for u in self.upstreams if u.serves_from(node)) / live
        if c.least_conn:
            # an EHOSTUNREACH upstream is stuck for at most a resolution cycle: a hole
            # costing the whole cycle (an upper bound on its residual)
            stuck = c.neighbours_cycle if unreachable and not holes else c.connect_timeout
            return s * least_conn_success(
                live,
                refused,
                holes + unreachable,
                tries=c.tries,
                connect_timeout=stuck,
                client_timeout=c.client_timeout,
                rate=c.request_rate,
                non_idempotent=c.non_idempotent,
            )
        return proxy_success(
            live,
            refused,
            holes,
            tries=c.tries,
            connect_timeout=c.connect_timeout,
            client_timeout=c.client_timeout,
            non_idempotent=c.non_idempotent,
            inner=s,
            unreachable=unreachable,
            unreachable_cycle=c.neighbours.cycle if c.neighbours is not None else 0.0,
        )


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


class _NotifyingSlices(EndpointSliceController):
    """The EndpointSlice controller, telling every nginx when a Service's slice changed."""

    __slots__ = ("hooks",)

    def __init__(self, trial: Trial, cluster: KubernetesCluster, service: Service) -> None:
        self.hooks: list[Callable[[], None]] = []
        super().__init__(trial, cluster, service)

    def _publish(self, initial: bool) -> None:
        before = self.service.version
        super()._publish(initial)
        if not initial and self.service.version != before:
            for h in self.hooks:
                h()


class _TierSlices(_NotifyingSlices):
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
        self.endpoints = _NotifyingSlices(trial, self, self.service)
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
        self.endpoints.hooks.append(self._app_endpoints_changed)

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
