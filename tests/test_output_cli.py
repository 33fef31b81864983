"""Tables people can read at 80 columns: `chaoslab show` (one row per cell, the design x
fault pivot, md/csv/json, filters), `run`'s summary and `params`, on a small run of the
bundled experiment; and the renderer's promises (never wider than the screen when the
numbers fit, numbers and keys whole, text folded without losing a character)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaoslab.cli import main
from chaoslab.cli.tables import Col, Heading, fold, render
from chaoslab.cli.views import METRICS, Filters, Summary, cell, read_summary, select, summary_text

ROOT = Path(__file__).resolve().parent.parent
# a number cell as the tables write it
NUMBER = re.compile(r"^(-|never|<1%|>99%|\d+%|-?\d+(\.\d+)?(e[+-]\d+)?)$")


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    args = ["run", str(ROOT / "experiments" / "seed-designs.yaml"), "--trials", "20"]
    assert main([*args, "--out", str(out), "-q"]) == 0
    (run_dir,) = (out / "seed-designs").iterdir()
    return run_dir


def _show(
    args: list[str], width: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", str(width))
    code = main(["show", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("width", [80, 100])
def test_show_fits_the_width_and_prints_every_number_whole(
    bundled_run: Path,
    width: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = _show([str(bundled_run)], width, capsys, monkeypatch)
    assert code == 0
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width
    summary = pd.read_csv(bundled_run / "summary.csv")
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in set(summary["design"]) and len(parts) == 1 + len(METRICS):
            assert all(NUMBER.match(p) for p in parts[1:]), line
            rows.setdefault(parts[0], []).append(parts[1:])
    # every cell is a row, its numbers those of summary.csv as the table formats them
    assert sum(len(v) for v in rows.values()) == len(summary)
    for design, group in summary.groupby("design", sort=False):
        expected = [[cell(r[m.column], m.kind) for m in METRICS] for _, r in group.iterrows()]
        assert rows[str(design)] == expected


def test_shares_are_shares_and_the_legend_says_which_columns_are_seconds(
    bundled_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out, _ = _show([str(bundled_run)], 80, capsys, monkeypatch)
    header = next(line for line in out.splitlines() if line.startswith("design"))
    assert header.split() == ["design", *(m.short for m in METRICS)]
    legend = " ".join(out.split("\n\n")[-1].split())
    assert "seconds (never: not within the horizon): p50" in legend
    assert "shares: rec trials recovered, reset" in legend
    assert "33%" in out and "0.333" not in out  # the pod-kill reset share
    first = out.splitlines()[0:3]
    assert "profiles k8s-1.32, haproxy" in " ".join(first) and "['" not in out


@pytest.mark.parametrize("width", [80, 100])
def test_the_pivot_has_designs_as_rows_and_faults_as_columns(
    bundled_run: Path,
    width: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = _show([str(bundled_run), "--pivot", "p95"], width, capsys, monkeypatch)
    assert code == 0 and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width
    assert "recovery_p95" in out and "seconds" in out
    summary = pd.read_csv(bundled_run / "summary.csv")
    crash = summary.query("design == 'ingress-vip-pod' and target == 'vip-holder'")
    lines = [ln.split() for ln in out.splitlines() if ln.startswith("ingress-vip-pod ")]
    cells = {c for parts in lines for c in parts[1:]}
    assert all(cell(v, "s") in cells for v in crash["recovery_p95"])


def test_csv_and_json_keep_full_values_and_filters_select_rows(
    bundled_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [str(bundled_run), "--design", "metallb-bgp", "--fault", "node-crash"]
    code, out, _ = _show([*args, "--format", "csv", "-p", "k8s-1.32"], 80, capsys, monkeypatch)
    assert code == 0
    got = pd.read_csv(__import__("io").StringIO(out))
    summary = pd.read_csv(bundled_run / "summary.csv")
    want = summary.query(
        "design == 'metallb-bgp[metallb-native]' and fault == 'node-crash' "
        "and profile == 'k8s-1.32'"
    ).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)

    code, out, _ = _show(
        [str(bundled_run), "--format", "json", "-f", "node-crash"], 80, capsys, monkeypatch
    )
    records = json.loads(out)
    never = [r for r in records if r["design"] == "nodeport-direct" and r["target"] == "entry-node"]
    assert never and all(r["recovery_p95"] is None for r in never)  # inf: JSON has none
    assert all(isinstance(r["recovered"], float) for r in records)

    code, out, _ = _show(
        [str(bundled_run), "--format", "md", "--pivot", "lost"], 80, capsys, monkeypatch
    )
    lines = out.splitlines()
    assert lines[0].startswith("| profile | design | pod-kill |") and lines[1].startswith(
        "|---|---|---:"
    )
    assert len(lines) == 2 + summary.groupby(["profile", "design"]).ngroups


def _odd_summary(path: Path) -> Path:
    """A summary as pandas writes one with what a sweep or a live run can put in it: swept
    ints and floats (one missing), a missing profile, booleans, inf and NaN numbers."""
    pd.DataFrame(
        {
            "design": ["nodeport-lb", "nodeport-lb", "clusterip"],
            "fault": ["pod-kill", "pod-kill", "node-crash"],
            "profile": ["k8s-1.32", None, "k8s-1.32"],
            "kubelet.node_status_update_frequency": [10, 4, 10],
            "client.request_rate": [0.5, None, 2000.0],
            "flag": [True, False, True],
            "trials": [10, 20, 30],
            "recovery_p95": [1.25, math.inf, None],
            "connections_reset_mean": [0.004, 0.996, 1.0],
        }
    ).to_csv(path, index=False)
    return path


def test_the_table_read_without_pandas_is_the_table_pandas_reads(
    bundled_run: Path, tmp_path: Path
) -> None:
    """show's default table reads summary.csv with the csv module: the same values, types
    and text as through pd.read_csv, grouped (narrow) or flat (wide), filtered or not."""
    for path in (bundled_run / "summary.csv", _odd_summary(tmp_path / "summary.csv")):
        by_pandas, by_csv = Summary.of_frame(pd.read_csv(path)), read_summary(path)
        assert by_csv.columns == by_pandas.columns
        assert [list(map(repr, r.values())) for r in by_csv.rows] == [
            list(map(repr, r.values())) for r in by_pandas.rows
        ]
        for f in (Filters(), Filters(designs=["nodeport-lb"]), Filters(profiles=["k8s-1.32"])):
            for width in (40, 80, 250):
                want = summary_text(select(pd.read_csv(path), f), width, title="t")
                assert summary_text(select(by_csv, f), width, title="t") == want


def test_show_prints_a_complete_runs_table_without_importing_pandas(bundled_run: Path) -> None:
    code = (
        "import sys\nfrom chaoslab.cli import main\n"
        f"assert main(['show', {str(bundled_run)!r}]) == 0\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--design", "nodport-lb"], "--design nodport-lb: not in this run"),
        (["--profile", "k8s-1.99"], "--profile k8s-1.99: not in this run"),
        (["--pivot", "p97"], "--pivot p97: not a summary metric"),
        (["--format", "xml"], "--format xml: use one of table, csv, md, json"),
    ],
)
def test_a_bad_show_option_is_one_line(
    bundled_run: Path,
    args: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _show([str(bundled_run), *args], 80, capsys, monkeypatch)
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ("[1, 2]", "not a run's metadata (a JSON list)"),
        ("{garbled", "unreadable"),
        ("{}", "results format version None"),
        ('{"format_version": 1, "status": "complete", "sweep": 3}', "sweep: a JSON int"),
    ],
)
def test_show_on_odd_meta_is_one_line(
    tmp_path: Path, meta: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "meta.json").write_text(meta)
    code = main(["show", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and words in err


#: a drill's calibration as `chaoslab.live.k8s.calibrate` measures it (30 round trips)
_SAMPLES = tuple(0.0051 + 0.0004 * i for i in range(30))
_REACTION = "kube_controller_manager.controller_reaction"


@pytest.fixture
def calibrated_run(bundled_run: Path, tmp_path: Path) -> Path:
    """The bundled run with the meta.json of a calibrated drill (``overrides`` and
    ``calibration`` as the drill writes them) and a ``--set`` value beside."""
    import shutil

    from chaoslab.live.k8s.calibrate import Calibration
    from chaoslab.live.k8s.drill import _calibration_meta

    run = Path(shutil.copytree(bundled_run, tmp_path / bundled_run.name))
    meta = json.loads((run / "meta.json").read_text())
    cal = _calibration_meta([Calibration("controller_reaction", "worker-1", _SAMPLES)])
    meta.update(cal)
    meta["overrides"]["kubelet.node_status_update_frequency"] = "10s"
    (run / "meta.json").write_text(json.dumps(meta))
    return run


def test_show_header_says_which_values_replaced_the_catalogue_and_from_where(
    calibrated_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import statistics

    code, out, _ = _show([str(calibrated_run)], 80, capsys, monkeypatch)
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"override {_REACTION}"))
    # one override per line, its continuation indented
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
    said = " ".join(ln.strip() for ln in lines[start:end])
    median = f"{statistics.median(_SAMPLES) * 1000:.3g} ms"
    p95 = f"{float(pd.Series(_SAMPLES).quantile(0.95)) * 1000:.3g} ms"
    assert said == (
        f"override {_REACTION} = empirical of 30 samples, from calibration: 30 round trips "
        f"on node worker-1, median {median}, p95 {p95} (calibration.csv)"
    )
    assert lines[end] == "override kubelet.node_status_update_frequency = 10s, from --set"


def test_show_of_a_calibrated_run_imports_no_pandas(calibrated_run: Path) -> None:
    code = (
        "import sys\nfrom chaoslab.cli import main\n"
        f"assert main(['show', {str(calibrated_run)!r}]) == 0\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "override kube_controller_manager.controller_reaction" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_show_of_a_run_without_overrides_has_no_override_line(
    bundled_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _show([str(bundled_run)], 80, capsys, monkeypatch)
    assert code == 0 and "override " not in out


def test_params_prints_keys_whole_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaoslab.params import CATALOGUE

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    tokens = set(out.split())
    assert all(key in tokens for key in CATALOGUE)


def test_params_grep_without_a_match_says_so_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["params", "--grep", "no-such-knob"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "no parameter key contains 'no-such-knob'\n"


# ------------------------------------------------------------------ the renderer

_text = st.text(st.sampled_from("abc-_.[ ]xyz"), min_size=0, max_size=40)


@given(_text, st.integers(1, 30))
def test_folding_keeps_every_character_and_the_width(text: str, width: int) -> None:
    lines = fold(text, width)
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


@given(
    st.lists(st.tuples(_text, st.floats(0, 1e6, allow_nan=False), _text), min_size=1, max_size=12),
    st.integers(40, 120),
)
def test_a_table_never_outgrows_the_screen_and_keeps_numbers_whole(
    rows: list[tuple[str, float, str]], width: int
) -> None:
    cols = [Col("name"), Col("value s", rigid=True, right=True), Col("what it is")]
    data = [[a, cell(v, "s"), b] for a, v, b in rows]
    text = render(cols, [Heading("a section"), *data], width)
    assert max(len(line) for line in text.splitlines()) <= width
    numbers = [ln.split() for ln in text.splitlines()]
    for _, v, _ in rows:
        assert any(cell(v, "s") in parts for parts in numbers)


def test_number_columns_wider_than_the_screen_go_into_blocks() -> None:
    cols = [Col("design")] + [Col(f"fault {i}", rigid=True, right=True) for i in range(12)]
    rows = [["ingress-vip-pod-no-garp", *(f"{1000 + i * 1.5:.1f}" for i in range(12))]]
    text = render(cols, rows, 80)
    blocks = text.split("\n\n")
    assert len(blocks) > 1 and all("ingress-vip-pod-no-garp" in b for b in blocks)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert all(f"{1000 + i * 1.5:.1f}" in text.split() for i in range(12))


def test_a_share_is_never_rounded_to_nothing_or_everything() -> None:
    assert [cell(x, "share") for x in (0.0, 0.003, 0.33, 0.996, 1.0)] == [
        "0%", "<1%", "33%", ">99%", "100%",
    ]  # fmt: skip
    assert cell(math.inf, "s") == "never" and cell(math.nan, "s") == "-"


def test_advise_fits_80_columns_with_settings_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_advise import _write  # the advise tests' small experiment

    monkeypatch.setenv("COLUMNS", "80")
    path = _write(tmp_path)
    assert main(["advise", str(path), "--out", str(tmp_path / "out"), "-q"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines if not line.startswith("run folder:")) <= 80
    assert "node_monitor_grace_period=30s" in out.split() and "…" not in out
