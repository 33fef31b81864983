"""The cluster's data plane: node namespaces on a switch, routes between podCIDRs, the unix
socket bridge to host loopback, pod servers, faults, kube-proxy's rules, and teardown.

Network safety: every probe runs inside a namespace these tests created (``ip netns exec``)
and goes to an address inside them, or to 127.0.0.1 inside a node namespace (the bridge),
which ends at a server these tests run on host loopback. Nothing is sent from the host
namespace to a pod, node or Service address.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from chaoslab.errors import LiveError, UserError
from chaoslab.live.cluster.dataplane import (
    API_PORT,
    DataPlane,
    KubeProxy,
    NodeNet,
    node_networks,
    parse_rules,
)
from chaoslab.live.lab.netns import namespaces_with_prefix, pid_alive, run

pytestmark = pytest.mark.cluster

NODES = [
    NodeNet("controller-1", "10.244.1.0/24"),
    NodeNet("controller-2", "10.244.2.0/24"),
    NodeNet("compute-1", "10.244.3.0/24"),
]


def _netns_missing() -> str | None:
    if os.geteuid() != 0:
        return "the data plane needs root (network namespaces)"
    missing = [b for b in ("ip", "iptables-restore", "iptables-save", "ss") if not shutil.which(b)]
    return f"not installed: {', '.join(missing)} (run ./install.sh)" if missing else None


needs_netns = pytest.mark.skipif(_netns_missing() is not None, reason=str(_netns_missing()))


# -- helpers -----------------------------------------------------------------------------------


def in_ns(ns: str, code: str, timeout: float = 10.0) -> str:
    """Run Python inside a namespace; its stdout (the tests print one word or line)."""
    r = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def http_get(ns: str, host: str, port: int, timeout: float = 1.0) -> str:
    """The body of ``GET /`` from inside ``ns``, or the name of the error."""
    return in_ns(
        ns,
        f"""
        import http.client
        c = http.client.HTTPConnection({host!r}, {port}, timeout={timeout})
        try:
            c.request("GET", "/", headers={{"Connection": "close"}})
            print(c.getresponse().read().decode().strip())
        except OSError as e:
            print(type(e).__name__)
        """,
    )


def exchange(ns: str, port: int, timeout: float = 1.0) -> str:
    """Send a line to 127.0.0.1:port inside ``ns``; the reply, or the error's name."""
    return in_ns(
        ns,
        f"""
        import socket
        try:
            s = socket.create_connection(("127.0.0.1", {port}), timeout={timeout})
            s.sendall(b"ping\\n")
            print(s.makefile().readline().strip())
        except OSError as e:
            print(type(e).__name__)
        """,
    )


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline()
        self.wfile.write(b"host-loopback " + line)


@pytest.fixture
def fake_apiserver() -> Iterator[tuple[str, int]]:
    """A TCP server on host loopback standing where the API server will be."""
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host, port = srv.server_address[:2]
    yield str(host), int(port)
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def state_dir(_reaper: Path) -> Iterator[Path]:
    """A short private folder (unix socket paths are limited to 107 bytes) in the session's
    folder, which the reaper watches; afterwards no namespace or process of the data planes
    built in it may be left."""
    d = Path(tempfile.mkdtemp(prefix="dp", dir=_reaper))
    yield d
    leftovers: list[str] = []
    for st in d.rglob("state.json"):
        dp = DataPlane.load(st.parent)
        leftovers += [n for n, s in dp.status().items() if s in ("present", "running")]
        dp.down()
    shutil.rmtree(d, ignore_errors=True)
    assert not leftovers, f"left behind: {leftovers}"


def _name() -> str:
    return f"t{uuid.uuid4().hex[:6]}"


@pytest.fixture
def plane(state_dir: Path, fake_apiserver: tuple[str, int]) -> Iterator[DataPlane]:
    dp = DataPlane.create(state_dir / "dp", _name(), NODES, apiserver=fake_apiserver)
    try:
        yield dp
    finally:
        dp.down()


