"""Hollow nodes: the real kubelet code as a node's kubelet, so that pod-kill can be drilled.

kwok runs no container and has no PLEG: nothing to kill, nothing restarts it. A hollow
node (``tools/k8s/hollow.go``, the ``hollow-node`` command of the build's multi-call
binary) is kubemark's ``HollowKubelet`` from ``k8s.io/kubernetes`` ``pkg/kubemark`` — the
kubelet itself (``kubeletapp.RunKubelet``: PLEG relist every 1 s, pod workers, the
crash-loop back-off, the status manager, node Lease and status) — with two changes:

- the real prober: kubemark passes ``prober/testing.FakeManager``, which marks every
  container ready, dead ones included; ``hollow.go`` drops it, so the kubelet builds its
  own ``prober.NewManager`` and runs the app's HTTP readiness probe from the node's
  namespace against the pod's IP;
- a CRI runtime built on ``k8s.io/cri-client`` ``pkg/fake`` (``cri-api``'s
  ``FakeRuntimeService`` behind a gRPC unix socket): a sandbox gets the lowest free
  address of the node's podCIDR (the kubelet passes it by ``UpdateRuntimeConfig``, as to
  a CNI's host-local range) on the node namespace's ``pods0`` (the fake gives every
  sandbox 192.168.192.168), and a running container is an HTTP server on the sandbox's
  address and its container ports (200, body the pod's name), closed when it stops.

``hollow-node kill`` stops a pod's running containers through that socket (CRI
``StopContainer``, timeout 0: exit code 137, reason Error, its servers closed at once),
as a container whose process died; the kubelet finds out by its next PLEG relist.
``python -m chaoslab.live.cluster.hollow pod-kill POD [--namespace NS] [--state DIR]`` is
the drill's hook (it prints ``fault_at=``, taken just before the CRI call), ``pod-renew
POD`` its recover step (`renew`).

A hollow node runs inside its node's namespace in the node's kubelet slot (the data
plane's ``kwok-<node>`` record), so kubelet-stop, node-crash and node-partition act on it
as on kwok; it needs the data plane. Unlike a real node, its containers live in the
kubelet's process: stopping the kubelet stops them too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaoslab.errors import LiveError, UserError
from chaoslab.live.cluster.errors import ClusterError

if TYPE_CHECKING:
    from chaoslab.live.cluster.components import Layout
    from chaoslab.live.cluster.config import ClusterConfig

__all__ = ["COMMAND", "argv", "kill", "main", "renew", "socket", "targets", "with_readiness_probe"]

#: the multi-call binary's name for the hollow node (tools/k8s/hollow.go)
COMMAND = "hollow-node"
#: the app's probed path and port (the container's HTTP server answers every path)
PROBE_PATH = "/"


def socket(state_dir: Path, node: str) -> Path:
    """The node's CRI socket (short: a unix socket path has at most 107 bytes)."""
    return state_dir / "hollow" / f"{node}.sock"


def argv(layout: Layout, dp: Any, node: str) -> list[str]:
    """The hollow kubelet's command line for ``node``, run in its namespace."""
    if dp is None:
        raise ClusterError(
            f"{node}: a hollow node needs the data plane (root and `ip`): its pods' "
            "addresses live in the node's namespace"
        )
    build, timers = layout.build, layout.config.timers
    if build is None or not build.bin(COMMAND).exists():
        raise ClusterError(f"{node}: no {COMMAND} in the build; run FORCE=1 tools/build.sh k8s")
    sock = socket(layout.dir, node)
    sock.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig = dp.bridged_kubeconfig(node, layout.kubeconfig(f"node-{node}"))
    return [
        str(build.bin(COMMAND)),
        f"--name={node}",
        f"--kubeconfig={kubeconfig}",
        f"--runtime-endpoint={sock}",
        f"--root-dir={layout.dir / 'hollow' / node}",
        f"--node-ip={dp.node_ip(node)}",
        *(f"{k}={v}" for k, v in timers.kwok.items()),
        *(f"{k}={v}" for k, v in timers.hollow.items()),
    ]


