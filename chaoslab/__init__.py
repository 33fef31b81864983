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

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from chaoslab.errors import ChaoslabError, LiveError, UserError


def _exit_on_early_interrupt() -> None:
    """As the ``chaoslab`` program, a Ctrl-C while Python still imports the command line
    exits 130 without a traceback; ``chaoslab.cli.main`` puts Python's own handler back
    once a run can be closed properly. Imported as a library, nothing changes."""
    if os.path.basename(getattr(sys, "argv", [""])[0] or "") != "chaoslab":
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(130)

    signal.signal(signal.SIGINT, leave)


_exit_on_early_interrupt()

if TYPE_CHECKING:
    import pandas as pd

    from chaoslab.designs import DESIGNS
    from chaoslab.faults import FAULTS, Fault
    from chaoslab.mechanisms.cluster import ClusterSpec
    from chaoslab.params import CATALOGUE, PROFILES, ParamSet
    from chaoslab.results import Run, load_run
    from chaoslab.run import resume_run, run_experiment

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


# where each public name lives: imported on first use, so that `import chaoslab` (and
# `chaoslab --help`, which imports it as the package of chaoslab.cli) loads no NumPy,
# pandas or SimPy, and the core stays free of YAML (run_experiment reads experiment files)
_LAZY = {
    "CATALOGUE": "chaoslab.params",
    "PROFILES": "chaoslab.params",
    "ParamSet": "chaoslab.params",
    "DESIGNS": "chaoslab.designs",
    "FAULTS": "chaoslab.faults",
    "Fault": "chaoslab.faults",
    "ClusterSpec": "chaoslab.mechanisms.cluster",
    "Run": "chaoslab.results",
    "load_run": "chaoslab.results",
    "run_experiment": "chaoslab.run",
    "resume_run": "chaoslab.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later look-ups are plain attribute reads
        return value
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'chaoslab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "__version__"])


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("chaoslab")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def _fault(fault: str | Mapping[str, Any] | Fault) -> Fault:
    from chaoslab.faults import Fault

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
    import pandas as pd

    from chaoslab.designs import DESIGNS
    from chaoslab.faults import FAULTS
    from chaoslab.mechanisms.cluster import ClusterSpec
    from chaoslab.params import ParamSet
    from chaoslab.runner import Cell, run_cells

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
