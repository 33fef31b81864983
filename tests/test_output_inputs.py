"""Inputs people paste: Go's duration text (as Kubernetes prints its flags),
``faults: [node-crash]`` like ``designs: [x]``, and a JSON Schema that flags in an editor
what the loader refuses: a typo'd key, an unknown design, fault or profile, a duration
without its unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaoslab.experiment import ExperimentError, json_schema, load_experiment
from chaoslab.params import ParamSet, parse_duration
from chaoslab.params.dists import ParseError, Uniform, parse_value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m0s", 300.0),
        ("1m30s", 90.0),
        ("300ms", 0.3),
        ("1h2m3.5s", 3723.5),
        ("1h0m0s", 3600.0),
        ("2m0.5s", 120.5),
        ("1s500ms", 1.5),
        ("10ns", 1e-8),
        ("-1m30s", -90.0),
    ],
)
def test_go_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1m30", "5m0x", "1m 30s", "m30s", "1h2m3.5"])
def test_a_go_duration_needs_a_unit_on_every_part(text: str) -> None:
    with pytest.raises(ParseError, match="cannot read"):
        parse_duration(text)


def test_go_durations_inside_distributions_and_counts_refuse_them() -> None:
    assert parse_value("uniform(1m0s, 1m30s)") == Uniform(60.0, 90.0)
    with pytest.raises(ParseError):
        parse_duration("1m30s", unit="1")


EXPERIMENT = """\
title: pasted
profile: k8s-1.32
designs: [nodeport-lb]
faults: [node-crash, pod-kill]
params:
  kube_controller_manager.node_monitor_grace_period: 0m50s
horizon: 1h0m0s
trials: 3
"""


def test_an_experiment_takes_go_durations_and_bare_fault_kinds(tmp_path: Path) -> None:
    p = tmp_path / "pasted.yaml"
    p.write_text(EXPERIMENT)
    exp = load_experiment(p)
    exp.validate()
    assert exp.horizon == 3600.0
    assert [(f.kind, f.label) for f in exp.faults()] == [
        ("node-crash", "app-pod-node"),
        ("pod-kill", "app-pod"),
    ]
    (cell, _) = exp.cells()
    grace = "kube_controller_manager.node_monitor_grace_period"
    assert cell.params.values[grace] == ParamSet.resolve(["k8s-1.32"], {grace: "50s"}).values[grace]


def test_a_bare_fault_kind_that_is_unknown_is_located(tmp_path: Path) -> None:
    p = tmp_path / "typo.yaml"
    p.write_text(EXPERIMENT.replace("pod-kill]", "pod-kil]"))
    with pytest.raises(ExperimentError) as e:
        load_experiment(p).validate()
    (msg,) = e.value.lines
    assert msg.startswith(f"{p}:4: faults[1].kind: unknown fault 'pod-kil' (did you mean pod-kill")


def test_the_schema_allows_a_bare_fault_kind() -> None:
    items = json_schema()["properties"]["faults"]["items"]
    assert {"$ref": "#/$defs/FaultKind"} in items["anyOf"]
    committed = Path(__file__).resolve().parent.parent / "experiments" / "schema.json"
    assert json.loads(committed.read_text()) == json_schema()


# ------------------------------------------------------------------ the schema in an editor

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "title": "t",
    "profile": "k8s-1.32",
    "designs": ["nodeport-lb"],
    "faults": ["node-crash"],
    "params": {"lb.interval": "2s"},
}


def _schema_errors(data: dict[str, object]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    return [e.message for e in validator.iter_errors(data)]


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=str)
def test_every_bundled_experiment_is_valid_under_the_schema(path: Path) -> None:
    import yaml

    assert _schema_errors(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize(
    "edit",
    [
        {"params": {"lb.intreval": "2s"}},  # a typo'd key
        {"params": {"lb.interval": 2}},  # a duration without its unit
        {"params": {"lb.interval": "2 sec"}},
        {"params": {"lb.rise": "2s"}},  # a count given a time unit
        {"params": {"bfd.enabled": "maybe"}},
        {"designs": ["nodport-lb"]},
        {"designs": [{"design": "nodport-lb"}]},
        {"faults": ["node-crsh"]},
        {"faults": [{"kind": "node-crsh"}]},
        {"profile": ["k8s-1.99"]},
        {"sweep": {"lb.intreval": ["1s"]}},
        {"sweep": {"lb.interval": [1]}},
        {"client": {"timout": "1s"}},
    ],
    ids=repr,
)
def test_the_schema_flags_what_the_loader_refuses(edit: dict[str, object], tmp_path: Path) -> None:
    import yaml

    data = {**BASE, **edit}
    assert _schema_errors(BASE) == []
    assert _schema_errors(data) != []
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ExperimentError):
        load_experiment(path).validate()


def test_every_catalogue_and_profile_value_fits_its_key_in_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from chaoslab.params import CATALOGUE, PROFILES

    schema = json_schema()
    params = jsonschema.Draft202012Validator(
        {"$defs": schema["$defs"], **schema["$defs"]["Params"]}
    )
    for profile in [None, *PROFILES]:
        ps = ParamSet.resolve([profile] if profile else [])
        for key in CATALOGUE:
            assert list(params.iter_errors({key: ps.text(key)})) == [], (profile, key)
