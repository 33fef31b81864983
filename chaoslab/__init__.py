"""chaoslab: predict and measure how long users are cut off when a pod, node or network
element fails, for each way of exposing a Kubernetes service.

Python API::

    import chaoslab
    df = chaoslab.simulate("nodeport-lb", "node-crash", profile="k8s-1.10", trials=1000)
    run = chaoslab.run_experiment("experiments/seed-designs.yaml", "results", workers=2)
    run = chaoslab.load_run("results/seed-designs/20261126T...")

Errors a user can cause are `chaoslab.errors.UserError` (bad input) or `LiveError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pandas as pd

from chaoslab.designs import DESIGNS
from chaoslab.errors import ChaoslabError, LiveError, UserError
from chaoslab.faults import FAULTS, Fault
from chaoslab.mechanisms.cluster import ClusterSpec
from chaoslab.params import CATALOGUE, PROFILES, ParamSet
from chaoslab.results import Run, load_run
from chaoslab.runner import Cell, run_cells

if TYPE_CHECKING:
    from chaoslab.run import resume_run, run_experiment

try:
    __version__ = metadata.version("chaoslab")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CATALOGUE",
    "DESIGNS",
    "FAULTS",
    "PROFILES",
    "ChaoslabError",
    "ClusterSpec",
    "Fault",
    "LiveError",
    "ParamSet",
    "Run",
    "UnknownName",
    "UserError",
    "__version__",
    "load_run",
    "resume_run",
    "run_experiment",
    "simulate",
]


class UnknownName(UserError, KeyError):
    """A design or fault kind that does not exist (still a KeyError, as lookups raise)."""


def __getattr__(name: str) -> Any:
    # run_experiment reads experiment files (YAML): imported on first use, so that
    # `import chaoslab` and the core stay free of YAML
    if name in ("run_experiment", "resume_run"):
        from chaoslab import run

        return getattr(run, name)
    raise AttributeError(f"module 'chaoslab' has no attribute {name!r}")


def _fault(fault: str | Mapping[str, Any] | Fault) -> Fault:
    if isinstance(fault, Fault):
        return fault
    if isinstance(fault, str):
        return Fault(fault)
    f = dict(fault)
    kind = f.pop("kind")
    target = f.pop("target", "")
    if isinstance(target, list):
        target = tuple(target)
    return Fault(kind, target, f)


def simulate(
    design: str,
    fault: str | Mapping[str, Any] | Fault,
    *,
    profile: str | Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    cluster: ClusterSpec | Mapping[str, Any] | None = None,
    trials: int = 1000,
    seed: int = 0,
    workers: int = 1,
    horizon: float = 1800.0,
) -> pd.DataFrame:
    """Monte Carlo trials of one design under one fault; same columns as trials.parquet.

    ``fault`` is a kind (``"node-crash"``, default target) or a mapping like
    ``{"kind": "node-crash", "target": "app-pod-node", "repair": "10m"}``.
    """
    if design not in DESIGNS:
        raise UnknownName(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    f = _fault(fault)
    if f.kind not in FAULTS:
        raise UnknownName(f"unknown fault {f.kind!r}; known: {', '.join(FAULTS)}")
    chosen = [profile] if isinstance(profile, str) else list(profile or [])
    ps = ParamSet.resolve(
        DESIGNS[design].profiles(chosen), params or {}, override_source="simulate(params=...)"
    )
    if cluster is None:
        spec = ClusterSpec()
    elif isinstance(cluster, ClusterSpec):
        spec = cluster
    else:
        spec = ClusterSpec(**dict(cluster))
    cell = Cell(design, f, ps, spec, {}, horizon)
    cell.check()
    frames = [df for _, df in run_cells([cell], trials=trials, seed=seed, workers=workers)]
    return pd.concat(frames, ignore_index=True)
