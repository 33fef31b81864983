"""``chaoslab advise EXP.yaml``: per design, the timers to run with, priced against their
side effects (the experiment's ``advise:`` section; docs/advise.md).

Exit status: 0 when at least one design has a setting that meets the constraints, 1 when
none does (the closest settings are printed, not an error trace), 2 bad input, 130
interrupted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from chaoslab.cli.common import err_console, fail, given, user_errors

__all__ = ["advise", "register"]


@user_errors
def advise(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML with an advise: section.")],
    workers: Annotated[int, typer.Option(envvar="CHAOSLAB_WORKERS", help="Worker processes.")] = 1,
    out: Annotated[
        Path,
        typer.Option(envvar="CHAOSLAB_OUT", help="Results folder (the cell cache lives there)."),
    ] = Path("results"),
    seed: Annotated[
        int | None,
        typer.Option(envvar="CHAOSLAB_SEED", help="Root seed, 0 or more (overrides the file)."),
    ] = None,
    min_trials: Annotated[
        int | None, typer.Option(help="Trials per cell in the first round (overrides the file).")
    ] = None,
    max_trials: Annotated[
        int | None, typer.Option(help="Most trials per cell (overrides the file).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Recommend timers per design: expected annual unavailability vs spurious failovers."""
    from chaoslab.advise.run import advise as run_advise
    from chaoslab.advise.run import check
    from chaoslab.experiment import load_experiment

    if workers < 1:
        fail(f"{given('workers', '--workers', workers)}: at least 1")
    if seed is not None and seed < 0:
        fail(f"{given('seed', '--seed', seed)}: a whole number, 0 or more")
    if out.exists() and not out.is_dir():
        fail(f"{given('out', '--out', out)}: is a file; give a folder for the run folders")
    exp = load_experiment(experiment)
    check(exp)

    def note(line: str) -> None:
        if not quiet:
            err_console.print(line, markup=False, highlight=False)

    result = run_advise(
        exp,
        out,
        workers=workers,
        seed=seed,
        min_trials=min_trials,
        max_trials=max_trials,
        progress=note,
    )
    _print(result)
    raise typer.Exit(0 if result.any_feasible else 1)


def _ci(lo: float, hi: float) -> str:
    return f"{lo:.3g}–{hi:.3g}"


def _print(result: object) -> None:
    from chaoslab.advise.advice import fmt_nines
    from chaoslab.advise.run import AdviseResult

    assert isinstance(result, AdviseResult)
    from chaoslab.cli.tables import Col, render

    lim = result.limits
    text = ("design", "timers")
    headers = ("design", "timers", "min/yr (95 % CI)", "nines", "real min/yr",
               "side min/yr", "spurious /yr", "resets /yr", "trials /cell")  # fmt: skip
    # timers whole: they are what --set and params: take
    cols = [Col(h, rigid=h != "design", right=h not in text) for h in headers]
    rows = []
    for d in sorted(result.advice, key=lambda d: (not d.feasible, d.best.annual.total_s)):
        a = d.best.annual
        label = d.label if d.feasible else f"{d.label} (no setting meets the constraints)"
        rows.append([
            label, d.best.point.text, f"{a.minutes:.3g} ({_ci(*a.ci_minutes)})",
            fmt_nines(a.nines), f"{a.real_s / 60:.3g}", f"{a.side_s / 60:.3g}",
            f"{a.spurious:.3g} ± {a.spurious_half:.2g}", f"{a.resets:.3g}", str(d.best.trials),
        ])  # fmt: skip
    print("Advice per design: expected unavailability per cluster-year")
    print(render(cols, rows, keep=1))
    limit = "none" if math.isinf(lim.spurious) else f"{lim.spurious:g}/cluster-year"
    say(f"constraint: spurious failovers ≤ {limit}")
    for d in result.advice:
        _print_design(d)
    _print_footer(result)


def say(text: str) -> None:
    """A line of prose folded to the screen at spaces (a [setting] stays whole), its
    continuation lines indented under the first."""
    from chaoslab.cli.tables import fold, screen_width

    lead = len(text) - len(text.lstrip(" ")) + 4
    lines = fold(text.lstrip(" "), screen_width() - lead)
    print(" " * (lead - 4) + lines[0])
    for line in lines[1:]:
        print(" " * lead + line)


def _print_design(d: object) -> None:
    from chaoslab.advise.advice import DesignAdvice

    assert isinstance(d, DesignAdvice)
    if not d.feasible:
        say(f"{d.label}: no setting meets the constraints; closest:")
        for e in d.closest:
            a = e.annual
            say(f"    [{e.point.text}] {a.spurious:.3g} spurious/yr, {a.minutes:.3g} min/yr")
        return
    if d.priced_out:
        say(f"{d.label}: not the most aggressive — {d.priced_out}")
    else:
        say(f"{d.label}: the most aggressive setting is also the best")
    front = ", ".join(
        f"[{e.point.text}] {e.annual.minutes:.3g} min/{e.annual.spurious:.2g} spurious"
        for e in d.frontier[:6]
    )
    say(f"    frontier (min/yr vs spurious/yr): {front}")


def _print_footer(result: object) -> None:
    from chaoslab.advise.run import AdviseResult

    assert isinstance(result, AdviseResult)
    ok = [d for d in result.advice if d.feasible]
    if ok:
        best = min(ok, key=lambda d: d.best.annual.total_s)
        a = best.best.annual
        say(
            f"best design: {best.label} [{best.best.point.text}], {a.minutes:.3g} min/yr "
            f"({fmt(a.nines)} nines)"
        )
    else:
        say("no design has a setting that meets the constraints")
    s = result.search
    full = s.cells_grid * max(e.trials for d in result.advice for e in d.evaluated)
    say(
        f"{result.points} points, {s.rounds} rounds: {s.trials_run:,} trials run and "
        f"{s.trials_reused:,} reused from the cache, vs {full:,} for the full grid at the "
        f"recommendation's trials ({result.timing['search_s']:.1f} s searching, "
        f"{result.timing['write_s']:.1f} s writing)"
    )
    print(f"run folder: {result.run.path}")  # whole: a path to paste


def fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def register(app: typer.Typer) -> None:
    app.command("advise")(advise)
