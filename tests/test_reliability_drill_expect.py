"""``expect:`` in drills (issue 16 item 7): a drill against the wire-level fake API server
checks the file's expectations on what it measured, exits 1 on a breach and writes JUnit
XML with the verdicts of both scopes (the run's summary, the comparison with the stored
prediction)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from k8s.conftest import SKEW, Env  # tests/ is on sys.path (rootdir)
from k8s.fakeapi import FakeApi, FakeCluster, ServiceTarget

from chaoslab.cli import main


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    cl = FakeCluster(skew=SKEW)
    cl.add_node("cp-1", "10.0.0.1", control_plane=True)
    for i in (1, 2, 3):
        cl.add_node(f"worker-{i}", f"10.0.0.{10 + i}")
    cl.add_app("demo", "web", ["worker-1", "worker-2"])
    made = Env(cl, FakeApi(cl, tmp_path), ServiceTarget(cl), tmp_path)
    yield made
    made.api.close()
    made.target.close()


def _with_expect(env: Env, expect: list[object]) -> Path:
    fault = {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api"}
    path = env.experiment({**fault, "grace_period": "1s"})
    doc = yaml.safe_load(path.read_text())
    doc["expect"] = expect
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _drill(env: Env, exp: Path, junit: Path) -> int:
    out = env.tmp / "results"
    return main(["drill", str(exp), "--yes", "--out", str(out), "--junit", str(junit)])


def _cases(junit: Path) -> list[tuple[str, bool]]:
    """(test case name, failed) for every case of the JUnit file."""
    root = ET.parse(junit).getroot()
    return [(c.get("name", ""), c.find("failure") is not None) for c in root.iter("testcase")]


def test_a_drill_that_meets_its_expectations_exits_0_with_both_scopes_in_junit(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = _with_expect(env, ["recovered >= 100%", "recovery_p95 < 1h", "coverage >= 0%"])
    junit = env.tmp / "verdicts.xml"
    assert _drill(env, exp, junit) == 0
    out = capsys.readouterr().out
    assert "PASS recovered >= 100%: 1/1 cells" in out
    assert "PASS coverage >= 0%" in out  # on the comparison with the stored prediction
    cases = _cases(junit)
    assert {name for name, _ in cases} == {
        "recovered >= 100%",
        "recovery_p95 < 1h",
        "coverage >= 0%",
    }
    assert not any(bad for _, bad in cases)
    assert not list(env.tmp.glob(".verdicts.xml.*"))  # the per-scope parts are gone


def test_a_breach_exits_1_and_is_a_failure_in_junit(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    # one trial cannot be five: the run's data is fine, the gate is not met
    exp = _with_expect(env, ["trials >= 5", {"check": "recovered >= 0%", "design": "clusterip"}])
    junit = env.tmp / "verdicts.xml"
    assert _drill(env, exp, junit) == 1
    out = capsys.readouterr().out
    assert "FAIL trials >= 5: 0/1 cells" in out and "breach:" in out
    assert dict(_cases(junit)) == {"trials >= 5": True, "recovered >= 0% [design=clusterip]": False}


def test_a_latency_breach_in_a_drill_exits_1(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The drill's probes measure each request's latency: no real request is answered in
    a microsecond, so the run-scope p99 gate breaches; the comparison has the latency rows
    a compare-scope gate reads."""
    exp = _with_expect(
        env,
        [
            "p99_latency_p95 < 1us",
            {"check": "mean_abs_error_s >= 0s", "metric": "p99_latency_s"},
        ],
    )
    junit = env.tmp / "verdicts.xml"
    assert _drill(env, exp, junit) == 1
    out = capsys.readouterr().out
    assert "FAIL p99_latency_p95 < 1us: 0/1 cells" in out
    assert "PASS mean_abs_error_s >= 0s [metric=p99_latency_s]: 1/1 cells" in out
