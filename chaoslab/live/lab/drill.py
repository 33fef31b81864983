"""``lab up | status | drill | down``: build a topology, drill it, tear it down.

A drill runs ``lab.trials`` trials per fault of the experiment, through the one drill
engine (`chaoslab.live.engine`) with `LabTarget` as its target: each trial starts a prober
in the client namespace, waits for a steady state (every daemon running, every probe of the
last ``trial.steady`` seconds ok, the design's own condition such as "the VIP is on the
highest-priority node"), waits a random ``trial.jitter``, injects the fault as its ``lab:``
key says and records its instant from the injecting call, probes for the experiment's
``horizon``, undoes the fault and cools down. Outage metrics come from the probes through
the one outage computation, milestones from the daemons' logs
(:mod:`chaoslab.live.lab.watch`). The journal records the lab's teardown as its undo step,
so ``chaoslab lab drill --recover RUN_DIR`` removes a lab a killed drill left behind.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaoslab.compare import as_probed
from chaoslab.experiment import Experiment, ExperimentError, load_experiment
from chaoslab.live.engine import (
    DrillContext,
    DrillOutcome,
    Observed,
    recover,
    run_drill,
    slow_threshold,
)
from chaoslab.live.journal import UndoStep
from chaoslab.live.lab.base import LabParams, Topology
from chaoslab.live.lab.netns import LabError, LabState, cleanup, list_labs, state_root
from chaoslab.live.lab.spec import LabFault, LabSpec
from chaoslab.live.lab.watch import LogWatcher, match_rules
from chaoslab.live.probe import read_records
from chaoslab.results import ProberInfo, RunWriter, new_run_dir

__all__ = [
    "LabTarget",
    "lab_down",
    "lab_recover",
    "lab_status",
    "lab_up",
    "open_lab",
    "refuse_if_recorded",
    "run_lab_drill",
    "topology_class",
]

_MODULES = {
    "ingress-vip-vrrp": ("chaoslab.live.lab.vrrp", "VrrpTopology"),
    "ingress-vip-bgp": ("chaoslab.live.lab.bgp", "BgpTopology"),
    "metallb-bgp": ("chaoslab.live.lab.bgp", "MetallbBgpTopology"),
    "nodeport-lb": ("chaoslab.live.lab.nodeport", "NodeportLbTopology"),
    "nodeport-lb-local": ("chaoslab.live.lab.nodeport", "NodeportLbLocalTopology"),
    "ingress-hostnet": ("chaoslab.live.lab.hostnet", "HostnetTopology"),
}


def topology_class(design: str) -> type[Topology]:
    module, name = _MODULES[design]
    cls: type[Topology] = getattr(importlib.import_module(module), name)
    return cls


def lab_spec(exp: Experiment) -> LabSpec:
    if exp.model.lab is None:
        raise ExperimentError.at(exp.path, None, "lab", "no lab: section (a lab drill needs one)")
    return exp.model.lab


def _prefix_for(name: str) -> str:
    # short: interface names stay inside namespaces, but `ip netns` names show in listings
    return f"cl-{name}"


def _topology(exp: Experiment, state: LabState) -> Topology:
    spec = lab_spec(exp)
    params = LabParams(exp.profiles, exp.overrides())
    return topology_class(spec.design)(state, spec, params, exp.horizon)


def lab_up(exp: Experiment, *, prefix: str | None = None) -> Topology:
    """Build the topology and start its daemons. On any failure everything is removed."""
    spec = lab_spec(exp)
    exp.validate()
    state = LabState.create(spec.name, prefix or _prefix_for(spec.name), spec.design)
    state.info["experiment"] = {"path": exp.path, "text": exp.text}
    topo = _topology(exp, state)
    try:
        topo.build()
        state.status = "up"
        state.save()
    except BaseException:
        cleanup(state, remove_dir=False)
        raise
    return topo


def open_lab(name: str) -> Topology:
    """A topology object for a lab that is up (from its state file)."""
    path = state_root() / name / "state.json"
    if not path.exists():
        raise LabError(f"no lab named {name!r} is up (no {path})")
    state = LabState.load(path)
    saved = state.info["experiment"]
    return _topology(load_experiment(saved["path"], text=saved["text"]), state)


def lab_down(name: str | None = None) -> list[str]:
    """Tear down one lab (or all recorded labs when name is None); returns notes."""
    notes: list[str] = []
    labs = [s for s in list_labs() if name is None or s.name == name]
    if name is not None and not labs:
        raise LabError(f"no lab named {name!r} is recorded under {state_root()}")
    for st in labs:
        notes += [f"{st.name}: {n}" for n in cleanup(st)]
    return notes


def lab_status(name: str) -> dict[str, Any]:
    path = state_root() / name / "state.json"
    if not path.exists():
        raise LabError(f"no lab named {name!r} is up")
    st = LabState.load(path)
    existing = set(os.popen("ip netns list").read().split())
    return {
        "name": st.name,
        "design": st.design,
        "status": st.status,
        "url": st.info.get("url"),
        "namespaces": {ns: ns in existing for ns in st.namespaces},
        "processes": {n: (p.pid, p.alive()) for n, p in st.procs.items()},
    }


# ----------------------------------------------------------------------------- target


@dataclass
class _Trial:
    """What one trial of the lab keeps between the engine's calls."""

    probe_file: Path
    timeout: float
    recent: pd.DataFrame
    jitter: float = 0.0
    call_s: float = 0.0


