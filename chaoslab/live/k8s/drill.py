"""A drill: discover, predict, then inject, probe, watch, always roll back, and compare.

`plan_drill` reads the experiment's ``live:`` section, discovers the cluster and runs the
model's prediction for what it found; without ``--yes`` that plan is all that happens.
`run_drill` then runs the trials:

1. preflight: every replica Ready, the target node Ready, every probe of the last
   ``preflight.window`` successful (the shared prober runs all through the trial);
2. choose the target now (pods move between trials) and check the safety rules;
3. inject (method recorded), with the undo step journaled first;
4. observe: watches -> milestones; probes -> a(t) -> the shared outage metrics; abort at
   once when one outage lasts longer than ``limits.max_outage``; the trial ends when the
   service is back, the workload is whole again (and a self-healing node is Ready) and
   that held for ``settle``, or at ``limits.trial_timeout``;
5. roll back (always: normal end, exception, Ctrl-C, SIGTERM), then cool down.

The run folder has the simulated runs' layout (``meta.json`` with mode ``live`` and target
``kubernetes``, ``trials.parquet``, ``summary.csv``) plus ``probes.parquet``,
``milestones.parquet``, ``observations.parquet``, ``trial_info.csv``, ``journal.jsonl``,
``discovery.json``, ``prediction.parquet`` and ``comparison.csv``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from chaoslab.compare import comparison_table, quantile
from chaoslab.experiment import Experiment, ExperimentError, load_experiment
from chaoslab.live.k8s.discover import Discovery, discover, node_info, pod_ready
from chaoslab.live.k8s.inject import (
    DrillRefused,
    InjectionError,
    Injector,
    Target,
    choose_target,
    run_undo,
)
from chaoslab.live.k8s.journal import Journal, pending_undo
from chaoslab.live.k8s.kube import Kube, KubeError, load_kube
from chaoslab.live.k8s.observe import (
    MilestoneTracker,
    Observation,
    ObservationLog,
    Watcher,
    start_watches,
)
from chaoslab.live.k8s.spec import NODE_FAULTS, LiveSpec
from chaoslab.live.probe import connection_fates
from chaoslab.outage import availability_from_probes, metrics

__all__ = [
    "DrillInterrupted",
    "DrillPlan",
    "comparison",
    "load_live",
    "plan_drill",
    "recover",
    "run_drill",
]

_METRICS = ("recovery_s", "downtime_s", "degraded_s", "lost_s")
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


class DrillInterrupted(BaseException):
    """SIGTERM (or Ctrl-C) during a drill: roll back, write what was measured, exit."""


# --------------------------------------------------------------------------- loading


def load_live(path: str | Path) -> tuple[Experiment, LiveSpec]:
    """The experiment and its ``live:`` section; errors name file, line and key."""
    exp = load_experiment(path)
    raw = exp.model.live
    if raw is None:
        raise ExperimentError(exp.path, None, "live", "this experiment has no live: section")
    try:
        # a LiveSpec already (once the experiment schema types live:) passes as it is
        spec = raw if isinstance(raw, LiveSpec) else LiveSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ("live", *err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        raise exp.error(loc, msg) from None
    keys = [key for _, key, _ in exp.design_entries()]
    design = spec.design or (keys[0] if len(keys) == 1 else None)
    if design is None:
        raise exp.error(
            ("live",),
            "the experiment has several designs; say which one the cluster runs with live.design",
        )
    if design not in keys:
        raise exp.error(("live", "design"), f"{design!r} is not among the experiment's designs")
    return exp, spec


def _design(exp: Experiment, spec: LiveSpec) -> str:
    return spec.design or exp.design_entries()[0][1]


def _model_fault(exp: Experiment, spec: LiveSpec) -> dict[str, Any]:
    """The fault as the model takes it, with options from the experiment's matching fault."""
    f = spec.fault
    opts: dict[str, Any] = {}
    for fm in exp.model.faults:
        if fm.kind == f.kind:
            opts.update(fm.model_extra or {})
            break
    if f.duration is not None and f.kind in ("node-partition", "kubelet-stop"):
        opts["duration"] = f"{f.duration:g}s"
    target = f.target.select or ("app-pod" if f.target.pod else "app-pod-node")
    return {"kind": f.kind, "target": target, **opts}


