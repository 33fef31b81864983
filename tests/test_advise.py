"""chaoslab advise: the timers it recommends, priced against the side effects of noise.

One small experiment throughout: nodeport-lb (eTP Cluster), whose node-crash outage is
decided by the node monitor grace period, tried at 10 s, 30 s and 50 s, with kubelet
stalls of 12 s as noise: a 10 s grace period marks the stalled node NotReady every time,
30 s and 50 s never do (the last status update is at most 10 s older than the stall).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaoslab.advise import advise
from chaoslab.advise.cost import CellStats, annual
from chaoslab.advise.spec import RateError, parse_rate
from chaoslab.cli import main
from chaoslab.experiment import load_experiment

GRACE = "kube_controller_manager.node_monitor_grace_period"

BASE = """\
title: advise test
profile: [k8s-1.32, haproxy]
designs: [nodeport-lb]
faults:
  - {kind: node-crash, target: app-pod-node}
horizon: 10m
seed: 3
advise:
  timers:
    nodeport-lb:
      kube_controller_manager.node_monitor_grace_period: [10s, 30s, 50s]
  rates:
    node-crash: 1/node-year
  noise:
    - {kind: kubelet-stall, target: app-pod-node, rate: NOISE_RATE, duration: STALL}
  constraints: {spurious_failovers: 3/cluster-year}
  search: {min_trials: 40, max_trials: 120, eta: 3}
