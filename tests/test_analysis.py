"""chaoslab.analysis: the numbers behind the figures, usable without matplotlib."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
from hypothesis import given
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
