"""Experiment files and the command line: bad input is one located line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from experiment_text import LIVE_SECTIONS  # tests/ is on sys.path (rootdir)

from chaoslab.cli import main
from chaoslab.experiment import ExperimentError, json_schema, load_experiment
from chaoslab.results import load_run

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
title: Node crash under NodePort designs
description: What an outside client sees when a controller node dies.
profile: k8s-1.32
cluster:
  nodes: {master: 3, controller: 3, compute: 2}
  app: {kind: Deployment, replicas: 3, spread: controller}
designs: [nodeport-lb, nodeport-lb-local]
faults:
  - {kind: node-crash, target: app-pod-node}
  - {kind: pod-kill, target: app-pod}
params:
  kube_controller_manager.node_monitor_grace_period: 40s
sweep:
  lb.interval: [1s, 2s]
trials: 40
seed: 7
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("edit", "line", "key", "words"),
    [
        (lambda s: s.replace("faults:\n", "faults: [\n"), None, "", "malformed YAML"),
        (lambda s: s.replace("seed: 7", "sed: 7"), 16, "sed", "unknown key (did you mean seed?)"),
        (lambda s: s.replace("40s", "40 sec"), 12, "params.kube_controller_manager", "unit"),
        (lambda s: s.replace("40s", "40"), 12, "node_monitor_grace_period", "no unit"),
        (
            lambda s: s.replace("lb.interval", "lb.intreval"),
            14,
            "sweep.lb.intreval",
            "did you mean lb.interval",
        ),
        (
            lambda s: s.replace("nodeport-lb, nodeport", "nodeport-lbb, nodeport"),
            7,
            "designs[0]",
            "unknown design 'nodeport-lbb'",
        ),
        (
            lambda s: s.replace("target: app-pod-node", "target: entry-node"),
            9,
            "faults[0].target",
            "no single entry node",
        ),
        (
            lambda s: s.replace("target: app-pod}", "target: master-1}"),
            10,
            "faults[1].target",
            "names a node",
        ),
        (
            lambda s: s.replace("node-crash, target", "node-crash, repiar: 5m, target"),
            9,
            "faults[0].repiar",
            "no option 'repiar'",
        ),
        (lambda s: s.replace("kind: pod-kill", "kind: pod-kil"), 10, "faults[1].kind", "pod-kill"),
        (lambda s: s.replace("k8s-1.32", "k8s-1.23"), 3, "profile", "unknown profile"),
        (lambda s: s.replace("replicas: 3", "replicas: 0"), 6, "cluster.app.replicas", "greater"),
        (lambda s: s.replace("title: Node", "titel: Node"), 1, "", "unknown key"),
    ],
)
def test_bad_input_is_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, line, key, words
) -> None:
    """One located line per problem (a fault impossible for both designs is two)."""
    path = write(tmp_path, edit(GOOD))
    code, out, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    text = err.strip()
    lines = text.removeprefix("error: ").splitlines()
    assert all(ln.removeprefix("error: ").startswith(str(path)) for ln in lines), text
    assert len(lines) == 1 or line is not None, text
    assert "Traceback" not in err
    assert str(path) in text
    if line is not None:
        assert f"{path}:{line}" in text.replace("\n", ""), text
    assert key.split(".")[0] in text
    assert words in text.replace("\n", " "), text


def test_unknown_set_key_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    code, _, err = run_cli(
        ["run", str(path), "--set", "lb.intervl=1s", "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "lb.intervl" in err and "did you mean" in err
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "no such file" in err


def test_bundled_experiments_validate(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted((ROOT / "experiments").glob("seed-*.yaml")):
        code, out, err = run_cli(["validate", str(path)], capsys)
        assert code == 0, err


def test_the_readmes_example_experiment_is_valid(tmp_path: Path) -> None:
    """The YAML the README shows users is a working experiment, not an illustration."""
    import re

    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Experiment files\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None, "README lost its example experiment"
    exp = load_experiment(write(tmp_path, block.group(1), "readme.yaml"))
    exp.validate()
    assert "rack-switch-flap" in {f.result_name for f in exp.faults()}


def test_schema_file_is_current() -> None:
    on_disk = json.loads((ROOT / "experiments" / "schema.json").read_text())
    assert on_disk == json_schema(), "run: chaoslab schema --out experiments/schema.json"


def test_effective_yaml_lists_every_parameter_with_its_source(tmp_path: Path) -> None:
    import yaml

    exp = load_experiment(write(tmp_path, GOOD))
    data = yaml.safe_load(exp.effective_yaml({"lb.rise": 3}))
    eff = data["effective_params"]
    g = eff["kube_controller_manager.node_monitor_grace_period"]
    assert g["value"] == "40s" and g["source"] == "experiment"
    assert eff["lb.rise"]["source"] == "experiment" and eff["lb.rise"]["value"] == "3"
    assert "PR #126287" not in g["source"]
    assert "defaults.go" in eff["kubelet.node_status_update_frequency"]["source"]


# ---------------------------------------------------------------- runs


def test_run_writes_a_complete_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    code, out, err = run_cli(["run", str(path), "--out", str(tmp_path / "res"), "-q"], capsys)
    assert code == 0, err
    (run_dir,) = (tmp_path / "res" / "exp").iterdir()
    run = load_run(run_dir)
    assert run.complete and run.meta["format_version"] == 2 and run.meta["seed"] == 7
    assert run.meta["mode"] == "simulate" and run.meta["dependencies"]["simpy"]
    t = run.trials
    assert len(t) == 2 * 2 * 2 * 40
    for col in [
        "design",
        "fault",
        "target",
        "trial",
        "lb.interval",
        "recovery_s",
        "recovered",
        "downtime_s",
        "degraded_s",
        "lost_s",
        "at_node_not_ready",
        "at_pods_not_ready",
        "at_endpoints_removed",
        "at_node_tainted",
        "at_pod_evicted",
        "at_replacement_created",
        "at_replacement_ready",
        "at_lb_marked_down",
    ]:
        assert col in t.columns, col
    assert set(t["lb.interval"]) == {1.0, 2.0}
    summary = pd.read_csv(run_dir / "summary.csv")
    assert len(summary) == 8 and {"recovery_p50", "recovery_p95", "lost_mean"} <= set(summary)
    assert (run_dir / "experiment.yaml").read_text().count("source:") > 40
    code, out, err = run_cli(["show", str(run_dir)], capsys)
    assert code == 0 and "nodeport-lb-local" in out


def test_same_seed_same_trials_for_any_worker_count(tmp_path: Path) -> None:
    import chaoslab

    a = chaoslab.simulate("nodeport-lb", "node-crash", trials=600, seed=9, workers=1)
    b = chaoslab.simulate("nodeport-lb", "node-crash", trials=600, seed=9, workers=2)
    pd.testing.assert_frame_equal(a, b)
    c = chaoslab.simulate("nodeport-lb", "node-crash", trials=600, seed=10, workers=1)
    assert not a["recovery_s"].equals(c["recovery_s"])


def test_interrupted_run_is_partial_and_resumes_to_the_same_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaoslab import runner
    from chaoslab.results import RunWriter

    text = GOOD.replace("trials: 40", "trials: 1200")
    path = write(tmp_path, text)
    code, _, err = run_cli(["run", str(path), "--out", str(tmp_path / "full"), "-q"], capsys)
    assert code == 0, err
    (full_dir,) = (tmp_path / "full" / "exp").iterdir()
    full = load_run(full_dir)

    real_add = RunWriter.add_trials
    calls = {"n": 0}

    def flaky_add(self, df, index=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_add(self, df, index)

    monkeypatch.setattr(RunWriter, "add_trials", flaky_add)
    code, _, err = run_cli(["run", str(path), "--out", str(tmp_path / "cut"), "-q"], capsys)
    assert code == 130 and "--resume" in err
    (cut_dir,) = (tmp_path / "cut" / "exp").iterdir()
    partial = load_run(cut_dir)
    assert partial.meta["status"] == "partial"
    assert 0 < len(partial.trials) < len(full.trials)
    assert runner.DEFAULT_CHUNK < 1200  # so the cut really lands inside the run
    assert (cut_dir / "summary.csv").exists()

    monkeypatch.setattr(RunWriter, "add_trials", real_add)
    code, _, err = run_cli(["run", str(path), "--resume", str(cut_dir), "-q"], capsys)
    assert code == 0, err
    resumed = load_run(cut_dir)
    assert resumed.complete and resumed.meta.get("resumed") == 1
    cols = [c for c in full.trials.columns if c not in ("a_t", "a_v")]
    pd.testing.assert_frame_equal(resumed.trials[cols], full.trials[cols])


def test_python_api_matches_the_interface() -> None:
    import chaoslab

    df = chaoslab.simulate(
        "nodeport-lb",
        {"kind": "node-crash", "target": "app-pod-node"},
        profile="k8s-1.10",
        params={"lb.interval": "1s"},
        trials=20,
        seed=1,
    )
    assert list(df.columns[:4]) == ["design", "fault", "target", "trial"]
    assert len(df) == 20 and df["recovered"].dtype == bool


def test_core_imports_no_yaml_plotting_or_kubernetes() -> None:
    code = (
        "import sys, chaoslab.params, chaoslab.mechanisms, chaoslab.designs, chaoslab.faults, "
        "chaoslab.runner, chaoslab.results, chaoslab.outage; "
        "bad = [m for m in ('yaml', 'matplotlib', 'kubernetes', 'pydantic') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_runs_as_a_program(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "chaoslab", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "run" in r.stdout and "validate" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "chaoslab", "params", "--format", "csv", "--profile", "k8s-1.10"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0
    assert "kube_controller_manager.node_monitor_grace_period,40s" in r.stdout


def test_lab_and_live_sections_are_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lab: and live: sections are validated by their own models, with located errors."""
    text = (ROOT / "experiments" / "lab-vrrp.yaml").read_text()
    assert "\n  nodes: 2" in text
    path = write(tmp_path, text.replace("\n  nodes: 2", "\n  nodez: 2"))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2 and "lab.nodez: unknown key (did you mean nodes?)" in err
    exp = load_experiment(ROOT / "experiments" / "live-pod-delete.yaml")
    assert exp.model.live is not None and type(exp.model.live).__name__ == "LiveSection"
    assert exp.model.faults[0].live is not None  # how the drill injects the one fault


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    from chaoslab.experiment import validate_files

    a = write(tmp_path, GOOD.replace("lb.interval", "lb.intreval").replace("40s", "40"), "a.yaml")
    b = write(tmp_path, GOOD.replace("nodeport-lb-local]", "nodport-lb]"), "b.yaml")
    c = write(tmp_path, GOOD, "c.yaml")
    lines = validate_files([a, b, c])
    assert [ln.split(":")[0] for ln in lines] == [str(a), str(a), str(b)], lines
    assert "no unit" in lines[0] and "unknown parameter 'lb.intreval'" in lines[1]
    assert "unknown design 'nodport-lb'" in lines[2]