class LabTarget:
    """The lab as a `chaoslab.live.engine.DrillTarget`."""

    kind = "lab"

    def __init__(self, exp: Experiment, *, trials: int | None, prefix: str | None) -> None:
        spec = lab_spec(exp)
        probe = exp.model.probe
        if probe is None:
            raise ExperimentError.at(exp.path, None, "probe", "a lab drill needs probe:")
        self.exp, self.spec, self.probe, self.prefix = exp, spec, probe, prefix
        self.design = spec.design
        self.prober = ProberInfo(probe.rate, probe.probers, probe.bin)
        self.slow_threshold = slow_threshold(exp.profiles, exp.overrides())
        self.trials = trials if trials is not None else spec.trials
        self.cooldown = spec.trial.cooldown
        self.milestone_names: list[str] = []
        self.rng = np.random.default_rng(exp.model.seed)
        self.topo: Topology | None = None
        self.watcher = LogWatcher()
        self.ctx: DrillContext | None = None
        self._trial: _Trial | None = None
        self._no = 0

    def faults(self) -> list[LabFault]:
        return self.exp.lab_faults()

    def open(self, ctx: DrillContext) -> None:
        self.ctx = ctx
        refuse_if_recorded(self.spec.name)  # else the undo below would tear that lab down
        ctx.journal.add_undo({"op": "lab-down", "lab": self.spec.name, "root": str(state_root())})
        ctx.log(f"building {self.design} lab {self.spec.name}")
        self.topo = lab_up(self.exp, prefix=self.prefix)
        for src, path in self.topo.log_sources().items():
            self.watcher.add(src, path, from_start=True)
        self.watcher.start()
        self.milestone_names = sorted({r.milestone for r in self.topo.rules()})

    def _topo(self) -> Topology:
        if self.topo is None:
            raise LabError("the lab is not up")
        return self.topo

    def _start_prober(self, long: int, out_file: Path, timeout: float) -> None:
        topo = self._topo()
        p = self.probe
        args = ["--rate", f"{p.rate:g}", "--probers", str(p.probers), "--timeout", f"{timeout:g}"]
        args += ["--long", str(long), "--long-interval", f"{p.long_interval or 0:g}"]
        argv = topo.python("chaoslab.live.probe", topo.target_url(), *args, "--out", str(out_file))
        topo.state.spawn("probe", topo.client_role, argv)

    def _stop_prober(self) -> None:
        topo = self._topo()
        if "probe" in topo.state.procs:
            topo.state.stop("probe", signal.SIGTERM, wait=10)
            del topo.state.procs["probe"]

    def preflight(self, fault: LabFault, trial: int) -> None:
        topo = self._topo()
        timeout = fault.client_timeout or topo.params.seconds("client.timeout")
        folder = Path(topo.state.dir)
        if self.probe.long:
            # settle with new connections only, then open the long-lived ones: a connection
            # opened while a path was still missing (a BGP session coming back after the
            # last trial) and re-hashed when it returned would be reset before the fault,
            # and the survivors of that re-hash are exactly the flows the next re-hash
            # does not move
            settle = folder / f"settle-{self._no:04d}.csv"
            self._start_prober(0, settle, timeout)
            _wait_steady(topo, settle, time.monotonic())
            self._stop_prober()
            settle.unlink(missing_ok=True)
        probe_file = folder / f"probes-{self._no:04d}.csv"
        self._start_prober(self.probe.long, probe_file, timeout)
        recent = _wait_steady(topo, probe_file, time.monotonic())
        self._trial = _Trial(probe_file, timeout, recent)

    def _state(self) -> _Trial:
        if self._trial is None:
            raise LabError("no trial is running")
        return self._trial

    def choose(self, fault: LabFault, trial: int) -> str:
        return self._topo().resolve_target(fault, self._state().recent)

    def inject(self, fault: LabFault, victim: str) -> float:
        st = self._state()
        st.jitter = float(self.rng.uniform(0.0, self.spec.trial.jitter))
        time.sleep(st.jitter)
        t0 = self._topo().inject(fault, victim)
        st.call_s = time.monotonic() - t0
        return t0

    def observe(self, fault: LabFault, victim: str, t0: float) -> Observed:
        st, topo, horizon = self._state(), self._topo(), self.exp.horizon
        time.sleep(max(0.0, t0 + horizon - time.monotonic()))
        self._stop_prober()
        probes = read_records(st.probe_file)
        probes = probes[probes.t < t0 + horizon]
        obs = Observed(probes, horizon)
        obs.info = {"fault_call_s": st.call_s, "jitter_s": st.jitter}
        obs.info["client_timeout_s"] = st.timeout
        events = self.watcher.events(t0, t0 + horizon)

        def accept(rule: Any, ev: Any) -> bool:
            return topo.milestone_filter(fault, victim, rule, ev)

        for name, ev in match_rules(events, topo.rules(), accept=accept):
            if name in obs.milestones:  # the first occurrence is the milestone
                continue
            obs.milestones[name] = ev.t - t0
            row = {"milestone": name, "t": ev.t - t0, "source": ev.source, "detail": ev.line}
            obs.milestone_rows.append(row)
        self.watcher.clear_before(t0 + horizon)
        st.probe_file.unlink(missing_ok=True)
        return obs

    def restore(self, fault: LabFault, victim: str) -> bool:
        self._no += 1
        if self.topo is not None:
            self._stop_prober()
            if victim:
                self.topo.restore(fault, victim)
        return True

    def close(self) -> list[str]:
        self.watcher.stop()
        if self.topo is None:
            return []
        notes = cleanup(self.topo.state)
        if self.ctx is not None:
            for s in self.ctx.journal.pending():
                if s.step.get("op") == "lab-down":
                    self.ctx.journal.undo_done(s.id, op="lab-down")
        return notes

    def undo(self, step: UndoStep) -> bool:
        return lab_undo(step, self.ctx.journal.undo_done if self.ctx else None)

    def predict(self, fault: LabFault) -> pd.DataFrame | str:
        """The model's trials for this fault, as the lab's prober would see them
        (`chaoslab.compare.as_probed`), or why there are none."""
        import chaoslab

        exp = self.exp
        i = next(j for j, f in enumerate(exp.lab_faults()) if f.name == fault.name)
        seed = fault_seeds(exp)[fault.name]
        try:
            pred = chaoslab.simulate(
                self.design,
                exp.model_fault(i),
                profile=exp.profiles or None,
                params=exp.fault_overrides(i),
                trials=exp.model.trials,
                seed=seed,
                horizon=exp.horizon,
                cluster=exp.cluster_spec(),
            )
        except (ValueError, KeyError) as exc:  # the model cannot represent this fault
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"model: {type(exc).__name__}: {first}"
        # the model's a(t) sampled by the same prober, so a dip shorter than the probe
        # spacing counts as often as the lab can catch one
        return as_probed(pred, self.prober, exp.horizon, seed=seed)


