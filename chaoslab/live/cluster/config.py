"""What a local cluster is made of, taken from an experiment's parameters.

The timer flags of the real components come from the parameter catalogue
(``chaoslab.params``), resolved the same way as for a model run, so the prediction and
the real controllers run with the same numbers. The real components take one number per
flag: a parameter given as a distribution is refused here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from chaoslab.live.cluster.errors import UnsupportedTimer
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import ParamSet
from chaoslab.params.dists import Fixed

__all__ = ["ClusterConfig", "NodeSpec", "Timers", "config_from_experiment"]

KCM = "kube_controller_manager"
#: kube-controller-manager duration flags and the catalogue key each is set from
KCM_DURATIONS = {
    "--node-monitor-period": f"{KCM}.node_monitor_period",
    "--node-monitor-grace-period": f"{KCM}.node_monitor_grace_period",
    "--node-startup-grace-period": f"{KCM}.node_startup_grace_period",
    "--endpointslice-updates-batch-period": f"{KCM}.endpointslice_updates_batch_period",
    # leader election (component-base LeaderElectionConfiguration): a killed leader's Lease
    # must expire before its new process takes it
    "--leader-elect-lease-duration": f"{KCM}.leader_elect_lease_duration",
    "--leader-elect-renew-deadline": f"{KCM}.leader_elect_renew_deadline",
    "--leader-elect-retry-period": f"{KCM}.leader_elect_retry_period",
}
#: client-go's candidates poll every RetryPeriod x U(1, 1 + 1.2): a constant, no flag
#: (k8s.io/client-go tools/leaderelection/leaderelection.go JitterFactor)
LEADER_JITTER = 1.2
#: kube-controller-manager number flags
KCM_NUMBERS = {
    "--node-eviction-rate": f"{KCM}.node_eviction_rate",
    "--secondary-node-eviction-rate": f"{KCM}.secondary_node_eviction_rate",
    "--unhealthy-zone-threshold": f"{KCM}.unhealthy_zone_threshold",
    "--large-cluster-size-threshold": f"{KCM}.large_cluster_size_threshold",
}
#: kube-apiserver flags (whole seconds): the DefaultTolerationSeconds admission plugin
APISERVER_SECONDS = {
    "--default-not-ready-toleration-seconds": "kube_apiserver.default_not_ready_toleration_seconds",
    "--default-unreachable-toleration-seconds": (
        "kube_apiserver.default_unreachable_toleration_seconds"
    ),
}
#: kube-proxy flags (the data plane's kube-proxy in each node namespace)
KUBE_PROXY_DURATIONS = {
    "--iptables-min-sync-period": "kube_proxy.iptables_min_sync_period",
    "--iptables-sync-period": "kube_proxy.iptables_sync_period",
}
LEASE_DURATION = "kubelet.node_lease_duration_seconds"
STATUS_SYNC = "kubelet.status_sync_period"
LEASE_FRACTION = "kubelet.node_lease_renew_interval_fraction"
BACKOFF = ("kubelet.container_restart_backoff_initial", "kubelet.container_restart_backoff_max")
#: the hollow kubelet's flags (tools/k8s/hollow.go) and the catalogue key each is set from
HOLLOW_DURATIONS = {
    "--node-status-update-frequency": "kubelet.node_status_update_frequency",
    # its fake runtime's containers listen this long after they start (the app's start-up)
    "--app-start-time": "pod.container_start_time",
}
#: the app's readiness probe (whole seconds, as the Pod API takes them) on hollow nodes
PROBE_SECONDS = {
    "periodSeconds": "probe.period_seconds",
    "timeoutSeconds": "probe.timeout_seconds",
    "initialDelaySeconds": "probe.initial_delay_seconds",
}
PROBE_COUNTS = {
    "successThreshold": "probe.success_threshold",
    "failureThreshold": "probe.failure_threshold",
}
#: the kubelet's PLEG relists every second, a constant (pkg/kubelet/kubelet.go
#: genericPlegRelistPeriod); a hollow node cannot run another value
PLEG = "kubelet.pleg_relist_period"
#: kwok renews every lease duration / 4, as the kubelet (sigs.k8s.io/kwok
#: pkg/kwok/controllers/controller.go, initNodeLeaseController)
KWOK_RENEW_FRACTION = 0.25


def _fixed(ps: ParamSet, key: str) -> float:
    value = ps[key]
    if not isinstance(value, Fixed):
        raise UnsupportedTimer(
            f"{key}: the real components take one value, not {ps.text(key)}; "
            "set a fixed value for the cluster"
        )
    return value.value


def _seconds(ps: ParamSet, key: str) -> int:
    v = _fixed(ps, key)
    if not math.isfinite(v) or v != int(v) or v < 0:
        raise UnsupportedTimer(f"{key}: {ps.text(key)} is not a whole number of seconds")
    return int(v)


def _duration_flag(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True)
class Timers:
    """Flag values of the real components, each from its catalogue key."""

    kube_controller_manager: dict[str, str]
    kube_apiserver: dict[str, str]
    kwok: dict[str, str]
    kube_proxy: dict[str, str]
    #: within this long a kubelet sets a pod the controller marked NotReady Ready again
    status_sync_ms: int
    #: the kubelet's crash-loop back-off (initial, cap; seconds): how the control-plane
    #: hooks restart a controller that exits, as a kubelet restarts a static pod
    restart_backoff_s: tuple[float, float]
    sources: dict[str, str] = field(default_factory=dict)
    #: flags of a hollow node's kubelet (its lease duration: ``kwok``'s)
    hollow: dict[str, str] = field(default_factory=dict)
    #: the app's readiness probe (``pod.readiness_probe`` false: None), run by hollow nodes
    readiness_probe: dict[str, int] | None = None

    @classmethod
    def from_params(cls, ps: ParamSet) -> Timers:
        _refuse_unsupported(ps)
        kcm = {f: _duration_flag(_fixed(ps, k)) for f, k in KCM_DURATIONS.items()}
        kcm |= {f: f"{_fixed(ps, k):g}" for f, k in KCM_NUMBERS.items()}
        api = {f: str(_seconds(ps, k)) for f, k in APISERVER_SECONDS.items()}
        kwok = {"--node-lease-duration-seconds": str(_seconds(ps, LEASE_DURATION))}
        proxy = {f: _duration_flag(_fixed(ps, k)) for f, k in KUBE_PROXY_DURATIONS.items()}
        keys = [*KCM_DURATIONS.values(), *KCM_NUMBERS.values(), *APISERVER_SECONDS.values()]
        keys += [*KUBE_PROXY_DURATIONS.values(), LEASE_DURATION, STATUS_SYNC, *BACKOFF]
        sources = {k: f"{ps.text(k)} ({ps.sources[k]})" for k in keys}
        sync = round(_fixed(ps, STATUS_SYNC) * 1000)
        backoff = (_fixed(ps, BACKOFF[0]), _fixed(ps, BACKOFF[1]))
        return cls(kcm, api, kwok, proxy, sync, backoff, sources)

    def with_hollow(self, ps: ParamSet) -> Timers:
        """These timers plus what hollow nodes take: their kubelet's flags, the probe."""
        if _fixed(ps, PLEG) != 1.0:
            raise UnsupportedTimer(
                f"{PLEG}: the hollow kubelet relists every 1 s (a constant), not {ps.text(PLEG)}"
            )
        keys = [*HOLLOW_DURATIONS.values(), *PROBE_SECONDS.values(), *PROBE_COUNTS.values()]
        keys += ["pod.readiness_probe", PLEG]
        sources = self.sources | {k: f"{ps.text(k)} ({ps.sources[k]})" for k in keys}
        hollow = {f: _duration_flag(_fixed(ps, k)) for f, k in HOLLOW_DURATIONS.items()}
        return replace(self, sources=sources, hollow=hollow, readiness_probe=_readiness_probe(ps))


