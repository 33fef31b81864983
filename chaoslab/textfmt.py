"""Numbers as table cells, shared by the terminal tables and the report; pure Python, so
``chaoslab show`` prints a summary without importing pandas or NumPy."""

from __future__ import annotations

import math

__all__ = ["format_value"]


def format_value(v: object, missing: str = "-") -> str:
    """A table cell: 3 significant digits, ``never`` for inf (not recovered), ``-`` for NaN."""
    if isinstance(v, float):
        if math.isnan(v):
            return missing
        if math.isinf(v):
            return "never"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)
