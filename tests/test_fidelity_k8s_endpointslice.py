"""The EndpointSlice controller's stale-cache retry against its closed form.

``syncService`` (``pkg/controller/endpointslice/endpointslice_controller.go`` v1.37.2, line
433) refuses a sync while the controller's informer has not yet seen its own last write of
the Service's slice (``endpointslice_informer_lag``); ``handleErr`` requeues the Service with
``AddRateLimited``: 1 s, doubling with each refusal in a row (client-go
``ItemExponentialFailureRateLimiter``), reset on success. A graceful pod delete with a
replacement that is Ready at once: the removal is written at 2r (two controller hops from
1.35, r = ``controller_reaction``), the replacement is Ready at t_ready and its sync comes at
t_ready + 2r.
"""

from __future__ import annotations

import numpy as np
import pytest

from chaoslab.designs import DESIGNS
from chaoslab.faults import FAULTS, Fault
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.mechanisms.endpoints import sync_backoff
from chaoslab.params import ParamSet

HORIZON = 120.0
R = 0.02  # controller_reaction, one hop
LAG = "kube_controller_manager.endpointslice_informer_lag"
#: the replacement is Ready one hop after it is scheduled; the old pod exits long after
QUICK = {
    "kube_controller_manager.controller_reaction": f"{R * 1000:g}ms",
    "kube_proxy.sync_duration": "0s",
    "kube_scheduler.scheduling_latency": "0s",
    "pod.container_start_time": "0s",
    "pod.image_pull_time": "0s",
    "pod.readiness_probe": "false",
    "app.exit_after_sigterm": "20s",
}


def _delete(params: dict[str, str], seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    fault = Fault("pod-delete", "app-pod", {})
    ps = ParamSet.resolve(None, params).with_overrides(fault.overrides(), source="fault")
    trial = Trial(ps.sampler(rng), rng, HORIZON)
    topo = DESIGNS["clusterip"].build(trial, ClusterSpec())
    nodes, pods = FAULTS[fault.kind].resolve(topo, fault)
    trial.set_availability(topo.availability)
    FAULTS[fault.kind].inject(topo, nodes, pods)
    trial.env.run(until=HORIZON)
    return trial.milestones


def _refused_until(first: float, seen: float) -> float:
    """Closed form: the sync first tried at ``first`` is retried at first + 1, + 3, + 7, ...
    (back-offs 1, 2, 4, ... s) and writes at the first try at or after ``seen``."""
    t, backoff = first, 1.0
    while t < seen:
        t += backoff
        backoff *= 2
    return t


def test_the_second_write_within_the_lag_comes_one_backoff_later() -> None:
    """Removal written at 2r, the replacement's sync at t_ready + 2r < 2r + lag: refused,
    written 1 s later."""
    m = _delete({**QUICK, LAG: "100ms"})
    assert m["endpoints.removed"] == pytest.approx(2 * R)
    first = m["replacement.ready"] + 2 * R
    assert first < 2 * R + 0.1  # the story's premise: inside the lag
    assert m["endpoints.added"] == pytest.approx(first + 1.0)


def test_a_short_lag_delays_nothing() -> None:
    m = _delete({**QUICK, LAG: "1ms"})
    assert m["endpoints.added"] == pytest.approx(m["replacement.ready"] + 2 * R)


def test_changes_far_apart_are_not_delayed() -> None:
    """The replacement's image takes 1 s to pull: its sync comes long after the informer
    has seen the removal (lag 100 ms). (Not the app's start-up: without a probe the pod is
    Ready once its process runs.)"""
    m = _delete({**QUICK, LAG: "100ms", "pod.image_pull_time": "1s"})
    assert m["replacement.ready"] > 1.0
    assert m["endpoints.added"] == pytest.approx(m["replacement.ready"] + 2 * R)
    assert m["endpoints.removed"] == pytest.approx(2 * R)


@pytest.mark.parametrize("lag", [0.5, 2.0, 5.0, 10.0])
def test_refusals_in_a_row_double_the_backoff(lag: float) -> None:
    """lag 10 s: tries at a, a+1, a+3, a+7, a+15 -> written at a+15 (the first >= 2r+lag)."""
    m = _delete({**QUICK, LAG: f"{lag:g}s"})
    first = m["replacement.ready"] + 2 * R
    expected = _refused_until(first, 2 * R + lag)
    assert expected > first
    assert m["endpoints.added"] < m["pod.gone"]  # no other change in between
    assert m["endpoints.added"] == pytest.approx(expected)


def test_a_pod_change_during_the_backoff_is_refused_too_and_counts() -> None:
    """lag 40 s, the old pod killed at its 30 s grace: retries at a+1, +3, +7, +15, +31; the
    old pod's own sync (gone + 2r, before a+31) is refused as well (6th failure, its 32 s
    retry later than a+31: the earlier one is kept), so a+31 is the 7th: 64 s more."""
    m = _delete({**QUICK, LAG: "40s", "app.exit_after_sigterm": "100s"})
    first = m["replacement.ready"] + 2 * R
    assert first + 15 < m["pod.gone"] + 2 * R < first + 31
    assert m["endpoints.added"] == pytest.approx(first + 31 + 64)


def test_an_older_release_has_one_hop_fewer() -> None:
    """Up to 1.34 a pod change reaches the Service queue at once: removal at r, the
    replacement's sync at t_ready + r, still inside the lag: one back-off later."""
    m = _delete({**QUICK, LAG: "100ms", "kube_controller_manager.endpointslice_pod_queue": "false"})
    assert m["endpoints.removed"] == pytest.approx(R)
    assert m["endpoints.added"] == pytest.approx(m["replacement.ready"] + R + 1.0)


def test_sync_backoff_doubles_up_to_its_cap() -> None:
    got = [sync_backoff(1.0, k, 1000.0) for k in range(13)]
    assert got == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000]
    assert sync_backoff(1.0, 10_000, 1000.0) == 1000.0
    assert sync_backoff(0.5, 3, 1000.0) == 4.0


def test_the_default_lag_delays_few_quick_replacements() -> None:
    """Catalogue lag (quiet cluster, tens of ms) on the CI-sized delete: most replacements
    join the slice within one hop pair of Ready, a few one back-off later, none later."""
    params = {"pod.container_start_time": "0s", "pod.readiness_probe": "false"}
    late = 0
    trials = 200
    for seed in range(trials):
        m = _delete(params, seed)
        wait = m["endpoints.added"] - m["replacement.ready"]
        assert wait < 2.5
        late += wait > 0.9
    assert 0 < late < 0.15 * trials