def _readiness_probe(ps: ParamSet) -> dict[str, int] | None:
    """The probe fields of the app's container, from the catalogue's ``probe.*`` keys."""
    if ps["pod.readiness_probe"] is not True:
        return None
    out = {f: _seconds(ps, k) for f, k in PROBE_SECONDS.items()}
    for f, k in PROBE_COUNTS.items():
        n = _fixed(ps, k)
        if n != int(n) or n < 1:
            raise UnsupportedTimer(f"{k}: {ps.text(k)} is not a whole number >= 1")
        out[f] = int(n)
    if out["periodSeconds"] < 1 or out["timeoutSeconds"] < 1:
        raise UnsupportedTimer("probe.period_seconds and probe.timeout_seconds: at least 1 s")
    return out


def _refuse_unsupported(ps: ParamSet) -> None:
    """Parameters whose value the current components cannot reproduce."""
    if ps["kubelet.node_lease"] is not True:
        raise UnsupportedTimer(
            "kubelet.node_lease: false (status-post heartbeats) is not reproduced by the "
            "local cluster: its kwok nodes heartbeat with Leases"
        )
    if ps[f"{KCM}.taint_based_evictions"] is not True:
        raise UnsupportedTimer(
            f"{KCM}.taint_based_evictions: false (legacy eviction) was removed from "
            "Kubernetes in 1.27; the local cluster runs a current release"
        )
    if ps["kube_proxy.proxy_terminating_endpoints"] is not True:
        raise UnsupportedTimer(
            "kube_proxy.proxy_terminating_endpoints: false is pre-1.26 kube-proxy; the "
            "local cluster's kube-proxy always uses terminating endpoints"
        )
    if _fixed(ps, f"{KCM}.leader_elect_jitter_factor") != LEADER_JITTER:
        raise UnsupportedTimer(
            f"{KCM}.leader_elect_jitter_factor: client-go's leader election polls with a "
            f"fixed jitter factor of {LEADER_JITTER:g}, not "
            f"{ps.text(f'{KCM}.leader_elect_jitter_factor')}"
        )
    if ps[f"{KCM}.release_on_exit"] is not False:
        raise UnsupportedTimer(
            f"{KCM}.release_on_exit: a SIGKILLed controller manager releases nothing; "
            "the local cluster leaves its Lease to expire"
        )
    if _fixed(ps, LEASE_FRACTION) != KWOK_RENEW_FRACTION:
        raise UnsupportedTimer(
            f"{LEASE_FRACTION}: kwok renews node leases every duration x "
            f"{KWOK_RENEW_FRACTION:g}, not {ps.text(LEASE_FRACTION)}"
        )


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str  # master | controller | compute
    zone: str


