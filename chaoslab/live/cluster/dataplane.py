"""The data plane of the local control plane: one network namespace per simulated node, the
real kube-proxy in each, pod IPs served by a runtime stand-in, and a client namespace.

::

    client 10.0.1.250 ──┐
    node 1 10.0.1.1 ────┤  br0 in namespace "sw" (the switch)
    node k 10.0.1.k ────┘
    node k: eth0 10.0.1.k/24, pods0 (a veth) holds the IPs of its Running pods,
            route <podCIDR of node j> via 10.0.1.j for every other node j,
            127.0.0.1:6443 -> unix socket -> host 127.0.0.1:<apiserver port> (the bridge)

No namespace has a default route or any route beyond the switch subnet and the podCIDRs:
nothing can leave. The API server stays on host loopback and is reached only through the
unix-socket bridge (:mod:`chaoslab.live.cluster.dataplane_bridge`), so a partition drops
a node's API traffic (in the filter table, on ``lo``) and its data traffic (in the raw
table, on ``eth0``) separately; ``partition(node, data=False)`` cuts the API path only.

API (what ``chaoslab cluster up`` and the drill target use)::

    nodes = node_networks(admin_kubeconfig)        # [NodeNet(name, pod_cidr)] from spec.podCIDR
    dp = DataPlane.create(state_dir / "dataplane", "c1", nodes, kubeconfig=admin_kubeconfig)
    dp.node_ip("compute-1"); dp.client_ns; dp.node_ns("compute-1")
    dp.bridged_kubeconfig(node, kc)    # a copy of kc for use inside the node's namespace
    dp.spawn_in_node(node, "kwok-<node>", argv)   # e.g. KWOK with --node-ip=dp.node_ip(node)
    dp.start_runtime(node, node_kubeconfig)       # the stand-in, as system:node:<node>
    dp.start_kube_proxy(node, KubeProxy(binary, kube_proxy_kubeconfig, extra_args=(...)))
                            # supervised: restarted after an exit with the kubelet's back-off
    dp.crash(node, hooks)   # links down, stand-in (its pods) + kube-proxy die, hooks.stop_kubelet
    dp.restore(node, hooks) # links and routes back, stand-in + kube-proxy, hooks.start_kubelet
    dp.partition(node); dp.heal(node)   # cut the node off (data=False: API only) / heal
    dp.rules(node)          # RulesSnapshot(t, node, services={"ns/svc[:port]": {"ip:port"}})
    dp.wait_rules(node, lambda s: ..., interval=0.05, timeout=60)  # first snapshot that holds
    DataPlane.load(state_dir / "dataplane").down()   # also after SIGKILL of whoever built it

Requirements on the control plane: kube-controller-manager with ``--allocate-node-cidrs=true
--cluster-cidr=<CIDR>`` so that every Node has ``spec.podCIDR`` (KWOK then gives each pod an
IP from its node's podCIDR, ``pkg/kwok/controllers/pod_controller.go``; without one it uses
its ``--cidr``, default 10.0.0.1/24, which no route here reaches), and a Service CIDR that
overlaps neither the switch subnet nor the cluster CIDR. KWOK should run with
``--node-ip=<dp.node_ip(node)>``: kube-proxy waits up to 30 s at start for its Node to have
``status.addresses`` (``pkg/proxy/node.go``, ``newNodeManager``), which would delay every
restore. KWOK covered by a partition must run inside the node namespace with
:meth:`DataPlane.bridged_kubeconfig` (:meth:`spawn_in_node`).

Every namespace, process, socket and file is recorded in ``state.json`` (the lab's
:class:`~chaoslab.live.lab.netns.LabState`) before or as it is created; :meth:`down` kills by
PID and start time and deletes the namespaces, which deletes their links and iptables rules.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from chaoslab.errors import LiveError, UserError, located
from chaoslab.live.cluster.dataplane_runtime import POD_DEVICE
from chaoslab.live.cluster.procs import find_marked, marked_env, new_mark
from chaoslab.live.lab import netns
from chaoslab.live.lab.netns import LabError, LabState, Proc, run

__all__ = [
    "API_PORT",
    "CLIENT_IP",
    "DataPlane",
    "DataPlaneError",
    "KubeProxy",
    "NodeHooks",
    "NodeNet",
    "RulesSnapshot",
    "node_networks",
    "parse_rules",
]

#: the switch subnet (nodes NODE_NET.1..., the client NODE_NET.250): kept apart from the
#: lab's, so a lab and the cluster's data plane can exist at the same time
NODE_NET = "10.0.9"
CLIENT_IP = f"{NODE_NET}.250"
#: where the API server appears inside every node namespace (each has its own loopback)
API_PORT = 6443
#: the filter chain the partition fills; hooked first into OUTPUT of each node namespace
PARTITION_CHAIN = "CHAOSLAB-PARTITION"
#: sun_path of struct sockaddr_un is 108 bytes including the NUL (unix(7))
_SUN_PATH_MAX = 107
_HERE = Path(__file__).resolve().parent
#: ``state.info`` key of the host processes being started: mark -> name (`_spawn_host`)
INTENTS = "intents"


class DataPlaneError(LiveError):
    """A data plane step failed (a command, a process that did not come up)."""


@contextlib.contextmanager
def _live() -> Iterator[None]:
    """The lab helpers raise LabError; a user of the cluster sees a LiveError."""
    try:
        yield
    except LabError as exc:
        raise DataPlaneError(str(exc)) from None


@dataclass(frozen=True)
class NodeNet:
    """A simulated node as the data plane needs it: its name and its podCIDR."""

    name: str
    pod_cidr: str


@dataclass(frozen=True)
class KubeProxy:
    """How to run kube-proxy: the binary, its kubeconfig on the host (the data plane points a
    copy at the bridge) and flags beyond those the data plane sets (timers such as
    ``--iptables-min-sync-period`` come from the experiment's parameters)."""

    binary: str
    kubeconfig: str
    extra_args: tuple[str, ...] = ()
    #: the kubelet's crash-loop back-off (initial, cap; seconds) for restarting it when it
    #: exits; None: the catalogue's (``kubelet.container_restart_backoff_initial``, ``_max``)
    restart_backoff: tuple[float, float] | None = None


def _catalogue_backoff() -> tuple[float, float]:
    from chaoslab.live.cluster.config import ClusterConfig

    return ClusterConfig().timers.restart_backoff_s


class NodeHooks(Protocol):
    """The control plane's part of a node fault: its kubelet stand-in (KWOK)."""

    def stop_kubelet(self, node: str) -> None: ...

    def start_kubelet(self, node: str) -> None: ...


@dataclass(frozen=True)
class RulesSnapshot:
    """kube-proxy's NAT rules in one node namespace at CLOCK_MONOTONIC ``t`` (taken just
    before ``iptables-save`` ran): the endpoints each Service's ``KUBE-SVC-`` chain jumps to,
    and for ``externalTrafficPolicy: Local`` its ``KUBE-SVL-`` chain."""

    t: float
    node: str
    services: Mapping[str, frozenset[str]] = field(default_factory=dict)
    local: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def endpoints(self, service: str) -> frozenset[str]:
        """``ip:port`` of every endpoint of ``namespace/name[:port]`` (empty: none/absent)."""
        return self.services.get(service, frozenset())


def node_networks(kubeconfig: str | Path) -> list[NodeNet]:
    """Every Node with its ``spec.podCIDR``, sorted by name; a LiveError names the flags the
    controller-manager needs when a Node has none."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    try:
        items = api.list_node(_request_timeout=10).items
    except Exception as exc:
        raise DataPlaneError(f"listing nodes through {kubeconfig}: {exc}") from None
    found = [(_name(n), (n.spec.pod_cidr if n.spec else None) or "") for n in items]
    missing = [name for name, cidr in found if not cidr]
    if missing:
        raise DataPlaneError(
            f"node {missing[0]} has no spec.podCIDR: run kube-controller-manager with "
            "--allocate-node-cidrs=true --cluster-cidr=<CIDR> (e.g. 10.244.0.0/16)"
        )
    return sorted((NodeNet(name, cidr) for name, cidr in found), key=lambda n: n.name)


def _name(obj: Any) -> str:
    return str(obj.metadata.name) if obj.metadata else ""


def _apiserver(kubeconfig: Mapping[str, Any], path: Path) -> tuple[str, int]:
    """Host and port of the first cluster's server; it must be on host loopback."""
    key = "clusters[0].cluster.server"
    try:
        url = urlsplit(kubeconfig["clusters"][0]["cluster"]["server"])
        host, port = url.hostname or "", url.port or 443
    except (KeyError, IndexError, TypeError, ValueError):
        raise UserError(located(str(path), None, key, "missing or not a URL")) from None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        msg = f"{host} is not loopback; the data plane only bridges to an API server there"
        raise UserError(located(str(path), None, key, msg))
    return host, port


def _load_kubeconfig(source: Path) -> dict[str, Any]:
    import yaml

    try:
        kc = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{source}: {exc}") from None
    if not isinstance(kc, dict):
        raise UserError(f"{source}: not a kubeconfig")
    return kc


def _pointed_kubeconfig(source: Path, server: str) -> dict[str, Any]:
    """The source kubeconfig pointed at ``server``, with file references made absolute."""
    kc = _load_kubeconfig(source)
    base = source.resolve().parent
    for section, keys in (
        ("clusters", ("certificate-authority",)),
        ("users", ("client-certificate", "client-key", "tokenFile")),
    ):
        for entry in kc.get(section) or []:
            body = entry.get(section[:-1]) or {}
            for k in keys:
                if k in body and not os.path.isabs(body[k]):
                    body[k] = str(base / body[k])
    for c in kc.get("clusters") or []:
        c["cluster"]["server"] = server
    return kc


def parse_rules(text: str) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Endpoints per Service from ``iptables-save -t nat`` output, following kube-proxy's
    chains (``pkg/proxy/iptables/proxier.go``): a service chain ``KUBE-SVC-…`` (or
    ``KUBE-SVL-…``) jumps to endpoint chains ``KUBE-SEP-…``, each DNATing to one endpoint.
    Stale ``KUBE-SEP-`` chains no service chain jumps to are not endpoints."""
    jumps: dict[str, list[str]] = {}
    dnat: dict[str, str] = {}
    names: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("-A "):
            continue
        tok = shlex.split(line)
        chain, target = tok[1], _opt(tok, "-j")
        comment = _opt(tok, "--comment")
        if chain.startswith("KUBE-SEP-"):
            if target == "DNAT":
                dnat[chain] = _opt(tok, "--to-destination")
            names.setdefault(chain, comment)
        elif chain.startswith(("KUBE-SVC-", "KUBE-SVL-")) and target.startswith("KUBE-SEP-"):
            jumps.setdefault(chain, []).append(target)
        if target.startswith("KUBE-SVC-") and comment.endswith(" cluster IP"):
            names[target] = comment.removesuffix(" cluster IP")
    services: dict[str, frozenset[str]] = {}
    local: dict[str, frozenset[str]] = {}
    for chain, seps in jumps.items():
        name = names.get(chain) or names.get(seps[0], chain)
        eps = frozenset(dnat[s] for s in seps if s in dnat)
        (services if chain.startswith("KUBE-SVC-") else local)[name] = eps
    return services, local


def _opt(tok: Sequence[str], flag: str) -> str:
    with contextlib.suppress(ValueError, IndexError):
        return tok[tok.index(flag) + 1]
    return ""


def _check_nodes(nodes: Sequence[NodeNet]) -> None:
    switch = ipaddress.ip_network(f"{NODE_NET}.0/24")
    seen: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [switch]
    if len({n.name for n in nodes}) != len(nodes) or not nodes:
        raise UserError("data plane: node names must be unique and at least one node given")
    if len(nodes) > 249:
        raise UserError("data plane: at most 249 nodes fit on the switch subnet")
    for n in nodes:
        try:
            net = ipaddress.ip_network(n.pod_cidr)
        except ValueError:
            raise UserError(f"node {n.name}: spec.podCIDR {n.pod_cidr!r} is not a CIDR") from None
        clash = next((s for s in seen if net.overlaps(s)), None)
        if clash is not None:
            raise UserError(f"node {n.name}: podCIDR {net} overlaps {clash}")
        seen.append(net)


class DataPlane:
    """The namespaces and processes of one cluster's data plane (see the module docstring)."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self._host: dict[int, subprocess.Popen[bytes]] = {}

    # -- building -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        state_dir: str | Path,
        name: str,
        nodes: Sequence[NodeNet],
        *,
        kubeconfig: str | Path | None = None,
        apiserver: tuple[str, int] | None = None,
    ) -> DataPlane:
        """Build the data plane; the API server is the kubeconfig's (or ``apiserver``, for a
        data plane without one). On failure what was built is torn down again."""
        _check_nodes(nodes)
        d = Path(state_dir).resolve()
        if (d / "state.json").exists():
            raise DataPlaneError(f"a data plane is already recorded in {d}; tear it down first")
        longest = d / f"api-n{len(nodes)}.sock"
        if len(str(longest).encode()) > _SUN_PATH_MAX:
            raise UserError(
                f"{d}: too long for the bridge's unix sockets ({longest} is over "
                f"{_SUN_PATH_MAX} bytes, unix(7)); use a shorter state folder"
            )
        api = apiserver
        if kubeconfig is not None:
            api = _apiserver(_load_kubeconfig(Path(kubeconfig)), Path(kubeconfig))
        elif api is None:
            raise UserError("data plane: give the kubeconfig of the API server (or its address)")
        d.mkdir(parents=True, exist_ok=True)
        st = LabState(name=name, prefix=f"dp-{name}", design="cluster-dataplane", dir=str(d))
        st.info = {
            "nodes": {
                n.name: {"role": f"n{i}", "ip": f"{NODE_NET}.{i}", "pod_cidr": n.pod_cidr}
                for i, n in enumerate(nodes, start=1)
            },
            "api": list(api),
            "runtime": {},
            "kube_proxy": {},
            "partitioned": [],
            "crashed": [],
        }
        st.save()
        dp = cls(st)
        try:
            with _live():
                dp._build()
        except BaseException:
            dp.down()
            raise
        return dp

    @classmethod
    def load(cls, state_dir: str | Path) -> DataPlane:
        path = Path(state_dir) / "state.json"
        try:
            return cls(LabState.load(path))
        except FileNotFoundError:
            raise DataPlaneError(f"no data plane is recorded in {state_dir}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise DataPlaneError(f"{path}: unreadable ({exc})") from None

    def _build(self) -> None:
        st = self.state
        st.add_ns("sw")
        ports = [self._attach(node) for node in self.nodes]
        st.add_ns("client")
        st.veth("sw", "client", "client", "eth0")
        st.ip("client", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        st.bridge("sw", "br0", [*ports, "client"])
        for node in self.nodes:
            self._routes(node)
            self._iptables(node, self._fresh_tables(node), noflush=False)
        self._start_bridges()
        st.status = "up"
        st.save()

    def _attach(self, node: str) -> str:
        """The node's namespace on the switch: eth0 with the node IP, pods0 for pod IPs."""
        st, role = self.state, self._role(node)
        st.add_ns(role)
        st.veth("sw", role, role, "eth0")
        st.ip(role, "addr", "add", f"{self.node_ip(node)}/24", "dev", "eth0")
        # pod IPs sit on one end of a veth whose peer holds none: an IP of the podCIDR that no
        # pod holds gets no ARP answer, as on a bridge CNI (no dummy driver in every kernel)
        st.ip(role, "link", "add", POD_DEVICE, "type", "veth", "peer", "name", f"{POD_DEVICE}p")
        st.ip(role, "link", "set", POD_DEVICE, "up")
        st.ip(role, "link", "set", f"{POD_DEVICE}p", "up")
        st.sysctl(role, "net.ipv4.ip_forward", 1)  # kube-proxy DNATs to pods on other nodes
        return role

    def _routes(self, node: str) -> None:
        """Its own podCIDR to pods0 (an IP no pod holds is not answered), every other node's via
        that node. Idempotent: ``ip link set down`` deletes routes through the link."""
        role = self._role(node)
        self.state.ip(role, "route", "replace", self.pod_cidr(node), "dev", POD_DEVICE)
        for other in self.nodes:
            if other != node:
                via = self.node_ip(other)
                self.state.ip(
                    role, "route", "replace", self.pod_cidr(other), "via", via, "dev", "eth0"
                )

    def _socket(self, node: str) -> str:
        return str(Path(self.state.dir) / f"api-{self._role(node)}.sock")

    def _start_bridges(self) -> None:
        """One host relay (unix socket per node -> the API server on host loopback) and, in
        every node namespace, 127.0.0.1:API_PORT -> that node's socket."""
        host, port = self.state.info["api"]
        listen = [a for n in self.nodes for a in ("--listen", f"unix:{self._socket(n)}")]
        self._spawn_host(
            "bridge-host",
            self._python("dataplane_bridge", *listen, "--connect", f"tcp:{host}:{port}"),
        )
        self._wait(
            "the host end of the API bridge",
            lambda: all(os.path.exists(self._socket(n)) for n in self.nodes),
        )
        for n in self.nodes:
            self.state.spawn(
                f"bridge-{self._role(n)}",
                self._role(n),
                self._python(
                    "dataplane_bridge",
                    "--listen",
                    f"tcp:127.0.0.1:{API_PORT}",
                    "--connect",
                    f"unix:{self._socket(n)}",
                ),
            )
        self._wait(
            "the API bridge in every node namespace",
            lambda: all(self._listening(n, API_PORT) for n in self.nodes),
        )

    def bridged_kubeconfig(self, node: str, source: str | Path) -> str:
        """A copy of ``source`` whose server is the bridge inside the node's namespace
        (https://127.0.0.1:6443, a SAN of the serving certificate); its path."""
        import yaml

        src = Path(source)
        kc = _pointed_kubeconfig(src, f"https://127.0.0.1:{API_PORT}")
        path = Path(self.state.dir) / f"{self._role(node)}-{src.stem}.kubeconfig"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(kc))
        tmp.chmod(0o600)  # it carries the client key
        os.replace(tmp, path)
        return str(path)

    # -- what is where --------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return list(self.state.info["nodes"])

    def _node(self, node: str) -> dict[str, str]:
        try:
            info: dict[str, str] = self.state.info["nodes"][node]
        except KeyError:
            raise UserError(
                f"data plane: no node {node!r} (nodes: {', '.join(self.nodes)})"
            ) from None
        return info

    def _role(self, node: str) -> str:
        return self._node(node)["role"]

    def node_ip(self, node: str) -> str:
        return self._node(node)["ip"]

    def pod_cidr(self, node: str) -> str:
        return self._node(node)["pod_cidr"]

    def node_ns(self, node: str) -> str:
        return self.state.ns(self._role(node))

    @property
    def client_ns(self) -> str:
        return self.state.ns("client")

    # -- processes ------------------------------------------------------------------------

    def _python(self, module: str, *args: str) -> list[str]:
        """Run one of the helper modules as a script: ``-P`` keeps its folder off sys.path and
        no package ``__init__`` runs, so a helper does not import pandas and the cluster
        code (22 MB and 0.8 s per relay instead of 160 MB and 5 s, measured here)."""
        return [sys.executable, "-P", "-u", str(_HERE / f"{module}.py"), *args]

    def _spawn_host(self, name: str, argv: Sequence[str]) -> Proc:
        """A process in the host namespace, recorded like the lab's so that down kills it.
        No namespace holds it, so its intent (a mark in its environment) is saved before it
        starts: a kill before its PID is saved leaves the mark, `down` finds it by."""
        log = Path(self.state.dir) / f"{name}.log"
        mark = new_mark()
        self.state.info.setdefault(INTENTS, {})[mark] = name
        self.state.save()
        fh: IO[bytes] = log.open("ab")
        try:
            p = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=marked_env(mark),
            )
        finally:
            fh.close()
        # the start time identifies the PID from now on (netns kills only the process it started)
        proc = Proc(name, "", p.pid, netns._start_time(p.pid), list(argv), str(log))
        self.state.procs[name] = proc
        del self.state.info[INTENTS][mark]
        self.state.save()
        self._host[p.pid] = p
        return proc

    def _unrecorded(self) -> dict[str, Proc]:
        """Host processes started for an intent whose PID was never saved, by their mark
        (with the start time, which the kill checks again)."""
        return {
            f"{name}@{p.pid}": Proc(name, "", p.pid, p.start, [], "")
            for mark, name in self.state.info.get(INTENTS, {}).items()
            for p in find_marked(mark)
        }

    def spawn_in_node(
        self, node: str, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> Proc:
        """Start a process inside the node's namespace (KWOK, say); down kills it."""
        with _live():
            return self.state.spawn(name, self._role(node), argv, env=env)

    def start_runtime(
        self, node: str, kubeconfig: str | Path | None = None, static_pods: Sequence[str] = ()
    ) -> Proc:
        """The runtime stand-in: with a kubeconfig (the node's own, ``system:node:<node>``) it
        watches the node's pods; ``static_pods`` (``NAME=IP:PORT``) it serves from start."""
        args = ["--node", node, *(a for p in static_pods for a in ("--pod", p))]
        if kubeconfig is not None:
            args += ["--kubeconfig", self.bridged_kubeconfig(node, kubeconfig)]
        src = str(Path(kubeconfig).resolve()) if kubeconfig is not None else None
        self.state.info["runtime"][node] = {"kubeconfig": src, "static_pods": list(static_pods)}
        role = self._role(node)
        with _live():
            return self.state.spawn(
                f"runtime-{role}", role, self._python("dataplane_runtime", *args)
            )

    def start_kube_proxy(self, node: str, kp: KubeProxy) -> Proc:
        """The real kube-proxy in iptables mode, as this node, through the node's bridge,
        under a supervisor that restarts it when it exits, as a kubelet restarts its pod
        (``dataplane_supervise``: the crash-loop back-off, each start and exit logged)."""
        backoff = kp.restart_backoff or _catalogue_backoff()
        argv = [
            kp.binary,
            f"--kubeconfig={self.bridged_kubeconfig(node, kp.kubeconfig)}",
            f"--hostname-override={node}",
            "--proxy-mode=iptables",
            # nf_conntrack_max is global (init namespace only): kube-proxy must not set it
            "--conntrack-max-per-core=0",
            f"--bind-address={self.node_ip(node)}",  # the node IP, without reading the Node
            f"--nodeport-addresses={NODE_NET}.0/24",  # NodePorts on the switch address only
            *kp.extra_args,
        ]
        self.state.info["kube_proxy"][node] = {
            "binary": kp.binary,
            "kubeconfig": str(Path(kp.kubeconfig).resolve()),
            "extra_args": list(kp.extra_args),
            "restart_backoff": list(backoff),
        }
        role = self._role(node)
        supervised = self._python(
            "dataplane_supervise", "--backoff", *(f"{b:g}" for b in backoff), "--", *argv
        )
        with _live():
            return self.state.spawn(f"kube-proxy-{role}", role, supervised)

    def _restart(self, node: str) -> None:
        """What was started on the node before it crashed, started again."""
        rt = self.state.info["runtime"].get(node)
        if rt is not None:
            self.start_runtime(node, rt["kubeconfig"], rt["static_pods"])
        kp = self.state.info["kube_proxy"].get(node)
        if kp is not None:
            backoff = kp.get("restart_backoff")
            self.start_kube_proxy(
                node,
                KubeProxy(
                    kp["binary"],
                    kp["kubeconfig"],
                    tuple(kp["extra_args"]),
                    (float(backoff[0]), float(backoff[1])) if backoff else None,
                ),
            )

    def _listening(self, node: str, port: int) -> bool:
        out = run(
            ["ip", "netns", "exec", self.node_ns(node), "ss", "-Hltn", f"sport = :{port}"],
            check=False,
        )
        return bool(out.strip())

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self.state.procs.values() if not p.alive()]
            if dead or time.monotonic() > deadline:
                why = "; ".join(f"{p.name} exited (log {p.log})" for p in dead)
                raise DataPlaneError(f"{what} did not come up" + (f": {why}" if why else ""))
            time.sleep(0.05)

    # -- faults -----------------------------------------------------------------------------

    def _links(self, node: str, up: bool) -> None:
        state = "up" if up else "down"
        self.state.ip(self._role(node), "link", "set", "eth0", state)
        self.state.ip("sw", "link", "set", self._role(node), state)

    def _node_procs(self, node: str) -> list[str]:
        role = self._role(node)
        return [n for n in (f"runtime-{role}", f"kube-proxy-{role}") if n in self.state.procs]

    def crash(self, node: str, hooks: NodeHooks | None = None) -> float:
        """The node dies: its links go down, its stand-in (and so its pod servers) and
        kube-proxy get SIGKILL, then the control plane stops its kubelet stand-in. Returns
        the CLOCK_MONOTONIC instant just before the first step."""
        t = time.monotonic()
        with _live():
            self._links(node, up=False)
            for name in self._node_procs(node):
                self.state.stop(name, signal.SIGKILL)
        if hooks is not None:
            hooks.stop_kubelet(node)
        self._mark("crashed", node, True)
        return t

    def restore(self, node: str, hooks: NodeHooks | None = None) -> float:
        """The node boots again: links and routes, empty iptables and conntrack tables, then
        stand-in, kube-proxy and kubelet stand-in. Returns the instant before the first step."""
        t = time.monotonic()
        with _live():
            self._links(node, up=True)
            self._routes(node)
            # a rebooted node has no NAT rules and no conntrack entries until kube-proxy syncs
            self._iptables(node, self._fresh_tables(node), noflush=False)
            run(["ip", "netns", "exec", self.node_ns(node), "conntrack", "-F"], check=False)
        self._restart(node)
        if hooks is not None:
            hooks.start_kubelet(node)
        self._mark("crashed", node, False)
        return t

    def partition(self, node: str, *, data: bool = True) -> float:
        """Cut the node off: drop every packet between its processes and its end of the API
        bridge and, with ``data`` (the model's node-partition: "cut a node off the network
        and the API server"), every packet in or out of its ``eth0``, so its pods are
        unreachable and connections through it hang as behind a dead link (not reset).
        ``data=False`` cuts the API path only. Returns the instant just before the rules
        went in (the data rules first: a client sees the cut before the controllers do)."""
        rules = "".join(
            f"-A {PARTITION_CHAIN} -o lo -p tcp --{d} {API_PORT} -j DROP\n"
            for d in ("dport", "sport")
        )
        t = time.monotonic()
        if data:
            self._iptables(node, _raw_partition(cut=True))
        self._iptables(node, f"*filter\n:{PARTITION_CHAIN} - [0:0]\n{rules}COMMIT\n")
        self._mark("partitioned", node, True)
        return t

    def heal(self, node: str) -> float:
        t = time.monotonic()
        self._iptables(node, f"*filter\n:{PARTITION_CHAIN} - [0:0]\nCOMMIT\n")  # flushes it
        self._iptables(node, _raw_partition(cut=False))
        self._mark("partitioned", node, False)
        return t

    def _fresh_tables(self, node: str) -> str:
        """The tables of a node that just booted: empty but for the partition chain (still
        filled if the node is partitioned), hooked first into OUTPUT."""
        drop = "".join(
            f"-A {PARTITION_CHAIN} -o lo -p tcp --{d} {API_PORT} -j DROP\n"
            for d in ("dport", "sport")
            if node in self.state.info["partitioned"]
        )
        chain = f":{PARTITION_CHAIN} - [0:0]\n-A OUTPUT -j {PARTITION_CHAIN}\n"
        return f"*nat\nCOMMIT\n*mangle\nCOMMIT\n*filter\n{chain}{drop}COMMIT\n"

    def _iptables(self, node: str, batch: str, *, noflush: bool = True) -> None:
        """One atomic ``iptables-restore`` batch in the node's namespace. With ``--noflush``
        only the chains named are replaced (kube-proxy writes only its own KUBE-* chains
        that way, so ours survive its syncs); without, the tables named are reset."""
        argv = ["ip", "netns", "exec", self.node_ns(node), "iptables-restore", "-w", "5"]
        argv += ["--noflush"] if noflush else []
        r = subprocess.run(
            argv, input=batch, capture_output=True, text=True, timeout=20, check=False
        )
        if r.returncode != 0:
            raise DataPlaneError(f"iptables-restore in {self.node_ns(node)}: {r.stderr.strip()}")

    def _mark(self, key: str, node: str, on: bool) -> None:
        marked = [n for n in self.state.info[key] if n != node]
        self.state.info[key] = [*marked, node] if on else marked
        self.state.save()

    # -- observing --------------------------------------------------------------------------

    def rules(self, node: str) -> RulesSnapshot:
        """kube-proxy's NAT rules in the node namespace now (``iptables-save -t nat``)."""
        t = time.monotonic()
        with _live():
            text = run(["ip", "netns", "exec", self.node_ns(node), "iptables-save", "-t", "nat"])
        services, local = parse_rules(text)
        return RulesSnapshot(t, node, services, local)

    def wait_rules(
        self,
        node: str,
        until: Callable[[RulesSnapshot], bool],
        *,
        interval: float,
        timeout: float,
    ) -> RulesSnapshot:
        """Read the node's rules every ``interval`` seconds until ``until(snapshot)`` holds;
        return that first snapshot (the change happened within one interval and one read
        before its ``t``). A DataPlaneError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.rules(node)
            if until(snap):
                return snap
            if snap.t > deadline:
                raise DataPlaneError(
                    f"{node}: kube-proxy's rules did not change within {timeout:g} s"
                )
            time.sleep(interval)

    def status(self) -> dict[str, str]:
        """Each namespace (present/missing) and process (running/exited) of the data plane."""
        existing = set(run(["ip", "netns", "list"], check=False).split())
        out = {ns: "present" if ns in existing else "missing" for ns in self.state.namespaces}
        out.update({n: "running" if p.alive() else "exited" for n, p in self.state.procs.items()})
        return out

    def down(self) -> list[str]:
        """Kill every process (by PID and start time), delete the namespaces (their links,
        addresses and iptables rules go with them), the sockets and kubeconfig copies.
        Idempotent; notes of what could not be undone."""
        self.state.procs.update(self._unrecorded())  # killed with the others, by PID
        notes = netns.cleanup(self.state)
        for p in self._host.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)  # reap the host relay
        # the sockets, and the kubeconfig copies (they name client keys); the logs stay
        for f in [
            *Path(self.state.dir).glob("api-*.sock"),
            *Path(self.state.dir).glob("*.kubeconfig"),
        ]:
            f.unlink(missing_ok=True)
        return notes


def _raw_partition(*, cut: bool) -> str:
    """The raw table of a node namespace: nothing but our hooks (kube-proxy never writes
    raw), dropping all of ``eth0``'s traffic when ``cut``. Declaring the built-in chains
    flushes them even with ``--noflush``, so the batch is the same on every call."""
    drop = (
        f"-A {PARTITION_CHAIN} -i eth0 -j DROP\n-A {PARTITION_CHAIN} -o eth0 -j DROP\n"
        if cut
        else ""
    )
    hooks = f"-A PREROUTING -j {PARTITION_CHAIN}\n-A OUTPUT -j {PARTITION_CHAIN}\n"
    return (
        f"*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:{PARTITION_CHAIN} - [0:0]\n"
        f"{hooks}{drop}COMMIT\n"
    )