# -- without a control plane -----------------------------------------------------------------


@needs_netns
def test_each_node_routes_the_others_podcidrs_and_nothing_else(plane: DataPlane) -> None:
    for node in NODES:
        out = plane.state.ip(plane._role(node.name), "-4", "route", "show")
        routes = [r.strip() for r in out.splitlines()]
        dests = sorted(r.split()[0] for r in routes)
        assert dests == sorted(["10.0.9.0/24", *(n.pod_cidr for n in NODES)])
        for other in NODES:
            if other is not node:
                assert f"{other.pod_cidr} via {plane.node_ip(other.name)} dev eth0" in routes
    for ns in plane.state.namespaces:
        for outside in ("192.0.2.1", "8.8.8.8", "10.96.0.1"):  # `ip route get` sends nothing
            r = subprocess.run(
                ["ip", "-n", ns, "route", "get", outside], capture_output=True, text=True
            )
            assert r.returncode != 0 and "unreachable" in r.stderr, (ns, outside, r.stdout)


@needs_netns
def test_the_bridge_reaches_host_loopback_and_a_partition_cuts_the_node_off(
    plane: DataPlane,
) -> None:
    n1, n2 = NODES[0].name, NODES[1].name
    assert exchange(plane.node_ns(n1), API_PORT) == "host-loopback ping"
    plane.start_runtime(n1, static_pods=["app-a=10.244.1.10:8080"])
    plane._wait("pod", lambda: plane._listening(n1, 8080))
    plane.partition(n1)
    assert exchange(plane.node_ns(n1), API_PORT, timeout=0.5) == "TimeoutError"
    assert exchange(plane.node_ns(n2), API_PORT) == "host-loopback ping"
    # the model's node-partition: the node's pods are out of reach too (dropped, not reset)
    assert http_get(plane.node_ns(n2), "10.244.1.10", 8080, 0.5) == "TimeoutError"
    plane.partition(n1)  # idempotent
    plane.heal(n1)
    assert exchange(plane.node_ns(n1), API_PORT) == "host-loopback ping"
    assert http_get(plane.node_ns(n2), "10.244.1.10", 8080) == "app-a"
    # data=False: only the API path, the node keeps serving its pods
    plane.partition(n1, data=False)
    assert exchange(plane.node_ns(n1), API_PORT, timeout=0.5) == "TimeoutError"
    assert http_get(plane.node_ns(n2), "10.244.1.10", 8080) == "app-a"
    plane.heal(n1)


@needs_netns
def test_pod_servers_are_reached_through_the_podcidr_routes_and_a_nodes_dnat(
    plane: DataPlane,
) -> None:
    c1 = NODES[2].name
    plane.start_runtime(c1, static_pods=["app-b=10.244.3.10:8080", "app-c=10.244.3.11:8080,9090"])
    plane._wait("pods", lambda: plane._listening(c1, 9090))
    for node in NODES[:2]:
        assert http_get(plane.node_ns(node.name), "10.244.3.10", 8080) == "app-b"
        assert http_get(plane.node_ns(node.name), "10.244.3.11", 9090) == "app-c"
    # an IP of the podCIDR that no pod holds is dropped, as on a node with no such pod
    assert http_get(plane.node_ns(NODES[0].name), "10.244.3.99", 8080, 0.3) == "TimeoutError"
    # the client sits outside the cluster: it has no route to pods, only to the nodes
    r = subprocess.run(
        ["ip", "-n", plane.client_ns, "route", "get", "10.244.3.10"], capture_output=True
    )
    assert r.returncode != 0
    # the client reaches the nodes: nothing listens on a node IP yet, so the node answers RST
    for node in NODES:
        got = in_ns(
            plane.client_ns,
            f"""
            import socket
            try:
                socket.create_connection(({plane.node_ip(node.name)!r}, 30080), 1)
            except OSError as e:
                print(type(e).__name__)
            """,
        )
        assert got == "ConnectionRefusedError"
    # through a node, DNATed and masqueraded as kube-proxy does, the client reaches a pod on
    # another node, and the reply finds its way back
    n1 = NODES[0].name
    plane._iptables(
        n1,
        "*nat\n-A PREROUTING -p tcp --dport 30080 -j DNAT --to-destination 10.244.3.11:9090\n"
        "-A POSTROUTING -d 10.244.3.11/32 -j MASQUERADE\nCOMMIT\n",
    )
    assert http_get(plane.client_ns, plane.node_ip(n1), 30080) == "app-c"


