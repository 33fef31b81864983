"""Kubernetes version profiles (issue 11 item 1) against their closed forms.

- Which monitor pass queues the NoExecute taint: <= 1.33 the pass after the one that writes
  Ready=Unknown (``processTaintBaseEviction`` reads the condition observed before the pass),
  >= 1.34 the same pass. With heartbeats continuous up to the crash (renew interval -> 0),
  a default grace G = 10 P makes the taint fall in [G + P, G + 2P] (<= 1.33) or [G, G + P]
  (>= 1.34) after the last heartbeat, plus the 100 ms tainting worker.
- kube-proxy's BoundedFrequencyRunner: <= 1.33 a token bucket (rate 1/min sync, burst 2)
  spent at each start; >= 1.34 min sync counted from the previous sync's completion.
- >= 1.35: one more work-queue hop from a pod change to the slice.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chaoslab
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import Node, Service
from chaoslab.mechanisms.endpoints import KubeProxy
from chaoslab.params import PROFILES, ParamSet

N = 400
G, P, Q = 50.0, 5.0, 0.1  # grace, monitor period, tainting worker period (1.32+ defaults)
OLD = ("k8s-1.32", "k8s-1.33")
NEW = ("k8s-1.34", "k8s-1.35", "k8s-1.36", "k8s-1.37")
#: renewals every 10 ms: the last heartbeat is (almost) the crash instant
CONTINUOUS = {"kubelet.node_lease_duration_seconds": "40ms"}


def crash(profile: str, params: dict[str, str], trials: int = N, seed: int = 11):
    return chaoslab.simulate(
        "nodeport-lb", "node-crash", profile=profile, params=params, trials=trials, seed=seed
    )


def _uniform_gap(x: np.ndarray, lo: float, hi: float) -> float:
    """Largest distance between the empirical CDF of x and U(lo, hi)."""
    xs = np.sort(x)
    cdf = np.arange(1, len(xs) + 1) / len(xs)
    return float(np.max(np.abs(cdf - (xs - lo) / (hi - lo))))


def test_profiles_cover_every_release_and_say_which() -> None:
    k8s = {n: p for n, p in PROFILES.items() if p.family == "k8s"}
    for minor in range(31, 38):
        assert f"k8s-1.{minor}" in k8s
    assert all(p.covers for p in k8s.values())
    assert [n for n, p in k8s.items() if p.default] == ["k8s-1.37"]
    assert ParamSet.resolve().profiles[0] == "k8s-1.37"  # no profile given: the newest


@pytest.mark.parametrize("profile", OLD + NEW)
def test_taint_instant_after_the_last_heartbeat(profile: str, no_latency: dict[str, str]) -> None:
    lag = P if profile in OLD else 0.0
    df = crash(profile, {**no_latency, **CONTINUOUS})
    taint = df["at_node_tainted"].to_numpy()
    lo, hi = G + lag, G + lag + P
    assert ((taint >= lo - 0.01) & (taint <= hi + Q + 1e-9)).all()
    # the whole window, evenly: the monitor grid's phase is uniform
    assert _uniform_gap(taint - Q / 2, lo, hi) < 0.1
    # taint -> eviction is tolerationSeconds in every version
    assert np.allclose(df["at_pod_evicted"] - taint, 300.0)


@pytest.mark.parametrize(("profile", "lag"), [("k8s-1.31", P), ("k8s-1.33", P), ("k8s-1.34", 0.0)])
def test_taint_follows_not_ready_by_one_pass_or_none(
    profile: str, lag: float, no_latency: dict[str, str]
) -> None:
    df = crash(profile, no_latency)
    gap = df["at_node_tainted"] - df["at_node_not_ready"]
    assert gap.between(lag, lag + Q + 1e-9).all()
    assert gap.max() - gap.min() > 0.5 * Q  # the 100 ms worker's phase, not a constant


def test_legacy_eviction_is_unchanged_by_the_taint_pass(no_latency: dict[str, str]) -> None:
    """1.10: pod_eviction_timeout (300 s) >> grace + P, so the later pass changes nothing."""
    key = "kube_controller_manager.taint_pass"
    base = crash("k8s-1.10", {**no_latency, key: "next-pass"})
    same = crash("k8s-1.10", {**no_latency, key: "same-pass"})
    assert np.allclose(base["at_pod_evicted"], same["at_pod_evicted"])
    # only an eviction timeout shorter than the grace shows the later pass
    short = {**no_latency, "kube_controller_manager.pod_eviction_timeout": "1s"}
    late = crash("k8s-1.10", {**short, key: "next-pass"})
    early = crash("k8s-1.10", {**short, key: "same-pass"})
    assert np.allclose(late["at_pod_evicted"] - late["at_node_not_ready"], P, atol=Q + 1e-9)
    assert (early["at_pod_evicted"] - early["at_node_not_ready"]).max() <= Q + 1e-9


def test_pod_queue_adds_one_hop(no_latency: dict[str, str]) -> None:
    hop = {**no_latency, "kube_controller_manager.controller_reaction": "0.2s"}
    old = crash("k8s-1.34", hop, trials=50)
    new = crash("k8s-1.35", hop, trials=50)
    for df, hops in ((old, 1), (new, 2)):
        gap = df["at_endpoints_removed"] - df["at_pods_not_ready"]
        assert np.allclose(gap, 0.2 * hops)


# ------------------------------------------------------------ kube-proxy sync runner


class _Recorder(KubeProxy):
    __slots__ = ("ends", "starts")

    def _start_sync(self, epoch: int) -> None:
        running = self._running
        super()._start_sync(epoch)
        if self._running and not running:
            self.starts.append(self.trial.now)

    def _finish_sync(self, snapshot, epoch):  # type: ignore[no-untyped-def]
        super()._finish_sync(snapshot, epoch)
        self.ends.append(self.trial.now)


class _Cluster:
    proxy_terminating_endpoints = True

    def __init__(self) -> None:
        self.proxies: list[KubeProxy] = []

    def proxy_synced(self, proxy: KubeProxy) -> None:
        pass


def _drive(runner: str, changes: list[float], duration: float, seed: int) -> _Recorder:
    """One kube-proxy (min sync 1 s) and slice changes at the given instants."""
    ps = ParamSet.resolve(
        "k8s-1.37",
        {"kube_proxy.sync_runner": runner, "kube_proxy.sync_duration": f"{duration}s"},
    )
    rng = np.random.default_rng(seed)
    trial = Trial(ps.sampler(rng), rng, horizon=1e4)
    svc = Service()
    node = Node("n1", "compute", 0, "z")
    proxy = _Recorder(trial, _Cluster(), node, svc)  # type: ignore[arg-type]
    proxy.starts, proxy.ends = [], []

    def change() -> None:
        svc.version += 1
        proxy.slice_changed()

    for t in changes:
        trial.at(t, change)
    trial.env.run()
    return proxy


_changes = st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(_changes, st.floats(0.0, 0.5), st.integers(0, 1000))
def test_runner_invariants(changes: list[float], duration: float, seed: int) -> None:
    for runner in ("burst-2", "completion-to-start"):
        px = _drive(runner, changes, duration, seed)
        starts, ends = px.starts, px.ends
        # every change is programmed eventually; one sync at a time
        assert px._synced_version == px.service.version
        assert all(e >= s for s, e in zip(starts, ends, strict=True))
        assert all(s2 >= e1 for e1, s2 in zip(ends, starts[1:], strict=False))
        if runner == "completion-to-start":
            assert all(s2 - e1 >= 1.0 - 1e-9 for e1, s2 in zip(ends, starts[1:], strict=False))
        else:  # at most 2 + W starts in any window of W seconds (burst 2, 1 token/s)
            for i, s in enumerate(starts):
                for j in range(i, len(starts)):
                    assert j - i + 1 <= 2 + (starts[j] - s) + 1e-9


def test_burst_two_runs_back_to_back_then_waits() -> None:
    """Changes at 0, 0.1 and 0.2 s after a quiet period, syncs of 50 ms."""
    burst = _drive("burst-2", [100.0, 100.1, 100.2], 0.05, 1)
    assert burst.starts[:2] == pytest.approx([100.0, 100.1])
    # no token left: the retry at the second sync's completion + 1 s
    assert burst.starts[2] == pytest.approx(100.15 + 1.0)
    late = _drive("completion-to-start", [100.0, 100.1, 100.2], 0.05, 1)
    assert late.starts == pytest.approx([100.0, 101.05])  # the 2nd sync reads both changes
