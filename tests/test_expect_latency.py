"""Latency gates (issue 11 item 4): ``expect:`` on slow_s / p99_latency_s in run (the
summary's slow_* / p99_latency_*) and compare (the cells' slow_s / p99_latency_s rows); a
measured run without latency data is one skipped line, not a breach."""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest
from gate_runs import gate_text, run_seeded  # tests/ is on sys.path (rootdir)

from chaoslab.cli import main
from chaoslab.expect import check, failed, junit_xml, parse_expectation, verdict_lines


def _experiment(tmp_path: Path, expect: str) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(gate_text("latency gate", 30, expect))
    return p


def _rewrite_trials(run_dir: Path, change: dict[str, object], drop: list[str]) -> None:
    """The measured run as a drill would have left it: other latency, or none."""
    p = run_dir / "trials.parquet"
    df = pd.read_parquet(p).drop(columns=drop)
    for column, value in change.items():
        df[column] = value
    df.to_parquet(p, index=False)


def test_run_exits_1_when_the_p99_latency_breaches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the model's base request latency has a p99 of about 10 ms: 1 ms cannot hold
    code, _ = run_seeded(tmp_path, _experiment(tmp_path, "p99_latency_p95 < 1ms"), 5)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL p99_latency_p95 < 1ms: 0/1 cells" in out


def test_compare_gates_on_the_measured_p99_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The measured requests' p99 is 2 s where the model says 10 ms: the median error of
    p99_latency_s breaches its gate, the slow_s rows are still compared."""
    exp = _experiment(tmp_path, "{check: median_error_s < 100ms, metric: p99_latency_s}")
    _, pred = run_seeded(tmp_path, exp, 5)
    _, meas = run_seeded(tmp_path, exp, 6)
    _rewrite_trials(meas, {"p99_latency_s": 2.0}, [])
    capsys.readouterr()
    junit = tmp_path / "compare.xml"
    code = main(["compare", str(pred), str(meas), "--experiment", str(exp), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL median_error_s < 100ms [metric=p99_latency_s]: 0/1 cells" in out
    cells = pd.read_csv(meas / "compare" / "cells.csv")
    assert {"slow_s", "p99_latency_s"} <= set(cells["metric"])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"


def test_a_measured_run_without_latency_data_says_so_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = _experiment(tmp_path, "{check: median_error_s < 100ms, metric: p99_latency_s}")
    _, pred = run_seeded(tmp_path, exp, 5)
    _, meas = run_seeded(tmp_path, exp, 6)
    _rewrite_trials(meas, {}, ["slow_s", "p99_latency_s"])
    capsys.readouterr()
    code = main(["compare", str(pred), str(meas), "--experiment", str(exp)])
    out = capsys.readouterr().out
    assert code == 0
    skip = [ln for ln in out.splitlines() if ln.startswith("SKIP")]
    assert skip == [
        "SKIP median_error_s < 100ms [metric=p99_latency_s]: not measured: this run has no "
        "latency data (slow_s, p99_latency_s)"
    ]
    cells = pd.read_csv(meas / "compare" / "cells.csv")
    assert not {"slow_s", "p99_latency_s"} & set(cells["metric"])


SUMMARY = pd.DataFrame(
    {"design": ["nodeport-lb"], "fault": ["node-crash"], "target": [""], "lost_mean": [1.0]}
)


def test_latency_not_measured_is_skipped_in_the_lines_and_the_junit() -> None:
    """A run summary without p99_latency_*: the latency check is skipped, lost_mean is still
    checked; a filter matching nothing in a run with latency data would fail instead."""
    lat, lost = parse_expectation("p99_latency_p95 < 1s"), parse_expectation("lost_mean < 2s")
    verdicts = check([lat, lost], SUMMARY)
    assert not failed(verdicts) and verdicts[0].skipped and math.isnan(verdicts[0].value)
    lines = verdict_lines(verdicts)
    assert lines[0].startswith("SKIP p99_latency_p95 < 1s: not measured")
    assert lines[-1] == "expectations: 1/1 checks passed, 1 skipped (not measured)"
    suite = ET.fromstring(junit_xml(verdicts, "s")).find("testsuite")
    assert suite is not None and (suite.get("skipped"), suite.get("failures")) == ("1", "0")
    with_latency = SUMMARY.assign(p99_latency_p95=0.5)
    (v, _) = check([parse_expectation("p99_latency_p95 < 1s", design="cloud-lb"), lost],
                   with_latency)  # fmt: skip
    assert not v.passed and v.note == "no cell of this run matches"
