"""Stories of `chaoslab export` on a model run, and of `chaoslab.ctk` inside a real Chaos
Toolkit run (chaostoolkit-lib from PyPI): what Prometheus scrapes is the summary, and a
Chaos Toolkit experiment can take the model's p95 as its tolerance."""

from __future__ import annotations

import math
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

from chaoslab.cli import main
from chaoslab.results import load_run
from chaoslab.run import run_experiment as chaoslab_run

REPO = Path(__file__).resolve().parents[1]
GRACE = "kube_controller_manager.node_monitor_grace_period"
_NOTHING = {
    "type": "action",
    "name": "nothing",
    "provider": {
        "type": "python",
        "module": "os.path",
        "func": "exists",
        "arguments": {"path": "/"},
    },
}


def _experiment(tmp: Path, name: str, **params: str) -> Path:
    doc = {
        "title": name,
        "profile": ["k8s-1.37"],
        "designs": ["clusterip"],
        "faults": ["pod-delete", "node-crash"],
        "trials": 60,
    }
    if params:
        doc["params"] = params
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    return chaoslab_run(_experiment(tmp, "small"), tmp / "results", seed=3).path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def _samples(families: list, name: str) -> list:
    return [s for f in families if f.name == name for s in f.samples]


def test_openmetrics_is_the_summary(model_run: Path, capsys) -> None:
    code, output = _cli(capsys, str(model_run), "--out", "-")
    assert code == 0, output
    families = list(parse_om(output))  # the real parser: raises on a malformed file
    summary = pd.read_csv(model_run / "summary.csv")
    p95 = {s.labels["fault"]: s.value for s in _samples(families, "chaoslab_recovery_seconds")
           if s.labels["quantile"] == "0.95"}  # fmt: skip
    for row in summary.itertuples():
        assert p95[row.fault] == pytest.approx(row.recovery_p95)
    info = _samples(families, "chaoslab_run_info")
    assert [s.labels["status"] for s in info] == ["complete"]
    assert {s.labels["run_id"] for s in _samples(families, "chaoslab_cell_trials")} == {
        model_run.name
    }


def test_textfile_collector_file(model_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "chaoslab.prom"
    code, output = _cli(capsys, str(model_run), "--format", "prometheus", "--out", str(out))
    assert code == 0, output
    families = list(parse_prom(out.read_text()))
    lost = _samples(families, "chaoslab_lost_mean_seconds")
    assert len(lost) == 2 and all(math.isfinite(s.value) for s in lost)
    assert "# EOF" not in out.read_text()  # the textfile collector's format, not OpenMetrics


def test_grafana_needs_a_drill(model_run: Path, capsys) -> None:
    code, output = _cli(capsys, str(model_run), "--format", "grafana")
    assert code == 2
    assert "not a drill run" in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "--format xml"),
        (["--format", "grafana", "--push", "http://127.0.0.1:9"], "--push"),
        (["--out", "/nonexistent/dir/m.txt"], "does not exist"),
    ],
)
def test_bad_options_one_line(model_run: Path, args: list[str], message: str, capsys) -> None:
    code, output = _cli(capsys, str(model_run), *args)
    assert code == 2
    assert message in output and len(output.strip().splitlines()) == 1


def test_push_to_a_dead_gateway_is_one_line(model_run: Path, capsys) -> None:
    # port 9 (discard) on loopback: nothing listens, the connection is refused
    code, output = _cli(capsys, str(model_run), "--push", "http://127.0.0.1:9")
    assert code == 2
    assert "--push http://127.0.0.1:9" in output and "Traceback" not in output


def _ctk_experiment(run_dir: Path, design: str, fault: str) -> dict:
    probe = {
        "type": "probe",
        "name": "measured-median-recovery",
        "provider": {
            "type": "python", "module": "chaoslab.ctk", "func": "measured",
            "arguments": {"run_dir": str(run_dir), "metric": "recovery_s", "quantile": 0.5,
                          "design": design, "fault": fault},
        },
        "tolerance": {
            "type": "probe", "name": "within-the-models-p95",
            "provider": {
                "type": "python", "module": "chaoslab.ctk", "func": "within_prediction",
                "arguments": {"design": design, "fault": fault, "profile": "k8s-1.37",
                              "trials": 200},
            },
        },
    }  # fmt: skip
    return {
        "version": "1.0.0",
        "title": "the service recovers within what the model predicts",
        "description": "chaoslab.ctk as a Chaos Toolkit steady-state probe",
        "steady-state-hypothesis": {"title": "recovery within the model", "probes": [probe]},
        "method": [_NOTHING],
        "rollbacks": [],
    }


def test_ctk_tolerance_from_the_model(model_run: Path) -> None:
    exp = _ctk_experiment(model_run, "clusterip", "node-crash")
    ensure_experiment_is_valid(exp)
    journal = run_experiment(exp)
    assert journal["status"] == "completed" and journal["deviated"] is False
    before = journal["steady_states"]["before"]["probes"][0]
    assert before["tolerance_met"] is True
    assert before["output"] == pytest.approx(
        load_run(model_run).trials.query("fault == 'node-crash'")["recovery_s"].median()
    )


def test_ctk_deviates_when_the_cluster_is_slower_than_the_model(tmp_path: Path) -> None:
    # a cluster whose controller waits 120 s before NotReady, judged against the default
    slow = chaoslab_run(_experiment(tmp_path, "slow", **{GRACE: "120s"}), tmp_path, seed=1)
    journal = run_experiment(_ctk_experiment(slow.path, "clusterip", "node-crash"))
    before = journal["steady_states"]["before"]
    assert before["steady_state_met"] is False and before["probes"][0]["tolerance_met"] is False
    assert journal["run"] == []  # Chaos Toolkit does not run the method on a broken steady state


def _pushgateway_binary() -> Path | None:
    """The Pushgateway tools/build.sh built for tools/pushgateway as it is now."""
    from chaoslab.live.cluster.build import BuildMissing, find_build

    try:
        return find_build("pushgateway").bin("pushgateway")
    except BuildMissing:
        return None


@pytest.fixture
def pushgateway() -> Iterator[str]:
    binary = _pushgateway_binary()
    if binary is None:
        pytest.skip("the Pushgateway is not built: tools/build.sh pushgateway (needs go)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Pushgateway did not become ready") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()  # by PID: the process this fixture started
        proc.wait()


@pytest.mark.pushgateway
def test_push_to_a_real_pushgateway(model_run: Path, pushgateway: str, capsys) -> None:
    code, output = _cli(capsys, str(model_run), "--push", pushgateway, "--out", "-")
    assert code == 0, output
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as r:
        scraped = list(parse_prom(r.read().decode()))
    p95 = [s for s in _samples(scraped, "chaoslab_recovery_seconds")
           if s.labels.get("quantile") == "0.95"]  # fmt: skip
    assert {s.labels["job"] for s in p95} == {"chaoslab"}
    assert {s.labels["run_id"] for s in p95} == {model_run.name}
    summary = pd.read_csv(model_run / "summary.csv")
    assert sorted(s.value for s in p95) == pytest.approx(sorted(summary["recovery_p95"]))
