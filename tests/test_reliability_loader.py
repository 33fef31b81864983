"""Hostile experiment files get one located line and exit 2, in bounded time and memory
(issue 14, items 7-11 and 14), and random YAML never gets a traceback (hypothesis)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoslab.cli import main
from chaoslab.experiment import ExperimentError, load_experiment

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
title: t
profile: k8s-1.32
designs: [nodeport-lb]
faults: [{kind: pod-kill, target: app-pod}]
"""
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 9)}]\n" for i in range(1, 9)
)

HOSTILE = {
    "billion laughs": (BOMB, "expands to more than 200000 nodes"),
    "recursive alias": ("a: &a [*a]\n", "an alias refers to a node that contains it"),
    "deep nesting": ("[" * 20000 + "]" * 20000 + "\n", "nested deeper than 64 levels"),
    "duplicate key": (
        BASE + "trials: 5\ntrials: 6\n",
        ":6: refused YAML: key 'trials' is given twice (lines 5 and 6)",
    ),
    "a trillion trials": (
        BASE + "trials: 1000000000000\n",
        ":5: trials: 1000000000000 trials per cell, over 100000; raise limits.trials",
    ),
    "two million nodes": (
        BASE + "cluster: {nodes: {compute: 2000000}}\n",
        ":5: cluster.nodes: 2000006 nodes, over 1000",
    ),
    "a million cells": (
        BASE
        + "sweep:\n  lb.interval: ["
        + ", ".join(f"{i + 1}s" for i in range(1000))
        + "]\n  lb.rise: ["
        + ", ".join(str(i + 1) for i in range(1000))
        + "]\n",
        "sweep: 1000000 cells, over 10000",
    ),
    "trials: true": (BASE + "trials: true\n", ":5: trials: Input should be a valid integer"),
    "1e999s": (BASE + "params: {lb.interval: 1e999s}\n", "'1e999s' is too large"),
    "uniform to 1e999s": (BASE + "params: {lb.interval: 'uniform(1s, 1e999s)'}\n", "too large"),
    "inf timer": (BASE + "params: {lb.interval: inf}\n", "lb.interval cannot be infinite"),
    "negative mean": (
        BASE + "params: {lb.timeout: 'normal(mean=-100s, sd=1s)'}\n",
        "normal() takes finite, non-negative times",
    ),
    "dangling plus": (
        BASE + "params: {lb.interval: '2s + '}\n",
        "a '+' needs a value on each side",
    ),
    "gamma": (BASE + "params: {lb.interval: 'gamma(2, 1s)'}\n", "unknown distribution 'gamma'"),
    "horizon .inf": (BASE + "horizon: .inf\n", ":5: horizon: the horizon must be a finite time"),
    "misspelt variant key": (
        "title: t\ndesigns: [{design: nodeport-lb, lable: x}]\nfaults: [{kind: pod-kill}]\n",
        ":2: designs[0].lable: unknown key (did you mean label?)",
    ),
    "a fault that is a number": (
        "title: t\ndesigns: [nodeport-lb]\nfaults: [3]\n",
        ":3: faults[0]: Input should be a valid dictionary",
    ),
    "a sweep key without values": (
        BASE + "sweep:\n  lb.interval: []\n",
        ":6: sweep.lb.interval: a swept key needs at least one value",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_gets_one_located_line_and_exit_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = HOSTILE[name]
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}"), err
    assert expected in err[0]
    assert "Traceback" not in err[0] and "instance of" not in err[0] and ".str" not in err[0]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_input_is_refused_after_a_bounded_read(
    device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", device]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {device}: larger than 4 MiB: not an experiment file"
    )


def test_the_limits_can_be_raised_by_who_means_it(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(BASE + "trials: 200000\nlimits: {trials: 1000000}\n")
    load_experiment(path).validate()


def test_bad_probe_urls_are_refused_at_validate(tmp_path: Path) -> None:
    live = (
        "probe: {rate: 10, probers: 1, bin: 100ms}\n"
        "live:\n  kubeconfig: /nonexistent\n  namespace: demo\n"
        "  urls: ['ftp://x/', 'tcp://10.0.0.1', 'garbage']\n"
        "  workload: {kind: Deployment, name: web}\n  service: web\n  trials: 1\n"
        "  cooldown: 1s\n  settle: 1s\n  poll: 50ms\n  api_timeout: 5s\n"
        "  limits: {max_outage: 20s, trial_timeout: 20s, node_return: 3s}\n"
        "  preflight: {window: 300ms, timeout: 10s}\n"
    )
    text = BASE.replace("target: app-pod}", "target: app-pod, live: {method: api}}") + live
    with pytest.raises(ExperimentError) as e:
        load_experiment(tmp_path / "x.yaml", text).validate()
    lines = [ln for ln in e.value.lines if "live.urls" in ln]
    assert [ln.split(": ", 2)[1] for ln in lines] == [f"live.urls[{i}]" for i in range(3)]
    assert "ftp://x/" in lines[0] and "needs a port" in lines[1] and "garbage" in lines[2]


# --------------------------------------------------------------------------- properties

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1s", "inf", "-5s", "uniform(1s, 2s)", "2s + ", "k8s-1.32", "pod-kill"]),
)
_keys = st.sampled_from(
    ["title", "designs", "faults", "params", "sweep", "trials", "seed", "horizon",
     "cluster", "profile", "probe", "live", "lab", "limits", "kind", "target", "x"]
)  # fmt: skip
_trees = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=30,
)
_LOCATED = re.compile(r"^\S+?(:\d+)?: ")


def _check(path: Path, text: str) -> None:
    try:
        load_experiment(path, text).validate()
    except ExperimentError as e:
        assert e.lines and all(_LOCATED.match(ln) and "\n" not in ln for ln in e.lines), e.lines


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees)
def test_any_yaml_tree_is_loaded_or_refused_in_located_lines(tree: object) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True)
    _check(Path("random.yaml"), text)


_BUNDLED = (ROOT / "experiments" / "seed-designs.yaml").read_text().splitlines(keepends=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(0, len(_BUNDLED) - 1),
    how=st.sampled_from(["drop", "double", "truncate", "replace"]),
    value=_scalars,
)
def test_mutations_of_the_bundled_experiment_never_raise_anything_else(
    cut: int, how: str, value: object
) -> None:
    lines = list(_BUNDLED)
    if how == "drop":
        del lines[cut]
    elif how == "double":
        lines.insert(cut, lines[cut])
    elif how == "truncate":
        lines = [*lines[:cut], lines[cut][: len(lines[cut]) // 2]]
    elif ":" in lines[cut]:
        head = lines[cut].split(":", 1)[0]
        lines[cut] = f"{head}: {yaml.safe_dump(value, default_flow_style=True).splitlines()[0]}\n"
    _check(Path("seed-designs.yaml"), "".join(lines))
