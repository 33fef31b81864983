"""chaoslab.analysis: the numbers behind the figures, usable without matplotlib."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab import analysis


def test_analysis_imports_no_plotting() -> None:
    code = (
        "import sys, chaoslab.analysis; "
        "bad = [m for m in ('matplotlib', 'chaoslab.plots') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _trials(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"design": d, "fault": f, "target": "t", "lb.interval": x, "recovery_s": v}
            for d, f, x, v in rows
        ]
    )


def test_cost_table_has_a_row_per_design_and_point_and_nan_where_not_run() -> None:
    df = _trials(
        [
            ("lb", "node-crash", 1.0, 10.0),
            ("lb", "node-crash", 1.0, 20.0),
            ("lb", "pod-kill", 1.0, 2.0),
            ("vrrp", "node-crash", 1.0, 3.0),
        ]
    )
    t = analysis.cost_table(df, "recovery_s", "mean", ["lb.interval"])
    assert list(t.index) == [("lb", 1.0), ("vrrp", 1.0)]
    assert list(t.columns) == [("node-crash", "t"), ("pod-kill", "t")]
    assert t.loc[("lb", 1.0), ("node-crash", "t")] == 15.0
    assert math.isnan(t.loc[("vrrp", 1.0), ("pod-kill", "t")])


def test_sensitivity_spans_rank_the_parameter_that_moves_the_metric_most_last() -> None:
    rows = []
    for interval in (1.0, 2.0, 4.0):
        for fall in (2.0, 3.0):
            rows.append({"lb.interval": interval, "lb.fall": fall, "recovery_s": interval * fall})
    df = pd.DataFrame(rows).assign(design="lb", fault="node-crash", target="t")
    s = analysis.sensitivity_spans(df, ["lb.interval", "lb.fall"])
    # baseline: interval 2 s (middle), fall 2 (the lower middle of two values) -> 4 s
    assert list(s["key"]) == ["lb.fall", "lb.interval"]
    last = s.iloc[-1]
    assert (last.low, last.low_value, last.high, last.high_value) == (2.0, 1.0, 8.0, 4.0)
    assert last.baseline == 4.0 and last.rel_span == (8.0 - 2.0) / 4.0


@given(
    st.lists(
        st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=6).map(sorted),
        min_size=1,
        max_size=8,
    )
)
def test_availability_bands_are_ordered_and_one_before_the_fault(times: list[list[float]]) -> None:
    trials = pd.DataFrame(
        {"a_t": times, "a_v": [[(i % 3) / 2 for i in range(len(t))] for t in times]}
    )
    grid = analysis.time_grid(120.0)
    lo, med, hi = analysis.availability_bands(trials, grid)
    assert np.all(lo <= med) and np.all(med <= hi)
    assert np.all((lo >= 0) & (hi <= 1))
    assert np.all(med[grid < 0] == 1.0)


# ----------------------------------------------------------------------------- for reading

SEED_LABELS = [
    "clusterip", "nodeport-direct", "nodeport-lb", "nodeport-lb-local", "ingress-hostnet",
    "ingress-vip-pod", "ingress-vip-pod-no-garp", "ingress-vip-bgp", "ingress-vip-bgp+bfd",
    "ingress-vip-vrrp", "ingress-tiered", "metallb-l2", "metallb-bgp[metallb-native]",
    "kube-vip-arp", "cloud-lb[aws-nlb]", "cloud-lb-ip[aws-nlb]",
]  # fmt: skip


def test_variant_labels_stand_for_their_base_design() -> None:
    assert analysis.base_design("metallb-bgp[metallb-native]") == "metallb-bgp"
    assert analysis.base_design("cloud-lb[aws-nlb]") == "cloud-lb"
    assert analysis.base_design("ingress-vip-bgp+bfd") == "ingress-vip-bgp"
    assert analysis.base_design("ingress-vip-pod-no-garp") == "ingress-vip-pod"
    # the longest registered name wins, and a name must end where the label's tail starts
    assert analysis.base_design("nodeport-lb-local[haproxy]") == "nodeport-lb-local"
    assert analysis.base_design("nodeport-lbx") is None
    assert analysis.base_design("my-own-lb") is None


def test_the_bundled_runs_labels_leave_no_registered_design_out() -> None:
    from chaoslab.designs import DESIGNS

    assert analysis.designs_not_run(SEED_LABELS) == []
    assert analysis.designs_not_run(["metallb-bgp[metallb-native]"], ["metallb-bgp", "x"]) == ["x"]
    assert len(analysis.designs_not_run(["ingress-vip-bgp+bfd"])) == len(DESIGNS) - 1


def test_readable_rounds_floats_to_significant_figures_and_keeps_the_rest() -> None:
    df = pd.DataFrame(
        {"d": ["a", "b", "c"], "x": [47.83125, 0.0046512, math.inf], "n": [1000, 20, 3]}
    )
    r = analysis.readable(df)
    assert r["x"].tolist() == [47.8, 0.00465, math.inf]
    assert r["n"].tolist() == [1000, 20, 3] and r["d"].tolist() == ["a", "b", "c"]
    assert df["x"].iloc[0] == 47.83125  # a copy


def test_cells_with_fewer_than_ten_trials_are_named_in_a_warning() -> None:
    df = pd.DataFrame(
        {"design": ["lb"] * 12 + ["vrrp"] * 5, "fault": "node-crash", "target": "vip-holder"}
    )
    few = analysis.small_samples(df)
    assert few[["design", "n"]].values.tolist() == [["vrrp", 5]]
    w = analysis.sample_warning(df)
    assert w.startswith("WARNING") and "vrrp / node-crash / vip-holder (n=5)" in w
    assert "lb /" not in w
    assert analysis.sample_warning(df[df["design"] == "lb"]) == ""


def test_designs_losing_about_as_much_are_ranked_by_the_connections_they_reset() -> None:
    rows = pd.DataFrame(
        {
            "design": ["direct", "lb-local", "vrrp", "bgp+bfd", "kube-vip"],
            "recovered": [0.0, 1.0, 1.0, 1.0, 1.0],
            "lost": [1800.0, 3.4, 2.98, 0.153, 26.5],
            "resets": [0.0, 0.0, 1.0, 0.33, 1.0],
        }
    )
    r = analysis.rank_designs(rows)
    # 3.4 s and 2.98 s are both "3 s": the one resetting nothing first; 0.15 s beats both
    # whatever it resets; a design that never recovers is last however little it resets
    assert r["design"].tolist() == ["bgp+bfd", "lb-local", "vrrp", "kube-vip", "direct"]
    assert r["rank"].tolist() == [1, 2, 3, 4, 5]
    # with more digits the losses no longer tie: vrrp's 2.98 s beats 3.4 s
    r2 = analysis.rank_designs(rows, digits=3)
    assert r2["design"].tolist()[1:3] == ["vrrp", "lb-local"]


@settings(deadline=None)  # a loaded 2-core machine: no timing in tests
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.01, 1e3), st.floats(0, 1)), min_size=1,
                max_size=12))  # fmt: skip
def test_a_design_that_loses_ten_times_less_among_the_recovered_always_ranks_higher(
    rows: list[tuple[float, float, float]],
) -> None:
    df = pd.DataFrame(rows, columns=["recovered", "lost", "resets"])
    r = analysis.rank_designs(df)
    for i in range(len(r)):
        for j in range(i + 1, len(r)):
            a, b = r.iloc[i], r.iloc[j]
            assert a["recovered"] >= b["recovered"]
            if a["recovered"] == b["recovered"]:
                assert a["lost"] < 10 * b["lost"]


ADVISE_EXP = """
title: two grace periods
profile: [k8s-1.32, haproxy]
cluster:
  nodes: {master: 1, controller: 3, compute: 0}
  app: {kind: Deployment, replicas: 3, spread: controller}
