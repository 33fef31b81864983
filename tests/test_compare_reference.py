"""compare's fast paths against a slow reference: the same cells.csv and ranks.csv, byte
for byte, as the statistics written one at a time from their definitions and pandas'
own CSV writer give; and the vectorised pieces against numpy and pandas."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chaoslab
from chaoslab.compare import (
    CELL_COLUMNS,
    METRICS,
    RANK_COLUMNS,
    _cell_stats,
    compare,
    csv_bytes,
    ks_critical,
    order_statistic,
)
from chaoslab.results import Run, RunWriter

NODE = {"kind": "node-crash", "target": "app-pod-node"}

# ----------------------------------------------------------------------------- reference


def _q(x: Sequence[float], q: float) -> float:
    """The inverted-CDF quantile from its definition: the smallest value with at least
    n q of the values at or below it."""
    s = sorted(x)
    if not s:
        return math.nan
    k = max(math.ceil(len(s) * q), 1)
    return s[k - 1]


def _rank(p: Sequence[float], x: float) -> float:
    below = sum(1 for v in p if v < x)
    equal = sum(1 for v in p if v == x)
    return (below + equal / 2) / len(p) if p else math.nan


def _ks(a: Sequence[float], b: Sequence[float]) -> float:
    if not a or not b:
        return math.nan
    pts = [*a, *b]
    return max(abs(sum(v <= t for v in a) / len(a) - sum(v <= t for v in b) / len(b)) for t in pts)


def _minus(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a == b else a - b


def _reference_cell(p: Sequence[float], m: Sequence[float]) -> dict[str, float]:
    p5, p50, p95 = _q(p, 0.05), _q(p, 0.5), _q(p, 0.95)
    med = _q(m, 0.5)
    err = [abs(e) for e in (_minus(x, p50) for x in m) if not math.isnan(e)]
    median_error = _minus(med, p50)
    ok = p50 != 0 and math.isfinite(p50) and math.isfinite(median_error)
    return {
        "n_predicted": len(p),
        "n_measured": len(m),
        "predicted_p5": p5,
        "predicted_p50": p50,
        "predicted_p95": p95,
        "measured_median": med,
        "coverage": sum(p5 <= x <= p95 for x in m) / len(m) if p and m else math.nan,
        "ks": _ks(p, m),
        "ks_crit_05": ks_critical(len(p), len(m)),
        "median_error_s": median_error,
        "mean_abs_error_s": float(np.mean(err)) if err else math.nan,
        "rel_error": median_error / p50 if ok else math.nan,
    }


def _values(df: pd.DataFrame, metric: str) -> list[float]:
    return [float(v) for v in df[metric] if not math.isnan(v)]


def _reference(pred: pd.DataFrame, meas: pd.DataFrame, sweep: list[str]) -> tuple[str, str]:
    """cells.csv and ranks.csv as compare wrote them before it was made fast: a cell x
    metric at a time, a rank per measured trial, pandas' to_csv."""
    cells, ranks = [], []
    keys = ["design", "fault", "target", *sweep]
    for key, m in meas.groupby(keys, sort=False):
        p = pred.merge(pd.DataFrame([key], columns=keys))
        names = [c for c in METRICS if c in p and c in m]
        names += [
            c
            for c in m.columns
            if c.startswith("at_") and c in p and m[c].notna().any() and p[c].notna().any()
        ]
        point = ", ".join(f"{k}={v}" for k, v in zip(sweep, key[3:], strict=True))
        names_of = {"design": key[0], "fault": key[1], "target": key[2], "point": point}
        for metric in names:
            pv, mv = _values(p, metric), _values(m, metric)
            cells.append({**names_of, "metric": metric, **_reference_cell(pv, mv)})
            for trial, x in zip(m["trial"], m[metric], strict=True):
                if not math.isnan(x):
                    rank = _rank(pv, x)
                    ranks.append({**names_of, "trial": trial, "metric": metric, "measured": x})
                    ranks[-1]["rank"] = rank
    return (
        pd.DataFrame(cells, columns=CELL_COLUMNS).to_csv(index=False),
        pd.DataFrame(ranks, columns=RANK_COLUMNS).to_csv(index=False),
    )


# ----------------------------------------------------------------------------- a small run


def _run(path: Path, df: pd.DataFrame) -> Run:
    w = RunWriter(path, meta={"horizon_s": 600.0, "sweep": {"profile": ["a", "b,c"]}})
    w.add_trials(df)
    return w.finish()


def _cells(trials: int, seed: int) -> pd.DataFrame:
    """Two designs x two sweep points (one with a comma, which the CSV must quote), with
    ties (zeros), never-recovered trials (inf) and values missing (NaN)."""
    frames = []
    for i, (design, profile, params) in enumerate(
        [
            ("nodeport-lb-local", "a", {}),
            ("nodeport-lb-local", "b,c", {"lb.fall": 1, "lb.interval": "1s"}),
            ("clusterip", "a", {}),
        ]
    ):
        df = chaoslab.simulate(
            design, NODE, trials=trials, seed=seed + i, horizon=600.0, params=params
        )
        df.insert(3, "profile", profile)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.loc[df.trial % 9 == 0, "recovery_s"] = math.inf
    df.loc[df.trial % 13 == 0, "recovery_s"] = math.nan
    df.loc[df.trial % 4 == 0, "downtime_s"] = 0.0
    return df


