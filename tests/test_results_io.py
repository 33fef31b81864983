"""Run folders on disk: the trials reader is pandas' own, the streaming writer is atomic."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaoslab.results import RunWriter, atomic_write_chunks, load_run, read_parquet


def _trials(n: int = 40) -> pd.DataFrame:
    """A trials table with every kind of column a run stores: text keys, ints, bools,
    floats with NaN and inf, a(t) lists."""
    rng = np.random.default_rng(3)
    rec = rng.exponential(5.0, n)
    rec[::7] = math.inf
    at = rng.exponential(2.0, n)
    at[::3] = math.nan
    return pd.DataFrame(
        {
            "design": ["nodeport-lb"] * (n // 2) + ["clusterip"] * (n - n // 2),
            "fault": "node-crash",
            "target": "app-pod-node",
            "profile": ["k8s-1.32", "k8s,1.10"] * (n // 2),
            "trial": np.arange(n, dtype=np.int64),
            "recovery_s": rec,
            "recovered": np.isfinite(rec),
            "downtime_s": np.where(np.isfinite(rec), rec, 600.0),
            "degraded_s": 0.0,
            "lost_s": rec / 2,
            "at_proxy_synced": at,
            "a_t": [[0.0, float(x)] for x in at],
            "a_v": [[1.0, 0.5]] * n,
        }
    )


def test_read_parquet_gives_the_frame_pandas_gives(tmp_path: Path) -> None:
    df = _trials()
    df.attrs = {"seed": 7}
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_parquet(path), pd.read_parquet(path), check_exact=True)
    assert read_parquet(path).attrs == pd.read_parquet(path).attrs == {"seed": 7}
    drop = ["a_t", "a_v", "recovered", "not_a_column"]
    kept = [c for c in df.columns if c not in drop]
    pd.testing.assert_frame_equal(
        read_parquet(path, exclude=drop), pd.read_parquet(path, columns=kept), check_exact=True
    )


def test_trials_without_is_the_same_from_disk_and_from_memory(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run", meta={"horizon_s": 600.0})
    w.add_trials(_trials().iloc[:20])
    w.add_trials(_trials().iloc[20:])
    w.finish()
    drop = ("a_t", "a_v", "recovered")
    cold = load_run(tmp_path / "run").trials_without(drop)
    warm = load_run(tmp_path / "run")
    whole = warm.trials  # now held by the run: dropped from it, not read again
    hot = warm.trials_without(drop)
    pd.testing.assert_frame_equal(cold, hot, check_exact=True)
    pd.testing.assert_frame_equal(cold, whole.drop(columns=list(drop)), check_exact=True)
    assert "a_t" in warm.trials.columns  # the run's own trials are untouched


def test_an_interrupted_runs_chunks_are_read_the_same_way(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run")
    w.add_trials(_trials().iloc[:20])
    w.add_trials(_trials().iloc[20:])
    w.finish_partial()
    run = load_run(tmp_path / "run")
    parts = sorted((tmp_path / "run" / "trials.parts").glob("part-*.parquet"))
    want = pd.concat([pd.read_parquet(f) for f in parts], ignore_index=True)
    assert len(parts) == 2 and len(run.trials) == 40
    pd.testing.assert_frame_equal(run.trials, want, check_exact=True)
    assert "a_t" not in run.trials_without(["a_t", "a_v"]).columns


def test_atomic_write_chunks_writes_the_chunks_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ranks.csv"
    atomic_write_chunks(path, iter([b"a,b\n", b"", b"1,2\n", b"3,4\n"]))
    assert path.read_bytes() == b"a,b\n1,2\n3,4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ranks.csv"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_while_chunks_are_made_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    path = tmp_path / "ranks.csv"
    path.write_bytes(b"the previous compare\n")

    def chunks() -> Iterator[bytes]:
        yield b"header\n"
        yield b"half of the rows\n"
        raise error("stopped")

    with pytest.raises(error):
        atomic_write_chunks(path, chunks())
    assert path.read_bytes() == b"the previous compare\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ranks.csv"]


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from chaoslab.results import atomic_write_chunks
out, ready = Path(sys.argv[1]), Path(sys.argv[2])
def chunks():
    yield b"header\\n"
    yield b"x" * 1_000_000
    ready.write_text("one chunk written")
    while True:  # the rest never comes: the process is killed here
        time.sleep(0.05)
        yield b""
atomic_write_chunks(out, chunks())
"""


def test_a_writer_killed_between_chunks_leaves_nothing_under_the_final_name(
    tmp_path: Path,
) -> None:
    """SIGKILL runs no cleanup: the temporary file stays (hidden, beside it), the final
    name never holds half a file."""
    out, ready = tmp_path / "ranks.csv", tmp_path / "ready"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(out), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer never wrote its first chunk"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".ranks.csv.")]
    assert len(temps) == 1 and temps[0].stat().st_size >= 1_000_000
