"""The one drill engine: a trial loop over a `DrillTarget`, for the lab and for clusters.

A target is anything a fault can be injected into and probed: the lab of real daemons
(`chaoslab.live.lab.drill.LabTarget`), a Kubernetes cluster
(`chaoslab.live.k8s.drill.KubeTarget`). It implements `DrillTarget`:

``open(ctx)``
    bring the target up (build the lab, start the watches); journal its undo first.
``faults()``
    the faults to drill, each with ``name`` (the ``fault`` column, the prediction's name)
    and ``target`` (the ``target`` column).
``preflight(fault, trial)``
    wait until the target is in its steady state (every probe ok for a window, every
    replica Ready, ...); raise a `LiveError` when it is not reached in time.
``choose(fault, trial) -> victim``
    the node or pod this trial hits, chosen now (VIP holders and pods move between trials).
``inject(fault, victim) -> t0``
    break it; return the fault instant on ``time.monotonic()``. Undo steps are journaled
    before the action.
``observe(fault, victim, t0) -> Observed``
    watch until the trial ends; return the probe records (``t`` on the monotonic clock,
    ``kind``, ``outcome``), the milestones seen (seconds after t0) and the horizon.
``restore(fault, victim) -> bool``
    undo the fault and stop the trial's probers (always runs: normal end, error, Ctrl-C,
    SIGTERM; ``victim`` is "" when the trial failed before choosing one); True when
    nothing is left to undo.
``close() -> notes``
    tear down (stop watches, remove the lab); ``predict(fault)`` gives the model's trials
    for the comparison; ``undo(step)`` runs one journaled undo step for ``--recover``.

The engine owns what both drills share: the trial loop, one signal guard (SIGINT/SIGTERM
raise `DrillInterrupted`, except during a rollback, which finishes first), the journal
(`chaoslab.live.journal`), the run folder (`chaoslab.results.new_run_dir`, format v2 with the
prober in ``meta.json``), probes -> a(t) -> `chaoslab.outage.trial_row`, and the
comparison. A new target (a local control plane) implements the methods above and nothing
else.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import pandas as pd

from chaoslab.errors import LiveError
from chaoslab.live import hookreaper
from chaoslab.live.journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    UndoStep,
    owner,
    owner_alive,
    pending_undo,
)
from chaoslab.live.probe import connection_fates
from chaoslab.outage import (
    PROBE_MILESTONES,
    availability_from_probes,
    latency_from_probes,
    metrics,
    milestone_column,
    probe_milestones,
    trial_row,
)
from chaoslab.results import (
    CALIBRATION_MODE,
    MILESTONE_COLUMNS,
    ProberInfo,
    Run,
    RunWriter,
    live_table,
)

__all__ = [
    "DrillContext",
    "DrillFault",
    "DrillInterrupted",
    "DrillOutcome",
    "DrillTarget",
    "Observed",
    "SignalGuard",
    "TrialResult",
    "left_injected",
    "left_line",
    "recover",
    "run_drill",
]

Log = Callable[[str], None]
#: the metrics every comparison.csv has a row for, before the milestones
_METRICS = ("recovery_s", "downtime_s", "degraded_s", "lost_s", "slow_s", "p99_latency_s")


class DrillInterrupted(BaseException):
    """SIGTERM (or Ctrl-C) during a drill: roll back, write what was measured, exit."""


class DrillFault(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def target(self) -> str: ...


@dataclass
class Observed:
    """What a target saw during one trial."""

    probes: pd.DataFrame
    horizon: float
    #: milestone name -> seconds after the fault (the first occurrence)
    milestones: dict[str, float] = field(default_factory=dict)
    #: one row per milestone with its evidence (``source``, ``detail``, ``t_server``)
    milestone_rows: list[dict[str, Any]] = field(default_factory=list)
    #: per-trial facts for trial_info.csv (target-specific columns)
    info: dict[str, Any] = field(default_factory=dict)
    aborted: str = ""


@dataclass
class DrillContext:
    journal: Journal
    writer: RunWriter
    guard: SignalGuard
    log: Log


class DrillTarget(Protocol):
    @property
    def kind(self) -> str:
        """``lab`` | ``kubernetes``: the run's ``target`` in meta.json."""

    @property
    def design(self) -> str: ...
    @property
    def prober(self) -> ProberInfo: ...
    @property
    def slow_threshold(self) -> float:
        """Seconds after which a successful probe counts as slow (``client.slow_threshold``
        of the experiment's parameters: the prediction's own threshold)."""

    @property
    def trials(self) -> int:
        """Trials per fault."""

    @property
    def cooldown(self) -> float:
        """Seconds between trials."""

    @property
    def milestone_names(self) -> Sequence[str]:
        """Milestones every trial has a column for (NaN when not seen)."""

    def open(self, ctx: DrillContext) -> None: ...
    def faults(self) -> Sequence[DrillFault]: ...
    def preflight(self, fault: Any, trial: int) -> None: ...
    def choose(self, fault: Any, trial: int) -> str: ...
    def inject(self, fault: Any, victim: str) -> float: ...
    def observe(self, fault: Any, victim: str, t0: float) -> Observed: ...
    def restore(self, fault: Any, victim: str) -> bool: ...
    def close(self) -> list[str]: ...
    def predict(self, fault: Any) -> pd.DataFrame | str: ...
    def undo(self, step: UndoStep) -> bool: ...