def fault_seeds(exp: Experiment) -> dict[str, int]:
    """Each fault's seed, by its name: of its model trials and of the prober's phases
    put on their a(t). Fault i draws with the experiment's seed + i, so the faults'
    predictions are independent; meta.json records them (``fault_seeds``) so that
    `chaoslab.compare` draws the same phases when the run is compared again."""
    return {f.name: exp.model.seed + i for i, f in enumerate(exp.lab_faults())}


def lab_undo(step: UndoStep, done: Callable[..., None] | None) -> bool:
    """Run one journaled undo step of a lab drill (its teardown)."""
    s = step.step
    if s.get("op") != "lab-down":
        return False
    for st in list_labs():
        if st.name == s["lab"]:
            cleanup(st)
    if done is not None:
        done(step.id, op="lab-down", lab=s["lab"])
    return True


def _wait_steady(topo: Topology, probe_file: Path, t_start: float) -> pd.DataFrame:
    tr = topo.spec.trial
    need = max(tr.steady, tr.baseline)
    deadline = t_start + tr.settle_timeout
    problem = "no probes yet"
    while True:
        time.sleep(min(0.1, tr.steady / 4))
        now = time.monotonic()
        try:
            df = read_records(probe_file)
        except (OSError, ValueError):
            df = pd.DataFrame()
        if not df.empty:
            recent = df[(df.t >= now - tr.steady) & (df.kind == "new") & (df.t + df.latency <= now)]
            problem = topo.steady_problem(recent) or ""
            if not problem and now - t_start >= need:
                return recent
        if now > deadline:
            raise LabError(
                f"no steady state within {tr.settle_timeout:g} s: {problem or 'probing'}"
            )


