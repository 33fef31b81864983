"""The outage metrics shared by simulation and live mode, and model-wide invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoslab.faults import Fault
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.outage import (
    BaseLatency,
    SlowClasses,
    availability_from_probes,
    latency_from_probes,
    latency_metrics,
    latency_quantile,
    metrics,
    no_latency_metrics,
    probed_metrics,
    slow_seconds,
)
from chaoslab.params import ParamSet
from chaoslab.params.dists import LogNormal
from chaoslab.runner import Cell, run_trial


def test_a_clean_blip() -> None:
    m = metrics([0.0, 2.0, 5.0], [0.0, 0.5, 1.0], horizon=100)
    assert m.recovered and m.recovery_s == 5.0
    assert m.downtime_s == 2.0 and m.degraded_s == 3.0
    assert m.lost_s == pytest.approx(2.0 + 1.5)


def test_no_drop_is_zero_and_nothing_observed_is_unknown() -> None:
    m = metrics([0.0], [1.0], horizon=100)
    assert m.recovery_s == 0 and m.lost_s == 0 and m.recovered
    unknown = metrics([], [], horizon=100)
    assert math.isnan(unknown.recovery_s) and not unknown.recovered
    # a prober that recorded nothing after the fault must not read as "no outage"
    t, a = availability_from_probes(np.array([1.0, 2.0]), np.array([True, True]), t_fault=5.0)
    assert math.isnan(metrics(t, a, horizon=60).lost_s)


def test_recovery_is_for_good() -> None:
    m = metrics([0.0, 1.0, 10.0, 12.0], [0.5, 1.0, 0.0, 1.0], horizon=100)
    assert m.recovery_s == 12.0 and m.lost_s == pytest.approx(0.5 + 2.0)


def test_not_recovered_within_the_horizon() -> None:
    m = metrics([0.0, 5.0], [1.0, 0.0], horizon=60)
    assert not m.recovered and math.isinf(m.recovery_s)
    assert m.downtime_s == 55.0 and m.lost_s == 55.0


steps = st.lists(
    st.tuples(st.floats(0.0, 500.0), st.sampled_from([0.0, 0.25, 0.5, 2 / 3, 1.0])),
    min_size=1,
    max_size=20,
)


@given(steps)
def test_metric_invariants(points: list[tuple[float, float]]) -> None:
    pts = sorted(points)
    t = [0.0] + [p[0] for p in pts]
    a = [1.0] + [p[1] for p in pts]
    m = metrics(t, a, horizon=600.0)
    assert 0 <= m.lost_s <= m.downtime_s + m.degraded_s + 1e-9
    if m.recovered:
        assert m.lost_s <= m.recovery_s + 1e-9
        assert m.downtime_s + m.degraded_s <= m.recovery_s + 1e-9
    else:
        assert a[-1] < 1


def test_availability_from_probes_matches_the_step_function() -> None:
    """Probes every 10 ms over a known a(t): the estimate reproduces the metrics."""
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 20.0, 0.01) + 100.0  # any clock; fault at 100 s
    truth = np.where(t - 100 < 3, 0.0, np.where(t - 100 < 6, 0.5, 1.0))
    ok = rng.random(t.size) < truth
    ts, vs = availability_from_probes(t, ok, t_fault=100.0, bin_s=0.5)
    m = metrics(ts, vs, horizon=20.0)
    assert m.downtime_s == pytest.approx(3.0, abs=0.01)
    assert m.recovery_s == pytest.approx(6.0, abs=0.01)
    assert m.lost_s == pytest.approx(3.0 + 1.5, abs=0.3)


def test_a_prober_catches_a_short_dip_as_often_as_its_rate_allows() -> None:
    """A 1 ms dip at 3 s, three probers at 100/s each, interleaved into one grid of 300/s
    (as the live prober starts them): a probe falls in the dip with probability
    300 x 0.001, so 30 % of trials see it; seen, the outage ends with the 20 ms bin that
    holds it. A 2 s outage is always seen, to the bin."""
    rng = np.random.default_rng(3)
    dip = ([0.0, 3.0, 3.001], [1.0, 0.0, 1.0])
    runs = [
        probed_metrics(*dip, 8.0, rate_hz=100, probers=3, bin_s=0.02, rng=rng) for _ in range(3000)
    ]
    seen = [m for m in runs if m.recovery_s > 0]
    assert len(seen) / len(runs) == pytest.approx(0.3, abs=0.025)
    assert {round(m.recovery_s, 6) for m in seen} == {3.02}
    # six probes per bin 3.33 ms apart: exactly one of them fell in the 1 ms dip
    assert {round(m.lost_s / (0.02 / 6)) for m in seen} == {1}
    long = probed_metrics([0.0, 2.0], [0.0, 1.0], 8.0, rate_hz=100, probers=3, bin_s=0.02, rng=rng)
    assert long.recovery_s == pytest.approx(2.0) and long.downtime_s == pytest.approx(2.0)


# ---------------------------------------------------------------- model-wide invariants

_DESIGNS = ["clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local"]
_FAULTS = ["pod-kill", "pod-delete", "node-crash", "node-partition", "kubelet-stop", "node-drain"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    design=st.sampled_from(_DESIGNS),
    kind=st.sampled_from(_FAULTS),
    seed=st.integers(0, 2**31),
    profile=st.sampled_from(["k8s-1.10", "k8s-1.32"]),
)
def test_trial_invariants(design: str, kind: str, seed: int, profile: str) -> None:
    """0 <= lost <= recovery; downtime + degraded <= recovery; milestones after the fault."""
    cell = Cell(design, Fault(kind), ParamSet.resolve(profile), ClusterSpec(), {}, 1800.0)
    row = run_trial(cell, 0, seed=seed)
    assert row["lost_s"] >= 0
    if row["recovered"]:
        assert row["lost_s"] <= row["recovery_s"] + 1e-9
        assert row["downtime_s"] + row["degraded_s"] <= row["recovery_s"] + 1e-9
    for k, v in row.items():
        if k.startswith("at_") and not math.isnan(v):
            assert 0 <= v <= 1800.0, k
    assert all(0.0 <= a <= 1.0 for a in row["a_v"])
    assert row["a_t"] == sorted(row["a_t"])


_FIXED = {
    "kube_controller_manager.controller_reaction": "0s",
    "kube_proxy.sync_duration": "0s",
    "kube_scheduler.scheduling_latency": "0s",
    "pod.container_start_time": "1s",
}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    grace=st.integers(20, 80),
    extra=st.integers(1, 60),
    design=st.sampled_from(_DESIGNS),
)
def test_recovery_never_shrinks_when_grace_grows(
    seed: int, grace: int, extra: int, design: str
) -> None:
    """Same trial (same random phases), longer node-monitor-grace-period: no faster recovery."""
    key = "kube_controller_manager.node_monitor_grace_period"

    def recovery(g: int) -> float:
        ps = ParamSet.resolve(None, {**_FIXED, key: f"{g}s"})
        cell = Cell(design, Fault("node-crash"), ps, ClusterSpec(), {}, 1800.0)
        # the cell key includes no parameter values, so both runs share the random stream
        return float(run_trial(cell, 0, seed=seed)["recovery_s"])

    assert recovery(grace + extra) >= recovery(grace) - 1e-9


# ---------------------------------------------------------------- one trial row


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 50.0), st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=8
    ),
    st.floats(1.0, 60.0),
)
def test_trial_row_is_the_metrics_and_the_recovered_milestone(
    points: list[tuple[float, float]], horizon: float
) -> None:
    """The row every target writes: the metrics of its a(t), and service.recovered only
    for a trial whose service dropped and came back (never at 0)."""
    from chaoslab.outage import trial_row

    pts = sorted(dict(points).items())
    times = [0.0] + [t for t, _ in pts if t > 0]
    values = [1.0 if pts[0][0] > 0 else pts[0][1]] + [v for t, v in pts if t > 0]
    row = trial_row(times, values, horizon, milestone_names=["node.not_ready"])
    m = metrics(times, values, horizon)
    assert (row["recovery_s"], row["recovered"], row["lost_s"]) == (
        m.recovery_s,
        m.recovered,
        m.lost_s,
    )
    assert math.isnan(row["at_node_not_ready"])
    if m.recovered and m.recovery_s > 0:
        assert row["at_service_recovered"] == m.recovery_s
    else:
        assert math.isnan(row["at_service_recovered"])
    assert row["a_t"] == times and row["a_v"] == values


def test_trial_row_keeps_the_milestones_seen() -> None:
    from chaoslab.outage import trial_row

    row = trial_row([0.0, 2.0], [0.0, 1.0], 10.0, milestones={"vrrp.master_changed": 1.9})
    assert row["at_vrrp_master_changed"] == 1.9 and row["at_service_recovered"] == 2.0
    assert row["connections_reset"] != row["connections_reset"]  # NaN: none observed


# --------------------------------------------------------------------------- latency
_POINT = BaseLatency.of(0.002)  # a fixed base latency: one sample


def test_a_constant_slow_share_over_a_window_is_share_times_window() -> None:
    # a share 0.3 of requests succeeds 5 s late from t=10 to t=40: slow 0.3 x 30 s
    times = [0.0, 10.0, 40.0]
    classes = [(), ((0.3, 5.0),), ()]
    assert slow_seconds(times, classes, 100.0, threshold=1.0, base=_POINT) == pytest.approx(9.0)
    # a threshold above base + delay counts nothing slow
    assert slow_seconds(times, classes, 100.0, threshold=6.0, base=_POINT) == 0.0
    # the horizon cuts the window
    assert slow_seconds(times, classes, 20.0, threshold=1.0, base=_POINT) == pytest.approx(3.0)


def test_the_base_latency_tail_decides_a_delay_just_below_the_threshold() -> None:
    # base lognormal(median 1 ms, p95 5 ms): P(base + 0.998 s > 1 s) = P(base > 2 ms)
    base = BaseLatency.of(LogNormal(0.001, 0.005))
    classes = [((1.0, 0.998),)]
    got = slow_seconds([0.0], classes, 10.0, threshold=1.0, base=base)
    sigma = math.log(5.0) / 1.6448536269514722
    expected = 0.5 * math.erfc(math.log(2.0) / sigma / math.sqrt(2.0))  # P(Z > ln 2 / sigma)
    assert got == pytest.approx(10.0 * expected, abs=0.2)


@pytest.mark.parametrize(
    ("slow_share", "expected"),
    [
        (0.005, 0.002),  # 0.5 % late: the 99th percentile is still the base latency
        (0.02, 5.002),  # 2 % late: the 99th percentile lies among the late ones
    ],
)
def test_p99_of_a_two_point_mixture(slow_share: float, expected: float) -> None:
    # a(t) = 1 throughout the window; a share succeeds 5 s late on [0, 10)
    got = latency_quantile(
        [0.0], [1.0], [0.0, 10.0], [((slow_share, 5.0),), ()], end=10.0, base=_POINT
    )
    assert got == pytest.approx(expected)


def test_failed_requests_are_not_timed_and_an_empty_window_is_the_base_latency() -> None:
    # half the requests fail, 1.5 % of all succeed 5 s late: 3 % of the successes are late
    got = latency_quantile([0.0], [0.5], [0.0], [((0.015, 5.0),)], end=10.0, base=_POINT)
    assert got == pytest.approx(5.002)
    # nothing happened (window of length 0): the base latency's p99
    base = BaseLatency.of(LogNormal(0.001, 0.005))
    assert latency_quantile([0.0], [1.0], [0.0], [()], end=0.0, base=base) == base.p99
    # nobody got an answer in the window: nothing to time
    assert math.isnan(latency_quantile([0.0], [0.0], [0.0], [()], end=5.0, base=_POINT))


def test_latency_metrics_window_runs_to_the_end_of_the_slow_stretch() -> None:
    # a(t) never drops (recovery 0): the slow stretch [0, 20) alone makes the window;
    # 1.1 % of requests late over it: the 99th percentile is among the late ones
    a_t, a_v = [0.0], [1.0]
    times, classes = [0.0, 20.0], [((0.011, 3.0),), ()]
    slow, p99 = latency_metrics(
        a_t, a_v, times, classes, 100.0, recovery_s=0.0, threshold=1.0, base=_POINT
    )
    assert slow == pytest.approx(0.22)
    assert p99 == pytest.approx(3.002)
    # not recovered: the window is the whole horizon, a(t) = 0 after 50 s
    _, p99 = latency_metrics(
        [0.0, 50.0],
        [1.0, 0.0],
        times,
        classes,
        100.0,
        recovery_s=math.inf,
        threshold=1.0,
        base=_POINT,
    )
    assert p99 == pytest.approx(0.002)  # 0.22 s of the 50 s of successes: 0.44 % late


def test_a_full_outage_then_recovery_times_the_first_successes_after_it() -> None:
    # a(t) = 0 on [0, 2), 1 after: nothing succeeded in the window [0, 2), so it widens
    # to the horizon and the successes after recovery, all at the base latency, are timed
    slow, p99 = latency_metrics(
        [0.0, 2.0], [0.0, 1.0], [0.0], [()], 60.0, recovery_s=2.0, threshold=1.0, base=_POINT
    )
    assert (slow, p99) == (0.0, _POINT.p99)
    # never recovers: no request succeeds before the horizon, nothing to time
    _, p99 = latency_metrics(
        [0.0], [0.0], [0.0], [()], 60.0, recovery_s=math.inf, threshold=1.0, base=_POINT
    )
    assert math.isnan(p99)


def test_a_design_without_a_latency_model_follows_the_same_rule() -> None:
    # a(t) = 0 until the horizon: no success to time, as latency_metrics
    assert math.isnan(no_latency_metrics(_POINT, [0.0], [0.0], 60.0)[1])
    # a full outage on [0, 2), then recovery: the base latency's p99
    assert no_latency_metrics(_POINT, [0.0, 2.0], [0.0, 1.0], 60.0) == (0.0, _POINT.p99)
    # a(t) back only at the horizon: still nothing succeeded before it
    assert math.isnan(no_latency_metrics(_POINT, [0.0, 60.0], [0.0, 1.0], 60.0)[1])


def test_measured_full_outage_then_recovery_times_the_first_successes() -> None:
    # every probe fails on [0, 2 s), then all answer in 2 ms: the window [0, 2) has no
    # success, so the p99 is over the successes before the horizon
    t = np.arange(0.0, 60.0, 0.01)
    ok = t >= 2.0
    lat = np.full(t.size, 0.002)
    _, p99 = latency_from_probes(
        t, ok, lat, t_fault=0.0, bin_s=0.1, horizon=60.0, threshold=1.0, recovery_s=2.0
    )
    assert p99 == pytest.approx(0.002)


def test_a_design_without_a_latency_model_states_nothing_late() -> None:
    base = BaseLatency.of(LogNormal(0.001, 0.005))
    assert no_latency_metrics(base) == (0.0, base.p99)
    # lognormal p99 = median x exp(sigma x z99), within the sampling error of 4096 draws
    sigma = math.log(5.0) / 1.6448536269514722
    assert base.p99 == pytest.approx(0.001 * math.exp(sigma * 2.3263478740408408), rel=0.15)


@given(
    share=st.floats(0.0, 1.0),
    delay=st.floats(0.0, 30.0),
    t1=st.floats(0.0, 50.0),
    span=st.floats(0.0, 50.0),
)
def test_slow_seconds_is_at_most_the_slow_mass(
    share: float, delay: float, t1: float, span: float
) -> None:
    times = [0.0, t1, t1 + span]
    classes: list[SlowClasses] = [(), ((share, delay),), ()]
    got = slow_seconds(times, classes, 100.0, threshold=1.0, base=_POINT)
    assert 0.0 <= got <= share * min(span, max(0.0, 100.0 - t1)) + 1e-9


@pytest.mark.parametrize("delay", [0.004, 0.5])  # overlapping copies, separate copies
def test_p99_of_a_mixture_is_the_quantile_of_its_requests(delay: float) -> None:
    # 10 % of requests a little or much later: the mixture's p99 by brute force over the
    # base samples (each request's latency is a base sample plus its delay)
    base = BaseLatency.of(LogNormal(0.001, 0.005))
    b = np.asarray(base.samples)
    weights = np.concatenate([np.full(b.size, 0.9), np.full(b.size, 0.1)])
    lat = np.concatenate([b, b + delay])
    order = np.argsort(lat)
    cum = np.cumsum(weights[order]) / weights.sum()
    want = lat[order][np.searchsorted(cum, 0.99 - 1e-12)]
    got = latency_quantile([0.0], [1.0], [0.0], [((0.1, delay),)], end=10.0, base=base)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_measured_latency_uses_the_same_definitions_as_the_model() -> None:
    # 100 probes/s for 60 s; from 10 s to 40 s a third of them answer 5 s late: the
    # measured slow_s is 30 s / 3 and the p99 of the window (to the last slow bin) is late
    t = np.arange(0.0, 60.0, 0.01)
    late = (t >= 10.0) & (t < 40.0) & (np.arange(t.size) % 3 == 0)
    lat = np.where(late, 5.002, 0.002)
    ok = np.ones(t.size, dtype=bool)
    slow, p99 = latency_from_probes(
        t, ok, lat, t_fault=0.0, bin_s=0.1, horizon=60.0, threshold=1.0, recovery_s=0.0
    )
    assert slow == pytest.approx(10.0, rel=0.01)
    assert p99 == pytest.approx(5.002)
    # and the model's latency_metrics on the same story
    m_slow, m_p99 = latency_metrics(
        [0.0],
        [1.0],
        [0.0, 10.0, 40.0],
        [(), ((1 / 3, 5.0),), ()],
        60.0,
        recovery_s=0.0,
        threshold=1.0,
        base=_POINT,
    )
    assert (m_slow, m_p99) == pytest.approx((slow, p99), rel=0.01)
    # failed probes are not timed; nothing after the fault measured: NaN
    slow, p99 = latency_from_probes(
        t,
        np.zeros(t.size, dtype=bool),
        lat,
        t_fault=0.0,
        bin_s=0.1,
        horizon=60.0,
        threshold=1.0,
        recovery_s=math.inf,
    )
    assert slow == 0.0 and math.isnan(p99)
