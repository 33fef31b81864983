"""What every lab topology shares: parameters, servers, probers, faults and their undo.

A topology subclass builds its namespaces and daemons in :meth:`Topology.build`, names the
URL clients use (:meth:`target_url`), the log rules that give milestones (:meth:`rules`),
how a fault target resolves to a node or pod, and what a steady state is.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from chaoslab.experiment import ExperimentError
from chaoslab.live.lab.netns import LabError, LabState, Proc, run
from chaoslab.live.lab.spec import LabFault, LabSpec
from chaoslab.live.lab.watch import LogEvent, Rule

__all__ = ["LabParams", "Topology"]

#: the repository root, so daemons started with `ip netns exec python -m ...` import chaoslab
_ROOT = str(Path(__file__).resolve().parents[3])

#: kinds of the catalogue keys the lab reads (to read values given in ``params:`` for keys
#: the catalogue does not define yet; nothing here is a default)
LAB_KEYS: dict[str, str] = {
    "vrrp.version": "count",
    "vrrp.advert_int": "duration",
    "vrrp.nopreempt": "flag",
    "vrrp.priority": "count",
    "vrrp.script_interval": "duration",
    "vrrp.script_timeout": "duration",
    "vrrp.script_fall": "count",
    "vrrp.script_rise": "count",
    "vrrp.script_weight": "count",
    "bgp.hold_time": "duration",
    "bgp.keepalive_time": "duration",
    "bgp.graceful_restart": "flag",
    "bfd.enabled": "flag",
    "bfd.interval": "duration",
    "bfd.multiplier": "count",
    "lb.interval": "duration",
    "lb.timeout": "duration",
    "lb.fall": "count",
    "lb.rise": "count",
    "nginx.proxy_connect_timeout": "duration",
    "nginx.proxy_next_upstream_tries": "count",
    "client.timeout": "duration",
}


#: the node segment behind a router or LB: node k is NODE_NET.k
NODE_NET = "10.0.1"


class LabParams:
    """Effective parameter values for configuring daemons: catalogue defaults, then the
    experiment's profiles, then its ``params:`` — the same resolution as the prediction."""

    def __init__(self, profiles: Sequence[str], overrides: Mapping[str, Any]) -> None:
        from chaoslab.params import CATALOGUE, ParamSet, ParseError, UnknownParameter

        known = {k: v for k, v in overrides.items() if k in CATALOGUE}
        self.extra: dict[str, Any] = {}
        for k, raw in overrides.items():
            if k in CATALOGUE:
                continue
            if k not in LAB_KEYS:
                raise ExperimentError(str(UnknownParameter(f"unknown parameter {k!r} in params:")))
            self.extra[k] = self._parse_extra(k, raw)
        try:
            self.ps = ParamSet.resolve(list(profiles), known)
        except (ParseError, KeyError, ValueError) as exc:
            raise ExperimentError(f"params: {exc}") from None
        self.profiles = list(profiles)
        self.overrides = dict(overrides)

    @staticmethod
    def _parse_extra(key: str, raw: Any) -> Any:
        from chaoslab.params import ParseError, parse_duration

        kind = LAB_KEYS[key]
        try:
            if kind == "duration":
                return parse_duration(raw)
            if kind == "count":
                if isinstance(raw, bool) or not isinstance(raw, int | float):
                    raise ParseError(f"{key} takes a number, got {raw!r}")
                return float(raw)
            if kind == "flag":
                if not isinstance(raw, bool):
                    raise ParseError(f"{key} is a flag: write true or false, got {raw!r}")
                return raw
        except ParseError as exc:
            raise ExperimentError(f"params: {exc}") from None
        return raw

    def _raw(self, key: str) -> Any:
        from chaoslab.params import CATALOGUE

        if key in CATALOGUE:
            return self.ps[key]
        if key in self.extra:
            return self.extra[key]
        raise ExperimentError(
            f"params: {key} is not in the parameter catalogue (its model is not merged yet): "
            f"give its value in the experiment's params:"
        )

    def seconds(self, key: str) -> float:
        return fixed_seconds(self._raw(key), key)

    def count(self, key: str) -> int:
        return round(fixed_seconds(self._raw(key), key))

    def flag(self, key: str) -> bool:
        v = self._raw(key)
        if not isinstance(v, bool):
            raise ExperimentError(f"{key}: expected true or false, got {v!r}")
        return v

    def choice(self, key: str) -> str:
        return str(self._raw(key))

    def per_node(self, key: str, n: int) -> list[int]:
        """One value per node, as the model reads it: a list (``[150, 100]``) gives the
        nodes' values in order (cycled), a single value is shared by all."""
        from chaoslab.params.dists import Empirical

        raw = self._raw(key)
        if isinstance(raw, Empirical):
            return [round(raw.values[i % len(raw.values)]) for i in range(n)]
        if isinstance(raw, list):
            return [int(raw[i % len(raw)]) for i in range(n)]
        return [self.count(key)] * n

    def has(self, key: str) -> bool:
        from chaoslab.params import CATALOGUE

        return key in CATALOGUE or key in self.extra


