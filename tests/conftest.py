"""Shared fixtures: fast, fixed-timing parameter sets for closed-form checks."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: assumed latencies set to zero, so a milestone is a pure function of the timers under test
NO_LATENCY = {
    "kube_controller_manager.controller_reaction": "0s",
    "kube_proxy.sync_duration": "0s",
    "kube_scheduler.scheduling_latency": "0s",
    "pod.container_start_time": "1s",
    "kubelet.node_boot_time": "60s",
}


@pytest.fixture
def no_latency() -> dict[str, str]:
    return dict(NO_LATENCY)
