"""Network namespaces, veth links, daemons and the on-disk state that lets ``down`` clean up.

Everything a lab creates lives inside network namespaces whose names start with the lab's
prefix: the "switch" is a bridge inside its own namespace, every veth pair has both ends in
lab namespaces, and no namespace gets a route to the outside. Deleting the namespaces
therefore deletes every link and address; processes are killed first, by PID only (the PIDs
recorded at start, plus whatever ``ip netns pids`` still finds inside a lab namespace), each
checked against its recorded start time so that a reused PID is never hit.

State is written to ``/run/chaoslab-lab/<name>/state.json`` before anything is created and
updated after every step, so ``chaoslab lab down`` can undo what a crashed run left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from chaoslab.errors import LiveError

__all__ = [
    "STATE_ROOT",
    "LabError",
    "LabState",
    "Proc",
    "cleanup",
    "descendants",
    "kill_pid",
    "list_labs",
    "namespaces_with_prefix",
    "netns_pids",
    "pid_alive",
    "run",
    "state_root",
]

#: where labs record their state; ``CHAOSLAB_LAB_STATE`` moves it (tests use a private one)
STATE_ROOT = Path("/run/chaoslab-lab")


def state_root() -> Path:
    return Path(os.environ.get("CHAOSLAB_LAB_STATE", str(STATE_ROOT)))


class LabError(LiveError):
    """A lab step failed; the message says which command and why."""


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 20.0) -> str:
    """Run a command (no shell); return stdout, raise LabError with its stderr on failure."""
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is not installed (run ./install.sh)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from None
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def _start_time(pid: int) -> int | None:
    """Process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[19])


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def pid_alive(pid: int, start: int | None = None) -> bool:
    st = _start_time(pid)
    if st is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        if state[state.rfind(")") + 2] == "Z":
            return False
    except OSError:
        return False
    return start is None or st == start


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (keepalived forks its VRRP child, nginx its workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            pp = _ppid(int(d.name))
            if pp is not None:
                children.setdefault(pp, []).append(int(d.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_pid(pid: int, sig: int = signal.SIGKILL, start: int | None = None) -> bool:
    """Signal one process if it is still the process we started; True if signalled."""
    if not pid_alive(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()]


@dataclass
class Proc:
    """A process the lab started: its PID and start time identify it for the kill."""

    name: str
    ns: str
    pid: int
    start: int | None
    argv: list[str]
    log: str
    pidfiles: list[str] = field(default_factory=list)
    #: started in the host's namespace, entering ``ns`` itself (`LabState.spawn`)
    enters_ns: bool = False

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start)

    def all_pids(self) -> list[int]:
        """The process, its descendants, and PIDs its own pid files name (daemons that fork)."""
        pids = [self.pid, *descendants(self.pid)] if self.alive() else []
        for pf in self.pidfiles:
            with contextlib.suppress(OSError, ValueError, IndexError):
                p = int(Path(pf).read_text().split()[0])
                if p not in pids and pid_alive(p) and p in netns_pids_cached(self.ns):
                    pids.append(p)
        return pids


_NS_PIDS_CACHE: dict[str, tuple[float, list[int]]] = {}


def netns_pids_cached(ns: str) -> list[int]:
    now = time.monotonic()
    hit = _NS_PIDS_CACHE.get(ns)
    if hit and now - hit[0] < 0.2:
        return hit[1]
    pids = netns_pids(ns)
    _NS_PIDS_CACHE[ns] = (now, pids)
    return pids


@dataclass
class LabState:
    """What one lab created, persisted after every change."""

    name: str
    prefix: str
    design: str
    dir: str
    namespaces: list[str] = field(default_factory=list)
    procs: dict[str, Proc] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "building"
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def path(self) -> Path:
        return Path(self.dir) / "state.json"

    def save(self) -> None:
        d = asdict(self)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=2))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> LabState:
        d = json.loads(path.read_text())
        d["procs"] = {k: Proc(**v) for k, v in d.get("procs", {}).items()}
        return cls(**d)

    @classmethod
    def create(cls, name: str, prefix: str, design: str) -> LabState:
        d = state_root() / name
        if (d / "state.json").exists():
            raise LabError(
                f"a lab named {name!r} is already recorded in {d}; run 'chaoslab lab down' first"
            )
        # a lab that was torn down left its logs: a new lab of that name starts clean
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        st = cls(name=name, prefix=prefix, design=design, dir=str(d))
        st.save()
        return st

    # -- namespaces and links -------------------------------------------------------------

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def add_ns(self, role: str) -> str:
        name = self.ns(role)
        if name in run(["ip", "netns", "list"]).split():
            raise LabError(f"network namespace {name} already exists (another lab or a leftover)")
        self.namespaces.append(name)
        self.save()  # recorded before it exists: cleanup tolerates a missing namespace
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        # no route to the outside ever: namespaces start without one and we add none
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            run(["ip", "netns", "exec", name, "sysctl", "-qw", f"{key}=0"])
        return name

    def sysctl(self, role: str, key: str, value: str | int) -> None:
        run(["ip", "netns", "exec", self.ns(role), "sysctl", "-qw", f"{key}={value}"])

    def ip(self, role: str, *args: str, check: bool = True) -> str:
        return run(["ip", "-n", self.ns(role), *args], check=check)

    def veth(self, a_role: str, a_if: str, b_role: str, b_if: str) -> None:
        """A veth pair with one end in each namespace (created inside ``a``'s namespace, so
        the root namespace never holds a lab interface, even for an instant)."""
        run(
            [
                "ip",
                "-n",
                self.ns(a_role),
                "link",
                "add",
                a_if,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                self.ns(b_role),
            ]
        )
        self.ip(a_role, "link", "set", a_if, "up")
        self.ip(b_role, "link", "set", b_if, "up")

    def bridge(self, role: str, br: str, ports: Iterable[str]) -> None:
        self.ip(role, "link", "add", br, "type", "bridge", "forward_delay", "0")
        self.ip(role, "link", "set", br, "up")
        for p in ports:
            self.ip(role, "link", "set", p, "master", br)

    # -- processes ------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        role: str,
        argv: Sequence[str],
        *,
        pidfiles: Sequence[str] = (),
        env: dict[str, str] | None = None,
        enters_ns: bool = False,
    ) -> Proc:
        """Start ``argv`` inside namespace ``role``; its output goes to ``<dir>/<name>.log``.

        ``enters_ns``: the program is started in the host's namespace and enters ``role``'s
        itself (``keepalived -s NAMESPACE``: its process-event socket, vrrp_track_process,
        exists only in the initial namespace); ``argv`` must name the namespace. A program
        that is not inside it within `ENTER_TIMEOUT` is killed with its process group.
        """
        if name in self.procs and self.procs[name].alive():
            raise LabError(f"{name} is already running (pid {self.procs[name].pid})")
        want: tuple[int, int] | None = None
        if enters_ns:
            ns = self.ns(role)
            if ns not in argv:
                raise LabError(f"{name}: started on the host, its command line must name {ns}")
            try:
                st = os.stat(f"/run/netns/{ns}")
            except OSError as exc:
                raise LabError(
                    f"{name}: namespace {ns} is missing ({exc.strerror}); not started"
                ) from None
            want = (st.st_dev, st.st_ino)
        log = Path(self.dir) / f"{name}.log"
        fh: IO[bytes] = log.open("ab")
        full = list(argv) if enters_ns else ["ip", "netns", "exec", self.ns(role), *argv]
        try:
            # `ip netns exec` execs the command after setns(), so the PID is the daemon's own
            p = subprocess.Popen(
                full,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        finally:
            fh.close()
        proc = Proc(
            name, self.ns(role), p.pid, None, list(argv), str(log), list(pidfiles), enters_ns
        )
        # read the start time once the exec happened; it identifies the PID from now on
        proc.start = _start_time(p.pid)
        self.procs[name] = proc
        self.save()
        _REAPERS[p.pid] = p
        if want is not None:
            self._entered(proc, p, want)
        return proc

    def _entered(
        self,
        proc: Proc,
        p: subprocess.Popen[bytes],
        want: tuple[int, int],
        timeout: float | None = None,
    ) -> None:
        """A process started in the host's namespace is in ``want`` (the namespace's
        (st_dev, st_ino), taken before the start) within ``timeout``, or it and its process
        group are killed: a daemon must never run on the host's links. keepalived reads its
        config, then setns()es, before it forks anything."""
        timeout = ENTER_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while p.poll() is None:
            try:
                st = os.stat(f"/proc/{p.pid}/ns/net")
            except OSError:
                break  # gone meanwhile
            if (st.st_dev, st.st_ino) == want:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if p.poll() is None:
            # its own session (start_new_session): the group is the daemon and what it forked
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        self.stop(proc.name)
        raise LabError(
            f"{proc.name} did not enter namespace {proc.ns} within {timeout:g} s "
            f"(killed; its log: {proc.log})"
        )

    def stop(self, name: str, sig: int = signal.SIGKILL, *, wait: float = 5.0) -> list[int]:
        """Signal a started process and everything it forked; wait for them to exit."""
        proc = self.procs.get(name)
        if proc is None:
            return []
        pids = proc.all_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive_reaped(p) for p in pids):
            time.sleep(0.01)
        return pids


