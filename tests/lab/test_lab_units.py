"""Lab pieces that need no root: the lab's parts of an experiment and their errors, a trial's
row from probe records, the comparison table, and the daemon configurations the topologies
generate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.compare import COMPARISON_COLUMNS, comparison_table
from chaoslab.experiment import Experiment, ExperimentError, load_experiment
from chaoslab.live.engine import Observed, _row
from chaoslab.live.lab.base import LabParams
from chaoslab.live.lab.netns import LabState
from chaoslab.live.lab.spec import LabFaultKey, lab_fault
from chaoslab.live.probe import ProbeRecord, records_frame
from chaoslab.results import ProberInfo

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
BUNDLED = sorted(EXPERIMENTS.glob("lab-*.yaml"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_lab_experiments_load(path: Path) -> None:
    exp = load_experiment(path)
    exp.validate()
    LabParams(exp.profiles, exp.overrides())  # every parameter is known and readable
    assert exp.lab_faults()


def test_bundled_set_is_complete() -> None:
    names = {p.name for p in BUNDLED}
    assert {
        "lab-vrrp.yaml",
        "lab-bgp.yaml",
        "lab-nodeport-lb.yaml",
        "lab-ingress-hostnet.yaml",
    } <= names


BASE = """\
title: t
params:
  client.timeout: 200ms
designs: [ingress-vip-vrrp]
cluster:
  nodes: {master: 0, controller: 2, compute: 1}
  app: {replicas: 1, spread: compute}
faults:
  - {kind: link-down, target: vip-holder, duration: inf}
horizon: 5s
probe: {rate: 100, probers: 3, bin: 20ms}
lab:
  name: x
  design: ingress-vip-vrrp
  nodes: 2
  vrrp: {}
  trial: {baseline: 1s, cooldown: 1s, steady: 1s, settle_timeout: 9s, jitter: 1s}
