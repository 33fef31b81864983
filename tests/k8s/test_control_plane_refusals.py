"""Control-plane faults and with: composites: what each drill target refuses, before any
injection, with one located line (exit 2), and how a composite is mapped where both
parts are injectable. No cluster is needed: every refusal comes before one is reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from experiment_text import LIVE_SECTIONS  # tests/ is on sys.path (rootdir)

from chaoslab.cli import main
from chaoslab.experiment import ExperimentError, load_experiment
from chaoslab.live.k8s.drill import live_spec
from chaoslab.live.k8s.inject import COMPONENTS, Target, choose_target
from chaoslab.live.k8s.leader import hook_milestones

HOOK = "{inject: [ssh, master-1, systemctl, restart, kube-controller-manager], timeout: 60s}"


def _exp(tmp_path: Path, faults: str, rest: str = LIVE_SECTIONS) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(f"title: t\ndesigns: [clusterip]\nfaults:\n{faults}{rest}")
    return p


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out + err


def test_a_user_cluster_refuses_a_control_plane_fault_without_a_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _exp(
        tmp_path,
        "  - kind: controller-manager-restart\n    live: {method: pod, image: busybox, arm: 5s}\n",
    )
    for cmd in (["validate", str(path)], ["drill", str(path), "--kubeconfig", "/nonexistent"]):
        code, text = _run(cmd, capsys)
        assert code == 2
        assert f"{path}:5: faults[0].live: controller-manager-restart" in text
        assert "operator's hook (method: hook)" in text
        assert "Traceback" not in text


def test_apiserver_down_by_hook_needs_its_duration(tmp_path: Path) -> None:
    path = _exp(tmp_path, f"  - kind: apiserver-down\n    live: {{method: hook, hook: {HOOK}}}\n")
    exp = load_experiment(path)
    exp.model.faults[0]  # the model takes the catalogue's duration; a drill needs its own
    with pytest.raises(ExperimentError, match="apiserver-down needs duration"):
        live_spec(exp, 0)


def test_a_composite_without_a_hook_for_its_second_effect_is_refused_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _exp(
        tmp_path,
        "  - kind: node-crash\n    target: app-pod-node\n    with: apiserver-down\n"
        f"    live: {{method: hook, hook: {HOOK}}}\n",
    )
    # the kubeconfig does not exist: the refusal must come first
    code, text = _run(["drill", str(path), "--kubeconfig", "/nonexistent"], capsys)
    assert code == 2
    assert f"{path}:7: faults[0].live: with: apiserver-down: say how the drill injects it" in text


def test_a_composite_whose_second_effect_is_not_a_control_plane_fault_is_refused(
    tmp_path: Path,
) -> None:
    path = _exp(
        tmp_path,
        "  - kind: kubelet-stop\n    target: app-pod-node\n    duration: 10s\n"
        f"    with: node-crash\n    live: {{method: hook, hook: {HOOK}, with_hook: {HOOK}}}\n",
    )
    with pytest.raises(ExperimentError, match="only when it is a control-plane fault"):
        live_spec(load_experiment(path), 0)


def test_a_with_hook_without_with_is_refused(tmp_path: Path) -> None:
    path = _exp(
        tmp_path,
        "  - kind: node-crash\n    target: app-pod-node\n"
        f"    live: {{method: hook, hook: {HOOK}, with_hook: {HOOK}}}\n",
    )
    with pytest.raises(ExperimentError, match="with_hook is for the fault's with: effect"):
        live_spec(load_experiment(path), 0)


def test_a_node_crash_with_a_controller_manager_restart_maps_to_two_hooks(tmp_path: Path) -> None:
    path = _exp(
        tmp_path,
        "  - kind: node-crash\n    target: app-pod-node\n    with: controller-manager-restart\n"
        f"    with_delay: 5s\n    live: {{method: hook, hook: {HOOK}, with_hook: {HOOK}}}\n",
    )
    f = live_spec(load_experiment(path), 0).fault
    assert (f.kind, f.with_, f.with_delay) == ("node-crash", "controller-manager-restart", 5.0)
    assert f.with_hook is not None and f.with_hook.inject == [
        "ssh",
        "master-1",
        "systemctl",
        "restart",
        "kube-controller-manager",
    ]


def test_a_control_plane_fault_targets_its_component_not_a_node(tmp_path: Path) -> None:
    path = _exp(
        tmp_path,
        f"  - kind: controller-manager-restart\n    live: {{method: hook, hook: {HOOK}}}\n",
    )
    spec = live_spec(load_experiment(path), 0)
    assert spec.fault.target.select == "controller-manager-leader"
    # resolved without a single API call: no kube, no discovery is touched
    target = choose_target(None, spec, None, None)  # type: ignore[arg-type]
    assert target == Target(None, None, (), COMPONENTS["controller-manager-restart"])
    assert target.label == "kube-controller-manager"


LAB = """\
probe: {rate: 20, probers: 2, bin: 100ms}
cluster:
  nodes: {master: 1, controller: 3, compute: 2}
lab:
  name: cpt
  design: nodeport-lb
  nodes: 2
  lb: {pods: [1, 1]}
  trial: {baseline: 1s, cooldown: 1s, steady: 1s, settle_timeout: 10s, jitter: 1s}
"""


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("  - kind: controller-manager-restart\n", "controller-manager-restart: the lab has no"),
        (
            "  - {kind: node-crash, target: app-pod-node, with: apiserver-down}\n",
            "apiserver-down: the lab has no Kubernetes control plane",
        ),
        (
            "  - kind: link-down\n    target: app-pod-node\n    duration: 1s\n"
            "    with: node-crash\n",
            "with: node-crash: the lab injects one effect per fault",
        ),
    ],
)
def test_the_lab_refuses_what_it_cannot_inject(
    fault: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "lab.yaml"
    p.write_text(f"title: t\ndesigns: [nodeport-lb]\nfaults:\n{fault}{LAB}")
    code, text = _run(["validate", str(p)], capsys)
    assert code == 2
    assert f"{p}:4: faults[0]" in text and words in text


def test_hook_milestone_lines_are_read_and_other_output_ignored() -> None:
    out = (
        "fault_at=12.5\nmilestone apiserver.down 12.5\nrestarts {'kube-scheduler': 1}\n"
        "milestone apiserver.up 30.25\nmilestone apiserver.up 31\nmilestone bad x\n"
    )
    assert hook_milestones(out) == {"apiserver.down": 12.5, "apiserver.up": 30.25}


@pytest.mark.parametrize(
    "args",
    [["crash-node"], ["restart-controller-manager", "compute-1"], ["apiserver-down"]],
)
def test_the_local_hooks_refuse_bad_arguments_with_one_line(
    args: list[str], tmp_path: Path
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "chaoslab.live.cluster.hooks", *args, "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == (2 if args[0] != "apiserver-down" else 1)
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(args[0])  # it names the action, then why (no node, no cluster)
