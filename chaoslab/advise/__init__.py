"""``chaoslab advise``: which design and which timers, priced against their side effects.

>>> result = chaoslab.advise.advise("experiments/advise-seed.yaml", "results", workers=2)
>>> d = result.advice[0]
>>> d.best.point.text, d.best.annual.minutes, d.best.annual.ci_minutes, d.priced_out

The pieces: `spec` (the ``advise:`` section of an experiment file), `plan` (points: a design
at one timer setting, a cell per real fault and per kind of noise, with rates),
`cost` (the annual arithmetic), `search` (successive halving, cached cells), `advice`
(recommendation, frontier, advice.csv), `plots` (the frontier figure, matplotlib) and
`run` (all of it into a run folder). Defaults for rates, noise and the search are in the
parameter catalogue (`chaoslab.params.rates`).

`chaoslab.experiment` embeds `spec.AdviseSpec`, so this package's ``__init__`` imports
nothing else eagerly (the run module needs the experiment module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaoslab.advise.run import AdviseResult, advise, check, noise_scaled

__all__ = ["AdviseResult", "advise", "check", "noise_scaled"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from chaoslab.advise import run

        return getattr(run, name)
    raise AttributeError(f"module 'chaoslab.advise' has no attribute {name!r}")