"""


def _load(tmp_path: Path, text: str) -> Experiment:
    f = tmp_path / "e.yaml"
    f.write_text(text)
    exp = load_experiment(f)
    exp.validate()
    return exp


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("  nodes: 2\n", "  nodes: 2\n  colour: red\n", 16, "lab.colour: unknown key"),
        ("steady: 1s", "steady: 1", 17, "no unit"),
        ("  design: ingress-vip-vrrp", "  design: nope", 14, "lab.design"),
        (
            "  - {kind: link-down, target: vip-holder, duration: inf}",
            "  - {kind: node-crash, target: vip-holder}",
            9,
            "the lab cannot inject node-crash itself",
        ),
        ("  vrrp: {}\n", "", 12, "needs a 'vrrp:' section"),
        (
            "probe: {rate: 100, probers: 3,",
            "probe: {rate: 100, probers: 3, long: 2,",
            11,
            "long_interval",
        ),
        ("probe: {rate: 100, probers: 3, bin: 20ms}\n", "", 1, "needs a probe: section"),
    ],
)
def test_bad_lab_parts_are_one_line_with_file_line_key(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in BASE
    with pytest.raises(ExperimentError) as ei:
        _load(tmp_path, BASE.replace(old, new))
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'e.yaml'}:{line}:"), msg
    assert words in msg


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("nodes: 2\n", "nodes: 2\n  colour: red\n").replace(
        "steady: 1s", "steady: 1"
    )
    with pytest.raises(ExperimentError) as ei:
        _load(tmp_path, text)
    lines = str(ei.value).splitlines()
    assert len(lines) == 2 and "lab.colour" in lines[0] and "lab.trial.steady" in lines[1]


def test_first_layout_is_refused_with_how_to_migrate(tmp_path: Path) -> None:
    import subprocess

    old = subprocess.run(
        ["git", "show", "8224ea6:experiments/lab-vrrp.yaml"],
        capture_output=True,
        text=True,
        cwd=EXPERIMENTS.parent,
        check=False,
    )
    if old.returncode != 0:
        pytest.skip("no git history here")
    with pytest.raises(ExperimentError) as ei:
        _load(tmp_path, old.stdout)
    lines = str(ei.value).splitlines()
    assert any("lab.faults: this file has the first layout" in ln for ln in lines)
    assert any("lab.probe:" in ln and "top-level probe:" in ln for ln in lines)
    assert all(ln.startswith(f"{tmp_path / 'e.yaml'}:") for ln in lines)


def test_client_section_is_read_as_client_params(tmp_path: Path) -> None:
    exp = _load(
        tmp_path,
        BASE.replace("  client.timeout: 200ms\n", "  vrrp.version: 3\n")
        + "client: {timeout: 700ms}\n",
    )
    assert LabParams(exp.profiles, exp.overrides()).seconds("client.timeout") == pytest.approx(0.7)


def test_unknown_parameter_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="advert_intt"):
        _load(tmp_path, BASE.replace("  client.timeout: 200ms\n", "  vrrp.advert_intt: 1s\n"))


def test_lab_injection_of_model_faults() -> None:
    f = lab_fault("daemon-kill", "ingress-node", {"daemon": "bgp", "signal": "TERM"}, None, "n")
    assert (f.kind, f.daemon, f.signal, f.duration) == ("daemon-kill", "bird", "TERM", None)
    b = lab_fault("transient-blip", "vip-holder", {"duration": "500ms"}, None, "b")
    assert (b.kind, b.duration) == ("transient-blip", 0.5)
    d = lab_fault("link-down", "vip-holder", {"duration": "inf"}, None, "d")
    assert d.duration is None  # the link comes back only after the trial
    key = LabFaultKey(method="link-down", target="app-pod")
    g = lab_fault("node-crash", "app-pod-node", {}, key, "g")
    assert (g.kind, g.target, g.name) == ("link-down", "app-pod", "g")
    with pytest.raises(ValueError, match="cannot inject node-crash"):
        lab_fault("node-crash", "vip-holder", {}, None, "x")


def test_the_models_with_service_option_kills_the_service_in_the_lab_too() -> None:
    opts = {"daemon": "keepalived", "signal": "KILL", "with_service": True}
    assert lab_fault("daemon-kill", "vip-holder", opts, None, "s").with_service
    opts["with_service"] = False
    assert not lab_fault("daemon-kill", "vip-holder", opts, None, "k").with_service


def _probes(fail_from: float, fail_to: float, frac: float, t0: float = 100.0) -> pd.DataFrame:
    """300 probes/s from t0-1 to t0+5; in [fail_from, fail_to) every k-th probe fails."""
    recs = []
    k = round(1 / frac) if frac else 0
    for i, t in enumerate(np.arange(t0 - 1, t0 + 5, 1 / 300)):
        rel = t - t0
        bad = k and fail_from <= rel < fail_to and i % k == 0
        recs.append(
            ProbeRecord(float(t), 0.001, "timeout" if bad else "ok", 0, "p0", "new", -1, "")
        )
    return records_frame(recs)


def trial_metrics(probes: pd.DataFrame, t0: float, horizon: float, bin_s: float) -> dict:
    """The engine's row of one trial with these probes (the shared outage computation)."""
    from types import SimpleNamespace

    target = SimpleNamespace(
        design="d",
        prober=ProberInfo(300, 1, bin_s),
        milestone_names=["vrrp.master_changed"],
        slow_threshold=1.0,
    )
    fault = SimpleNamespace(name="f", target="vip-holder")
    return _row(target, fault, 0, Observed(probes, horizon), t0)  # type: ignore[arg-type]


def test_trial_metrics_full_outage() -> None:
    m = trial_metrics(_probes(0.0, 2.0, 1.0), 100.0, 5.0, 0.05)
    assert m["at_service_recovered"] == pytest.approx(m["recovery_s"])
    assert math.isnan(m["at_vrrp_master_changed"])
    assert m["recovered"] and m["recovery_s"] == pytest.approx(2.0, abs=0.05)
    assert m["downtime_s"] == pytest.approx(2.0, abs=0.05)
    assert m["lost_s"] == pytest.approx(2.0, abs=0.05)
    assert math.isnan(m["connections_reset"])