def test_usage_errors_are_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["run"], ["compare"], ["no-such-command"], ["run", "--trials", "x"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2, args
        assert "Traceback" not in err and "Error" in err


VARIANTS = """\
title: BGP with and without BFD
profile: [k8s-1.32, calico-bird]
designs:
  - ingress-vip-bgp
  - {design: ingress-vip-bgp, params: {bfd.enabled: true}}
  - {design: nodeport-lb, label: nodeport-nlb, profile: aws-nlb}
faults:
  - {kind: node-crash, target: vip-holder, designs: [ingress-vip-bgp]}
  - {kind: node-crash, target: app-pod-node, designs: [nodeport-nlb]}
trials: 30
"""


def test_design_variants_get_their_own_profile_params_and_name(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, VARIANTS))
    exp.validate()
    cells = {c.name: c for c in exp.cells()}
    assert set(cells) == {"ingress-vip-bgp", "ingress-vip-bgp[bfd.enabled=true]", "nodeport-nlb"}
    assert cells["ingress-vip-bgp[bfd.enabled=true]"].params["bfd.enabled"] is True
    assert cells["ingress-vip-bgp"].params["bfd.enabled"] is False
    nlb = cells["nodeport-nlb"]
    assert nlb.design == "nodeport-lb" and "aws-nlb" in nlb.params.profiles
    assert "calico-bird" in nlb.params.profiles  # the other families keep the file's profiles


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s.replace("label: nodeport-nlb", "label: ingress-vip-bgp"), "two designs"),
        (lambda s: s.replace("bfd.enabled: true", "bfd.enabld: true"), "did you mean"),
        (lambda s: s.replace("profile: aws-nlb", "profile: aws-nlbb"), "unknown profile"),
        (lambda s: s.replace("{design: nodeport-lb,", "{design: nodeport-lbx,"), "unknown design"),
    ],
)
def test_bad_variants_are_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, words
) -> None:
    path = write(tmp_path, edit(VARIANTS))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2 and words in err and f"{path}:" in err and "designs[" in err


