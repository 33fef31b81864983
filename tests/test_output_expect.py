"""expect: gates in experiment files: parsed and located by validate, checked by run
(exit 1 on a breach), a one-screen verdict, JUnit XML with one case per cell and check."""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest
from gate_runs import gate_text, run_seeded  # tests/ is on sys.path (rootdir)

from chaoslab.cli import main
from chaoslab.expect import (
    ExpectError,
    check,
    failed,
    junit_xml,
    parse_expectation,
    verdict_lines,
)
from chaoslab.experiment import ExperimentError, load_experiment

SUMMARY = pd.DataFrame(
    {
        "design": ["nodeport-lb", "nodeport-lb", "metallb-bgp[native]"],
        "fault": ["node-crash", "pod-kill", "node-crash"],
        "target": ["app-pod-node", "app-pod", "vip-holder"],
        "recovery_p95": [53.0, 1.2, math.inf],
        "lost_mean": [17.0, 0.1, 28.0],
        "recovered": [1.0, 1.0, 0.0],
    }
)


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("recovery_p95 < 30s", "recovery_p95", "<", 30.0),
        ("lost_mean<=1m30s", "lost_mean", "<=", 90.0),
        ("recovered >= 95%", "recovered", ">=", 0.95),
        ("coverage >= 0.8", "coverage", ">=", 0.8),
        ("trials > 10", "trials", ">", 10.0),
    ],
)
def test_expectations_are_read(text: str, metric: str, op: str, threshold: float) -> None:
    e = parse_expectation(text)
    assert (e.metric, e.op, e.threshold) == (metric, op, pytest.approx(threshold))
    assert e.scope == ("compare" if metric == "coverage" else "run")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recovery_p95 30s", "write METRIC OP VALUE"),
        ("recovery_p59 < 30s", "unknown metric 'recovery_p59'"),
        ("recovery_p95 < 30", "has no unit"),
        ("recovered > 1.5", "between 0 and 1"),
        ("coverage >= high", "a share, e.g. 0.8 or 80%"),
    ],
)
def test_bad_expectations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ExpectError, match=message):
        parse_expectation(text)


def test_each_selected_cell_is_a_verdict_and_never_recovering_breaches() -> None:
    every = parse_expectation("recovery_p95 < 30s")
    crash = parse_expectation("lost_mean < 20s", design="nodeport-lb", fault="node-crash")
    verdicts = check([every, crash], SUMMARY)
    assert [(v.cell, v.passed) for v in verdicts] == [
        ("nodeport-lb / node-crash / app-pod-node", False),
        ("nodeport-lb / pod-kill / app-pod", True),
        ("metallb-bgp[native] / node-crash / vip-holder", False),
        ("nodeport-lb / node-crash / app-pod-node", True),
    ]
    assert [v.cell for v in failed(verdicts)] == [verdicts[0].cell, verdicts[2].cell]
    lines = verdict_lines(verdicts)
    assert lines[0] == "FAIL recovery_p95 < 30s: 1/3 cells"
    assert lines[1] == "PASS lost_mean < 20s [design=nodeport-lb fault=node-crash]: 1/1 cells"
    assert (
        "  breach: metallb-bgp[native] / node-crash / vip-holder: recovery_p95 = never"
        in (lines[3])
    )
    assert lines[-1] == "expectations: 2/4 checks passed, 2 failed"


def test_a_gate_that_selects_nothing_fails() -> None:
    (v,) = check([parse_expectation("lost_mean < 1s", design="cloud-lb")], SUMMARY)
    assert not v.passed and v.note == "no cell of this run matches"
    (v,) = check([parse_expectation("coverage >= 0.8")], SUMMARY)
    assert not v.passed and v.note == "no coverage in this table"


def test_junit_has_one_case_per_cell_and_expectation() -> None:
    verdicts = check([parse_expectation("recovery_p95 < 30s")], SUMMARY)
    root = ET.fromstring(junit_xml(verdicts, "seed"))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        "seed.nodeport-lb / node-crash / app-pod-node",
        "seed.nodeport-lb / pod-kill / app-pod",
        "seed.metallb-bgp[native] / node-crash / vip-holder",
    ]
    assert [c.find("failure") is not None for c in cases] == [True, False, True]
    assert (
        cases[0].find("failure").get("message") == "recovery_p95 = 53s, expected recovery_p95 < 30s"
    )  # type: ignore[union-attr]