@dataclass(frozen=True)
class ClusterConfig:
    """The cluster to bring up: nodes, the app, and the timers of the real components."""

    spec: ClusterSpec = field(default_factory=ClusterSpec)
    timers: Timers = field(default_factory=lambda: Timers.from_params(ParamSet.resolve()))
    namespace: str = "demo"
    app: str = "web"
    node_port: int = 30080
    source: str = "catalogue defaults"
    #: nodes that run kubemark's hollow kubelet (`chaoslab.live.cluster.hollow`), not kwok
    hollow_nodes: tuple[str, ...] = ()

    @classmethod
    def from_params(
        cls,
        ps: ParamSet,
        spec: ClusterSpec | None = None,
        *,
        source: str = "parameters",
        hollow: Sequence[str] = (),
    ) -> ClusterConfig:
        cfg = cls(spec=spec or ClusterSpec(), timers=Timers.from_params(ps), source=source)
        if not hollow:
            return cfg
        return replace(
            cfg, timers=cfg.timers.with_hollow(ps), hollow_nodes=_hollow_names(cfg, hollow)
        )

    def nodes(self) -> list[NodeSpec]:
        zones = self.spec.zones
        return [
            NodeSpec(name, role, f"zone-{i % zones + 1}")
            for i, (name, role) in enumerate(self.spec.node_names())
        ]


def _hollow_names(cfg: ClusterConfig, wanted: Sequence[str]) -> tuple[str, ...]:
    """Node names, each given by name or by role (``controller``: every controller)."""
    nodes = cfg.nodes()
    out = [n.name for n in nodes if n.name in wanted or n.role in wanted]
    unknown = set(wanted) - {n.name for n in nodes} - {n.role for n in nodes}
    if unknown:
        raise UnsupportedTimer(
            f"live.hollow_nodes: no node or role {', '.join(sorted(unknown))} "
            f"(nodes: {', '.join(n.name for n in nodes)})"
        )
    return tuple(out)


def config_from_experiment(path: Path) -> ClusterConfig:
    """The cluster of an experiment file: its ``cluster:`` section and its parameters
    (profiles, then ``params:``), as a model run of the same file resolves them."""
    from chaoslab.experiment import load_experiment

    exp = load_experiment(path)
    if exp.model.sweep:
        raise UnsupportedTimer(
            f"{path}: sweep: a cluster runs one set of parameters; drop the sweep or pick a point"
        )
    ps = ParamSet.resolve(exp.profiles, exp.overrides())
    hollow = exp.model.live.hollow_nodes if exp.model.live is not None else []
    return ClusterConfig.from_params(ps, exp.cluster_spec(), source=str(path), hollow=hollow)
