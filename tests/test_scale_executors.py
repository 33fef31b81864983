"""Scale-out: the same seed gives the same trials.parquet on any worker count and executor,
and a run killed half-way keeps its finished chunks and resumes to the same result.

The Dask test starts a real ``distributed.LocalCluster`` (2 worker processes) and points
``chaoslab run --executor dask --scheduler ADDRESS`` at it, as a user would point it at a
cluster started by dask-kubernetes or dask-jobqueue.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from chaoslab.cli import main
from chaoslab.results import load_run
from chaoslab.runner import DEFAULT_CHUNK, ExecutorError, run_cells

EXPERIMENT = """\
title: scale
profile: [k8s-1.32, haproxy]
designs: [nodeport-lb, nodeport-lb-local, clusterip]
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
trials: TRIALS
seed: 11
horizon: 30m
"""


def _experiment(tmp_path: Path, trials: int) -> Path:
    p = tmp_path / "scale.yaml"
    p.write_text(EXPERIMENT.replace("TRIALS", str(trials)))
    return p


def _run(args: list[str], out: Path) -> Path:
    code = main(["run", *args, "--out", str(out), "-q"])
    assert code == 0
    (run_dir,) = (out / "scale").iterdir()
    return run_dir


def _same_table(a: Path, b: Path) -> None:
    ta = pq.read_table(a / "trials.parquet")
    tb = pq.read_table(b / "trials.parquet")
    assert ta.schema.equals(tb.schema)
    assert ta.equals(tb), "trials.parquet differs"


@pytest.mark.slow
def test_same_trials_parquet_for_workers_1_2_and_dask(tmp_path: Path) -> None:
    import distributed

    exp = _experiment(tmp_path, 2 * DEFAULT_CHUNK + 100)  # 3 chunks per cell, one short
    one = _run([str(exp), "--workers", "1"], tmp_path / "w1")
    two = _run([str(exp), "--workers", "2"], tmp_path / "w2")
    _same_table(one, two)

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dask = _run(
            [str(exp), "--executor", "dask", "--scheduler", cluster.scheduler_address],
            tmp_path / "dask",
        )
        with distributed.Client(cluster) as client:
            # the chunks really ran on the cluster's worker processes
            assert len(client.scheduler_info()["workers"]) == 2
    _same_table(one, dask)
    meta = json.loads((dask / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["executor"].startswith("dask (tcp://")

    trials = load_run(one).trials
    assert len(trials) == 6 * (2 * DEFAULT_CHUNK + 100)
    # a different seed is a different sample (the equality above is not vacuous)
    other = _run([str(exp), "--workers", "1", "--seed", "12"], tmp_path / "s12")
    assert not load_run(other).trials["recovery_s"].equals(trials["recovery_s"])


@pytest.mark.slow
def test_dask_local_cluster_from_run_cells_matches_in_process(tmp_path: Path) -> None:
    from chaoslab.experiment import load_experiment

    cells = load_experiment(_experiment(tmp_path, 300)).cells()[:3]
    kw = {"trials": 300, "seed": 5, "chunk_size": 120}
    local = [(c.index, df) for c, df in run_cells(cells, **kw)]
    dask = [(c.index, df) for c, df in run_cells(cells, executor="dask", workers=2, **kw)]
    assert [i for i, _ in dask] == [i for i, _ in local] == list(range(9))
    for (_, a), (_, b) in zip(local, dask, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_unreachable_scheduler_and_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = _experiment(tmp_path, 10)
    code = main(["run", str(exp), "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--scheduler needs --executor dask" in err
    code = main(["run", str(exp), "--executor", "spark", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--executor spark" in err and "Traceback" not in err
    with pytest.raises(ExecutorError, match="unknown executor"):
        next(run_cells([], trials=1, seed=0, executor="spark"))


@pytest.mark.slow
def test_sigterm_with_a_process_pool_keeps_finished_chunks_and_resumes(tmp_path: Path) -> None:
    trials = 6 * DEFAULT_CHUNK
    exp = _experiment(tmp_path, trials)  # 6 cells x 6 chunks
    out = tmp_path / "cut"
    cmd = [sys.executable, "-m", "chaoslab", "run", str(exp), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 120
        parts: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            parts = list(out.glob("scale/*/trials.parts/part-*.parquet"))
            if parts:
                break
            time.sleep(0.02)
        assert parts, "no chunk finished"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    (run_dir,) = (out / "scale").iterdir()
    partial = load_run(run_dir)
    assert partial.meta["status"] == "partial"
    assert 0 < len(partial.trials) < 6 * trials
    assert len(partial.trials) % DEFAULT_CHUNK == 0  # whole chunks only

    code = main(["run", str(exp), "--resume", str(run_dir), "--workers", "2", "-q"])
    assert code == 0
    resumed = load_run(run_dir)
    assert resumed.complete and resumed.meta["resumed"] == 1
    full = _run([str(exp), "--workers", "1"], tmp_path / "full")
    _same_table(run_dir, full)


def _name_error_record(filename: str, function: str) -> logging.LogRecord:
    """The record tornado logs for a callback that raised NameError in ``function`` of
    ``filename`` (compiled under that name, so the traceback says so)."""
    scope: dict[str, object] = {}
    exec(compile(f"def {function}():\n    return future\n", filename, "exec"), scope)
    try:
        scope[function]()  # type: ignore[operator]
    except NameError:
        info = sys.exc_info()
    return logging.LogRecord("tornado.application", logging.ERROR, filename, 1,
                             "Exception in callback", None, info)  # fmt: skip


def test_only_distributeds_sync_cancel_name_error_is_kept_off_stderr() -> None:
    """A Ctrl-C before distributed.utils.sync's coroutine set its future makes its cancel
    callback raise NameError, logged with a traceback although the run stops cleanly:
    that record is dropped during a Dask run, any other error is not."""
    from chaoslab.run import _SyncCancelNameError

    keep = _SyncCancelNameError().filter
    site = str(Path("site-packages") / "distributed" / "utils.py")
    assert not keep(_name_error_record(site, "cancel"))
    assert keep(_name_error_record(site, "other"))  # another callback's bug is shown
    assert keep(_name_error_record("chaoslab_utils.py", "cancel"))
    assert keep(logging.LogRecord("tornado.application", logging.ERROR, "x", 1, "m", None, None))


def test_a_ctrl_c_that_lands_in_a_finalizer_is_delivered_again_outside_it() -> None:
    """A Dask run hung after Ctrl-C: the KeyboardInterrupt was raised inside a Future's
    ``__del__`` (Python drops it there) while the run waited for a result the killed
    workers never sent. During a Dask run such a signal comes again just after."""
    from chaoslab.run import _dask_interrupts

    class Releases:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))  # where Python runs the handler: still in __del__

    with pytest.raises(KeyboardInterrupt), _dask_interrupts(True):
        Releases()  # collected at once: the Ctrl-C lands in its finalizer
        time.sleep(30)  # a wait the Ctrl-C must end (without the fix it runs out)
