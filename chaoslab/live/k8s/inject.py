"""Fault injection on Kubernetes, and the idempotent undo steps that revert it.

Methods (recorded per trial; they decide which timers run):

- ``api``: ``pod-delete`` is a DELETE with the grace period; ``node-drain`` cordons the
  node and evicts its pods through the Eviction API, which answers 429 while a
  PodDisruptionBudget forbids the eviction (retried, never forced).
- ``pod``: a privileged pod pinned to the node (``nodeName``, host PID and network,
  tolerating every taint) runs the fault on the node itself:
  ``node-crash`` writes to ``/proc/sysrq-trigger`` (reboot, power off or panic; the
  kernel goes down without shutting anything down cleanly); ``kubelet-stop`` stops the
  kubelet through ``nsenter`` into the host and starts it again after ``duration``;
  ``node-partition`` inserts iptables DROP rules (INPUT, OUTPUT, FORWARD; loopback and
  ``partition_exempt_cidrs`` excepted) tagged with the run id and deletes them after
  ``duration`` — from the node, so the partition heals even if chaoslab dies or cannot
  reach the node; ``pod-kill`` SIGKILLs the container's main process from the host PID
  namespace (found by its container id in ``/proc/*/cgroup``), because a SIGKILL from
  inside the container's own PID namespace to its PID 1 is ignored by the kernel.
- ``hook``: the operator's command with ``{node}``, ``{address}``, ``{pod}``,
  ``{namespace}``, ``{container_id}``, ``{duration}`` filled in (``virsh destroy {node}``,
  ``docker stop {node}`` for kind, an ssh command ...). Its ``recover`` command is the
  undo step (power on).

Every change is announced in the journal with its undo step before it is made.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaoslab.errors import LiveError
from chaoslab.live import hookreaper
from chaoslab.live.journal import Journal, UndoStep
from chaoslab.live.k8s.discover import Discovery, NodeInfo, PodInfo, node_info, pod_info
from chaoslab.live.k8s.kube import Kube, KubeError, parse_time
from chaoslab.live.k8s.spec import CONTROL_PLANE_FAULTS, NODE_FAULTS, FaultSpec, LiveSpec

__all__ = [
    "MANAGED_BY",
    "DrillRefused",
    "HookFailed",
    "InjectionError",
    "Injector",
    "Target",
    "chaos_pod",
    "choose_target",
    "run_undo",
]

Obj = dict[str, Any]
MANAGED_BY = "chaoslab"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


class InjectionError(LiveError):
    """The fault could not be injected (the trial is aborted and rolled back)."""


class HookFailed(InjectionError):
    """The operator's hook command failed or timed out."""


class DrillRefused(LiveError):
    """The plan breaks a safety rule (control-plane node, too many nodes ...)."""


@dataclass(frozen=True)
class Target:
    node: NodeInfo | None
    pod: PodInfo | None
    #: pods of the workload the fault hits directly (on the node, or the pod itself)
    affected: tuple[str, ...]

    #: a control-plane fault's component (``kube-controller-manager``, ``kube-apiserver``)
    component: str = ""

    @property
    def label(self) -> str:
        if self.component:
            return self.component
        return (
            self.pod.name if self.pod and not self.node else (self.node.name if self.node else "")
        )


#: the component a control-plane fault stops
COMPONENTS = {
    "controller-manager-restart": "kube-controller-manager",
    "apiserver-down": "kube-apiserver",
}


