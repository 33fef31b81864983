"""``ingress-hostnet``: nginx in the ingress node's host network in front of pod namespaces.

::

    client 10.0.2.2 ── 10.0.2.1 ing (nginx :80) 10.244.0.1 cbr0 ─┬─ p0 10.244.0.10 :8080
                                                                 ├─ p1 10.244.0.11 :8080
                                                                 └─ p2 10.244.0.12 :8080

nginx is configured as the 2018 ingress-nginx template wrote it: ``upstream { server POD
max_fails=0 fail_timeout=0; ... }`` (nginx never takes a failing pod out by itself),
``proxy_next_upstream error timeout``, ``proxy_next_upstream_tries`` and
``proxy_connect_timeout`` from the parameters (``nginx.proxy_next_upstream_tries``,
``nginx.proxy_connect_timeout``), ``least_conn;`` with ``nginx.load_balance: least_conn``
(nginx's round robin otherwise) and ``worker_processes`` (``nginx.worker_processes``; no
upstream ``zone``: each worker balances on its own counts). The lab has no controller, so
no endpoint update removes a pod during a trial: what is measured is nginx's own behaviour
on a killed pod (connection refused: retried on the next pod at once) and on a pod whose
link is down (the connect waits ``proxy_connect_timeout`` — or fails early with "No route
to host" once the ingress node's ARP entry for the pod has failed — then the next pod),
against a client timeout above or below ``proxy_connect_timeout``.

Milestones (lab-only names, from nginx's error log): ``nginx.upstream_refused`` and
``nginx.upstream_timeout``, ``nginx.upstream_unreachable``.
"""

from __future__ import annotations

import pandas as pd

from chaoslab.experiment import ExperimentError
from chaoslab.live.lab.base import Topology, _ms
from chaoslab.live.lab.spec import LabFault
from chaoslab.live.lab.watch import LogEvent, Rule

CLIENT = "10.0.2.2"
FRONT = "10.0.2.1"
POD_NET = "10.244.0"
POD_PORT = 8080


