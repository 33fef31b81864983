"""probe.first_failed / probe.last_failed: one definition (`chaoslab.outage.probe_milestones`)
for the live prober's records and for the prober put on the model's a(t).

A live probe is stamped with its send time (`chaoslab.live.probe`), so the first failed
probe comes at the first probe of the grid at or after the outage starts that fails, never
at the outage's start itself, and a black-holed probe (failing at its timeout) is stamped
like a refused one (failing at once).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from chaoslab.compare import as_probed
from chaoslab.live.probe import ProbeConfig, Target, run_prober
from chaoslab.outage import probe_milestones, probe_train
from chaoslab.results import ProberInfo

#: the production node-crash experiment's prober: 2 probers x 20 probes/s, 100 ms bins
PROBER = ProberInfo(20, 2, 0.1)
STEP = 1 / (PROBER.rate_hz * PROBER.probers)  # the interleaved grid: 25 ms


def _milestones(times: list[float], values: list[float], n: int, seed: int = 0) -> pd.DataFrame:
    """probe_milestones of ``n`` probe trains on one a(t), horizon 10 s."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        sends, ok = probe_train(times, values, 10.0, rate_hz=20, probers=2, rng=rng)
        rows.append(probe_milestones(sends, ok, t_fault=0.0))
    return pd.DataFrame(rows)


def test_a_full_outage_is_first_seen_uniformly_within_one_probe_spacing() -> None:
    """a(t) = 0 from t0 = 0.3 s to 2 s: the first failed probe is the first send of the
    grid at or after t0, uniform on [t0, t0 + 25 ms); the last failed is the last send
    before 2 s, uniform on [2 s - 25 ms, 2 s)."""
    ms = _milestones([0.0, 0.3, 2.0], [1.0, 0.0, 1.0], 4000)
    first = ms["probe.first_failed"].to_numpy() - 0.3
    assert first.min() >= 0 and first.max() < STEP
    # uniform: its mean and each quarter of the spacing (n = 4000: 3 sigma about 0.02)
    assert first.mean() == pytest.approx(STEP / 2, rel=0.03)
    quarters = np.histogram(first, bins=4, range=(0, STEP))[0] / len(first)
    assert quarters == pytest.approx([0.25] * 4, abs=0.025)
    last = 2.0 - ms["probe.last_failed"].to_numpy()
    assert last.min() > 0 and last.max() <= STEP


def test_a_partial_outage_is_first_seen_after_a_geometric_number_of_probes() -> None:
    """a(t) = 2/3 from 0 (one of three endpoints dead, each probe fails with odds 1/3):
    first failed = (U + K - 1) x 25 ms with K geometric(1/3), so P(first >= k x 25 ms)
    = (2/3)^k and the mean is (1/2 + 2) x 25 ms = 62.5 ms."""
    ms = _milestones([0.0, 5.0], [2 / 3, 1.0], 4000, seed=1)
    first = ms["probe.first_failed"].to_numpy()
    for k in (1, 2, 4):
        assert np.mean(first >= k * STEP) == pytest.approx((2 / 3) ** k, abs=0.025)
    assert first.mean() == pytest.approx(2.5 * STEP, rel=0.05)


def test_no_failed_probe_means_no_milestone() -> None:
    t = np.array([9.0, 10.0, 10.5, 11.0])
    assert probe_milestones(t, np.array([False, True, True, True]), t_fault=10.0) == {}
    # a failure after the horizon is not the trial's
    ok = np.array([True, True, True, False])
    assert probe_milestones(t, ok, t_fault=10.0, horizon=1.0) == {}
    assert probe_milestones(t, ok, t_fault=10.0) == {
        "probe.first_failed": 1.0,
        "probe.last_failed": 1.0,
    }


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port nothing listens on: a connect is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    yield port


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port that accepts connections into its backlog and never answers: a
    probe fails only at its timeout."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.mark.parametrize(("path", "outcome"), [("refused", "refused"), ("blackhole", "timeout")])
def test_the_live_prober_stamps_a_failure_at_its_send_time(
    path: str, outcome: str, request: pytest.FixtureRequest
) -> None:
    """Refused (known at once) and black-holed (known at the 0.2 s timeout): either way
    the record's t is when the probe was sent, so first_failed is the first send after the
    fault, not the instant the failure became known."""
    port = request.getfixturevalue(f"{path}_port")
    cfg = ProbeConfig(Target.parse(f"http://127.0.0.1:{port}/"), rate=20, probers=1, timeout=0.2)
    rec = run_prober(cfg, 0.5)
    assert len(rec) and (rec["outcome"] == outcome).all()
    t_fault = float(rec["t"].min())  # the fault "at" the first send
    ms = probe_milestones(rec["t"].to_numpy(), np.zeros(len(rec), bool), t_fault=t_fault)
    assert ms["probe.first_failed"] == 0.0
    assert ms["probe.last_failed"] == pytest.approx(float(rec["t"].max()) - t_fault)
    if outcome == "timeout":  # known a timeout after its stamp
        assert (rec["latency"] >= cfg.timeout).all()


def test_the_drill_comparison_predicts_the_first_failure_a_prober_records() -> None:
    """A node crash leaving two of three endpoints (a = 2/3 from the fault until the
    endpoint is removed at 40-60 s), probed by 2 x 20/s: the predicted first failure is
    the prober's, a band of tens of ms, not the instant a(t) drops (0.00/0.00/0.00), so
    the production series' measured 0.02-0.15 s are inside it and the last failure's
    band is the last failed send's."""
    from chaoslab.live.engine import comparison

    rec = np.linspace(40.0, 60.0, 400)
    model = pd.DataFrame(
        {
            "recovery_s": rec,
            "recovered": True,
            "downtime_s": 0.0,
            "degraded_s": rec,
            "lost_s": rec / 3,
            "a_t": [[0.0, r] for r in rec],
            "a_v": [[2 / 3, 1.0] for _ in rec],
        }
    )
    pred = as_probed(model, PROBER, 120.0, seed=3)
    fault = SimpleNamespace(name="node-crash", target="app-pod-node")
    target = SimpleNamespace(
        design="clusterip", prober=PROBER, faults=lambda: [fault], predict=lambda f: pred
    )
    measured = pd.DataFrame(
        {
            "design": "clusterip",
            "fault": "node-crash",
            "recovery_s": [45.0, 50.0, 55.0, 58.0, 42.0],
            "at_probe_first_failed": [0.02, 0.06, 0.08, 0.12, 0.15],
            "at_probe_last_failed": [44.9, 49.95, 54.93, 57.99, 41.96],
        }
    )
    table = comparison(target, measured, None, lambda s: None)  # type: ignore[arg-type]
    row = table.set_index("metric").loc["at_probe_first_failed"]
    assert row["predicted_p5"] < STEP / 2 and STEP < row["predicted_p50"] < 3 * STEP
    assert row["predicted_p95"] > 6 * STEP  # (2/3)^k = 5 %: k = 7.4 probes
    assert row["inside"] == 1.0
    last = table.set_index("metric").loc["at_probe_last_failed"]
    assert last["inside"] == 1.0
    # the probed recovery is the end of the bin that holds the last failed send
    gap = (pred["recovery_s"] - pred["at_probe_last_failed"]).dropna()
    assert len(gap) == len(pred) and ((gap > 0) & (gap <= PROBER.bin_s + 1e-9)).all()
    assert not math.isnan(last["predicted_p50"])
