"""``nodeport-lb`` and ``nodeport-lb-local``: HAProxy in front of NodePorts on every node.

::

    client 10.0.2.2 ── 10.0.2.1 lb (HAProxy :80) 10.0.1.254 ── br0 ("sw") ─┬─ n1 10.0.1.1
                                                                           ├─ n2 10.0.1.2
                                                                           └─ n3 10.0.1.3
    node k: cbr0 10.244.k.1/24 ── pod nkpj 10.244.k.(10+j), service on :8080

Each node has kube-proxy-style iptables chains, written as kube-proxy writes them
(``pkg/proxy/iptables/proxier.go``): ``KUBE-SERVICES`` → ``KUBE-NODEPORTS`` → the service
chain ``KUBE-SVC-…`` choosing an endpoint chain ``KUBE-SEP-…`` with ``statistic mode random``
(probability 1/k, 1/(k-1), …), each DNATing to one pod; traffic from outside is marked for
masquerade. With ``externalTrafficPolicy: Local`` the node port jumps to ``KUBE-XLB-…``,
which only picks local endpoints and drops when there are none, and each node serves the
health-check node port (32000) answering 200 or 503 from its local endpoint count.

The lab has no control plane: endpoints never change during a trial. A node failure in
``nodeport-lb`` is therefore drilled on an ``idle-node`` (no pod on it), where only the LB
health check decides; with an app pod on the failed node the other nodes would keep
DNATing to it until an endpoint update that the lab does not emulate.

HAProxy checks every node (``lb.interval`` as ``inter``, ``lb.fall``, ``lb.rise``,
``lb.timeout`` as ``timeout check``): the node port itself over TCP for ``Cluster``, the
health-check node port over HTTP for ``Local``. Milestones: HAProxy's "Server … is DOWN/UP"
log lines (``lb.marked_down`` / ``lb.marked_up``).
"""

from __future__ import annotations

import contextlib
import socket

import pandas as pd

from chaoslab.experiment import ExperimentError
from chaoslab.live.lab.base import NODE_NET, Topology, _ms
from chaoslab.live.lab.netns import run
from chaoslab.live.lab.spec import LabFault
from chaoslab.live.lab.watch import LogEvent, Rule

LB_NODE_SIDE = f"{NODE_NET}.254"
CLIENT = "10.0.2.2"
FRONT = "10.0.2.1"
NODE_PORT = 30080
HEALTH_PORT = 32000
POD_PORT = 8080
SVC = "KUBE-SVC-APP"  # kube-proxy names it KUBE-SVC-<hash of service/port>
XLB = "KUBE-XLB-APP"


def pod_ip(node_index: int, pod: int) -> str:
    return f"10.244.{node_index}.{10 + pod}"


