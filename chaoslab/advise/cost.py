"""The annual arithmetic: trials of each cell x how often its event happens per year.

For a design at one timer setting, each *component* is a real fault or a kind of noise
with a rate λ (events per cluster-year). Its cell's trials give the mean cost of one
event. Per year::

    loss        = Σ_real λ·E[lost_s] + Σ_noise λ·E[lost_s]      (real failures + side effects)
    spurious    = Σ_noise λ·P(a detector fired)
    resets      = Σ λ·E[connections_reset]        (1 = every established connection, once)

The trials of different cells are independent, so the variance of the estimate is
Σ λ²·Var/n and the interval is normal (the central limit theorem over n ≥ 50 trials per
cell; a cell whose trials all agree contributes no width). Unavailability is
loss / one year, and nines are -log10 of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chaoslab.mechanisms.base import milestone_column

__all__ = [
    "DETECTORS",
    "YEAR_S",
    "Annual",
    "CellStats",
    "annual",
    "cell_stats",
    "nines",
]

YEAR_S = 365.25 * 86400.0
#: the normal quantile of a two-sided 95 % interval
Z95 = 1.959964

#: milestones that mean "a detector decided something failed" -> how the output names it
DETECTORS: dict[str, str] = {
    "node.not_ready": "NotReady",
    "node.tainted": "taint",
    "pod.evicted": "eviction",
    "endpoints.removed": "endpoints removed",
    "lb.marked_down": "LB mark-down",
    "vrrp.master_changed": "VRRP takeover",
    "bfd.down": "BFD down",
    "bgp.session_down": "BGP down",
    "bgp.withdrawn": "BGP withdraw",
    "ecmp.rehashed": "ECMP re-hash",
    "memberlist.dead": "memberlist dead",
    "kube_vip.leader_changed": "lease lost",
    "metallb.leader_changed": "MetalLB leader change",
    "ingress.upstream_removed": "ingress upstream removed",
}


@dataclass(frozen=True)
class CellStats:
    """What one cell's trials say about one event of its kind."""

    n: int
    lost: float  # mean of the objective column (lost_s or downtime_s)
    lost_var: float
    resets: float
    fired: float  # share of trials in which any detector fired
    detectors: Mapping[str, float] = field(default_factory=dict)  # label -> share


def cell_stats(trials: pd.DataFrame, objective: str = "lost_s") -> CellStats:
    n = len(trials)
    x = np.asarray(trials[objective], dtype=float)
    x = np.where(np.isfinite(x), x, np.nan)
    fired = np.zeros(n, dtype=bool)
    det: dict[str, float] = {}
    for name, label in DETECTORS.items():
        col = milestone_column(name)
        if col in trials:
            hit = np.isfinite(np.asarray(trials[col], dtype=float))
            if hit.any():
                det[label] = float(hit.mean())
                fired |= hit
    resets = np.asarray(trials["connections_reset"], dtype=float)
    return CellStats(
        n=n,
        lost=float(np.nanmean(x)) if n else math.nan,
        lost_var=float(np.nanvar(x, ddof=1)) if n > 1 else 0.0,
        resets=float(np.nanmean(resets)) if np.isfinite(resets).any() else 0.0,
        fired=float(fired.mean()) if n else math.nan,
        detectors=det,
    )


@dataclass(frozen=True)
class Annual:
    """One design at one timer setting, per cluster-year (seconds and counts)."""

    real_s: float
    side_s: float
    half_s: float  # half-width of the 95 % interval of real_s + side_s
    spurious: float
    spurious_half: float
    resets: float
    #: noise name -> (spurious detections per year, side-effect seconds per year)
    by_noise: Mapping[str, tuple[float, float]]
    #: detector label -> spurious firings per year
    by_detector: Mapping[str, float]
    #: real fault name -> seconds per year
    by_fault: Mapping[str, float]
    trials: int  # fewest trials of any of its cells

    @property
    def total_s(self) -> float:
        return self.real_s + self.side_s

    @property
    def minutes(self) -> float:
        return self.total_s / 60.0

    @property
    def ci_minutes(self) -> tuple[float, float]:
        return (max(0.0, self.total_s - self.half_s) / 60.0, (self.total_s + self.half_s) / 60.0)

    @property
    def nines(self) -> float:
        return nines(self.total_s)


def nines(lost_s_per_year: float) -> float:
    """Availability as nines: 3.0 for 99.9 % (inf when nothing is lost)."""
    u = lost_s_per_year / YEAR_S
    return math.inf if u <= 0 else -math.log10(u)


def annual(components: Sequence[tuple[str, bool, float]], stats: Sequence[CellStats]) -> Annual:
    """``components``: (name, real?, events per cluster-year) beside each cell's stats."""
    real = side = var = spur = spur_var = resets = 0.0
    by_noise: dict[str, tuple[float, float]] = {}
    by_det: dict[str, float] = {}
    by_fault: dict[str, float] = {}
    for (name, is_real, rate), st in zip(components, stats, strict=True):
        if rate == 0:
            continue
        cost = rate * st.lost
        var += rate**2 * st.lost_var / max(st.n, 1)
        resets += rate * st.resets
        if is_real:
            real += cost
            by_fault[name] = cost
            continue
        side += cost
        s = rate * st.fired
        spur += s
        spur_var += rate**2 * st.fired * (1 - st.fired) / max(st.n, 1)
        by_noise[name] = (s, cost)
        for label, share in st.detectors.items():
            by_det[label] = by_det.get(label, 0.0) + rate * share
    return Annual(
        real_s=real,
        side_s=side,
        half_s=Z95 * math.sqrt(var),
        spurious=spur,
        spurious_half=Z95 * math.sqrt(spur_var),
        resets=resets,
        by_noise=by_noise,
        by_detector=by_det,
        by_fault=by_fault,
        trials=min((st.n for st in stats), default=0),
    )
