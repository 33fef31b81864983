"""A real Kubernetes control plane on this machine: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from the official Go modules
(``tools/build.sh``), kwok processes as the nodes' kubelets, all on loopback with TLS.

::

    from chaoslab.live.cluster import LocalCluster, config_from_experiment
    cluster = LocalCluster.up(config_from_experiment(Path("exp.yaml")), state_dir=Path(d))
    core = kubernetes.client.CoreV1Api(cluster.admin_client())
    ...
    cluster.down()

``chaoslab cluster up|status|down`` is the command line over the same calls.
"""

from chaoslab.live.cluster.build import Build, find_build, go_available
from chaoslab.live.cluster.config import ClusterConfig, Timers, config_from_experiment
from chaoslab.live.cluster.errors import (
    BuildMissing,
    ClusterError,
    ComponentFailed,
    StateInUse,
    UnsupportedTimer,
)
from chaoslab.live.cluster.local import ComponentStatus, LocalCluster, running

__all__ = [
    "Build",
    "BuildMissing",
    "ClusterConfig",
    "ClusterError",
    "ComponentFailed",
    "ComponentStatus",
    "LocalCluster",
    "StateInUse",
    "Timers",
    "UnsupportedTimer",
    "config_from_experiment",
    "find_build",
    "go_available",
    "running",
]
