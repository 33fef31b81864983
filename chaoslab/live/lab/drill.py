"""``lab up | status | drill | down``: build a topology, drill it, tear it down.

A drill runs ``lab.trials`` trials per fault. Each trial starts a prober in the client
namespace, waits for a steady state (every daemon running, every probe of the last
``trial.steady`` seconds ok, the design's own condition such as "the VIP is on the
highest-priority node"), injects the fault and records its instant from the injecting call,
probes for ``trial.observe`` seconds, undoes the fault and cools down. Outage metrics come
from the probes through the one outage computation (:mod:`chaoslab.outage`), milestones from
the daemons' logs (:mod:`chaoslab.live.lab.watch`). The run folder has the format of a
simulated run (mode ``live``, target ``lab``) plus ``probes.parquet``,
``milestones.parquet``, ``lab_trials.parquet`` and ``comparison.csv``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaoslab.compare import Prober, as_probed
from chaoslab.compare import comparison_table as shared_comparison_table
from chaoslab.live.lab.base import LabParams, Topology
from chaoslab.live.lab.netns import LabError, LabState, cleanup, list_labs, state_root
from chaoslab.live.lab.spec import LabExperiment, LabFault, SpecError
from chaoslab.live.lab.watch import LogWatcher, match_rules
from chaoslab.live.probe import connection_fates, read_records

__all__ = [
    "DrillResult",
    "comparison_table",
    "lab_down",
    "lab_status",
    "lab_up",
    "open_lab",
    "run_drill",
    "trial_metrics",
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
    import importlib

    module, name = _MODULES[design]
    cls: type[Topology] = getattr(importlib.import_module(module), name)
    return cls


class _Interrupted(KeyboardInterrupt):
    """SIGTERM during a lab operation: unwinds like Ctrl-C so cleanup runs."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Interrupted()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _prefix_for(name: str) -> str:
    # short: interface names stay inside namespaces, but `ip netns` names show in listings
    return f"cl-{name}"


def lab_up(exp: LabExperiment, *, prefix: str | None = None) -> Topology:
    """Build the topology and start its daemons. On any failure everything is removed."""
    spec = exp.lab
    params = LabParams(exp.profile, exp.params)
    state = LabState.create(spec.name, prefix or _prefix_for(spec.name), spec.design)
    topo = topology_class(spec.design)(state, spec, params)
    state.info["experiment"] = exp.model_dump(mode="json")
    try:
        with _sigterm_unwinds():
            topo.build()
            state.status = "up"
            state.save()
    except BaseException:
        cleanup(state, remove_dir=False)
        raise
    return topo


def open_lab(name: str, exp: LabExperiment | None = None) -> Topology:
    """A topology object for a lab that is up (from its state file)."""
    path = state_root() / name / "state.json"
    if not path.exists():
        raise LabError(f"no lab named {name!r} is up (no {path})")
    state = LabState.load(path)
    if exp is None:
        exp = LabExperiment.model_validate(state.info["experiment"])
    return topology_class(state.design)(state, exp.lab, LabParams(exp.profile, exp.params))


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


# ----------------------------------------------------------------------------- metrics


def trial_metrics(
    probes: pd.DataFrame, t_fault: float, observe: float, bin_s: float
) -> dict[str, Any]:
    """Outage metrics of one trial from its probe records (the shared outage computation),
    plus the fate of the long-lived connections open at the fault."""
    from chaoslab.outage import availability_from_probes, metrics

    new = probes[probes.kind == "new"]
    times, values = availability_from_probes(
        new.t.to_numpy(),
        (new.outcome == "ok").to_numpy(),
        t_fault=t_fault,
        bin_s=bin_s,
        horizon=observe,
    )
    m = metrics(times, values, observe)
    out: dict[str, Any] = {
        "recovery_s": m.recovery_s,
        "recovered": m.recovered,
        "downtime_s": m.downtime_s,
        "degraded_s": m.degraded_s,
        "lost_s": m.lost_s,
    }
    # each long-lived connection's fate at the horizon, as the model counts it
    out["connections_reset"], out["connections_hung"] = connection_fates(probes, t_fault, observe)
    out["a_t"] = [float(x) for x in times]
    out["a_v"] = [float(x) for x in values]
    return out


def comparison_table(
    measured: pd.DataFrame,
    predicted: dict[tuple[str, str], pd.DataFrame | str],
    tolerance: float = 0.0,
) -> pd.DataFrame:
    """The shared comparison (:func:`chaoslab.compare.comparison_table`) for a lab drill.

    ``predicted`` maps (design, fault label) to the simulated trials or to the reason there
    is no prediction. The model names the fault by its kind (a lab 'link-down' is predicted
    as a 'node-crash'), so its trials are relabelled with the lab's fault label here; the
    tolerance is the probe bin."""
    frames = [
        trials.assign(design=design, fault=label)
        for (design, label), trials in predicted.items()
        if not isinstance(trials, str)
    ]
    reasons = {k: v for k, v in predicted.items() if isinstance(v, str)}
    return shared_comparison_table(
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        measured,
        tolerance_s=tolerance,
        reasons=reasons,
    )


