"""Take a cluster or data plane down when the process that owns it dies, however it dies.

The components run in their own sessions (`chaoslab.live.cluster.procs.spawn`), so that a
``chaoslab cluster up`` can return and leave them running. A test session that owns a
cluster must not leave it behind, but a SIGKILL (a CI job's timeout, an OOM kill) skips
every ``finally:`` and ``atexit``; kube-apiservers, etcds and node namespaces were left
running. A parent-death signal (``PR_SET_PDEATHSIG``) does not fit: it fires when the
spawning *thread* ends and would also kill what a drill's hook command restarted.

So the owner starts a reaper (`start_reaper`): a small process in a session of its own that
polls the owner's PID (with its start time, so a reused PID does not count as alive) and,
once the owner is gone, runs the same ``down`` as ``chaoslab cluster down`` on every state
folder in the folders it was given (a cluster's, or a data plane's; what no longer holds a
``state.json`` was taken down by its owner). The owner stops the reaper
by PID when it is done.

A drill that brings its own cluster up starts one too (``keep_logs``: the cluster goes as
``down(keep_logs=True)`` takes it, its components' logs kept); a cluster folder's
``drill-dataplane`` link names the drill's data plane, taken down first.

``python -m chaoslab.live.cluster.reaper [--keep-logs] --parent PID --parent-start TICKS DIR ...``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chaoslab.live.cluster.procs import alive, start_time

__all__ = ["main", "reap", "start_reaper"]

#: how often the reaper looks at its owner (its own plumbing, not a model timing): a
#: cluster outliving its owner by this much costs nothing
POLL_SECONDS = 0.5


#: the file in a cluster folder naming a drill's data plane folder (``hooks.DATAPLANE_LINK``)
DATAPLANE_LINK = "drill-dataplane"


def start_reaper(
    dirs: Sequence[Path], log: Path, *, keep_logs: bool = False
) -> subprocess.Popen[bytes]:
    """A reaper for ``dirs``, watching this process. Stop it by PID (``terminate``) after
    taking the folders down; its output goes to ``log``. With ``keep_logs`` a cluster is
    taken down as ``down(keep_logs=True)`` does."""
    me = os.getpid()
    argv = [sys.executable, "-m", "chaoslab.live.cluster.reaper", "--parent", str(me)]
    argv += ["--keep-logs"] if keep_logs else []
    argv += ["--parent-start", str(start_time(me)), *(str(Path(d).resolve()) for d in dirs)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a kill of the owner's process group spares it
            cwd=Path(__file__).resolve().parents[3],
        )


def reap(dirs: Sequence[Path], keep_logs: bool = False) -> list[str]:
    """Take down what each folder, or a folder inside it, still holds (a cluster:
    everything it recorded, its data plane included, a linked drill data plane first; a
    data plane: its namespaces and processes)."""
    from chaoslab.live.cluster.dataplane import DataPlane
    from chaoslab.live.cluster.local import LocalCluster

    notes: list[str] = []
    # every state folder under each one given, outermost first: a cluster's down takes its
    # data plane (a folder inside it) down too, and removes it
    found = sorted({f.parent for d in dirs for f in Path(d).rglob("state.json")}, key=_depth)
    for d in found:
        try:
            doc = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue  # taken down by its owner (or never made)
        try:
            if "ports" in doc and "phase" in doc:  # a cluster's state (ClusterState)
                notes += _linked_dataplane_down(d)
                cluster = LocalCluster.load(d)
                notes += cluster.down(keep_logs=keep_logs) if cluster is not None else []
            else:
                notes += DataPlane.load(d).down()
        except Exception as e:  # one folder's failure must not spare the others
            notes.append(f"{d}: {type(e).__name__}: {e}")
    return notes


def _linked_dataplane_down(cluster_dir: Path) -> list[str]:
    """The data plane a drill built for this cluster (outside its folder), as
    ``LocalSession.close`` takes it down: its processes and namespaces, then its folder."""
    from chaoslab.live.cluster.dataplane import DataPlane

    link = cluster_dir / DATAPLANE_LINK
    try:
        d = Path(link.read_text().strip())
    except OSError:
        return []
    notes: list[str] = []
    if d.name and (d / "state.json").exists():
        notes += DataPlane.load(d).down()
        shutil.rmtree(d.parent, ignore_errors=True)
        notes.append(f"removed data plane {d}")
    link.unlink(missing_ok=True)
    return notes


def _depth(p: Path) -> int:
    return len(p.parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.reaper")
    ap.add_argument("--parent", type=int, required=True, help="PID of the owner")
    ap.add_argument("--parent-start", type=int, required=True, help="its start time (ticks)")
    ap.add_argument("--keep-logs", action="store_true", help="keep a cluster's logs")
    ap.add_argument("dirs", nargs="+", type=Path, help="state folders to take down")
    a = ap.parse_args(argv)
    while alive(a.parent, a.parent_start):
        time.sleep(POLL_SECONDS)
    for note in reap(a.dirs, keep_logs=a.keep_logs):
        print(note, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
