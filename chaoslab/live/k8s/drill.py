"""A drill on a Kubernetes cluster: discover, predict, then inject, probe, watch, always
roll back, and compare.

`plan_drill` reads the experiment, discovers the cluster and runs the model's prediction for
what it found, for every fault with a ``live:`` key; without ``--yes`` that plan is all that
happens. `run_drill` then runs the trials through the one drill engine
(`chaoslab.live.engine`) with `KubeTarget` as its target:

1. preflight: every replica Ready, the target node Ready, every probe of the last
   ``preflight.window`` successful (the shared prober runs all through the trial);
2. choose the target now (pods move between trials) and check the safety rules;
3. inject (method recorded), with the undo step journaled first;
4. observe: watches -> milestones; probes -> a(t); abort at once when one outage lasts
   longer than ``limits.max_outage``; the trial ends when the service is back, the
   workload is whole again (and a self-healing node is Ready) and that held for
   ``settle``, or at ``limits.trial_timeout``;
5. roll back (always: normal end, exception, Ctrl-C, SIGTERM), then cool down.

Beside the engine's tables the run folder has ``observations.parquet``, ``live.json`` (what
``--recover`` reads), ``plan.txt``, ``discovery.json`` and ``prediction.parquet`` (the
model's trials with their a(t), which ``chaoslab compare`` puts the run's prober on).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from chaoslab.compare import as_probed, quantile
from chaoslab.errors import LiveError
from chaoslab.experiment import Experiment, ExperimentError, load_experiment
from chaoslab.live.engine import DrillContext, DrillOutcome, Observed, slow_threshold
from chaoslab.live.engine import recover as engine_recover
from chaoslab.live.engine import run_drill as engine_run
from chaoslab.live.journal import Journal, UndoStep
from chaoslab.live.k8s.calibrate import (
    UNDO_OP,
    Calibration,
    JournalPlace,
    calibrate,
    undo_annotation,
)
from chaoslab.live.k8s.discover import Discovery, discover, node_info, pod_ready
from chaoslab.live.k8s.inject import (
    DrillRefused,
    Injector,
    Target,
    choose_target,
    run_undo,
)
from chaoslab.live.k8s.kube import Kube, KubeError, load_kube
from chaoslab.live.k8s.leader import LeaderWatch, hook_milestones
from chaoslab.live.k8s.observe import (
    MilestoneTracker,
    Observation,
    ObservationLog,
    Watcher,
    start_watches,
)
from chaoslab.live.k8s.spec import CONTROL_PLANE_FAULTS, NODE_FAULTS, LiveSpec
from chaoslab.outage import availability_from_probes, metrics
from chaoslab.results import ProberInfo, RunWriter, new_run_dir

__all__ = [
    "DrillPlan",
    "KubeTarget",
    "design_notes",
    "live_faults",
    "plan_drill",
    "recover",
    "run_drill",
]

#: catalogue keys the API cannot show a drill; reported as assumed with their source
ASSUMED_KEYS = (
    "kube_controller_manager.node_monitor_grace_period",
    "kube_controller_manager.node_monitor_period",
    "kubelet.node_lease",
    "kubelet.node_status_update_frequency",
    "kube_controller_manager.taint_based_evictions",
    "kube_proxy.iptables_min_sync_period",
    "kube_scheduler.scheduling_latency",
    "pod.image_pull_time",
    "pod.container_start_time",
    "client.timeout",
)
#: clock samples per trial: 12 requests 1/12 s apart cover every sub-second phase of the
#: whole-second Date header once
_CLOCK_SAMPLES = 12
#: how long one watch request lasts on the server before it is renewed (client-go renews
#: watches every 5-10 min; shorter keeps a stalled stream from hiding long)
_WATCH_SERVER_TIMEOUT = 60


# --------------------------------------------------------------------------- plan


def live_faults(exp: Experiment) -> list[int]:
    """Indexes of the faults a cluster drill runs (those with a ``live:`` key)."""
    if exp.model.live is None:
        raise ExperimentError.at(exp.path, None, "live", "this experiment has no live: section")
    return [i for i, f in enumerate(exp.model.faults) if f.live is not None]


def live_data(exp: Experiment, i: int) -> dict[str, Any]:
    """`Experiment.live_data` with the fault's second effect (``with:``, ``with_delay:``),
    which the drill injects too (`chaoslab.live.k8s.spec.FaultSpec`)."""
    data = exp.live_data(i)
    fault = dict(data["fault"])
    opts = exp.faults()[i].options
    for opt in ("with", "with_delay"):
        if opt in opts:
            fault.setdefault(opt, str(opts[opt]))
    if fault.get("with") in (None, "none") and fault.get("with_hook"):
        raise exp.error(
            ("faults", i, "live", "with_hook"),
            "with_hook is for the fault's with: effect; add with:",
        )
    return {**data, "fault": fault}


def live_spec(exp: Experiment, i: int) -> LiveSpec:
    """The drill of fault ``i`` with its ``with:`` effect (ExperimentError, located)."""
    from pydantic import ValidationError

    try:
        return LiveSpec.model_validate(live_data(exp, i))
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        where = ("faults", i, "live", *loc[2:]) if loc[:1] == ("fault",) else ("faults", i)
        raise exp.error(where, err["msg"].removeprefix("Value error, ")) from None


def _design(exp: Experiment, spec: LiveSpec) -> str:
    return spec.design or exp.design_entries()[0][1]


def _model_fault(exp: Experiment, i: int, spec: LiveSpec) -> dict[str, Any]:
    """Fault ``i`` as the model takes it (with the live key's duration when only it has one)."""
    mf = exp.model_fault(i)
    f = spec.fault
    if f.duration is not None and f.kind in ("node-partition", "kubelet-stop"):
        mf.setdefault("duration", f"{f.duration:g}s")
    return mf


@dataclass
class DrillPlan:
    exp: Experiment
    spec: LiveSpec
    kube: Kube
    discovery: Discovery
    design: str
    profiles: list[str]
    overrides: dict[str, Any]
    assumed: list[tuple[str, str, str]]
    prediction: pd.DataFrame
    model_fault: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    #: the fault's index in the experiment and its name in the results
    index: int = 0
    name: str = ""
    #: the local control plane the plan runs on (`chaoslab.live.cluster.target.LocalSession`)
    session: Any = None
    #: values measured on the cluster for the prediction (``live.calibrate``)
    calibration: list[Calibration] = field(default_factory=list)

    @property
    def target(self) -> str:
        return str(self.model_fault["target"])


def plan_drill(
    path: str | Path,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    session: Any = None,
    log: Callable[[str], None] = print,
    out: Path | None = None,
) -> list[DrillPlan]:
    """One plan per fault with a ``live:`` key: what was found, what the model predicts.
    With ``live.cluster: local`` the plans run on a `LocalSession`: ``session`` when given
    (its owner closes it), else one opened here and closed by `run_drill`. ``live.calibrate``
    is measured once, by the first plan, and used by all (`chaoslab.live.k8s.calibrate`),
    journaled in a folder under ``out`` (the results folder) when given."""
    exp = load_experiment(path)
    exp.validate()
    faults = live_faults(exp)
    # every fault's drill is checked before anything connects or is brought up
    specs = [live_spec(exp, i) for i in faults]
    first = specs[0] if specs else None
    if first is None or first.cluster != "local":
        return _plans(exp, faults, kubeconfig, context, log, out)
    # the control plane on this machine: up (or attached), its data plane, the drill's
    # ServiceAccount; released by run_drill, or at exit after a dry run
    from chaoslab.live.cluster.target import LocalSession

    if session is None:
        session = LocalSession.open(exp, first)
        session.close_after_run = True
    try:
        plans = _plans(exp, faults, str(session.kubeconfig), None, log, out)
    except BaseException:
        if session.close_after_run:
            session.close()
        raise
    for p in plans:
        p.session = session
    return plans


def _plans(
    exp: Experiment,
    faults: list[int],
    kubeconfig: str | None,
    context: str | None,
    log: Callable[[str], None],
    out: Path | None = None,
) -> list[DrillPlan]:
    plans: list[DrillPlan] = []
    for i in faults:
        cal = plans[0].calibration if plans else None
        plans.append(
            _plan(exp, i, kubeconfig=kubeconfig, context=context, log=log, calibrated=cal, out=out)
        )
    return plans


def _check_named_node(exp: Experiment, i: int, spec: LiveSpec, disc: Discovery) -> None:
    """A node the fault names must exist, and be a worker unless the limits allow more."""
    named = spec.fault.target.node
    if named is None or spec.fault.kind not in NODE_FAULTS:
        return
    node = next((n for n in disc.nodes if n.name == named), None)
    if node is None:
        raise exp.error(("faults", i, "live", "target", "node"), f"no node named {named!r}")
    if node.control_plane and not spec.limits.allow_control_plane:
        raise DrillRefused(
            f"{named} is a control-plane node; set limits.allow_control_plane: true to allow it"
        )


def _cluster_overrides(
    overrides: dict[str, Any], found: dict[str, tuple[Any, str]]
) -> tuple[dict[str, Any], list[str]]:
    """The experiment's overrides with what the cluster runs on top (the cluster wins), and
    a note for every value the two disagree on."""
    notes = []
    for key, (val, src) in found.items():
        if key in overrides and str(overrides[key]) != str(val):
            notes.append(
                f"{key}: experiment says {overrides[key]}, cluster has {val} ({src}); "
                "using the cluster's"
            )
        overrides[key] = val
    return overrides, notes


def _plan(
    exp: Experiment,
    i: int,
    *,
    kubeconfig: str | None,
    context: str | None,
    log: Callable[[str], None] = print,
    calibrated: list[Calibration] | None = None,
    out: Path | None = None,
) -> DrillPlan:
    import chaoslab
    from chaoslab.params import ParamSet, profile

    spec = live_spec(exp, i)
    kube = load_kube(
        kubeconfig or spec.kubeconfig,
        context or spec.context,
        spec.api_timeout,
        retries=spec.api_retries,
        retry_wait=spec.poll,
    )
    disc = discover(kube, spec)
    _check_named_node(exp, i, spec, disc)
    profiles = [n for n in exp.profiles if profile(n).family != "k8s"] + [disc.profile]
    found = disc.params()
    overrides, notes = _cluster_overrides(dict(exp.fault_overrides(i)), found)
    if spec.fault.out_of_service_after is not None:
        # the drill plays the operator who force-deletes the lost node's pods
        overrides["cluster.force_delete_after"] = f"{spec.fault.out_of_service_after:g}s"
    if calibrated is None:
        place = None if out is None else _journal_place(exp, i, spec, kubeconfig, out)
        calibrated = calibrate(
            kube, spec, disc, log, server_timeout=_WATCH_SERVER_TIMEOUT, place=place
        )
    for cal in calibrated:
        # measured on this cluster: wins over the profile and the experiment file
        overrides[cal.key] = cal.override
    ps = ParamSet.resolve(profiles, overrides, override_source="drill discovery")
    assumed = [
        (k, ps.text(k), ps.sources[k]) for k in ASSUMED_KEYS if k in ps.values and k not in found
    ]
    design = _design(exp, spec)
    mf = _model_fault(exp, i, spec)
    try:
        prediction = chaoslab.simulate(
            design,
            mf,
            profile=profiles,
            params=overrides,
            cluster=disc.cluster(),
            trials=spec.predict_trials,
            seed=spec.seed,
            horizon=exp.horizon,
        )
    except (ValueError, IndexError) as e:  # the model cannot represent this cluster
        raise DrillRefused(
            f"no prediction for {design} x {spec.fault.kind} on this cluster "
            f"({disc.cluster()}): {e}"
        ) from None
    name = exp.faults()[i].result_name
    plan = DrillPlan(
        exp, spec, kube, disc, design, profiles, overrides, assumed, prediction, mf, [], i, name
    )
    plan.calibration = list(calibrated)
    plan.lines = _plan_lines(plan, notes + [c.line() for c in calibrated])
    return plan


def _journal_place(
    exp: Experiment, i: int, spec: LiveSpec, kubeconfig: str | None, out: Path
) -> JournalPlace:
    """Where the calibration journals its annotation (what --recover needs to undo it)."""
    return JournalPlace(Path(out), exp.slug(), live_data(exp, i), kubeconfig or spec.kubeconfig)


def _plan_lines(plan: DrillPlan, notes: list[str]) -> list[str]:
    """What the plan says before anything is injected (the dry run's output)."""
    exp, spec, kube, disc, design = plan.exp, plan.spec, plan.kube, plan.discovery, plan.design
    prediction, profiles = plan.prediction, plan.profiles
    lines = [
        f"drill {exp.path}: {design} x {spec.fault.kind} by {spec.fault.method} "
        f"on context {kube.context or '(current)'} at {kube.host}"
    ]
    lines += disc.lines(plan.assumed)
    notes += design_notes(design, disc.service)
    if spec.fault.target.select == "vip-holder":
        from chaoslab.live.k8s.inject import vip_holder

        holder, how = vip_holder(kube, spec)
        notes.append(f"VIP holder now: {holder or 'unknown'} ({how})")
    lines += [f"note: {n}" for n in notes]
    rec = prediction["recovery_s"].to_numpy(dtype=float)
    down = prediction["downtime_s"].to_numpy(dtype=float)
    lines.append(
        f"prediction ({len(prediction)} trials, profiles {', '.join(profiles)}): recovery "
        f"p5/p50/p95 {'/'.join(f'{quantile(rec, q):.3g}' for q in (0.05, 0.5, 0.95))} s, "
        f"downtime p50 {quantile(down, 0.5):.3g} s, recovered {prediction['recovered'].mean():.0%}"
    )
    f = spec.fault
    lines.append(
        f"plan: {spec.trials} trial(s) of {f.kind} ({f.method}) on target "
        f"{f.target.select or f.target.node or f.target.pod}, cooldown {spec.cooldown:g}s; "
        f"abort when an outage passes {spec.limits.max_outage:g}s; trial timeout "
        f"{spec.limits.trial_timeout:g}s; probing {', '.join(spec.urls)} with "
        f"{spec.probe.probers}x{spec.probe.rate:g}/s, timeout {spec.probe.timeout:g}s"
    )
    if f.kind in NODE_FAULTS:
        on_cp = [
            p.name
            for p in disc.pods
            if any(n.name == p.node and n.control_plane for n in disc.nodes)
        ]
        cp = "allowed" if spec.limits.allow_control_plane else "refused"
        lines.append(
            f"safety: control-plane nodes {cp}; at most "
            f"{spec.limits.max_nodes} node(s) faulted or cordoned at once"
            + (f"; note pods on control plane: {', '.join(on_cp)}" if on_cp else "")
        )
    if f.method == "pod":
        lines.append(f"method pod: privileged chaos pod (image {f.image}) pinned to the node")
    elif f.method == "hook" and f.hook is not None:
        lines.append(
            f"method hook: {' '.join(f.hook.inject or [])}"
            + (f"; recover: {' '.join(f.hook.recover)}" if f.hook.recover else "")
        )
    if f.hook is not None and f.hook.recover is None and f.kind == "node-crash":
        lines.append(
            "warning: no recover hook: a crashed node that does not reboot by itself "
            "stays down until you power it on"
        )
    return lines


def design_notes(design: str, service: dict[str, Any]) -> list[str]:
    """Where the Service the cluster has does not look like the design being predicted."""
    spec = service.get("spec") or {}
    stype, etp = spec.get("type", "ClusterIP"), spec.get("externalTrafficPolicy", "Cluster")
    out = []
    if design.startswith("nodeport") and stype not in ("NodePort", "LoadBalancer"):
        out.append(
            f"design {design} reaches the service through a NodePort, but the Service "
            f"is of type {stype}"
        )
    if design.endswith("-local") and etp != "Local":
        out.append(f"design {design} assumes externalTrafficPolicy Local; the Service has {etp}")
    if design in ("nodeport-lb", "nodeport-direct") and etp == "Local":
        out.append(
            f"the Service has externalTrafficPolicy Local: nodes without a local pod "
            f"drop traffic; design {design}-local may fit better"
            if design == "nodeport-lb"
            else "the Service has externalTrafficPolicy Local: the probed node must run a pod"
        )
    if design.startswith(("metallb", "cloud-lb")) and stype != "LoadBalancer":
        out.append(f"design {design} needs a LoadBalancer Service; this one is {stype}")
    return out


def _preflight(plan: DrillPlan, probers: list[Any], log: Callable[[str], None]) -> None:
    spec, kube, disc = plan.spec, plan.kube, plan.discovery
    deadline = time.monotonic() + spec.preflight.timeout
    why = ""
    while time.monotonic() < deadline:
        time.sleep(spec.poll)
        pods = [
            p
            for p in kube.get(
                f"/api/v1/namespaces/{spec.namespace}/pods", labelSelector=disc.selector
            )["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]
        ready = sum(1 for p in pods if pod_ready(p))
        want = disc.replicas
        if spec.workload.kind == "DaemonSet":
            wl = kube.get(
                f"/apis/apps/v1/namespaces/{spec.namespace}/daemonsets/{spec.workload.name}"
            )
            want = int((wl.get("status") or {}).get("desiredNumberScheduled", want))
        if ready < want:
            why = f"{ready}/{want} replicas Ready"
            continue
        bad = [
            n.name
            for n in (node_info(x) for x in kube.get("/api/v1/nodes")["items"])
            if not n.ready and any(p["spec"].get("nodeName") == n.name for p in pods)
        ]
        if bad:
            why = f"node(s) {', '.join(bad)} NotReady"
            continue
        now = time.monotonic()
        ok = True
        for p in probers:
            df = p.snapshot()
            known = _known_until(df, now, spec)
            recent = df[df["t"] >= known - spec.preflight.window]
            recent = recent[recent["t"] <= known]
            started = df["t"].min() if len(df) else now
            if now - started < spec.preflight.window + spec.probe.timeout or recent.empty:
                ok = False
                why = "probing the steady state"
            elif not (recent["outcome"] == "ok").all():
                ok = False
                bad_n = int((recent["outcome"] != "ok").sum())
                why = f"{bad_n}/{len(recent)} probes failed in the preflight window"
        if ok:
            return
    raise DrillRefused(f"no steady state within {spec.preflight.timeout:g}s: {why}")


def _known_until(df: pd.DataFrame, now: float, spec: LiveSpec) -> float:
    """The latest start instant up to which every probe's outcome is in ``df``.

    A prober writes a record when the probe *completes*: a success within milliseconds, a
    timeout only ``timeout`` later, and the file lags by its flush and by the prober's own
    event loop (which falls behind on a loaded machine). Counting every probe started one
    timeout before ``now`` as known saw the successes of the newest bin without its
    timeouts: a run of such bins looked like a recovered service, and a node-crash trial
    ended 4.95 s after the fault. What the prober has written tells how far it got: the
    latest completion in its records; a probe started one timeout before that has finished
    too, and one probe bin more covers the loop's step between two completions.
    """
    if df.empty or "latency" not in df.columns:
        return now - spec.probe.timeout
    written = float((df["t"] + df["latency"]).max())
    return min(now, written) - spec.probe.timeout - spec.probe.bin


class Progress(NamedTuple):
    """What the probes say so far, from the fault to ``horizon`` (seconds after it)."""

    recovery_s: float  # so far (inf: not recovered yet)
    outage_start: float  # start of the current stretch below 1 (NaN: up)
    up: bool  # the newest known bin is fully up
    horizon: float
    up_for: float  # how long a(t) has been 1 without a break, up to the horizon


def _current(probes: list[Any], t0: float, now: float, spec: LiveSpec) -> Progress:
    """`Progress` from the probes whose outcome is known (`_known_until`, the earliest over
    the probers)."""
    frames = [p.snapshot() for p in probes]
    known = min((_known_until(f, now, spec) for f in frames), default=now - spec.probe.timeout)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "kind" in df.columns:
        df = df[df["kind"] == "new"]  # a(t) is about new requests
    horizon = known - t0
    unknown = Progress(0.0, math.nan, False, max(horizon, 0.0), 0.0)
    if horizon <= 0 or df.empty:
        return unknown
    ts, vs = availability_from_probes(
        df["t"].to_numpy(),
        (df["outcome"] == "ok").to_numpy(),
        t_fault=t0,
        bin_s=spec.probe.bin,
        horizon=horizon,
    )
    if vs.size == 0:
        # no probe since the fault has an outcome yet (a slow prober under load): unknown,
        # which must neither start an outage nor count as the steady state
        return unknown
    m = metrics(list(ts), list(vs), horizon)
    recovery = m.recovery_s if m.recovered else math.inf
    # change points are merged: the last one starts the current stretch, up or not
    if vs[-1] >= 1.0:
        return Progress(recovery, math.nan, True, horizon, horizon - float(ts[-1]))
    j = len(vs) - 1
    while j > 0 and vs[j - 1] < 1.0:
        j -= 1
    return Progress(recovery, float(ts[j]), False, horizon, 0.0)


@dataclass
class _KubeTrial:
    """What one trial on the cluster keeps between the engine's calls."""

    trial: int
    probers: list[Any]
    info: dict[str, Any]
    target: Target | None = None
    tracker: MilestoneTracker | None = None
    inj: Injector | None = None
    frames: list[pd.DataFrame] = field(default_factory=list)
    #: the controller manager's Lease, for a fault with a control-plane part
    leader: LeaderWatch | None = None
    #: when the primary hook returned (local monotonic)
    hook_end: float = math.nan


def _control_plane_parts(spec: LiveSpec) -> set[str]:
    """The control-plane faults a drill injects: its kind and its with: effect."""
    f = spec.fault
    return {k for k in (f.kind, f.with_) if k in CONTROL_PLANE_FAULTS}


def _hook_milestones(tr: _KubeTrial) -> dict[str, float]:
    """Instants the fault's hooks printed (``milestone NAME SECONDS``, local monotonic)."""
    out = hook_milestones(str(tr.info.get("hook_output", "")))
    if tr.inj is not None and tr.inj.second_output:
        for k, v in hook_milestones(tr.inj.second_output).items():
            out.setdefault(k, v)
    return out


def _control_plane_back(spec: LiveSpec, tr: _KubeTrial) -> bool:
    """The control-plane part of the fault is over and a controller manager leads: a new
    holder took the Lease after a restart; after apiserver-down, the hook has ended and a
    leader renewed the Lease after the API server answered again."""
    parts = _control_plane_parts(spec)
    if not parts:
        return True
    inj, watch = tr.inj, tr.leader
    if inj is None or watch is None or not inj.second_done:
        return False
    if "controller-manager-restart" in parts and watch.elected is None:
        return False
    if "apiserver-down" in parts:
        # a hook that does not say when the API answered again: from the hook's end on
        end = inj.second_end if spec.fault.with_ == "apiserver-down" else tr.hook_end
        back = _hook_milestones(tr).get("apiserver.up", end)
        return bool(math.isfinite(back)) and watch.renewed_after(back)
    return True


def _node_must_return(spec: LiveSpec) -> bool:
    f = spec.fault
    return f.kind in ("node-partition", "kubelet-stop", "node-drain") or (
        f.kind == "node-crash" and f.method == "pod" and f.crash == "reboot"
    )


def _observe(
    plan: DrillPlan, tr: _KubeTrial, obs: ObservationLog, t0: float, log: Callable[[str], None]
) -> tuple[float, str]:
    """Watch until the trial ends; (the end instant, why it was aborted or "")."""
    spec, disc = plan.spec, plan.discovery
    f, info = spec.fault, tr.info
    tracker, inj, target = tr.tracker, tr.inj, tr.target
    assert tracker is not None and inj is not None and target is not None
    steady_since: float | None = None
    while True:
        time.sleep(spec.poll)
        now = time.monotonic()
        for ob in obs.drain():
            tracker.feed(ob)
        inj.check()
        oos = f.out_of_service_after
        if oos is not None and "out_of_service" not in info and now - t0 >= oos:
            inj.taint_out_of_service()
            info["out_of_service"] = now - t0
        prog = _current(tr.probers, t0, now, spec)
        start = prog.outage_start
        if not prog.up and math.isfinite(start) and now - (t0 + start) > spec.limits.max_outage:
            reason = f"outage longer than limits.max_outage ({spec.limits.max_outage:g}s)"
            inj.journal.write("trial.abort", trial=inj.trial, reason=reason)
            log(f"abort: {reason}; recovering now")
            return now, reason
        if now - t0 > spec.limits.trial_timeout:
            info["timed_out"] = True
            inj.journal.write("trial.timeout", trial=inj.trial)
            log(f"trial timeout ({spec.limits.trial_timeout:g}s)")
            return now, ""
        whole = sum(1 for r in tracker.pods_ready.values() if r) >= disc.replicas
        node_ok = True
        if target.node is not None and f.kind in NODE_FAULTS and _node_must_return(spec):
            node_ok = bool(tracker.node_ready) and (
                "node.not_ready" not in tracker.found
                or "node.ready" in tracker.found
                or f.kind == "node-drain"
            )
        cp_ok = _control_plane_back(spec, tr)
        if prog.up and whole and node_ok and cp_ok and now - t0 > spec.probe.timeout:
            steady_since = steady_since or now
            # the probes' own record, not the polls, says how long the service was up:
            # a loop that stalled between two polls saw two clean bins of a failing
            # service (a node-crash trial ended 4.95 s after the fault)
            if now - steady_since >= spec.settle and prog.up_for >= spec.settle:
                return now, ""
        else:
            steady_since = None


def _summary(ob: Observation) -> str:
    o = ob.obj
    spec, st, md = o.get("spec") or {}, o.get("status") or {}, o.get("metadata") or {}
    if ob.resource == "events":
        inv = o.get("involvedObject") or {}
        text = f"{o.get('reason')}: {inv.get('kind')}/{inv.get('name')}: {o.get('message', '')}"
        return text[:200]
    if ob.resource == "nodes":
        ready = next(
            (c.get("status") for c in st.get("conditions", []) if c.get("type") == "Ready"), "?"
        )
        taints = ",".join(t.get("key", "") for t in spec.get("taints") or [])
        return f"Ready={ready} unschedulable={bool(spec.get('unschedulable'))} taints={taints}"
    if ob.resource == "pods":
        return (
            f"node={spec.get('nodeName', '')} phase={st.get('phase')} "
            f"ready={pod_ready(o)} deleting={bool(md.get('deletionTimestamp'))}"
        )
    if ob.resource == "endpointslices":
        eps = []
        for e in o.get("endpoints") or []:
            ref = (e.get("targetRef") or {}).get("name")
            eps.append(f"{ref}:{(e.get('conditions') or {}).get('ready')}")
        return " ".join(eps)[:300]
    return json.dumps(o)[:200]


# --------------------------------------------------------------------------- recover


# --------------------------------------------------------------------------- target

#: clock samples per trial: 12 requests 1/12 s apart cover every sub-second phase of the
#: whole-second Date header once
_CLOCK_SAMPLES = 12
#: how long one watch request lasts on the server before it is renewed (client-go renews
#: watches every 5-10 min; shorter keeps a stalled stream from hiding long)
_WATCH_SERVER_TIMEOUT = 60


def rollback(
    kube: Kube | None, journal: Journal, spec: LiveSpec, log: Callable[[str], None]
) -> bool:
    """Run every pending undo step (newest first); True when none is left."""
    steps = journal.pending()
    if not steps:
        return True
    journal.write("rollback.start", steps=[s.id for s in steps])
    log(f"rollback: {len(steps)} step(s)")
    left = [s.id for s in steps if not _undo(kube, journal, spec, s, log)]
    journal.write("rollback.end", ok=not left, left=left)
    if left:
        log(
            f"rollback incomplete: {', '.join(left)} left; see journal.jsonl, then run "
            "chaoslab drill --recover RUN_DIR"
        )
    return not left


def _undo(
    kube: Kube | None, journal: Journal, spec: LiveSpec, step: UndoStep, log: Callable[[str], None]
) -> bool:
    if step.step.get("op") == UNDO_OP:  # a calibration's annotation (its own folder)
        return undo_annotation(kube, journal, step, log)
    return run_undo(
        kube, journal, step, node_ready_timeout=spec.limits.node_return, poll=spec.poll, log=log
    )


class KubeTarget:
    """A Kubernetes cluster as a `chaoslab.live.engine.DrillTarget`; its faults are the
    plans (one per fault with a ``live:`` key)."""

    kind = "kubernetes"

    def __init__(self, plans: list[DrillPlan]) -> None:
        from chaoslab.mechanisms.base import MILESTONES

        first = plans[0]
        self.plans, self.first = plans, first
        self.spec, self.kube = first.spec, first.kube
        self.design = first.design
        p = first.spec.probe
        self.prober = ProberInfo(p.rate, p.probers, p.bin)
        self.slow_threshold = slow_threshold(first.profiles, first.overrides)
        self.trials = first.spec.trials
        self.cooldown = first.spec.cooldown
        self.milestone_names = list(MILESTONES)
        self.rng = random.Random(first.spec.seed)
        self.obs = ObservationLog()
        self.stop_event = threading.Event()
        self.watchers: list[Watcher] = []
        self.ctx: DrillContext | None = None
        self._tr: _KubeTrial | None = None

    def faults(self) -> list[DrillPlan]:
        return self.plans

    def _ctx(self) -> DrillContext:
        if self.ctx is None:
            raise LiveError("the drill is not open")
        return self.ctx

    def open(self, ctx: DrillContext) -> None:
        self.ctx = ctx
        spec = self.spec
        self.watchers = start_watches(
            self.kube,
            spec.namespace,
            spec.service,
            self.first.discovery.selector,
            self.obs,
            self.stop_event,
            server_timeout=_WATCH_SERVER_TIMEOUT,
            read_timeout=_WATCH_SERVER_TIMEOUT + spec.api_timeout,
            backoff=spec.poll,
        )
        for w in self.watchers:
            if not w.listed.wait(spec.preflight.timeout):
                raise KubeError(0, f"cannot list {w.resource}: {w.error}")

    def preflight(self, plan: DrillPlan, trial: int) -> None:
        from chaoslab.live.probe import ProbeConfig
        from chaoslab.live.probe import Target as ProbeTarget

        ctx, spec = self._ctx(), plan.spec
        ctx.log(f"trial {trial}: preflight")
        p = spec.probe
        cfgs = [
            ProbeConfig(
                ProbeTarget.parse(self._url(u)),
                p.rate,
                p.probers,
                p.timeout,
                p.long,
                p.long_interval,
            )
            for u in spec.urls
        ]
        info = {"method": spec.fault.method}
        self._tr = _KubeTrial(trial, [], info)
        for n, c in enumerate(cfgs):
            self._tr.probers.append(self._new_prober(c, trial, n))
        _preflight(plan, self._tr.probers, ctx.log)
        self.kube.sample_clock(_CLOCK_SAMPLES, 1.0 / _CLOCK_SAMPLES)

    def _url(self, url: str) -> str:
        """The address a URL of the experiment is probed at (as written, here)."""
        return url

    def _new_prober(self, cfg: Any, trial: int, n: int) -> Any:
        """A started prober for one URL (here, in this process's network namespace)."""
        from chaoslab.live.probe import Prober

        return Prober(cfg).start()

    def _trial(self) -> _KubeTrial:
        if self._tr is None:
            raise LiveError("no trial is running")
        return self._tr

    def choose(self, plan: DrillPlan, trial: int) -> str:
        spec, kube, disc, tr = plan.spec, self.kube, plan.discovery, self._trial()
        target = choose_target(kube, spec, disc, self.rng)
        tr.target = target
        tr.info.update(
            node=target.node.name if target.node else "",
            pod=target.pod.name if target.pod else "",
            affected=",".join(target.affected),
        )
        tr.tracker = self._tracker(plan, target)
        if _control_plane_parts(spec):
            tr.leader = LeaderWatch(self.kube, spec.poll, self._server_to_local).start()
            tr.info["leader_before"] = tr.leader.holder0
        return target.label

    #: the API server's clock is this machine's (the local control plane): its
    #: timestamps are exact instants, not only bounds
    shared_clock = False

    def _server_to_local(self, posix: float) -> float:
        """An API server timestamp on the local monotonic clock (NaN: offset unknown)."""
        if self.shared_clock:
            return posix - (time.time() - time.monotonic())
        local = self.kube.clock.to_local(posix)
        return math.nan if local is None else local

    def _tracker(self, plan: DrillPlan, target: Target) -> MilestoneTracker:
        spec, kube = plan.spec, self.kube
        pods = kube.get(
            f"/api/v1/namespaces/{spec.namespace}/pods", labelSelector=plan.discovery.selector
        )["items"]
        slices = kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{spec.namespace}/endpointslices",
            labelSelector=f"kubernetes.io/service-name={spec.service}",
        )["items"]
        ready_eps = frozenset(
            (e.get("targetRef") or {}).get("name", "")
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready", True)
        )
        on_node = target.node and spec.fault.kind not in ("pod-delete", "pod-kill")
        tracker = MilestoneTracker(
            t0=math.inf,
            clock=kube.clock,
            fault=spec.fault.kind,
            node=target.node.name if (target.node and on_node) else None,
            targets=frozenset(target.affected),
            initial_pods=frozenset(p["metadata"]["name"] for p in pods),
            initial_ready_endpoints=ready_eps,
            initial_uids=frozenset(p["metadata"].get("uid", "") for p in pods),
        )
        tracker.seed_restarts(pods)
        for ob in self.obs.all:
            tracker.feed(ob)  # state before the fault (t0 = inf: no milestone yet)
        self.obs.drain()
        return tracker

    def inject(self, plan: DrillPlan, victim: str) -> float:
        ctx, tr = self._ctx(), self._trial()
        assert tr.target is not None and tr.tracker is not None
        run_id = str(ctx.writer.meta.get("run_id", ""))
        tr.inj = Injector(self.kube, plan.spec, ctx.journal, run_id, tr.trial, tr.target, ctx.log)
        ctx.log(f"trial {tr.trial}: {plan.spec.fault.kind} on {victim} ({plan.spec.fault.method})")
        t0 = tr.inj.inject()
        tr.hook_end = time.monotonic()
        tr.tracker.t0 = t0
        tr.info.update(tr.inj.details)
        return t0

    def _stop_probers(self, tr: _KubeTrial) -> None:
        for c, p in zip(self.spec.urls, tr.probers, strict=False):
            try:
                df = p.stop()
            except Exception as e:  # a prober crash must not skip the rollback
                self._ctx().log(f"prober for {c} failed: {e}")
                df = p.snapshot()
            df.insert(0, "url", str(c))
            tr.frames.append(df)
        tr.probers = []

    def observe(self, plan: DrillPlan, victim: str, t0: float) -> Observed:
        ctx, tr = self._ctx(), self._trial()
        if tr.inj is not None:
            tr.inj.start_second(t0)  # the fault's with: effect, timed from its instant
        end, aborted = _observe(plan, tr, self.obs, t0, ctx.log)
        self._stop_probers(tr)
        probes = pd.concat(tr.frames, ignore_index=True) if tr.frames else pd.DataFrame()
        out = Observed(probes, max(end - t0, 0.0), aborted=aborted)
        assert tr.tracker is not None
        for m in tr.tracker.found.values():
            out.milestones[m.name] = m.t
            row = {"milestone": m.name, "t": m.t, "t_server": m.t_server, "detail": m.detail}
            out.milestone_rows.append({**row, "source": "kubernetes API"})
        self._control_plane_milestones(tr, out, t0)
        tr.info.update(self.kube.clock.as_dict(), api_reads_retried=self.kube.retried)
        out.info = tr.info
        return out

    def restore(self, plan: DrillPlan, victim: str) -> bool:
        ctx, tr = self._ctx(), self._trial()
        if tr.probers:
            self._stop_probers(tr)
        if tr.inj is not None:
            tr.inj.stop(plan.spec.api_timeout)  # no eviction may follow the uncordon
        if tr.leader is not None:
            tr.leader.stop()
        # the trial's own undo steps now: its node must be back before the next preflight
        return rollback(self.kube, ctx.journal, plan.spec, ctx.log)

    def _control_plane_milestones(self, tr: _KubeTrial, out: Observed, t0: float) -> None:
        """The hooks' instants and the new Lease holder (``controller_manager.leader_elected``
        at its acquireTime where the clocks are one, else when the drill saw it)."""
        for name, mono in _hook_milestones(tr).items():
            if mono >= t0 and name not in out.milestones:
                out.milestones[name] = mono - t0
                row = {"milestone": name, "t": mono - t0, "t_server": math.nan}
                out.milestone_rows.append({**row, "detail": "hook output", "source": "hook"})
        watch = tr.leader
        if watch is None:
            return
        watch.stop()
        tr.info.update(lease_failed_reads=watch.failed_reads)
        if watch.elected is None:
            return
        seen, acquired, holder = watch.elected
        at = acquired if self.shared_clock and math.isfinite(acquired) else seen
        name = "controller_manager.leader_elected"
        out.milestones[name] = at - t0
        out.milestone_rows.append(
            {
                "milestone": name,
                "t": at - t0,
                "t_server": acquired - t0,
                "detail": f"Lease kube-system/kube-controller-manager holder {holder}",
                "source": "kubernetes API",
            }
        )
        tr.info["leader_after"] = holder

    def close(self) -> list[str]:
        if self.ctx is not None:
            rollback(self.kube, self.ctx.journal, self.spec, self.ctx.log)
        self.stop_event.set()
        for w in self.watchers:
            w.close()
        for w in self.watchers:
            w.join(timeout=self.spec.api_timeout)
        if self.ctx is not None:
            _write_observations(self.ctx.writer, self.obs)
        return []

    def undo(self, step: UndoStep) -> bool:
        return _undo(self.kube, self._ctx().journal, self.spec, step, self._ctx().log)

    def predict(self, plan: DrillPlan) -> pd.DataFrame | str:
        # the model's a(t) as this drill's prober sees it (chaoslab.compare.as_probed)
        horizon = plan.exp.horizon
        return as_probed(plan.prediction, self.prober, horizon, seed=plan.spec.seed)


def _write_observations(writer: RunWriter, obs: ObservationLog) -> None:
    rows = []
    for ob in obs.all:
        md = ob.obj.get("metadata") or {}
        rows.append(
            {
                "mono": ob.mono,
                "resource": ob.resource,
                "type": ob.type,
                "name": md.get("name", ob.obj.get("resource", "")),
                "resource_version": md.get("resourceVersion", ""),
                "summary": _summary(ob),
            }
        )
    cols = ["mono", "resource", "type", "name", "resource_version", "summary"]
    writer.add_table("observations.parquet", pd.DataFrame(rows, columns=cols))


def _discovery_json(plan: DrillPlan) -> str:
    disc = plan.discovery
    data = {
        "server_version": disc.server_version,
        "profile": disc.profile,
        "profile_note": disc.profile_note,
        "service": {
            k: (disc.service.get("spec") or {}).get(k)
            for k in ("type", "externalTrafficPolicy", "healthCheckNodePort", "ports")
        },
        "workload": {
            "kind": disc.workload_kind,
            "name": disc.workload_name,
            "replicas": disc.replicas,
            "selector": disc.selector,
            "pods": [p.__dict__ for p in disc.pods],
        },
        "nodes": [n.__dict__ for n in disc.nodes],
        "discovered": {k: {"value": str(v), "source": s} for k, (v, s) in disc.params().items()},
        "assumed": {k: {"value": v, "source": s} for k, v, s in plan.assumed},
        "cluster": disc.cluster(),
        "notes": disc.notes,
        "pdbs": disc.pdbs,
    }
    return json.dumps(data, indent=2, default=str) + "\n"


def _writer(plans: list[DrillPlan], out: Path) -> RunWriter:
    plan = plans[0]
    spec, kube, exp = plan.spec, plan.kube, plan.exp
    run_dir = new_run_dir(out, exp.slug(), "live")
    meta = {
        "experiment": exp.path,
        "design": plan.design,
        "fault": plan.name,
        "fault_target": plan.target,
        "method": spec.fault.method,
        "context": kube.context,
        "api_server": kube.host,
        "kubeconfig": spec.kubeconfig,
        "server_version": plan.discovery.server_version,
        "profiles": plan.profiles,
        "urls": spec.urls,
        "namespace": spec.namespace,
        "workload": f"{spec.workload.kind}/{spec.workload.name}",
        "service": spec.service,
        "run_id": run_dir.name.rsplit("-", 1)[-1],
        "seed": spec.seed,
        "horizon_s": exp.horizon,
        "prober": ProberInfo(spec.probe.rate, spec.probe.probers, spec.probe.bin).as_meta(),
        "trials_planned": spec.trials,
        **_calibration_meta(plan.calibration),
    }
    writer = RunWriter(run_dir, mode="live", target="kubernetes", meta=meta)
    writer.write_text("experiment.yaml", exp.effective_yaml(plan.overrides))
    # the spec with durations as written, so --recover reads it back
    live = json.dumps(live_data(exp, plan.index), indent=2, default=str)
    writer.write_text("live.json", live + "\n")
    writer.write_text("plan.txt", "\n".join(ln for p in plans for ln in p.lines) + "\n")
    writer.write_text("discovery.json", _discovery_json(plan))
    # with the model's a(t) (a_t/a_v): compare puts the run's prober on it, as predict does
    preds = [p.prediction for p in plans]
    writer.add_table("prediction.parquet", pd.concat(preds, ignore_index=True))
    if plan.calibration:
        rows = [r for c in plan.calibration for r in c.rows()]
        writer.write_text("calibration.csv", pd.DataFrame(rows).to_csv(index=False))
    return writer


def _calibration_meta(cals: list[Calibration]) -> dict[str, Any]:
    """meta.json's ``overrides`` (what the prediction ran with instead of the catalogue)
    and ``calibration`` (how each was measured), for calibrated values only."""
    if not cals:
        return {}
    return {
        "overrides": {c.key: c.override for c in cals},
        "calibration": {c.name: c.summary() for c in cals},
    }


def run_drill(
    plans: list[DrillPlan], *, out: Path, log: Callable[[str], None] = print
) -> DrillOutcome:
    """Run the trials of the plans (one per fault); rollback always runs. Plans on the
    local control plane run with its target and release it afterwards."""
    session = plans[0].session
    try:
        writer = _writer(plans, out)
        if session is None:
            return engine_run(KubeTarget(plans), writer, log=log)
        from chaoslab.live.cluster.target import LocalClusterTarget

        return engine_run(LocalClusterTarget(plans, session), writer, log=log)
    finally:
        if session is not None and session.close_after_run:
            for note in session.close():
                log(note)


def _recover_meta(path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """meta.json's kubeconfig and context for --recover; an unreadable one must not stop a
    rollback (live.json has the same), so it is noted and skipped."""
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        log(f"{path} unreadable ({str(e).splitlines()[0]}); using live.json")
        return {}
    return meta if isinstance(meta, dict) else {}


def recover(
    run_dir: Path,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    log: Callable[[str], None] = print,
) -> bool:
    """Finish the rollback a crashed or interrupted run left undone; True when none is left."""
    run_dir = Path(run_dir)
    if not (run_dir / "journal.jsonl").exists():
        raise LiveError(f"{run_dir}: no journal.jsonl (not a drill run folder)")
    try:
        spec = LiveSpec.model_validate(json.loads((run_dir / "live.json").read_text()))
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise LiveError(f"{run_dir}/live.json unreadable: {first}") from None
    meta = _recover_meta(run_dir / "meta.json", log)
    kube: Kube | None
    try:
        kube = load_kube(
            kubeconfig or meta.get("kubeconfig") or spec.kubeconfig,
            context or meta.get("context") or spec.context,
            spec.api_timeout,
            retries=spec.api_retries,
            retry_wait=spec.poll,
        )
    except KubeError as e:
        log(f"no API access ({e}); only hook steps can run")
        kube = None
    journal = Journal(run_dir)
    return engine_recover(run_dir, lambda s: _undo(kube, journal, spec, s, log), log=log)
