"""HTML report: self-contained, names what differs from the profiles, embeds the figures."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from chaoslab.cli import main
from chaoslab.report import build_report, changed_parameters
from chaoslab.results import RunWriter, load_run

EXPERIMENT = """\
title: Report test — 노드 장애
description: LB-fronted NodePort with a shorter grace period than the profile's.
profile: [k8s-1.32, haproxy]
params:
  kube_controller_manager.node_monitor_grace_period: 20s
designs: [nodeport-lb, nodeport-lb-local]
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
sweep:
  lb.interval: [1s, 2s]
trials: 15
seed: 3
horizon: 10m
"""


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    (d / "exp.yaml").write_text(EXPERIMENT)
    code = main(["run", str(d / "exp.yaml"), "--out", str(d / "out"), "-q", "--set", "lb.fall=2"])
    assert code == 0
    (path,) = (d / "out").glob("*/*")
    return path


def test_changed_parameters_are_the_overrides(run_dir: Path) -> None:
    df = changed_parameters(load_run(run_dir))
    rows = df.set_index("key")
    assert set(rows.index) == {"kube_controller_manager.node_monitor_grace_period", "lb.fall"}
    grace = rows.loc["kube_controller_manager.node_monitor_grace_period"]
    assert grace["value"] == "20s" and grace["profile value"] == "50s" and grace["unit"] == "s"


def test_report_is_self_contained_with_tables_and_figures(run_dir: Path) -> None:
    run = load_run(run_dir)
    page = build_report(run)
    tags = _tags(page)
    # nothing fetched from elsewhere: no scripts, stylesheets or remote images
    assert not [t for t, _ in tags if t in ("script", "link", "iframe")]
    imgs = [a["src"] or "" for t, a in tags if t == "img"]
    assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)
    for src in imgs:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    figure_ids = {a["id"] for t, a in tags if t == "figure"}
    assert figure_ids == {
        "fig-ecdf-recovery",
        "fig-availability",
        "fig-phases",
        "fig-loss",
        "fig-sensitivity",
    }
    # the experiment, its Korean title, the changed parameters and the summary
    assert "Report test — 노드 장애" in page
    assert "node_monitor_grace_period" in page and "lb.fall" in page
    assert page.count("<table") >= 4
    n_summary = len(run.summary())
    summary = page.split("<h2>Summary")[1].split("</table>")[0]
    assert summary.count("<tr>") == n_summary + 1


def test_report_vs_other_run_adds_the_comparison(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    meas = run.trials[run.trials["lb.interval"] == 1.0].groupby(["design", "fault"]).head(5)
    w = RunWriter(tmp_path / "meas", mode="live", target="lab", meta={"horizon_s": 600.0})
    w.add_trials(meas.drop(columns=["lb.interval"]))
    live = w.finish()
    page = build_report(live, vs=run, figures=False)
    # the prediction swept lb.interval and the measurement did not: refused, in the page
    assert "pick one with --select lb.interval" in page
    same = build_report(run, vs=run, figures=True)
    assert f"Against {run.path}" in same and "ks_crit_05" in same
    assert 'id="fig-predicted-vs-measured"' in same


def test_cli_report_writes_the_page(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 5


def test_cli_report_bad_vs_is_one_line(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(run_dir), "--vs", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a chaoslab run folder" in err and len(err.splitlines()) == 1


def test_summary_values_in_page_match_the_run(run_dir: Path) -> None:
    run = load_run(run_dir)
    page = build_report(run, figures=False)
    s = run.summary()
    row = s[(s.design == "nodeport-lb-local") & (s.fault == "node-crash")].iloc[0]
    assert f"{row['recovery_p50']:.3g}" in page


def test_report_says_what_recovery_waits_for_per_cell(run_dir: Path) -> None:
    from chaoslab.analysis import bottlenecks

    run = load_run(run_dir)
    page = build_report(run, figures=False)
    section = page.split("<h2>What recovery waits for</h2>")[1].split("</table>")[0]
    waits = bottlenecks(run.trials, ["design", "fault", "target", "lb.interval"])
    assert section.count("<tr>") == len(waits) + 1 == 2 * 2 * 2 + 1
    # the node crash behind eTP Local waits for HAProxy marking the backend down
    local = waits[(waits["design"] == "nodeport-lb-local") & (waits["fault"] == "node-crash")]
    assert set(local["waits_for"]) == {"lb.marked_down"}
    assert "<td>lb.marked_down</td>" in section