def test_compare_writes_what_the_reference_writes(tmp_path: Path) -> None:
    pred = _run(tmp_path / "pred", _cells(150, seed=10))
    meas = _run(tmp_path / "meas", _cells(40, seed=20))
    c = compare(pred, meas)
    c.write(tmp_path / "out")
    cells, ranks = _reference(pred.trials, meas.trials, ["profile"])
    assert len(c.cells) > 20 and len(c.ranks) > 500  # metrics and milestones of 3 cells
    assert (tmp_path / "out" / "cells.csv").read_text() == cells
    assert (tmp_path / "out" / "ranks.csv").read_text() == ranks


# ----------------------------------------------------------------------------- pieces

finite_or_inf = st.one_of(st.floats(0, 1e4), st.just(0.0), st.just(math.inf))
samples = st.lists(st.one_of(finite_or_inf, st.just(math.nan)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite_or_inf, max_size=40), samples)
def test_one_cells_statistics_and_ranks_are_the_definitions(p: list[float], m: list[float]) -> None:
    px = np.sort(np.asarray(p, dtype=float))
    row, has, x, rank = _cell_stats(px, np.asarray(m, dtype=float))
    clean = [v for v in m if not math.isnan(v)]
    want = _reference_cell(p, clean)
    assert pd.Series(row).to_csv() == pd.Series(want).to_csv()  # NaN = NaN, -0.0 != 0.0
    assert x.tolist() == clean and has.tolist() == [not math.isnan(v) for v in m]
    assert pd.Series(rank).to_csv() == pd.Series([_rank(p, v) for v in clean]).to_csv()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(allow_nan=False)),
    # the band's own quantiles (n q whole for some n) and any others
    st.lists(st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]) | st.floats(0, 1), min_size=1),
)
def test_order_statistic_is_numpys_inverted_cdf(x: np.ndarray, q: list[float]) -> None:
    want = np.quantile(x, np.asarray(q), method="inverted_cdf")
    assert [order_statistic(np.sort(x), v) for v in q] == want.tolist()
    assert math.isnan(order_statistic(np.array([]), q[0]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["x", "y,z", 'say "q"', "line\nbreak", "", None]),
            st.integers(-(2**62), 2**62),
            st.floats(width=64),
            st.booleans(),
        ),
        max_size=30,
    ),
    st.integers(1, 7),
)
def test_csv_bytes_is_to_csv_for_any_mixed_frame(rows: list[tuple], chunk: int) -> None:
    df = pd.DataFrame(rows, columns=["s", "i", "f", "b"])
    df["cat"] = pd.Categorical(df["s"])
    df["n"] = df["f"] * 0.5  # a second float column, last: it carries the newline
    assert csv_bytes(df, chunk=chunk) == df.to_csv(index=False).encode()


@pytest.mark.parametrize("seed", [0, 1])
def test_csv_bytes_formats_floats_of_every_magnitude_as_pandas_does(seed: int) -> None:
    """Random bit patterns (every exponent, subnormals, NaN payloads), -0.0, and the
    values around where Python's repr and Arrow switch to an exponent."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**63, 20_000, dtype=np.int64) * rng.choice([1, -1], 20_000)
    edges = [10.0**k * f for k in range(-8, 18) for f in (1.0, 0.999999, 1.0000001, 1.5)]
    x = np.concatenate(
        [
            bits.view(np.float64),
            rng.exponential(10.0, 20_000).round(rng.integers(0, 9)),
            rng.integers(0, 10**6, 2_000).astype(float),
            np.asarray(edges + [-e for e in edges] + [0.0, -0.0, 5e-324, 2.0**53]),
        ]
    )
    df = pd.DataFrame({"x": x, "y": x[::-1]})
    assert csv_bytes(df, chunk=10_000) == df.to_csv(index=False).encode()


def test_measured_cells_without_a_prediction_are_left_out_with_a_note_each(
    tmp_path: Path,
) -> None:
    pred = _run(tmp_path / "pred", _cells(30, seed=1))
    extra = [
        chaoslab.simulate("clusterip", kind, trials=5, seed=2, horizon=600.0)
        for kind in ("pod-delete", "pod-kill")
    ]
    meas = pd.concat([pred.trials.iloc[:10], *(e.assign(profile="a") for e in extra)])
    c = compare(pred, meas.reset_index(drop=True))
    assert c.notes == [
        "clusterip · pod-delete: no predicted counterpart, left out",
        "clusterip · pod-kill: no predicted counterpart, left out",
    ]
    assert set(c.cells["fault"]) == {"node-crash"}


def test_cells_whose_rows_lie_apart_meet_their_own_values(tmp_path: Path) -> None:
    """Rows of a cell scattered through the run, and predicted rows of another target
    beside the measured one's: compare takes each cell's values by its row positions,
    and they are still the cell's own (the reference groups the frames itself)."""
    pred, meas = _cells(120, seed=30), _cells(30, seed=40)
    other = pred[pred.design == "clusterip"].assign(target="entry-node", recovery_s=1.0)
    pred = pd.concat([pred, other], ignore_index=True)
    pred = pred.sample(frac=1.0, random_state=1).reset_index(drop=True)
    meas = meas.sample(frac=1.0, random_state=2).reset_index(drop=True)
    c = compare(_run(tmp_path / "pred", pred), _run(tmp_path / "meas", meas))
    c.write(tmp_path / "out")
    cells, ranks = _reference(pred, meas, ["profile"])
    assert (tmp_path / "out" / "cells.csv").read_text() == cells
    assert (tmp_path / "out" / "ranks.csv").read_text() == ranks
