"""A new pod without a readiness probe is Ready once its container runs, not once it listens.

Without a readiness probe worker the kubelet reports a container ready as soon as its
state is Running (k8s.io/kubernetes v1.37.2 ``pkg/kubelet/prober/prober_manager.go``
UpdatePodStatus, lines 354-362: ``ready = !exists``), the pod's Ready condition follows its
containers' (``pkg/kubelet/status/generate.go`` lines 78-84, 127-141, called from
``pkg/kubelet/kubelet_pods.go`` generateAPIPodStatus, lines 1969 and 2012), and the sync
that first sees the container running sets that status (``pkg/kubelet/kubelet.go`` SyncPod,
lines 2108 and 2135). So the replacement of a deleted pod is Ready one API write after that
sync, whatever its app is doing; until the app listens, connections DNAT'd to it reach
its live node's kernel, which answers with a reset: refused at once, not a timeout.

Fixed timings: an API write ``R`` = 0.1 s, scheduling 0.1 s, no image pull, the runtime's
start 0.2 s, the app's start-up 4.9 s. The delete at 0: the replacement is created at
0.1 s, bound at 0.2 s, its process runs at 0.4 s and its app listens at 5.3 s. With the
on-demand relist (1.37) the process is seen at 0.4 s: Ready at 0.5 s. With a probe every
1 s from that sync, the first at or after 5.3 s passes at 5.4 s: Ready at 5.5 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaoslab.experiment import load_experiment
from chaoslab.mechanisms.ingress import upstream_counts
from chaoslab.runner import _build, _prepare

EXP = """
title: no readiness probe
profile: [{profile}]
cluster:
  nodes: {{master: 1, controller: 3, compute: 1}}
  app: {{kind: Deployment, replicas: 3, spread: controller}}
designs: [clusterip]
faults: [{{kind: pod-delete, target: app-pod}}]
params:
  pod.readiness_probe: {probe}
  kube_controller_manager.controller_reaction: 0.1s
  kube_scheduler.scheduling_latency: 0.1s
  pod.image_pull_time: 0s
  kubelet.container_runtime_start: 0.2s
  pod.container_start_time: 4.9s
  probe.period_seconds: 1s
  probe.initial_delay_seconds: 0s
  probe.success_threshold: 1
horizon: 10m
"""

LISTENS = 5.3  # the replacement's app accepts connections
LOOK = 5.0  # an instant after its endpoint is programmed, before its app listens


def _trial(profile: str, probe: bool, index: int = 0) -> dict[str, object]:
    """One SimPy trial of the delete; the replacement's state as the client's kube-proxy
    sees it at ``LOOK``, and the milestones."""
    text = EXP.format(profile=profile, probe=str(probe).lower())
    (cell,) = load_experiment(Path("no-probe.yaml"), text).cells()
    trial, topo, nodes, pods = _build(cell, index, 5)
    seen: dict[str, object] = {}

    def look() -> None:
        (new,) = [p for p in topo.cluster.app.pods if p.replacement]
        programmed = topo.client.proxy.programmed
        seen.update(
            ready=new.ready,
            running=new.running,
            programmed=new in programmed,
            counts=upstream_counts(programmed, topo.client),
            a=topo.availability(),
        )

    _prepare(cell).kind.inject(topo, nodes, pods)
    trial.changed()
    trial.at(LOOK, look)
    trial.run()
    return {**seen, **trial.milestones}


def test_without_a_probe_the_replacement_is_ready_at_the_sync_that_sees_it_run() -> None:
    got = _trial("k8s-1.37", probe=False)
    assert got["replacement.ready"] == pytest.approx(0.5)  # seen at 0.4 s + R
    assert got["replacement.ready"] < LISTENS


def test_before_its_app_listens_its_endpoint_refuses_connections() -> None:
    """At 5.0 s the client's kube-proxy sends a third of new connections to the Ready
    replacement, whose app does not listen yet: on its live node they are refused (a
    reset), not black-holed; the other two pods serve the rest."""
    got = _trial("k8s-1.37", probe=False)
    assert got["ready"] and got["programmed"] and not got["running"]
    assert got["counts"] == (2, 1, 0, 0)  # (live, refused, black holes, unreachable)
    assert got["a"] == pytest.approx(2 / 3)


def test_with_a_probe_nothing_changes() -> None:
    """The probe grid from the 0.4 s sync passes first at 5.4 s: Ready at 5.5 s, and at
    5.0 s the replacement is in no kube-proxy's rules, every connection served."""
    got = _trial("k8s-1.37", probe=True)
    assert got["replacement.ready"] == pytest.approx(LISTENS + 0.1 + 0.1)
    assert not got["ready"] and not got["programmed"]
    assert got["a"] == pytest.approx(1.0)


@pytest.mark.parametrize("index", range(5))
def test_before_the_on_demand_relist_ready_waits_for_the_next_relist(index: int) -> None:
    """1.35: the process running at 0.4 s is seen at the node's next periodic relist
    (every 1 s, drawn phase), still long before the app listens: Ready in (0.5, 1.5] s."""
    got = _trial("k8s-1.35", probe=False, index=index)
    assert 0.5 < got["replacement.ready"] <= 1.5 + 1e-9  # type: ignore[operator]
    assert got["a"] == pytest.approx(2 / 3)
