"""How often things go wrong: real failures and transient noise, per node-, pod- or
cluster-year, and how long the noise lasts.

These are the inputs of ``chaoslab advise`` (`chaoslab.advise`): a timer that reacts faster
saves outage on every real failure (``rate.*``) and costs a spurious failover on every
disturbance it mistakes for one (``noise.*``). The catalogue's value kinds have no
"per year", so a rate is a count whose key names its unit: ``rate.node_crash_per_node_year``
is node crashes per node and year. An experiment's ``advise.rates`` / ``advise.noise``
override them with the unit written out (``0.5/node-year``, ``2/cluster-month``).

No published source gives these for an arbitrary on-premises cluster, so every default is
marked ``[assumption]`` with the reasoning behind its order of magnitude: change them to
your own incident history.
"""

from __future__ import annotations

from chaoslab.params.catalogue import Param, register
from chaoslab.params.dists import Fixed, parse_value

__all__ = ["FAULT_RATE_KEYS", "NOISE_KEYS", "NOISE_SCOPE"]

_A = "[assumption]"
_CHOICE = "chaoslab search setting (not a fact about software)"

#: fault kind -> (catalogue key of its default rate, what one unit of exposure is)
FAULT_RATE_KEYS: dict[str, tuple[str, str]] = {
    "node-crash": ("rate.node_crash_per_node_year", "node"),
    "node-partition": ("rate.node_partition_per_node_year", "node"),
    "kubelet-stop": ("rate.kubelet_stop_per_node_year", "node"),
    "node-drain": ("rate.node_drain_per_node_year", "node"),
    "link-down": ("rate.link_down_per_node_year", "node"),
    "daemon-kill": ("rate.daemon_crash_per_node_year", "node"),
    "pod-kill": ("rate.pod_kill_per_pod_year", "pod"),
    "pod-delete": ("rate.pod_delete_per_pod_year", "pod"),
}

#: noise kind -> (rate key, duration key); all per node-year
NOISE_KEYS: dict[str, tuple[str, str]] = {
    "network-blip": ("noise.network_blip_per_node_year", "noise.network_blip_duration"),
    "kubelet-stall": ("noise.kubelet_stall_per_node_year", "noise.kubelet_stall_duration"),
    "apiserver-stall": (
        "noise.apiserver_stall_per_cluster_year",
        "noise.apiserver_stall_duration",
    ),
}

#: what one unit of a noise kind's rate is: a node, or the whole cluster (one API server
#: stall holds up every node's heartbeat at once)
NOISE_SCOPE: dict[str, str] = {
    "network-blip": "node",
    "kubelet-stall": "node",
    "apiserver-stall": "cluster",
}


def _rate(key: str, value: float, source: str, doc: str) -> Param:
    return Param(key, "count", Fixed(value), "any", f"{_A} {source}", doc)


def _duration(key: str, text: str, source: str, doc: str) -> Param:
    return Param(key, "duration", parse_value(text), "any", f"{_A} {source}", doc)


