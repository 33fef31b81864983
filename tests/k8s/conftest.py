"""Fixtures for drills against the wire-level fake API server (tests/k8s/fakeapi.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .fakeapi import FakeApi, FakeCluster, ServiceTarget, Timing

SKEW = 3.5  # the fake API server's clock runs this far ahead of ours


@dataclass
class Env:
    cluster: FakeCluster
    api: FakeApi
    target: ServiceTarget
    tmp: Path

    def control_hook(self, action: str, **query: str) -> list[str]:
        """argv of a hook command that calls the fake cluster's control endpoint."""
        q = "&".join(f"{k}={v}" for k, v in {"node": "{node}", **query}.items())
        code = (
            "import sys, urllib.request as u\n"
            f"u.urlopen(u.Request('{self.cluster.control_url()}/{action}?{q}', "
            "method='POST'), timeout=5)\n"
        )
        return [sys.executable, "-c", code]

    def experiment(self, fault: dict[str, Any], **live: Any) -> Path:
        """An experiment file whose live: section drives the fake cluster. ``fault`` is the
        fault's live: key with its ``kind``; ``probe`` overrides go to the top-level probe:."""
        section: dict[str, Any] = {
            "kubeconfig": str(self.api.kubeconfig),
            "context": "fake",
            "namespace": "demo",
            "urls": [self.target.url],
            "workload": {"kind": "Deployment", "name": "web"},
            "service": "web",
            "trials": 1,
            "cooldown": "200ms",
            "limits": {"max_outage": "20s", "trial_timeout": "20s", "node_return": "3s"},
            "preflight": {"window": "300ms", "timeout": "10s"},
            "settle": "400ms",
            "poll": "50ms",
            "api_timeout": "5s",
        }
        probe: dict[str, Any] = {"rate": 40, "probers": 2, "bin": "100ms"}
        probe.update(live.pop("probe", {}))
        for k, v in live.items():
            if isinstance(v, dict) and isinstance(section.get(k), dict):
                section[k] = {**section[k], **v}
            else:
                section[k] = v
        key = {k: v for k, v in fault.items() if k != "kind"}
        entry: dict[str, Any] = {"kind": fault["kind"], "live": key}
        select = (key.get("target") or {}).get("select")
        if select:
            entry["target"] = select
        doc = {
            "title": "fake drill",
            "designs": ["clusterip"],
            "faults": [entry],
            "client": {"timeout": "300ms"},
            "probe": probe,
            "trials": 40,
            "live": section,
        }
        path = self.tmp / f"exp-{fault['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def only_run(self) -> Path:
        runs = sorted((self.tmp / "results").glob("*/*-live-*"))
        assert len(runs) == 1, runs
        return runs[0]

    def journal(self, run: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(
        *,
        replicas_on: tuple[str, ...] = ("worker-1", "worker-2"),
        timing: Timing | None = None,
        **app: Any,
    ) -> Env:
        cl = FakeCluster(timing=timing, skew=SKEW)
        cl.add_node("cp-1", "10.0.0.1", control_plane=True)
        for i in (1, 2, 3):
            cl.add_node(f"worker-{i}", f"10.0.0.{10 + i}")
        cl.add_app("demo", "web", list(replicas_on), **app)
        env = Env(cl, FakeApi(cl, tmp_path), ServiceTarget(cl), tmp_path)
        made.append(env)
        return env

    yield make
    for env in made:
        env.api.close()
        env.target.close()
