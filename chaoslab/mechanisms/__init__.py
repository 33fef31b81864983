"""Mechanism models: one module per real component's timing behaviour (SimPy, no I/O)."""

from chaoslab.mechanisms.base import MILESTONES, Trial, milestone_column, register_milestones
from chaoslab.mechanisms.cluster import ClusterSpec, Node, Pod, Service, Workload
from chaoslab.mechanisms.endpoints import EndpointSliceController, KubeProxy
from chaoslab.mechanisms.k8s import KubernetesCluster
from chaoslab.mechanisms.kubelet import Kubelet
from chaoslab.mechanisms.lbcheck import LbHealthChecker
from chaoslab.mechanisms.node import NodeLifecycleController, RateLimitedQueue
from chaoslab.mechanisms.workload import Scheduler, WorkloadController

__all__ = [
    "MILESTONES",
    "ClusterSpec",
    "EndpointSliceController",
    "KubeProxy",
    "Kubelet",
    "KubernetesCluster",
    "LbHealthChecker",
    "Node",
    "NodeLifecycleController",
    "Pod",
    "RateLimitedQueue",
    "Scheduler",
    "Service",
    "Trial",
    "Workload",
    "WorkloadController",
    "milestone_column",
    "register_milestones",
]
