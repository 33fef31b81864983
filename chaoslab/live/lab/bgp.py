"""``ingress-vip-bgp`` and ``metallb-bgp``: nodes announce a /32 VIP by BGP, the router does ECMP.

::

    client 10.0.2.2 ── 10.0.2.1 rt (BIRD, ECMP) 10.0.1.254 ── br0 ("sw") ─┬─ n1 10.0.1.1
                                                                         ├─ n2 10.0.1.2
                                                                         └─ n3 10.0.1.3
    every node: VIP 10.0.3.100/32 on lo, BIRD announcing it, the HTTP service on :80

The kernel here has no ``dummy`` interface type, so the VIP sits on ``lo`` (the article's
chart uses a dummy interface; for routing the difference does not matter). The router's
BIRD installs the VIP route with one next hop per node (``merge paths on`` in its kernel
protocol) and hashes flows over them with ``net.ipv4.fib_multipath_hash_policy=1`` (L4:
every new client connection picks a path by its ports). ``bgp.hold_time``,
``bgp.peer_hold_time`` (the router's), ``bgp.keepalive_time``, ``bgp.connect_delay``,
``bgp.error_wait_time``, ``bgp.graceful_restart`` (+ ``_time``), ``bfd.enabled``,
``bfd.interval`` (min tx), ``bfd.min_rx`` and ``bfd.multiplier`` configure the daemons;
``ecmp.mode`` must be ``hash-threshold``, which is what the Linux kernel does;
``ecmp.hash_policy`` must be ``L4`` (the lab's one prober address would take one path under
L3, and the steady state could not see every path); ``router.multipath`` false installs one
path (BIRD without ``merge paths``, FRR ``maximum-paths 1``).

The router is the ``router`` profile's daemon: BIRD 2 (``router-bird2``, the default) or
FRR (``router-frr``: zebra, bgpd and, with BFD, bfdd, run as the packaged ``frr`` user, kernel
routes without nexthop objects so that ``ip monitor route`` shows each next hop).
Milestones: the router's BIRD log
(``bgp.session_down``, ``bfd.down``, ``bgp.withdrawn``) and ``ip -ts monitor route`` in the
router namespace (``ecmp.rehashed``: the kernel's VIP route changed).

``metallb-bgp`` is the same wiring (MetalLB speakers are BGP speakers announcing a /32 from
every node with a ready endpoint); its defaults come from its profile.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chaoslab.experiment import ExperimentError
from chaoslab.live.lab.base import NODE_NET, Topology, _fmt
from chaoslab.live.lab.spec import LabFault
from chaoslab.live.lab.watch import LogEvent, Rule

#: the router profile whose daemon the lab runs as the router (others: BIRD)
FRR_PROFILE = "router-frr"
#: FRR's sockets, pid files and config: in a folder the unprivileged ``frr`` user can reach
#: (a lab's state folder may sit under a private 0700 folder, as pytest's do)
FRR_RUN_ROOT = Path("/run/chaoslab-frr")


def frr_run_dir(prefix: str) -> Path:
    """The FRR folder of the lab whose namespaces start with ``prefix``."""
    return FRR_RUN_ROOT / prefix


RT = f"{NODE_NET}.254"
CLIENT = "10.0.2.2"
RT_CLIENT = "10.0.2.1"
VIP = "10.0.3.100"


class BgpTopology(Topology):
    design = "ingress-vip-bgp"

    def build(self) -> None:
        st = self.state
        mode = self.params.ps["ecmp.mode"] if self.params.has("ecmp.mode") else "hash-threshold"
        if mode != "hash-threshold":
            raise ExperimentError(
                f"ecmp.mode {mode}: the lab's router is the Linux kernel, whose multipath "
                "routes (installed by BIRD) are hash-threshold"
            )
        policy = self.params.ps["ecmp.hash_policy"] if self.params.has("ecmp.hash_policy") else "L4"
        if policy != "L4":
            raise ExperimentError(
                f"ecmp.hash_policy {policy}: the lab has one prober address, which an L3 hash "
                "sends down one path; set ecmp.hash_policy: L4"
            )
        st.add_ns("sw")
        st.add_ns("rt")
        st.add_ns(self.client_role)
        st.veth("rt", "c0", self.client_role, "eth0")
        st.ip("rt", "addr", "add", f"{RT_CLIENT}/24", "dev", "c0")
        st.ip(self.client_role, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        self.route(self.client_role, f"{VIP}/32", "via", RT_CLIENT)
        st.veth("sw", "rt", "rt", "eth0")
        st.ip("rt", "addr", "add", f"{RT}/24", "dev", "eth0")
        st.sysctl("rt", "net.ipv4.ip_forward", 1)
        # L4 hash: with the default L3 policy one client address always takes one path
        st.sysctl("rt", "net.ipv4.fib_multipath_hash_policy", 1)
        ports = ["rt"]
        for k, n in enumerate(self.nodes(), start=1):
            self.attach_node(k, n, ports)
            st.ip(n, "addr", "add", f"{VIP}/32", "dev", "lo")
            self.route(n, f"{CLIENT.rsplit('.', 1)[0]}.0/24", "via", RT)
        st.bridge("sw", "br0", ports)
        self.monitor("rt", "route")
        if self.frr:
            self.start_frr()
        else:
            self.start_bird("rt", self.router_conf())
        for k, n in enumerate(self.nodes(), start=1):
            self.start_server(f"srv-{n}", n, 80)
            self.start_bird(n, self.node_conf(k))
        for k in range(1, len(self.nodes()) + 1):
            self.wait_port("rt", f"{NODE_NET}.{k}", 80)
        st.info.update(vip=VIP, url=self.target_url())
        st.save()

    def start_bird(self, role: str, conf: str) -> None:
        path = self.write(f"bird-{role}.conf", conf)
        sock, pid = str(self.dir / f"bird-{role}.ctl"), str(self.dir / f"bird-{role}.pid")
        self.state.spawn(
            f"bird-{role}", role, ["bird", "-f", "-c", path, "-s", sock, "-P", pid], pidfiles=[pid]
        )

    @property
    def frr(self) -> bool:
        return FRR_PROFILE in self.params.ps.profiles

    def _multipath(self) -> bool:
        return not self.params.has("router.multipath") or self.params.flag("router.multipath")

    def start_frr(self) -> None:
        """zebra, then bfdd (with BFD) and bgpd, sharing one zserv socket in a folder the
        ``frr`` user owns (FRR refuses to run its daemons as root)."""
        import shutil

        run_dir = frr_run_dir(self.state.prefix)
        shutil.rmtree(run_dir, ignore_errors=True)  # a crashed lab's of the same prefix
        run_dir.mkdir(parents=True)
        FRR_RUN_ROOT.chmod(0o755)
        shutil.chown(run_dir, "frr", "frr")
        self.state.info["frr_run_dir"] = str(run_dir)
        conf = str(run_dir / "frr.conf")
        Path(conf).write_text(self.frr_conf())
        shutil.chown(conf, "frr", "frr")
        zsock = str(run_dir / "zserv.api")
        daemons = ["zebra", *(["bfdd"] if self.params.flag("bfd.enabled") else []), "bgpd"]
        for d in daemons:
            pid = str(run_dir / f"{d}.pid")
            argv = [f"/usr/lib/frr/{d}", "-f", conf, "-i", pid, "-z", zsock, "-u", "frr"]
            argv += ["-g", "frr", "--vty_socket", str(run_dir), "-P", "0", "--log", "stdout"]
            if d == "bfdd":
                argv += ["--bfdctl", str(run_dir / "bfdd.sock")]
            self.state.spawn(f"{d}-rt", "rt", argv, pidfiles=[pid])
            if d == "zebra":
                self._wait_file(zsock)

    def _wait_file(self, path: str, timeout: float = 10.0) -> None:
        import time

        end = time.monotonic() + timeout
        while not Path(path).exists():
            if time.monotonic() > end:
                raise ExperimentError(f"lab: {path} did not appear (see zebra-rt.log)")
            time.sleep(0.05)

    def frr_conf(self) -> str:
        """The router in FRR's words: the same neighbours, timers and BFD as BIRD's."""
        assert self.spec.bgp is not None
        p, bgp = self.params, self.spec.bgp
        hold = round(p.seconds("bgp.peer_hold_time"))
        keep = round(p.seconds("bgp.keepalive_time")) or hold // 3
        lines = [
            "frr defaults traditional",
            "hostname rt",
            "log timestamp precision 6",
            "no zebra nexthop kernel enable",
            "debug bgp neighbor-events",
            "debug bfd peer",
        ]
        bfd = p.flag("bfd.enabled")
        peers = [f"{NODE_NET}.{k}" for k in range(1, len(self.nodes()) + 1)]
        if bfd:
            lines.append("bfd")
            for peer in peers:
                lines += [
                    f" peer {peer}",
                    f"  receive-interval {round(p.seconds('bfd.min_rx') * 1000)}",
                    f"  transmit-interval {round(p.seconds('bfd.interval') * 1000)}",
                    f"  detect-multiplier {p.count('bfd.multiplier')}",
                    " exit",
                ]
            lines.append("exit")
        lines += [f"router bgp {bgp.router_asn}", f" bgp router-id {RT}"]
        lines.append(" no bgp ebgp-requires-policy")
        for peer in peers:
            lines += [
                f" neighbor {peer} remote-as {bgp.node_asn}",
                f" neighbor {peer} timers {keep} {hold}",
                f" neighbor {peer} timers connect {round(bgp.reconnect)}",
                *([f" neighbor {peer} bfd"] if bfd else []),
            ]
        lines += [
            " address-family ipv4 unicast",
            f"  maximum-paths {64 if self._multipath() else 1}",
            " exit-address-family",
            "exit",
        ]
        return "\n".join(lines) + "\n"

    # -- configs ------------------------------------------------------------------------------

    def _timers(self, hold_key: str) -> list[str]:
        p = self.params
        assert self.spec.bgp is not None
        hold, keep = p.seconds(hold_key), p.seconds("bgp.keepalive_time")
        err = round(p.seconds("bgp.error_wait_time"))
        # BIRD takes whole seconds for BGP timers
        lines = [f"  hold time {round(hold)};"]
        if keep > 0:  # 0: BIRD's default, a third of the hold time
            lines.append(f"  keepalive time {round(keep)};")
        lines += [
            f"  connect delay time {round(p.seconds('bgp.connect_delay'))};",
            f"  error wait time {err}, {err};",
            # the drill's pace for retrying a session whose peer is unreachable; it acts
            # only while a fault is being undone, never inside a trial
            f"  connect retry time {round(self.spec.bgp.reconnect)};",
        ]
        if p.flag("bgp.graceful_restart"):
            gr = round(p.seconds("bgp.graceful_restart_time"))
            lines += ["  graceful restart on;", f"  graceful restart time {gr};"]
        else:
            lines.append("  graceful restart off;")
        if p.flag("bfd.enabled"):
            lines.append("  bfd on;")
        return lines

    def _bfd(self) -> list[str]:
        p = self.params
        if not p.flag("bfd.enabled"):
            return []
        tx = _fmt(p.seconds("bfd.interval") * 1000)
        rx = _fmt(p.seconds("bfd.min_rx") * 1000)
        return [
            "protocol bfd {",
            '  interface "eth0" {',
            f"    min rx interval {rx} ms;",
            f"    min tx interval {tx} ms;",
            f"    multiplier {p.count('bfd.multiplier')};",
            "  };",
            "}",
        ]

    def router_conf(self) -> str:
        assert self.spec.bgp is not None
        lines = [
            f"router id {RT};",
            "log stderr all;",
            "debug protocols { states, routes, events };",
            "protocol device { }",
            "protocol kernel {",
            "  ipv4 { import none; export all; };",
            # BIRD's default is one path per prefix ('By default, multipath merging is disabled')
            *(["  merge paths on;"] if self._multipath() else []),
            "}",
            *self._bfd(),
        ]
        for k, n in enumerate(self.nodes(), start=1):
            lines += [
                f"protocol bgp {n} {{",
                f"  local {RT} as {self.spec.bgp.router_asn};",
                f"  neighbor {NODE_NET}.{k} as {self.spec.bgp.node_asn};",
                *self._timers("bgp.peer_hold_time"),
                "  ipv4 { import all; export none; };",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def node_conf(self, k: int) -> str:
        assert self.spec.bgp is not None
        return "\n".join(
            [
                f"router id {NODE_NET}.{k};",
                "log stderr all;",
                "debug protocols { states, events };",
                "protocol device { }",
                "protocol direct {",
                f"  ipv4 {{ import where net = {VIP}/32; }};",
                '  interface "lo";',
                "}",
                *self._bfd(),
                "protocol bgp upstream {",
                f"  local {NODE_NET}.{k} as {self.spec.bgp.node_asn};",
                f"  neighbor {RT} as {self.spec.bgp.router_asn};",
                *self._timers("bgp.hold_time"),
                f"  ipv4 {{ import none; export where net = {VIP}/32; }};",
                "}",
                "",
            ]
        )

    # -- drill interface -------------------------------------------------------------------

    def target_url(self) -> str:
        return f"http://{VIP}/"

    def model_cluster(self) -> dict[str, object]:
        """Every lab node is an ingress node announcing the VIP ('controllers'); the app pod
        sits on a node no fault touches (the lab's service answers on the nodes)."""
        return self.ingress_nodes_cluster()

    def rules(self) -> list[Rule]:
        v = VIP.replace(".", r"\.")
        if self.frr:
            return [
                Rule(
                    "bgp.session_down",
                    r"^bgpd-rt$",
                    r"(went from Established to|holdtime timer expire|BFD Down)",
                ),
                Rule("bfd.down", r"^bfdd-rt$", r"up -> down"),
                # zebra logs no per-prefix line at this level: the kernel route is the FIB
                Rule("bgp.withdrawn", r"^mon-route-rt$", rf"{v}"),
                Rule("ecmp.rehashed", r"^mon-route-rt$", rf"{v}"),
            ]
        return [
            Rule(
                "bgp.session_down",
                r"^bird-rt$",
                r"(Hold timer expired|Connection closed|BFD session down|State changed to stop)",
            ),
            Rule(
                "bfd.down",
                r"^bird-rt$",
                r"(?i)(session to \S+ (changed state from \w+ )?to Down|"
                r"BFD session down)",
            ),
            Rule("bgp.withdrawn", r"^bird-rt$", rf"(removed|withdrawn?)\b.*{v}/32"),
            Rule("ecmp.rehashed", r"^mon-route-rt$", rf"{v}"),
        ]

    def milestone_filter(self, fault: LabFault, victim: str, rule: Rule, ev: LogEvent) -> bool:
        if self.frr and rule.milestone in ("bgp.session_down", "bfd.down"):
            k = victim.removeprefix("n")
            return f"{NODE_NET}.{k} " in ev.line or f"peer:{NODE_NET}.{k} " in ev.line
        if rule.milestone in ("bgp.session_down", "bgp.withdrawn"):
            return f"{victim}:" in ev.line or f"{victim}.ipv4" in ev.line
        if rule.milestone == "bfd.down":
            k = victim.removeprefix("n")
            return f"{NODE_NET}.{k}" in ev.line or f"{victim}:" in ev.line
        return True

    def extra_steady_problem(self, recent: pd.DataFrame) -> str | None:
        servers = set(recent.server[recent.outcome == "ok"])
        missing = set(self.nodes()) - servers
        if missing and len(recent) >= 10 * len(self.nodes()):
            return f"no probe reached {', '.join(sorted(missing))} (ECMP path not installed)"
        return None

    def resolve_target(self, fault: LabFault, recent: pd.DataFrame) -> str:
        if fault.target in ("ingress-node", "vip-holder", "app-pod-node"):
            return self.nodes()[0]
        return super().resolve_target(fault, recent)


class MetallbBgpTopology(BgpTopology):
    design = "metallb-bgp"
