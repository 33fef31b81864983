"""Fault-scenario knobs: how long a fault lasts when the experiment does not say.

These are the experimenter's choices rather than facts about software, so their source
says so; a fault in YAML overrides them (``{kind: node-partition, duration: 90s}``).
"""

from __future__ import annotations

from chaoslab.params.catalogue import Param, register
from chaoslab.params.dists import Fixed

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
            "pod-kill: how many times in a row the container dies right after starting.",
        ),
        Param(
            "fault.blip_duration",
            "duration",
            Fixed(2.0),
            "scenario",
            f"{_CHOICE}: a short loss used to look for false failovers",
            "transient-blip: how long the network loss lasts.",
        ),
    ]
)
