"""EndpointSlice controller and kube-proxy (iptables mode).

Covers: a pod's Ready condition or deletionTimestamp changes -> the EndpointSlice
controller rewrites the Service's slice after ``endpointslice_updates_batch_period`` (0)
and one controller hop (two from 1.35: ``endpointslice_pod_queue``) -> every kube-proxy
syncs when its BoundedFrequencyRunner allows (``kube_proxy.sync_runner``), and the new
rules are in the kernel after the sync's own duration:

- ``burst-2`` (1.10-1.33, ``pkg/util/async``): a token bucket of rate
  1/``iptables_min_sync_period`` and burst 2, spent when a sync starts; without a token
  the sync waits for the retry at the previous sync's completion + min sync period.
- ``completion-to-start`` (1.34+, ``pkg/proxy/runner``): the min sync period runs from the
  previous sync's completion; no burst.

Until a node's kube-proxy has synced, it keeps DNATing 1/k of new connections to each of
its k programmed endpoints — dead ones included (``statistic mode random``).

``externalTrafficPolicy: Local``: a node forwards external traffic only to its own ready
endpoints; with none it DROPs (``"<svc> has no local endpoints"``), and its health-check
node port answers 503 instead of 200. With ``proxy_terminating_endpoints`` (1.26+), when
every local endpoint is terminating but still serving, those are used instead of a DROP;
the health check still fails (KEP-1669). The same fallback holds for the cluster-wide
endpoints (``externalTrafficPolicy``/``internalTrafficPolicy: Cluster``): with no ready
endpoint anywhere, the serving terminating ones are programmed
(``pkg/proxy/topology.go`` CategorizeEndpoints).

Stale informer cache (``endpointslice_controller.go`` syncService, ``StaleSlices``): a
sync that comes while the controller's own informer has not yet seen its previous write of
the Service's slice (``endpointslice_informer_lag`` after it) is refused, and the Service
is retried after ``endpointslice_sync_backoff`` (1 s), doubling with each refusal in a row
up to ``endpointslice_max_sync_backoff``, reset by a successful sync; a pod change during
the back-off still syncs after its own hops (the work queue's ``Add`` is not delayed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node, Pod, Service

if TYPE_CHECKING:
    from chaoslab.mechanisms.k8s import KubernetesCluster

__all__ = ["EndpointSliceController", "KubeProxy", "WatchedSlices", "sync_backoff"]

register_milestones(
    {
        "endpoints.removed": "EndpointSlice no longer lists a failed pod as ready",
        "endpoints.added": "EndpointSlice lists a new or recovered pod as ready",
        "proxy.synced": "every live kube-proxy on the path has programmed the removal",
    }
)


_LAG = "kube_controller_manager.endpointslice_informer_lag"


def sync_backoff(base: float, failures: int, cap: float) -> float:
    """The Service queue's per-key back-off after ``failures`` refusals in a row
    (client-go ``ItemExponentialFailureRateLimiter.When``: base x 2^failures, capped)."""
    if failures >= 64:
        return cap
    return min(base * 2.0**failures, cap)


class EndpointSliceController:
    __slots__ = (
        "_failures",
        "_lag_rng",
        "_pending",
        "_refused_at",
        "_retry_at",
        "_seen_at",
        "_stale",
        "_written",
        "backoff",
        "backoff_cap",
        "batch",
        "cluster",
        "pod_queue",
        "service",
        "trial",
    )

    def __init__(self, trial: Trial, cluster: KubernetesCluster, service: Service) -> None:
        self.trial = trial
        self.cluster = cluster
        self.service = service
        p = trial.p
        self.batch = p.draw("kube_controller_manager.endpointslice_updates_batch_period")
        # >= 1.35: a pod change goes through a pod work queue before the Service queue
        self.pod_queue = p.flag("kube_controller_manager.endpointslice_pod_queue")
        self.backoff = p.draw("kube_controller_manager.endpointslice_sync_backoff")
        self.backoff_cap = p.draw("kube_controller_manager.endpointslice_max_sync_backoff")
        self._pending = False
        #: a change the controller could not write (no leader, no API server)
        self._stale = False
        #: refusals in a row (the rate limiter's failures for this Service's key)
        self._failures = 0
        #: when the pending rate-limited retry is due (inf: none)
        self._retry_at = math.inf
        #: when a sync was last refused (two adds in one instant are one sync)
        self._refused_at = -math.inf
        #: when the last write was made, its informer lag not drawn yet (None: drawn)
        self._written: float | None = None
        #: when the controller's informer has seen its own last write
        self._seen_at = -math.inf
        #: the lag's own stream (a jump of the trial's): the other draws stay as they were
        self._lag_rng: np.random.Generator | None = None
        self._publish(initial=True)

    def pod_changed(self) -> None:
        """A pod's readiness or deletion changed: sync the Service's slice soon."""
        if not self.cluster.cp.controllers_ok:
            self._stale = True  # `resume` syncs once a leader can write
            return
        if self._pending:
            return  # the queued sync will read the latest state (work-queue dedup)
        self._pending = True
        draw = self.trial.p.draw
        delay = self.batch + draw("kube_controller_manager.controller_reaction")
        if self.pod_queue:
            delay += draw("kube_controller_manager.controller_reaction")
        self.trial.at(delay, self._sync)

    def _sync(self) -> None:
        self._pending = False
        self._attempt()

    def _attempt(self) -> None:
        """``syncService``: refused while the informer lags the last write, else written."""
        if not self.cluster.cp.controllers_ok:
            self._stale = True
            return
        if self._informer_stale():
            if self.trial.now != self._refused_at:  # else the same sync (work-queue dedup)
                self._refused_at = self.trial.now
                self._requeue()
            return
        self._failures = 0  # handleErr: Forget on success
        before = self.service.version
        self._publish(initial=False)
        if self.service.version != before:
            self._written = self.trial.now

    def _informer_stale(self) -> bool:
        """``endpointSliceTracker.StaleSlices``: the informer has not seen the last write."""
        if self._written is not None:
            self._seen_at = self._written + self._draw_lag()
            self._written = None
        return self.trial.now < self._seen_at

    def _draw_lag(self) -> float:
        p = self.trial.p
        dist = p.dist(_LAG)
        if dist is None:
            return p.draw(_LAG)
        if self._lag_rng is None:
            bitgen = self.trial.rng.bit_generator
            jumped = getattr(bitgen, "jumped", None)
            if jumped is None:
                return p.draw(_LAG)
            self._lag_rng = self.trial.jumped_rng()  # = Generator(jumped()), cheaper
        return dist.sample(self._lag_rng)

    def _requeue(self) -> None:
        """``AddRateLimited``: one delayed add per key, the earliest kept."""
        delay = sync_backoff(self.backoff, self._failures, self.backoff_cap)
        self._failures += 1
        due = self.trial.now + delay
        if due >= self._retry_at:
            return
        self._retry_at = due
        self.trial.at(delay, self._retry, due)

    def _retry(self, due: float) -> None:
        if due != self._retry_at:
            return  # superseded by an earlier retry
        self._retry_at = math.inf
        self._attempt()

    def resume(self) -> None:
        """The controller runs again (new leader, or the API answers): sync what changed."""
        if self._stale:
            self._stale = False
            self.pod_changed()

    def _publish(self, initial: bool) -> None:
        svc = self.service
        pods = self.cluster.app.pods
        ready = tuple(p for p in pods if p.ready and not p.deleting and not p.gone)
        terminating = tuple(p for p in pods if p.deleting and not p.gone and p.ready)
        if ready == svc.ready and terminating == svc.serving_terminating and not initial:
            return
        if not initial:
            old = set(svc.ready)
            new = set(ready)
            if old - new:
                self.trial.milestone("endpoints.removed")
            if new - old:
                self.trial.milestone("endpoints.added")
        svc.ready = ready
        svc.serving_terminating = terminating
        svc.version += 1
        if not initial:
            for proxy in self.cluster.proxies:
                proxy.slice_changed()


class WatchedSlices(EndpointSliceController):
    """The EndpointSlice controller, telling its watchers (``hooks``) of every written
    change: what stands where no kube-proxy is told (nginx's Lua balancer, a cloud LB
    controller registering pod IPs)."""

    __slots__ = ("hooks",)

    def __init__(self, trial: Trial, cluster: KubernetesCluster, service: Service) -> None:
        self.hooks: list[Callable[[], None]] = []
        super().__init__(trial, cluster, service)

    def _publish(self, initial: bool) -> None:
        before = self.service.version
        super()._publish(initial)
        if not initial and self.service.version != before:
            for hook in self.hooks:
                hook()


class KubeProxy:
    """One node's kube-proxy: what its iptables rules currently send traffic to."""

    __slots__ = (
        "_epoch",
        "_last_end",
        "_last_start",
        "_pending",
        "_running",
        "_seq",
        "_synced_version",
        "_token_t",
        "_tokens",
        "cluster",
        "local",
        "local_terminating",
        "min_sync",
        "node",
        "programmed",
        "runner",
        "service",
        "trial",
    )

    def __init__(self, trial: Trial, cluster: KubernetesCluster, node: Node, svc: Service) -> None:
        self.trial = trial
        self.cluster = cluster
        self.node = node
        self.service = svc
        p = trial.p
        self.min_sync = p.draw("kube_proxy.iptables_min_sync_period")
        self.runner = p.choice("kube_proxy.sync_runner")
        # the last sync before the fault was the periodic one, at a random phase (taken as
        # its start and, the sync's own duration aside, its end)
        self._last_start = -trial.phase(p.draw("kube_proxy.iptables_sync_period"))
        self._last_end = self._last_start
        # burst-2: the bucket was full before that sync took a token, then refilled
        self._token_t = 0.0
        refill = -self._last_start / self.min_sync if self.min_sync > 0 else 1.0
        self._tokens = min(2.0, 1.0 + refill)
        self._seq = 0
        self._pending = False
        self._running = False
        self._epoch = 0
        self._synced_version = svc.version
        self.programmed: tuple[Pod, ...] = svc.ready
        self.local: tuple[Pod, ...] = ()
        self.local_terminating: tuple[Pod, ...] = ()
        self._split_local(svc.ready, svc.serving_terminating)

    def _split_local(self, ready: tuple[Pod, ...], terminating: tuple[Pod, ...]) -> None:
        n = self.node
        self.local = tuple(p for p in ready if p.node is n)
        self.local_terminating = tuple(p for p in terminating if p.node is n)

    @property
    def healthy_local(self) -> bool:
        """The health-check node port answers 200 (local ready endpoints > 0)."""
        return bool(self.local)

    def external_endpoints(self) -> tuple[Pod, ...]:
        """Where external traffic arriving at this node goes (empty: DROP)."""
        if self.service.external_traffic_policy == "Local":
            if self.local:
                return self.local
            if self.cluster.proxy_terminating_endpoints:
                return self.local_terminating
            return ()
        return self.programmed

    def slice_changed(self) -> None:
        """The Service's slice changed: sync once the runner allows (one sync at a time)."""
        if self._running or not self.node.reachable:
            # a running sync triggers another when it ends; a dead or cut-off kube-proxy
            # resyncs when it is back
            return
        if self._pending and self.runner != "burst-2":
            return  # a pending sync reads the latest slice when it starts
        now = self.trial.env._now
        start = self._earliest_start(now)
        if start <= now:
            # no min-sync wait: start the sync in this very instant instead of through a
            # zero-delay event (the slice it reads is the one just published either way)
            if self._pending:
                self._pending = False
                self._seq += 1  # burst-2: a token came back before the retry timer
            self._start_sync(self._epoch)
            return
        if self._pending:
            return
        self._pending = True
        self.trial.at(start - now, self._timer, self._epoch, self._seq)

    def _earliest_start(self, now: float) -> float:
        """When the runner lets the next sync start (``kube_proxy.sync_runner``)."""
        if self.runner == "completion-to-start":
            return self._last_end + self.min_sync
        # burst-2 (<= 1.33): a token now, else the retry at the last completion + min sync
        if self.min_sync <= 0 or self._tokens_at(now) >= 1.0 - 1e-9:
            return now
        token = now + (1.0 - self._tokens_at(now)) * self.min_sync
        return max(self._last_end + self.min_sync, token)

    def _tokens_at(self, now: float) -> float:
        return min(2.0, self._tokens + (now - self._token_t) / self.min_sync)

    def _timer(self, epoch: int, seq: int) -> None:
        if seq == self._seq:
            self._start_sync(epoch)

    def resync(self) -> None:
        """The node is back (boot or heal): re-list and sync once."""
        self._epoch += 1  # callbacks left from before the outage are void
        self._pending = self._running = False
        if self._synced_version != self.service.version:
            self.slice_changed()

    def _start_sync(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        self._pending = False
        if not self.node.reachable:
            return
        self._running = True
        now = self._last_start = self.trial.now
        if self.runner == "burst-2" and self.min_sync > 0:
            self._tokens = self._tokens_at(now) - 1.0
            self._token_t = now
        svc = self.service
        snapshot = (svc.ready, svc.serving_terminating, svc.version)
        duration = self.trial.p.draw("kube_proxy.sync_duration")
        self.trial.at(duration, self._finish_sync, snapshot, epoch)

    def _finish_sync(
        self, snapshot: tuple[tuple[Pod, ...], tuple[Pod, ...], int], epoch: int
    ) -> None:
        if epoch != self._epoch:
            return
        self._running = False
        self._last_end = self.trial.now
        if not self.node.powered:
            return
        ready, terminating, version = snapshot
        if version > self._synced_version:
            fallback = not ready and self.cluster.proxy_terminating_endpoints
            self.programmed = terminating if fallback else ready
            self._split_local(ready, terminating)
            self._synced_version = version
            self.cluster.proxy_synced(self)
            self.trial.changed()
        # BoundedFrequencyRunner: a change that arrived during this sync runs next
        if self.service.version != self._synced_version:
            self.slice_changed()
