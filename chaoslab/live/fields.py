"""File-shape pieces shared by the ``lab:`` and ``live:`` sections (pydantic, edge only)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from chaoslab.params.dists import ParseError, parse_duration

__all__ = ["Duration", "StrictModel"]


def _duration(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a duration like 500ms or 2s, got {raw!r}")
    if isinstance(raw, float) and math.isinf(raw):
        return raw
    try:
        return parse_duration(raw)  # type: ignore[arg-type]
    except ParseError as exc:
        raise ValueError(str(exc)) from None


#: seconds, written in the file with a unit (``500ms``, ``2s``; ``never`` or ``inf``)
Duration = Annotated[float, BeforeValidator(_duration)]


class StrictModel(BaseModel):
    """Unknown keys are errors; parsed sections are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
