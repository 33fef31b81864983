"""The numbers behind the figures and reports, without drawing: bottlenecks, sensitivity,
phase medians and the other tables a notebook wants. Imports no matplotlib."""

from __future__ import annotations

from chaoslab.errors import UserError

__all__ = ["NothingToShow"]


class NothingToShow(UserError):
    """A run lacks the data a figure or table needs (no trials, no sweep, no a(t))."""