@needs_netns
def test_a_crash_stops_pods_and_links_and_a_restore_brings_them_back(plane: DataPlane) -> None:
    c1, n1 = NODES[2].name, NODES[0].name
    proc = plane.start_runtime(c1, static_pods=["app-b=10.244.3.10:8080"])
    plane._wait("pod", lambda: plane._listening(c1, 8080))

    class Hooks:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def stop_kubelet(self, node: str) -> None:
            self.calls.append(f"stop {node}")

        def start_kubelet(self, node: str) -> None:
            self.calls.append(f"start {node}")

    hooks = Hooks()
    plane._iptables(c1, "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n")  # as kube-proxy left it
    plane.partition(c1, data=False)  # cut off from the API server, serving
    plane.crash(c1, hooks)
    assert not pid_alive(proc.pid, proc.start)
    assert "state DOWN" in plane.state.ip("sw", "link", "show", plane._role(c1))
    assert http_get(plane.node_ns(n1), "10.244.3.10", 8080, 0.3) == "TimeoutError"
    plane.restore(c1, hooks)
    plane._wait("pod again", lambda: plane._listening(c1, 8080))
    assert http_get(plane.node_ns(n1), "10.244.3.10", 8080) == "app-b"
    assert hooks.calls == [f"stop {c1}", f"start {c1}"]
    assert plane.state.info["crashed"] == []
    # it booted with empty NAT rules, and it is still cut off from the API server
    assert "KUBE-SERVICES" not in run(["ip", "netns", "exec", plane.node_ns(c1), "iptables-save"])
    assert exchange(plane.node_ns(c1), API_PORT, timeout=0.5) == "TimeoutError"
    plane.heal(c1)
    assert exchange(plane.node_ns(c1), API_PORT) == "host-loopback ping"


