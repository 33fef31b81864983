"""``ingress-vip-vrrp``: keepalived on every node holding a VIP on the shared segment.

::

    client (10.0.0.200) ──┐
    n1 (10.0.0.1) ────────┤ br0 in namespace "sw"        VIP 10.0.0.100/32 on the master
    n2 (10.0.0.2) ────────┘

Each node runs keepalived (``vrrp.version``, ``vrrp.advert_int``, ``vrrp.nopreempt`` and
``vrrp.priority`` — a list gives one per node — from the parameters) and the HTTP service on
port 80, which answers with the node's name; the instance's ``garp_master_delay``,
``_repeat``, ``_refresh`` and ``_refresh_repeat`` come from the ``vrrp.garp_master_*``
parameters. With ``vrrp.track_script: true`` keepalived
runs a ``vrrp_script`` that checks the local service (``vrrp.script_*`` parameters); with
``vrrp.track_process: true`` a ``vrrp_track_process`` follows the service's process instead
(``vrrp.process_weight``, ``vrrp.process_delay``). keepalived learns of the process's exit
from the kernel's process events (netlink connector, ``CN_IDX_PROC``), which the kernel
delivers only to sockets of the initial network namespace, so that keepalived starts in the
host's namespace and enters the node's itself (``keepalived -s NAMESPACE``; keepalived
``core/main.c`` opens the tracking socket before ``setns()`` for exactly this, and exits if
the ``setns()`` fails). Its node link is then ``kvrrp0``, a name the host must not have:
a keepalived that stayed on the host would find no interface to send on (`check_conf`).
Milestones:
keepalived's "Entering MASTER STATE" (``vrrp.master_changed``) and ``ip -ts monitor
address`` per node (``vip.added`` / ``vip.removed``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pandas as pd

from chaoslab.experiment import ExperimentError
from chaoslab.live.lab.base import Topology, _fmt
from chaoslab.live.lab.netns import LabError
from chaoslab.live.lab.spec import LabFault
from chaoslab.live.lab.watch import LogEvent, Rule

SUBNET = "10.0.0"
VIP = f"{SUBNET}.100"
CLIENT = f"{SUBNET}.200"
#: the nodes' VRRP link with vrrp.track_process: a name the host's namespace must not have
TRACK_PROCESS_LINK = "kvrrp0"


class VrrpTopology(Topology):
    design = "ingress-vip-vrrp"

    def build(self) -> None:
        st = self.state
        assert self.spec.vrrp is not None
        st.add_ns("sw")
        st.add_ns(self.client_role)
        st.veth("sw", "c", self.client_role, "eth0")
        ports = ["c"]
        by_process = self.params.flag("vrrp.track_process")
        link = self.vrrp_link()
        for i, n in enumerate(self.nodes(), start=1):
            st.add_ns(n)
            st.veth("sw", n, n, link)
            ports.append(n)
            st.ip(n, "addr", "add", f"{SUBNET}.{i}/24", "dev", link)
            self.uplinks[n] = link
        st.bridge("sw", "br0", ports)
        st.ip(self.client_role, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        st.save()
        for i, n in enumerate(self.nodes(), start=1):
            self.monitor(n, "address")
            self.start_server(f"srv-{n}", n, 80, *self.server_tag(n))
            conf = self.write(f"keepalived-{n}.conf", self.keepalived_conf(n, i))
            pid, vpid = str(self.dir / f"keepalived-{n}.pid"), str(self.dir / f"vrrp-{n}.pid")
            argv = ["keepalived", "-n", "-l", "-D", "-G", "-f", conf, "-p", pid, "-r", vpid]
            if by_process:
                # the one source of "this keepalived enters a namespace": -s on its argv
                argv += ["-s", st.ns(n)]
                self.check_conf(n, argv)
            st.spawn(f"keepalived-{n}", n, argv, pidfiles=[pid, vpid], enters_ns=by_process)
        for i, _ in enumerate(self.nodes(), start=1):
            self.wait_port(self.client_role, f"{SUBNET}.{i}", 80)
        st.info.update(vip=VIP, url=self.target_url())
        st.save()

    def keepalived_conf(self, node: str, index: int) -> str:
        p = self.params
        assert self.spec.vrrp is not None
        prio = self.priorities()[index - 1]
        if not 1 <= prio <= 254:
            raise ExperimentError(f"vrrp.priority: {prio} is not between 1 and 254")
        version = p.count("vrrp.version")
        if version not in (2, 3):
            raise ExperimentError(f"vrrp.version must be 2 or 3, got {version}")
        advert = p.seconds("vrrp.advert_int")
        if version == 2 and advert != int(advert):
            raise ExperimentError(
                "vrrp.advert_int: VRRPv2 adverts are whole seconds; use version 3"
            )
        by_process = p.flag("vrrp.track_process")
        link = self.vrrp_link()
        lines = [
            # no net_namespace here: the namespace is on keepalived's argv (-s), see build
            "global_defs {",
            f"  router_id {node}",
            f"  vrrp_version {version}",
            "  script_user root",
            "  enable_script_security",
            "}",
        ]
        track = []
        if by_process:
            lines += self.track_process_conf(node)
            track = ["  track_process {", "    chk_service", "  }"]
        elif p.flag("vrrp.track_script"):
            lines += [
                "vrrp_script chk_service {",
                "  script \"/bin/bash -c ': </dev/tcp/127.0.0.1/80'\"",
                f"  interval {_fmt(p.seconds('vrrp.script_interval'))}",
                f"  timeout {_fmt(p.seconds('vrrp.script_timeout'))}",
                f"  fall {p.count('vrrp.script_fall')}",
                f"  rise {p.count('vrrp.script_rise')}",
                f"  weight {p.count('vrrp.script_weight')}",
                "}",
            ]
            track = ["  track_script {", "    chk_service", "  }"]
        lines += [
            "vrrp_instance VI_1 {",
            # BACKUP everywhere: nopreempt needs it, and the priorities elect the master
            "  state BACKUP",
            f"  interface {link}",
            f"  virtual_router_id {self.spec.vrrp.virtual_router_id}",
            f"  priority {prio}",
            f"  advert_int {_fmt(advert)}",
            *(["  nopreempt"] if p.flag("vrrp.nopreempt") else []),
            *self.garp_lines(),
            "  virtual_ipaddress {",
            f"    {VIP}/32 dev {link}",
            "  }",
            *track,
            "}",
        ]
        return "\n".join(lines) + "\n"

    def garp_lines(self) -> list[str]:
        """The instance's GARP settings (keepalived reads whole seconds for these)."""
        p = self.params
        delay, refresh = p.seconds("vrrp.garp_master_delay"), p.seconds("vrrp.garp_master_refresh")
        for key, v in (("vrrp.garp_master_delay", delay), ("vrrp.garp_master_refresh", refresh)):
            if v != int(v):
                raise ExperimentError(f"{key}: keepalived takes whole seconds, got {v:g} s")
        lines = [
            f"  garp_master_delay {_fmt(delay)}",
            f"  garp_master_repeat {p.count('vrrp.garp_master_repeat')}",
        ]
        if refresh > 0:
            lines += [
                f"  garp_master_refresh {_fmt(refresh)}",
                f"  garp_master_refresh_repeat {p.count('vrrp.garp_master_refresh_repeat')}",
            ]
        return lines

    def vrrp_link(self) -> str:
        """The nodes' link to the segment: keepalived's interface and its VIP's device."""
        return TRACK_PROCESS_LINK if self.params.flag("vrrp.track_process") else "eth0"

    def check_enters_ns(self, role: str, argv: list[str]) -> None:
        self.check_conf(role, argv)

    def check_conf(self, node: str, argv: list[str]) -> None:
        """Before keepalived starts in the host's namespace (``-s NAMESPACE``): the namespace
        exists, the same command line with ``-t`` passes (it takes the start's own setns()
        path; 2.2.7's -t exits 0 unchecked when the setns() fails, hence the first check),
        the host has no interface of the config's name, and the config without ``-s`` fails
        on the host for that missing interface: a keepalived that stayed on the host would
        have nothing to send on (its VRRP child exits with a CONFIG error)."""
        ns = self.state.ns(node)
        link = self.vrrp_link()
        if argv[-2:] != ["-s", ns]:
            raise LabError(f"keepalived-{node}: its command line does not end in -s {ns}")
        if not os.path.exists(f"/run/netns/{ns}"):
            raise LabError(f"keepalived-{node}: namespace {ns} does not exist (not started)")
        try:
            socket.if_nametoindex(link)
        except OSError:
            pass
        else:
            raise LabError(
                f"keepalived-{node}: the host's namespace has an interface {link}; a "
                "keepalived left on the host could send on it (not started)"
            )
        if not os.path.exists("/run/keepalived"):  # ours: lab down removes it if empty
            self.state.info.setdefault("keepalived_run_root", "/run/keepalived")
        self.state.info.setdefault("keepalived_run_dirs", [])
        if f"/run/keepalived/{ns}" not in self.state.info["keepalived_run_dirs"]:
            self.state.info["keepalived_run_dirs"].append(f"/run/keepalived/{ns}")
            self.state.save()
        r = _keepalived_test([*argv, "-t"])
        if r.returncode != 0:
            raise LabError(f"keepalived -t -s {ns}: rc {r.returncode}: {_why(r)}")
        host = _keepalived_test([*argv[:-2], "-t"])
        out = _text(host)
        if host.returncode == 0 or f"interface {link} for vrrp_instance" not in out:
            raise LabError(
                f"keepalived -t without -s {ns} did not fail on the host for the missing "
                f"interface {link} (rc {host.returncode}: {_why(host)}): not started"
            )

    def server_tag(self, node: str) -> list[str]:
        """Extra server arguments that make its command line unique on the machine."""
        return ["--lab", self.state.ns(node)] if self.params.flag("vrrp.track_process") else []

    def track_process_conf(self, node: str) -> list[str]:
        """``vrrp_track_process`` on the node's HTTP service, matched by its whole command
        line (the process name alone, python3, matches every lab's servers and probers)."""
        p = self.params
        argv = self.server_argv(node, 80, *self.server_tag(node))
        # `env PYTHONPATH=... python ...` execs python: its command line starts there
        cmd = argv[argv.index(sys.executable) :]
        weight = p.count("vrrp.process_weight")
        delay = p.seconds("vrrp.process_delay")
        return [
            "vrrp_track_process chk_service {",
            "  process " + " ".join(f'"{a}"' for a in cmd),
            "  full_command",
            "  quorum 1",
            # the model lowers the priority by the magnitude while the process is missing
            f"  weight {-abs(weight)}",
            *([f"  terminate_delay {_fmt(delay)}"] if delay > 0 else []),
            "}",
        ]

    def priorities(self) -> list[int]:
        return self.params.per_node("vrrp.priority", len(self.nodes()))

    def target_url(self) -> str:
        return f"http://{VIP}/"

    def model_cluster(self) -> dict[str, object]:
        """The model's cluster with this lab's shape: the keepalived nodes are the ingress
        ('controller') nodes; the app pod sits on a node no fault touches, because in the
        lab the service answers on the ingress nodes themselves."""
        return self.ingress_nodes_cluster()

    def rules(self) -> list[Rule]:
        v = VIP.replace(".", r"\.")
        return [
            Rule("vrrp.master_changed", r"^keepalived-", r"Entering MASTER STATE"),
            Rule("vip.removed", r"^mon-address-", rf"^\S*\s*Deleted .*inet {v}/"),
            Rule("vip.added", r"^mon-address-", rf"^(?!.*Deleted).*inet {v}/"),
        ]

    def milestone_filter(self, fault: LabFault, victim: str, rule: Rule, ev: LogEvent) -> bool:
        on_victim = ev.source.endswith(f"-{victim}")
        if rule.milestone in ("vrrp.master_changed", "vip.added"):
            return not on_victim  # the takeover by another node
        if rule.milestone == "vip.removed":
            return on_victim
        return True

    def holder(self, recent: pd.DataFrame) -> str | None:
        """The node answering on the VIP now (the probes' server name)."""
        servers = recent.server[recent.outcome == "ok"]
        return None if servers.empty else str(servers.mode().iloc[0])

    def extra_steady_problem(self, recent: pd.DataFrame) -> str | None:
        servers = set(recent.server[recent.outcome == "ok"])
        if len(servers) > 1:
            return f"VIP answered by several nodes: {', '.join(sorted(servers))}"
        assert self.spec.vrrp is not None
        if not self.params.flag("vrrp.nopreempt"):
            prios = self.priorities()
            best = self.nodes()[prios.index(max(prios))]
            if servers and servers != {best}:
                return f"VIP on {next(iter(servers))}, waiting for {best} to preempt"
        return None

    def resolve_target(self, fault: LabFault, recent: pd.DataFrame) -> str:
        if fault.target == "vip-holder":
            h = self.holder(recent)
            if h is None:
                raise ExperimentError("no node answers on the VIP: cannot find the vip-holder")
            return h
        if fault.target == "backup":
            h = self.holder(recent)
            return next(n for n in self.nodes() if n != h)
        return super().resolve_target(fault, recent)


def _text(r: subprocess.CompletedProcess[str]) -> str:
    return (r.stderr or "") + (r.stdout or "")


def _why(r: subprocess.CompletedProcess[str]) -> str:
    """keepalived's reason in one line (its config errors, else its last line)."""
    lines = [ln.strip() for ln in _text(r).splitlines() if ln.strip()]
    bad = [
        ln
        for ln in lines
        if any(w in ln for w in ("Unknown keyword", "WARNING", "rror", "Unable", "Non-existent"))
    ]
    return "; ".join(bad[:3])[:300] if bad else (lines[-1][:300] if lines else "no output")


def _keepalived_test(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``keepalived ... -t`` from the host's namespace; a config test, it sends nothing."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within 20 s") from None
    except OSError as exc:
        raise LabError(f"{argv[0]} could not be run: {exc.strerror or exc}") from None