_REAPERS: dict[int, subprocess.Popen[bytes]] = {}

#: seconds a daemon started with ``enters_ns`` has to be inside its namespace
ENTER_TIMEOUT = 0.25


def _alive_reaped(pid: int) -> bool:
    """pid_alive, reaping our own children so they do not linger as zombies."""
    p = _REAPERS.get(pid)
    if p is not None and p.poll() is not None:
        _REAPERS.pop(pid, None)
        return False
    return pid_alive(pid)


def cleanup(state: LabState, *, remove_dir: bool = False) -> list[str]:
    """Kill every process of the lab and delete its namespaces. Idempotent; returns notes."""
    notes: list[str] = []
    killed: set[int] = set()
    for proc in state.procs.values():
        for pid in proc.all_pids():
            if kill_pid(pid):
                killed.add(pid)
    existing = set(run(["ip", "netns", "list"], check=False).split())
    for ns in state.namespaces:
        if ns not in existing:
            continue
        # anything still inside a namespace we created is ours (daemons that double-forked)
        for pid in netns_pids(ns):
            if pid != os.getpid() and kill_pid(pid):
                killed.add(pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive_reaped(p) for p in killed):
        time.sleep(0.02)
    for pid in killed:
        if _alive_reaped(pid):
            notes.append(f"pid {pid} did not exit after SIGKILL")
    for ns in state.namespaces:
        if ns in existing:
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if r.returncode != 0:
                notes.append(f"ip netns del {ns}: {r.stderr.strip()}")
    frr = state.info.get("frr_run_dir")
    if frr:  # FRR's sockets and config live outside the lab folder (the frr user's reach)
        shutil.rmtree(frr, ignore_errors=True)
    for d in state.info.get("keepalived_run_dirs", []):
        # keepalived -s <ns> makes /run/keepalived/<ns>; a SIGKILL leaves it
        shutil.rmtree(d, ignore_errors=True)
    if root := state.info.get("keepalived_run_root"):  # created by this lab; rmdir: only empty
        with contextlib.suppress(OSError):
            os.rmdir(root)
    state.status = "down"
    if remove_dir:
        shutil.rmtree(state.dir, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            state.save()
            # the lab is gone: a new `up` with this name may start; logs stay for reading
            state.path.rename(Path(state.dir) / "state.down.json")
    return notes


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Network namespaces whose names start with ``prefix`` (a lab's, or leftovers)."""
    out = run(["ip", "netns", "list"], check=False)
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix)]


def list_labs() -> list[LabState]:
    root = state_root()
    if not root.exists():
        return []
    out = []
    for p in sorted(root.glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            out.append(LabState.load(p))
    return out
