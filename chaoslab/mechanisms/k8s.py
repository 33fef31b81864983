"""A Kubernetes cluster as the designs see it: the control-plane mechanisms wired together.

`KubernetesCluster` builds the nodes and the app's pods from a `ClusterSpec`, creates the
node lifecycle controller, kubelet, workload controller, scheduler, EndpointSlice
controller and one kube-proxy per node whose rules matter to the design, and routes
events between them. It also offers the fault primitives (power off, cut off, stop the
kubelet, kill a container, delete a pod, drain) that `chaoslab.faults` composes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod, Service, Workload, node_layout
from chaoslab.mechanisms.endpoints import EndpointSliceController, KubeProxy
from chaoslab.mechanisms.kubelet import Kubelet
from chaoslab.mechanisms.kubevip import graceful_takeover
from chaoslab.mechanisms.node import NodeLifecycleController, next_tick
from chaoslab.mechanisms.workload import Scheduler, WorkloadController

__all__ = ["ControlPlane", "KubernetesCluster"]

register_milestones(
    {
        "pod.deleted": "the targeted pod got its deletionTimestamp (API delete or eviction)",
        "node.powered_on": "a crashed node was powered on again",
        "node.reconnected": "a partitioned node is reachable again",
        "kubelet.started": "a stopped kubelet runs again",
        "pod.force_deleted": "an operator force-deleted the pods of a lost node",
        "apiserver.down": "no API server answers writes (apiserver down, or etcd without quorum)",
        "apiserver.up": "the API server answers again",
        "controller_manager.leader_lost": "the leading kube-controller-manager stopped leading",
        "controller_manager.leader_elected": "a kube-controller-manager acquired the Lease",
        "controller_manager.started": "the new leader's controllers run (caches synced)",
    }
)


class ControlPlane:
    """The API server with its etcd, and the leading kube-controller-manager.

    Nothing here draws a value before a control-plane fault, so a trial without one takes
    the same random stream as a model without a control plane.

    - etcd runs one member per master (stacked); a write needs more than half of the
      members powered (2 masters with one down: no quorum). Without a quorum, or while an
      ``apiserver-down`` fault lasts, no API server answers: `api_up` is False. Kubelets
      are taken to reach any live API server (an HA endpoint in front of them).
    - One controller manager leads (the first master's at the fault) and renews its Lease
      every retry period; a leader that cannot renew stops after the renew deadline and
      exits, and the kubelet restarts it (client-go ``leaderelection.go`` renew;
      ``controllermanager.go`` OnStoppedLeading). A standby on another master takes the
      Lease at its first poll once lease duration has passed since it observed the last
      renewal; a new process waits a full lease duration from its first read, unless the
      old leader released the Lease. The new leader's controllers run after its caches
      sync, and start from empty state (`NodeLifecycleController.restart`).
    - A controller manager that starts while no API server answers exits at once (it
      cannot read the ``extension-apiserver-authentication`` ConfigMap, k8s.io/apiserver
      ``pkg/server/options/authentication.go``; kube-controller-manager does not tolerate
      the failure), and the kubelet restarts it with the crash-loop back-off: the first
      restart at once, then initial x 2^(n-1) up to the cap. Its first run is the first
      start after the API server answers, not a poll right after the return.
    - An ``apiserver-down`` ends with the API server process starting again: it serves
      ``kube_apiserver.start_time`` after the fault's duration.
    """

    __slots__ = (
        "_epoch",
        "_exits",
        "_renew_epoch",
        "_syncing",
        "api_since",
        "api_up",
        "cluster",
        "forced_down",
        "kcm_active",
        "last_renew",
        "leader",
        "listeners",
        "masters",
        "released",
        "restarted",
        "trial",
    )

    def __init__(self, trial: Trial, cluster: KubernetesCluster) -> None:
        self.trial = trial
        self.cluster = cluster
        self.masters = [n for n in cluster.nodes if n.role == "master"]
        self.api_up = True
        self.api_since = 0.0
        self.forced_down = 0
        #: the node whose controller manager holds the Lease, and whether its controllers run
        self.leader: Node | None = self.masters[0] if self.masters else None
        self.kcm_active = True
        self.last_renew = 0.0
        self.released = False
        #: master -> when its new controller-manager process first polls the Lease
        self.restarted: dict[str, float] = {}
        #: master -> how often its controller manager exited (the kubelet's back-off)
        self._exits: dict[str, int] = {}
        self._epoch = 0
        self._renew_epoch = 0
        self._syncing = False
        #: called with api_up whenever it changes (designs whose daemons hold Leases)
        self.listeners: list[Callable[[bool], None]] = []

    @property
    def controllers_ok(self) -> bool:
        """The controllers can act: their manager leads and the API server answers."""
        return self.api_up and self.kcm_active

    # ------------------------------------------------------------ API server and etcd
    def quorum(self) -> bool:
        if not self.masters:
            return True  # a managed control plane outside the modelled nodes
        return 2 * sum(1 for m in self.masters if m.powered) > len(self.masters)

    def force_down(self, duration: float) -> None:
        """No API server answers for ``duration`` (apiserver-down, an etcd stall)."""
        self.forced_down += 1
        self._update()
        # the stopped process starts again at the end and serves only once started
        start = self.trial.p.draw("kube_apiserver.start_time")
        self.trial.at(duration + start, self._release_forced)

    def _release_forced(self) -> None:
        self.forced_down -= 1
        self._update()

    def _update(self) -> None:
        up = self.forced_down == 0 and self.quorum()
        if up == self.api_up:
            return
        self.api_up = up
        t = self.trial
        t.milestone("apiserver.up" if up else "apiserver.down")
        if not up:
            self.cluster.api_lost()
            if self.leader is not None:
                # renewals fail from now: the leader stops a renew deadline after the
                # retry loop's next round began
                retry = t.p.draw("kube_controller_manager.leader_elect_retry_period")
                self.last_renew = t.now - retry * t.rng.random()
                loss = self.last_renew + retry
                loss += t.p.draw("kube_controller_manager.leader_elect_renew_deadline")
                self._renew_epoch += 1
                t.at(loss - t.now, self._renew_failed, self._renew_epoch)
        else:
            self.api_since = t.now
            self.cluster.api_restored()
            if self.leader is None:
                self._elect()
            elif self._syncing:
                sync = t.p.draw("kube_controller_manager.cache_sync_time")
                t.at(sync, self._started, self._epoch)
        for fn in self.listeners:
            fn(up)

    # ------------------------------------------------------------ controller manager
    def _renew_failed(self, epoch: int) -> None:
        if epoch == self._renew_epoch and not self.api_up and self.leader is not None:
            self._lose_leader(released=False)

    def _lose_leader(self, *, released: bool) -> None:
        host = self.leader
        was_active = self.kcm_active
        self.leader = None
        self.kcm_active = False
        self._syncing = False
        self.released = released
        self.trial.milestone("controller_manager.leader_lost")
        if was_active:
            self.cluster.controllers_stopped()
        if host is not None and host.powered:
            self._exited(host)  # the process exits (OnStoppedLeading)
        self._elect()

    def _exited(self, host: Node) -> None:
        """The host's controller manager exited: the kubelet restarts the static pod's
        container, the first time at once, then after the crash-loop back-off."""
        p = self.trial.p
        n = self._exits.get(host.name, 0)
        self._exits[host.name] = n + 1
        wait = 0.0
        if n > 0:
            initial = p.draw("kubelet.container_restart_backoff_initial")
            wait = min(p.draw("kubelet.container_restart_backoff_max"), initial * 2 ** (n - 1))
        self._start_process(host, wait + p.draw("kube_controller_manager.restart_time"))

    def _start_process(self, host: Node, delay: float) -> None:
        """A new controller-manager process on ``host`` reads the Lease ``delay`` from now
        (`_elect` takes it as a candidate from then), unless it exits at start-up."""
        start = self.trial.now + delay
        self.restarted[host.name] = start
        self.trial.at(delay, self._process_started, host, start)

    def _process_started(self, host: Node, start: float) -> None:
        if self.restarted.get(host.name) != start or self.api_up:
            return  # superseded (acquired, powered off), or it runs
        # no API server answers its ConfigMap read: it exits, the kubelet backs off
        del self.restarted[host.name]
        self._exited(host)

    def crash_leader(self) -> None:
        """The leading controller manager's process dies now (controller-manager-restart)."""
        if self.leader is None:
            return  # no leader to lose: an election is under way
        t = self.trial
        retry = t.p.draw("kube_controller_manager.leader_elect_retry_period")
        self.last_renew = t.now - retry * t.rng.random()
        # an exit releases the Lease only with the 1.36+ alpha gate, and only through the API
        release = self.api_up and t.p.flag("kube_controller_manager.release_on_exit")
        self._lose_leader(released=release)

    def master_down(self, node: Node) -> None:
        """A master lost power: its etcd member, API server and controller manager."""
        self.restarted.pop(node.name, None)
        self._exits.pop(node.name, None)  # a rebooted kubelet has no back-off state
        if node is self.leader:
            retry = self.trial.p.draw("kube_controller_manager.leader_elect_retry_period")
            self.last_renew = self.trial.now - retry * self.trial.rng.random()
            self._lose_leader(released=False)
        self._update()

    def master_up(self, node: Node) -> None:
        """A master booted: its etcd member rejoins, a new controller manager starts."""
        self._start_process(node, self.trial.p.draw("kube_controller_manager.restart_time"))
        self._update()
        if self.api_up and self.leader is None:
            self._elect()

    def _elect(self) -> None:
        """Schedule the first acquisition among the live masters' controller managers;
        without the API none can happen (`_update` calls again when it answers)."""
        self._epoch += 1
        if not self.api_up:
            return
        t = self.trial
        p = t.p
        lease = p.draw("kube_controller_manager.leader_elect_lease_duration")
        retry = p.draw("kube_controller_manager.leader_elect_retry_period")
        jitter = p.draw("kube_controller_manager.leader_elect_jitter_factor")
        best, winner = math.inf, None
        for m in self.masters:
            if not m.powered:
                continue
            start = self.restarted.get(m.name)
            if start is None:
                # a standby observed the last renewal at its first poll after it
                observed = self.last_renew + graceful_takeover(t.rng, 1, retry=retry, jitter=jitter)
            elif start >= self.api_since:
                observed = start  # a new process reads the record when it starts
            else:
                observed = self.api_since + graceful_takeover(t.rng, 1, retry=retry, jitter=jitter)
            wait = 0.0 if self.released else lease
            at = _poll_at(t, observed, max(observed + wait, t.now), retry, jitter)
            if at < best:
                best, winner = at, m
        if winner is not None:
            t.at(best - t.now, self._acquired, winner, self._epoch)

    def _acquired(self, host: Node, epoch: int) -> None:
        if epoch != self._epoch or not self.api_up or not host.powered:
            return
        self.leader = host
        self.restarted.pop(host.name, None)
        self.released = False
        self._syncing = True
        self.trial.milestone("controller_manager.leader_elected")
        sync = self.trial.p.draw("kube_controller_manager.cache_sync_time")
        self.trial.at(sync, self._started, epoch)

    def _started(self, epoch: int) -> None:
        if epoch != self._epoch or self.leader is None or not self._syncing:
            return
        if not self.api_up:
            return  # caches cannot sync: `_update` schedules the sync again
        self._syncing = False
        self.kcm_active = True
        self.trial.milestone("controller_manager.started")
        self.cluster.controllers_started()


def _poll_at(trial: Trial, last: float, target: float, retry: float, jitter: float) -> float:
    """A candidate's first poll at or after ``target``, when its polls every
    retry x U(1, 1 + jitter) include one at ``last``; far ahead, a stationary phase."""
    t = last
    if target - t > 10 * retry:
        return target + graceful_takeover(trial.rng, 1, retry=retry, jitter=jitter)
    while t < target:
        t += retry * (1.0 + jitter * float(trial.rng.random()))
    return t


class KubernetesCluster:
    def __init__(
        self,
        trial: Trial,
        spec: ClusterSpec,
        *,
        external_traffic_policy: str = "Cluster",
        proxy_nodes: Iterable[str] | None = None,
    ) -> None:
        self.trial = trial
        self.spec = spec
        p = trial.p
        self.nodes: list[Node] = []
        lease = p.flag("kubelet.node_lease")
        # JitterUntil(period, 0.04, sliding): intervals period x U(1, 1.04); the grid takes
        # their mean (the last heartbeat's mean age differs by < 0.1 %)
        jitter = 1.0 + p.draw("kubelet.heartbeat_jitter_factor") / 2
        for name, role, i, zone in node_layout(spec):
            node = Node(name, role, i, zone)
            # per node and in this order: a period drawn from a distribution takes the
            # random stream's next value before the phase does
            if lease:
                node.hb_period = p.draw("kubelet.node_lease_duration_seconds") * p.draw(
                    "kubelet.node_lease_renew_interval_fraction"
                )
            else:
                node.hb_period = p.draw("kubelet.node_status_update_frequency")
            node.hb_period *= jitter
            node.hb_phase = trial.phase(node.hb_period)
            self.nodes.append(node)
        self.by_name = {n.name: n for n in self.nodes}
        self.proxy_terminating_endpoints = p.flag("kube_proxy.proxy_terminating_endpoints")
        self.lease = lease

        self.app = Workload(
            "app", spec.app_kind, spec.replicas, spec.app_roles(), spec.anti_affinity
        )
        self._place_initial_pods()
        self.service = Service(external_traffic_policy)
        self.cp = ControlPlane(trial, self)
        #: nodes that booted or restarted their kubelet while the API was down
        self._reboot_pending: set[str] = set()
        #: taint-manager deletions that failed while the API was down
        self._missed_evictions: list[tuple[Node, Pod, int]] = []

        self.nlc = NodeLifecycleController(trial, self)
        self.kubelet = Kubelet(trial, self)
        self.scheduler = Scheduler(trial, self)
        self.controller = WorkloadController(trial, self, self.app)
        self.endpoints = EndpointSliceController(trial, self, self.service)
        wanted = set(proxy_nodes) if proxy_nodes is not None else {n.name for n in self.nodes}
        self.proxies: list[KubeProxy] = []
        for node in self.nodes:
            if node.name in wanted:
                node.proxy = KubeProxy(trial, self, node, self.service)
                self.proxies.append(node.proxy)
        self._evicting: dict[str, int] = {}

    def _place_initial_pods(self) -> None:
        wl = self.app
        eligible = [n for n in self.nodes if n.role in wl.roles]
        if not eligible:
            raise ValueError(f"no node of role {'/'.join(wl.roles)} for the app's pods")
        if wl.kind == "DaemonSet":
            targets = eligible
            wl.replicas = len(eligible)
        else:
            if wl.anti_affinity == "required" and wl.replicas > len(eligible):
                raise ValueError(
                    f"{wl.replicas} replicas with required anti-affinity need "
                    f"{wl.replicas} {'/'.join(wl.roles)} nodes, the cluster has {len(eligible)}"
                )
            targets = [eligible[i % len(eligible)] for i in range(wl.replicas)]
        for i, node in enumerate(targets):
            name = f"app-{i}" if wl.kind == "StatefulSet" else f"app-{node.name}-{i}"
            pod = Pod(name, wl, node)
            pod.running = pod.ready = True
            pod.probe_phase = self.trial.phase(self.trial.p.draw("probe.period_seconds"))
            node.pods.append(pod)
            wl.pods.append(pod)

    # ------------------------------------------------------------ queries
    def app_pods(self) -> list[Pod]:
        return [p for p in self.app.pods if not p.gone]

    def app_nodes(self) -> list[Node]:
        seen: list[Node] = []
        for p in self.app.pods:
            if p.node is not None and p.node not in seen and not p.gone:
                seen.append(p.node)
        return seen

    # ------------------------------------------------------------ events from mechanisms
    def pod_ready_changed(self, pod: Pod) -> None:
        if pod.ready and pod.replacement:
            self.trial.milestone("replacement.ready")
        self.endpoints.pod_changed()

    def mark_pods_not_ready(self, node: Node) -> None:
        delay = self.trial.p.draw("kube_controller_manager.controller_reaction")
        self.trial.at(delay, self._mark_not_ready, node, self.nlc.epoch[node.name])

    def _mark_not_ready(self, node: Node, epoch: int) -> None:
        if epoch != self.nlc.epoch[node.name] or not self.cp.controllers_ok:
            return  # re-marked when a controller can write again (`_redo_unknown`)
        changed = False
        for pod in node.pods:
            if not pod.gone and pod.ready:
                pod.ready = False
                changed = True
        if changed:
            self.trial.milestone("pods.not_ready")
            self.endpoints.pod_changed()

    def node_ready_changed(self, node: Node) -> None:
        if node.ready:
            self.scheduler.retry_pending()

    def taint_added(self, node: Node) -> None:
        """Taint manager: delete each pod after its tolerationSeconds (DaemonSet: never)."""
        p = self.trial.p
        self._evicting[node.name] = self._evicting.get(node.name, 0) + 1
        epoch = self._evicting[node.name]
        for pod in node.pods:
            if pod.gone or pod.deleting or pod.workload.kind == "DaemonSet":
                continue
            delay = p.draw("kube_controller_manager.taint_manager_delay") + p.draw(
                "kube_apiserver.default_unreachable_toleration_seconds"
            )
            self.trial.at(delay, self._taint_evict, node, pod, epoch)

    def taint_removed(self, node: Node) -> None:
        self._evicting[node.name] = self._evicting.get(node.name, 0) + 1
        self.scheduler.retry_pending()

    def _taint_evict(self, node: Node, pod: Pod, epoch: int) -> None:
        if epoch != self._evicting.get(node.name) or not node.tainted:
            return
        if not self.cp.controllers_ok:
            if self.cp.kcm_active:
                self._missed_evictions.append((node, pod, epoch))  # retried when it answers
            return
        self.delete_pod(pod, milestone="pod.evicted")

    def evict_pods(self, node: Node) -> None:
        """Legacy (<= 1.12) eviction: delete every non-DaemonSet pod of the node."""
        for pod in list(node.pods):
            if not pod.gone and not pod.deleting and pod.workload.kind != "DaemonSet":
                self.delete_pod(pod, milestone="pod.evicted")

    def proxy_synced(self, proxy: KubeProxy) -> None:
        if "endpoints.removed" not in self.trial.milestones:
            return
        version = self.service.version
        if all(px._synced_version == version for px in self.proxies if px.node.reachable):
            self.trial.milestone("proxy.synced")

    # ------------------------------------------------------------ API-level actions
    def delete_pod(self, pod: Pod, *, milestone: str = "pod.deleted") -> None:
        """Set the deletionTimestamp (graceful delete, eviction)."""
        if pod.deleting or pod.gone:
            return
        pod.deleting = True
        self.trial.milestone(milestone)
        self.endpoints.pod_changed()
        self.controller.pod_deleting(pod)
        self.kubelet.graceful_stop(pod)

    def pod_gone(self, pod: Pod) -> None:
        if pod.gone or not self.cp.api_up:
            return  # the kubelet deletes the object when the API answers (`api_back`)
        pod.gone = True
        pod.running = False
        pod.ready = False
        self.trial.milestone("pod.gone")
        self.endpoints.pod_changed()
        self.controller.pod_gone(pod)
        self.trial.changed()

    def force_delete_pods(self, node: Node) -> None:
        """``kubectl delete pod --force`` of every app pod bound to a lost node."""
        if node.heartbeating:
            return  # the node is back; nothing is stuck
        for pod in list(node.pods):
            if not pod.gone:
                if not pod.deleting:
                    pod.deleting = True
                    self.controller.pod_deleting(pod)
                self.trial.milestone("pod.force_deleted")
                self.pod_gone(pod)

    # ------------------------------------------------------------ fault primitives
    def power_off(self, node: Node) -> None:
        was_heartbeating = node.heartbeating and self.cp.api_up
        node.powered = False
        for pod in node.pods:
            pod.running = False
            pod.epoch += 1
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        if node.role == "master":
            self.cp.master_down(node)
        self.trial.changed()

    def power_on(self, node: Node) -> None:
        """Power on now; the node is back (network, kubelet, kube-proxy) after booting."""
        boot = self.trial.p.draw("kubelet.node_boot_time")
        self.trial.at(boot, self._booted, node)

    def _booted(self, node: Node) -> None:
        node.powered = True
        node.kubelet_up = True
        self.trial.milestone("node.powered_on")
        self._agent_back(node, restarted=True, first=self.trial.now)
        if node.role == "master":
            self.cp.master_up(node)
        if node.proxy is not None:
            node.proxy.resync()
        self.trial.changed()

    def _agent_back(self, node: Node, *, restarted: bool, first: float) -> None:
        """The node's kubelet can heartbeat again (first renewal at ``first``) and
        reconciles its pods, once the API answers."""
        if not node.heartbeating:
            return
        if not self.cp.api_up:
            if restarted:
                self._reboot_pending.add(node.name)
            return
        self.nlc.heartbeat_resumed(node, first)
        self.kubelet.reconcile(node, restarted=restarted)

    def cut_off(self, node: Node) -> None:
        was_heartbeating = node.heartbeating and self.cp.api_up
        node.net_up = False
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        self.trial.changed()

    def reconnect(self, node: Node) -> None:
        node.net_up = True
        self.trial.milestone("node.reconnected")
        if node.heartbeating:
            self._agent_back(node, restarted=False, first=self._first_heartbeat(node))
        if node.proxy is not None:
            node.proxy.resync()
        self.trial.changed()

    def _first_heartbeat(self, node: Node) -> float:
        """When the first heartbeat after a loss of the API path lands: on its regular
        tick if none fell due meanwhile (a blip between two renewals fails nothing), else
        after the failed renewal's back-off (up to a cap; NodeStatus posts keep their
        cadence)."""
        now = self.trial.now
        regular = next_tick(node.hb_phase, node.hb_period, self.nlc.stopped_at.get(node.name, now))
        if regular >= now:
            return regular
        retry_max = self.trial.p.draw("kubelet.node_lease_retry_max")
        cap = min(node.hb_period, retry_max) if self.lease else node.hb_period
        return now + self.trial.phase(cap)

    def stop_kubelet(self, node: Node) -> None:
        was_heartbeating = node.heartbeating and self.cp.api_up
        node.kubelet_up = False
        if was_heartbeating:
            self.nlc.heartbeat_stopped(node)
        self.trial.changed()

    def start_kubelet(self, node: Node) -> None:
        node.kubelet_up = True
        self.trial.milestone("kubelet.started")
        self._agent_back(node, restarted=True, first=self.trial.now)
        self.trial.changed()

    # ------------------------------------------------------------ control plane
    def api_lost(self) -> None:
        """No API server answers: every heartbeat fails from now (`ControlPlane`)."""
        for node in self.nodes:
            if node.heartbeating:
                self.nlc.heartbeat_stopped(node)

    def api_restored(self) -> None:
        """The API answers again: kubelets renew their Leases (after their retry
        back-off) and rewrite statuses; a controller manager that still leads makes the
        writes that failed; pending pods are bound."""
        stopped: list[Node] = []
        for node in self.nodes:
            if not node.heartbeating:
                stopped.append(node)
                continue
            self.nlc.heartbeat_resumed(node, self._first_heartbeat(node))
            if node.name in self._reboot_pending:
                self.kubelet.reconcile(node, restarted=True)
            else:
                self.kubelet.api_back(node)
        self._reboot_pending.clear()
        if self.cp.kcm_active:
            self.nlc.api_restored(stopped)
            missed, self._missed_evictions = self._missed_evictions, []
            for node, pod, epoch in missed:
                self._taint_evict(node, pod, epoch)
            self._controllers_resume()
        self.scheduler.retry_pending()
        self.trial.changed()

    def controllers_stopped(self) -> None:
        self.nlc.stop()
        self._missed_evictions = []
        for name in self._evicting:
            self._evicting[name] += 1  # the taint manager's timers die with the process

    def controllers_started(self) -> None:
        """A new leader's controllers run: node lifecycle from empty state, the
        EndpointSlice and ReplicaSet controllers resync what changed meanwhile."""
        self.nlc.restart()
        self._controllers_resume()
        self.scheduler.retry_pending()
        self.trial.changed()

    def _controllers_resume(self) -> None:
        self.endpoints.resume()
        self.controller.resync()

    def drain(self, node: Node) -> None:
        """kubectl drain: cordon, then evict every non-DaemonSet pod (graceful)."""
        node.unschedulable = True
        for pod in list(node.pods):
            if not pod.gone and pod.workload.kind != "DaemonSet":
                self.delete_pod(pod, milestone="pod.evicted")