# --------------------------------------------------------------------------- signals


class SignalGuard:
    """SIGTERM and Ctrl-C raise DrillInterrupted, except while a rollback runs or the
    results are written: then they are noted, that work finishes first (a half-done
    rollback or half-written run is the worst outcome), and the drill stops after it."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.rolling_back = False
        self.doing = "the rollback"
        self.interrupted = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        first = not self.interrupted
        self.interrupted = name
        if self.rolling_back or not first:
            # once the drill is stopping, a second press must not cut its way out of the
            # code that stops it (the rollback is entered in a finally: clause)
            what = self.doing if self.rolling_back else "the rollback"
            self.log(f"{name} received: {what} finishes first")
            return
        raise DrillInterrupted(name)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    @contextlib.contextmanager
    def rollback(self, doing: str = "the rollback") -> Iterator[None]:
        """Signals are noted, not raised, inside (nested uses keep the outer one)."""
        outer, outer_doing = self.rolling_back, self.doing
        self.rolling_back, self.doing = True, doing
        try:
            yield
        finally:
            self.rolling_back, self.doing = outer, outer_doing


# --------------------------------------------------------------------------- trials


@dataclass
class TrialResult:
    row: dict[str, Any]
    info: dict[str, Any]
    milestones: list[dict[str, Any]]
    probes: pd.DataFrame


@dataclass
class DrillOutcome:
    run: Run
    status: str
    reason: str
    comparison: pd.DataFrame
    notes: list[str]

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def trials(self) -> pd.DataFrame:
        return self.run.trials


def slow_threshold(profiles: Sequence[str], overrides: dict[str, Any]) -> float:
    """The experiment's ``client.slow_threshold``: measured slow_s uses the prediction's."""
    from chaoslab.params import Dist, ParamSet

    value = ParamSet.resolve(profiles, overrides)["client.slow_threshold"]
    return value.mean() if isinstance(value, Dist) else float(value)


def _row(target: DrillTarget, fault: DrillFault, trial: int, obs: Observed, t0: float) -> dict:
    """The trial's row: probes -> a(t) -> the shared outage metrics (`outage.trial_row`)."""
    probes, horizon = obs.probes, obs.horizon
    new = probes[probes["kind"] == "new"] if "kind" in probes.columns else probes
    nan = (float("nan"), float("nan"))
    probed: dict[str, float] = {}
    if new.empty or horizon <= 0:
        times, values = [], []
        conn = lat = nan
    else:
        ok = (new["outcome"] == "ok").to_numpy()
        t, bin_s = new["t"].to_numpy(), target.prober.bin_s
        ts, vs = availability_from_probes(t, ok, t_fault=t0, bin_s=bin_s, horizon=horizon)
        probed = probe_milestones(t, ok, t_fault=t0, horizon=horizon)
        times, values = list(ts), list(vs)
        conn = connection_fates(probes, t0, horizon)
        recovery = metrics(times, values, horizon).recovery_s
        lat = latency_from_probes(
            t, ok, new["latency"].to_numpy(), t_fault=t0, bin_s=bin_s, horizon=horizon,
            threshold=target.slow_threshold, recovery_s=recovery,
        )  # fmt: skip
    key = {"design": target.design, "fault": fault.name, "target": fault.target, "trial": trial}
    return {
        **key,
        **trial_row(
            times,
            values,
            horizon,
            connections=conn,
            latency=lat,
            milestones={**probed, **obs.milestones},
            milestone_names=[*target.milestone_names, *PROBE_MILESTONES],
        ),
    }