designs: [nodeport-lb]
faults: [{kind: node-crash, target: app-pod-node}]
horizon: 5m
seed: 3
advise:
  timers:
    nodeport-lb:
      kube_controller_manager.node_monitor_grace_period: [10s, 50s]
  noise: [{kind: kubelet-stall, target: app-pod-node, rate: RATE}]
  constraints: {spurious_failovers: 2/cluster-year}
"""


def _advise(tmp_path: Path, rate: str) -> Path:
    """The run folder of a real advisor run of ADVISE_EXP with the stalls at ``rate``."""
    from chaoslab.advise import advise
    from chaoslab.experiment import load_experiment

    path = tmp_path / "two-grace.yaml"
    exp = load_experiment(path, ADVISE_EXP.replace("RATE", rate))
    r = advise(exp, tmp_path / "out", workers=1, min_trials=40, max_trials=40, figures=False)
    return Path(r.run.path)


def _advice(tmp_path: Path, rate: str) -> pd.DataFrame:
    return pd.read_csv(_advise(tmp_path, rate) / "advice.csv")


def test_the_answer_moves_from_the_aggressive_grace_period_once_stalls_are_frequent(
    tmp_path: Path,
) -> None:
    quiet, noisy = _advice(tmp_path, "0"), _advice(tmp_path, "24/node-year")
    a = analysis.advice_answer(quiet)
    assert a["recommended timers"].tolist() == ["node_monitor_grace_period=10s"]
    assert (a["ci95 low"] <= a["min/yr"]).all() and (a["min/yr"] <= a["ci95 high"]).all()
    assert a["real failures"].iloc[0] + a["side effects"].iloc[0] == pytest.approx(
        a["min/yr"].iloc[0]
    )
    moves = analysis.answer_moves({"no noise": quiet, "stalls": noisy})
    assert moves["run"].tolist() == ["no noise", "stalls"]
    # a 10 s grace period marks a node NotReady on most kubelet stalls (median 2 s, p95 20 s)
    assert moves["recommended timers"].tolist()[1] == "node_monitor_grace_period=50s"
    assert moves["moved"].tolist() == [False, True]


def test_the_recommended_settings_trials_are_those_of_its_timers_in_every_cell(
    tmp_path: Path,
) -> None:
    import chaoslab

    path = _advise(tmp_path, "24/node-year")
    trials = chaoslab.load_run(path).trials
    grace = "kube_controller_manager.node_monitor_grace_period"
    assert sorted(trials[grace].unique()) == [10.0, 50.0]  # both points' trials are stored
    at = analysis.recommended_trials(trials, pd.read_csv(path / "advice.csv"))
    assert at[grace].unique().tolist() == [50.0]
    # one real fault and one kind of noise, each with the trials behind the estimate
    assert at.groupby("fault").size().to_dict() == {
        "node-crash": 40,
        "noise/kubelet-stall/app-pod-node": 40,
    }