EXPERIMENT = """\
title: LB gate
profile: k8s-1.32
designs: [nodeport-lb, nodeport-lb-local]
faults:
  - {kind: node-crash, target: app-pod-node}
  - {kind: pod-kill, target: app-pod}
trials: 20
seed: 5
expect:
  - recovery_p95 < 10m
  - {check: lost_mean < 1ms, design: nodeport-lb, fault: node-crash}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    return p


def test_validate_locates_a_bad_expectation(tmp_path: Path) -> None:
    bad = EXPERIMENT.replace("recovery_p95 < 10m", "recovery_p95 < ten").replace(
        "design: nodeport-lb,", "design: nodeport-lbb,"
    )
    p = _write(tmp_path, bad)
    with pytest.raises(ExperimentError) as e:
        load_experiment(p).validate()
    assert e.value.lines[0].startswith(f"{p}:10: expect[0]: 'recovery_p95 < ten': recovery_p95")
    assert e.value.lines[1].startswith(
        f"{p}:11: expect[1].design: 'nodeport-lbb' is not among the experiment's designs"
    )
    assert main(["validate", str(p)]) == 2


def test_run_exits_1_on_a_breach_and_writes_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _write(tmp_path, EXPERIMENT)
    junit = tmp_path / "ci" / "chaoslab.xml"
    code = main(["run", str(p), "--out", str(tmp_path / "res"), "-q", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "PASS recovery_p95 < 10m: 4/4 cells" in out
    assert "FAIL lost_mean < 1ms [design=nodeport-lb fault=node-crash]: 0/1 cells" in out
    assert "expectations: 4/5 checks passed, 1 failed" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("5", "1")


def test_run_exits_0_when_every_expectation_holds(tmp_path: Path) -> None:
    p = _write(tmp_path, EXPERIMENT.replace("lost_mean < 1ms", "lost_mean < 10m"))
    assert main(["run", str(p), "--out", str(tmp_path / "res"), "-q"]) == 0


def _compared(coverage: str) -> str:
    return gate_text("compare gate", 40, "lost_mean < 10m", coverage)


def _two_runs(tmp_path: Path, coverage: str) -> tuple[Path, Path, Path]:
    """The same experiment run twice with other seeds: a prediction and a stand-in for a
    measurement of the same cell (what compare checks, with no live target here)."""
    p = _write(tmp_path, _compared(coverage))
    runs = []
    for seed in (5, 6):
        code, run_dir = run_seeded(tmp_path, p, seed)
        assert code == 0
        runs.append(run_dir)
    return p, runs[0], runs[1]


def test_compare_checks_the_compare_expectations_and_writes_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """coverage >= 0.99 cannot hold for 40 trials against another 40 (about 90 % fall
    inside a p5-p95): compare exits 1 with the breach, the run-scope lost_mean is not its
    business."""
    _, pred, meas = _two_runs(tmp_path, "{check: coverage >= 0.99, metric: recovery_s}")
    capsys.readouterr()
    junit = tmp_path / "compare.xml"
    code = main(["compare", str(pred), str(meas), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL coverage >= 0.99 [metric=recovery_s]: 0/1 cells" in out
    verdicts = [ln for ln in out.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert verdicts == ["FAIL coverage >= 0.99 [metric=recovery_s]: 0/1 cells"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("1", "1")


def test_compare_exits_0_when_the_coverage_holds(tmp_path: Path) -> None:
    _, pred, meas = _two_runs(tmp_path, "coverage >= 0.5")
    assert main(["compare", str(pred), str(meas)]) == 0
    # an experiment named on the command line instead of the one the measured run stored
    strict = tmp_path / "strict.yaml"
    strict.write_text(_compared("coverage >= 100%"))
    assert main(["compare", str(pred), str(meas), "--experiment", str(strict)]) == 1


def test_validate_locates_a_bad_compare_metric(tmp_path: Path) -> None:
    p = _write(tmp_path, _compared("{check: coverage >= 0.8, metric: recovery}"))
    with pytest.raises(ExperimentError) as e:
        load_experiment(p).validate()
    assert e.value.lines[0].startswith(f"{p}:10: expect[1]")
    assert "'recovery' is not a compared metric" in e.value.lines[0]


_COMPARE_MODULES = """
import sys
from chaoslab.cli import main
code = main(sys.argv[1:])
print("model loaded" if "chaoslab.experiment" in sys.modules else "model not loaded", code)
"""


@pytest.mark.parametrize(
    ("gate", "said"),
    [
        ("trials >= 1", "model not loaded 0"),  # a run's gate only: nothing to check
        ("coverage >= 100%", "model loaded 1"),  # a comparison's: loaded and checked
    ],
)
def test_compare_loads_the_experiment_only_when_it_has_something_to_check(
    tmp_path: Path, gate: str, said: str
) -> None:
    """Loading an experiment imports the whole model (designs, runner, fast engine):
    compare reads the stored file's expect: with YAML alone first."""
    import subprocess
    import sys

    _, pred, meas = _two_runs(tmp_path, gate)
    out = subprocess.run(
        [sys.executable, "-c", _COMPARE_MODULES, "compare", str(pred), str(meas)],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1],
    ).stdout  # fmt: skip
    assert out.splitlines()[-1] == said