def _probe_rows(row: dict[str, Any], key: dict[str, Any]) -> list[dict[str, Any]]:
    """milestones.parquet rows of the milestones the probes define (``service.recovered``,
    ``probe.*``: `chaoslab.outage`), for those the trial has."""
    out = []
    for name in ("service.recovered", *PROBE_MILESTONES):
        t = row[milestone_column(name)]
        if t == t:  # not NaN
            detail = "chaoslab.outage" if name == "service.recovered" else "new-connection probes"
            out.append({**key, "milestone": name, "t": t, "source": "probes", "detail": detail})
    return out


def _trial(ctx: DrillContext, target: DrillTarget, fault: DrillFault, i: int) -> TrialResult:
    """preflight, choose, inject, observe, and restore whatever happened."""
    log = ctx.log
    ctx.journal.write("trial.start", fault=fault.name, trial=i)
    info: dict[str, Any] = {"design": target.design, "fault": fault.name, "trial": i}
    victim = ""
    t0 = float("nan")
    obs: Observed | None = None
    try:
        target.preflight(fault, i)
        victim = target.choose(fault, i)
        info["victim"] = victim
        log(f"{fault.name} #{i + 1}/{target.trials} on {victim}")
        t0 = target.inject(fault, victim)
        info.update(t0_mono=t0, t0_wall=time.time() - (time.monotonic() - t0))
        obs = target.observe(fault, victim, t0)
    finally:
        with ctx.guard.rollback():
            if not target.restore(fault, victim):
                info["rollback_incomplete"] = True
        ctx.journal.write("trial.end", fault=fault.name, trial=i)
    if ctx.guard.interrupted:
        # a signal came while the trial was rolled back: what it measured was cut short
        info["interrupted"] = ctx.guard.interrupted
        obs.aborted = obs.aborted or f"interrupted ({ctx.guard.interrupted})"
    info.update(obs.info, horizon_s=obs.horizon, aborted=bool(obs.aborted))
    info["abort_reason"] = obs.aborted
    row = _row(target, fault, i, obs, t0)
    new = obs.probes[obs.probes["kind"] == "new"] if "kind" in obs.probes else obs.probes
    info.update(probes=len(new), failed=int((new["outcome"] != "ok").sum()) if len(new) else 0)
    probes = obs.probes.assign(design=target.design, fault=fault.name, trial=i)
    probes["t_rel"] = probes["t"] - t0 if len(probes) else []
    ms = [
        {"design": target.design, "fault": fault.name, "trial": i, **m} for m in obs.milestone_rows
    ]
    ms += _probe_rows(row, {"design": target.design, "fault": fault.name, "trial": i})
    log(
        f"{fault.name} #{i + 1} on {victim}: recovery {row['recovery_s']:.3g} s, downtime "
        f"{row['downtime_s']:.3g} s, lost {row['lost_s']:.3g} s, milestones {len(ms)}"
    )
    return TrialResult(row, info, ms, probes)


def _loop(ctx: DrillContext, target: DrillTarget, results: list[TrialResult]) -> tuple[str, str]:
    faults = list(target.faults())
    for n, fault in enumerate(faults):
        for i in range(target.trials):
            res = _trial(ctx, target, fault, i)
            results.append(res)
            ctx.writer.add_trials(pd.DataFrame([res.row]))
            if res.info.get("interrupted"):
                raise DrillInterrupted(res.info["interrupted"])
            if res.info.get("aborted"):
                return "aborted", str(res.info.get("abort_reason"))
            if i + 1 < target.trials or n + 1 < len(faults):
                time.sleep(target.cooldown)
    return "complete", ""