def choose_target(kube: Kube, spec: LiveSpec, disc: Discovery, rng: random.Random) -> Target:
    """Resolve the fault's target now (pods move between trials) and apply the safety rules."""
    f, t = spec.fault, spec.fault.target
    if f.kind in CONTROL_PLANE_FAULTS:
        return Target(None, None, (), COMPONENTS[f.kind])
    ns = spec.namespace
    pods = [
        pod_info(p)
        for p in kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=disc.selector)["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    nodes = {n.name: n for n in (node_info(x) for x in kube.get("/api/v1/nodes")["items"])}
    ready_pods = sorted((p for p in pods if p.ready and p.node), key=lambda p: p.name)
    node: NodeInfo | None = None
    pod: PodInfo | None = None
    if t.pod is not None:
        pod = next((p for p in pods if p.name == t.pod), None)
        if pod is None:
            raise DrillRefused(
                f"pod {t.pod} is not a live pod of {disc.workload_kind}/{disc.workload_name}"
            )
    elif t.node is not None:
        if t.node not in nodes:
            raise DrillRefused(f"no node named {t.node}")
        node = nodes[t.node]
    elif t.select == "app-pod":
        if not ready_pods:
            raise DrillRefused("no Ready pod of the workload to target")
        pod = rng.choice(ready_pods)
    elif t.select == "app-pod-node":
        cands = sorted({p.node for p in ready_pods if not nodes[p.node].control_plane})
        if not cands:
            raise DrillRefused("no worker node runs a Ready pod of the workload")
        node = nodes[rng.choice(cands)]
    elif t.select == "idle-node":
        busy = {p.node for p in pods}
        cands = sorted(
            n.name
            for n in nodes.values()
            if n.ready and not n.control_plane and not n.unschedulable and n.name not in busy
        )
        if not cands:
            raise DrillRefused("no Ready schedulable worker without a pod of the workload")
        node = nodes[rng.choice(cands)]
    elif t.select == "vip-holder":
        holder, how = vip_holder(kube, spec)
        if holder is None:
            raise DrillRefused(f"cannot tell which node holds the VIP: {how}")
        if holder not in nodes:
            raise DrillRefused(f"the VIP holder {holder!r} ({how}) is not a node")
        node = nodes[holder]
    else:  # ingress-node
        ins = t.ingress_namespace or ns
        ing = [
            pod_info(p)
            for p in kube.get(f"/api/v1/namespaces/{ins}/pods", labelSelector=t.ingress_selector)[
                "items"
            ]
        ]
        cands = sorted({p.node for p in ing if p.ready and p.node})
        if not cands:
            raise DrillRefused(f"no Ready pod matches {t.ingress_selector} in {ins}")
        node = nodes[rng.choice(cands)]
    if f.kind in NODE_FAULTS:
        assert node is not None
        if node.control_plane and not spec.limits.allow_control_plane:
            raise DrillRefused(
                f"{node.name} is a control-plane node; set "
                "limits.allow_control_plane: true to allow it"
            )
        if not node.ready:
            raise DrillRefused(f"{node.name} is not Ready before the fault")
        faulted = [n for n in nodes.values() if not n.ready or n.unschedulable]
        if len(faulted) + 1 > spec.limits.max_nodes:
            raise DrillRefused(
                f"{len(faulted)} node(s) already NotReady or cordoned "
                f"({', '.join(n.name for n in faulted)}); faulting {node.name} too exceeds "
                f"limits.max_nodes = {spec.limits.max_nodes}"
            )
        affected = tuple(p.name for p in pods if p.node == node.name)
        return Target(node, None, affected)
    assert pod is not None
    return Target(nodes.get(pod.node), pod, (pod.name,))


def vip_holder(kube: Kube, spec: LiveSpec) -> tuple[str | None, str]:
    """(node holding the Service's VIP or None, how that was read or why it could not be)."""
    t = spec.fault.target
    if t.vip_lease:
        lns, lname = t.vip_lease.split("/")
        lease = kube.get_or_none(f"/apis/coordination.k8s.io/v1/namespaces/{lns}/leases/{lname}")
        if lease is None:
            return None, f"no Lease {t.vip_lease}"
        holder = (lease.get("spec") or {}).get("holderIdentity")
        return (holder or None), f"Lease {t.vip_lease} holderIdentity"
    # MetalLB (layer 2) records the announcing node as an event on the Service
    evs = kube.get(
        f"/api/v1/namespaces/{spec.namespace}/events",
        fieldSelector=f"involvedObject.name={spec.service},reason=nodeAssigned",
    )["items"]
    evs.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    for e in reversed(evs):
        m = re.search(r'node "([^"]+)"', e.get("message", ""))
        if m:
            return m.group(1), "MetalLB nodeAssigned event on the Service"
    return None, "no Lease given (target.vip_lease) and no MetalLB nodeAssigned event"


# ------------------------------------------------------------------ chaos pod scripts


def _partition_script(tag: str, duration: float, exempt: list[str], arm: float = 0.0) -> str:
    ipt = "nsenter -t 1 -m -n -- iptables"
    rules = ["INPUT -j DROP", "OUTPUT -j DROP", "FORWARD -j DROP"]
    accept = ["INPUT -i lo -j ACCEPT", "OUTPUT -o lo -j ACCEPT"]
    for c in exempt:
        q = shlex.quote(c)
        accept += [f"INPUT -s {q} -j ACCEPT", f"OUTPUT -d {q} -j ACCEPT"]
    com = f"-m comment --comment {tag}"
    # inserted at position 1 in this order: the ACCEPTs end up above the DROPs
    add = "; ".join(
        f"{ipt} -I {r.split(' ', 1)[0]} 1 {r.split(' ', 1)[1]} {com}" for r in rules + accept
    )
    delete = " ; ".join(
        f"while {ipt} -D {r.split(' ', 1)[0]} {r.split(' ', 1)[1]} {com} 2>/dev/null; do :; done"
        for r in accept + rules
    )
    return (
        f"heal() {{ {delete}; echo healed; }}\n"
        "trap 'heal; exit 0' TERM INT\n"
        f"sleep {arm:g}\n"
        f"{add}\n"
        "echo partitioned\n"
        f"sleep {duration:g} & wait $!\n"
        "heal\n"
    )


def _kubelet_script(duration: float, arm: float = 0.0) -> str:
    host = "nsenter -t 1 -m -u -i -n -p --"
    return (
        f"start() {{ {host} systemctl start kubelet; echo kubelet started; }}\n"
        f"sleep {arm:g}\n"
        "trap 'start; exit 0' TERM INT\n"
        f"{host} systemctl stop kubelet\n"
        "echo kubelet stopped\n"
        f"sleep {duration:g} & wait $!\n"
        "start\n"
    )


_SYSRQ = {"reboot": "b", "poweroff": "o", "panic": "c"}


def _crash_script(mode: str, arm: float = 0.0, tag: str = "chaoslab") -> str:
    # After a reboot the kubelet must not run this again and crash the node in a loop:
    # restartPolicy Never says so, and a marker on the host's disk (synced before the
    # crash) makes a second run exit without acting, whatever the kubelet does.
    marker = shlex.quote(f"/var/lib/chaoslab/{tag}.crashed")
    host = "nsenter -t 1 -m --"
    return (
        f"if {host} test -e {marker}; then echo 'already crashed once: not again'; exit 0; fi\n"
        f"{host} mkdir -p /var/lib/chaoslab\n"
        f"{host} touch {marker}\n"
        f"{host} sync\n"
        f"{host} test -e {marker} || {{ echo 'cannot write the marker: not crashing'; exit 1; }}\n"
        f"sleep {arm:g}\n"
        "echo 1 > /proc/sys/kernel/sysrq\n"
        f"echo crashing node: sysrq {mode}\n"
        f"echo {_SYSRQ[mode]} > /proc/sysrq-trigger\n"
        "sleep 3600\n"
    )


def _kill_script(container_id: str, arm: float = 0.0) -> str:
    # the container's main process: in the container's cgroup, with a parent outside it
    cid = shlex.quote(container_id)
    return (
        f"CID={cid}\n"
        f"sleep {arm:g}\n"
        "for d in /proc/[0-9]*; do\n"
        '  grep -q "$CID" "$d/cgroup" 2>/dev/null || continue\n'
        "  pp=$(awk '/^PPid:/{print $2}' \"$d/status\" 2>/dev/null)\n"
        '  grep -q "$CID" "/proc/$pp/cgroup" 2>/dev/null && continue\n'
        '  echo "SIGKILL ${d#/proc/}"; kill -9 "${d#/proc/}"; exit 0\n'
        "done\n"
        'echo "no process of container $CID on this node" >&2; exit 1\n'
    )


def chaos_pod(
    *,
    name: str,
    namespace: str,
    node: str,
    action: str,
    image: str,
    script: str,
    run_id: str,
    duration: float | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    ann = dict(annotations or {})
    if duration is not None:
        ann["chaoslab.io/duration"] = f"{duration:g}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "chaoslab.io/run": run_id,
                "chaoslab.io/action": action,
            },
            "annotations": ann,
        },
        "spec": {
            "nodeName": node,  # bypasses the scheduler: runs even on a cordoned node
            "hostPID": True,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "chaos",
                    "image": image,
                    "command": ["sh", "-c", script],
                    "securityContext": {"privileged": True},
                }
            ],
        },
    }


