"""`run_chunk` runs the garbage collector itself between trials, and gives it back as found."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from chaoslab.experiment import load_experiment
from chaoslab.runner import Chunk, run_chunk

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("enabled", [True, False])
def test_run_chunk_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    cell = load_experiment(ROOT / "experiments/seed-designs.yaml").cells()[0]
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        seen: list[bool] = []
        gc.callbacks.append(lambda phase, info: seen.append(gc.isenabled()))
        run_chunk(Chunk(cell, 7, 0, 3))
        assert gc.isenabled() is enabled
        assert seen, "the young generation is collected between trials"
    finally:
        gc.callbacks.pop()
        if was:
            gc.enable()