def test_trial_metrics_measure_slow_requests_against_the_threshold() -> None:
    # 300 probes/s; for 2 s after the fault every probe succeeds, but 1.5 s late: slow_s
    # is 2 s of traffic, lost_s 0, and the window's p99 is the slow probes' latency
    recs = [
        ProbeRecord(float(t), 1.5 if 0 <= t - 100.0 < 2.0 else 0.001, "ok", 200, "p0", "new",
                    -1, "")
        for t in np.arange(99.0, 105.0, 1 / 300)
    ]  # fmt: skip
    m = trial_metrics(records_frame(recs), 100.0, 5.0, 0.05)
    assert m["lost_s"] == 0.0
    assert m["slow_s"] == pytest.approx(2.0, abs=0.05)
    assert m["p99_latency_s"] == pytest.approx(1.5)


def test_trial_metrics_partial_outage() -> None:
    m = trial_metrics(_probes(0.0, 3.0, 1 / 3), 100.0, 5.0, 0.05)
    assert m["downtime_s"] == 0.0
    assert m["degraded_s"] == pytest.approx(3.0, abs=0.05)
    assert m["lost_s"] == pytest.approx(1.0, abs=0.05)


def test_trial_metrics_long_lived_connections() -> None:
    recs = [
        ProbeRecord(99.0, 0.001, "ok", 200, "l0", "long", 1, "n1"),
        ProbeRecord(99.5, 0.001, "ok", 200, "l1", "long", 2, "n2"),
        ProbeRecord(99.6, 0.001, "ok", 200, "l2", "long", 3, "n3"),
        ProbeRecord(100.5, 0.001, "reset", 0, "l0", "long", 1, ""),
        ProbeRecord(100.6, 0.3, "timeout", 0, "l1", "long", 2, ""),
        ProbeRecord(100.7, 0.001, "ok", 200, "l2", "long", 3, "n3"),
        ProbeRecord(99.9, 0.001, "ok", 200, "p0", "new", -1, "n1"),
    ]
    m = trial_metrics(records_frame(recs), 100.0, 5.0, 0.05)
    assert m["connections_reset"] == pytest.approx(1 / 3)
    assert m["connections_hung"] == pytest.approx(1 / 3)


def test_a_trial_without_a_drop_has_no_recovered_milestone() -> None:
    """As in the model: recovery 0 is no recovery, so the milestone is NaN, not 0."""
    m = trial_metrics(_probes(0.0, 0.0, 0.0), 100.0, 5.0, 0.05)
    assert m["recovered"] and m["recovery_s"] == 0.0
    assert math.isnan(m["at_service_recovered"])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 10), min_size=1, max_size=8),
    st.floats(0, 10),
    st.floats(0, 10),
    st.floats(0, 0.1),
)
def test_comparison_inside_counts_measurements_in_the_band(
    measured: list[float], a: float, b: float, tol: float
) -> None:
    lo, hi = min(a, b), max(a, b)
    pred = pd.DataFrame(
        {m: np.linspace(lo, hi, 101) for m in ("recovery_s", "downtime_s", "lost_s")}
    )
    meas = pd.DataFrame(
        {
            "design": "d",
            "fault": "f",
            "recovery_s": measured,
            "downtime_s": measured,
            "lost_s": measured,
        }
    )
    c = comparison_table(pred.assign(design="d", fault="f"), meas, tolerance_s=tol)
    assert tuple(c.columns) == COMPARISON_COLUMNS
    row = c[c.metric == "recovery_s"].iloc[0]
    p5, p95 = row.predicted_p5, row.predicted_p95
    expect = np.mean([(p5 - tol) <= x <= (p95 + tol) for x in measured])
    assert row.inside == pytest.approx(expect)
    assert row.n == len(measured)
    assert row.measured_min <= row.measured_median <= row.measured_max


def test_comparison_without_prediction_says_why() -> None:
    meas = pd.DataFrame(
        {"design": ["d"], "fault": ["f"], "recovery_s": [1.0], "downtime_s": [1.0], "lost_s": [1.0]}
    )
    c = comparison_table(pd.DataFrame(), meas, reasons={("d", "f"): "model: unknown design"})
    assert c.inside.isna().all() and (c.note == "model: unknown design").all()