SWEPT = """\
title: swept gate
designs: [nodeport-lb]
faults:
  - {kind: pod-kill, target: app-pod}
sweep:
  profile: [k8s-1.10, k8s-1.32]
  lb.interval: [1s, 2s]
trials: 20
seed: 5
horizon: 5m
expect:
  - {check: recovery_p95 < 1ms, sweep: {profile: k8s-1.32}}
  - {check: trials >= 20, sweep: {lb.interval: 2s, profile: [k8s-1.10]}}
"""


def test_an_expectation_scoped_to_a_sweep_point_checks_only_its_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sweep: picks cells by the file's own sweep values (a duration as written, matched
    to the seconds the summary holds): 2 of the 4 cells, then 1 of them."""
    p = _write(tmp_path, SWEPT)
    junit = tmp_path / "gate.xml"
    code = main(["run", str(p), "--out", str(tmp_path / "res"), "-q", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL recovery_p95 < 1ms [profile=k8s-1.32]: 0/2 cells" in out
    assert "PASS trials >= 20 [lb.interval=2 profile=k8s-1.10]: 1/1 cells" in out
    breaches = [ln for ln in out.splitlines() if ln.startswith("  breach:")]
    assert len(breaches) == 2 and all("profile=k8s-1.32" in ln for ln in breaches)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "2")


def test_validate_locates_a_sweep_scope_that_names_no_sweep_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = SWEPT.replace("sweep: {profile: k8s-1.32}", "sweep: {profil: k8s-1.32}").replace(
        "lb.interval: 2s, profile: [k8s-1.10]", "lb.interval: 3s, profile: [k8s-1.31]"
    )
    p = _write(tmp_path, bad)
    assert main(["validate", str(p)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [
        f"error: {p}:12: expect[0].sweep.profil: 'profil' is not a swept key of this "
        "experiment (profile, lb.interval)",
        f"error: {p}:13: expect[1].sweep.lb.interval: '3s' is not a value of the sweep of "
        "lb.interval (1s, 2s)",
        f"error: {p}:13: expect[1].sweep.profile: 'k8s-1.31' is not a value of the sweep of "
        "profile (k8s-1.10, k8s-1.32)",
    ]


def test_a_sweep_scope_reads_a_comparisons_point_column() -> None:
    """compare's cells name their sweep point in one column, key=value, ..."""
    cells = pd.DataFrame(
        {
            "design": ["nodeport-lb"] * 2,
            "fault": ["pod-kill"] * 2,
            "point": ["profile=k8s-1.10, lb.interval=2.0", "profile=k8s-1.32, lb.interval=2.0"],
            "metric": ["recovery_s"] * 2,
            "coverage": [0.5, 0.95],
        }
    )
    e = parse_expectation("coverage >= 0.9", point={"profile": ["k8s-1.32"], "lb.interval": [2.0]})
    (v,) = check([e], cells)
    assert v.passed and "profile=k8s-1.32" in v.cell


def test_a_swept_distribution_in_a_comparisons_point_column_is_one_value() -> None:
    """A swept value may itself hold ", " (uniform(1s, 3s)): it is one value of the point,
    not two."""
    cells = pd.DataFrame(
        {
            "design": ["nodeport-lb"] * 2,
            "fault": ["pod-kill"] * 2,
            "point": ["lb.interval=uniform(1s, 3s), profile=k8s-1.32", "lb.interval=2s"],
            "metric": ["recovery_s"] * 2,
            "coverage": [0.95, 0.5],
        }
    )
    e = parse_expectation("coverage >= 0.9", point={"lb.interval": ["uniform(1s, 3s)"]})
    (v,) = check([e], cells)
    assert v.passed and "uniform(1s, 3s)" in v.cell
