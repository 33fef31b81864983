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
from chaoslab.plots import fmt_seconds
from chaoslab.report import VERDICT_BINS, build_report, changed_parameters
from chaoslab.results import RunWriter, load_run

EXPERIMENT = """\
title: Report test — 노드 장애
description: LB-fronted NodePort with a shorter grace period than the profile's.
profile: [k8s-1.32, haproxy]
params:
  kube_controller_manager.node_monitor_grace_period: 20s
designs:
  - nodeport-lb
  - nodeport-lb-local
  - {design: nodeport-lb, label: nodeport-lb-rise3, params: {lb.rise: 3}}
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
sweep:
  lb.interval: [1s, 2s]
trials: 15
seed: 3
horizon: 10m
expect:
  - recovery_p95 < 10m
  - {check: lost_mean < 1ms, design: nodeport-lb, fault: node-crash}
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
    assert code == 1  # the lost_mean gate is breached: the report shows it
    (path,) = (d / "out").glob("*/*")
    return path


def test_changed_parameters_are_the_overrides(run_dir: Path) -> None:
    df = changed_parameters(load_run(run_dir))
    assert set(df.key) == {"kube_controller_manager.node_monitor_grace_period", "lb.fall",
                           "lb.rise"}  # fmt: skip
    rise = df[df.key == "lb.rise"].iloc[0]  # the variant's own value, named as such
    assert (rise["value"], rise["profile value"]) == ("3", "2")
    assert rise["source"] == "variant nodeport-lb-rise3"
    rows = df[df.key != "lb.rise"].set_index("key")
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
    from chaoslab.plots import figure_makers

    figure_ids = {a["id"] for t, a in tags if t == "figure"}
    assert figure_ids == {f"fig-{n}" for n in figure_makers(run)}
    # two sweep points: a phase timeline per fault and point
    assert {"fig-availability", "fig-ecdf-recovery", "fig-loss", "fig-sensitivity",
            "fig-phases-node-crash-1", "fig-phases-node-crash-2"} <= figure_ids  # fmt: skip
    # the experiment, its Korean title, the changed parameters and the summary
    assert "Report test — 노드 장애" in page
    assert "node_monitor_grace_period" in page and "lb.fall" in page
    assert page.count("<table") >= 4
    n_summary = len(run.summary())
    summary = page.split("Summary of every cell")[1].split("</table>")[0]
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
    from chaoslab.plots import figure_makers

    n = len(figure_makers(load_run(run_dir)))
    assert len(re.findall(r'src="data:image/png;base64,', text)) == n


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
    section = page.split("<summary>What recovery waits for</summary>")[1].split("</table>")[0]
    waits = bottlenecks(run.trials, ["design", "fault", "target", "lb.interval"])
    assert section.count("<tr>") == len(waits) + 1 == 3 * 2 * 2 + 1
    # the node crash behind eTP Local waits for HAProxy marking the backend down
    local = waits[(waits["design"] == "nodeport-lb-local") & (waits["fault"] == "node-crash")]
    assert set(local["waits_for"]) == {"lb.marked_down"}
    assert '<td class="t">lb.marked_down</td>' in section


def _order(page: str, *marks: str) -> list[int]:
    return [page.index(m) for m in marks]


def test_the_page_opens_with_verdicts_and_ends_with_the_long_tables(run_dir: Path) -> None:
    page = build_report(load_run(run_dir), figures=False)
    at = _order(page, 'id="contents"', 'id="verdicts"', 'id="reading"', 'id="experiment"',
                'id="tables"', "Summary of every cell")  # fmt: skip
    assert at == sorted(at)
    # the long tables are collapsed, the contents list links every section
    assert page.count("<details>") >= 2
    for anchor in ("verdicts", "reading", "experiment", "tables"):
        assert f'href="#{anchor}"' in page


def test_verdicts_are_one_row_per_design_and_point_with_the_gates(run_dir: Path) -> None:
    run = load_run(run_dir)
    page = build_report(run, figures=False)
    grid = page.split('<table class="verdict">')[1].split("</table>")[0]
    designs, points = run.trials.design.nunique(), run.trials["lb.interval"].nunique()
    assert grid.count("<tr>") == designs * points + 1
    s = run.summary()
    for _, row in s.iterrows():  # each cell coloured by its p95, in the legend's bins
        cls = next(c for top, c, _ in VERDICT_BINS if row["recovery_p95"] <= top)
        assert f'<td class="{cls}"><b>{fmt_seconds(row["recovery_p95"])}</b>' in grid
    assert len({c for c in ("c0", "c1", "c2", "c3", "c4") if f'class="{c}"' in grid}) >= 2
    # lost_mean < 1 ms fails on the node crash of nodeport-lb and of its variant (a design
    # filter covers its variants), at both sweep points
    assert grid.count('class="bad"') == 4 and grid.count('class="ok"') > 4
    assert "FAIL lost_mean &lt; 1ms [design=nodeport-lb,nodeport-lb-rise3" in page


def test_report_reuses_the_figures_plot_drew(run_dir: Path, tmp_path: Path) -> None:
    assert main(["plot", str(run_dir)]) == 0
    figs = Path(run_dir) / "figures"
    before = {p.name: p.stat().st_mtime_ns for p in figs.glob("*.png")}
    index = (figs / "index.json").read_bytes()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r.html")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in figs.glob("*.png")} == before
    assert (figs / "index.json").read_bytes() == index
    page = (tmp_path / "r.html").read_text()
    png = (figs / "loss.png").read_bytes()
    assert base64.b64encode(png).decode() in page  # the very file plot wrote


@pytest.mark.parametrize("existing", ["folder", "file"])
def test_report_out_on_something_existing_is_refused_first(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: str
) -> None:
    out = tmp_path / "r.html"
    if existing == "folder":
        out.mkdir()
    else:
        out.write_text("keep me")
    assert main(["report", str(tmp_path / "not-a-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # refused before the run folder is even read (it does not exist)
    assert len(err) == 1 and f"--out {out}" in err[0]
    if existing == "file":
        assert out.read_text() == "keep me"
        assert main(["report", str(run_dir), "--out", str(out), "--force"]) == 0
        assert out.read_text().startswith("<!DOCTYPE html>")


ADVISE = """\
title: advise report test
profile: [k8s-1.32, haproxy]
designs: [nodeport-lb]
faults:
  - {kind: node-crash, target: app-pod-node}
horizon: 10m
seed: 3
advise:
  timers:
    nodeport-lb:
      kube_controller_manager.node_monitor_grace_period: [10s, 30s, 50s]
  rates:
    node-crash: 1/node-year
  noise:
    - {kind: kubelet-stall, target: app-pod-node, rate: 12/node-year, duration: 12s}
  constraints: {spurious_failovers: 3/cluster-year}
  search: {min_trials: 40, max_trials: 120, eta: 3}
"""


def test_an_advised_run_shows_the_advice_and_each_frontier(tmp_path: Path) -> None:
    from chaoslab.advise import advise

    (tmp_path / "adv.yaml").write_text(ADVISE)
    result = advise(tmp_path / "adv.yaml", tmp_path / "out")
    run = load_run(result.run.path)
    page = build_report(run, figures=False)
    at = _order(page, 'id="verdicts"', 'id="advice"', 'id="experiment"')
    assert at == sorted(at)
    advice = page.split('id="advice"')[1].split("</table>")[0]
    rows = run.table("advice.csv")
    assert advice.count("<tr>") == len(rows) + 1
    assert "recommended" in advice and "30s" in advice  # 10 s is priced out by the stalls
    assert 'id="fig-frontier-nodeport-lb"' in page