def _topo(design: str, yaml_name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from chaoslab.live.lab.drill import topology_class

    exp = load_experiment(EXPERIMENTS / yaml_name)
    assert exp.model.lab is not None
    st_ = LabState(name="u", prefix="cl-u", design=design, dir=str(tmp_path))
    params = LabParams(exp.profiles, exp.overrides())
    return topology_class(design)(st_, exp.model.lab, params, exp.horizon)


def test_keepalived_config_from_parameters(tmp_path: Path) -> None:
    t = _topo("ingress-vip-vrrp", "lab-vrrp.yaml", tmp_path)
    c1, c2 = t.keepalived_conf("n1", 1), t.keepalived_conf("n2", 2)
    assert "priority 150" in c1 and "priority 100" in c2
    assert "advert_int 1\n" in c1 and "vrrp_version 2" in c1
    assert "nopreempt" not in c1 and "state BACKUP" in c1


def test_keepalived_tracks_the_service_process_from_the_host_namespace(tmp_path: Path) -> None:
    """vrrp_track_process: the kernel sends process events only to the initial namespace,
    so keepalived enters the node's namespace itself (``-s NAMESPACE`` on its command line,
    nothing in the config: inside global_defs 2.2.7 ignored net_namespace and stayed on the
    host) on a link the host does not have (kvrrp0), and matches the service by its whole
    command line, which names this lab's namespace."""
    t = _topo("ingress-vip-vrrp", "lab-vrrp-track-process.yaml", tmp_path)
    conf = t.keepalived_conf("n1", 1)
    assert conf.startswith("global_defs {") and "net_namespace" not in conf
    assert "  interface kvrrp0\n" in conf and "10.0.0.100/32 dev kvrrp0\n" in conf
    assert "eth0" not in conf
    block = conf[conf.index("vrrp_track_process") : conf.index("vrrp_instance")]
    assert '"--name" "n1" "--lab" "cl-u-n1"' in block and "full_command" in block
    assert "weight 0" in block and "track_process {" in conf
    assert t.server_argv("n1", 80, *t.server_tag("n1"))[-2:] == ["--lab", "cl-u-n1"]
    plain = _topo("ingress-vip-vrrp", "lab-vrrp.yaml", tmp_path).keepalived_conf("n1", 1)
    assert "net_namespace" not in plain and "track_process" not in plain
    assert "  interface eth0\n" in plain and "kvrrp0" not in plain
    assert "garp_master_delay 5\n" in plain and "garp_master_refresh" not in plain


def test_keepalived_for_a_missing_namespace_is_refused_before_any_start(tmp_path: Path) -> None:
    """keepalived 2.2.7's ``-t -s NAMESPACE`` exits 0 without checking anything when the
    setns() fails: a missing namespace is refused by the lab itself, in one line, before a
    config test, a start or a restart (cl-u-n1 does not exist)."""
    from chaoslab.live.lab.netns import LabError, Proc
    from chaoslab.live.lab.spec import LabFault

    t = _topo("ingress-vip-vrrp", "lab-vrrp-track-process.yaml", tmp_path)
    argv = ["keepalived", "-n", "-f", "k.conf", "-s", "cl-u-n1"]
    with pytest.raises(LabError, match=r"^keepalived-n1: namespace cl-u-n1 does not exist") as e:
        t.check_conf("n1", argv)
    assert "\n" not in str(e.value)
    with pytest.raises(LabError, match="does not end in -s cl-u-n1"):
        t.check_conf("n1", argv[:-2])
    st_ = t.state
    with pytest.raises(LabError, match=r"^k: namespace cl-u-n1 is missing .*; not started$"):
        st_.spawn("k", "n1", argv, enters_ns=True)
    with pytest.raises(LabError, match="must name cl-u-n1"):
        st_.spawn("k", "n1", ["sleep", "30"], enters_ns=True)
    assert st_.procs == {}
    # restore() re-checks before it starts a killed keepalived on the host again
    st_.procs["keepalived-n1"] = Proc("keepalived-n1", "cl-u-n1", 0, None, argv, "l", [], True)
    fault = LabFault(kind="daemon-kill", target="n1", name="f", daemon="keepalived")
    with pytest.raises(LabError, match="namespace cl-u-n1 does not exist"):
        t.restore(fault, "n1")
    assert st_.procs["keepalived-n1"].pid == 0  # not started again


def test_kube_proxy_chains(tmp_path: Path) -> None:
    cluster = _topo("nodeport-lb", "lab-nodeport-lb.yaml", tmp_path)
    rules = cluster.iptables_rules(1)  # n1 is idle: it forwards to the pods on n2 and n3
    assert "-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-SVC-APP" in rules
    assert "--mode random --probability 0.50000000000 -j KUBE-SEP-N2P0" in rules
    assert "-A KUBE-SVC-APP -j KUBE-SEP-N3P0" in rules
    assert "DNAT --to-destination 10.244.2.10:8080" in rules
    local = _topo("nodeport-lb-local", "lab-nodeport-lb-local.yaml", tmp_path)
    r3 = local.iptables_rules(3)  # n3 has no local pod: Local drops
    assert "-j KUBE-XLB-APP" in r3 and "has no local endpoints" in r3
    assert "KUBE-SEP-N1P0" not in r3.split("-A KUBE-XLB-APP")[1].split("\n")[0]
    r1 = local.iptables_rules(1)
    assert "-A KUBE-XLB-APP -j KUBE-SEP-N1P0" in r1
    cfg = local.haproxy_conf()
    assert "check port 32000 inter 1000ms fall 3 rise 2" in cfg
    assert "timeout check 1000ms" in cfg


def test_bird_and_nginx_configs(tmp_path: Path) -> None:
    bgp = _topo("ingress-vip-bgp", "lab-bgp-bfd.yaml", tmp_path)
    r = bgp.router_conf()
    assert "merge paths on;" in r and "hold time 9;" in r and "bfd on;" in r
    assert "multiplier 3;" in r and "min tx interval 100 ms;" in r
    n = bgp.node_conf(1)
    assert "export where net = 10.0.3.100/32" in n and "graceful restart off;" in n
    ng = _topo("ingress-hostnet", "lab-ingress-hostnet.yaml", tmp_path).nginx_conf()
    assert ng.count("max_fails=0 fail_timeout=0;") == 3
    assert "proxy_connect_timeout 1000ms;" in ng and "proxy_next_upstream_tries 3;" in ng
    assert "least_conn;" not in ng  # nginx's round robin: no directive


def test_nginx_balances_as_the_parameter_says(tmp_path: Path) -> None:
    """nginx.load_balance: least_conn is nginx's own directive, first in the upstream;
    ingress-nginx's EWMA is Lua, which the lab's nginx does not run: refused, with why."""
    t = _topo("ingress-hostnet", "lab-ingress-least-conn.yaml", tmp_path)
    ng = t.nginx_conf()
    upstream = ng[ng.index("upstream app {") : ng.index("  }")]
    assert upstream.splitlines()[1] == "    least_conn;"
    t.params = LabParams(["ingress-nginx-2018"], {"nginx.load_balance": "ewma"})
    with pytest.raises(ExperimentError, match="ewma is ingress-nginx's Lua balancer"):
        t.nginx_conf()


def test_nginx_runs_the_workers_the_model_splits_least_conn_over(tmp_path: Path) -> None:
    """nginx.worker_processes is nginx.conf's worker_processes (1, nginx's default): with
    least_conn and no zone each worker balances on its own counts, as the model takes it."""
    t = _topo("ingress-hostnet", "lab-ingress-least-conn.yaml", tmp_path)
    assert "worker_processes 1;" in t.nginx_conf().splitlines()
    t.params = LabParams(["ingress-nginx-2018"], {"nginx.worker_processes": "2"})
    assert "worker_processes 2;" in t.nginx_conf().splitlines()


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_lab_prediction_uses_the_files_model_cluster(path: Path, tmp_path: Path) -> None:
    """The cluster the drill predicts with is the one `chaoslab run` simulates for the file."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    exp = load_experiment(path)
    assert exp.model.lab is not None
    topo = _topo(exp.model.lab.design, path.name, tmp_path)
    derived = topo.model_cluster()
    nodes, app = doc["cluster"]["nodes"], doc["cluster"]["app"]
    assert derived == {
        "masters": nodes["master"],
        "controllers": nodes["controller"],
        "computes": nodes["compute"],
        "replicas": app["replicas"],
        "spread": app["spread"],
    }
    assert doc["designs"] == [exp.model.lab.design]


TWO_FAULTS = BASE.replace(
    "  - {kind: link-down, target: vip-holder, duration: inf}\n",
    "  - {kind: link-down, target: vip-holder, duration: inf}\n"
    "  - {kind: link-down, target: vip-holder, duration: 500ms}\n",
).replace("horizon: 5s\n", "horizon: 5s\ntrials: 300\nseed: 3\n")


def _rootless_lab(exp: Experiment):  # type: ignore[no-untyped-def]
    """The lab target with its daemons replaced by a fixed probe record: every trial sees
    the first second after the fault fail. What the engine writes (the run folder, the
    prediction, comparison.csv) is the lab drill's own."""
    from chaoslab.live.lab.drill import LabTarget

    class Rootless(LabTarget):
        def open(self, ctx):  # type: ignore[no-untyped-def]
            self.ctx = ctx

        def preflight(self, fault, trial):  # type: ignore[no-untyped-def]
            pass

        def choose(self, fault, trial):  # type: ignore[no-untyped-def]
            return "n1"

        def inject(self, fault, victim):  # type: ignore[no-untyped-def]
            return 100.0

        def observe(self, fault, victim, t0):  # type: ignore[no-untyped-def]
            return Observed(_probes(0.0, 1.0, 1.0, t0), self.exp.horizon)

        def restore(self, fault, victim):  # type: ignore[no-untyped-def]
            return True

        def close(self):  # type: ignore[no-untyped-def]
            return []

        def undo(self, step):  # type: ignore[no-untyped-def]
            return False

    target = Rootless(exp, trials=2, prefix=None)
    target.cooldown = 0.0
    return target


def test_a_two_fault_lab_run_compared_again_gives_its_comparison(tmp_path: Path) -> None:
    """Fault i's prober phases are drawn with its own seed (seed + i); meta.json records
    them, so `compare` of the stored prediction against the run has comparison.csv's
    predicted p5/p50/p95 for both faults' probe milestones (the second fault's differed
    while compare drew every fault's phases with the run's seed)."""
    from chaoslab.compare import compare, stored_prediction
    from chaoslab.live.engine import run_drill
    from chaoslab.live.lab.drill import fault_seeds, lab_run_meta
    from chaoslab.results import RunWriter, load_run, new_run_dir

    exp = _load(tmp_path, TWO_FAULTS)
    target = _rootless_lab(exp)
    writer = RunWriter(
        new_run_dir(tmp_path / "results", exp.slug(), "live"),
        mode="live",
        target="lab",
        meta=lab_run_meta(target),
    )
    outcome = run_drill(target, writer, log=lambda s: None)
    assert outcome.status == "complete"
    run = load_run(outcome.run.path)
    assert run.meta["fault_seeds"] == fault_seeds(exp) and len(set(fault_seeds(exp).values())) == 2
    pred = stored_prediction(run)
    assert pred is not None
    keys = ["fault", "metric"]
    again = compare(pred, run).cells.set_index(keys)
    drill = pd.read_csv(run.path / "comparison.csv").set_index(keys)
    band = ["predicted_p5", "predicted_p50", "predicted_p95"]
    for fault in fault_seeds(exp):
        for metric in ("at_probe_first_failed", "at_probe_last_failed"):
            first = drill.loc[(fault, metric), band].astype(float).tolist()
            assert again.loc[(fault, metric), band].astype(float).tolist() == first, (
                fault,
                metric,
            )
