"""``live.calibrate: [controller_reaction]`` against the wire-level fake API server: the
round trips (annotation PATCH on a node -> its watch event), what they leave in the run
folder and in the prediction's parameters, and that the annotation is always removed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import chaoslab.live.k8s.calibrate as calib
from chaoslab.cli import main
from chaoslab.live.k8s.calibrate import ANNOTATION
from chaoslab.live.k8s.drill import plan_drill
from chaoslab.params import ParamSet
from chaoslab.params.dists import Empirical, parse_value

from .conftest import Env
from .fakeapi import Timing
from .rbac_check import denied

KEY = "kube_controller_manager.controller_reaction"
POD_DELETE = {"kind": "pod-delete", "target": {"select": "app-pod"}, "method": "api"}


def _annotated(env: Env) -> list[str]:
    """Nodes that still carry the calibration annotation."""
    return [
        n["metadata"]["name"]
        for n in env.cluster.items("nodes")
        if ANNOTATION in (n["metadata"].get("annotations") or {})
    ]


def _node_patches(env: Env) -> list[str]:
    return [p for m, p in env.cluster.calls if m == "PATCH" and "/nodes/" in p]


def test_calibrated_drill_records_samples_and_override(make_env) -> None:
    # every node PATCH takes 80 ms on the server: no round trip can be shorter
    env = make_env(timing=Timing(write_delay=0.08))
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=12)
    out = env.tmp / "results"
    assert main(["drill", str(exp), "--yes", "--out", str(out)]) == 0
    run = env.only_run()
    cal = pd.read_csv(run / "calibration.csv")
    assert list(cal.columns) == ["name", "sample", "seconds"]
    assert list(cal["sample"]) == list(range(1, 13))
    assert (cal["name"] == "controller_reaction").all()
    assert (cal["seconds"] >= 0.08).all()
    meta = json.loads((run / "meta.json").read_text())
    measured = parse_value(meta["overrides"][KEY])
    assert isinstance(measured, Empirical)
    assert measured.values == pytest.approx(tuple(cal["seconds"]), abs=1e-6)
    info = meta["calibration"]["controller_reaction"]
    assert info["param"] == KEY and info["samples"] == 12
    assert info["median_s"] == pytest.approx(cal["seconds"].median())
    # the effective experiment says what the prediction ran with
    assert KEY in (run / "experiment.yaml").read_text()
    assert _annotated(env) == []
    # warm-up + 12 timed + removal, on one node of the app, allowed by deploy/rbac.yaml
    assert len(_node_patches(env)) == 14 and len(set(_node_patches(env))) == 1
    assert denied(env.cluster.calls) == []


def test_samples_reach_the_prediction_parameters(make_env, capsys) -> None:
    env = make_env(timing=Timing(write_delay=0.05))
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=5)
    (plan,) = plan_drill(exp)
    (c,) = plan.calibration
    assert c.name == "controller_reaction" and len(c.samples) == 5
    assert c.node in ("worker-1", "worker-2")  # a node running the app
    ps = ParamSet.resolve(plan.profiles, plan.overrides)
    dist = ps.values[KEY]
    assert isinstance(dist, Empirical)
    assert dist.values == pytest.approx(c.samples, abs=1e-6)
    assert any(line.startswith("note: calibrated " + KEY) for line in plan.lines)
    assert "calibrating controller_reaction: 5 round trips" in capsys.readouterr().out
    assert _annotated(env) == []


def test_one_calibration_serves_every_fault(make_env) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"], calibrate_samples=6)
    doc = yaml.safe_load(exp.read_text())
    doc["faults"].append({**doc["faults"][0], "name": "second-delete"})
    exp.write_text(yaml.safe_dump(doc, sort_keys=False))
    first, second = plan_drill(exp)
    assert second.calibration == first.calibration
    assert second.overrides[KEY] == first.overrides[KEY]
    assert len(_node_patches(env)) == 6 + 2  # measured once: warm-up, 6 timed, removal


def _fail_after(monkeypatch: pytest.MonkeyPatch, calls: int, fail: Any) -> None:
    """Round trip number ``calls`` + 1 meets ``fail()`` (the annotation is set by then)."""
    real, done = calib._round_trip, [0]

    def round_trip(*args: Any) -> float:
        done[0] += 1
        if done[0] > calls:
            fail()
        return real(*args)

    monkeypatch.setattr(calib, "_round_trip", round_trip)


def test_api_error_midway_removes_annotation_and_fails_in_one_line(
    make_env, monkeypatch, capsys
) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])
    _fail_after(monkeypatch, 3, lambda: env.cluster.fail("PATCH", "/nodes/", 500, 1))
    assert main(["drill", str(exp), "--yes", "--out", str(env.tmp / "results")]) != 0
    err = capsys.readouterr().err.strip()
    assert "injected failure 500" in err and "\n" not in err
    assert _annotated(env) == [] and len(_node_patches(env)) == 5
    assert not (env.tmp / "results").exists()  # nothing was injected


def test_interrupt_midway_removes_annotation(make_env, monkeypatch) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])

    def interrupt() -> None:
        raise KeyboardInterrupt

    _fail_after(monkeypatch, 4, interrupt)
    with pytest.raises(KeyboardInterrupt):
        plan_drill(exp)
    assert _annotated(env) == []


def test_sigterm_midway_removes_annotation(make_env, monkeypatch) -> None:
    # the drill's signal guard is not up while it plans: calibration turns SIGTERM into
    # an interrupt itself, and gives the old handler back afterwards
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction"])
    before = signal.getsignal(signal.SIGTERM)
    _fail_after(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(KeyboardInterrupt):
        plan_drill(exp)
    assert _annotated(env) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_unknown_calibration_name_is_one_line_error(make_env, capsys) -> None:
    env = make_env()
    exp = env.experiment(POD_DELETE, calibrate=["controller_reaction", "node_boot_time"])
    assert main(["drill", str(exp), "--out", str(env.tmp / "results")]) == 2
    err = capsys.readouterr().err.strip()
    line = _line_of(exp, "node_boot_time")
    assert err.startswith(f"error: {exp}:") and "live.calibrate[1]" in err and "\n" not in err
    assert f":{line}:" in err
    assert env.cluster.calls == []  # refused before anything connects


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)
