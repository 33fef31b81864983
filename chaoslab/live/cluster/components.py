"""Command lines, certificates and kubeconfigs of the control-plane components.

Flags follow what kubeadm gives each component (cmd/kubeadm/app/phases/controlplane/
manifests.go in kubernetes/kubernetes), bound to 127.0.0.1 with TLS everywhere; the timer
flags come from :class:`~chaoslab.live.cluster.config.Timers`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chaoslab.live.cluster.build import Build
from chaoslab.live.cluster.config import ClusterConfig, NodeSpec
from chaoslab.live.cluster.errors import BuildMissing
from chaoslab.live.cluster.pki import CertSpec, Pki

__all__ = ["PORT_NAMES", "Layout", "cert_specs", "free_ports", "write_kubeconfig"]

LOOPBACK = "127.0.0.1"
#: address ranges of the cluster (none is ever routed from the host namespace)
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the kubernetes Service: first address of SERVICE_CIDR
CLUSTER_CIDR = "10.244.0.0/16"
NODE_CIDR_MASK = 24
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
PORT_NAMES = ("etcd", "etcd-peer", "etcd-metrics", "apiserver", "controller-manager", "scheduler")
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"


#: the pod condition the runtime stand-in sets, with Ready, once it serves the pod's IP
#: (chaoslab.live.cluster.dataplane_runtime)
SERVING_CONDITION = "chaoslab.io/serving"
#: the Ready reason of a pod that started but was never Ready (kwok's general pod-create
#: stage, sigs.k8s.io/kwok kustomize/stage/pod/general); the node lifecycle controller's
#: MarkPodsNotReady changes only the status (pkg/controller/util/node/controller_utils.go)
NOT_YET_READY = "ContainersNotReady"

#: kwok Stage (sigs.k8s.io/kwok pkg/apis/v1alpha1 Stage): delay uniform in [0, period];
#: not for a pod that was never Ready (the runtime stand-in makes that one Ready once it
#: serves it)
POD_READY_AGAIN = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: chaoslab-pod-ready-again
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .reason'
      operator: 'NotIn'
      values: ['ContainersNotReady']
  delay:
    durationMilliseconds: 0
    jitterDurationMilliseconds: PERIOD_MS
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
"""


#: the conditions of kwok's pod-ready stage (kustomize/stage/pod/fast/pod-ready.yaml at
#: v0.8.0), and what chaoslab's pod-start stage writes instead: Running, not Ready yet
_KWOK_READY = """- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
"""
_NOT_READY_YET = _KWOK_READY.replace(
    'status: "True"\n', f'status: "False"\n  reason: {NOT_YET_READY}\n'
)


def kwok_stages(defaults: str, *, served: bool) -> list[dict[str, Any]]:
    """kwok's default stages (the text of the build's stages.yaml) and chaoslab's: with
    ``served``, kwok's pod-ready becomes chaoslab-pod-start (Running with its IP, Ready
    False) and the runtime stand-in writes Ready once its server runs (in the same patch
    as SERVING_CONDITION, `dataplane_runtime.status_marker`)."""
    out: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(defaults):
        if not doc:
            continue
        if served and doc["metadata"]["name"] == "pod-ready":
            template = doc["spec"]["next"]["statusTemplate"]
            if _KWOK_READY not in template:
                raise BuildMissing(
                    "kwok's pod-ready stage changed (no Ready/ContainersReady conditions as "
                    "in v0.8.0): chaoslab-pod-start cannot be derived from it"
                )
            doc["metadata"]["name"] = "chaoslab-pod-start"
            doc["spec"]["next"]["statusTemplate"] = template.replace(_KWOK_READY, _NOT_READY_YET)
        out.append(doc)
    return out


def free_ports(names: tuple[str, ...] = PORT_NAMES) -> dict[str, int]:
    """Ports the kernel hands out now on loopback (all held until all are chosen)."""
    socks = []
    try:
        for _ in names:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return {n: s.getsockname()[1] for n, s in zip(names, socks, strict=True)}
    finally:
        for s in socks:
            s.close()


