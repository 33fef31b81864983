"""The three notebooks, executed top to bottom with nbclient against freshly produced runs.

Small trial counts through ``CHAOSLAB_NB_TRIALS`` keep all three within a couple of
minutes; the two that end with the advisor's answer run it three times (noise at the
catalogue's rates, 10x and 1/10), one round of 20 trials per cell, the later two from the
first one's cached trials. ``predicted-vs-measured`` gets a real lab drill (HAProxy in front
of NodePorts, two trials) when this machine can run one (root, network namespaces, haproxy);
otherwise it must say that no live run was found and fall back, visibly, to two simulated
runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# not importorskip: the notebooks must run in CI (./install.sh installs .[all])
import nbclient
import nbformat
import pytest

import chaoslab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("exposure-designs", "timer-tuning", "predicted-vs-measured")


def _lab_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("haproxy") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    return probe.returncode == 0


def _execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            out.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("CHAOSLAB_NB_TRIALS" in c.source for c in code)


@pytest.fixture
def nb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the kernel inherits this process's environment
    monkeypatch.setenv("CHAOSLAB_NB_TRIALS", "20")
    monkeypatch.setenv("CHAOSLAB_NB_WORKERS", "2")
    monkeypatch.setenv("CHAOSLAB_NB_OUT", str(tmp_path / "results"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("CHAOSLAB_NB_RUN", raising=False)
    return tmp_path


def _cell(nb: nbformat.NotebookNode, starts: str) -> str:
    """The text output of the code cell whose source starts with ``starts``."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts))
    return "\n".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


NOISE_RUNS = ("catalogue noise", "noise x10", "noise x0.1")


def _advisor_runs(out: Path, experiment: str) -> list[Path]:
    return sorted((out / "results" / experiment).glob("*-advise-*/advice.csv"))


def test_exposure_designs(nb_env: Path) -> None:
    nb = _execute("exposure-designs", nb_env)
    text = _text(nb)
    runs = list((nb_env / "results").glob("seed-designs/*/trials.parquet"))
    assert len(runs) == 1
    labels = set(chaoslab.load_run(runs[0].parent).trials["design"])
    # variants count as their base design: none is reported missing
    assert "designs in the registry but not in this run: none" in text
    rec = _cell(nb, "# the recommendation table")
    for label in labels:
        assert label in rec
    assert "reset (share)" in rec and "rank" in rec
    assert "best under k8s-1.32 for one node crash:" in text
    # the advisor answered three times, the second and third from the first one's trials
    assert len(_advisor_runs(nb_env, "advise-exposure-designs")) == 3
    assert "noise x10: 0 trials run" in text and "A SMALL RUN: 20 trials per cell" in text
    final = _cell(nb, "# the answer in one line per design")
    for label in labels:
        assert label in final
    for name in NOISE_RUNS:
        assert f"{name}: " in final
    assert "the advisor's choice at the catalogue's noise:" in final
    assert _images(nb) >= 8


def test_timer_tuning(nb_env: Path) -> None:
    nb = _execute("timer-tuning", nb_env)
    buys = _cell(nb, "def buys")
    for sweep in ("grace period", "grace x toleration", "VRRP", "BGP hold x BFD", "LB interval"):
        assert sweep in buys
    assert len(_advisor_runs(nb_env, "advise-timer-tuning")) == 3
    final = nb.cells[-1].outputs[0]["text"]
    for design in ("nodeport-lb", "ingress-vip-pod", "ingress-vip-vrrp", "ingress-vip-bgp+bfd"):
        assert f"{design}\n" in final
    for name in NOISE_RUNS:
        assert f"{name}: " in final
    assert "A SMALL RUN" in _text(nb)
    assert _images(nb) >= 9


def test_predicted_vs_measured(nb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = nb_env / "live"
    live.mkdir()
    drilled = False
    if _lab_possible():
        # a real drill of its own lab (own name: no clash with a lab someone else runs)
        exp = (ROOT / "experiments" / "lab-nodeport-lb.yaml").read_text()
        name = f"nb{os.getpid() % 100000}"
        exp = exp.replace("  name: nplb\n", f"  name: {name}\n")
        assert f"name: {name}" in exp
        (nb_env / "lab.yaml").write_text(exp)
        # the lab keeps its logs after `down`: in this test's folder, not /run
        monkeypatch.setenv("CHAOSLAB_LAB_STATE", str(nb_env / "lab-state"))
        from chaoslab.cli import main

        drilled = (
            main(["lab", "drill", str(nb_env / "lab.yaml"), "--trials", "2", "--out", str(live)])
            == 0
        )
    monkeypatch.setenv("CHAOSLAB_NB_LIVE", str(live))
    nb = _execute("predicted-vs-measured", nb_env)
    text = _text(nb)
    if drilled:
        assert "1 live run(s)" in text
        assert "NO LIVE RUN FOUND" not in text
        assert "lab: " in text
        # two measured trials: the notebook says they are too few to read as estimates
        assert "WARNING: fewer than 10 measured trials" in text
    else:
        assert "0 live run(s)" in text and "NO LIVE RUN FOUND" in text
    assert "coverage" in text and "ks_crit_05" in text
    assert _images(nb) >= 2
