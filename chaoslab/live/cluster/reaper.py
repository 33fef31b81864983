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
``drill-dataplane`` link (`chaoslab.live.cluster.state.DATAPLANE_LINK`) names the drill's
data plane, taken down first. The drill writes the link before the data plane's folder
exists, so a kill at any point of the build leaves a link to whatever part was built.
A drill attached to a cluster it did not bring up starts one with ``dataplane_only``: it
takes down only the data plane the link names, and only while the link still names this
owner's; the cluster stays up.

``python -m chaoslab.live.cluster.reaper [--keep-logs | --dataplane-only] --parent PID
--parent-start TICKS DIR ...``
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
from chaoslab.live.cluster.state import DATAPLANE_LINK, dataplane_logs_dir, read_dataplane_link

__all__ = ["linked_dataplane_down", "main", "reap", "remove_dataplane", "start_reaper"]

#: how often the reaper looks at its owner (its own plumbing, not a model timing): a
#: cluster outliving its owner by this much costs nothing
POLL_SECONDS = 0.5


def start_reaper(
    dirs: Sequence[Path], log: Path, *, keep_logs: bool = False, dataplane_only: bool = False
) -> subprocess.Popen[bytes]:
    """A reaper for ``dirs``, watching this process. Stop it by PID (``terminate``) after
    taking the folders down; its output goes to ``log``. With ``keep_logs`` a cluster is
    taken down as ``down(keep_logs=True)`` does; with ``dataplane_only`` only the data
    plane each cluster folder links, if this process still owns it."""
    me = os.getpid()
    argv = [sys.executable, "-m", "chaoslab.live.cluster.reaper", "--parent", str(me)]
    argv += ["--keep-logs"] if keep_logs else []
    argv += ["--dataplane-only"] if dataplane_only else []
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
                notes += linked_dataplane_down(d)
                cluster = LocalCluster.load(d)
                notes += cluster.down(keep_logs=keep_logs) if cluster is not None else []
            else:
                notes += DataPlane.load(d).down()
        except Exception as e:  # one folder's failure must not spare the others
            notes.append(f"{d}: {type(e).__name__}: {e}")
    return notes


def linked_dataplane_down(
    cluster_dir: Path, owner: tuple[int, int | None] | None = None
) -> list[str]:
    """The data plane a drill built for this cluster (outside its folder), taken down as
    ``LocalSession.close`` takes it: its processes and namespaces, then its folder, then
    the link. Also a half-built one (the link written, the folder or ``state.json`` not
    yet). With ``owner`` (PID, start time) only while the link names that drill."""
    link = read_dataplane_link(cluster_dir)
    if link is None:
        (cluster_dir / DATAPLANE_LINK).unlink(missing_ok=True)  # empty: names nothing
        return []
    if owner is not None and not link.owned_by(*owner):
        return []  # another drill's data plane now
    notes = remove_dataplane(link.dir, dataplane_logs_dir(cluster_dir, link.dir))
    (cluster_dir / DATAPLANE_LINK).unlink(missing_ok=True)
    return notes


def remove_dataplane(d: Path, logs_to: Path | None = None) -> list[str]:
    """Take the data plane in ``d`` down (if one is recorded there) and remove the drill's
    temporary folder holding it (only a folder named as a drill names it: a damaged link
    must not remove anything else), its components' logs moved to ``logs_to`` first."""
    from chaoslab.live.cluster.dataplane import DataPlane, DataPlaneError
    from chaoslab.live.cluster.state import DataPlaneLink, move_logs

    notes: list[str] = []
    if (d / "state.json").exists():
        try:
            notes += DataPlane.load(d).down()
        except DataPlaneError as e:  # what it holds is unknown: its folder stays, to read
            return [f"{e}; data plane not taken down"]
    tmp = DataPlaneLink(d).tmp
    if tmp is None:
        notes.append(f"{d}: not a drill's data plane folder, kept")
    elif tmp.exists():
        if logs_to is not None and move_logs(d, logs_to):
            notes.append(f"data plane logs kept in {logs_to}")
        shutil.rmtree(tmp, ignore_errors=True)
        notes.append(f"removed data plane {d}")
    return notes


def _depth(p: Path) -> int:
    return len(p.parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.reaper")
    ap.add_argument("--parent", type=int, required=True, help="PID of the owner")
    ap.add_argument("--parent-start", type=int, required=True, help="its start time (ticks)")
    ap.add_argument("--keep-logs", action="store_true", help="keep a cluster's logs")
    ap.add_argument(
        "--dataplane-only",
        action="store_true",
        help="take down only the data plane each cluster folder links to the parent",
    )
    ap.add_argument("dirs", nargs="+", type=Path, help="state folders to take down")
    a = ap.parse_args(argv)
    while alive(a.parent, a.parent_start):
        time.sleep(POLL_SECONDS)
    if a.dataplane_only:
        owner = (a.parent, a.parent_start)
        notes = [n for d in a.dirs for n in linked_dataplane_down(d, owner)]
    else:
        notes = reap(a.dirs, keep_logs=a.keep_logs)
    for note in notes:
        print(note, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