def cert_specs(nodes: list[NodeSpec]) -> list[CertSpec]:
    loopback = (LOOPBACK, "localhost")
    api_sans = (
        *loopback,
        SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    specs = [
        CertSpec("apiserver", "kube-apiserver", sans=api_sans, server=True),
        CertSpec("etcd", "etcd", sans=loopback, server=True, client=True),
        CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
        CertSpec("admin", "kubernetes-admin", ("system:masters",), client=True),
        CertSpec("controller-manager", CONTROLLER_MANAGER_USER, client=True),
        CertSpec("scheduler", SCHEDULER_USER, client=True),
        CertSpec("kube-proxy", "system:kube-proxy", client=True),
        CertSpec("front-proxy-client", "front-proxy-client", client=True),
        CertSpec(
            "controller-manager-serving", "kube-controller-manager", sans=loopback, server=True
        ),
        CertSpec("scheduler-serving", "kube-scheduler", sans=loopback, server=True),
    ]
    specs += [
        CertSpec(f"node-{n.name}", f"system:node:{n.name}", ("system:nodes",), client=True)
        for n in nodes
    ]
    return specs


def write_kubeconfig(path: Path, server: str, pki: Pki, cert: str, user: str) -> Path:
    """A kubeconfig for one client certificate of ``pki``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.cert(cert)),
                    "client-key": str(pki.key(cert)),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Layout:
    """Where one cluster's files are, which ports it uses, and the component command lines."""

    dir: Path
    ports: dict[str, int]
    build: Build | None  # None when only reading a recorded cluster (status, down)
    config: ClusterConfig

    @property
    def pki(self) -> Pki:
        return Pki(self.dir / "pki")

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, name: str) -> Path:
        return self.dir / "kubeconfigs" / f"{name}.kubeconfig"

    def url(self, port: str, scheme: str = "https") -> str:
        return f"{scheme}://{LOOPBACK}:{self.ports[port]}"

    def _bin(self, command: str) -> Path:
        if self.build is None:
            raise BuildMissing(f"{self.dir}: no build given for {command}")
        return self.build.bin(command)

    def _cert_flags(self, prefix: str, name: str) -> list[str]:
        pki = self.pki
        return [f"--{prefix}cert-file={pki.cert(name)}", f"--{prefix}key-file={pki.key(name)}"]

    def etcd(self) -> list[str]:
        peer, pki = self.url("etcd-peer"), self.pki
        return [
            str(self._bin("etcd")),
            "--name=default",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={self.url('etcd')}",
            f"--advertise-client-urls={self.url('etcd')}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            f"--listen-metrics-urls={self.url('etcd-metrics', 'http')}",
            *self._cert_flags("", "etcd"),
            f"--trusted-ca-file={pki.ca_cert}",
            "--client-cert-auth=true",
            *self._cert_flags("peer-", "etcd"),
            f"--peer-trusted-ca-file={pki.ca_cert}",
            "--peer-client-cert-auth=true",
        ]

    def apiserver(self) -> list[str]:
        pki = self.pki
        flags = [
            str(self._bin("kube-apiserver")),
            f"--etcd-servers={self.url('etcd')}",
            f"--etcd-cafile={pki.ca_cert}",
            f"--etcd-certfile={pki.cert('apiserver-etcd-client')}",
            f"--etcd-keyfile={pki.key('apiserver-etcd-client')}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki.cert('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # the aggregation layer's request headers, as kubeadm sets them (its own CA
            # there; one CA here, whose only front-proxy-client certificate is ours)
            f"--requestheader-client-ca-file={pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.cert('front-proxy-client')}",
            f"--proxy-client-key-file={pki.key('front-proxy-client')}",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # the kubernetes Service would get 127.0.0.1, which endpoints refuse (loopback)
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        return flags + [f"{f}={v}" for f, v in self.config.timers.kube_apiserver.items()]

    def _delegated(self, kubeconfig: Path, serving: str, port: str) -> list[str]:
        """Flags a controller-manager or scheduler needs for its own HTTPS endpoint."""
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports[port]}",
            f"--tls-cert-file={self.pki.cert(serving)}",
            f"--tls-private-key-file={self.pki.key(serving)}",
            f"--client-ca-file={self.pki.ca_cert}",
        ]

    def controller_manager(self) -> list[str]:
        pki = self.pki
        flags = [
            str(self._bin("kube-controller-manager")),
            *self._delegated(
                self.kubeconfig("controller-manager"),
                "controller-manager-serving",
                "controller-manager",
            ),
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.dir / 'sa.key'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}",
            f"--node-cidr-mask-size={NODE_CIDR_MASK}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ]
        return flags + [f"{f}={v}" for f, v in self.config.timers.kube_controller_manager.items()]

    def scheduler(self) -> list[str]:
        return [
            str(self._bin("kube-scheduler")),
            *self._delegated(self.kubeconfig("scheduler"), "scheduler-serving", "scheduler"),
            "--profiling=false",
        ]

    def kube_proxy_args(self) -> tuple[str, ...]:
        """kube-proxy flags beyond those the data plane sets: the cluster CIDR (traffic
        from outside it is masqueraded) and the experiment's sync timers."""
        timers = self.config.timers.kube_proxy
        return (f"--cluster-cidr={CLUSTER_CIDR}", *(f"{f}={v}" for f, v in timers.items()))

    @property
    def kwok_stages(self) -> Path:
        return self.dir / "kwok-stages.yaml"

    def write_kwok_stages(self, kwok: Build, *, served: bool) -> Path:
        """The one stage file kwok runs with: its defaults (`kwok_stages`; with ``served``
        a pod is Ready only once the runtime stand-in serves it) and a stage that sets a
        Running pod that was Ready and is not (the node lifecycle controller marks pods
        NotReady on an unreachable node) Ready again within the kubelet's status sync
        period, as a kubelet's status manager does once it reaches the API server again
        (kwok's pod-ready stage selects only Pending pods)."""
        period = self.config.timers.status_sync_ms
        docs = kwok_stages((kwok.dir / "stages.yaml").read_text(), served=served)
        docs.append(yaml.safe_load(POD_READY_AGAIN.replace("PERIOD_MS", str(period))))
        self.kwok_stages.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return self.kwok_stages

    def kwok(self, kwok: Build, node: str, kubeconfig: Path) -> list[str]:
        flags = [
            str(kwok.bin("kwok")),
            f"--kubeconfig={kubeconfig}",
            f"--manage-single-node={node}",
            # kwok's NodeName (the node-initialize stage's Hostname address) is this flag,
            # not --manage-single-node. Without it a Node has no Hostname address, and when
            # the stage runs again on a NotReady node (a restored crash) it renders
            # `addresses:` with no entry, a strategic merge deleting every address
            # (sigs.k8s.io/kwok v0.8.0 kustomize/stage/node/fast/node-initialize.yaml):
            # kube-proxy then exits, "NodeIPs changed ... null" (pkg/proxy/node.go v1.37.2)
            f"--node-name={node}",
            f"--config={self.kwok_stages}",
        ]
        return flags + [f"{f}={v}" for f, v in self.config.timers.kwok.items()]
