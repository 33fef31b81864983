"""The Kubernetes parts of an experiment file: the ``live:`` environment and a fault's
``live:`` key (how the drill injects it: method, target selection, hook, chaos pod).

Only the *file shape* lives here (pydantic v2, ``extra="forbid"``, frozen); the one reader
is `chaoslab.experiment.load_experiment`, which resolves a fault entry and the top-level
``probe:`` into the `LiveSpec` the drill runs (`Experiment.live_spec`).
Durations are written with units (``30s``, ``500ms``) and read
with :func:`chaoslab.params.dists.parse_duration`, the same reader as the parameter
catalogue. Timing values a drill needs and the catalogue does not define (how long to
wait, how often to probe, when to give up) have no default here: an experiment states
them, so a drill never runs on a hidden timer.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from chaoslab.live.fields import Duration, StrictModel

__all__ = [
    "CALIBRATION_NAMES",
    "CONTROL_PLANE_FAULTS",
    "FAULT_KINDS",
    "NODE_FAULTS",
    "Duration",
    "FaultSpec",
    "HookSpec",
    "LimitsSpec",
    "LiveFaultKey",
    "LiveSection",
    "LiveSpec",
    "PreflightSpec",
    "ProbeSpec",
    "TargetSpec",
    "WorkloadRef",
]

#: faults a drill can inject on Kubernetes
FaultKind = Literal[
    "pod-delete",
    "pod-kill",
    "node-drain",
    "node-crash",
    "kubelet-stop",
    "node-partition",
    "controller-manager-restart",
    "apiserver-down",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
#: faults that hit a whole node (subject to the node safety rules)
NODE_FAULTS = frozenset({"node-drain", "node-crash", "kubelet-stop", "node-partition"})
#: faults of the control plane: no node or pod of the workload is their target; only the
#: operator knows how to stop their cluster's API server or controller manager (a hook;
#: on the local control plane, ``python -m chaoslab.live.cluster.target``)
CONTROL_PLANE_FAULTS = frozenset({"controller-manager-restart", "apiserver-down"})
#: the model's targets of the control-plane faults (chaoslab.faults)
CONTROL_PLANE_TARGETS = {
    "controller-manager-restart": "controller-manager-leader",
    "apiserver-down": "control-plane",
}
#: what ``live.calibrate`` can measure (`chaoslab.live.k8s.calibrate.PARAMS`)
CalibrationName = Literal["controller_reaction"]
CALIBRATION_NAMES: tuple[str, ...] = get_args(CalibrationName)


_Model = StrictModel


class WorkloadRef(_Model):
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: str = Field(min_length=1)


class TargetSpec(_Model):
    """Which node or pod the fault hits.

    ``select`` follows the model's fault targets: ``app-pod`` (a pod of the workload),
    ``app-pod-node`` (a node running one), ``idle-node`` (a schedulable worker running
    none), ``ingress-node`` (the node of a pod matching ``ingress_selector``). ``node`` or
    ``pod`` names the target directly.
    """

    select: (
        Literal[
            "app-pod",
            "app-pod-node",
            "idle-node",
            "ingress-node",
            "vip-holder",
            "controller-manager-leader",
            "control-plane",
        ]
        | None
    ) = None
    node: str | None = None
    pod: str | None = None
    ingress_namespace: str | None = None
    ingress_selector: str | None = None
    #: vip-holder: "namespace/name" of the Lease whose holderIdentity is the node holding
    #: the VIP (kube-vip: kube-system/plndr-svcs-lock, or <ns>/kubevip-<service> with
    #: per-service election); without it, MetalLB's ``nodeAssigned`` event on the Service
    vip_lease: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> TargetSpec:
        given = [x for x in (self.select, self.node, self.pod) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of select, node, pod")
        if self.vip_lease is not None and (
            self.select != "vip-holder" or self.vip_lease.count("/") != 1
        ):
            raise ValueError("vip_lease is namespace/name, with select: vip-holder")
        if self.select == "ingress-node" and not self.ingress_selector:
            raise ValueError("select: ingress-node needs ingress_selector (a label selector)")
        return self


class HookSpec(_Model):
    """Commands run on the machine running chaoslab, as argv lists.

    Each argument is a template: ``{node}``, ``{address}`` (the node's InternalIP),
    ``{pod}``, ``{namespace}``, ``{container_id}``, ``{duration}`` (seconds) are filled in;
    in a ``with_hook``, ``{at}`` is the instant its effect is due (CLOCK_MONOTONIC
    seconds): a hook that takes it is started at once and waits itself.
    There is never a default command: power-off and power-on are what the operator writes.
    """

    #: the fault (method: hook); with method: pod only ``recover`` is used
    inject: list[str] | None = Field(default=None, min_length=1)
    #: undo step run in every rollback (power on); must be safe to run twice
    recover: list[str] | None = Field(default=None, min_length=1)
    timeout: Duration


class LiveFaultKey(_Model):
    """A fault's ``live:`` key. ``target`` defaults to ``{select: <the fault's target>}``;
    ``duration`` to the fault's own ``duration`` option."""

    #: api: Kubernetes API only (pod-delete, node-drain); pod: a privileged chaos pod pinned
    #: to the node; hook: the operator's command
    method: Literal["api", "pod", "hook"]
    target: TargetSpec | None = None
    #: pod-delete: grace period given to the API delete (None = the pod's own)
    grace_period: Duration | None = None
    #: kubelet-stop / node-partition: how long the fault lasts; the chaos pod undoes it by
    #: itself after this, so it heals even if chaoslab dies
    duration: Duration | None = None
    hook: HookSpec | None = None
    #: image of the chaos pod (needs sh, sleep, nsenter; grep and awk for pod-kill)
    image: str | None = None
    #: method pod: the chaos pod's script waits this long after its container started
    #: before it acts, so the kubelet reports the pod Running first (the fault instant is
    #: taken from that); longer than the kubelet's status latency, a few seconds
    arm: Duration | None = None
    #: node-partition: CIDRs that stay reachable (e.g. your SSH jump host)
    partition_exempt_cidrs: list[str] = Field(default_factory=list)
    #: node-drain: give up evicting a pod after this (PDB blocking)
    eviction_timeout: Duration | None = None
    #: node-drain: wait between eviction attempts a PDB refused (429)
    eviction_retry: Duration | None = None
    #: node faults: the operator's move after this long — taint the node
    #: node.kubernetes.io/out-of-service:NoExecute (non-graceful node shutdown, GA 1.28) so
    #: its pods are force-deleted and replaced; the rollback removes the taint
    out_of_service_after: Duration | None = None
    #: node-crash with method pod: sysrq reboot (b), poweroff (o) or panic (c)
    crash: Literal["reboot", "poweroff", "panic"] = "reboot"
    #: the fault's ``with:`` effect (a control-plane fault) is injected by this hook,
    #: ``with_delay`` after the fault; its ``recover`` joins the rollback
    with_hook: HookSpec | None = None