TWO_KILLS = """\
title: two kills of keepalived
designs: [ingress-vip-vrrp]
faults:
  - {kind: daemon-kill, target: vip-holder, daemon: keepalived, signal: KILL, restart: inf}
  - {kind: daemon-kill, target: vip-holder, daemon: keepalived, signal: TERM}
  - {kind: link-down, target: vip-holder, duration: 500ms}
  - {kind: link-down, target: vip-holder, duration: inf}
trials: 20
horizon: 10s
"""


def test_faults_of_one_kind_keep_their_own_rows(tmp_path: Path) -> None:
    """Two daemon-kills differing only in the signal are two rows, named the way the lab
    names them, and an explicit name wins; two faults that would share a row are refused."""
    exp = load_experiment(write(tmp_path, TWO_KILLS))
    exp.validate()
    names = [f.result_name for f in exp.faults()]
    assert names == [
        "daemon-kill/keepalived-kill",
        "daemon-kill/keepalived-term",
        "link-down/0.5s",
        "link-down",
    ]
    (tmp_path / "two.yaml").write_text(TWO_KILLS)
    assert main(["run", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "res"), "-q"]) == 0
    (run_dir,) = (tmp_path / "res" / "two").iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["fault"]) == names
    named = TWO_KILLS.replace("signal: TERM}", "signal: TERM, name: graceful}")
    assert load_experiment(write(tmp_path, named)).faults()[1].result_name == "graceful"
    same = TWO_KILLS.replace("signal: TERM}", "signal: KILL, restart: inf}")
    with pytest.raises(ExperimentError, match=r"faults\[1\].*both daemon-kill/keepalived-kill"):
        load_experiment(write(tmp_path, same)).validate()


