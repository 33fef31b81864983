"""Run folders: one versioned format for simulated and live runs.

A run folder holds

- ``meta.json``     format version, versions of chaoslab and its dependencies, mode
                    (``simulate`` | ``live``), target (``model`` | ``lab`` | ``kubernetes``),
                    seed, profiles, status (``partial`` until the run finished, then
                    ``complete``), timing;
- ``experiment.yaml`` the experiment with every parameter's effective value and source
                    (written by the experiment layer: the core knows no YAML);
- ``trials.parquet`` one row per trial (see `TRIAL_COLUMNS` and the ``at_*`` milestones);
- ``summary.csv``   one row per design x fault x target x sweep point;
- live runs (lab and cluster drills) add the tables declared in `LIVE_TABLES`:
  ``probes.parquet`` (every probe record), ``milestones.parquet`` (every milestone seen,
  with its evidence), ``trial_info.csv`` (per trial: victim, fault instant, probe counts,
  abort reason, then the target's own columns), plus ``comparison.csv``
  (`chaoslab.compare.comparison_table`) and ``journal.jsonl``; their ``meta.json`` has
  ``prober`` (`ProberInfo`: ``rate_hz``, ``probers``, ``bin_s``), so an analysis never
  reads a target's own keys.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
While a run is going, finished chunks of trials are in ``trials.parts/``; an interrupted run
keeps them and ``meta.json`` says ``partial``; `load_run` reads either layout.

Run folders are named by `new_run_dir`: ``<out>/<experiment>/<UTC time>-<mode>-<id>``.

Format history (pyperf-style):
    1  first version (chaoslab 0.1).
    2  live tables declared (`LIVE_TABLES`): one ``trial_info.csv`` for every target (was
       ``lab_trials.parquet`` in the lab), milestones with ``design``/``fault``/``source``/
       ``detail`` columns, probes with ``design``/``fault``/``trial``/``t_rel``; the prober
       in ``meta.json``; a lab trial's fault column is the prediction's name. Version 1
       runs still load.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from chaoslab.errors import ChaoslabError, UserError
from chaoslab.outage import latency_summary

__all__ = [
    "CALIBRATION_MODE",
    "FORMAT_VERSION",
    "KEY_COLUMNS",
    "LIVE_TABLES",
    "METRIC_COLUMNS",
    "MILESTONE_COLUMNS",
    "PROBE_COLUMNS",
    "READABLE_VERSIONS",
    "TRIAL_INFO_COLUMNS",
    "ProberInfo",
    "Run",
    "RunBusy",
    "RunFormatError",
    "RunWriteError",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_chunks",
    "atomic_write_parquet",
    "atomic_write_text",
    "calibration_journal",
    "environment_meta",
    "inferred_sweep_columns",
    "live_table",
    "load_run",
    "new_run_dir",
    "read_parquet",
    "redact_userinfo",
    "summarize",
]

FORMAT_VERSION = 2
#: versions `load_run` reads (2 only adds declared live tables to 1)
READABLE_VERSIONS = (1, 2)
#: meta.json's mode of a calibration's journal folder (chaoslab.live.k8s.calibrate): it
#: lies beside the runs under ``--out`` and holds an undo step, not trials
CALIBRATION_MODE = "calibrate"

#: columns identifying a cell (plus one column per swept parameter, named by its key)
KEY_COLUMNS = ("design", "fault", "target")
#: per-trial metrics, as defined in chaoslab.outage
METRIC_COLUMNS = (
    "recovery_s",
    "recovered",
    "downtime_s",
    "degraded_s",
    "lost_s",
    "connections_reset",
    "connections_hung",
    "slow_s",
    "p99_latency_s",
)
#: optional compact a(t): change-point times and values per trial (list columns)
AVAILABILITY_COLUMNS = ("a_t", "a_v")

#: probes.parquet: the probe records (chaoslab.live.probe.ProbeRecord) of every trial
PROBE_COLUMNS = (
    "design",
    "fault",
    "trial",
    "url",
    "t",
    "t_rel",
    "latency",
    "outcome",
    "status",
    "prober",
    "kind",
    "conn",
    "server",
)
#: milestones.parquet: one row per milestone seen (t: seconds after the fault)
MILESTONE_COLUMNS = ("design", "fault", "trial", "milestone", "t", "t_server", "source", "detail")
#: trial_info.csv: these first, then the target's own (clock offsets, fault call times ...)
TRIAL_INFO_COLUMNS = (
    "design",
    "fault",
    "trial",
    "victim",
    "t0_mono",
    "t0_wall",
    "horizon_s",
    "probes",
    "failed",
    "aborted",
    "abort_reason",
)
LIVE_TABLES = {
    "probes": ("probes.parquet", PROBE_COLUMNS),
    "milestones": ("milestones.parquet", MILESTONE_COLUMNS),
    "trial_info": ("trial_info.csv", TRIAL_INFO_COLUMNS),
}

_DEPS = ("simpy", "numpy", "pandas", "pyarrow", "pydantic")


class RunFormatError(UserError):
    """A folder that is not a readable run, or one of an unsupported format version."""


class RunWriteError(ChaoslabError):
    """The run folder cannot be written (disk full, file size limit, read-only): what
    was finished is kept and the run can be resumed once there is room. Exit status 1."""


class RunBusy(UserError):
    """Another process writes this run folder (it holds the folder's lock), or the chunks
    of trials changed under this writer: nothing is merged, nothing is marked complete."""


#: the lock file every writer holds (`fcntl.flock`) while it writes a run folder
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class ProberInfo:
    """How a live run probed: ``probers`` x ``rate_hz`` new requests/s, a(t) in ``bin_s``
    bins; stored as ``meta.json`` ``prober``."""

    rate_hz: float
    probers: int
    bin_s: float

    def as_meta(self) -> dict[str, float | int]:
        return {"rate_hz": self.rate_hz, "probers": self.probers, "bin_s": self.bin_s}

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> ProberInfo | None:
        """The prober a run's meta records (None: not a live run). Version 1 lab runs kept
        it in their ``lab`` section."""
        p = meta.get("prober")
        try:
            if isinstance(p, Mapping):
                return cls(float(p["rate_hz"]), int(p["probers"]), float(p["bin_s"]))
            lab = meta.get("lab") or {}
            probe, trial = lab.get("probe") or {}, lab.get("trial") or {}
            return cls(float(probe["rate"]), int(probe["probers"]), float(trial["bin"]))
        except (KeyError, TypeError, ValueError):
            return None

    def text(self) -> str:
        return f"{self.probers} x {self.rate_hz:g}/s, {self.bin_s * 1000:g} ms bins"


def new_run_dir(out: str | Path, experiment: str, mode: str) -> Path:
    """A fresh run folder ``<out>/<experiment>/<UTC time>-<mode>-<id>`` (``mode``:
    ``simulate`` | ``live``), sortable by time; the id is random, so two processes
    starting in the same second get different folders."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(out) / experiment / f"{stamp}-{mode}-{unique_id()}"


def unique_id() -> str:
    """A run id suffix no other process draws (48 random bits)."""
    return secrets.token_hex(6)


def live_table(name: str, frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One declared live table (`LIVE_TABLES`) from per-trial frames: its columns first, in
    order (missing ones empty), then any the target adds."""
    declared = list(LIVE_TABLES[name][1])
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=declared)
    for c in declared:
        if c not in df.columns:
            df[c] = None
    return df[declared + [c for c in df.columns if c not in declared]]


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new, empty temporary file ``.name.<random hex>`` beside ``path``, open for writing.

    Created with mode 0666 so that the umask decides the final file's mode, as for any
    file a program writes (``tempfile.mkstemp`` makes it 0600, whatever the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """``path`` holding ``chunks`` one after another, written as they come (a big file
    need never be in memory whole) into a temporary file beside it, synced, then renamed:
    until the rename ``path`` is what it was before, and a failure or an interruption
    while a chunk is made or written removes the temporary file."""
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_chunks(path, (data,))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def model_version() -> dict[str, Any]:
    """The exact model that ran: the package version and, when chaoslab is imported from a
    git checkout, the commit and whether the package's files differed from it."""
    out: dict[str, Any] = {"package": _version("chaoslab") or "unknown"}
    package = Path(__file__).resolve().parent
    root = package.parent
    if not (root / ".git").exists():
        return out  # an installed wheel: the package version is the whole answer
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return out
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", package.name)
    out["git_commit"] = commit
    out["git_dirty"] = bool(status) if status is not None else None
    return out


def environment_meta() -> dict[str, Any]:
    """Versions and platform, recorded in every run (pyperf/chaostoolkit journal style)."""
    return {
        "chaoslab_version": _version("chaoslab") or "unknown",
        "model_version": model_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "dependencies": {d: _version(d) for d in _DEPS},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in meta.json")


_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")


def redact_userinfo(text: str) -> str:
    """A URL's ``user:password@`` replaced by ``***@``, wherever it occurs in ``text``
    (a kubeconfig may carry a password in its server URL)."""
    return _USERINFO.sub("***@", text)


def _dump_json(obj: Mapping[str, Any]) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return redact_userinfo(v)
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)  # JSON has no inf; keep it readable
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(dict(obj)), indent=2, default=_json_default) + "\n"


@dataclass
class RunWriter:
    """Writes one run folder incrementally; everything on disk is always readable.

    >>> w = RunWriter(path, mode="simulate", target="model", meta={...})
    >>> w.add_trials(df)      # as chunks finish
    >>> run = w.finish()      # merges chunks, writes summary.csv, status complete
    """

    path: Path
    mode: str = "simulate"
    target: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._lock_fd = _lock(self.path)
        _remove_stale_temps(self.path)  # a writer killed mid-rename; we hold the lock now
        self._parts = self.path / "trials.parts"
        #: the chunk files this writer knows of (found at start or written): finish()
        #: refuses to merge when the folder holds others or lacks one
        self._known = {f.name for f in _part_files(self._parts)}
        self._n_parts = len(self._known)
        self._started = _dt.datetime.now(_dt.UTC)
        base = {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "target": self.target,
            "status": "partial",
            "started_utc": _now(),
            **environment_meta(),
        }
        old = self.path / "meta.json"
        if old.exists():  # resuming: keep what the first attempt recorded
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                prev = json.loads(old.read_text())
                base["started_utc"] = prev.get("started_utc", base["started_utc"])
                base["resumed"] = int(prev.get("resumed", 0)) + 1
        self.meta = {**base, **self.meta}
        self._write_meta()

    @classmethod
    def create(
        cls,
        path: Path,
        files: Mapping[str, str],
        *,
        mode: str = "simulate",
        target: str = "model",
        meta: dict[str, Any] | None = None,
    ) -> RunWriter:
        """A new run folder that appears whole: ``files`` and ``meta.json`` are written
        under a hidden name beside ``path``, which is then renamed to it. A run stopped at
        any point leaves either no folder or one a resume can read (a folder without its
        meta or its experiment could be neither finished nor recognised)."""
        path = Path(path)
        _remove_stale_stages(path.parent)
        stage = path.parent / f".{path.name}.{unique_id()}"
        try:
            stage.mkdir(parents=True)
            for name, text in files.items():
                atomic_write_text(stage / name, text)
            writer = cls(stage, mode=mode, target=target, meta=dict(meta or {}))
            os.rename(stage, path)  # the lock is on the inode: it moves with the folder
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        writer.path, writer._parts = path, path / "trials.parts"
        return writer

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        """Give up the folder's lock (finish and finish_partial do; a dead process's
        lock goes with it)."""
        fd = getattr(self, "_lock_fd", None)  # None too when __post_init__ failed early
        if fd is not None:
            self._lock_fd = None
            os.close(fd)

    def _check_parts(self) -> list[Path]:
        files = _part_files(self._parts)
        found = {f.name for f in files}
        if found != self._known:
            extra, gone = sorted(found - self._known), sorted(self._known - found)
            what = "; ".join(
                x
                for x in (
                    f"{len(extra)} chunk(s) it did not write ({', '.join(extra[:3])})"
                    if extra
                    else "",
                    f"{len(gone)} of its chunks gone ({', '.join(gone[:3])})" if gone else "",
                )
                if x
            )
            raise RunBusy(f"{self._parts}: the chunks changed under this run: {what}")
        return files

    def _write_meta(self) -> None:
        atomic_write_text(self.path / "meta.json", _dump_json(self.meta))

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        self._write_meta()

    def add_trials(self, df: pd.DataFrame, index: int | None = None) -> Path:
        """Store a finished chunk of trials (kept if the run is interrupted).

        ``index`` is the chunk's position in the run: chunks are merged in index order, so
        the final trials.parquet does not depend on the order chunks finished in.
        """
        i = self._n_parts if index is None else index
        p = self._parts / f"part-{i:06d}.parquet"
        atomic_write_parquet(p, df)
        self._known.add(p.name)
        self._n_parts += 1
        return p

    def done_chunks(self) -> set[int]:
        """Indexes of the chunks already stored (for --resume)."""
        if not self._parts.exists():
            return set()
        return {int(f.stem.split("-")[1]) for f in self._parts.glob("part-*.parquet")}

    def add_table(self, name: str, df: pd.DataFrame) -> Path:
        """Store an extra table: ``.parquet`` or ``.csv`` by the name's suffix."""
        p = self.path / name
        if name.endswith(".csv"):
            atomic_write_text(p, df.to_csv(index=False))
        else:
            atomic_write_parquet(p, df)
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = self.path / name
        atomic_write_text(p, text)
        return p

    def finish(self, status: str = "complete", **fields: Any) -> Run:
        """Merge the chunks into trials.parquet, write summary.csv and the final meta.

        The merge streams one chunk at a time into the file (a row group per chunk), and
        the summary reads back only the columns it needs: a run of millions of trials with
        their a(t) lists never has to fit in memory. The returned `Run` loads its trials
        when first asked for them.
        """
        files = self._check_parts()
        dest = self.path / "trials.parquet"
        _merge_parts(files, dest)
        summary = summarize(_summary_frame([dest]))
        atomic_write_text(self.path / "summary.csv", summary.to_csv(index=False))
        elapsed = (_dt.datetime.now(_dt.UTC) - self._started).total_seconds()
        n = pq.ParquetFile(dest).metadata.num_rows
        self.meta.update(
            status=status, finished_utc=_now(), elapsed_s=round(elapsed, 3), n_trials=n
        )
        self.meta.update(fields)
        self._write_meta()
        # only now: a run stopped before this line still has every chunk to resume from
        for part in files:
            part.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._parts.rmdir()
        self.release()
        return Run(self.path, dict(self.meta))

    def finish_partial(self, **fields: Any) -> None:
        """Mark the run partial (interrupted) and keep its finished chunks readable."""
        files = _part_files(self._parts)
        trials = _summary_frame(files)
        if len(trials):
            atomic_write_text(self.path / "summary.csv", summarize(trials).to_csv(index=False))
        self.meta.update(status="partial", interrupted_utc=_now(), n_trials=len(trials))
        self.meta.update(fields)
        self._write_meta()
        self.release()


def _lock(path: Path) -> int:
    """Hold the folder's lock file for this process (released when it closes or dies)."""
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusy(
            f"{path}: another chaoslab process is writing this run folder "
            f"(it holds {LOCK_NAME}); wait for it or use another --out"
        ) from None
    return fd


#: a folder `RunWriter.create` stages: ``.<run folder name>.<12 hex digits>``
_STAGE = re.compile(r"^\..+\.[0-9a-f]{12}$")


def _remove_stale_stages(parent: Path) -> None:
    """Staged run folders a process killed before its rename left (nobody holds their
    lock): they would show in listings of ``parent`` and can never become a run."""
    if not parent.is_dir():
        return
    for d in parent.iterdir():
        if not (_STAGE.match(d.name) and d.is_dir() and (d / "meta.json").exists()):
            continue
        try:
            fd = _lock(d)
        except (RunBusy, OSError):
            continue  # being staged right now, by another process
        try:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Temporary files (``.name.<random hex>``) a killed writer left before their rename."""
    for d in (path, path / "trials.parts"):
        if d.is_dir():
            for f in d.glob(".*.*"):
                if f.name != LOCK_NAME and f.is_file():
                    f.unlink(missing_ok=True)


def _part_files(parts_dir: Path) -> list[Path]:
    return sorted(parts_dir.glob("part-*.parquet")) if parts_dir.exists() else []


def _merge_parts(files: Sequence[Path], dest: Path) -> None:
    """Concatenate chunk files into ``dest`` atomically, holding one chunk in memory."""
    fd, tmp = _temp_beside(dest)
    os.close(fd)
    writer: pq.ParquetWriter | None = None
    try:
        for f in files:
            table = pq.read_table(f)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            elif not table.schema.equals(writer.schema, check_metadata=False):
                # e.g. a milestone column that is all-null in one chunk
                table = table.select(writer.schema.names).cast(writer.schema)
            writer.write_table(table)
        if writer is None:
            pd.DataFrame().to_parquet(tmp, index=False)
        else:
            writer.close()
            writer = None
        os.replace(tmp, dest)
    except BaseException:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _summary_frame(files: Sequence[Path]) -> pd.DataFrame:
    """The trials' key, sweep and metric columns only (no milestones, no a(t) lists)."""
    frames = []
    for f in files:
        names = pq.ParquetFile(f).schema_arrow.names
        skip = [c for c in names if c in AVAILABILITY_COLUMNS or c.startswith("at_")]
        frames.append(read_parquet(f, exclude=skip))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_parquet(path: str | Path, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """``pd.read_parquet(path)`` without the ``exclude`` columns.

    The file is read by one `pyarrow.parquet.ParquetFile`, in this thread: pandas' reader
    goes through pyarrow's dataset layer, which costs about 4x the CPU on a run's trials
    (a row group per chunk of trials, hundreds of them), and threads buy nothing on a
    shared machine. The frame is the one pandas gives (the tests hold it to it)."""
    f = pq.ParquetFile(path, pre_buffer=False)
    skip = set(exclude)
    table = f.read(
        columns=[c for c in f.schema_arrow.names if c not in skip] if skip else None,
        use_threads=False,
        use_pandas_metadata=True,
    )
    df = table.to_pandas()
    attrs = (table.schema.metadata or {}).get(b"PANDAS_ATTRS")
    if attrs is not None:
        df.attrs = json.loads(attrs)  # as pandas restores them
    return df


def _read_parts(parts_dir: Path, exclude: Sequence[str] = ()) -> pd.DataFrame:
    files = sorted(parts_dir.glob("part-*.parquet")) if parts_dir.exists() else []
    if not files:
        return pd.DataFrame()
    return pd.concat([read_parquet(f, exclude) for f in files], ignore_index=True)


class Run:
    """A loaded run folder; ``trials`` is read from disk when first used."""

    def __init__(
        self, path: Path, meta: dict[str, Any], trials: pd.DataFrame | None = None
    ) -> None:
        self.path = Path(path)
        self.meta = meta
        self._trials = trials

    @property
    def trials(self) -> pd.DataFrame:
        if self._trials is None:
            self._trials = self._read()
        return self._trials

    def _read(self, exclude: Sequence[str] = ()) -> pd.DataFrame:
        p = self.path / "trials.parquet"
        if p.exists():
            return read_parquet(p, exclude)
        return _read_parts(self.path / "trials.parts", exclude)

    def trials_without(self, exclude: Sequence[str] = ()) -> pd.DataFrame:
        """The trials without the ``exclude`` columns, for an analysis that needs part of
        a big run (its a(t) lists are most of it). Read from disk unless `trials` already
        holds them; not kept."""
        if self._trials is not None:
            return self._trials.drop(columns=[c for c in exclude if c in self._trials])
        return self._read(exclude)

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    @property
    def sweep_columns(self) -> list[str]:
        return list(self.meta.get("sweep", {}).keys())

    def summary(self) -> pd.DataFrame:
        return summarize(self.trials, sweep=self.sweep_columns)

    def table(self, name: str) -> pd.DataFrame:
        p = self.path / name
        if not p.exists():
            raise RunFormatError(f"{self.path}: this run has no {name}")
        return pd.read_csv(p) if name.endswith(".csv") else pd.read_parquet(p)


def calibration_journal(path: Path, meta: dict[str, Any]) -> str:
    """One line saying a calibration's journal folder is not a run, and how it goes."""
    return (
        f"{path}: not a run but the journal of a calibration (live.calibrate's annotation "
        f"on node {meta.get('node', '?')}); it is deleted once the annotation is back; if "
        f"its drill is gone, 'chaoslab drill --recover {path}' puts the annotation back"
    )


def load_run(path: str | Path) -> Run:
    """Read a run folder written by `RunWriter` (complete or partial)."""
    p = Path(path)
    meta_path = p / "meta.json"
    if not meta_path.exists():
        raise RunFormatError(f"{p}: not a chaoslab run folder (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise RunFormatError(f"{meta_path}: unreadable ({e})") from None
    if isinstance(meta, dict) and meta.get("mode") == CALIBRATION_MODE:
        raise RunFormatError(calibration_journal(p, meta))
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise RunFormatError(
            f"{p}: results format version {version}, this chaoslab reads {readable}"
        )
    files = (
        [p / "trials.parquet"]
        if (p / "trials.parquet").exists()
        else _part_files(p / "trials.parts")
    )
    if not files and meta.get("n_trials"):
        raise RunFormatError(
            f"{p}: meta.json says {meta['n_trials']} trials but there is no trials.parquet"
        )
    required = {"design", "fault", "target", "trial", "recovery_s", "recovered", "lost_s"}
    for f in files:
        try:
            names = set(pq.ParquetFile(f).schema_arrow.names)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise RunFormatError(f"{f}: not a readable Parquet file ({e})") from None
        missing = sorted(required - names)
        if missing:
            raise RunFormatError(f"{f}: not a trials table (no column {', '.join(missing)})")
    # the trials themselves are read on first use (Run.trials)
    return Run(p, meta)


# --------------------------------------------------------------------------- summary


def _q(x: np.ndarray, q: float) -> float:
    if x.size == 0:
        return math.nan
    # 'inverted_cdf' keeps inf (unrecovered trials) meaningful: no interpolation with inf
    return float(np.quantile(x, q, method="inverted_cdf"))


def inferred_sweep_columns(trials: pd.DataFrame) -> list[str]:
    """Swept-parameter columns of trials without meta: neither keys, ``trial``, metrics,
    milestones (``at_*``) nor a(t)."""
    known = {*KEY_COLUMNS, "trial", *METRIC_COLUMNS, *AVAILABILITY_COLUMNS}
    return [c for c in trials.columns if c not in known and not str(c).startswith("at_")]


def summarize(trials: pd.DataFrame, sweep: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per design x fault x target x sweep point."""
    if trials.empty:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "trials"])
    if sweep is None:
        sweep = inferred_sweep_columns(trials)
    keys = [c for c in (*KEY_COLUMNS, *sweep) if c in trials.columns]
    rows: list[dict[str, Any]] = []
    for key, g in trials.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rec = np.asarray(g["recovery_s"], dtype=float)
        down = np.asarray(g["downtime_s"], dtype=float)
        lost = np.asarray(g["lost_s"], dtype=float)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row.update(
            trials=len(g),
            recovered=float(np.mean(g["recovered"].astype(bool))),
            recovery_p50=_q(rec, 0.5),
            recovery_p95=_q(rec, 0.95),
            recovery_p99=_q(rec, 0.99),
            recovery_max=float(rec.max()),
            downtime_mean=float(down.mean()),
            downtime_p95=_q(down, 0.95),
            degraded_mean=float(np.asarray(g["degraded_s"], dtype=float).mean()),
            lost_mean=float(lost.mean()),
            lost_p95=_q(lost, 0.95),
        )
        for extra in ("connections_reset", "connections_hung"):
            if extra in g and g[extra].notna().any():
                row[f"{extra}_mean"] = float(g[extra].mean())
        if "slow_s" in g and "p99_latency_s" in g:
            row.update(latency_summary(g["slow_s"], g["p99_latency_s"]))
        rows.append(row)
    return pd.DataFrame(rows)
