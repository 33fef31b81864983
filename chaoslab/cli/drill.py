"""``chaoslab drill EXP.yaml``: live drills on a Kubernetes cluster (the ``live:`` section).

Registered by ``chaoslab/cli/__init__.py`` (``app.command("drill")(drill)``). Exit status:
0 done (or dry run), 1 the drill failed, was aborted, left undo steps or an expectation of
the file's ``expect:`` is not met, 2 bad input, 130 interrupted (after the rollback).

A drill checks the expectations a run checks (``recovery_p95 < 30s``: scope ``run``) on the
summary of the trials it measured to their end, and those of a comparison (``coverage >=
80%``: scope ``compare``) on `chaoslab.compare.compare` of its stored prediction and those
trials; aborted trials count in neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chaoslab.cli.common import fail, user_errors

if TYPE_CHECKING:
    import pandas as pd

    from chaoslab.experiment import Experiment
    from chaoslab.live.engine import DrillOutcome

__all__ = ["drill", "drill_gate"]


@user_errors
def drill(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment YAML with a live: section.")
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Inject for real; without it the drill only prints its plan (dry run)."
        ),
    ] = False,
    recover: Annotated[
        Path | None,
        typer.Option(
            "--recover",
            help="Finish the rollback a crashed drill left undone in RUN_DIR (reads its journal).",
            metavar="RUN_DIR",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    context: Annotated[
        str | None, typer.Option(help="kubeconfig context (overrides live.context).")
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig file (overrides live.kubeconfig and KUBECONFIG).")
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Write the expect: verdicts on what was measured as JUnit XML."),
    ] = None,
) -> None:
    """Discover the cluster, predict, then (with --yes) inject, probe, watch, roll back and
    compare the measured outage with the prediction."""
    from chaoslab.live.k8s.drill import plan_drill, run_drill
    from chaoslab.live.k8s.drill import recover as do_recover

    if recover is not None:
        ok = do_recover(recover, kubeconfig=kubeconfig, context=context, log=typer.echo)
        typer.echo("rollback complete" if ok else "rollback still incomplete (see journal)")
        raise typer.Exit(0 if ok else 1)
    if experiment is None:
        fail("give an experiment file (or --recover RUN_DIR)")
    try:
        # plan-time progress (the calibration's) goes where the drill's own lines go
        plans = plan_drill(
            experiment, kubeconfig=kubeconfig, context=context, log=typer.echo, out=out
        )
    except KeyboardInterrupt:
        fail("interrupted while planning; nothing was injected", 130)
    for plan in plans:
        for line in plan.lines:
            typer.echo(line)
    if not yes:
        typer.echo("dry run: nothing was injected. Run again with --yes to drill.")
        raise typer.Exit(0)
    from chaoslab.live.engine import DrillInterrupted

    try:
        res = run_drill(plans, out=out, log=typer.echo)
    except DrillInterrupted:  # the first signal came before the trial loop was entered
        fail("interrupted before the first trial; see the run folder's journal.jsonl", 130)
    typer.echo(f"run folder: {res.path} ({res.status})")
    comp = res.path / "comparison.csv"
    if comp.exists():
        typer.echo(comp.read_text().rstrip())
    if res.status == "interrupted":
        raise typer.Exit(130)
    gated = drill_gate(plans[0].exp, res, junit)
    if res.status != "complete" or res.run.meta.get("pending_undo") or gated:
        raise typer.Exit(1)


def drill_gate(exp: Experiment, res: DrillOutcome, junit: Path | None) -> int:
    """The experiment's ``expect:`` on what the drill measured (the module docstring says
    which scope on which table): the verdicts printed, ``junit`` written; 1 on a breach."""
    from chaoslab.cli.runcmd import gate
    from chaoslab.results import atomic_write_text

    summary, cells = _measured_tables(res)
    codes, written = [], []
    for scope, table in (("run", summary), ("compare", cells)):
        # gate() writes one scope's verdicts; the user's file gets both
        part = None if junit is None else junit.with_name(f".{junit.name}.{scope}")
        codes.append(gate(exp, scope, table, part))
        written += [part] if part is not None else []
    if junit is not None:
        atomic_write_text(junit, _joined_junit(written))
    return max(codes)


def _measured_tables(res: DrillOutcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary of the trials that ran to their end, and their comparison cells with
    the prediction the drill stored (empty without one)."""
    import pandas as pd

    from chaoslab.compare import compare, stored_prediction
    from chaoslab.results import Run, summarize

    trials = res.run.trials
    info = res.path / "trial_info.csv"
    if len(trials) and info.exists():
        aborted = pd.read_csv(info, usecols=["fault", "trial", "aborted"])
        bad = aborted[aborted["aborted"].astype(str).str.lower() == "true"]
        drop = set(zip(bad["fault"], bad["trial"], strict=True))
        keep = [(f, t) not in drop for f, t in zip(trials["fault"], trials["trial"], strict=True)]
        trials = trials[keep].reset_index(drop=True)
    summary = summarize(trials)
    measured = Run(res.path, dict(res.run.meta), trials)
    predicted = stored_prediction(measured)
    if predicted is None or trials.empty:
        return summary, pd.DataFrame()
    return summary, compare(predicted, measured).cells


def _joined_junit(files: list[Path]) -> str:
    """One JUnit document from the per-scope ones (their test suites side by side)."""
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites", name="chaoslab")
    for f in files:
        root.extend(ET.parse(f).getroot())
        f.unlink()
    tests = sum(int(ts.get("tests", "0")) for ts in root)
    failures = sum(int(ts.get("failures", "0")) for ts in root)
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