class FaultSpec(LiveFaultKey):
    """A fault as the drill injects it: the entry's kind and its ``live:`` key resolved."""

    kind: FaultKind
    target: TargetSpec
    #: the fault's second effect (its ``with:``) and when it starts (``with_delay:``)
    with_: str | None = Field(default=None, alias="with")
    with_delay: Duration | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        k, m = self.kind, self.method
        if m == "api" and k not in {"pod-delete", "node-drain"}:
            raise ValueError(f"{k} cannot be done through the API alone; use method pod or hook")
        if m != "api" and k in {"pod-delete", "node-drain"}:
            raise ValueError(f"{k} is an API action; use method: api")
        if m == "hook" and (self.hook is None or self.hook.inject is None):
            raise ValueError("method: hook needs hook: {inject: [...], timeout: ...}")
        if m == "api" and self.hook is not None:
            raise ValueError("hook is only used with method hook or pod")
        if m == "pod" and (not self.image or self.arm is None):
            raise ValueError("method: pod needs image: (the chaos pod's image) and arm:")
        if k in {"kubelet-stop", "node-partition"} and self.duration is None:
            raise ValueError(f"{k} needs duration: (the fault heals itself after it)")
        if self.out_of_service_after is not None and k not in NODE_FAULTS - {"node-drain"}:
            raise ValueError("out_of_service_after is for node-crash, node-partition, kubelet-stop")
        if k == "node-drain" and (self.eviction_timeout is None or self.eviction_retry is None):
            raise ValueError("node-drain needs eviction_timeout: and eviction_retry:")
        if k in NODE_FAULTS and self.target.select == "app-pod":
            raise ValueError(f"{k} hits a node: target select app-pod-node, idle-node, ...")
        if k in {"pod-delete", "pod-kill"} and (
            self.target.node is not None or self.target.select not in (None, "app-pod")
        ):
            raise ValueError(f"{k} hits a pod: target select: app-pod or pod: NAME")
        if k in CONTROL_PLANE_FAULTS:
            self._control_plane()
        elif self.target.select in CONTROL_PLANE_TARGETS.values():
            raise ValueError(f"{k} does not hit the control plane: pick a node or pod target")
        self._second()
        return self

    def _control_plane(self) -> None:
        k = self.kind
        if self.method != "hook":
            raise ValueError(
                f"{k}: a drill stops the control plane only by the operator's hook "
                "(method: hook); there is no API call or chaos pod for it"
            )
        if self.target.select != CONTROL_PLANE_TARGETS[k]:
            raise ValueError(f"{k} hits {CONTROL_PLANE_TARGETS[k]}, not a node or pod")
        if k == "apiserver-down" and self.duration is None:
            raise ValueError("apiserver-down needs duration: (how long no API server answers)")

    def _second(self) -> None:
        """A ``with:`` effect is drilled when it is a control-plane fault, injected by
        ``with_hook`` ``with_delay`` after the first (the trial follows the first's node
        or pod)."""
        w = self.with_
        if w is None or w == "none":
            return
        if w not in CONTROL_PLANE_FAULTS:
            raise ValueError(
                f"with: {w}: a drill runs a second effect only when it is a control-plane "
                f"fault ({', '.join(sorted(CONTROL_PLANE_FAULTS))}); write the node or pod "
                "fault as the first"
            )
        if self.kind in CONTROL_PLANE_FAULTS:
            raise ValueError(
                f"{self.kind} with {w}: two control-plane faults in one trial are not drilled"
            )
        if self.with_hook is None or self.with_hook.inject is None:
            raise ValueError(
                f"with: {w}: say how the drill injects it: with_hook: {{inject: [...], "
                "timeout: ...}"
            )


