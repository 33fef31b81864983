"""Kubelet and kube-proxy details (issue 11 items 4 and 6) against their closed forms.

- CrashLoopBackOff (``kuberuntime_manager.go`` doBackOff): the first restart is at once,
  then 10 s, 20 s, ... capped at 300 s, counted from the container's exit.
- A pod that stays dead (``crashes: inf``) vs a restart in place.
- KEP-1669 under ``externalTrafficPolicy: Cluster``: with no ready endpoint anywhere,
  kube-proxy keeps the serving terminating ones.
- Heartbeat jitter (``JitterUntil(period, 0.04)``): the heartbeat grid's period is the
  renewal interval's mean.
"""

from __future__ import annotations

import numpy as np
import pytest

import chaoslab
from chaoslab.designs import DESIGNS
from chaoslab.faults import FAULTS, Fault
from chaoslab.mechanisms.base import Trial
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import ParamSet

HORIZON = 1800.0


def _deaths(seen: float, start: float = 1.0) -> int:
    """Closed form: deaths within the horizon of a container that dies each time it
    starts: d1 = 0, restart at the PLEG tick ``seen``, then d(k+1) = d(k) + backoff + start
    with backoff 10 s x 2^(k-2) capped at 300 s."""
    deaths, d = 1, seen + start
    k = 2
    while d <= HORIZON:
        deaths += 1
        d += min(300.0, 10.0 * 2 ** (k - 2)) + start
        k += 1
    return deaths


def _run(fault: Fault, params: dict[str, str], seed: int, spec: ClusterSpec | None = None):
    rng = np.random.default_rng(seed)
    ps = ParamSet.resolve(None, params).with_overrides(fault.overrides(), source="fault")
    trial = Trial(ps.sampler(rng), rng, HORIZON)
    topo = DESIGNS["nodeport-lb"].build(trial, spec or ClusterSpec())
    nodes, pods = FAULTS[fault.kind].resolve(topo, fault)
    trial.set_availability(topo.availability)
    FAULTS[fault.kind].inject(topo, nodes, pods)
    trial.env.run(until=HORIZON)
    return trial, pods


def test_a_pod_that_stays_dead_backs_off_to_five_minutes(no_latency: dict[str, str]) -> None:
    """Deaths at 0, s1+1, +11, +21, +41, +81, +161, +301, +301, ... (s1 = the PLEG tick):
    11 of them within the 30-minute horizon, whatever the PLEG phase."""
    params = {**no_latency, "pod.container_start_time": "1s"}
    for seed in range(5):
        trial, (pod,) = _run(Fault("pod-kill", "app-pod", {"crashes": "inf"}), params, seed)
        assert pod.restarts == 11
        assert not pod.running and not pod.ready
        assert "container.serving" not in trial.milestones  # restarted, never listening
    # the closed form gives the same count with the PLEG tick anywhere in (0, 1 s]
    assert _deaths(0.0) == _deaths(1.0) == 11


def test_a_crash_loop_restarts_count_back_off_from_the_exit(no_latency: dict[str, str]) -> None:
    """Three deaths: restart when the first is seen (s1), then 10 s after the second exit,
    20 s after the third: running again at s1 + 1 + 11 + 21 = s1 + 33."""
    df = chaoslab.simulate(
        "nodeport-lb",
        {"kind": "pod-kill", "crashes": 3},
        params={**no_latency, "pod.container_start_time": "1s"},
        trials=100,
        seed=2,
    )
    died = df["at_container_died"].to_numpy()  # the first death, seen at the PLEG tick
    assert np.allclose(df["at_container_serving"], died + 33.0, atol=1e-6)


def test_stays_dead_vs_restart_in_place(no_latency: dict[str, str]) -> None:
    """Both remove the endpoint; only the restart in place brings it back. With 3 replicas
    the other two serve meanwhile, so the users' loss is the removal race either way."""
    once = chaoslab.simulate("nodeport-lb", "pod-kill", params=no_latency, trials=100, seed=4)
    dead = chaoslab.simulate(
        "nodeport-lb", {"kind": "pod-kill", "crashes": "inf"}, params=no_latency, trials=100, seed=4
    )
    assert once["at_endpoints_added"].notna().all()
    assert dead["at_endpoints_removed"].notna().all()
    assert "at_endpoints_added" not in dead or dead["at_endpoints_added"].isna().all()
    assert np.isfinite(dead["recovery_s"]).all()
    assert dead["lost_s"].max() < 5.0


@pytest.mark.parametrize(("fallback", "served"), [(True, True), (False, False)])
def test_cluster_policy_keeps_terminating_endpoints_when_none_is_ready(
    fallback: bool, served: bool, no_latency: dict[str, str]
) -> None:
    """One replica, graceful delete with a 15 s preStop sleep: its endpoint turns
    terminating at once, the replacement is not Ready for a few seconds. With KEP-1669
    every kube-proxy keeps DNATing to the terminating pod, which still serves until its
    SIGTERM; without it there is no endpoint and new connections fail at once."""
    spec = ClusterSpec(replicas=1)
    params = {
        **no_latency,
        "pod.prestop_sleep": "15s",
        "kube_proxy.proxy_terminating_endpoints": "true" if fallback else "false",
    }
    df = chaoslab.simulate(
        "nodeport-lb", "pod-delete", params=params, cluster=spec, trials=50, seed=1
    )
    # the replacement is Ready within start 1 s + one 10 s probe period, before SIGTERM
    assert (df["at_pod_ready"] < df["at_pod_sigterm"]).all()
    if served:
        assert (df["lost_s"] == 0).all()
    else:
        assert (df["lost_s"] > 0.5).all()


def test_heartbeats_run_on_the_jittered_mean_period(no_latency: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    trial = Trial(ParamSet.resolve(None, no_latency).sampler(rng), rng, HORIZON)
    topo = DESIGNS["nodeport-lb"].build(trial, ClusterSpec())
    periods = [n.hb_period for n in topo.cluster.nodes]
    assert periods == pytest.approx([40 * 0.25 * 1.02] * len(periods))
    # the mean age of the last heartbeat matches the length-biased U(10, 10.4) s interval's
    lo, hi = 10.0, 10.4
    mean_l, mean_l2 = (lo + hi) / 2, (lo * lo + lo * hi + hi * hi) / 3
    assert periods[0] / 2 == pytest.approx(mean_l2 / (2 * mean_l), rel=1e-3)