class NodeportLbTopology(Topology):
    design = "nodeport-lb"
    local = False

    # -- layout -------------------------------------------------------------------------------

    def pod_counts(self) -> list[int]:
        assert self.spec.lb is not None
        return list(self.spec.lb.pods)

    def pods(self) -> list[str]:
        return [f"n{k}p{j}" for k, c in enumerate(self.pod_counts(), start=1) for j in range(c)]

    def endpoints(self) -> list[tuple[str, str]]:
        """(pod name, pod ip) of every endpoint of the service."""
        return [
            (f"n{k}p{j}", pod_ip(k, j))
            for k, c in enumerate(self.pod_counts(), start=1)
            for j in range(c)
        ]

    def build(self) -> None:
        st = self.state
        if not self.endpoints():
            raise ExperimentError("lab.lb.pods: the service needs at least one pod")
        st.add_ns("sw")
        st.add_ns("lb")
        st.add_ns(self.client_role)
        st.veth("lb", "c0", self.client_role, "eth0")
        st.ip("lb", "addr", "add", f"{FRONT}/24", "dev", "c0")
        st.ip(self.client_role, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        st.veth("sw", "lb", "lb", "eth0")
        st.ip("lb", "addr", "add", f"{LB_NODE_SIDE}/24", "dev", "eth0")
        ports = ["lb"]
        for k, n in enumerate(self.nodes(), start=1):
            self.attach_node(k, n, ports)
            st.sysctl(n, "net.ipv4.ip_forward", 1)
            st.ip(n, "link", "add", "cbr0", "type", "bridge", "forward_delay", "0")
            st.ip(n, "addr", "add", f"10.244.{k}.1/24", "dev", "cbr0")
            st.ip(n, "link", "set", "cbr0", "up")
        st.bridge("sw", "br0", ports)
        for k, n in enumerate(self.nodes(), start=1):
            for j in range(self.pod_counts()[k - 1]):
                pod = f"n{k}p{j}"
                st.add_ns(pod)
                st.veth(n, f"p{j}", pod, "eth0")
                st.ip(n, "link", "set", f"p{j}", "master", "cbr0")
                st.ip(pod, "addr", "add", f"{pod_ip(k, j)}/24", "dev", "eth0")
                # every lab address is in 10/8; nothing else is routed
                self.route(pod, "10.0.0.0/8", "via", f"10.244.{k}.1")
                self.start_server(f"srv-{pod}", pod, POD_PORT)
            for m, _ in enumerate(self.nodes(), start=1):
                if m != k:
                    self.route(n, f"10.244.{m}.0/24", "via", f"{NODE_NET}.{m}")
            rules = self.write(f"iptables-{n}.rules", self.iptables_rules(k))
            run(["ip", "netns", "exec", st.ns(n), "iptables-restore", rules])
            if self.local:
                self.start_server(
                    f"health-{n}",
                    n,
                    HEALTH_PORT,
                    "--health-endpoints",
                    str(self.pod_counts()[k - 1]),
                )
        for name, ip in self.endpoints():
            self.wait_port(name.split("p")[0], ip, POD_PORT)
        conf = self.write("haproxy.cfg", self.haproxy_conf())
        pid = str(self.dir / "haproxy.pid")
        st.spawn("haproxy-lb", "lb", ["haproxy", "-db", "-f", conf, "-p", pid], pidfiles=[pid])
        self.wait_port(self.client_role, FRONT, 80)
        st.info.update(url=self.target_url())
        st.save()

    def iptables_rules(self, k: int) -> str:
        """The nat chains kube-proxy (iptables mode) writes for one NodePort service."""
        eps = self.endpoints()
        local = [(n, ip) for n, ip in eps if n.startswith(f"n{k}p")]
        chains = [
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
            "KUBE-MARK-DROP",
            SVC,
            *(f"KUBE-SEP-{n.upper()}" for n, _ in eps),
        ]
        if self.local:
            chains.append(XLB)
        nat = ["*nat", *(f":{c} - [0:0]" for c in chains)]
        nat += [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
            "-j KUBE-POSTROUTING",
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
            "-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
            "-A KUBE-POSTROUTING -j MASQUERADE",
            "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        ]
        if self.local:
            nat += [
                f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {NODE_PORT} -j {XLB}",
            ]
            nat += self._random_pick(XLB, local)
            if not local:
                nat.append(
                    f'-A {XLB} -m comment --comment "default/app has no local '
                    'endpoints" -j KUBE-MARK-DROP'
                )
        else:
            nat += [
                f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {NODE_PORT} -j KUBE-MARK-MASQ",
                f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {NODE_PORT} -j {SVC}",
            ]
        nat += self._random_pick(SVC, eps)
        for n, ip in eps:
            nat += [
                f"-A KUBE-SEP-{n.upper()} -s {ip}/32 -j KUBE-MARK-MASQ",
                f"-A KUBE-SEP-{n.upper()} -p tcp -m tcp -j DNAT --to-destination {ip}:{POD_PORT}",
            ]
        nat.append("COMMIT")
        flt = [
            "*filter",
            ":KUBE-FIREWALL - [0:0]",
            "-A INPUT -j KUBE-FIREWALL",
            "-A FORWARD -j KUBE-FIREWALL",
            '-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked '
            'packets" -m mark --mark 0x8000/0x8000 -j DROP',
            "COMMIT",
        ]
        return "\n".join(nat + flt) + "\n"

    @staticmethod
    def _random_pick(chain: str, eps: list[tuple[str, str]]) -> list[str]:
        out = []
        n = len(eps)
        for i, (name, _) in enumerate(eps):
            sep = f"KUBE-SEP-{name.upper()}"
            if i < n - 1:
                out.append(
                    f"-A {chain} -m statistic --mode random --probability "
                    f"{1 / (n - i):.11f} -j {sep}"
                )
            else:
                out.append(f"-A {chain} -j {sep}")
        return out

    def haproxy_conf(self) -> str:
        p = self.params
        inter, timeout = p.seconds("lb.interval"), p.seconds("lb.timeout")
        fall, rise = p.count("lb.fall"), p.count("lb.rise")
        horizon = self.horizon
        if self.local:
            check = [
                "  option httpchk GET /healthz",
                "  http-check expect status 200",
            ]
            server_opts = f"check port {HEALTH_PORT}"
        else:
            check = []
            server_opts = "check"
        servers = [
            f"  server {n} {NODE_NET}.{k}:{NODE_PORT} {server_opts} inter {_ms(inter)} "
            f"fall {fall} rise {rise}"
            for k, n in enumerate(self.nodes(), start=1)
        ]
        return "\n".join(
            [
                "global",
                "  log stdout format raw local0 info",
                f"  stats socket {self.dir / 'haproxy.sock'} mode 600 level admin",
                "defaults",
                "  mode http",
                "  log global",
                # HAProxy connects a check within min(timeout connect, inter) and then waits
                # 'timeout check' for the reply: both at lb.timeout make a check fail after
                # lb.timeout, the catalogue's meaning of it
                f"  timeout connect {_ms(timeout)}",
                f"  timeout client {_ms(horizon)}",
                f"  timeout server {_ms(horizon)}",
                f"  timeout check {_ms(timeout)}",
                "frontend web",
                f"  bind {FRONT}:80",
                "  default_backend nodes",
                "backend nodes",
                "  balance roundrobin",
                *check,
                *servers,
                "",
            ]
        )

    def target_url(self) -> str:
        return f"http://{FRONT}/"

    def model_cluster(self) -> dict[str, object]:
        """The model's cluster with this lab's shape: every node is an LB target, the nodes
        with app pods are 'controllers', the idle ones 'computes'."""
        counts = self.pod_counts()
        if any(c > 1 for c in counts):
            raise ExperimentError("lab.lb.pods: the model spreads one replica per node; use 0 or 1")
        return {
            "masters": 0,
            "controllers": sum(1 for c in counts if c),
            "computes": sum(1 for c in counts if not c),
            "replicas": sum(counts),
            "spread": "controller",
        }

    def rules(self) -> list[Rule]:
        return [
            Rule("lb.marked_down", r"^haproxy-", r"Server nodes/\S+ is DOWN"),
            Rule("lb.marked_up", r"^haproxy-", r"Server nodes/\S+ is UP"),
        ]

    def milestone_filter(self, fault: LabFault, victim: str, rule: Rule, ev: LogEvent) -> bool:
        node = victim.split("p")[0] if victim not in self.nodes() else victim
        return f"nodes/{node} " in ev.line

    # -- state --------------------------------------------------------------------------------

    def lb_status(self) -> dict[str, str]:
        """Server -> HAProxy status (UP, DOWN, ...) from the stats socket."""
        out: dict[str, str] = {}
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.dir / "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            lines = data.decode().splitlines()
            if lines and lines[0].startswith("# "):
                head = lines[0][2:].split(",")
                for ln in lines[1:]:
                    row = dict(zip(head, ln.split(","), strict=False))
                    if row.get("pxname") == "nodes" and row.get("svname") not in (
                        "BACKEND",
                        "FRONTEND",
                    ):
                        out[row["svname"]] = row.get("status", "")
        return out

    def expected_up(self) -> list[str]:
        if self.local:
            return [n for n, c in zip(self.nodes(), self.pod_counts(), strict=True) if c > 0]
        return self.nodes()

    def extra_steady_problem(self, recent: pd.DataFrame) -> str | None:
        st = self.lb_status()
        down = [n for n in self.expected_up() if not st.get(n, "").startswith("UP")]
        if down:
            return f"HAProxy does not have {', '.join(down)} UP ({st})"
        return None

    def resolve_target(self, fault: LabFault, recent: pd.DataFrame) -> str:
        counts = dict(zip(self.nodes(), self.pod_counts(), strict=True))
        if fault.target == "idle-node":
            idle = [n for n, c in counts.items() if c == 0]
            if not idle:
                raise ExperimentError("faults: target idle-node but every node has a pod")
            return idle[0]
        if fault.target == "app-pod-node":
            return next(n for n, c in counts.items() if c > 0)
        if fault.target == "app-pod":
            return self.pods()[0]
        return super().resolve_target(fault, recent)

    def inject(self, fault: LabFault, victim: str) -> float:
        if fault.kind == "link-down" and victim in self.pods():
            raise ExperimentError("faults: link-down takes a node here, not a pod")
        return super().inject(fault, victim)


class NodeportLbLocalTopology(NodeportLbTopology):
    design = "nodeport-lb-local"
    local = True
