"""Waiting on a real component in a test: poll until it says yes, else fail in one line."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 90.0, every: float = 0.2) -> T:
    """``check()`` every ``every`` s until it returns something truthy (returned), or fail
    the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    pytest.fail(f"{what}: not seen within {timeout:g} s", pytrace=False)