@needs_netns
def test_down_after_sigkill_of_the_builder_leaves_nothing(
    state_dir: Path, fake_apiserver: tuple[str, int]
) -> None:
    name = _name()
    code = f"""
        import os, signal
        from chaoslab.live.cluster.dataplane import DataPlane, NodeNet
        dp = DataPlane.create({str(state_dir / "k")!r}, {name!r},
                              [NodeNet("a", "10.244.1.0/24"), NodeNet("b", "10.244.2.0/24")],
                              apiserver={fake_apiserver!r})
        dp.start_runtime("a", static_pods=["p=10.244.1.5:8080"])
        os.kill(os.getpid(), signal.SIGKILL)
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=60)
    dp = DataPlane.load(state_dir / "k")
    pids = [p.pid for p in dp.state.procs.values() if p.alive()]
    assert len(pids) == 4  # host relay, two node relays, the stand-in: orphaned, running
    assert len(namespaces_with_prefix(dp.state.prefix)) == 4
    assert dp.down() == []
    assert namespaces_with_prefix(dp.state.prefix) == []
    assert not any(pid_alive(p) for p in pids)
    assert list((state_dir / "k").glob("*.sock")) == []
    DataPlane.create(state_dir / "k", name, NODES[:1], apiserver=fake_apiserver).down()


@needs_netns
def test_rules_read_back_from_the_kernel_and_wait_rules_waits_for_the_change(
    plane: DataPlane,
) -> None:
    n1 = NODES[0].name
    svc = {"demo/web:http": ["10.244.1.10:8080", "10.244.2.10:8080"]}
    batch = _kube_proxy_nat(svc, ["10.244.3.10:8080"]).replace(
        "*nat\n", "*nat\n:KUBE-MARK-MASQ - [0:0]\n"
    )
    with pytest.raises(LiveError, match="did not change"):
        plane.wait_rules(n1, lambda s: bool(s.services), interval=0.05, timeout=0.3)
    threading.Timer(0.5, plane._iptables, (n1, batch)).start()
    t0 = time.monotonic()
    snap = plane.wait_rules(n1, lambda s: bool(s.services), interval=0.05, timeout=20)
    assert snap.t > t0 and snap.node == n1
    assert snap.services == {"demo/web:http": frozenset(svc["demo/web:http"])}
    assert plane.rules(NODES[1].name).services == {}  # each node has its own tables


@needs_netns
def test_a_second_create_on_the_same_state_refuses(plane: DataPlane) -> None:
    with pytest.raises(LiveError, match="already recorded"):
        DataPlane.create(plane.state.dir, "other", NODES, apiserver=("127.0.0.1", 1))


def test_bad_layouts_are_refused_with_one_line() -> None:
    with pytest.raises(UserError, match="overlaps"):
        DataPlane.create(
            "/nonexistent", "x", [NodeNet("a", "10.0.9.0/25")], apiserver=("127.0.0.1", 1)
        )
    with pytest.raises(UserError, match="not a CIDR"):
        DataPlane.create(
            "/nonexistent", "x", [NodeNet("a", "10.244.1/24")], apiserver=("127.0.0.1", 1)
        )
    with pytest.raises(UserError, match="unique"):
        DataPlane.create("/nonexistent", "x", [NODES[0], NODES[0]], apiserver=("127.0.0.1", 1))


def test_a_state_folder_too_long_for_unix_sockets_is_refused_before_anything_is_built(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("x" * 90)
    with pytest.raises(UserError, match="too long for the bridge's unix sockets"):
        DataPlane.create(deep, "x", NODES, apiserver=("127.0.0.1", 1))
    assert not deep.exists()


def test_a_kubeconfig_whose_server_is_not_loopback_is_refused(tmp_path: Path) -> None:
    kc = tmp_path / "kc.yaml"
    kc.write_text("clusters:\n- name: c\n  cluster:\n    server: https://10.1.2.3:6443\n")
    with pytest.raises(
        UserError, match=r"kc.yaml: clusters\[0\].cluster.server: 10.1.2.3 is not loopback"
    ):
        DataPlane.create(tmp_path / "s", "x", NODES, kubeconfig=kc)


# -- kube-proxy's rules, parsed ----------------------------------------------------------------


def _kube_proxy_nat(services: dict[str, list[str]], stale: list[str]) -> str:
    """NAT rules shaped as kube-proxy writes them (pkg/proxy/iptables/proxier.go)."""
    lines = ["*nat"]
    for i, (svc, eps) in enumerate(services.items()):
        chain = f"KUBE-SVC-{i:016d}"
        lines.append(
            f'-A KUBE-SERVICES -d 10.96.0.{i + 1}/32 -p tcp -m comment --comment "{svc} cluster IP"'
            f" -m tcp --dport 80 -j {chain}"
        )
        for j, ep in enumerate(eps):
            sep = f"KUBE-SEP-{i:08d}{j:08d}"
            prob = f" -m statistic --mode random --probability {1 / (len(eps) - j):.11f}"
            lines.append(
                f'-A {chain} -m comment --comment "{svc} -> {ep}"'
                f"{prob if j < len(eps) - 1 else ''} -j {sep}"
            )
            ip = ep.split(":")[0]
            lines.append(f"-A {sep} -s {ip}/32 -m comment --comment {svc} -j KUBE-MARK-MASQ")
            lines.append(
                f"-A {sep} -p tcp -m comment --comment {svc} -m tcp -j DNAT --to-destination {ep}"
            )
    for k, ep in enumerate(stale):  # a chain left from an old endpoint, no longer jumped to
        lines.append(f"-A KUBE-SEP-STALE{k:011d} -p tcp -m tcp -j DNAT --to-destination {ep}")
    chains = {ln.split()[1] for ln in lines if ln.startswith("-A ")} | {"KUBE-MARK-MASQ"}
    return "\n".join(["*nat", *(f":{c} - [0:0]" for c in sorted(chains)), *lines[1:], "COMMIT"])


_ep = hs.builds(
    lambda a, b, p: f"10.244.{a}.{b}:{p}",
    hs.integers(0, 255),
    hs.integers(1, 254),
    hs.sampled_from([80, 8080, 9090]),
)
_svc = hs.from_regex(r"[a-z]{1,8}/[a-z][a-z0-9-]{0,10}(:[a-z]{1,5})?", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    hs.dictionaries(_svc, hs.lists(_ep, min_size=1, max_size=5, unique=True), max_size=4),
    hs.lists(_ep, max_size=3),
)
def test_parse_rules_finds_each_services_endpoints_and_ignores_stale_chains(
    services: dict[str, list[str]], stale: list[str]
) -> None:
    found, local = parse_rules(_kube_proxy_nat(services, stale))
    assert found == {svc: frozenset(eps) for svc, eps in services.items()}
    assert local == {}


def test_parse_rules_keeps_local_policy_chains_apart() -> None:
    text = textwrap.dedent(
        """\
        -A KUBE-SVL-AAA -m comment --comment "default/app -> 10.244.3.10:8080" -j KUBE-SEP-X
        -A KUBE-SEP-X -p tcp -m comment --comment default/app -m tcp -j DNAT \
        --to-destination 10.244.3.10:8080
        """
    )
    assert parse_rules(text) == ({}, {"default/app": frozenset({"10.244.3.10:8080"})})


# -- with the real control plane ---------------------------------------------------------------

#: bounds of the waits below (not assertions on timing: a wait that runs out fails the test)
SETTLE = 90.0


def _wait_for(what: str, check: Callable[[], bool], timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def real(local_cluster: Any, k8s_build: Any) -> Iterator[tuple[Any, DataPlane]]:
    """The suite's real control plane (etcd, apiserver, controller-manager, scheduler, KWOK
    nodes, the app) with the data plane on its Nodes: on each, the runtime stand-in as
    ``system:node:<node>`` and the real kube-proxy as ``system:kube-proxy``."""
    if _netns_missing():
        pytest.skip(str(_netns_missing()))
    d = Path(tempfile.mkdtemp(prefix="dpk", dir="/tmp"))
    kc = local_cluster.kubeconfig
    dp = DataPlane.create(d / "dp", _name(), node_networks(kc), kubeconfig=kc)
    try:
        kp = KubeProxy(
            str(k8s_build.bin("kube-proxy")), str(local_cluster.layout.kubeconfig("kube-proxy"))
        )
        for node in dp.nodes:
            dp.start_runtime(node, local_cluster.layout.kubeconfig(f"node-{node}"))
            dp.start_kube_proxy(node, kp)
        yield local_cluster, dp
    finally:
        dp.down()
        left = [*Path(dp.state.dir).glob("*.kubeconfig"), *Path(dp.state.dir).glob("*.sock")]
        shutil.rmtree(d, ignore_errors=True)
        assert namespaces_with_prefix(dp.state.prefix) == [] and left == []


def _app(cluster: Any) -> tuple[str, str, int]:
    cfg = cluster.layout.config
    return cfg.namespace, cfg.app, cfg.node_port


def _ready_pods(cluster: Any) -> dict[str, tuple[str, str]]:
    """Ready app pods from the API server: name -> (pod IP, node)."""
    from kubernetes import client

    ns, app, _ = _app(cluster)
    core = client.CoreV1Api(cluster.admin_client())
    pods: list[Any] = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    return {
        p.metadata.name: (p.status.pod_ip, p.spec.node_name)
        for p in pods
        if p.status.pod_ip
        and p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }


def _endpoints(pods: dict[str, tuple[str, str]]) -> set[str]:
    return {f"{ip}:8080" for ip, _ in pods.values()}


def _runtime_logs(dp: DataPlane) -> str:
    return "".join(Path(p.log).read_text() for n, p in dp.state.procs.items() if "runtime" in n)


def _served(dp: DataPlane, ns: str, pods: dict[str, tuple[str, str]]) -> bool:
    """Every pod served by its node's stand-in (KWOK marks a pod Ready without waiting for it:
    the stand-in follows the watch, a second or more later)."""
    logs = _runtime_logs(dp)
    return all(f" serve {ns}/{name} {ip}:8080" in logs for name, (ip, _) in pods.items())


def _programmed(dp: DataPlane, service: str, want: set[str]) -> bool:
    return all(dp.rules(node).endpoints(service) == want for node in dp.nodes)


def _probe(dp: DataPlane, url: str, seconds: float) -> Any:
    """The project's prober in the client namespace, new connections only."""
    from chaoslab.live.probe import read_records

    out = Path(dp.state.dir) / f"probe-{uuid.uuid4().hex[:6]}.csv"
    argv = [sys.executable, "-m", "chaoslab.live.probe", url, "--rate", "50", "--probers", "2"]
    argv += ["--timeout", "0.5", "--duration", str(seconds), "--out", str(out)]
    subprocess.run(["ip", "netns", "exec", dp.client_ns, *argv], check=True, timeout=60)
    return read_records(out)


