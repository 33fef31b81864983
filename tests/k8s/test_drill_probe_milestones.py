"""A drill against the wire-level fake server measures and predicts the probe milestones
(``probe.first_failed``, ``probe.last_failed``) with one definition: the send time of the
first and last failed new-connection probe after the fault (`chaoslab.outage`)."""

from __future__ import annotations

import pandas as pd

from chaoslab.cli import main


def test_node_crash_drill_predicts_the_first_failure_its_prober_records(make_env) -> None:
    """A node crash by hook black-holes one of two replicas. The measured first failure is
    the first failed probe of probes.parquet after t0; the predicted band is the drill's
    prober (2 x 40/s, a probe every 12.5 ms, each failing with odds 1/2) on the model's
    a(t): from 0 to several probe spacings, no longer the instant a(t) drops (0/0/0)."""
    env = make_env()
    exp = env.experiment(
        {
            "kind": "node-crash",
            "target": {"select": "app-pod-node"},
            "method": "hook",
            "hook": {
                "inject": env.control_hook("crash"),
                "recover": env.control_hook("poweron"),
                "timeout": "5s",
            },
        }
    )
    assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results")]) == 0
    run = env.only_run()
    probes = pd.read_parquet(run / "probes.parquet")
    new = probes[(probes["kind"] == "new") & (probes["t_rel"] >= 0)]
    failed = new[new["outcome"] != "ok"]
    assert len(failed), "the black-holed replica failed no probe"
    ms = pd.read_parquet(run / "milestones.parquet").set_index("milestone")
    assert ms.loc["probe.first_failed", "source"] == "probes"
    assert ms.loc["probe.first_failed", "t"] == failed["t_rel"].min()
    comp = pd.read_csv(run / "comparison.csv").set_index("metric")
    row = comp.loc["at_probe_first_failed"]
    assert row["n"] == 1 and row["measured_median"] == failed["t_rel"].min()
    spacing = 1 / (40 * 2)
    # odds 1/2 per probe: P(first >= k spacings) = 2^-k (25 % past 2 spacings; p95 near
    # 4.3 spacings, loosely bounded here: the prediction has 40 trials)
    assert 0 <= row["predicted_p5"] < spacing and row["predicted_p95"] > 2 * spacing
    assert "at_probe_last_failed" in comp.index
