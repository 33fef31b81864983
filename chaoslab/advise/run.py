"""Run the advisor: check, plan, search, write the run folder (``chaoslab advise``).

>>> result = chaoslab.advise.advise("experiments/advise-seed.yaml", "results", workers=2)
>>> result.advice[0].best.annual.minutes       # expected unavailability, minutes per year
>>> result.run.path                             # trials, summary.csv, advice.csv, figures

An experiment's ``advise:`` section (`chaoslab.advise.spec`) names the timers to try per
design, how often real failures and transient noise happen, and the constraints. Each
design at each timer setting is a *point*: a cell per real fault and per kind of noise
(`chaoslab.advise.plan`); a point's trials times the rates give its expected annual loss,
split into real failures and side effects, and its spurious failovers per year
(`chaoslab.advise.cost`). Successive halving on trial counts picks the best point
(`chaoslab.advise.search`), reusing every cell's cached trials across calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from chaoslab.advise.advice import DesignAdvice, advice_frame, design_advice, points_frame
from chaoslab.advise.plan import Point, plan_points
from chaoslab.advise.search import Evaluator, Limits, SearchResult, successive_halving
from chaoslab.advise.spec import AdviseSpec, parse_rate, problems
from chaoslab.errors import UserError
from chaoslab.experiment import Experiment, ExperimentError, load_experiment
from chaoslab.params import ParamSet, lookup
from chaoslab.params.dists import Dist
from chaoslab.params.rates import NOISE_KEYS, NOISE_SCOPE
from chaoslab.results import Run, RunWriter, atomic_write_bytes, new_run_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AdviseResult", "AdviseSpec", "advise", "check", "limits_of"]


@dataclass(frozen=True)
class AdviseResult:
    advice: list[DesignAdvice]
    search: SearchResult
    limits: Limits
    run: Run
    points: int
    timing: dict[str, float]

    @property
    def any_feasible(self) -> bool:
        return any(d.feasible for d in self.advice)


def check(exp: Experiment) -> AdviseSpec:
    """The experiment's advise: section, its meaning checked (ExperimentError, located)."""
    spec = getattr(exp.model, "advise", None)
    if spec is None:
        raise exp.error((), "no advise: section (designs, timers, rates, noise, constraints)")
    exp.validate()
    if exp.model.sweep:
        raise exp.error(("sweep",), "advise varies the timers itself: move sweep: into "
                                    "advise.timers")  # fmt: skip
    entries = exp.design_entries()
    variants = {label: dict(v.params) if v else {} for label, _, v in entries}
    names = {f.result_name: f.kind for f in exp.faults()}
    found = list(problems(spec, [label for label, _, _ in entries], names, variants))
    if found:
        found.sort(key=lambda p: exp.line(*p[0]) or 0)
        raise ExperimentError(*[exp.located(loc, msg) for loc, msg in found])
    return spec


def noise_scaled(exp: Experiment, factor: float) -> Experiment:
    """``exp`` with every ``advise.noise`` entry at ``factor`` x its catalogue rate.

    The noise rates are assumptions; asking how the answer moves at ten times more or
    less noise is the question a reader has. An entry with its own ``rate:`` is refused
    (scale it in the file) rather than silently overridden.
    """
    spec = check(exp)
    ps = ParamSet.resolve(exp.profiles, exp.overrides())
    noise = []
    for i, n in enumerate(spec.noise or []):
        if n.rate is not None:
            msg = "this entry sets its own rate: scale it there, not by a factor"
            raise exp.error(("advise", "noise", i, "rate"), msg)
        rate = float(ps.text(NOISE_KEYS[n.kind][0]))
        scope = NOISE_SCOPE[n.kind]
        noise.append(n.model_copy(update={"rate": f"{factor * rate:g}/{scope}-year"}))
    model = exp.model.model_copy(update={"advise": spec.model_copy(update={"noise": noise})})
    return dataclasses.replace(exp, model=model)


def limits_of(spec: AdviseSpec, params: ParamSet) -> Limits:
    c = spec.constraints
    spur = params.values["advise.max_spurious_failovers_per_cluster_year"]
    spurious = parse_rate(c.spurious_failovers)[0] if c.spurious_failovers is not None else (
        float(spur.mean()) if isinstance(spur, Dist) else math.inf
    )  # fmt: skip
    resets = parse_rate(c.connections_reset)[0] if c.connections_reset is not None else math.inf
    return Limits(spurious, resets)


def _search_settings(
    spec: AdviseSpec, params: ParamSet, min_trials: int | None, max_trials: int | None
) -> tuple[int, int, int, float]:
    def num(key: str) -> float:
        v = params.values[key]
        return float(v.mean()) if isinstance(v, Dist) else float(str(v))

    s = spec.search
    lo = min_trials or s.min_trials or int(num("advise.search_min_trials"))
    hi = max_trials or s.max_trials or int(num("advise.search_max_trials"))
    if lo < 1 or hi < lo:
        raise UserError(f"trials per cell: need 1 <= min ({lo}) <= max ({hi})")
    eta = s.eta or int(num("advise.search_eta"))
    tol = s.tolerance or num("advise.search_tolerance")
    hi = max(lo, hi - hi % lo)  # whole chunks of min_trials
    return lo, hi, eta, tol