@needs_netns
def test_real_kube_proxy_programs_the_nodeport_and_the_client_reaches_every_pod(
    real: tuple[Any, DataPlane],
) -> None:
    cluster, dp = real
    ns, app, node_port = _app(cluster)
    pods = _ready_pods(cluster)
    assert len(pods) == cluster.layout.config.spec.replicas
    for ip, node in pods.values():  # KWOK allocates from the node's podCIDR, which is routed
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(dp.pod_cidr(node))
    service = f"{ns}/{app}:http"
    want = _endpoints(pods)
    _wait_for(f"{service} -> {sorted(want)} on every node", lambda: _programmed(dp, service, want))
    _wait_for("every pod served", lambda: _served(dp, ns, pods))
    for node in dp.nodes:
        rec = _probe(dp, f"http://{dp.node_ip(node)}:{node_port}/", 1.5)
        assert set(rec.outcome) == {"ok"}, (node, rec.outcome.value_counts())
        assert set(rec.server) == set(pods), node  # every node spreads over every pod


@needs_netns
def test_a_deleted_pod_leaves_every_nodes_rules_and_its_node_stops_serving_it(
    real: tuple[Any, DataPlane],
) -> None:
    from kubernetes import client

    cluster, dp = real
    ns, app, node_port = _app(cluster)
    service = f"{ns}/{app}:http"
    before = _ready_pods(cluster)
    _wait_for("rules settled", lambda: _programmed(dp, service, _endpoints(before)))
    _wait_for("every pod served", lambda: _served(dp, ns, before))
    victim, (ip, _) = sorted(before.items())[0]
    t0 = time.monotonic()
    client.CoreV1Api(cluster.admin_client()).delete_namespaced_pod(victim, ns)
    gone = f"{ip}:8080"
    removed: dict[str, float] = {}

    def all_removed() -> bool:  # every node polled in turn, as a drill does
        for n in dp.nodes:
            snap = dp.rules(n) if n not in removed else None
            if snap is not None and gone not in snap.endpoints(service):
                removed[n] = snap.t
        return len(removed) == len(dp.nodes)

    _wait_for(f"{gone} removed from {service} on every node", all_removed)
    assert all(t > t0 for t in removed.values())
    print({n: round(t - t0, 2) for n, t in removed.items()})
    _wait_for(f"{victim} stopped", lambda: f" stop {ns}/{victim} " in _runtime_logs(dp))
    # the ReplicaSet's replacement is served and programmed; the victim never answers again
    _wait_for("replacement Ready", lambda: len(_ready_pods(cluster)) == len(before))
    after = _ready_pods(cluster)
    assert victim not in after
    _wait_for("replacement programmed", lambda: _programmed(dp, service, _endpoints(after)))
    _wait_for("replacement served", lambda: _served(dp, ns, after))
    rec = _probe(dp, f"http://{dp.node_ip(dp.nodes[0])}:{node_port}/", 1.5)
    assert set(rec.outcome) == {"ok"} and set(rec.server) == set(after)