"""


def _write(tmp_path: Path, rate: str = "12/node-year", stall: str = "12s", **repl: str) -> Path:
    text = BASE.replace("NOISE_RATE", rate).replace("STALL", stall)
    for old, new in repl.items():
        text = text.replace(old, new)
    path = tmp_path / "advise-test.yaml"
    path.write_text(text)
    return path


def _grace(d: object) -> str:
    return str(d.best.point.timers[GRACE])  # type: ignore[attr-defined]


def test_without_noise_the_most_aggressive_grace_period_wins(tmp_path: Path) -> None:
    result = advise(_write(tmp_path, rate="0"), tmp_path / "out", figures=False)
    (d,) = result.advice
    assert _grace(d) == "10s"
    assert d.feasible and d.priced_out == ""
    assert d.best.annual.spurious == 0 and d.best.annual.side_s == 0


def test_with_kubelet_stalls_the_spurious_notready_prices_10s_out(tmp_path: Path) -> None:
    result = advise(_write(tmp_path), tmp_path / "out", figures=False)
    (d,) = result.advice
    assert _grace(d) == "30s"
    assert d.aggressive.point.timers[GRACE] == "10s"
    assert "spurious failovers" in d.priced_out
    assert "NotReady" in d.priced_out and "kubelet-stall" in d.priced_out
    # 3 app nodes x 12 stalls a year, nearly each one seen as NotReady at 10 s (the node
    # lifecycle controller looks every 5 s, so a few stalls end before it does)
    assert 25 < d.aggressive.annual.spurious <= 36
    advice = pd.read_csv(result.run.path / "advice.csv")
    roles = {r for joined in advice["role"] for r in joined.split("+")}
    assert roles >= {"recommended", "most-aggressive", "frontier"}


def test_api_server_stalls_mark_every_node_not_ready_under_a_10s_grace(tmp_path: Path) -> None:
    """8 s stalls of the whole control plane, once a month: the controller manager keeps
    leading (renew deadline 10 s) with probe timestamps from before the stall, so under a
    10 s grace period a pass after it, before the nodes' renewals are seen, marks them
    NotReady; 30 s and 50 s never do."""
    noise = "{kind: apiserver-stall, rate: 12/cluster-year, duration: 8s}"
    path = _write(
        tmp_path,
        **{"{kind: kubelet-stall, target: app-pod-node, rate: 12/node-year, duration: 12s}": noise},
    )
    result = advise(path, tmp_path / "out", figures=False)
    (d,) = result.advice
    assert _grace(d) == "30s"
    assert "NotReady" in d.priced_out and "noise/apiserver-stall" in d.priced_out
    assert d.aggressive.annual.spurious > 3
    assert d.best.annual.by_noise["noise/apiserver-stall"][0] == 0


def test_two_seeds_agree_within_their_intervals(tmp_path: Path) -> None:
    path = _write(tmp_path)
    a = advise(path, tmp_path / "a", seed=1, figures=False).advice[0]
    b = advise(path, tmp_path / "b", seed=2, figures=False).advice[0]
    assert _grace(a) == _grace(b)
    (a_lo, a_hi), (b_lo, b_hi) = a.best.annual.ci_minutes, b.best.annual.ci_minutes
    assert a_lo <= b_hi and b_lo <= a_hi


def test_a_second_call_reuses_every_cached_cell(tmp_path: Path) -> None:
    path = _write(tmp_path)
    first = advise(path, tmp_path / "out", figures=False)
    again = advise(path, tmp_path / "out", figures=False)
    assert first.search.trials_run > 0
    assert again.search.trials_run == 0
    assert again.search.trials_reused >= first.search.trials_run
    assert _grace(again.advice[0]) == _grace(first.advice[0])
    run = pd.read_parquet(again.run.path / "trials.parquet")
    assert set(run["fault"]) == {"node-crash", "noise/kubelet-stall/app-pod-node"}


def test_the_search_runs_fewer_trials_than_the_grid(tmp_path: Path) -> None:
    result = advise(_write(tmp_path), tmp_path / "out", figures=False)
    grid = result.search.cells_grid * 120
    assert result.search.trials_run < grid


@pytest.mark.parametrize(
    ("repl", "where", "what"),
    [
        ({"1/node-year": "1/year"}, "advise.rates.node-crash", "cannot read '1/year' as a rate"),
        ({"1/node-year": "5s"}, "advise.rates.node-crash", "as a rate"),
        ({"1/node-year": "1/pod-year"}, "advise.rates.node-crash", "hits a node"),
        ({"[10s, 30s, 50s]": "[]"}, GRACE, "an empty list of values"),
        ({"[10s, 30s, 50s]": "{from: 50s, to: 10s, steps: 3}"}, GRACE, "an empty range"),
        ({"3/cluster-year": "3/node-year"}, "spurious_failovers", "per cluster-year"),
        ({"node-crash: 1": "node-krash: 1"}, "advise.rates.node-krash", "no fault is named"),
        (
            {"kind: kubelet-stall, target: app-pod-node": "kind: apiserver-stall"},
            "advise.noise[0].rate",
            "whole cluster",
        ),
    ],
)
def test_bad_input_is_one_located_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    repl: dict[str, str],
    where: str,
    what: str,
) -> None:
    path = _write(tmp_path, **repl)
    code = main(["advise", str(path), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"error: {path}:")
    assert where in err[0] and what in err[0]


def test_no_point_meets_the_constraints_shows_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a stall of 60 s outlasts every grace period tried: each setting fires 36 times a year
    path = _write(tmp_path, stall="60s")
    code = main(["advise", str(path), "--out", str(tmp_path / "out"), "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "no setting meets the constraints; closest:" in out
    assert "Traceback" not in out


def test_the_cli_prints_the_recommendation_and_writes_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path)
    code = main(["advise", str(path), "--out", str(tmp_path / "out"), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert "node_monitor_grace_period=30s" in out
    assert "best design: nodeport-lb" in out
    (run,) = (tmp_path / "out" / "advise-test").glob("*-advise-*")
    assert (run / "frontier-nodeport-lb.png").stat().st_size > 0
    assert {"advice.csv", "points.csv", "trials.parquet", "meta.json"} <= {
        p.name for p in run.iterdir()
    }


def test_a_file_without_advise_section_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.split("advise:")[0]
    path = tmp_path / "plain.yaml"
    path.write_text(text)
    assert main(["advise", str(path), "-q"]) == 2
    assert "no advise: section" in capsys.readouterr().err
    assert load_experiment(path).model.advise is None


# ----------------------------------------------------------------------------- arithmetic


@given(
    st.floats(0.001, 1e4),
    st.lists(st.tuples(st.booleans(), st.floats(0, 1e3), st.floats(0, 1)), min_size=1, max_size=6),
)
def test_annual_cost_scales_with_the_rates(
    k: float, parts: list[tuple[bool, float, float]]
) -> None:
    comps = [(f"c{i}", real, 1.0 + i) for i, (real, _, _) in enumerate(parts)]
    stats = [CellStats(100, lost, 1.0, 0.1, fired) for _, lost, fired in parts]
    one = annual(comps, stats)
    scaled = annual([(n, r, k * rate) for n, r, rate in comps], stats)
    assert scaled.total_s == pytest.approx(k * one.total_s, rel=1e-9, abs=1e-9)
    assert scaled.spurious == pytest.approx(k * one.spurious, rel=1e-9, abs=1e-9)
    pairs = zip(comps, parts, strict=True)
    noise = [rate * fired for (_, real, rate), (_, _, fired) in pairs if not real]
    assert one.spurious == pytest.approx(sum(noise))


@given(st.floats(0.0001, 1e4), st.sampled_from(["node", "pod", "cluster"]))
def test_a_rate_per_month_is_a_twelfth_of_the_yearly_one(x: float, scope: str) -> None:
    per_year, got = parse_rate(f"{x * 12!r}/{scope}-year")
    per_month, _ = parse_rate(f"{x!r}/{scope}-month")
    assert got == scope
    assert per_month == pytest.approx(per_year)


def test_a_rate_without_a_unit_is_refused_unless_zero() -> None:
    assert parse_rate(0) == (0.0, "cluster")
    with pytest.raises(RateError, match="no unit"):
        parse_rate(2)
    assert math.isclose(parse_rate("2 per node-week")[0], 2 * 365.25 / 7)


def test_noise_scaled_multiplies_each_catalogue_rate(tmp_path: Path) -> None:
    from chaoslab.advise import noise_scaled
    from chaoslab.params import ParamSet
    from chaoslab.params.rates import NOISE_KEYS

    text = BASE.replace(", rate: NOISE_RATE", "").replace("STALL", "12s")
    path = tmp_path / "advise-catalogue-rate.yaml"
    path.write_text(text)
    exp = load_experiment(path)
    catalogue = float(ParamSet.resolve(exp.profiles, exp.overrides()).text(
        NOISE_KEYS["kubelet-stall"][0]))  # fmt: skip
    scaled = noise_scaled(exp, 10.0).model.advise
    assert scaled is not None and scaled.noise is not None
    (entry,) = scaled.noise
    assert parse_rate(entry.rate) == pytest.approx((10.0 * catalogue, "node"))
    assert exp.model.advise is not None and exp.model.advise.noise[0].rate is None  # type: ignore[index]


def test_noise_scaled_refuses_an_entry_with_its_own_rate(tmp_path: Path) -> None:
    from chaoslab.advise import noise_scaled
    from chaoslab.experiment import ExperimentError

    path = _write(tmp_path)
    with pytest.raises(ExperimentError, match=r"advise-test\.yaml:\d+: advise\.noise\[0\]\.rate"):
        noise_scaled(load_experiment(path), 10.0)