def fixed_seconds(value: object, key: str) -> float:
    """A daemon takes one number: a parameter given as a distribution cannot configure it."""
    from chaoslab.params.dists import Dist

    if isinstance(value, Dist):
        lo, hi = value.bounds()
        if lo != hi or not math.isfinite(lo):
            raise ExperimentError(
                f"{key} is a distribution ({value.text()}); the lab needs one value"
            )
        return float(lo)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExperimentError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _fmt(seconds: float) -> str:
    """Seconds for a daemon config line: integer when whole."""
    return f"{seconds:g}"


def _ms(seconds: float) -> str:
    """Whole milliseconds with unit (HAProxy and nginx take no fractional values)."""
    return f"{round(seconds * 1000)}ms"


def _last_line(path: str) -> str:
    """The last meaningful line of a daemon's log (why it exited)."""
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    alerts = [ln for ln in lines if "ALERT" in ln or "emerg" in ln or "rror" in ln]
    return (alerts or lines or ["empty log"])[0 if alerts else -1].strip()[:200]


class Topology(ABC):
    """Base class of the lab topologies."""

    design: ClassVar[str] = ""
    #: which processes serve the app (restarted after a pod-kill)
    client_role: ClassVar[str] = "client"

    def __init__(self, state: LabState, spec: LabSpec, params: LabParams, horizon: float) -> None:
        self.state = state
        self.spec = spec
        self.params = params
        #: how long a trial observes after the fault (the experiment's horizon)
        self.horizon = horizon
        #: static routes per namespace role, re-added after a link comes back up
        self.routes: dict[str, list[list[str]]] = state.info.setdefault("routes", {})
        #: the interface a link fault takes down, per node role
        self.uplinks: dict[str, str] = state.info.setdefault("uplinks", {})

    # -- building blocks --------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return Path(self.state.dir)

    def python(self, module: str, *args: str) -> list[str]:
        return ["env", f"PYTHONPATH={_ROOT}", sys.executable, "-u", "-m", module, *args]

    def write(self, name: str, text: str) -> str:
        p = self.dir / name
        p.write_text(text)
        return str(p)

    def attach_node(self, k: int, node: str, ports: list[str]) -> None:
        """Create node namespace ``node`` on the switch ``sw``: eth0 = NODE_NET.k/24."""
        st = self.state
        st.add_ns(node)
        st.veth("sw", node, node, "eth0")
        ports.append(node)
        self.uplinks[node] = "eth0"
        st.ip(node, "addr", "add", f"{NODE_NET}.{k}/24", "dev", "eth0")

    def route(self, role: str, *args: str) -> None:
        self.routes.setdefault(role, []).append(list(args))
        self.state.ip(role, "route", "replace", *args)
        self.state.save()

    def start_server(self, name: str, role: str, port: int, *extra: str, answer: str = "") -> Proc:
        """The HTTP service; it answers with ``answer`` (default: the namespace role)."""
        return self.state.spawn(name, role, self.server_argv(role, port, *extra, answer=answer))

    def server_argv(self, role: str, port: int, *extra: str, answer: str = "") -> list[str]:
        """`start_server`'s command line."""
        return self.python(
            "chaoslab.live.lab.server", "--port", str(port), "--name", answer or role, *extra
        )

    def monitor(self, role: str, what: str) -> Proc:
        """``ip -ts monitor`` in a namespace: address or route events, stamped when read."""
        return self.state.spawn(f"mon-{what}-{role}", role, ["ip", "-ts", "monitor", what])

    def wait_port(self, role: str, host: str, port: int, timeout: float = 10.0) -> None:
        """Wait until something accepts TCP on host:port from inside ``role``."""
        deadline = time.monotonic() + timeout
        code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=0.5).close()"
        argv = ["ip", "netns", "exec", self.state.ns(role), sys.executable, "-c", code]
        while subprocess.run(argv, capture_output=True).returncode != 0:
            dead = [p for p in self.state.procs.values() if not p.alive()]
            if dead or time.monotonic() > deadline:
                why = "; ".join(f"{p.name} exited: {_last_line(p.log)}" for p in dead)
                raise LabError(
                    f"nothing answers on {host}:{port} in {self.state.ns(role)}"
                    + (f" ({why})" if why else "")
                )
            time.sleep(0.1)

    # -- interface for the drill ---------------------------------------------------------------

    @abstractmethod
    def build(self) -> None:
        """Create the namespaces, links and daemons of this topology."""

    @abstractmethod
    def target_url(self) -> str:
        """The URL the prober opens (an address inside the lab)."""

    @abstractmethod
    def rules(self) -> list[Rule]:
        """How daemon log lines become milestones."""

    def ingress_nodes_cluster(self) -> dict[str, object]:
        """The model's cluster for a lab whose nodes are all ingress ('controller') nodes:
        the app pod sits on a node no fault touches, because in the lab the service answers
        on the ingress nodes themselves."""
        return {
            "masters": 0,
            "controllers": len(self.nodes()),
            "computes": 1,
            "replicas": 1,
            "spread": "compute",
        }

    def model_cluster(self) -> dict[str, object] | None:
        """The model's cluster description matching this lab (None: the model's default)."""
        return None

    def nodes(self) -> list[str]:
        return [f"n{i + 1}" for i in range(self.spec.nodes)]

    def log_sources(self) -> dict[str, str]:
        return {name: p.log for name, p in self.state.procs.items() if not name.startswith("probe")}

    def steady_problem(self, recent: pd.DataFrame) -> str | None:
        """Why the lab is not in steady state now (None if it is). ``recent`` are the probe
        records of the last ``trial.steady`` seconds."""
        dead = [
            n for n, p in self.state.procs.items() if not n.startswith("probe") and not p.alive()
        ]
        if dead:
            return f"not running: {', '.join(sorted(dead))}"
        if recent.empty:
            return "no probes yet"
        bad = recent[recent.outcome != "ok"]
        if len(bad):
            return f"{len(bad)} of {len(recent)} probes failed ({bad.outcome.iloc[-1]})"
        return self.extra_steady_problem(recent)

    def extra_steady_problem(self, recent: pd.DataFrame) -> str | None:
        return None

    def resolve_target(self, fault: LabFault, recent: pd.DataFrame) -> str:
        """The node or pod a fault hits, from its target and what the probes see now."""
        t = fault.target
        if t in self.nodes() or t in self.pods():
            return t
        raise ExperimentError(
            f"faults: target {t!r} is not known in design {self.design} "
            f"(nodes {', '.join(self.nodes())})"
        )

    def pods(self) -> list[str]:
        return []

    def milestone_filter(self, fault: LabFault, victim: str, rule: Rule, ev: LogEvent) -> bool:
        """Whether an event counts as this trial's milestone (e.g. the new master, not the
        victim, entering MASTER state)."""
        return True

    # -- faults -----------------------------------------------------------------------------

    def kill(self, names: Sequence[str], sig: int) -> float:
        """Signal processes (and what they forked); return the instant of the first kill."""
        targets: list[int] = []
        for n in names:
            proc = self.state.procs[n]
            pids = proc.all_pids() if sig == signal.SIGKILL else [proc.pid]
            targets.extend(pids)
        if not targets:
            raise LabError(f"{', '.join(names)}: not running, nothing to kill")
        t = time.monotonic()
        if sig == signal.SIGKILL:
            # freeze them all first: keepalived's VRRP child has PR_SET_PDEATHSIG=SIGTERM, so
            # if its parent died first it would shut down gracefully (priority-0 advert, VIP
            # removed) in the microseconds before its own SIGKILL arrived
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return t

    def link(self, role: str, up: bool) -> float:
        """Take a node's uplink down or up; the instant is taken just before the call."""
        ifname = self.uplinks[role]
        t = time.monotonic()
        run(["ip", "-n", self.state.ns(role), "link", "set", ifname, "up" if up else "down"])
        if up:
            # `ip link set down` deletes routes through the link; up does not restore them
            for args in self.routes.get(role, []):
                self.state.ip(role, "route", "replace", *args, check=False)
        return t

    def blackhole(self, role: str, on: bool) -> float:
        """Drop (or stop dropping) all traffic of a namespace in one atomic
        ``iptables-restore --noflush`` batch; the instant is taken just before the call."""
        op = "-I" if on else "-D"
        pos = " 1" if on else ""
        rules = "".join(
            f"{op} {chain}{pos} -m comment --comment chaoslab-blip -j DROP\n"
            for chain in ("INPUT", "OUTPUT", "FORWARD")
        )
        batch = f"*filter\n{rules}COMMIT\n"
        argv = ["ip", "netns", "exec", self.state.ns(role), "iptables-restore", "--noflush"]
        t = time.monotonic()
        r = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise LabError(f"iptables-restore in {self.state.ns(role)}: {r.stderr.strip()}")
        return t

    def daemon_procs(self, daemon: str, victim: str) -> list[str]:
        name = f"{daemon}-{victim}"
        if name not in self.state.procs:
            raise ExperimentError(f"faults: no {daemon} runs on {victim} in design {self.design}")
        return [name]

    def service_procs(self, victim: str) -> list[str]:
        return [f"srv-{victim}"] if f"srv-{victim}" in self.state.procs else []

    def inject(self, fault: LabFault, victim: str) -> float:
        sig = signal.SIGKILL if fault.signal == "KILL" else signal.SIGTERM
        if fault.kind == "daemon-kill":
            assert fault.daemon is not None
            names = self.daemon_procs(fault.daemon, victim)
            if fault.with_service:
                names += self.service_procs(victim)
            return self.kill(names, sig)
        if fault.kind == "pod-kill":
            return self.kill([f"srv-{victim}"], signal.SIGKILL)
        if fault.kind == "link-down":
            t = self.link(victim, up=False)
            if fault.duration is not None:  # carrier comes back: the node knew it was cut off
                time.sleep(max(0.0, t + fault.duration - time.monotonic()))
                self.link(victim, up=True)
            return t
        if fault.kind == "transient-blip":
            # a short loss the node does not see (no carrier change, unlike link-down):
            # every packet in and out of the namespace is dropped, then allowed again
            assert fault.duration is not None
            t = self.blackhole(victim, on=True)
            time.sleep(max(0.0, t + fault.duration - time.monotonic()))
            self.blackhole(victim, on=False)
            return t
        raise ExperimentError(f"fault kind {fault.kind} is not supported by the lab")

    def restore(self, fault: LabFault, victim: str) -> None:
        """Undo a fault: restart what was killed, bring links back up."""
        if fault.kind == "link-down":
            self.link(victim, up=True)
        for name, proc in list(self.state.procs.items()):
            if name.startswith("probe") or proc.alive():
                continue
            self.state.stop(name)  # reap and kill leftovers (a forked child of a daemon)
            for pf in proc.pidfiles:
                with contextlib.suppress(OSError):
                    Path(pf).unlink()
            role = proc.ns.removeprefix(self.state.prefix + "-")
            if proc.enters_ns:
                # started on the host again: the same checks as at the first start
                self.check_enters_ns(role, proc.argv)
            self.state.spawn(
                name, role, proc.argv, pidfiles=proc.pidfiles, enters_ns=proc.enters_ns
            )

    def check_enters_ns(self, role: str, argv: list[str]) -> None:
        """Refuse (LabError) unless ``argv``, started in the host's namespace, is sure to
        enter ``role``'s and to have nothing to send on if it did not. A topology that
        starts such a daemon overrides this; nothing else may."""
        raise LabError(f"{self.design}: no check for a daemon started on the host ({argv[0]})")