# ----------------------------------------------------------------------------- drill


def refuse_if_recorded(name: str) -> None:
    """Refuse a drill whose lab name is taken: a lab of that name is up (or was left by a
    crash), and the drill's teardown would be that lab's."""
    d = state_root() / name
    if (d / "state.json").exists():
        raise LabError(
            f"a lab named {name!r} is already recorded in {d}; run 'chaoslab lab down' first"
        )


def lab_run_meta(target: LabTarget) -> dict[str, Any]:
    """What a lab drill's meta.json records beyond the writer's own fields."""
    exp, spec = target.exp, target.spec
    return {
        "experiment": exp.path,
        "title": exp.model.title,
        "design": spec.design,
        "profiles": exp.profiles,
        "params": exp.overrides(),
        "seed": exp.model.seed,
        "fault_seeds": fault_seeds(exp),
        "horizon_s": exp.horizon,
        "prober": target.prober.as_meta(),
        "lab": spec.model_dump(mode="json"),
    }


def run_lab_drill(
    exp: Experiment,
    *,
    trials: int | None = None,
    out: Path | None = None,
    prefix: str | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> DrillOutcome:
    """Build the lab, run every fault ``trials`` times, write the run folder, tear down."""
    target = LabTarget(exp, trials=trials, prefix=prefix)
    spec = target.spec
    refuse_if_recorded(spec.name)  # before the run folder: a refused drill leaves none
    writer = RunWriter(
        new_run_dir(out or Path("results"), exp.slug(), "live"),
        mode="live",
        target="lab",
        meta=lab_run_meta(target),
    )
    writer.write_text("experiment.yaml", exp.effective_yaml())
    return run_drill(target, writer, log=log)


def lab_recover(run_dir: Path, *, log: Callable[[str], None] = print) -> bool:
    """Tear down what a killed lab drill left (its journal's pending undo)."""
    from chaoslab.live.journal import Journal

    journal = Journal(Path(run_dir))
    return recover(run_dir, lambda s: lab_undo(s, journal.undo_done), log=log)