# --------------------------------------------------------------------------- plan


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


def plan_drill(
    path: str | Path, *, kubeconfig: str | None = None, context: str | None = None
) -> DrillPlan:
    import chaoslab
    from chaoslab.params import ParamSet, profile

    exp, spec = load_live(path)
    exp.validate()
    kube = load_kube(
        kubeconfig or spec.kubeconfig,
        context or spec.context,
        spec.api_timeout,
        retries=spec.api_retries,
        retry_wait=spec.poll,
    )
    disc = discover(kube, spec)
    named = spec.fault.target.node
    if named is not None and spec.fault.kind in NODE_FAULTS:
        node = next((n for n in disc.nodes if n.name == named), None)
        if node is None:
            raise exp.error(("live", "fault", "target", "node"), f"no node named {named!r}")
        if node.control_plane and not spec.limits.allow_control_plane:
            raise DrillRefused(
                f"{named} is a control-plane node; set limits.allow_control_plane: true to allow it"
            )
    k8s_profile = disc.profile
    profiles = [n for n in exp.profiles if profile(n).family != "k8s"] + [k8s_profile]
    found = disc.params()
    overrides: dict[str, Any] = dict(exp.overrides())
    notes = []
    for key, (val, src) in found.items():
        if key in overrides and str(overrides[key]) != str(val):
            notes.append(
                f"{key}: experiment says {overrides[key]}, cluster has {val} ({src}); "
                "using the cluster's"
            )
        overrides[key] = val
    if spec.fault.out_of_service_after is not None:
        # the drill plays the operator who force-deletes the lost node's pods
        overrides["cluster.force_delete_after"] = f"{spec.fault.out_of_service_after:g}s"
    ps = ParamSet.resolve(profiles, overrides, override_source="drill discovery")
    assumed = [
        (k, ps.text(k), ps.sources[k]) for k in ASSUMED_KEYS if k in ps.values and k not in found
    ]
    design = _design(exp, spec)
    mf = _model_fault(exp, spec)
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
    lines = [
        f"drill {exp.path}: {design} x {spec.fault.kind} by {spec.fault.method} "
        f"on context {kube.context or '(current)'} at {kube.host}"
    ]
    lines += disc.lines(assumed)
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
    return DrillPlan(
        exp, spec, kube, disc, design, profiles, overrides, assumed, prediction, mf, lines
    )


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


# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def _signals(state: dict[str, Any], log: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM and Ctrl-C raise DrillInterrupted, except while a rollback runs: then they
    are noted and the rollback finishes first (a half-done rollback is the worst outcome)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if state.get("rolling_back"):
            state["interrupted"] = name
            log(f"{name} received: the rollback finishes first")
            return
        state["interrupted"] = name
        raise DrillInterrupted(name)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- run


@dataclass
class _TrialResult:
    row: dict[str, Any]
    info: dict[str, Any]
    milestones: list[dict[str, Any]]
    probes: pd.DataFrame


def _run_id(path: str) -> str:
    h = hashlib.sha1(f"{path}{time.time_ns()}".encode()).hexdigest()[:6]
    return h


def rollback(
    kube: Kube | None,
    journal: Journal,
    spec: LiveSpec,
    state: dict[str, Any],
    log: Callable[[str], None],
) -> bool:
    """Run every pending undo step (newest first); True when none is left."""
    state["rolling_back"] = True
    try:
        steps = journal.pending()
        if not steps:
            return True
        journal.write("rollback.start", steps=[s.id for s in steps])
        log(f"rollback: {len(steps)} step(s)")
        left = []
        for s in steps:
            ok = run_undo(
                kube,
                journal,
                s,
                node_ready_timeout=spec.limits.node_return,
                poll=spec.poll,
                log=log,
            )
            if not ok:
                left.append(s.id)
        journal.write("rollback.end", ok=not left, left=left)
        if left:
            log(
                f"rollback incomplete: {', '.join(left)} left; see journal.jsonl, then run "
                "chaoslab drill --recover RUN_DIR"
            )
        return not left
    finally:
        state["rolling_back"] = False


