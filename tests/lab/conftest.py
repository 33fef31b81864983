"""Fixtures for the lab tests: root and the daemons are required; every test gets a private
state folder and unique namespace names, and nothing of its own may be left behind."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoslab.experiment import Experiment, load_experiment
from chaoslab.live.lab.netns import namespaces_with_prefix as our_namespaces

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
DAEMONS = ("ip", "keepalived", "bird", "haproxy", "nginx", "iptables-restore")


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (run ./install.sh)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = _lab_missing()
    if why is None:
        return
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=why))


def lab_experiment(
    yaml_name: str,
    folder: Path,
    name: str,
    *,
    faults: list[dict[str, Any]] | None = None,
    predict_trials: int | None = None,
    horizon: str | None = None,
    params: dict[str, Any] | None = None,
    **lab: Any,
) -> Experiment:
    """A bundled lab experiment with its lab renamed, and optionally other faults, fewer
    predicted trials, another horizon, more ``params`` or other ``lab:`` keys (e.g.
    ``trials``, ``trial``)."""
    import yaml

    doc = yaml.safe_load((EXPERIMENTS / yaml_name).read_text())
    doc["lab"] = {**doc["lab"], "name": name, **lab}
    doc["params"] = {**doc.get("params", {}), **(params or {})}
    for key, value in (("faults", faults), ("trials", predict_trials), ("horizon", horizon)):
        if value is not None:
            doc[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = load_experiment(path)
    exp.validate()
    return exp


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Returns ``make(yaml_name, **changes) -> Experiment`` (see `lab_experiment`) with a
    unique lab name; checks afterwards that no namespace or process of these labs is left."""
    monkeypatch.setenv("CHAOSLAB_LAB_STATE", str(tmp_path / "state"))
    made: list[str] = []

    def make(yaml_name: str, **changes: Any) -> Experiment:
        name = f"t{uuid.uuid4().hex[:6]}"
        made.append(name)
        return lab_experiment(yaml_name, tmp_path, name, **changes)

    yield make
    from chaoslab.live.lab.drill import lab_down
    from chaoslab.live.lab.netns import list_labs

    leftovers = [s for s in list_labs() if s.status != "down"]
    pids = [p.pid for s in leftovers for p in s.procs.values() if p.alive()]
    lab_down(None)  # clean up whatever a failed test left, then fail it
    for name in made:
        assert our_namespaces(f"cl-{name}-") == [], f"namespaces of {name} left behind"
    assert not leftovers, f"labs left up: {[s.name for s in leftovers]} (pids {pids})"