def predict(
    exp: LabExperiment, fault: LabFault, seed: int, cluster: dict[str, Any] | None = None
) -> pd.DataFrame | str:
    """The model's trials for this lab fault, or why there are none. The horizon is the
    drill's observation window, so "not recovered" means the same on both sides."""
    try:
        import chaoslab

        simulate = chaoslab.simulate  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return "chaoslab.simulate is not available"
    params = dict(exp.params)
    if fault.client_timeout is not None:
        params["client.timeout"] = f"{fault.client_timeout}s"
    try:
        return simulate(
            exp.lab.design,
            fault.model_fault(),
            profile=exp.profile or None,
            params=params,
            trials=exp.lab.predict_trials,
            seed=seed,
            horizon=exp.lab.trial.observe,
            **({"cluster": cluster} if cluster is not None else {}),
        )
    except Exception as exc:  # the model may not know this design or fault yet
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"model: {type(exc).__name__}: {first}"


# ----------------------------------------------------------------------------- drill


@dataclass
class DrillResult:
    path: Path
    trials: pd.DataFrame
    comparison: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _wait_steady(
    topo: Topology, probe_file: Path, t_start: float, log: Callable[[str], None]
) -> pd.DataFrame:
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


def run_drill(
    exp: LabExperiment,
    *,
    trials: int | None = None,
    out: Path | None = None,
    prefix: str | None = None,
    log: Callable[[str], None] = lambda s: None,
    source: str | None = None,
) -> DrillResult:
    """Build the lab, run every fault ``trials`` times, write the run folder, tear down."""
    from chaoslab.results import RunWriter

    spec = exp.lab
    k = trials if trials is not None else spec.trials
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = (out or Path("results")) / f"lab-{spec.name}" / stamp
    writer = RunWriter(
        run_dir,
        mode="live",
        target="lab",
        meta={
            "experiment": source,
            "title": exp.title,
            "design": spec.design,
            "profiles": exp.profile,
            "params": exp.params,
            "seed": exp.seed,
            "lab": spec.model_dump(mode="json"),
        },
    )
    if source:
        with contextlib.suppress(OSError):
            writer.write_text("experiment.yaml", Path(source).read_text())
    watcher = LogWatcher()
    rng = np.random.default_rng(exp.seed)
    rows: list[dict[str, Any]] = []
    lab_rows: list[dict[str, Any]] = []
    probe_frames: list[pd.DataFrame] = []
    milestone_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    topo: Topology | None = None
    finished = False
    try:
        with _sigterm_unwinds():
            log(f"building {spec.design} lab {spec.name}")
            topo = lab_up(exp, prefix=prefix)
            for src, path in topo.log_sources().items():
                watcher.add(src, path, from_start=True)
            watcher.start()
            rules = topo.rules()
            url = topo.target_url()
            trial_no = 0
            for fault in spec.faults:
                timeout = fault.client_timeout or topo.params.seconds("client.timeout")
                for i in range(k):
                    probe_file = state_dir(topo) / f"probes-{trial_no:04d}.csv"

                    def start_prober(long: int, out_file: Path, timeout: float = timeout) -> None:
                        topo.state.spawn(
                            "probe",
                            topo.client_role,
                            topo.python(
                                "chaoslab.live.probe",
                                url,
                                "--rate",
                                f"{spec.probe.rate:g}",
                                "--probers",
                                str(spec.probe.probers),
                                "--timeout",
                                f"{timeout:g}",
                                "--long",
                                str(long),
                                "--long-interval",
                                f"{spec.probe.long_interval or 0:g}",
                                "--out",
                                str(out_file),
                            ),
                        )

                    if spec.probe.long:
                        # settle with new connections only, then open the long-lived ones:
                        # a connection opened while a path was still missing (a BGP session
                        # coming back after the last trial) and re-hashed when it returned
                        # would be reset before the fault, and the survivors of that re-hash
                        # are exactly the flows the next re-hash does not move
                        settle_file = state_dir(topo) / f"settle-{trial_no:04d}.csv"
                        start_prober(0, settle_file)
                        _wait_steady(topo, settle_file, time.monotonic(), log)
                        topo.state.stop("probe", signal.SIGTERM, wait=10)
                        del topo.state.procs["probe"]
                        settle_file.unlink(missing_ok=True)
                    start_prober(spec.probe.long, probe_file)
                    t_start = time.monotonic()
                    recent = _wait_steady(topo, probe_file, t_start, log)
                    victim = topo.resolve_target(fault, recent)
                    wait = float(rng.uniform(0.0, spec.trial.jitter))
                    time.sleep(wait)
                    t_fault = topo.inject(fault, victim)
                    t_call = time.monotonic() - t_fault
                    time.sleep(max(0.0, t_fault + spec.trial.observe - time.monotonic()))
                    topo.state.stop("probe", signal.SIGTERM, wait=10)
                    del topo.state.procs["probe"]
                    probes = read_records(probe_file)
                    probes = probes[probes.t < t_fault + spec.trial.observe]
                    topo.restore(fault, victim)
                    m = trial_metrics(probes, t_fault, spec.trial.observe, spec.trial.bin)
                    row = {
                        "design": spec.design,
                        "fault": fault.label,
                        "target": fault.target,
                        "trial": i,
                    }
                    row.update({kk: v for kk, v in m.items() if kk not in ("a_t", "a_v")})
                    row["a_t"], row["a_v"] = m["a_t"], m["a_v"]
                    events = watcher.events(t_fault, t_fault + spec.trial.observe)
                    seen: dict[str, float] = {}
                    for name, ev in match_rules(
                        events,
                        rules,
                        accept=lambda r, e, f=fault, v=victim: topo.milestone_filter(f, v, r, e),
                    ):
                        if name in seen:  # the first occurrence is the milestone
                            continue
                        seen[name] = ev.t - t_fault
                        milestone_rows.append(
                            {
                                "design": spec.design,
                                "fault": fault.label,
                                "trial": i,
                                "milestone": name,
                                "t": ev.t - t_fault,
                                "source": ev.source,
                                "line": ev.line,
                            }
                        )
                    for name in {r.milestone for r in rules}:
                        row["at_" + name.replace(".", "_")] = seen.get(name, math.nan)
                    row["at_service_recovered"] = m["recovery_s"] if m["recovered"] else math.nan
                    rows.append(row)
                    pf = probes.assign(
                        design=spec.design, fault=fault.label, trial=i, t_rel=probes.t - t_fault
                    )
                    probe_frames.append(pf)
                    lab_rows.append(
                        {
                            "design": spec.design,
                            "fault": fault.label,
                            "trial": i,
                            "victim": victim,
                            "t_fault": t_fault,
                            "fault_call_s": t_call,
                            "jitter_s": wait,
                            "client_timeout_s": timeout,
                            "probes": int((probes.kind == "new").sum()),
                            "failed": int(
                                ((probes.kind == "new") & (probes.outcome != "ok")).sum()
                            ),
                        }
                    )
                    writer.add_trials(pd.DataFrame([row]))
                    log(
                        f"{fault.label} #{i + 1}/{k} on {victim}: recovery "
                        f"{m['recovery_s']:.3f} s, downtime {m['downtime_s']:.3f} s, "
                        f"lost {m['lost_s']:.3f} s"
                    )
                    watcher.clear_before(t_fault + spec.trial.observe)
                    probe_file.unlink(missing_ok=True)
                    trial_no += 1
                    time.sleep(spec.trial.cooldown)
            finished = True
    finally:
        watcher.stop()
        if topo is not None:
            notes += cleanup(topo.state)
        if probe_frames:
            writer.add_table("probes.parquet", pd.concat(probe_frames, ignore_index=True))
        if milestone_rows:
            writer.add_table("milestones.parquet", pd.DataFrame(milestone_rows))
        if lab_rows:
            writer.add_table("lab_trials.parquet", pd.DataFrame(lab_rows))
        if not finished:
            writer.finish_partial(notes=notes)
    measured = pd.DataFrame(rows)
    predicted: dict[tuple[str, str], pd.DataFrame | str] = {}
    try:
        cluster = (
            spec.cluster
            if spec.cluster is not None
            else (topo.model_cluster() if topo is not None else None)
        )
    except SpecError as exc:
        cluster, notes = None, [*notes, str(exc)]
    # the model's a(t) sampled by the same prober, so a dip shorter than the probe spacing
    # counts as often as the lab can catch one (compare.as_probed)
    prober = Prober(spec.probe.rate, spec.probe.probers, spec.trial.bin)
    for j, fault in enumerate(spec.faults):
        log(f"predicting {fault.label}")
        pred = predict(exp, fault, exp.seed + j, cluster)
        if not isinstance(pred, str):
            pred = as_probed(pred, prober, spec.trial.observe, seed=exp.seed + j)
        predicted[(spec.design, fault.label)] = pred
    comp = comparison_table(measured, predicted, spec.trial.bin)
    writer.add_table("comparison.csv", comp)
    run = writer.finish(notes=notes)
    return DrillResult(run.path, run.trials, comp, notes)


def state_dir(topo: Topology) -> Path:
    return Path(topo.state.dir)