def run_drill(plan: DrillPlan, *, out: Path, log: Callable[[str], None] = print) -> Path:
    """Run the trials of a plan; returns the run folder. Rollback always runs."""
    from chaoslab.live.probe import ProbeConfig, Prober
    from chaoslab.live.probe import Target as ProbeTarget
    from chaoslab.mechanisms.base import MILESTONES, milestone_column
    from chaoslab.results import RunWriter

    spec, kube, disc, exp = plan.spec, plan.kube, plan.discovery, plan.exp
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    run_id = _run_id(exp.path)
    run_dir = Path(out) / exp.slug() / f"{stamp}-live-{run_id}"
    writer = RunWriter(
        run_dir,
        mode="live",
        target="kubernetes",
        meta={
            "experiment": exp.path,
            "design": plan.design,
            "fault": spec.fault.kind,
            "fault_target": plan.model_fault["target"],
            "method": spec.fault.method,
            "context": kube.context,
            "api_server": kube.host,
            "kubeconfig": spec.kubeconfig,
            "server_version": disc.server_version,
            "profiles": plan.profiles,
            "urls": spec.urls,
            "namespace": spec.namespace,
            "workload": f"{spec.workload.kind}/{spec.workload.name}",
            "service": spec.service,
            "run_id": run_id,
            "seed": spec.seed,
            "trials_planned": spec.trials,
        },
    )
    journal = Journal(run_dir)
    writer.write_text("experiment.yaml", plan.exp.effective_yaml(plan.overrides))
    # the section as written in the file (durations with units), so --recover reads it back
    # whatever type the experiment schema gives live:
    import yaml

    raw_live = (yaml.safe_load(exp.text) or {}).get("live", {})
    writer.write_text("live.json", json.dumps(raw_live, indent=2, default=str) + "\n")
    writer.write_text("plan.txt", "\n".join(plan.lines) + "\n")
    writer.write_text(
        "discovery.json",
        json.dumps(
            {
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
                "discovered": {
                    k: {"value": str(v), "source": s} for k, (v, s) in disc.params().items()
                },
                "assumed": {k: {"value": v, "source": s} for k, v, s in plan.assumed},
                "cluster": disc.cluster(),
                "notes": disc.notes,
                "pdbs": disc.pdbs,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    writer.add_table(
        "prediction.parquet",
        plan.prediction.drop(columns=[c for c in ("a_t", "a_v") if c in plan.prediction.columns]),
    )
    journal.write(
        "run.start",
        run_id=run_id,
        context=kube.context,
        api_server=kube.host,
        fault=spec.fault.kind,
        method=spec.fault.method,
        trials=spec.trials,
    )
    state: dict[str, Any] = {}
    stop = threading.Event()
    obs = ObservationLog()
    watchers: list[Watcher] = []
    results: list[_TrialResult] = []
    status = "complete"
    reason = ""
    cfgs = [
        ProbeConfig(
            ProbeTarget.parse(u),
            spec.probe.rate,
            spec.probe.probers,
            spec.probe.timeout,
            spec.probe.long,
            spec.probe.long_interval,
        )
        for u in spec.urls
    ]
    rng = random.Random(spec.seed)
    try:
        with _signals(state, log):
            try:
                watchers = start_watches(
                    kube,
                    spec.namespace,
                    spec.service,
                    disc.selector,
                    obs,
                    stop,
                    server_timeout=_WATCH_SERVER_TIMEOUT,
                    read_timeout=_WATCH_SERVER_TIMEOUT + spec.api_timeout,
                    backoff=spec.poll,
                )
                for w in watchers:
                    if not w.listed.wait(spec.preflight.timeout):
                        raise KubeError(0, f"cannot list {w.resource}: {w.error}")
                for i in range(spec.trials):
                    _trial(
                        i,
                        plan,
                        journal,
                        run_id,
                        obs,
                        cfgs,
                        Prober,
                        rng,
                        state,
                        log,
                        writer,
                        MILESTONES,
                        milestone_column,
                        results.append,
                    )
                    res = results[-1]
                    if res.info.get("aborted"):
                        status, reason = "aborted", str(res.info.get("abort_reason"))
                        break
                    if i + 1 < spec.trials:
                        log(f"cooldown {spec.cooldown:g}s")
                        time.sleep(spec.cooldown)
            except DrillInterrupted as e:
                status, reason = "interrupted", str(e)
                log(f"interrupted ({e}): rolling back")
            except KeyboardInterrupt:
                status, reason = "interrupted", "SIGINT"
                log("interrupted (Ctrl-C): rolling back")
            except (KubeError, InjectionError, DrillRefused) as e:
                status, reason = "failed", str(e)
                journal.write("run.error", error=str(e))
                log(f"drill stopped: {e}")
            except Exception as e:  # a bug: still roll back, keep the data, say where
                import traceback

                status, reason = "failed", f"{type(e).__name__}: {e}"
                journal.write("run.error", error=reason, traceback=traceback.format_exc())
                log(f"drill stopped by an internal error: {reason} (traceback in journal.jsonl)")
            finally:
                ok = rollback(kube, journal, spec, state, log)
                if not ok and status == "complete":
                    status = "needs-recovery"
    finally:
        stop.set()
        for w in watchers:
            w.close()
        for w in watchers:
            w.join(timeout=spec.api_timeout)
        _write_results(writer, plan, results, obs, status, reason, journal, state)
    return run_dir


def _trial(
    i: int,
    plan: DrillPlan,
    journal: Journal,
    run_id: str,
    obs: ObservationLog,
    cfgs: list[Any],
    prober_cls: Any,
    rng: random.Random,
    state: dict[str, Any],
    log: Callable[[str], None],
    writer: Any,
    milestones_reg: dict[str, str],
    mcol: Callable[[str], str],
    sink: Callable[[_TrialResult], None],
) -> None:
    spec, kube, disc = plan.spec, plan.kube, plan.discovery
    log(f"trial {i}: preflight")
    journal.write("trial.start", trial=i)
    probers: list[Any] = []
    info: dict[str, Any] = {"trial": i, "aborted": False, "abort_reason": ""}
    t0 = math.nan
    end = math.nan
    tracker: MilestoneTracker | None = None
    inj: Injector | None = None
    try:
        for c in cfgs:
            probers.append(prober_cls(c).start())
        _preflight(plan, probers, log)
        kube.sample_clock(_CLOCK_SAMPLES, 1.0 / _CLOCK_SAMPLES)
        target = choose_target(kube, spec, disc, rng)
        info.update(
            node=target.node.name if target.node else "",
            pod=target.pod.name if target.pod else "",
            method=spec.fault.method,
            affected=",".join(target.affected),
        )
        pods = kube.get(f"/api/v1/namespaces/{spec.namespace}/pods", labelSelector=disc.selector)[
            "items"
        ]
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
        tracker = MilestoneTracker(
            t0=math.inf,
            clock=kube.clock,
            fault=spec.fault.kind,
            node=target.node.name
            if (target.node and spec.fault.kind not in ("pod-delete", "pod-kill"))
            else None,
            targets=frozenset(target.affected),
            initial_pods=frozenset(p["metadata"]["name"] for p in pods),
            initial_ready_endpoints=ready_eps,
            initial_uids=frozenset(p["metadata"].get("uid", "") for p in pods),
        )
        tracker.seed_restarts(pods)
        for ob in obs.all:
            tracker.feed(ob)  # state before the fault (t0 = inf: no milestone yet)
        obs.drain()
        inj = Injector(kube, spec, journal, run_id, i, target, log)
        log(f"trial {i}: {spec.fault.kind} on {target.label} ({spec.fault.method})")
        t0 = inj.inject()
        tracker.t0 = t0
        info.update(t0_mono=t0, t0_wall=time.time() - (time.monotonic() - t0), **inj.details)
        end = _observe(plan, tracker, obs, probers, inj, target, t0, info, log)
    finally:
        frames = []
        for c, p in zip(cfgs, probers, strict=False):
            try:
                df = p.stop()
            except Exception as e:  # a prober crash must not skip the rollback
                log(f"prober for {c.target} failed: {e}")
                df = p.snapshot()
            df.insert(0, "url", str(c.target))
            frames.append(df)
        if not math.isfinite(end) or end < t0:
            end = time.monotonic()
        if inj is not None:
            inj.stop(spec.api_timeout)  # no eviction may follow the uncordon
        # the trial's own undo steps now: its node must be back before the next preflight
        if not rollback(kube, journal, spec, state, log):
            info["rollback_incomplete"] = True
        journal.write("trial.end", trial=i, aborted=info.get("aborted", False))
        try:
            res = _finish_trial(
                plan, i, frames, t0, end, tracker, info, milestones_reg, mcol, writer, log
            )
        except Exception as e:  # never mask the trial's own exception
            journal.write("trial.results_error", trial=i, error=f"{type(e).__name__}: {e}")
            log(f"trial {i}: results could not be computed: {e}")
            res = _TrialResult({}, info, [], pd.DataFrame())
        sink(res)


def _finish_trial(
    plan: DrillPlan,
    i: int,
    frames: list[pd.DataFrame],
    t0: float,
    end: float,
    tracker: MilestoneTracker | None,
    info: dict[str, Any],
    milestones_reg: dict[str, str],
    mcol: Callable[[str], str],
    writer: Any,
    log: Callable[[str], None],
) -> _TrialResult:
    probes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    horizon = end - t0 if math.isfinite(t0) else 0.0
    probes.insert(0, "trial", i)
    probes["t_rel"] = probes["t"] - t0 if math.isfinite(t0) else math.nan
    row = _trial_row(plan, i, probes, t0, horizon, tracker, milestones_reg, mcol)
    milestones: list[dict[str, Any]] = []
    if tracker is not None and math.isfinite(t0):
        for m in tracker.found.values():
            milestones.append(
                {
                    "trial": i,
                    "milestone": m.name,
                    "t": m.t,
                    "t_server": m.t_server,
                    "detail": m.detail,
                }
            )
        if row["recovered"] and row["recovery_s"] > 0:
            milestones.append(
                {
                    "trial": i,
                    "milestone": "service.recovered",
                    "t": row["recovery_s"],
                    "t_server": math.nan,
                    "detail": "probes (chaoslab.outage)",
                }
            )
    info.update(plan.kube.clock.as_dict())
    info["api_reads_retried"] = plan.kube.retried
    info["horizon_s"] = horizon
    if math.isfinite(t0):  # a trial that never injected has nothing to add
        writer.add_trials(pd.DataFrame([row]))
        log(
            f"trial {i}: recovery {row['recovery_s']:.3g}s, downtime {row['downtime_s']:.3g}s, "
            f"lost {row['lost_s']:.3g}s, milestones {len(milestones)}"
        )
    return _TrialResult(row if math.isfinite(t0) else {}, info, milestones, probes)


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
            recent = df[df["t"] >= now - spec.preflight.window - spec.probe.timeout]
            recent = recent[recent["t"] <= now - spec.probe.timeout]
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


def _current(
    probes: list[Any], t0: float, now: float, spec: LiveSpec
) -> tuple[float, float, bool, float]:
    """(recovery_s so far, outage stretch start, currently fully up, horizon) from the
    probes whose outcome is known (started at least one timeout ago)."""
    frames = [p.snapshot() for p in probes]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    horizon = now - spec.probe.timeout - t0
    if horizon <= 0 or df.empty:
        return 0.0, math.nan, False, max(horizon, 0.0)
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
        return 0.0, math.nan, False, max(horizon, 0.0)
    m = metrics(list(ts), list(vs), horizon)
    up = bool(vs[-1] >= 1.0)
    start = math.nan
    if not up:
        j = len(vs) - 1
        while j > 0 and vs[j - 1] < 1.0:
            j -= 1
        start = float(ts[j])
    return (m.recovery_s if m.recovered else math.inf), start, up, horizon


def _observe(
    plan: DrillPlan,
    tracker: MilestoneTracker,
    obs: ObservationLog,
    probers: list[Any],
    inj: Injector,
    target: Target,
    t0: float,
    info: dict[str, Any],
    log: Callable[[str], None],
) -> float:
    spec, disc = plan.spec, plan.discovery
    f = spec.fault
    steady_since: float | None = None
    node_must_return = f.kind in ("node-partition", "kubelet-stop", "node-drain") or (
        f.kind == "node-crash" and f.method == "pod" and f.crash == "reboot"
    )
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
        _rec, start, up, _h = _current(probers, t0, now, spec)
        if not up and math.isfinite(start) and now - (t0 + start) > spec.limits.max_outage:
            info.update(
                aborted=True,
                abort_reason=(
                    f"outage longer than limits.max_outage ({spec.limits.max_outage:g}s)"
                ),
            )
            inj.journal.write("trial.abort", trial=inj.trial, reason=info["abort_reason"])
            log(f"abort: {info['abort_reason']}; recovering now")
            return now
        if now - t0 > spec.limits.trial_timeout:
            info["timed_out"] = True
            inj.journal.write("trial.timeout", trial=inj.trial)
            log(f"trial timeout ({spec.limits.trial_timeout:g}s)")
            return now
        ready = sum(1 for r in tracker.pods_ready.values() if r)
        whole = ready >= disc.replicas
        node_ok = True
        if target.node is not None and f.kind in NODE_FAULTS and node_must_return:
            node_ok = bool(tracker.node_ready) and (
                "node.not_ready" not in tracker.found
                or "node.ready" in tracker.found
                or f.kind == "node-drain"
            )
        if up and whole and node_ok and now - t0 > spec.probe.timeout:
            steady_since = steady_since or now
            if now - steady_since >= spec.settle:
                return now
        else:
            steady_since = None


def _trial_row(
    plan: DrillPlan,
    i: int,
    probes: pd.DataFrame,
    t0: float,
    horizon: float,
    tracker: MilestoneTracker | None,
    reg: dict[str, str],
    mcol: Callable[[str], str],
) -> dict[str, Any]:
    spec = plan.spec
    row: dict[str, Any] = {
        "design": plan.design,
        "fault": spec.fault.kind,
        "target": plan.model_fault["target"],
        "trial": i,
    }
    if probes.empty or not math.isfinite(t0) or horizon <= 0:
        row.update(
            recovery_s=math.nan,
            recovered=False,
            downtime_s=math.nan,
            degraded_s=math.nan,
            lost_s=math.nan,
            connections_reset=math.nan,
            connections_hung=math.nan,
        )
        ts, vs = np.array([0.0]), np.array([1.0])
    else:
        ts, vs = availability_from_probes(
            probes["t"].to_numpy(),
            (probes["outcome"] == "ok").to_numpy(),
            t_fault=t0,
            bin_s=spec.probe.bin,
            horizon=horizon,
        )
        m = metrics(list(ts), list(vs), horizon)
        row.update(
            recovery_s=m.recovery_s,
            recovered=m.recovered,
            downtime_s=m.downtime_s,
            degraded_s=m.degraded_s,
            lost_s=m.lost_s,
        )
        row.update(
            zip(
                ("connections_reset", "connections_hung"),
                connection_fates(probes, t0, horizon),
                strict=True,
            )
        )
    found = tracker.found if tracker is not None else {}
    for name in reg:
        row[mcol(name)] = found[name].t if name in found else math.nan
    if row.get("recovered") and row["recovery_s"] > 0:
        row[mcol("service.recovered")] = row["recovery_s"]
    row["a_t"] = [float(x) for x in ts]
    row["a_v"] = [float(x) for x in vs]
    return row


# --------------------------------------------------------------------------- results


def comparison(
    prediction: pd.DataFrame,
    measured: pd.DataFrame,
    design: str,
    fault: str,
    tolerance: float = 0.0,
) -> pd.DataFrame:
    """The shared comparison (:func:`chaoslab.compare.comparison_table`, the file the lab
    writes too) of one design x fault: the prediction the drill was planned with against
    its trials, the tolerance being the probe bin.

    Beyond the default metrics, degraded_s and every milestone the drill saw are compared:
    a milestone the model does not have, or never reaches, gets its row with a note
    (what the drill watched is worth reporting even where the model is silent)."""
    names = list(_METRICS) + sorted(
        c for c in measured.columns if c.startswith("at_") and measured[c].notna().any()
    )
    return comparison_table(
        prediction.assign(design=design, fault=fault),
        measured.assign(design=design, fault=fault),
        metrics=names,
        tolerance_s=tolerance,
    )


def _write_results(
    writer: Any,
    plan: DrillPlan,
    results: list[_TrialResult],
    obs: ObservationLog,
    status: str,
    reason: str,
    journal: Journal,
    state: dict[str, Any],
) -> None:
    probes = [r.probes for r in results if not r.probes.empty]
    if probes:
        writer.add_table("probes.parquet", pd.concat(probes, ignore_index=True))
    ms = [m for r in results for m in r.milestones]
    writer.add_table(
        "milestones.parquet",
        pd.DataFrame(ms, columns=["trial", "milestone", "t", "t_server", "detail"]),
    )
    writer.add_table("trial_info.csv", pd.DataFrame([r.info for r in results]))
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
    writer.add_table(
        "observations.parquet",
        pd.DataFrame(
            rows, columns=["mono", "resource", "type", "name", "resource_version", "summary"]
        ),
    )
    measured = pd.DataFrame([r.row for r in results if r.row])
    if not measured.empty:
        comp = comparison(
            plan.prediction,
            measured,
            plan.design,
            plan.spec.fault.kind,
            tolerance=plan.spec.probe.bin,
        )
        writer.add_table("comparison.csv", comp)
    left = pending_undo(journal.path)
    journal.write("run.end", status=status, reason=reason, pending_undo=[s.id for s in left])
    fields = {"reason": reason, "pending_undo": len(left)}
    if not measured.empty:
        writer.finish(status, **fields)
    else:
        writer.finish_partial(status_detail=status, **fields)


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


def recover(
    run_dir: Path,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    log: Callable[[str], None] = print,
) -> bool:
    """Finish the rollback a crashed or interrupted run left undone; True when none is left."""
    run_dir = Path(run_dir)
    journal = Journal(run_dir)
    if not journal.path.exists():
        raise FileNotFoundError(f"{run_dir}: no journal.jsonl (not a drill run folder)")
    try:
        spec = LiveSpec.model_validate(json.loads((run_dir / "live.json").read_text()))
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise FileNotFoundError(f"{run_dir}/live.json unreadable: {first}") from None
    steps = journal.pending()
    if not steps:
        log("nothing to roll back")
        return True
    meta = (
        json.loads((run_dir / "meta.json").read_text()) if (run_dir / "meta.json").exists() else {}
    )
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
    journal.write("recover.start", steps=[s.id for s in steps])
    state: dict[str, Any] = {}
    with _signals(state, log):
        ok = rollback(kube, journal, spec, state, log)
    journal.write("recover.end", ok=ok)
    return ok
