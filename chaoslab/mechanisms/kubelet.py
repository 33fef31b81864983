"""The kubelet's side of a pod: start, readiness, crash and restart, graceful termination.

Covers:
- start: image pull + the runtime's create/start (``kubelet.container_runtime_start``: the
  process runs) + the app's start-up (``pod.container_start_time``: it listens), then the
  readiness probe passes ``success_threshold`` times -> Ready, written to the API. A new
  pod's probe worker starts at its sync (``AddPod``, before the pull), but finds no
  container until the sync that sees it running (at once with the on-demand relist, 1.36+;
  before, the next periodic relist) triggers a probe and restarts the worker's ticker
  there (k8s.io/kubernetes v1.37.2 ``pkg/kubelet/kubelet.go`` line 2250,
  ``pkg/kubelet/prober/prober_manager.go`` lines 344-370, ``worker.go`` lines 186-201 and
  235-243): the grid runs from that sync, as after a restart in place. A probe counts
  once ``initialDelaySeconds`` have passed since the process start (``worker.go`` lines
  330-333: ``state.running.startedAt``, not the app's start-up). Without a probe a running
  container is ready (``prober_manager.go`` lines 354-362: no worker -> ready), so a new
  pod's Ready rides in the status write of the sync that sees its process running,
  before its app listens (``kubelet_pods.go`` lines 1969, 2012; ``status/generate.go``
  lines 127-141): until then its endpoint refuses connections (a live node's reset);
- crash (SIGKILL of the main process): refused at once; PLEG relist (1 s) notices it ->
  pod NotReady, always (that sync sets the death's status before the runtime restarts the
  container: ``kubelet.go`` lines 2135, 2267); the status manager's one writer sends the
  latest status, so the restart's write follows the death's and Ready lands no earlier than
  the restart's (``status_manager.go`` lines 288, 1084, 1212; `Kubelet._write`); restart
  immediately the first time, then back-off 10 s doubling to 300 s,
  counted from the container's exit (``kuberuntime_manager.go`` doBackOff: the back-off
  runs from ``cStatus.FinishedAt``). The sync that restarts it relists the pod at once
  (``kubelet.pleg_on_demand_relist``, 1.36+; before, the next periodic relist): that sync
  reports the new container (restartCount, ``container.restarted``) and runs the
  readiness probe at once, then every period from then (k8s.io/kubernetes v1.37.2
  ``pkg/kubelet/prober/prober_manager.go`` lines 344-370, ``worker.go`` lines 186-201), so
  Ready after a restart is the first probe of that grid at or after the app listens
  (``container.serving``);
- graceful delete: the kubelet sees the deletionTimestamp -> preStop -> SIGTERM -> the app
  stops accepting (``app.stop_accepting_after_sigterm``) and exits
  (``app.exit_after_sigterm``, at most the grace period) -> the object goes away. The
  EndpointSlice controller removes the endpoint at the same time: whichever kube-proxy
  is slower than SIGTERM keeps sending new connections to a closed port (the race);
- reconcile after the kubelet can talk to the API again (partition healed, kubelet
  restarted): pod statuses are rewritten within ``kubelet.status_sync_period``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaoslab.mechanisms.base import Trial, register_milestones
from chaoslab.mechanisms.cluster import Node, Pod
from chaoslab.mechanisms.node import last_tick, next_tick

if TYPE_CHECKING:
    from chaoslab.mechanisms.k8s import KubernetesCluster

__all__ = ["Kubelet"]

register_milestones(
    {
        "container.died": "the killed container's death was noticed by the kubelet (PLEG)",
        "container.restarted": "the killed container's process runs again, as the API shows "
        "it (restartCount up, state.running)",
        "container.serving": "the restarted container's app accepts connections again",
        "pod.not_ready": "the failed pod's Ready condition is False in the API",
        "pod.ready": "a pod of the app became Ready again (in place or replacement)",
        "pod.sigterm": "SIGTERM delivered to the deleted pod's container",
        "pod.gone": "the deleted pod object is removed from the API",
    }
)


class Kubelet:
    """Pod lifecycle on any node (one object serves all nodes; node state lives on Node)."""

    def __init__(self, trial: Trial, cluster: KubernetesCluster) -> None:
        self.trial = trial
        self.cluster = cluster
        p = trial.p
        self.readiness_probe = p.flag("pod.readiness_probe")
        self.probe_period = p.draw("probe.period_seconds")
        self.success_threshold = max(1, p.count("probe.success_threshold"))
        self.initial_delay = p.draw("probe.initial_delay_seconds")
        self.pleg = p.draw("kubelet.pleg_relist_period")
        self.backoff0 = p.draw("kubelet.container_restart_backoff_initial")
        self.backoff_max = p.draw("kubelet.container_restart_backoff_max")
        self.status_sync = p.draw("kubelet.status_sync_period")
        self.on_demand_relist = p.flag("kubelet.pleg_on_demand_relist")
        self._pleg_phase: dict[str, float] = {}
        # pod -> (sent, lands) of its last status write (status_manager.go Start: syncPod
        # and syncBatch share one goroutine, which sends the latest cached status)
        self._writes: dict[str, tuple[float, float]] = {}
        # pod -> the container epoch whose seen sync could not write its unprobed Ready
        self._ready_missed: dict[str, int] = {}

    def _api(self) -> float:
        return self.trial.p.draw("kube_controller_manager.controller_reaction")

    def _write(self, pod: Pod, at: float) -> float:
        """When the status write that carries a change made at ``at`` lands: one writer per
        kubelet sends the latest status (status_manager.go updateStatusInternal, syncBatch),
        so a change made before the queued write is sent rides in it; one made while a
        write is in flight goes in the next, sent when that one lands."""
        sent, lands = self._writes.get(pod.name, (-float("inf"), -float("inf")))
        if at < sent:
            return lands
        start = max(at, lands)
        self._writes[pod.name] = (start, start + self._api())
        return self._writes[pod.name][1]

    def _can_act(self, node: Node | None) -> bool:
        return node is not None and node.powered and node.kubelet_up

    # ------------------------------------------------------------------ start
    def start_pod(self, pod: Pod, *, restart: bool = False) -> None:
        """The pod is bound (or its node came back, or its container is restarted): the
        runtime starts the container's process, then the app starts up, then the readiness
        probe passes."""
        node = pod.node
        if not self._can_act(node):
            return
        pod.epoch += 1
        epoch = pod.epoch
        p = self.trial.p
        delay = p.draw("kubelet.container_runtime_start")
        if not restart:
            delay += p.draw("pod.image_pull_time")
        self.trial.at(delay, self._process_started, pod, epoch, restart)

    def _process_started(self, pod: Pod, epoch: int, restart: bool) -> None:
        if epoch != pod.epoch or pod.gone or not self._can_act(pod.node):
            return
        start_up = self.trial.p.draw("pod.container_start_time")
        seen = self._seen_running(pod)
        # the sync that sees it running (new or restarted) triggers a readiness probe at
        # once, whose ticker restarts from there (prober_manager.go UpdatePodStatus,
        # worker.go run: probeTicker.Reset)
        pod.probe_phase = seen % self.probe_period
        in_place = restart and pod.restarts > 0
        if in_place:
            # that sync reports restartCount, in a write after the death's; without a
            # probe it carries Ready too (prober_manager.go UpdatePodStatus: no worker ->
            # ready once running)
            lands = self._write(pod, seen) - self.trial.now
            self.trial.at(lands, self._restart_reported, pod)
            if not self.readiness_probe:
                self.trial.at(lands, self._set_ready, pod, epoch, False)
        elif not self.readiness_probe:
            # a new container without a probe worker is ready once running: the sync that
            # sees it running writes Ready, before its app listens (prober_manager.go
            # UpdatePodStatus lines 354-362; kubelet_pods.go lines 1969, 2012)
            self.trial.at(seen - self.trial.now, self._ready_unprobed, pod, epoch)
        due = max(seen, self.trial.now + self.initial_delay)  # delay from the process start
        self.trial.at(start_up, self._container_running, pod, epoch, due, in_place)

    def _seen_running(self, pod: Pod) -> float:
        """When the kubelet first syncs the pod with its new container running: at once
        with the on-demand relist (1.36+), else at the node's next periodic relist."""
        now = self.trial.now
        if self.on_demand_relist or pod.node is None:
            return now
        phase = self._pleg_phase.setdefault(pod.node.name, self.trial.phase(self.pleg))
        return last_tick(phase, self.pleg, now) + self.pleg

    def _restart_reported(self, pod: Pod) -> None:
        if not pod.gone and self.cluster.cp.api_up:
            self.trial.milestone("container.restarted")

    def _container_running(self, pod: Pod, epoch: int, due: float, in_place: bool) -> None:
        if epoch != pod.epoch or pod.gone or not self._can_act(pod.node):
            return
        if pod.crashes_left > 0:  # crash loop: dies at the end of its start-up
            pod.crashes_left -= 1
            pod.restarts += 1
            self._died(pod, epoch)
            return
        pod.running = True
        if pod.restarts:
            self.trial.milestone("container.serving")
        self.trial.changed()
        if pod.deleting:
            return
        if not self.readiness_probe:
            if not in_place and self._ready_missed.get(pod.name) == epoch:
                self._report_ready(pod, epoch)  # the seen sync could not write it
            return
        # the first probe of the grid from the seen sync that finds the app listening
        first = next_tick(pod.probe_phase, self.probe_period, max(self.trial.now, due))
        ready_at = first + (self.success_threshold - 1) * self.probe_period
        self.trial.at(ready_at - self.trial.now, self._report_ready, pod, epoch)

    def _ready_unprobed(self, pod: Pod, epoch: int) -> None:
        """The sync that sees a new container running, without a readiness probe: its
        status (Ready) goes out through the one writer, whether or not the app listens."""
        if epoch != pod.epoch or pod.gone or pod.deleting or not self._can_act(pod.node):
            return
        node = pod.node
        if node is None or not node.net_up or not self.cluster.cp.api_up:
            # written once the app runs, else by reconcile() / api_back()
            self._ready_missed[pod.name] = epoch
            return
        lands = self._write(pod, self.trial.now) - self.trial.now
        self.trial.at(lands, self._set_ready, pod, epoch, False)

    def _report_ready(self, pod: Pod, epoch: int) -> None:
        if epoch != pod.epoch or not pod.running or pod.deleting:
            return
        node = pod.node
        if node is None or not node.net_up or not self.cluster.cp.api_up:
            return  # status can't reach the API; reconcile() or api_back() writes it later
        lands = self._write(pod, self.trial.now) - self.trial.now
        self.trial.at(lands, self._set_ready, pod, epoch)

    def _set_ready(self, pod: Pod, epoch: int, listening: bool = True) -> None:
        """The Ready=true write lands (``listening`` false: no probe asked the app)."""
        if epoch != pod.epoch or (listening and not pod.running) or pod.deleting or pod.ready:
            return
        if not self.cluster.cp.api_up:
            return  # the write failed: api_back() makes it again
        pod.ready = True
        self.trial.milestone("pod.ready")
        self.cluster.pod_ready_changed(pod)

    # ------------------------------------------------------------------ crash
    def kill_container(self, pod: Pod, crashes: float = 1) -> None:
        """SIGKILL of the main process; the container then dies ``crashes - 1`` more times
        (``inf``: it never runs again, CrashLoopBackOff for good)."""
        pod.running = False
        pod.crashes_left = max(0, crashes - 1)
        pod.restarts += 1
        pod.epoch += 1
        self.trial.changed()
        self._died(pod, pod.epoch)

    def _died(self, pod: Pod, epoch: int) -> None:
        node = pod.node
        if not self._can_act(node):
            return
        assert node is not None
        phase = self._pleg_phase.setdefault(node.name, self.trial.phase(self.pleg))
        seen = next_tick(phase, self.pleg, self.trial.now)
        self.trial.at(seen - self.trial.now, self._death_seen, pod, epoch, self.trial.now)

    def _death_seen(self, pod: Pod, epoch: int, died: float) -> None:
        if epoch != pod.epoch or pod.gone:
            return
        self.trial.milestone("container.died")
        if pod.node is not None and pod.node.net_up:
            # this sync sets the death's status (Ready=false) before the runtime restarts
            # the container (kubelet.go SyncPod: SetPodStatus, then containerRuntime.SyncPod)
            lands = self._write(pod, self.trial.now) - self.trial.now
            self.trial.at(lands, self._death_written, pod)
        # first restart immediate, then 10 s, 20 s, ... capped (CrashLoopBackOff)
        n = pod.restarts - 1
        backoff = 0.0 if n <= 0 else min(self.backoff_max, self.backoff0 * 2 ** (n - 1))
        self.trial.at(died + backoff - self.trial.now, self._restart, pod, epoch)

    def _death_written(self, pod: Pod) -> None:
        # not tied to the container's epoch or state: the write carries the death's status
        if pod.ready and not pod.gone and self.cluster.cp.api_up:
            self._not_ready(pod)

    def _not_ready(self, pod: Pod) -> None:
        pod.ready = False
        self.trial.milestone("pod.not_ready")
        self.cluster.pod_ready_changed(pod)

    def _set_not_ready(self, pod: Pod, epoch: int) -> None:
        # a status resync after an outage: the container is still down
        if pod.running or not pod.ready or pod.gone or not self.cluster.cp.api_up:
            return
        self._not_ready(pod)

    def _restart(self, pod: Pod, epoch: int) -> None:
        if epoch != pod.epoch or pod.gone or pod.deleting:
            return
        self.start_pod(pod, restart=True)

    # ------------------------------------------------------------------ delete
    def graceful_stop(self, pod: Pod) -> None:
        """The kubelet learned of the pod's deletionTimestamp: preStop, SIGTERM, exit."""
        node = pod.node
        if not self._can_act(node) or (node is not None and not node.net_up):
            return  # it learns when it can reach the API again (reconcile)
        p = self.trial.p
        grace = p.draw("pod.termination_grace_period_seconds")
        extension = p.draw("kubelet.prestop_grace_extension")
        prestop = min(p.draw("pod.prestop_sleep"), grace + extension)
        watch = self._api()
        self.trial.at(watch + prestop, self._sigterm, pod, max(grace - prestop, 0.0))

    def _sigterm(self, pod: Pod, remaining: float) -> None:
        if pod.gone:
            return
        self.trial.milestone("pod.sigterm")
        p = self.trial.p
        stop = min(p.draw("app.stop_accepting_after_sigterm"), remaining)
        exit_ = min(max(p.draw("app.exit_after_sigterm"), stop), remaining)
        self.trial.at(stop, self._stop_accepting, pod)
        self.trial.at(exit_, self._exited, pod)

    def _stop_accepting(self, pod: Pod) -> None:
        if pod.running:
            pod.running = False
            pod.epoch += 1
            self.trial.changed()

    def _exited(self, pod: Pod) -> None:
        self._stop_accepting(pod)
        self.trial.at(self._api(), self.cluster.pod_gone, pod)

    # ------------------------------------------------------------------ reconcile
    def api_back(self, node: Node) -> None:
        """The API answers again (the kubelet kept running): the status manager rewrites
        what changed meanwhile within its sync period, and deletes pods that finished
        terminating."""
        at = self.trial.at
        for pod in list(node.pods):
            if pod.gone:
                continue
            if pod.deleting and not pod.running:
                at(self._api(), self.cluster.pod_gone, pod)
            elif pod.running and not pod.ready and not pod.deleting:
                at(self.trial.phase(self.status_sync), self._report_ready, pod, pod.epoch)
            elif not pod.running and pod.ready:
                at(self.trial.phase(self.status_sync), self._set_not_ready, pod, pod.epoch)

    def reconcile(self, node: Node, *, restarted: bool) -> None:
        """The kubelet talks to the API again: finish deletions, rewrite pod statuses."""
        for pod in list(node.pods):
            if pod.gone:
                continue
            if pod.deleting:
                if pod.running:
                    self.graceful_stop(pod)
                else:
                    self.trial.at(self._api(), self.cluster.pod_gone, pod)
                continue
            if not pod.running:
                self.start_pod(pod, restart=True)
                continue
            if restarted:
                # new probe workers: readiness starts as Failure until the first probe
                pod.epoch += 1
                delay = self.trial.phase(self.probe_period)
                self.trial.at(delay, self._report_ready, pod, pod.epoch)
            elif not pod.ready:
                delay = self.trial.phase(self.status_sync)
                self.trial.at(delay, self._report_ready, pod, pod.epoch)