register(
    [
        _rate(
            "rate.node_crash_per_node_year",
            0.2,
            "a commodity server fails hard (power, board, kernel panic) about once in five years",
            "node-crash: node crashes per worker node and year.",
        ),
        _rate(
            "rate.node_partition_per_node_year",
            0.5,
            "a switch port, cable or NIC fault that isolates one node for minutes, every "
            "other year per node",
            "node-partition: partitions per worker node and year.",
        ),
        _rate(
            "rate.kubelet_stop_per_node_year",
            0.5,
            "a kubelet that dies and is not restarted (bad upgrade, full disk) every other "
            "year per node",
            "kubelet-stop: kubelet outages per worker node and year.",
        ),
        _rate(
            "rate.node_drain_per_node_year",
            12.0,
            "monthly OS patching, each a cordon-and-drain",
            "node-drain: planned drains per worker node and year.",
        ),
        _rate(
            "rate.link_down_per_node_year",
            0.5,
            "an uplink losing carrier (optic, cable, switch reboot) every other year per node",
            "link-down: uplink failures per node and year.",
        ),
        _rate(
            "rate.daemon_crash_per_node_year",
            1.0,
            "keepalived, the BGP speaker or kube-vip crashing or OOM-killed once a year per node",
            "daemon-kill: crashes of the design's network daemon per node and year.",
        ),
        _rate(
            "rate.pod_kill_per_pod_year",
            4.0,
            "an app container crashing (OOM kill, bug) once a quarter per replica",
            "pod-kill: container crashes per app pod and year.",
        ),
        _rate(
            "rate.pod_delete_per_pod_year",
            26.0,
            "a rollout every two weeks, each deleting every replica once",
            "pod-delete: graceful deletes per app pod and year (rollouts, rescheduling).",
        ),
        _rate(
            "noise.network_blip_per_node_year",
            52.0,
            "a packet-loss burst or short loss of a node's network (switch reconvergence, "
            "NIC reset, congestion) about once a week per node",
            "network-blip noise: transient network losses per node and year "
            "(a transient-blip of the node).",
        ),
        _duration(
            "noise.network_blip_duration",
            "lognormal(median=500ms, p95=5s)",
            "most blips are under a second (a burst of loss, LACP or ECMP reconvergence), a "
            "few last seconds",
            "network-blip noise: how long the node's network is lost.",
        ),
        _rate(
            "noise.kubelet_stall_per_node_year",
            12.0,
            "a kubelet whose status updates are held up (GC or CPU stall, a slow node) "
            "about once a month per node; a stall of the API server itself is "
            "noise.apiserver_stall_*",
            "kubelet-stall noise: stalls of a node's status updates per node and year "
            "(a kubelet-stop that ends by itself; the data plane keeps serving).",
        ),
        _duration(
            "noise.kubelet_stall_duration",
            "lognormal(median=2s, p95=20s)",
            "seconds usually, tens of seconds for a bad API-server or etcd stall",
            "kubelet-stall noise: how long the node's status updates stop.",
        ),
        _rate(
            "noise.apiserver_stall_per_cluster_year",
            12.0,
            "the API server failing writes for a while (an etcd leader election, a slow "
            "disk's fsync, an overloaded server after a large LIST) about once a month per "
            "cluster",
            "apiserver-stall noise: stalls of the whole control plane per cluster and year "
            "(an apiserver-down that ends by itself: every heartbeat fails meanwhile).",
        ),
        _duration(
            "noise.apiserver_stall_duration",
            "lognormal(median=2s, p95=30s)",
            "an etcd leader election takes at least its election timeout (1 s by default, "
            "etcd docs 'Tuning'); overload stalls last tens of seconds",
            "apiserver-stall noise: how long no API server answers.",
        ),
        _rate(
            "advise.max_spurious_failovers_per_cluster_year",
            2.0,
            "an operator tolerates a failover nobody can explain about twice a year; more "
            "and the alerts are ignored",
            "advise: the default constraint on spurious detections (NotReady, VRRP takeover, "
            "BFD/BGP down, LB mark-down, ...) per cluster and year.",
        ),
        Param(
            "advise.search_min_trials",
            "count",
            Fixed(50.0),
            "any",
            f"{_CHOICE}: enough to rank points whose annual loss differs by 2x",
            "advise: trials per cell of every point in the first round of the search.",
        ),
        Param(
            "advise.search_max_trials",
            "count",
            Fixed(1350.0),
            "any",
            f"{_CHOICE}: min_trials x eta^3, four rounds",
            "advise: most trials per cell of the recommended point.",
        ),
        Param(
            "advise.search_eta",
            "count",
            Fixed(3.0),
            "any",
            f"{_CHOICE}: Hyperband's usual reduction factor (Li et al., JMLR 18(185), 2018)",
            "advise: each round keeps the best 1/eta of the points, at eta x the trials.",
        ),
        Param(
            "advise.search_tolerance",
            "ratio",
            Fixed(0.1),
            "any",
            f"{_CHOICE}: the recommendation's annual loss known to +-10 %",
            "advise: stop once the 95 % interval's half-width is below this share of the "
            "recommendation's annual loss.",
        ),
    ]
)