def with_readiness_probe(objs: list[dict[str, Any]], config: ClusterConfig) -> list[dict[str, Any]]:
    """The app's objects; with hollow nodes its containers get the experiment's readiness
    probe (``probe.*``), an HTTP GET of each container's first port (kwok ignores it)."""
    probe = config.timers.readiness_probe
    if not config.hollow_nodes or probe is None:
        return objs
    for obj in objs:
        template = obj.get("spec", {}).get("template")
        for c in (template or {}).get("spec", {}).get("containers", []):
            port = c["ports"][0]["containerPort"]
            c["readinessProbe"] = {"httpGet": {"path": PROBE_PATH, "port": port}, **probe}
    return objs


def kill(binary: Path, sockets: Sequence[Path], namespace: str, pod: str) -> str:
    """Stop the pod's running containers through whichever socket has them; the
    command's output (``fault_at=`` CLOCK_MONOTONIC seconds, the ``killed`` lines)."""
    cmd = [str(binary), "kill", "--namespace", namespace, "--pod", pod]
    cmd += [a for s in sockets for a in ("--runtime-endpoint", str(s))]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LiveError(f"{binary} kill: {e}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LiveError(f"pod-kill {namespace}/{pod}: {last}")
    return done.stdout


def targets(state: Path, node: str | None) -> tuple[Path, list[Path]]:
    """The hollow-node binary and the CRI sockets of the cluster's hollow nodes."""
    from chaoslab.live.cluster.dataplane import DataPlane

    dp_dir = state / "dataplane"
    if not (dp_dir / "state.json").exists():
        raise LiveError(f"{state}: no data plane recorded, so no hollow node")
    procs = DataPlane.load(dp_dir).state.procs
    found = {
        name[len("kwok-") :]: list(p.argv)
        for name, p in procs.items()
        if name.startswith("kwok-") and Path(p.argv[0]).name == COMMAND
    }
    if node is not None:
        found = {n: a for n, a in found.items() if n == node}
    if not found:
        where = f"node {node}" if node else "any node"
        raise LiveError(f"{state}: {where} runs no hollow kubelet (live.hollow_nodes)")
    binary = Path(next(iter(found.values()))[0])
    return binary, [socket(state, n) for n in sorted(found)]


def renew(state: Path, namespace: str, pod: str) -> str:
    """Delete the killed pod (its workload replaces it): the next trial kills a container
    that never crashed, whose restart is immediate, as the model's pod-kill. The kubelet
    keeps a crash-loop back-off per pod and container (10 s doubling, forgotten only 10 min
    after the last crash), so a pod killed again would restart 10, 20, 40 ... s late."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(str(state / "admin.kubeconfig")))
    try:
        api.delete_namespaced_pod(pod, namespace, _request_timeout=10)
    except ApiException as e:
        if e.status != 404:  # gone already: safe to run twice
            raise LiveError(f"delete pod {namespace}/{pod}: {e.status} {e.reason}") from None
        return f"{namespace}/{pod} already gone\n"
    return f"deleted {namespace}/{pod}\n"


def main(argv_: Sequence[str] | None = None) -> int:
    """``pod-kill POD`` (prints ``fault_at=``) and ``pod-renew POD``: the drill's hooks."""
    from chaoslab.live.cluster.hooks import ENV_STATE
    from chaoslab.live.cluster.state import default_state_dir

    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.hollow")
    ap.add_argument("action", choices=["pod-kill", "pod-renew"])
    ap.add_argument("pod")
    ap.add_argument("--namespace", default="demo")
    ap.add_argument("--node", help="the pod's node (default: every hollow node is asked)")
    ap.add_argument("--state", type=Path, help=f"cluster state folder (default ${ENV_STATE})")
    a = ap.parse_args(argv_)
    state = a.state or Path(os.environ.get(ENV_STATE) or default_state_dir("default"))
    try:
        if a.action == "pod-renew":
            print(renew(state, a.namespace, a.pod), end="", flush=True)
            return 0
        binary, sockets = targets(state, a.node or None)
        print(kill(binary, sockets, a.namespace, a.pod), end="", flush=True)
    except (LiveError, UserError) as e:
        print(f"{a.action} {a.pod}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