def test_params_table_keeps_the_assumption_marks(capsys: pytest.CaptureFixture[str]) -> None:
    """'[assumption]' in a source is text, not rich markup: the table must show it."""
    code, out, _ = run_cli(["params", "--grep", "client.request_duration"], capsys)
    assert code == 0 and "[assumption]" in out


DRILL_COMPOSITE = (
    """\
title: t
designs: [clusterip]
faults:
  - kind: node-crash
    target: app-pod-node
    with: apiserver-down
    with_delay: 4s
    live: {method: hook, hook: {inject: [ssh, compute-1, reboot], timeout: 60s}}
"""
    + LIVE_SECTIONS
)


def test_validate_refuses_a_drill_composite_without_a_hook_for_its_second_effect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The drill injects a with: effect by its with_hook only: validate sees the with: and
    refuses the file as the drill does, on the fault's live: line; with the hook it passes."""
    path = write(tmp_path, DRILL_COMPOSITE)
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: {path}:8: faults[0].live: with: apiserver-down: say how the drill injects "
        "it: with_hook: {inject: [...], timeout: ...}"
    ]
    hooked = DRILL_COMPOSITE.replace(
        "timeout: 60s}}",
        "timeout: 60s}, with_hook: {inject: [ssh, master-1, stop-apiserver], timeout: 60s}}",
    )
    ok = write(tmp_path, hooked, "hooked.yaml")
    code, _, err = run_cli(["validate", str(ok)], capsys)
    assert code == 0, err
