"""Derived defaults and refused relations (issue 11 item 7).

HAProxy Configuration Manual, section 4.2 'timeout check': without 'timeout check' a
check's timeout is 'inter'. So ``--set lb.interval=1s`` alone moves the check timeout to
1 s too: a dead node is marked down (after-completion schedule) within
U(0, inter) + fall x timeout + (fall - 1) x inter = [5, 6] s, not the [8, 9] s a timeout
left at 2 s would give.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chaoslab
from chaoslab.errors import UserError
from chaoslab.params import ParamSet


def _marked_down(params: dict[str, str], profile: list[str] | None = None) -> np.ndarray:
    df = chaoslab.simulate(
        "nodeport-lb-local",
        {"kind": "node-crash", "target": "app-pod-node"},
        profile=profile or ["k8s-1.32", "haproxy"],
        params=params,
        trials=300,
        seed=5,
    )
    return df["at_lb_marked_down"].to_numpy()


def test_setting_inter_moves_the_check_timeout() -> None:
    down = _marked_down({"lb.interval": "1s"})
    assert down.min() >= 5.0 - 1e-9 and down.max() <= 6.0 + 1e-9
    assert down.max() - down.min() > 0.8  # the check phase spreads it over the second


def test_a_timeout_set_too_is_kept() -> None:
    down = _marked_down({"lb.interval": "1s", "lb.timeout": "2s"})
    assert down.min() >= 8.0 - 1e-9 and down.max() <= 9.0 + 1e-9


def test_a_profile_that_sets_the_timeout_keeps_it() -> None:
    ps = ParamSet.resolve(["aws-nlb"], {"lb.interval": "20s"})
    assert ps.text("lb.timeout") == "10s"
    assert ps.derived_from("lb.timeout") is None
    ps = ParamSet.resolve(["haproxy"], {"lb.interval": "20s"})
    assert ps.text("lb.timeout") == "20s"
    assert ps.derived_from("lb.timeout") == "lb.interval"
    assert ps.sources["lb.timeout"].startswith("derived: = lb.interval")


@settings(max_examples=40, deadline=None)
@given(st.floats(0.1, 120.0), st.booleans())
def test_derived_child_follows_any_parent(inter: float, set_child: bool) -> None:
    overrides = {"lb.interval": f"{inter}s"}
    if set_child:
        overrides["lb.timeout"] = "7s"
    ps = ParamSet.resolve(["haproxy"], overrides)
    p = ps.sampler(np.random.default_rng(0))
    assert p.draw("lb.timeout") == pytest.approx(7.0 if set_child else inter)


@pytest.mark.parametrize("first", ["lb.interval", "lb.timeout"])
def test_a_distribution_is_drawn_once_for_parent_and_child(first: str) -> None:
    ps = ParamSet.resolve(["haproxy"], {"lb.interval": "uniform(1s, 3s)"})
    other = "lb.timeout" if first == "lb.interval" else "lb.interval"
    draws = set()
    for seed in range(20):
        p = ps.sampler(np.random.default_rng(seed))
        a = p.draw(first)
        assert p.draw(other) == a
        draws.add(a)
    assert len(draws) == 20 and all(1.0 <= d <= 3.0 for d in draws)


def test_params_table_shows_the_derived_value_and_its_rule() -> None:
    from chaoslab.cli.common import params_frame

    df = params_frame(["haproxy"], "lb.timeout")
    row = df.iloc[0]
    assert row["value"] == "2s"
    assert "derived: = lb.interval" in row["source"] and "timeout check" in row["source"]


@pytest.mark.parametrize(
    "bad",
    [
        {"kube_vip.lease_duration": "5s"},  # renew deadline 10 s
        {"kube_vip.retry_period": "9s"},  # 1.2 x 9 s > renew deadline 10 s
    ],
)
def test_leader_election_timers_client_go_refuses(bad: dict[str, str]) -> None:
    with pytest.raises(UserError, match="kube_vip"):
        ParamSet.resolve([], bad)


def test_leader_election_timers_moved_together_are_fine() -> None:
    ps = ParamSet.resolve(
        [],
        {
            "kube_vip.lease_duration": "5s",
            "kube_vip.renew_deadline": "3s",
            "kube_vip.retry_period": "1s",
        },
    )
    assert ps.text("kube_vip.lease_duration") == "5s"
