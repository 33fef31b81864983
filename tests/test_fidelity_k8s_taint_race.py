"""The NoExecute tainter's stale-informer drop against its closed form.

From v1.34 the monitor pass that writes Ready=Unknown queues the node's taint at once.
The tainter, worked every 100 ms, reads the node from the controller's informer
(``doNoExecuteTaintingPass``, ``pkg/controller/nodelifecycle/node_lifecycle_controller.go``
v1.37.2, line 622): within ``node_informer_lag`` of the write it still sees Ready, drops the
node (line 649) after ``RateLimitedTimedQueue.Try`` took the zone's token (line 237 of
``scheduler/rate_limited_queue.go``). The next pass queues it again (``markNodeForTainting``)
and it is tainted at the next token, 1 / node_eviction_rate after the spent one. With the
tainter's phase uniform on the 100 ms grid, a drop has probability lag / 100 ms.
"""

from __future__ import annotations

import math

import chaoslab

N = 400
TICK = 0.1
LAG = "kube_controller_manager.node_informer_lag"


def _crash(params: dict[str, str], profile: str = "k8s-1.37", trials: int = N):
    df = chaoslab.simulate("nodeport-lb", "node-crash", trials=trials, seed=5,  # type: ignore[arg-type]
                           profile=profile, params=params)  # fmt: skip
    return df["at_node_tainted"] - df["at_node_not_ready"]


def test_a_drop_happens_with_probability_lag_over_the_tick(no_latency: dict[str, str]) -> None:
    lag = 0.03
    delay = _crash({**no_latency, LAG: f"{lag * 1000:g}ms"})
    dropped = (delay > 1.0).mean()
    sigma = math.sqrt(lag / TICK * (1 - lag / TICK) / N)
    assert abs(dropped - lag / TICK) < 4 * sigma


def test_a_dropped_taint_waits_one_token(no_latency: dict[str, str]) -> None:
    """rate 0.1/s: a dropped taint comes 10 s after the spent token, itself < lag after
    NotReady; the others in [lag, 100 ms] after NotReady."""
    lag = 0.03
    delay = _crash({**no_latency, LAG: f"{lag * 1000:g}ms"})
    late = delay[delay > 1.0]
    assert len(late) > 0
    assert late.between(10.0, 10.0 + lag + 1e-9).all()
    assert delay[delay <= 1.0].between(lag - 1e-9, TICK + 1e-9).all()


def test_the_token_rate_sets_the_wait(no_latency: dict[str, str]) -> None:
    """rate 0.5/s, monitor period 1 s: queued again after 1 s, the token comes after 2 s."""
    params = {
        **no_latency,
        LAG: "30ms",
        "kube_controller_manager.node_eviction_rate": "0.5",
        "kube_controller_manager.node_monitor_period": "1s",
    }
    late = (d := _crash(params))[d > 1.0]
    assert len(late) > 0
    assert late.between(2.0, 2.0 + 0.03 + 1e-9).all()


def test_a_later_monitor_pass_than_the_token_sets_the_wait(no_latency: dict[str, str]) -> None:
    """Monitor period 5 s, token after 2 s: the node is queued again only at the next
    pass, 5 s after NotReady, and tainted at the tainter's first tick from there."""
    params = {
        **no_latency,
        LAG: "30ms",
        "kube_controller_manager.node_eviction_rate": "0.5",
        "kube_controller_manager.node_monitor_period": "5s",
    }
    late = (d := _crash(params))[d > 1.0]
    assert len(late) > 0
    assert late.between(5.0, 5.0 + TICK + 1e-9).all()


def test_without_a_lag_nothing_is_dropped(no_latency: dict[str, str]) -> None:
    assert _crash({**no_latency, LAG: "0s"}).between(0.0, TICK + 1e-9).all()


def test_next_pass_tainting_never_races_the_write(no_latency: dict[str, str]) -> None:
    """<= 1.33 the node is queued a monitor pass after the Unknown write: the informer has
    seen it by then, so even a 50 ms lag drops nothing."""
    delay = _crash({**no_latency, LAG: "50ms"}, profile="k8s-1.33")
    assert delay.between(5.0, 5.0 + TICK + 1e-9).all()