# ------------------------------------------------------------------ hooks


def render(argv: list[str], values: dict[str, str]) -> list[str]:
    try:
        return [a.format(**values) for a in argv]
    except (KeyError, IndexError, ValueError) as e:
        raise InjectionError(f"hook template {argv!r}: unknown or bad placeholder {e}") from None


def run_hook(argv: list[str], timeout: float) -> str:
    """Run an operator's hook in its own session: the terminal's Ctrl-C reaches chaoslab
    (which finishes its rollback first), never the hook. A hook past its timeout, or one
    chaoslab is interrupted in, is killed with its whole process group; so is one still
    running when chaoslab is killed (`chaoslab.live.hookreaper`)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        raise HookFailed(f"hook command not found: {argv[0]}") from None
    except OSError as e:
        raise HookFailed(f"hook {argv[0]} cannot start: {e.strerror or e}") from None
    hookreaper.watch(proc.pid)  # its group id is its pid: its own session
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise HookFailed(f"hook {argv[0]} did not finish within {timeout:g}s") from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        hookreaper.forget(proc.pid)
    if proc.returncode != 0:
        lines = (err or out).strip().splitlines()
        raise HookFailed(
            f"hook {argv[0]} exited {proc.returncode}: {lines[-1][:200] if lines else 'no output'}"
        )
    return out.strip()[-500:]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the hook's process group (its id is the hook's pid: its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def heartbeat(kube: Kube, node: str) -> tuple[float, float]:
    """The node's last signs of life: its Lease's renewTime and its Ready condition's
    lastHeartbeatTime (server clock, POSIX seconds; -inf when the API has none)."""
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    try:
        lease = kube.get_or_none(lease_path)
    except KubeError as e:
        if e.status != 403:  # no RBAC for leases: the Ready condition's heartbeat only
            raise
        lease = None
    renew = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
    n = kube.get_or_none(f"/api/v1/nodes/{node}")
    conds = ((n or {}).get("status") or {}).get("conditions") or []
    beat = next(
        (parse_time(c.get("lastHeartbeatTime")) for c in conds if c.get("type") == "Ready"), None
    )
    return (-math.inf if renew is None else renew, -math.inf if beat is None else beat)


# ------------------------------------------------------------------ injection


@dataclass
class Injector:
    kube: Kube
    spec: LiveSpec
    journal: Journal
    run_id: str
    trial: int
    target: Target
    log: Callable[[str], None] = print
    details: dict[str, Any] = field(default_factory=dict)
    _drain: threading.Thread | None = None
    _drain_error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    #: the drain's first accepted eviction: (start of its POST, its round trip)
    _evicted: tuple[float, float] | None = None
    _first_eviction: threading.Event = field(default_factory=threading.Event)
    #: the fault's with: effect, run by its hook in the background
    _second: threading.Thread | None = None
    _second_error: BaseException | None = None
    #: the with: hook's output once it finished, and when (local monotonic)
    second_output: str | None = None
    second_end: float = math.nan

    def stop(self, timeout: float) -> None:
        """Stop background work (the drain's evictions, a with: effect not started yet)
        before a rollback undoes it; a with: hook that runs is waited for (its timeout
        bounds it)."""
        self._stop.set()
        if self._drain is not None:
            self._drain.join(timeout)
        hook = self.fault.with_hook
        if self._second is not None and hook is not None:
            self._second.join(hook.timeout + timeout)

    @property
    def second_done(self) -> bool:
        """No with: effect, or its hook has finished."""
        return self._second is None or not self._second.is_alive()

    @property
    def fault(self) -> FaultSpec:
        return self.spec.fault

    def _values(self) -> dict[str, str]:
        t = self.target
        return {
            "node": t.node.name if t.node else "",
            "address": t.node.address if t.node else "",
            "pod": t.pod.name if t.pod else "",
            "namespace": self.spec.namespace,
            "container_id": t.pod.container_id if t.pod else "",
            "duration": f"{self.fault.duration:g}" if self.fault.duration else "",
            "at": "",
        }

    def inject(self) -> float:
        """Inject the fault; returns the local monotonic time of the fault instant."""
        f = self.fault
        self.journal.write(
            "inject.start",
            trial=self.trial,
            fault=f.kind,
            method=f.method,
            node=self.target.node.name if self.target.node else None,
            pod=self.target.pod.name if self.target.pod else None,
        )
        if f.method == "hook":
            return self._hook()
        if f.kind == "pod-delete":
            return self._pod_delete()
        if f.kind == "node-drain":
            return self._node_drain()
        return self._chaos_pod()

    def start_second(self, t0: float) -> None:
        """The with: effect by its hook, ``with_delay`` after the fault instant ``t0``
        (recover hook journaled first), in a thread: the trial is observed meanwhile. A
        hook that takes ``{at}`` (that instant on CLOCK_MONOTONIC) starts now and waits
        itself, so its start-up does not delay the effect; any other starts at ``{at}``."""
        if self.fault.with_ in (None, "none"):
            return
        hook = self.fault.with_hook
        assert hook is not None and hook.inject is not None
        delay = self.fault.with_delay or 0.0
        at = t0 + delay
        vals = {**self._values(), "at": f"{at:.6f}"}
        argv = render(hook.inject, vals)
        if hook.recover:
            step = {"op": "hook", "argv": render(hook.recover, vals), "timeout": hook.timeout}
            self.journal.add_undo(step, trial=self.trial)
        waits_itself = any("{at}" in a for a in hook.inject)

        def run() -> None:
            start = time.monotonic() if waits_itself else at
            if self._stop.wait(max(0.0, start - time.monotonic())):
                return  # the trial ended first
            try:
                self.second_output = run_hook(argv, hook.timeout)
                self.second_end = time.monotonic()
                self.journal.write(
                    "inject.with_done", trial=self.trial, argv=argv, output=self.second_output
                )
            except BaseException as e:  # reported by check() in the observing thread
                self._second_error = e

        self.details.update(with_hook=json.dumps(argv), with_delay_s=delay)
        self._second = threading.Thread(target=run, name="chaoslab-with", daemon=True)
        self._second.start()

    def _hook(self) -> float:
        hook = self.fault.hook
        assert hook is not None
        vals = self._values()
        assert hook.inject is not None
        argv = render(hook.inject, vals)
        # undo runs newest first: power on, then wait for the node
        node = self.target.node.name if self.target.node is not None else None
        if node is not None and self.fault.kind in NODE_FAULTS:
            self.journal.add_undo(
                {"op": "wait-node-ready", "node": node, "trial": self.trial}, trial=self.trial
            )
        if hook.recover:
            step = {"op": "hook", "argv": render(hook.recover, vals), "timeout": hook.timeout}
            if node is not None:  # wait-node-ready waits for a heartbeat newer than it
                step.update(node=node, trial=self.trial)
            self.journal.add_undo(step, trial=self.trial)
        t0 = time.monotonic()
        out = run_hook(argv, hook.timeout)
        # the fault happened while the command ran: t0 is its start (the earliest instant)
        self.details.update(
            hook=json.dumps(argv), hook_output=out, t0_uncertainty_s=time.monotonic() - t0
        )
        self.journal.write("inject.done", trial=self.trial, method="hook", argv=argv, output=out)
        return t0

    def _pod_delete(self) -> float:
        pod = self.target.pod
        assert pod is not None
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if self.fault.grace_period is not None:
            body["gracePeriodSeconds"] = round(self.fault.grace_period)
        t0 = time.monotonic()
        self.kube.delete(f"/api/v1/namespaces/{self.spec.namespace}/pods/{pod.name}", body)
        self.details["t0_uncertainty_s"] = time.monotonic() - t0  # one round trip
        self.journal.write(
            "inject.done",
            trial=self.trial,
            method="api",
            deleted=pod.name,
            grace=body.get("gracePeriodSeconds"),
        )
        return t0

    def _chaos_pod(self) -> float:
        f, t = self.fault, self.target
        assert f.image is not None and f.arm is not None
        arm = f.arm
        ns = self.spec.chaos_namespace or self.spec.namespace
        if f.kind == "pod-kill":
            assert t.pod is not None
            if not t.pod.container_id:
                raise InjectionError(f"pod {t.pod.name} reports no containerID yet")
            node = t.pod.node
            script = _kill_script(t.pod.container_id, arm)
            ann = {
                "chaoslab.io/target-pod": t.pod.name,
                "chaoslab.io/target-namespace": self.spec.namespace,
            }
        else:
            assert t.node is not None
            node = t.node.name
            ann = {"chaoslab.io/target-node": node}
            if f.kind == "node-crash":
                script = _crash_script(f.crash, arm, f"{self.run_id}-t{self.trial}")
            elif f.kind == "kubelet-stop":
                assert f.duration is not None
                script = _kubelet_script(f.duration, arm)
            else:
                assert f.duration is not None
                script = _partition_script(
                    f"chaoslab-{self.run_id}", f.duration, f.partition_exempt_cidrs, arm
                )
        name = f"chaoslab-{self.run_id}-t{self.trial}-{f.kind}"[:63].rstrip("-")
        ann["chaoslab.io/arm"] = f"{arm:g}"
        body = chaos_pod(
            name=name,
            namespace=ns,
            node=node,
            action=f.kind,
            image=f.image,
            script=script,
            run_id=self.run_id,
            duration=f.duration,
            annotations=ann,
        )
        # undo runs newest first: remove the chaos pod, power on, wait for the node
        if t.node is not None and f.kind in NODE_FAULTS:
            mine = {"node": t.node.name, "trial": self.trial}
            self.journal.add_undo({"op": "wait-node-ready", **mine}, trial=self.trial)
            if f.hook and f.hook.recover:
                argv = render(f.hook.recover, self._values())
                self.journal.add_undo(
                    {"op": "hook", "argv": argv, "timeout": f.hook.timeout, **mine},
                    trial=self.trial,
                )
        self.journal.add_undo({"op": "delete-pod", "namespace": ns, "name": name}, trial=self.trial)
        self.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
        self.journal.write("inject.pod_created", trial=self.trial, pod=name, node=node)
        # The script sleeps `arm` seconds after its container starts, then acts: the kubelet
        # reports Running during that sleep (a node that crashes at once might never
        # report it). The container started in [startedAt, startedAt + 1 s) (server time,
        # whole seconds) and no later than we saw it Running, so the fault instant is
        # bounded; t0 is the earliest possible instant (so no effect of the fault is ever
        # counted as before it), the width of the bound is recorded.
        seen, pod = self._wait_running(ns, name, node)
        assert f.arm is not None
        started = None
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            started = self.kube.clock.to_local(
                parse_time(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
            )
        hi = min(seen, started + 1.0) if started is not None else seen
        lo = min(started, hi) if started is not None else hi
        t0 = lo + f.arm
        self.details.update(chaos_pod=name, chaos_node=node, t0_uncertainty_s=hi - lo)
        self.journal.write(
            "inject.armed",
            trial=self.trial,
            pod=name,
            seen_running=seen,
            fault_at=t0,
            uncertainty=hi - lo,
        )
        time.sleep(max(0.0, hi + f.arm - time.monotonic()))  # the fault has happened now
        self.journal.write("inject.done", trial=self.trial, method="pod", pod=name)
        return t0

    def _wait_running(self, ns: str, name: str, node: str) -> tuple[float, Obj]:
        """Watch the chaos pod until it runs; (local time it was seen Running, pod)."""
        path = f"/api/v1/namespaces/{ns}/pods"
        deadline = time.monotonic() + self.spec.limits.trial_timeout
        while time.monotonic() < deadline:
            lst = self.kube.get(path, fieldSelector=f"metadata.name={name}")
            items = lst.get("items") or []
            pod = items[0] if items else None
            if pod is None:
                raise InjectionError(f"chaos pod {name} on {node} is gone")
            while True:
                phase = (pod.get("status") or {}).get("phase", "")
                if phase in ("Running", "Succeeded"):
                    return time.monotonic(), pod
                if phase == "Failed":
                    raise InjectionError(f"chaos pod {name} on {node} failed before the fault")
                break
            rv = (lst.get("metadata") or {}).get("resourceVersion", "")
            left = max(1, int(min(deadline - time.monotonic(), 60)))
            try:
                for ev in self.kube.watch_lines(
                    path,
                    {
                        "fieldSelector": f"metadata.name={name}",
                        "resourceVersion": rv,
                        "timeoutSeconds": str(left),
                    },
                    left + self.spec.api_timeout,
                    self._stop,
                ):
                    obj = ev.get("object") or {}
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        phase = (obj.get("status") or {}).get("phase", "")
                        if phase in ("Running", "Succeeded"):
                            return time.monotonic(), obj
                        if phase == "Failed":
                            raise InjectionError(
                                f"chaos pod {name} on {node} failed before the fault"
                            )
                    elif ev.get("type") == "DELETED":
                        raise InjectionError(f"chaos pod {name} on {node} was deleted")
            except KubeError:
                time.sleep(self.spec.poll)  # the watch failed: list again
            except OSError:
                time.sleep(self.spec.poll)
            if self._stop.is_set():
                break
        raise InjectionError(f"chaos pod {name} never started on {node}")

    # -------------------------------------------------------------- drain
    def _node_drain(self) -> float:
        node = self.target.node
        assert node is not None
        n = self.kube.get(f"/api/v1/nodes/{node.name}")
        if not (n.get("spec") or {}).get("unschedulable"):
            self.journal.add_undo({"op": "uncordon", "node": node.name}, trial=self.trial)
        t_cordon = time.monotonic()
        self.kube.merge_patch(f"/api/v1/nodes/{node.name}", {"spec": {"unschedulable": True}})
        self.details["t0_uncertainty_s"] = time.monotonic() - t_cordon  # one round trip
        self.journal.write("inject.cordoned", trial=self.trial, node=node.name)
        self._drain = threading.Thread(
            target=self._evict_all, args=(node.name,), name="chaoslab-drain", daemon=True
        )
        self._drain.start()
        # The fault is the first eviction, as in the model (cordon and evict at one
        # instant): listing the node's pods and the POST took 0.1-0.7 s on a loaded
        # machine, which no controller spends. Blocked by a PDB past eviction_timeout (or
        # nothing to evict), the cordon stays the instant.
        f = self.fault
        assert f.eviction_timeout is not None
        self._first_eviction.wait(f.eviction_timeout)
        if self._evicted is None:
            return t_cordon
        t0, rtt = self._evicted
        self.details.update(t0_uncertainty_s=rtt, t0_cordon_s=t_cordon - t0)
        return t0

    def _evict_all(self, node: str) -> None:
        try:
            pods = self.kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={node}")["items"]
            todo = []
            for p in pods:
                md = p["metadata"]
                owners = md.get("ownerReferences") or []
                if any(o.get("kind") == "DaemonSet" for o in owners):
                    continue  # kubectl drain --ignore-daemonsets: they would come right back
                if "kubernetes.io/config.mirror" in (md.get("annotations") or {}):
                    continue  # static pods cannot be evicted
                if (md.get("labels") or {}).get("app.kubernetes.io/managed-by") == MANAGED_BY:
                    continue
                todo.append((md["namespace"], md["name"]))
            f = self.fault
            assert f.eviction_timeout is not None and f.eviction_retry is not None
            deadline = time.monotonic() + f.eviction_timeout
            while todo and not self._stop.is_set():
                left = []
                for ns, name in todo:
                    if self._stop.is_set():
                        return
                    body = {
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": name, "namespace": ns},
                    }
                    try:
                        t = time.monotonic()
                        self.kube.request(
                            "POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body=body
                        )
                        if self._evicted is None:
                            self._evicted = (t, time.monotonic() - t)
                            self._first_eviction.set()
                        self.journal.write("drain.evicted", trial=self.trial, pod=f"{ns}/{name}")
                    except KubeError as e:
                        if e.status == 404:
                            continue
                        if e.status == 429:  # a PodDisruptionBudget says not now
                            left.append((ns, name))
                            continue
                        raise
                if left:
                    if time.monotonic() > deadline:
                        self.journal.write(
                            "drain.gave_up", trial=self.trial, pods=[f"{a}/{b}" for a, b in left]
                        )
                        return
                    self.journal.write(
                        "drain.blocked_by_pdb", trial=self.trial, pods=[f"{a}/{b}" for a, b in left]
                    )
                    if self._stop.wait(f.eviction_retry):
                        self.journal.write("drain.stopped", trial=self.trial, node=node)
                        return
                todo = left
            if not self._stop.is_set():
                self.journal.write("drain.done", trial=self.trial, node=node)
        except BaseException as e:  # surfaced by the drill loop
            self._drain_error = e
            self.journal.write("drain.error", trial=self.trial, error=str(e))
        finally:
            self._first_eviction.set()  # inject waits for it: never past the drain's end

    def taint_out_of_service(self) -> None:
        """Taint the faulted node out-of-service (undo journaled first): the API server
        then force-deletes its pods, as an operator does after a node was lost."""
        node = self.target.node
        assert node is not None
        self.journal.add_undo(
            {"op": "remove-taint", "node": node.name, "key": OUT_OF_SERVICE}, trial=self.trial
        )
        for _ in range(self.spec.api_retries + 1):
            n = self.kube.get(f"/api/v1/nodes/{node.name}")
            taints = list((n.get("spec") or {}).get("taints") or [])
            if any(t.get("key") == OUT_OF_SERVICE for t in taints):
                return
            taints.append({"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"})
            try:
                self.kube.merge_patch(
                    f"/api/v1/nodes/{node.name}",
                    {
                        "metadata": {"resourceVersion": n["metadata"]["resourceVersion"]},
                        "spec": {"taints": taints},
                    },
                )
            except KubeError as e:
                if e.status == 409:  # the node controller changed the node meanwhile
                    continue
                raise
            self.journal.write("inject.out_of_service", trial=self.trial, node=node.name)
            return
        raise InjectionError(f"could not taint {node.name} out-of-service (conflicts)")

    def check(self) -> None:
        """Raise what a background part of the injection hit (drain errors)."""
        if self._drain_error is not None:
            err, self._drain_error = self._drain_error, None
            raise InjectionError(f"drain failed: {err}")
        if self._second_error is not None:
            err, self._second_error = self._second_error, None
            raise InjectionError(f"with: {self.fault.with_}: {err}")


# ------------------------------------------------------------------ undo


def run_undo(
    kube: Kube | None,
    journal: Journal,
    step: UndoStep,
    *,
    node_ready_timeout: float,
    poll: float,
    log: Callable[[str], None] = print,
) -> bool:
    """Run one undo step; True when done (journaled), False when it must be retried."""
    s = step.step
    op = s["op"]
    try:
        if op == "hook":
            return _undo_hook(kube, journal, step)
        if kube is None:
            log(f"  cannot {op} without the API (step {step.id})")
            return False
        if op == "uncordon":
            n = kube.get_or_none(f"/api/v1/nodes/{s['node']}")
            if n is not None and (n.get("spec") or {}).get("unschedulable"):
                kube.merge_patch(f"/api/v1/nodes/{s['node']}", {"spec": {"unschedulable": None}})
            journal.undo_done(step.id, op=op, node=s["node"])
            return True
        if op == "delete-pod":
            kube.delete(
                f"/api/v1/namespaces/{s['namespace']}/pods/{s['name']}",
                {"kind": "DeleteOptions", "apiVersion": "v1"},
            )
            journal.undo_done(step.id, op=op, pod=s["name"])
            return True
        if op == "remove-taint":
            n = kube.get_or_none(f"/api/v1/nodes/{s['node']}")
            if n is not None:
                taints = (n.get("spec") or {}).get("taints") or []
                keep = [t for t in taints if t.get("key") != s["key"]]
                if len(keep) != len(taints):
                    kube.merge_patch(
                        f"/api/v1/nodes/{s['node']}",
                        {
                            "metadata": {"resourceVersion": n["metadata"]["resourceVersion"]},
                            "spec": {"taints": keep},
                        },
                    )
            journal.undo_done(step.id, op=op, node=s["node"], key=s["key"])
            return True
        if op == "wait-node-ready":
            return _wait_node_ready(kube, journal, step, node_ready_timeout, poll, log)
        journal.write("undo.unknown", id=step.id, op=op)
        return False
    except (KubeError, InjectionError) as e:
        journal.write("undo.failed", id=step.id, op=op, error=str(e))
        log(f"  undo {op} failed: {e}")
        return False


def _undo_hook(kube: Kube | None, journal: Journal, step: UndoStep) -> bool:
    """Run a recover hook; for a node's hook, journal first the node's heartbeat from
    before it: what `wait-node-ready` must see exceeded, whether the hook works or not."""
    s = step.step
    if kube is not None and s.get("node"):
        with contextlib.suppress(KubeError):
            before = heartbeat(kube, s["node"])
            journal.write(
                "undo.start",
                id=step.id,
                op="hook",
                node=s["node"],
                trial=s.get("trial"),
                heartbeat_before=list(before),
            )
    out = run_hook(list(s["argv"]), float(s["timeout"]))
    journal.undo_done(step.id, op="hook", output=out)
    return True


def _baseline(kube: Kube, journal: Journal, s: dict[str, Any]) -> tuple[float, float]:
    """The heartbeat the node must beat: the one its trial's recover hook started from,
    else the one it has now (a Ready read moments after a crash is stale, not a return)."""
    for e in reversed(journal.entries()):
        mine = e.get("node") == s["node"] and e.get("trial") == s.get("trial")
        if e.get("event") == "undo.start" and e.get("op") == "hook" and mine:
            lease, beat = e["heartbeat_before"]  # -inf is kept as "-inf": float reads it
            return float(lease), float(beat)
    return heartbeat(kube, s["node"])


def _wait_node_ready(
    kube: Kube,
    journal: Journal,
    step: UndoStep,
    timeout: float,
    poll: float,
    log: Callable[[str], None],
) -> bool:
    """Done when the node is Ready with a heartbeat (Lease renewal or Ready condition)
    newer than the undo; a node that is gone is done too."""
    s = step.step
    lease0, beat0 = _baseline(kube, journal, s)
    deadline = time.monotonic() + timeout
    while True:
        n = kube.get_or_none(f"/api/v1/nodes/{s['node']}")
        if n is None:
            journal.undo_done(step.id, op="wait-node-ready", node=s["node"], gone=True)
            return True
        lease, beat = heartbeat(kube, s["node"])
        if node_info(n).ready and (lease > lease0 or beat > beat0):
            journal.undo_done(step.id, op="wait-node-ready", node=s["node"])
            return True
        if time.monotonic() > deadline:
            journal.write(
                "attention",
                node=s["node"],
                message=f"node {s['node']} has not been Ready with a fresh heartbeat; power "
                "it on or repair it, then run chaoslab drill --recover RUN_DIR",
            )
            log(f"  node {s['node']} is still not back (needs attention)")
            return False
        time.sleep(poll)