def _run(ctx: DrillContext, target: DrillTarget, results: list[TrialResult]) -> tuple[str, str]:
    """The loop, with every way it can end turned into a status."""
    log = ctx.log
    try:
        ctx.journal.write(
            "run.start",
            target=target.kind,
            design=target.design,
            trials=target.trials,
            **owner(),
        )
        left = left_injected(ctx.writer.path, ctx.writer.meta, target.kind)
        if left:
            raise LiveError(left)
        hookreaper.ensure()  # now, so that starting it does not delay the first hook
        target.open(ctx)
        return _loop(ctx, target, results)
    except DrillInterrupted as e:
        log(f"interrupted ({e}): rolling back")
        return "interrupted", str(e)
    except KeyboardInterrupt:
        log("interrupted (Ctrl-C): rolling back")
        return "interrupted", "SIGINT"
    except LiveError as e:
        ctx.journal.write("run.error", error=str(e))
        log(f"drill stopped: {e}")
        return "failed", str(e)
    except Exception as e:  # a bug: still roll back, keep the data, say where
        reason = f"{type(e).__name__}: {e}"
        ctx.journal.write("run.error", error=reason, traceback=traceback.format_exc())
        log(f"drill stopped by an internal error: {reason} (traceback in journal.jsonl)")
        return "failed", reason


def run_drill(target: DrillTarget, writer: RunWriter, *, log: Log = print) -> DrillOutcome:
    """Run every fault of the target ``target.trials`` times into ``writer``'s run folder;
    the target is always restored and closed, the folder always readable."""
    results: list[TrialResult] = []
    notes: list[str] = []
    journal = Journal(writer.path)
    with SignalGuard(log) as guard:
        ctx = DrillContext(journal, writer, guard, log)
        try:
            status, reason = _run(ctx, target, results)
        finally:
            with guard.rollback():
                notes += target.close()
                left = [s.id for s in journal.pending() if not target.undo(s)]
        if left and status == "complete":
            status = "needs-recovery"
        # a signal now waits: meta.json, the tables and the journal's run.end must agree
        with guard.rollback("writing the results"):
            run, comp = _write_results(ctx, target, results, (status, reason, left, notes))
            journal.write(
                "run.end",
                status=status,
                reason=reason,
                pending_undo=left,
                meta_status=run.meta.get("status"),
                n_trials=run.meta.get("n_trials"),
            )
    return DrillOutcome(run, status, reason, comp, notes)


def _write_results(
    ctx: DrillContext,
    target: DrillTarget,
    results: Sequence[TrialResult],
    end: tuple[str, str, list[str], list[str]],
) -> tuple[Run, pd.DataFrame]:
    """The live tables, the comparison (without aborted trials) and the final meta."""
    status, reason, left, notes = end
    writer = ctx.writer
    _write_tables(writer, results)
    measured = pd.DataFrame([r.row for r in results])
    kept = pd.DataFrame([r.row for r in results if not r.info.get("aborted")])
    aborted = len(results) - len(kept)
    if aborted:
        notes.append(
            f"{aborted} aborted or interrupted trial(s) left out of the comparison "
            "(trial_info.csv: aborted, abort_reason)"
        )
    comp = comparison(target, kept, writer, ctx.log) if not kept.empty else pd.DataFrame()
    if not comp.empty:
        writer.add_table("comparison.csv", comp)
    fields = {"reason": reason, "pending_undo": len(left), "notes": notes}
    if measured.empty:
        writer.finish_partial(status_detail=status, **fields)
        return Run(writer.path, dict(writer.meta)), comp
    return writer.finish(status, aborted_trials=aborted, **fields), comp


def comparison(
    target: DrillTarget, measured: pd.DataFrame, writer: RunWriter | None, log: Log
) -> pd.DataFrame:
    """The drill's ``comparison.csv`` (`chaoslab.compare.comparison_table`): each fault's
    prediction (`DrillTarget.predict`) against its trials, the probe bin as tolerance.
    The predictions are kept as ``prediction.parquet`` when the target has not stored its
    own (`chaoslab.compare.stored_prediction` reads it).
    Beyond recovery, downtime, degraded and lost time, every milestone the drill saw gets
    its row, with a note where the model does not have it (what the drill watched is worth
    reporting even where the model is silent)."""
    from chaoslab.compare import comparison_table

    predicted: dict[tuple[Any, ...], pd.DataFrame | str] = {}
    for fault in target.faults():
        log(f"predicting {fault.name}")
        pred = target.predict(fault)
        if not isinstance(pred, str):
            pred = pred.assign(design=target.design, fault=fault.name)
        predicted[(target.design, fault.name)] = pred
    frames = [p for p in predicted.values() if not isinstance(p, str)]
    if writer is not None and frames and not (writer.path / "prediction.parquet").exists():
        writer.add_table("prediction.parquet", pd.concat(frames, ignore_index=True))
    names = list(_METRICS) + sorted(
        c for c in measured.columns if c.startswith("at_") and measured[c].notna().any()
    )
    return comparison_table(
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        measured,
        metrics=names,
        tolerance_s=target.prober.bin_s,
        reasons={k: v for k, v in predicted.items() if isinstance(v, str)},
    )


