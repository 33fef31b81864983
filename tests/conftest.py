"""Shared fixtures: fast, fixed-timing parameter sets for closed-form checks."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: assumed latencies set to zero, so a milestone is a pure function of the timers under test
NO_LATENCY = {
    "kube_controller_manager.controller_reaction": "0s",
    "kube_controller_manager.node_informer_lag": "0s",
    "kube_proxy.sync_duration": "0s",
    "kube_scheduler.scheduling_latency": "0s",
    "pod.container_start_time": "1s",
    "kubelet.node_boot_time": "60s",
}


@pytest.fixture
def no_latency() -> dict[str, str]:
    return dict(NO_LATENCY)


#: markers of tests that need a real component (daemons, the Go-built control plane)
REAL_MARKERS = ("lab", "cluster", "pushgateway")
_skipped_real: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in REAL_MARKERS):
        _skipped_real.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI (.ci/run) sets CHAOSLAB_REQUIRE_REAL=1: there the components are installed, so a
    # skipped real-component test means something is broken, not absent
    if os.environ.get("CHAOSLAB_REQUIRE_REAL") == "1" and _skipped_real:
        print(f"\n{len(_skipped_real)} real-component tests were skipped: {_skipped_real[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