def _supervised_pids(log: str) -> list[int]:
    return [int(ln.rsplit("pid=", 1)[1]) for ln in log.splitlines() if " supervise start " in ln]


@needs_netns
def test_a_kube_proxy_that_exits_is_started_again_as_a_kubelet_would(
    real: tuple[Any, DataPlane],
) -> None:
    """kube-proxy exits on purpose (a node IP change) and counts on its kubelet to start it
    again: the data plane's supervisor does, at once the first time, and logs it."""
    _cluster, dp = real
    node = dp.nodes[0]
    rec = dp.state.procs[f"kube-proxy-{dp.state.info['nodes'][node]['role']}"]
    log = Path(rec.log)
    first = _supervised_pids(log.read_text())[-1]
    os.kill(first, 9)  # the child only: its supervisor (the recorded process) stays
    _wait_for("kube-proxy started again", lambda: _supervised_pids(log.read_text())[-1] != first)
    second = _supervised_pids(log.read_text())[-1]
    assert rec.alive() and pid_alive(second) and not pid_alive(first)
    text = log.read_text()
    assert "exited rc=-9" in text and "restart in 0 s" in text
    # the new process found its Node's address and synced (its own klog lines, after its start)
    after = lambda: log.read_text().rsplit(f"supervise start pid={second}", 1)[1]  # noqa: E731
    _wait_for("the new kube-proxy synced", lambda: "Caches are synced" in after())
    assert "Successfully retrieved NodeIPs" in after()