def _write_tables(writer: RunWriter, results: Sequence[TrialResult]) -> None:
    probes = [r.probes for r in results if not r.probes.empty]
    writer.add_table("probes.parquet", live_table("probes", probes))
    ms = [m for r in results for m in r.milestones]
    writer.add_table("milestones.parquet", pd.DataFrame(ms, columns=list(MILESTONE_COLUMNS)))
    writer.add_table(
        "trial_info.csv", live_table("trial_info", [pd.DataFrame([r.info]) for r in results])
    )


# --------------------------------------------------------------------------- recover


def _target_id(meta: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two drills' targets apart in their meta.json: the kind, the cluster's
    API server and context, the lab's name."""
    lab = meta.get("lab")
    name = lab.get("name") if isinstance(lab, dict) else None
    return (meta.get("target"), meta.get("api_server"), meta.get("context"), name)


def _meta(run: Path) -> dict[str, Any]:
    try:
        meta = json.loads((run / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def left_injected(run_dir: Path, meta: dict[str, Any], kind: str) -> str:
    """One line naming an earlier drill of the same target, a run folder beside
    ``run_dir`` (under the same ``--out``), whose journal still has undo steps while no
    process works on it (killed, or its rollback failed): its fault may still be injected
    (or its calibration's annotation still be on a node), and a drill on top of it would
    measure both (`left_line`). "" when there is none."""
    here, out = Path(run_dir), Path(run_dir).parent.parent
    me = _target_id(meta)
    for path in sorted(out.glob(f"*/*/{JOURNAL_NAME}")):
        run, theirs = path.parent, _meta(path.parent)
        if run == here or _target_id(theirs) != me:
            continue
        try:
            steps = pending_undo(path)
            if not steps or owner_alive(path):
                continue
        except (OSError, JournalError):
            continue  # not a journal chaoslab can act on: --recover says so for it
        return left_line(run, theirs, steps, kind)
    return ""


def left_line(run: Path, meta: dict[str, Any], steps: Sequence[UndoStep], kind: str) -> str:
    """`left_injected`'s line for ``run``: an earlier drill's fault, or the annotation of
    an earlier drill's calibration (``live.calibrate``, a folder of its own)."""
    cmd = "chaoslab lab drill --recover" if kind == "lab" else "chaoslab drill --recover"
    if meta.get("mode") == CALIBRATION_MODE:
        what = "a calibration of an earlier drill of this target"
        s = steps[0].step
        left = (
            f"its annotation {s.get('annotation', '?')} may still be on node "
            f"{s.get('node') or meta.get('node', '?')}"
        )
        cmd = "chaoslab drill --recover"  # calibrations are Kubernetes drills' only
    else:
        what, left = "an earlier drill of this target", "its fault may still be injected"
    return (
        f"{run}: {what} left {len(steps)} undo step(s) not done (stopped before its "
        f"rollback ended): {left}; run '{cmd} {run}' first, or move that folder out of "
        f"{run.parent.parent} if the target was put right by hand"
    )


def recover(run_dir: Path, undo: Callable[[UndoStep], bool], *, log: Log = print) -> bool:
    """Finish the rollback a crashed or interrupted run left undone (its journal's pending
    undo steps, newest first, each run by ``undo``); True when none is left."""
    journal = Journal(Path(run_dir))
    if not journal.path.exists():
        raise LiveError(f"{run_dir}: no journal.jsonl (not a drill run folder)")
    steps = journal.pending()
    if not steps:
        log("nothing to roll back")
        return True
    journal.write("recover.start", steps=[s.id for s in steps], **owner())
    with SignalGuard(log) as guard, guard.rollback():
        left = [s.id for s in steps if not undo(s)]
    journal.write("recover.end", ok=not left, left=left)
    return not left
