"""Chaos Toolkit probes: use chaoslab's model as the tolerance of a Chaos Toolkit experiment.

In a Chaos Toolkit experiment (``chaos run exp.json``, chaostoolkit-lib)::

    {"type": "probe", "name": "measured-p95-recovery",
     "provider": {"type": "python", "module": "chaoslab.ctk", "func": "measured",
                  "arguments": {"run_dir": "results/drill/2026...", "metric": "recovery_s"}},
     "tolerance": {"type": "probe", "name": "within-the-model",
                   "provider": {"type": "python", "module": "chaoslab.ctk",
                                "func": "within_prediction",
                                "arguments": {"design": "nodeport-lb", "fault": "node-crash",
                                              "profile": "k8s-1.37"}}}}

Chaos Toolkit passes the probe's value to the tolerance probe as ``value``. Arguments are
JSON: durations as strings (``"8s"``), parameters by their catalogue key.
"""

from __future__ import annotations

import functools
import json
import math
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["measured", "predict", "service_answers", "within_prediction"]


def predict(
    design: str,
    fault: str | Mapping[str, Any],
    *,
    metric: str = "recovery_s",
    quantile: float = 0.95,
    profile: str | None = None,
    params: Mapping[str, Any] | None = None,
    trials: int = 500,
    seed: int = 0,
) -> float:
    """The model's ``quantile`` of ``metric`` (seconds) for one design under one fault."""
    cell = json.dumps([fault, dict(params or {})], sort_keys=True, default=str)
    return _predict(design, cell, metric, float(quantile), profile, int(trials), seed)


@functools.lru_cache(maxsize=64)  # a CTK run asks the same cell before and after the method
def _predict(
    design: str, cell: str, metric: str, quantile: float, profile: str | None, trials: int,
    seed: int,
) -> float:  # fmt: skip
    import chaoslab

    fault, params = json.loads(cell)
    df = chaoslab.simulate(design, fault, profile=profile, params=params, trials=trials, seed=seed)
    return _quantile(df, metric, quantile)


def within_prediction(
    value: float | None = None,
    *,
    design: str,
    fault: str | Mapping[str, Any],
    metric: str = "recovery_s",
    quantile: float = 0.95,
    profile: str | None = None,
    params: Mapping[str, Any] | None = None,
    trials: int = 500,
    seed: int = 0,
) -> bool:
    """Tolerance probe: True when the measured ``value`` is at most the model's ``quantile``
    for the cell (a measured recovery slower than the model's p95 deviates). Chaos Toolkit
    passes ``value`` when it runs the tolerance; its validator checks the arguments without
    it, hence the default."""
    if value is None:
        return False
    limit = predict(
        design, fault, metric=metric, quantile=quantile, profile=profile, params=params,
        trials=trials, seed=seed,
    )  # fmt: skip
    return math.isfinite(float(value)) and float(value) <= limit


def measured(
    run_dir: str,
    *,
    metric: str = "recovery_s",
    quantile: float = 0.95,
    design: str | None = None,
    fault: str | None = None,
) -> float:
    """The ``quantile`` of ``metric`` over a run folder's trials (a drill's measurements or
    a model run), optionally of one design and fault; aborted drill trials are left out."""
    from chaoslab.results import load_run

    df = load_run(Path(run_dir)).trials
    if design is not None:
        df = df[df["design"] == design]
    if fault is not None:
        df = df[df["fault"] == fault]
    if "aborted" in df.columns:
        df = df[~df["aborted"].fillna(False).astype(bool)]
    return _quantile(df, metric, quantile)


def service_answers(urls: list[str], timeout: float = 2.0) -> bool:
    """Steady-state probe: every URL answers with a 2xx or 3xx status within ``timeout``."""
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status >= 400:
                    return False
        except OSError:
            return False
    return True


def _quantile(df: Any, metric: str, quantile: float) -> float:
    from chaoslab.errors import UserError

    if metric not in df.columns:
        raise UserError(f"metric {metric!r}: not a trial column")
    values = df[metric].dropna()
    if values.empty:
        raise UserError(f"metric {metric!r}: no trial has a value")
    return float(values.quantile(quantile))