class ProbeSpec(_Model):
    """How the service URLs are probed from where chaoslab runs (the shared prober,
    ``chaoslab.live.probe``): ``probers`` new-connection probers at ``rate`` probes/s each,
    phase-shifted, plus ``long`` long-lived connections. Built from the experiment's
    ``probe:`` and its ``client.timeout`` parameter."""

    rate: float = Field(gt=0)
    probers: int = Field(ge=1)
    timeout: Duration
    long: int = Field(default=0, ge=0)
    long_interval: Duration = 0.0
    #: width of the bins a(t) is estimated in (chaoslab.outage.availability_from_probes)
    bin: Duration


class LimitsSpec(_Model):
    #: abort the trial (and recover at once) when one outage lasts longer than this
    max_outage: Duration
    #: end the trial when it has not finished after this (the node never came back ...)
    trial_timeout: Duration
    #: how long a rollback waits for a faulted node to be Ready again
    node_return: Duration
    allow_control_plane: bool = False
    #: how many nodes a drill may fault at once
    max_nodes: int = Field(default=1, ge=1)


class PreflightSpec(_Model):
    #: probes must all succeed over this window before a trial starts
    window: Duration
    #: give up when the steady state is not reached after this
    timeout: Duration


class LiveSection(_Model):
    """The ``live:`` section of an experiment, for ``target: kubernetes``: the cluster and
    the drill's pacing (the faults and the prober are ``faults:`` and ``probe:``)."""

    target: Literal["kubernetes"] = "kubernetes"
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = Field(min_length=1)
    #: where chaos pods are created (needs the privileged Pod Security level);
    #: the workload's namespace when not given
    chaos_namespace: str | None = None
    urls: list[str] = Field(min_length=1)
    workload: WorkloadRef
    service: str = Field(min_length=1)
    trials: int = Field(ge=1, description="trials per fault")
    cooldown: Duration
    limits: LimitsSpec
    preflight: PreflightSpec
    #: after recovery, keep observing this long (late milestones, flapping)
    settle: Duration
    #: how often the drill polls what it does not watch (chaos pod phase, node Ready)
    poll: Duration
    #: per API request
    api_timeout: Duration
    #: retries of a read that failed transiently (no answer, 429, 5xx), ``poll`` apart
    api_retries: int = Field(default=3, ge=0)
    #: model design the prediction is run for (the experiment's design by default)
    design: str | None = None
    #: k8s profile to use instead of the one derived from the server version
    profile: str | None = None
    #: ``local``: the control plane on this machine (``chaoslab.live.cluster``), drilled
    #: through its data plane: the prober runs in its client namespace, ``urls`` may name
    #: nodes (``http://compute-1:30080/``), the drill runs as the ServiceAccount of
    #: ``deploy/rbac.yaml`` (token from the TokenRequest API), not as the admin
    cluster: Literal["local"] | None = None
    #: with ``cluster: local``: the state folder of a cluster already up (``chaoslab
    #: cluster up --state DIR``); without it the drill brings one up from this experiment
    #: and takes it down afterwards
    cluster_state: str | None = None
    #: with ``cluster: local``: the RBAC manifest the drill's ServiceAccount is bound by
    #: (``deploy/rbac.yaml`` of this repository when not given)
    rbac: str | None = None
    #: with ``cluster: local`` brought up by the drill: nodes (names or roles) that run
    #: kubemark's hollow kubelet, the real kubelet code on a fake CRI runtime
    #: (``chaoslab.live.cluster.hollow``; needed for pod-kill), instead of kwok
    hollow_nodes: list[str] = Field(default_factory=list)
    #: catalogue values measured on this cluster before the prediction
    #: (`chaoslab.live.k8s.calibrate`); each costs annotation writes on one node
    calibrate: list[CalibrationName] = Field(default_factory=list)
    #: round trips per calibrated value (a sample size: ~30 gives a stable median and p95)
    calibrate_samples: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _local(self) -> LiveSection:
        if self.cluster is None and (self.cluster_state or self.rbac or self.hollow_nodes):
            raise ValueError("cluster_state, rbac and hollow_nodes are for cluster: local")
        if self.cluster == "local" and (self.kubeconfig or self.context):
            raise ValueError(
                "cluster: local makes its own ServiceAccount kubeconfig; drop kubeconfig/context"
            )
        return self


class LiveSpec(LiveSection):
    """What one drill runs: the ``live:`` environment, one fault and the prober (built by
    the experiment, never read from a file; ``live.json`` in a run folder stores it)."""

    fault: FaultSpec
    probe: ProbeSpec
    #: trials of the prediction run before injecting (the experiment's ``trials:``)
    predict_trials: int = Field(default=1000, ge=1)
    seed: int = 0