# -- the runtime stand-in's reading of a pod ---------------------------------------------------


def _pod(phase: str = "Running", ip: str | None = "10.244.1.7", **spec: Any) -> Any:
    from kubernetes import client

    container = client.V1Container(
        name="app",
        ports=[
            client.V1ContainerPort(container_port=8080),
            client.V1ContainerPort(container_port=53, protocol="UDP"),
        ],
        lifecycle=spec.pop("lifecycle", None),
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="web-1", namespace="demo"),
        spec=client.V1PodSpec(containers=[container], **spec),
        status=client.V1PodStatus(phase=phase, pod_ip=ip),
    )


def test_the_stand_in_serves_running_pods_with_an_ip_on_their_tcp_ports() -> None:
    from chaoslab.live.cluster.dataplane_runtime import PodEndpoint, desired

    assert desired(_pod()) == PodEndpoint("demo/web-1", "10.244.1.7", (8080,), 0.0)
    assert desired(_pod(phase="Pending")) is None
    assert desired(_pod(ip=None)) is None
    assert desired(_pod(phase="Succeeded")) is None
    assert desired(_pod(host_network=True)) is None  # its IP is the node's: nothing to add


def test_a_deleted_pods_container_outlives_it_by_its_prestop_sleep_within_the_grace() -> None:
    from kubernetes import client

    from chaoslab.live.cluster.dataplane_runtime import desired

    def stop_after(pod: Any) -> float:
        ep = desired(pod)
        assert ep is not None
        return ep.stop_after

    sleep = client.V1Lifecycle(
        pre_stop=client.V1LifecycleHandler(sleep=client.V1SleepAction(seconds=5))
    )
    assert stop_after(_pod(lifecycle=sleep)) == 5.0
    assert stop_after(_pod(lifecycle=sleep, termination_grace_period_seconds=2)) == 2.0
    exec_hook = client.V1LifecycleHandler.model_validate({"exec": {"command": ["sleep", "5"]}})
    assert exec_hook.var_exec is not None
    shell = client.V1Lifecycle(pre_stop=exec_hook)
    assert stop_after(_pod(lifecycle=shell)) == 0.0  # exec hooks are not run