def advise(
    exp: Experiment | str | Path,
    out: str | Path = "results",
    *,
    workers: int = 1,
    seed: int | None = None,
    min_trials: int | None = None,
    max_trials: int | None = None,
    progress: Callable[[str], None] | None = None,
    figures: bool = True,
) -> AdviseResult:
    """Search every advised design's timers; write a run folder with the trials of every
    evaluated point, ``advice.csv``, ``points.csv`` and a frontier figure per design.

    ``min_trials``/``max_trials`` (trials per cell) override the file's ``advise.search``.
    Cached cells live in ``out/<experiment>/advise-cache/`` and are reused by later calls.
    """
    t0 = dt.datetime.now(dt.UTC)
    if not isinstance(exp, Experiment):
        exp = load_experiment(exp)
    spec = check(exp)
    params = ParamSet.resolve(exp.profiles, exp.overrides())
    limits = limits_of(spec, params)
    lo, hi, eta, tol = _search_settings(spec, params, min_trials, max_trials)
    s = exp.model.seed if seed is None else seed
    points = plan_points(exp, spec)
    if not points:
        raise UserError(f"{exp.path}: advise: no design to advise on")
    for note in sorted({n for p in points for n in p.notes}):
        if progress is not None:
            progress(f"note: {note}")
    ev = Evaluator(Path(out) / exp.slug() / "advise-cache", s, workers, lo, _column(spec))
    t1 = dt.datetime.now(dt.UTC)
    result = successive_halving(
        points, ev, limits=limits, trials=(lo, hi, eta), tolerance=tol, progress=progress
    )
    t2 = dt.datetime.now(dt.UTC)
    advice = [design_advice(label, pts, limits) for label, pts in result.evaluated.items()]
    run = _write(exp, out, _Answer(s, ev, advice, limits, result, points), figures)
    t3 = dt.datetime.now(dt.UTC)
    timing = {
        "plan_s": (t1 - t0).total_seconds(),
        "search_s": (t2 - t1).total_seconds(),
        "write_s": (t3 - t2).total_seconds(),
    }
    return AdviseResult(advice, result, limits, run, len(points), timing)


def _column(spec: AdviseSpec) -> str:
    return "lost_s" if spec.objective == "lost" else "downtime_s"


def _trial_frames(ev: Evaluator, advice: list[DesignAdvice]) -> list[pd.DataFrame]:
    """Each evaluated point's trials (the trials its estimate used), with every design's
    timer columns (empty where a design has no such timer) so one table holds them."""
    frames = []
    for d in advice:
        for e in d.evaluated:
            for cell in e.point.cells:
                frames.append(ev.trials(cell, e.trials))
    keys: dict[str, bool] = {}
    for d in advice:
        for e in d.evaluated:
            for k in e.point.timers:
                kind = lookup(k).kind
                keys[k] = kind in ("duration", "count", "ratio", "rate")
    out = []
    for df in frames:
        missing = {k: (math.nan if numeric else "") for k, numeric in keys.items()
                   if k not in df.columns}  # fmt: skip
        out.append(df.assign(**missing) if missing else df)
    return out


@dataclass(frozen=True)
class _Answer:
    """What one search found: everything the run folder records."""

    seed: int
    ev: Evaluator
    advice: list[DesignAdvice]
    limits: Limits
    result: SearchResult
    points: list[Point]


def _write(exp: Experiment, out: str | Path, ans: _Answer, figures: bool) -> Run:
    seed, ev, advice, limits, result, points = (
        ans.seed, ans.ev, ans.advice, ans.limits, ans.result, ans.points
    )  # fmt: skip
    run_dir = new_run_dir(out, exp.slug(), "advise")
    meta = {
        "experiment": exp.model.title,
        "experiment_file": str(exp.path),
        "command": "advise",
        "seed": seed,
        "profiles": exp.profiles,
        "horizon_s": exp.horizon,
        "points": len(points),
        "rounds": result.rounds,
        "trials_run": result.trials_run,
        "trials_reused": result.trials_reused,
        "limits": {"spurious_per_cluster_year": limits.spurious, "resets": limits.resets},
    }
    writer = RunWriter(run_dir, mode="simulate", target="model", meta=meta)
    writer.write_text("experiment.yaml", exp.effective_yaml())
    writer.write_text("experiment.source.yaml", exp.text)
    writer.add_trials(pd.concat(_trial_frames(ev, advice), ignore_index=True), 0)
    writer.add_table("advice.csv", advice_frame(advice, limits))
    writer.add_table("points.csv", points_frame(advice, limits))
    if figures:
        from chaoslab.advise.plots import frontier_figure

        for d in advice:
            _save_png(frontier_figure(d, limits), run_dir / f"frontier-{_slug(d.label)}.png")
    return writer.finish()


def _save_png(fig: Figure, path: Path) -> None:
    """Render into memory, then rename into place: an interrupted run leaves no torn PNG."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in label).strip("-")
