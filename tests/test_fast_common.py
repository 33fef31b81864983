"""The fast engine's shared pieces against their definitions, on arrays small enough to
check by hand or by brute force."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.fast.common import availability, instants, relevant_bits, rows, synced_at


def _synced_by_search(syncs: list[tuple[np.ndarray, np.ndarray]], pub: np.ndarray) -> np.ndarray:
    """proxy.synced by its definition: over every sync end c, is each proxy's version at c
    (its last sync ended by c) the number of versions published by c? the first such c."""
    count, n = syncs[0][0].shape
    out = np.full(n, np.nan)
    for i in range(n):
        ends = sorted(float(e[p, i]) for e, _ in syncs for p in range(count))
        for c in ends:
            if not math.isfinite(c):
                continue
            current = int(np.sum(pub[i] <= c))
            held = [0] * count
            for e, v in syncs:
                for p in range(count):
                    if e[p, i] <= c:
                        held[p] = int(v[p, i])
            if all(h == current for h in held):
                out[i] = c
                break
    return out


@st.composite
def _sync_tables(draw: st.DrawFn) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Random but well-formed syncs: versions published at sorted instants, each proxy's
    syncs later and later, each installing every version published by its start."""
    n = draw(st.integers(1, 6))
    count = draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    times = st.floats(0.0, 10.0, allow_nan=False)
    pub = np.sort(np.array([[draw(times) for _ in range(k)] for _ in range(n)]), axis=1)
    if draw(st.booleans()):
        pub[:, -1] = np.inf  # the last version never published
    ends = np.full((k, count, n), np.inf)
    versions = np.zeros((k, count, n), dtype=np.int64)
    for i in range(n):
        for p in range(count):
            t = 0.0
            for s in range(k):
                start = t + draw(st.floats(0.0, 4.0, allow_nan=False))
                ran = draw(st.booleans()) or s == 0
                if not ran or not np.isfinite(pub[i, 0]):
                    break
                start = max(start, float(pub[i, 0]))
                t = start + draw(st.floats(0.01, 1.0, allow_nan=False))
                ends[s, p, i] = t
                versions[s, p, i] = int(np.sum(pub[i] <= start))
    return [(ends[s], versions[s]) for s in range(k)], pub


@settings(max_examples=150, deadline=None)
@given(_sync_tables())
def test_proxy_synced_is_the_first_sync_end_where_every_proxy_is_current(
    case: tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray],
) -> None:
    syncs, pub = case
    np.testing.assert_array_equal(synced_at(syncs, pub), _synced_by_search(syncs, pub))


def test_a_bit_no_state_depends_on_is_dropped() -> None:
    # bit 1 (a kube-proxy no client uses) never changes a(t); bits 0 and 2 do
    table = {}
    for a in (False, True):
        for b in (False, True):
            for c in (False, True):
                table[(a, b, c)] = (0.5 if a else 1.0) * (0.0 if c else 1.0)
    bits, (reduced,) = relevant_bits(table)
    assert bits == (0, 2)
    assert reduced == {
        (False, False): 1.0,
        (True, False): 0.5,
        (False, True): 0.0,
        (True, True): 0.0,
    }


def test_a_bit_that_moves_a_t_by_a_rounding_error_stays() -> None:
    # Trial.changed compares a(t) exactly: 0.7333...2 -> 0.7333...3 is a change point there
    table = {(False,): 0.7333333333333332, (True,): 0.7333333333333333}
    assert relevant_bits(table)[0] == (0,)


def test_the_availability_rows_keep_each_trial_s_change_points_in_order() -> None:
    # trial 0: down on [1, 3); trial 1: down from 2 to the horizon (10); trial 2: never
    table = {(False,): 1.0, (True,): 0.0}
    on = [np.array([1.0, 2.0, np.inf])]
    off = [np.array([3.0, np.inf, np.inf])]
    times, code = instants(on, off, 3)
    values, keep = availability(table, times, code, 10.0)
    assert rows(times, keep).tolist() == [[0.0, 1.0, 3.0], [0.0, 2.0], [0.0]]
    assert rows(values, keep).tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0], [1.0]]


@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), min_size=1, max_size=8))
def test_the_p99_of_apart_mixtures_is_the_reference_one(rows: list[list[float]]) -> None:
    # delays 0, 1, 3, 7 s: copies of a ms-scale base latency that never overlap, so each
    # trial's quantile comes from one vectorized pass; it must be latency_quantile's
    from chaoslab.fast.latency import _quantiles
    from chaoslab.outage import BaseLatency, latency_quantile
    from chaoslab.params.dists import LogNormal

    base = BaseLatency.of(LogNormal(0.001, 0.005))
    delays = [0.0, 1.0, 3.0, 7.0]
    w = np.array([r if sum(r) > 0 else [1.0, 0, 0, 0] for r in rows]).T
    w = w / w.sum(axis=0)
    expect = [
        latency_quantile(
            [0.0],
            [1.0],
            [0.0],
            [tuple((s, d) for s, d in zip(col, delays, strict=True) if d and s > 0)],
            end=1.0,
            base=base,
        )
        for col in w.T
    ]
    np.testing.assert_allclose(_quantiles(w, delays, base), expect, rtol=0, atol=1e-12)
