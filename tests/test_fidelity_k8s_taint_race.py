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


def _late_taints(no_latency: dict[str, str], monitor_period: str):
    """The taints more than 1 s after NotReady (the dropped ones) at lag 30 ms and token
    rate 0.5/s: one token every 2 s."""
    params = {
        **no_latency,
        LAG: "30ms",
        "kube_controller_manager.node_eviction_rate": "0.5",
        "kube_controller_manager.node_monitor_period": monitor_period,
    }
    late = (d := _crash(params))[d > 1.0]
    assert len(late) > 0
    return late


def test_the_token_rate_sets_the_wait(no_latency: dict[str, str]) -> None:
    """Monitor period 1 s: queued again after 1 s, the token comes after 2 s."""
    assert _late_taints(no_latency, "1s").between(2.0, 2.0 + 0.03 + 1e-9).all()


def test_a_later_monitor_pass_than_the_token_sets_the_wait(no_latency: dict[str, str]) -> None:
    """Monitor period 5 s, token after 2 s: the node is queued again only at the next
    pass, 5 s after NotReady, and tainted at the tainter's first tick from there."""
    assert _late_taints(no_latency, "5s").between(5.0, 5.0 + TICK + 1e-9).all()


def test_without_a_lag_nothing_is_dropped(no_latency: dict[str, str]) -> None:
    assert _crash({**no_latency, LAG: "0s"}).between(0.0, TICK + 1e-9).all()


def test_next_pass_tainting_never_races_the_write(no_latency: dict[str, str]) -> None:
    """<= 1.33 the node is queued a monitor pass after the Unknown write: the informer has
    seen it by then, so even a 50 ms lag drops nothing."""
    delay = _crash({**no_latency, LAG: "50ms"}, profile="k8s-1.33")
    assert delay.between(5.0, 5.0 + TICK + 1e-9).all()


# ------------------------------------------------------- re-queues never race the write


class _Params:
    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def draw(self, key: str) -> object:
        return self.values[key]

    flag = choice = draw


class _Trial:
    """The few calls the node lifecycle controller makes, on a heap of timed events."""

    def __init__(self, values: dict[str, object]) -> None:
        self.p = _Params(values)
        self.now = 0.0
        self.events: list[tuple[float, int, object, tuple[object, ...]]] = []
        self.seq = 0
        self.milestones: dict[str, float] = {}

    def phase(self, period: float) -> float:
        return 0.0

    def at(self, delay: float, fn: object, *args: object) -> None:
        import heapq

        self.seq += 1
        heapq.heappush(self.events, (self.now + delay, self.seq, fn, args))

    def milestone(self, name: str) -> None:
        self.milestones.setdefault(name, self.now)

    def run(self, until: float, stop_at: str | None = None) -> None:
        import heapq

        while self.events and self.events[0][0] <= until:
            t, _, fn, args = heapq.heappop(self.events)
            self.now = t
            fn(*args)  # type: ignore[operator]
            if stop_at is not None and stop_at in self.milestones:
                return
        self.now = max(self.now, until)


def _controller(lag: float):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from chaoslab.mechanisms.node import NodeLifecycleController

    values: dict[str, object] = {
        "kube_controller_manager.node_monitor_period": 5.0,
        "kube_controller_manager.node_monitor_grace_period": 40.0,
        "kube_controller_manager.taint_based_evictions": True,
        "kube_controller_manager.taint_pass": "same-pass",
        "kube_controller_manager.pod_eviction_timeout": 300.0,
        "kube_controller_manager.node_informer_lag": lag,
        "kube_controller_manager.node_eviction_rate": 0.1,
        "kube_controller_manager.secondary_node_eviction_rate": 0.01,
        "kube_controller_manager.unhealthy_zone_threshold": 0.55,
        "kube_controller_manager.large_cluster_size_threshold": 50,
        "kube_controller_manager.node_eviction_period": TICK,
    }
    trial = _Trial(values)
    nodes = [
        SimpleNamespace(name=f"n{i}", zone="z", ready=True, tainted=False, heartbeating=True,
                        hb_phase=0.0, hb_period=10.0)
        for i in range(3)
    ]  # fmt: skip
    cp = SimpleNamespace(controllers_ok=True, api_up=True)
    noop = lambda *a: None  # noqa: E731
    cluster = SimpleNamespace(nodes=nodes, cp=cp, mark_pods_not_ready=noop, taint_added=noop,
                              taint_removed=noop, node_ready_changed=noop)  # fmt: skip
    return trial, cluster, NodeLifecycleController(trial, cluster)  # type: ignore[arg-type]


def test_the_closed_form_stub_drops_a_same_pass_taint_within_the_lag() -> None:
    """The stand-in reproduces the drop: a 5 s lag, the token at the write's own tick."""
    trial, cluster, nlc = _controller(lag=5.0)
    node = cluster.nodes[0]
    node.heartbeating = False
    nlc.heartbeat_stopped(node)
    trial.run(200.0)
    t_nr = trial.milestones["node.not_ready"]
    assert trial.milestones["node.tainted"] >= t_nr + 10.0  # dropped, tainted a token later


def test_a_requeue_after_a_controller_manager_restart_never_drops() -> None:
    """The manager stops leading in the pass that wrote Ready=Unknown, before the taint's
    token; a new leader a second later queues the node again (`_redo_unknown`). That
    re-queue is no same-pass write: even a 5 s informer lag drops nothing, the taint comes
    at the queue's first tick (the token was never taken)."""
    for restart_after in (0.5, 1.0, 3.0):
        trial, cluster, nlc = _controller(lag=5.0)
        node = cluster.nodes[0]
        node.heartbeating = False
        nlc.heartbeat_stopped(node)
        trial.run(200.0, stop_at="node.not_ready")
        t_nr = trial.milestones["node.not_ready"]
        cluster.cp.controllers_ok = False  # leadership lost (`controllers_stopped`)
        nlc.stop()
        trial.run(t_nr + restart_after)
        cluster.cp.controllers_ok = True
        nlc.restart()
        trial.run(t_nr + 200.0)
        tainted = trial.milestones["node.tainted"]
        assert t_nr + restart_after - 1e-9 <= tainted <= t_nr + restart_after + TICK + 1e-9