class HostnetTopology(Topology):
    design = "ingress-hostnet"

    def pods(self) -> list[str]:
        assert self.spec.ingress is not None
        return [f"p{j}" for j in range(self.spec.ingress.pods)]

    def nodes(self) -> list[str]:
        return ["ing"]

    def build(self) -> None:
        st = self.state
        st.add_ns(self.client_role)
        st.add_ns("ing")
        st.veth("ing", "c0", self.client_role, "eth0")
        st.ip("ing", "addr", "add", f"{FRONT}/24", "dev", "c0")
        st.ip(self.client_role, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        st.ip("ing", "link", "add", "cbr0", "type", "bridge", "forward_delay", "0")
        st.ip("ing", "addr", "add", f"{POD_NET}.1/24", "dev", "cbr0")
        st.ip("ing", "link", "set", "cbr0", "up")
        for j, pod in enumerate(self.pods()):
            st.add_ns(pod)
            st.veth("ing", pod, pod, "eth0")
            st.ip("ing", "link", "set", pod, "master", "cbr0")
            st.ip(pod, "addr", "add", f"{POD_NET}.{10 + j}/24", "dev", "eth0")
            self.route(pod, "10.0.0.0/8", "via", f"{POD_NET}.1")
            self.uplinks[pod] = "eth0"
            self.start_server(f"srv-{pod}", pod, POD_PORT)
        for j, _ in enumerate(self.pods()):
            self.wait_port("ing", f"{POD_NET}.{10 + j}", POD_PORT)
        (self.dir / "nginx-tmp").mkdir(exist_ok=True)
        conf = self.write("nginx.conf", self.nginx_conf())
        pid = str(self.dir / "nginx.pid")
        st.spawn(
            "nginx-ing",
            "ing",
            ["nginx", "-p", str(self.dir), "-c", conf, "-e", "stderr"],
            pidfiles=[pid],
        )
        self.wait_port(self.client_role, FRONT, 80)
        st.info.update(url=self.target_url())
        st.save()

    def nginx_conf(self) -> str:
        p = self.params
        tries = p.count("nginx.proxy_next_upstream_tries")
        connect = p.seconds("nginx.proxy_connect_timeout")
        tmp = self.dir / "nginx-tmp"
        servers = [
            *self.balancing(),
            *(
                f"    server {POD_NET}.{10 + j}:{POD_PORT} max_fails=0 fail_timeout=0;"
                for j in range(len(self.pods()))
            ),
        ]
        return "\n".join(
            [
                f"worker_processes {p.count('nginx.worker_processes')};",
                "daemon off;",
                "master_process on;",
                f"pid {self.dir / 'nginx.pid'};",
                "error_log stderr info;",
                "events { worker_connections 4096; }",
                "http {",
                "  access_log off;",
                f"  client_body_temp_path {tmp}/body;",
                f"  proxy_temp_path {tmp}/proxy;",
                f"  fastcgi_temp_path {tmp}/fastcgi;",
                f"  uwsgi_temp_path {tmp}/uwsgi;",
                f"  scgi_temp_path {tmp}/scgi;",
                "  upstream app {",
                *servers,
                "  }",
                "  server {",
                f"    listen {FRONT}:80;",
                "    location / {",
                "      proxy_pass http://app;",
                "      proxy_http_version 1.1;",
                '      proxy_set_header Connection "";',
                "      proxy_next_upstream error timeout;",
                # 0 means unlimited in nginx; the 2018 template wrote the number of tries
                f"      proxy_next_upstream_tries {tries};",
                f"      proxy_connect_timeout {_ms(connect)};",
                "    }",
                "  }",
                "}",
                "",
            ]
        )

    def balancing(self) -> list[str]:
        """The upstream's balancing directive (``nginx.load_balance``): none for nginx's
        round robin, ``least_conn;``; ingress-nginx's EWMA is Lua the lab's nginx lacks."""
        how = self.params.choice("nginx.load_balance")
        if how == "ewma":
            raise ExperimentError(
                "nginx.load_balance: ewma is ingress-nginx's Lua balancer (balancer/ewma.lua); "
                "the lab's plain nginx has round_robin and least_conn"
            )
        return ["    least_conn;"] if how == "least_conn" else []

    def model_cluster(self) -> dict[str, object]:
        """One ingress node ('controller'); each pod on its own 'compute' node, so that a
        pod cut off in the lab is an app-pod-node cut off in the model."""
        return {
            "masters": 0,
            "controllers": 1,
            "computes": len(self.pods()),
            "replicas": len(self.pods()),
            "spread": "compute",
        }

    def target_url(self) -> str:
        return f"http://{FRONT}/"

    def rules(self) -> list[Rule]:
        return [
            Rule("nginx.upstream_refused", r"^nginx-", r"Connection refused\) while connecting"),
            Rule("nginx.upstream_timeout", r"^nginx-", r"upstream timed out .* while connecting"),
            Rule("nginx.upstream_unreachable", r"^nginx-", r"No route to host\) while connecting"),
        ]

    def milestone_filter(self, fault: LabFault, victim: str, rule: Rule, ev: LogEvent) -> bool:
        j = self.pods().index(victim)
        return f"{POD_NET}.{10 + j}:{POD_PORT}" in ev.line

    def extra_steady_problem(self, recent: pd.DataFrame) -> str | None:
        missing = set(self.pods()) - set(recent.server[recent.outcome == "ok"])
        if missing and len(recent) >= 10 * len(self.pods()):
            return f"no probe reached {', '.join(sorted(missing))}"
        return None

    def resolve_target(self, fault: LabFault, recent: pd.DataFrame) -> str:
        if fault.target == "app-pod":
            return self.pods()[0]
        if fault.target in self.pods():
            return fault.target
        raise ExperimentError(
            f"faults: target {fault.target!r}: ingress-hostnet faults hit a pod "
            f"(app-pod or {', '.join(self.pods())})"
        )
