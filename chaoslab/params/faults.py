"""Fault-scenario knobs: how long a fault lasts when the experiment does not say.

These are the experimenter's choices rather than facts about software, so their source
says so; a fault in YAML overrides them (``{kind: node-partition, duration: 90s}``).
"""

from __future__ import annotations

from chaoslab.params.catalogue import Param, register
from chaoslab.params.dists import Fixed

#: every fault kind a fault's ``with:`` option can name (``chaoslab.faults.FAULTS``; a test
#: keeps the two lists equal: the catalogue cannot import the registry)
WITH_KINDS = (
    "none",
    "pod-kill",
    "pod-delete",
    "node-crash",
    "node-partition",
    "kubelet-stop",
    "node-drain",
    "daemon-kill",
    "link-down",
    "transient-blip",
    "controller-manager-restart",
    "apiserver-down",
    "master-crash",
)

_CHOICE = "chaoslab scenario default (an experimenter's choice, not a software default)"

register(
    [
        Param(
            "fault.repair_time",
            "duration",
            Fixed(float("inf")),
            "scenario",
            f"{_CHOICE}: a crashed node stays down (the article's case)",
            "node-crash: time until the node is powered on again (inf = never).",
        ),
        Param(
            "fault.partition_duration",
            "duration",
            Fixed(120.0),
            "scenario",
            f"{_CHOICE}: longer than the default grace period so the control plane reacts",
            "node-partition: time until the partition heals.",
        ),
        Param(
            "fault.kubelet_down_time",
            "duration",
            Fixed(float("inf")),
            "scenario",
            f"{_CHOICE}: the kubelet stays stopped",
            "kubelet-stop: time until the kubelet is started again (inf = never).",
        ),
        Param(
            "fault.crash_count",
            "count",
            Fixed(1.0),
            "scenario",
            f"{_CHOICE}: one crash; larger values model a crash loop with restart back-off",
            "pod-kill: how many times in a row the container dies right after starting "
            "(inf: it never runs again, a pod that stays dead in CrashLoopBackOff).",
        ),
        Param(
            "fault.blip_duration",
            "duration",
            Fixed(2.0),
            "scenario",
            f"{_CHOICE}: a short loss used to look for false failovers",
            "transient-blip: how long the network loss lasts.",
        ),
        Param(
            "fault.apiserver_down_time",
            "duration",
            Fixed(60.0),
            "scenario",
            f"{_CHOICE}: longer than the controller manager's renew deadline (10 s), so its "
            "leader exits and a new one must take the Lease",
            "apiserver-down: how long no API server answers (or etcd has no quorum).",
        ),
        Param(
            "fault.master_repair_time",
            "duration",
            Fixed(float("inf")),
            "scenario",
            f"{_CHOICE}: a crashed control-plane node stays down, like fault.repair_time",
            "master-crash: time until the control-plane node is powered on again "
            "(inf = never); its own key, so a worker crash named with it keeps its own.",
        ),
        Param(
            "fault.with_service",
            "flag",
            False,
            "scenario",
            f"{_CHOICE}: daemon-kill stops the daemon alone (the chaoslab lab's with_service "
            "kills the node's HTTP service as well)",
            "daemon-kill: the node's ingress (nginx) dies with the daemon while the node "
            "lives (a crashed container: its kernel refuses new connections and resets the "
            "established ones).",
        ),
        Param(
            "fault.with",
            "choice",
            "none",
            "scenario",
            f"{_CHOICE}: one effect per fault unless the experiment names a second",
            "A second fault kind injected with this one, at its default target with the "
            "catalogue's values (set them with the fault's params:), fault.with_delay later: "
            "a node crash while the API server is down, a pod that dies during a controller "
            "manager restart.",
            choices=WITH_KINDS,
        ),
        Param(
            "fault.with_delay",
            "duration",
            Fixed(0.0),
            "scenario",
            f"{_CHOICE}: both effects at t = 0",
            "When the fault.with effect starts, after the fault.",
        ),
    ]
)
