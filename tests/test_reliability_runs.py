"""Run folders under concurrency and crashes: one writer per folder, nothing merged that
changed under it, unique run ids, no leftovers a resume trips on (issue 14, items 1, 16)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import chaoslab
from chaoslab.errors import UserError
from chaoslab.results import LOCK_NAME, RunBusy, RunWriteError, RunWriter, load_run, new_run_dir
from chaoslab.run import RunInterrupted

EXPERIMENT = """\
title: Two cells
profile: k8s-1.32
designs: [nodeport-lb]
faults:
  - {kind: pod-kill, target: app-pod}
  - {kind: node-crash, target: app-pod-node}
trials: 1100
seed: 5
"""


def _trials(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "design": "d",
            "fault": "f",
            "target": "t",
            "trial": range(start, start + n),
            "recovery_s": 1.0,
            "recovered": True,
            "downtime_s": 0.0,
            "degraded_s": 0.0,
            "lost_s": 0.5,
        }
    )


def test_a_second_writer_of_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    first = RunWriter(tmp_path / "run")
    with pytest.raises(RunBusy, match="another chaoslab process is writing"):
        RunWriter(tmp_path / "run")
    first.finish_partial()  # releases the lock: a resume may now take the folder
    RunWriter(tmp_path / "run").release()


def test_the_lock_is_held_by_the_process_and_goes_with_it(tmp_path: Path) -> None:
    """A writer in a child that dies (os._exit, no cleanup) leaves the folder free."""
    pid = os.fork()
    if pid == 0:
        RunWriter(tmp_path / "run")
        os._exit(0)
    os.waitpid(pid, 0)
    assert (tmp_path / "run" / LOCK_NAME).exists()
    RunWriter(tmp_path / "run").release()


def test_a_run_whose_chunks_changed_under_it_fails_and_stays_partial(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run")
    w.add_trials(_trials(5), 0)
    # another writer (one that did not take the lock) drops its chunk in the folder
    (tmp_path / "run" / "trials.parts" / "part-000007.parquet").write_bytes(b"x")
    with pytest.raises(RunBusy, match="chunks changed under this run: 1 chunk"):
        w.finish()
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["status"] == "partial"
    assert not (tmp_path / "run" / "trials.parquet").exists()


def test_a_run_whose_chunk_was_deleted_under_it_fails(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run")
    w.add_trials(_trials(5), 0)
    w.add_trials(_trials(5, 5), 1)
    (tmp_path / "run" / "trials.parts" / "part-000000.parquet").unlink()
    with pytest.raises(RunBusy, match="1 of its chunks gone"):
        w.finish()


def test_run_ids_drawn_in_one_second_differ() -> None:
    dirs = {new_run_dir("out", "exp", "live") for _ in range(2000)}
    assert len(dirs) == 2000


class _OneSecond:
    """The clock of chaoslab.run stopped in one second (both runs start in it)."""

    UTC = dt.UTC

    class datetime(dt.datetime):  # stands in for the module's class
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> _OneSecond.datetime:
            return cls(2025, 1, 2, 3, 4, 5, tzinfo=tz)


def test_two_runs_into_one_out_in_the_same_second_keep_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chaoslab.run.dt", _OneSecond)
    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT.replace("1100", "40"))
    a = chaoslab.run_experiment(exp, tmp_path / "out")
    b = chaoslab.run_experiment(exp, tmp_path / "out")
    assert a.path.name.startswith("20250102T030405Z") and a.path != b.path
    assert len(load_run(a.path).trials) == len(load_run(b.path).trials) == 80
    pd.testing.assert_frame_equal(load_run(a.path).trials, load_run(b.path).trials)


def test_a_resume_removes_the_temporary_files_a_killed_merge_left(tmp_path: Path) -> None:
    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT)
    seen: list[int] = []

    def stop(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as cut:
        chaoslab.run_experiment(exp, tmp_path / "out", progress=stop)
    run_dir = cut.value.run_dir
    stale = [run_dir / ".trials.parquet.k1ll3d", run_dir / "trials.parts" / ".part-000009.x"]
    for f in stale:
        f.write_bytes(b"half a file")
    resumed = chaoslab.resume_run(run_dir)
    assert resumed.complete and not any(f.exists() for f in stale)
    assert not (run_dir / "trials.parts").exists()


@pytest.mark.parametrize("meta", ["{not json", "[1, 2]", '{"status": "partial"}', "\udcff"])
def test_resume_of_a_garbled_meta_is_one_user_error(tmp_path: Path, meta: str) -> None:
    (tmp_path / "meta.json").write_text(meta, errors="surrogateescape")
    with pytest.raises(UserError, match="meta.json"):
        chaoslab.resume_run(tmp_path)


# --------------------------------------------------------------------------- full disks


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of the test's own, unmounted again whatever happens."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_a_resumable_run(
    tmp_path: Path, small_disk: Path
) -> None:
    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT)
    with pytest.raises(RunWriteError) as full:
        chaoslab.run_experiment(exp, small_disk)  # six chunks of ~100 kB do not fit
    message = str(full.value)
    assert "No space left on device" in message and "--resume" in message
    assert "\n" not in message and ".part-" not in message  # no temporary file names
    (run_dir,) = (small_disk / "two").iterdir()
    assert load_run(run_dir).meta["status"] == "partial"
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    resumed = chaoslab.resume_run(run_dir)
    want = chaoslab.run_experiment(exp, tmp_path / "reference")
    assert resumed.complete
    pd.testing.assert_frame_equal(load_run(run_dir).trials, load_run(want.path).trials)


_LIMITED = """
import resource, sys
from chaoslab.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # a chunk fits, the merge not
sys.exit(main(sys.argv[1:]))
"""


def test_a_file_size_limit_in_the_merge_is_one_line_and_resumable(tmp_path: Path) -> None:
    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT)
    cmd = [sys.executable, "-c", _LIMITED, "run", str(exp), "--out", str(tmp_path), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "File too large" in done.stderr and "--resume" in done.stderr
    (run_dir,) = (tmp_path / "two").iterdir()
    assert load_run(run_dir).meta["status"] == "partial"
    assert not list(run_dir.glob(".trials.parquet.*"))  # the half-merged file is gone
    assert chaoslab.resume_run(run_dir).complete


def test_a_pool_worker_killed_from_outside_fails_the_run_in_one_line_resumable(
    tmp_path: Path,
) -> None:
    from chaoslab.runner import ExecutorError

    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT)

    def children() -> set[int]:
        out = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(os.getpid()):
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat[stat.rindex(")") + 2 :].split()[1]) == os.getpid():
                        out.add(int(entry.name))
        return out

    # children the session had before the run (a cluster reaper, a gateway) are not the pool's
    before = children()

    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        # the pool's workers are this process's new children (the OOM killer's way to strike);
        # one kill: a later progress call could list the killed one just before the pool
        # reaps it (CI: ProcessLookupError)
        for pid in sorted(children() - before):
            if killed:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(ExecutorError, match="a worker process died") as died:
        chaoslab.run_experiment(exp, tmp_path / "out", workers=2, progress=kill_a_worker)
    assert "--resume" in str(died.value) and "\n" not in str(died.value)
    (run_dir,) = (tmp_path / "out" / "two").iterdir()
    assert load_run(run_dir).meta["status"] == "partial"
    assert chaoslab.resume_run(run_dir).complete


def test_out_on_a_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    exp = tmp_path / "two.yaml"
    exp.write_text(EXPERIMENT)
    for out in (exp, exp / "below"):
        with pytest.raises(UserError, match=f"--out {out}: {exp} is a file, not a folder"):
            chaoslab.run_experiment(exp, out)


def test_a_folder_staged_by_a_killed_run_is_removed_by_the_next_one(tmp_path: Path) -> None:
    parent = tmp_path / "out" / "exp"
    stale = RunWriter(parent / ".20250102T030405Z-abc-0123456789ab.00112233aabb")
    stale.release()  # its process died before the rename
    staging = RunWriter(parent / ".20250102T030406Z-def-0123456789ab.44556677ccdd")  # alive
    fresh = RunWriter.create(parent / "20250102T030407Z-ghi-0123456789ab", {"a.txt": "a"})
    assert not stale.path.exists() and staging.path.exists()
    assert (fresh.path / "a.txt").read_text() == "a" and (fresh.path / "meta.json").exists()
    assert sorted(p.name for p in parent.iterdir()) == [staging.path.name, fresh.path.name]
    fresh.release()
    staging.release()
