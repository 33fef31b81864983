"""Measure catalogue values on the cluster before a drill predicts (``live.calibrate``).

``controller_reaction`` (``kube_controller_manager.controller_reaction``: an object change
to a controller's write landing) is measured as round trips on the real API: a watch on one
node is opened, then each round trip sends a merge PATCH of the annotation
``chaoslab.io/calibrate`` on that node and times from the request's send to the arrival of
the watch event carrying the resourceVersion the PATCH answered with. One round trip is an
API write (admission, etcd commit) plus the watch delivery of its result: the two legs of
every controller hop the model draws this value for. The controller's own handling between
them (an informer callback and a queue) is not in it; chaoslab cannot time it from outside.

The samples become an ``empirical(...)`` override of the parameter for the prediction. The
annotation is put back as it was afterwards, also after an error, Ctrl-C or SIGTERM. Against
a ``kill -9`` the change is journaled first (`chaoslab.live.journal`): the plan runs before
the drill's run folder exists, so the calibration has a folder of its own under ``--out``
(``<UTC>-calibrate-<id>``: ``journal.jsonl``, and the ``meta.json`` and ``live.json`` that
``chaoslab drill --recover`` and the next drill's check for left undo steps read). It is
deleted once the annotation is back; a folder whose process died is undone by the next
calibration of that cluster, or by ``chaoslab drill --recover DIR``.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from chaoslab.live.journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    UndoStep,
    owner,
    owner_alive,
    pending_undo,
)
from chaoslab.live.k8s.discover import Discovery
from chaoslab.live.k8s.kube import Kube, KubeError
from chaoslab.live.k8s.observe import Observation, Watcher
from chaoslab.live.k8s.spec import LiveSpec
from chaoslab.params.dists import Empirical, format_seconds
from chaoslab.results import CALIBRATION_MODE, atomic_write_text, new_run_dir

__all__ = [
    "ANNOTATION",
    "PARAMS",
    "UNDO_OP",
    "Calibration",
    "JournalPlace",
    "calibrate",
    "controller_reaction",
    "undo_annotation",
]

Log = Callable[[str], None]
#: the annotation the round trips write (and remove)
ANNOTATION = "chaoslab.io/calibrate"
#: calibration name -> the catalogue key its samples override
PARAMS = {"controller_reaction": "kube_controller_manager.controller_reaction"}
#: a round trip whose watch resumed meanwhile is taken again (a resumed watch replays the
#: event late); after this many extra attempts per wanted sample the cluster is too unsteady
_RETRY_FACTOR = 2
#: the journal's undo step that puts the annotation back (`undo_annotation`)
UNDO_OP = "restore-annotation"
#: the calibration folder's mode in its name and meta.json (`new_run_dir`; run readers
#: know it: `chaoslab.results.calibration_journal`)
_MODE = CALIBRATION_MODE


@dataclass(frozen=True)
class JournalPlace:
    """Where a calibration journals its annotation: ``out`` (the drill's ``--out``), the
    experiment's folder name under it, the drill's ``live.json`` (what ``--recover`` reads)
    and the kubeconfig the plan connected with."""

    out: Path
    experiment: str
    live: dict[str, Any]
    kubeconfig: str | None = None


@dataclass(frozen=True)
class Calibration:
    """Measured samples of one catalogue value."""

    name: str
    node: str
    samples: tuple[float, ...]

    @property
    def key(self) -> str:
        return PARAMS[self.name]

    @property
    def override(self) -> str:
        """The samples as the catalogue value the prediction runs with."""
        return Empirical(self.samples).text()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return float(np.quantile(self.samples, 0.95))

    def rows(self) -> list[dict[str, Any]]:
        """calibration.csv: name, sample (1..n), seconds."""
        return [
            {"name": self.name, "sample": i, "seconds": s}
            for i, s in enumerate(self.samples, start=1)
        ]

    def summary(self) -> dict[str, Any]:
        """What the run's meta.json says about it."""
        return {
            "param": self.key,
            "node": self.node,
            "samples": len(self.samples),
            "median_s": self.median,
            "p95_s": self.p95,
            "file": "calibration.csv",
        }

    def line(self) -> str:
        return (
            f"calibrated {self.key}: empirical of {len(self.samples)} round trips "
            f"(annotation PATCH on node {self.node} -> its watch event): median "
            f"{format_seconds(self.median)}, p95 {format_seconds(self.p95)}"
        )


class _Arrivals:
    """A watch sink: when each resourceVersion of the node arrived (local monotonic)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._at: dict[str, float] = {}

    def __call__(self, ob: Observation) -> None:
        rv = str((ob.obj.get("metadata") or {}).get("resourceVersion", ""))
        if ob.type == "MODIFIED" and rv:
            with self._cond:
                self._at[rv] = ob.mono
                self._cond.notify_all()

    def wait(self, rv: str, timeout: float) -> float | None:
        with self._cond:
            self._cond.wait_for(lambda: rv in self._at, timeout)
            return self._at.get(rv)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt here, so the annotation is removed before exit
    (the drill's own signal guard is not installed while it plans)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _node(disc: Discovery) -> str:
    """A node of the app's pods (the first), else the first worker, else the first node."""
    for p in disc.pods:
        if p.node:
            return p.node
    workers = [n.name for n in disc.nodes if not n.control_plane]
    names = workers or [n.name for n in disc.nodes]
    if not names:
        raise KubeError(0, "calibrate: the cluster has no node to annotate")
    return names[0]


def _round_trip(kube: Kube, path: str, arrivals: _Arrivals, value: str, timeout: float) -> float:
    """Seconds from sending the PATCH to its watch event's arrival."""
    # every value is new (a PATCH that changes nothing makes no event)
    body = {"metadata": {"annotations": {ANNOTATION: value}}}
    sent = time.monotonic()
    rv = str(kube.merge_patch(path, body)["metadata"]["resourceVersion"])
    at = arrivals.wait(rv, timeout)
    if at is None:
        raise KubeError(0, f"calibrate: no watch event for {path} at {rv} within {timeout:g}s")
    return at - sent


def _restore(kube: Kube, node: str, previous: str | None, key: str = ANNOTATION) -> None:
    """The annotation as it was before the round trips (absent: removed)."""
    kube.merge_patch(f"/api/v1/nodes/{node}", {"metadata": {"annotations": {key: previous}}})


def undo_annotation(kube: Kube | None, journal: Journal, step: UndoStep, log: Log) -> bool:
    """Run a journaled `UNDO_OP` step (idempotent); True when done, False to retry."""
    s = step.step
    if kube is None:
        log(f"  cannot {UNDO_OP} without the API (step {step.id})")
        return False
    try:
        if kube.get_or_none(f"/api/v1/nodes/{s['node']}") is not None:
            _restore(kube, s["node"], s.get("previous"), s.get("annotation", ANNOTATION))
    except KubeError as e:
        journal.write("undo.failed", id=step.id, op=UNDO_OP, error=str(e))
        log(f"  {UNDO_OP} on node {s['node']} failed: {e}")
        return False
    journal.undo_done(step.id, op=UNDO_OP, node=s["node"])
    return True


def _target(kube: Kube) -> dict[str, Any]:
    """meta.json's keys that tell two drills' clusters apart (as the drill's run folder has
    them, so its check for an earlier drill's left undo steps finds this folder)."""
    return {"target": "kubernetes", "api_server": kube.host, "context": kube.context}


def _meta(run: Path) -> dict[str, Any]:
    try:
        meta = json.loads((run / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _recover_dead(kube: Kube, place: JournalPlace, log: Log) -> None:
    """Put back what calibrations of this cluster killed before their restore left
    (journaled, owner dead); their folders go once nothing is pending."""
    me = _target(kube)
    for path in sorted(place.out.glob(f"*/*-{_MODE}-*/{JOURNAL_NAME}")):
        run = path.parent
        meta = _meta(run)
        if {k: meta.get(k) for k in me} != me:
            continue
        try:
            if owner_alive(path) or not pending_undo(path):
                continue
        except (OSError, JournalError):
            continue  # not a journal chaoslab can act on: --recover says so for it
        journal = Journal(run)
        steps = journal.pending()
        journal.write("recover.start", steps=[s.id for s in steps], **owner())
        left = [s.id for s in steps if not undo_annotation(kube, journal, s, log)]
        journal.write("recover.end", ok=not left, left=left)
        if not left:
            log(f"calibrate: put back annotation {ANNOTATION} that a killed drill left ({run})")
            _discard(run)


def _discard(run: Path) -> None:
    """A calibration folder with nothing left to undo (and its experiment folder if empty)."""
    shutil.rmtree(run, ignore_errors=True)
    with contextlib.suppress(OSError):
        run.parent.rmdir()


def _open_journal(kube: Kube, node: str, place: JournalPlace) -> tuple[Journal, str | None]:
    """A calibration folder whose journal holds the annotation's undo step (written before
    the first PATCH); the annotation's value before, None when absent."""
    obj = kube.get(f"/api/v1/nodes/{node}")
    previous = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    run = new_run_dir(place.out, place.experiment, _MODE)
    run.mkdir(parents=True)
    meta = {"mode": _MODE, **_target(kube), "kubeconfig": place.kubeconfig, "node": node}
    atomic_write_text(run / "meta.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(run / "live.json", json.dumps(place.live, indent=2, default=str) + "\n")
    journal = Journal(run)
    journal.write("calibrate.start", node=node, **owner())
    step = {"op": UNDO_OP, "node": node, "annotation": ANNOTATION, "previous": previous}
    journal.add_undo(step)
    return journal, previous


def _put_back(
    kube: Kube, node: str, previous: str | None, journal: Journal | None, log: Log
) -> None:
    """Restore the annotation; with a journal its step is marked done and the folder goes
    (on failure it stays, for ``--recover``)."""
    where = f"kubectl annotate node {node} {ANNOTATION}-"
    if journal is not None:
        where = f"chaoslab drill --recover {journal.path.parent}"
    try:
        _restore(kube, node, previous)
    except KubeError as e:
        log(
            f"calibrate: could not put back annotation {ANNOTATION} on node {node} ({e}); "
            f"run: {where}"
        )
        return
    if journal is not None:
        (step,) = journal.pending()
        journal.undo_done(step.id, op=UNDO_OP, node=node)
        _discard(journal.path.parent)


def controller_reaction(
    kube: Kube,
    node: str,
    spec: LiveSpec,
    log: Log,
    *,
    server_timeout: int,
    place: JournalPlace | None = None,
) -> Calibration:
    """``spec.calibrate_samples`` round trips on ``node``; the annotation is put back after.
    With ``place`` the change is journaled first (the module docstring says where)."""
    n, path = spec.calibrate_samples, f"/api/v1/nodes/{node}"
    log(
        f"calibrating controller_reaction: {n} round trips (PATCH {ANNOTATION} on node "
        f"{node}, watch event) ..."
    )
    journal, previous = None, None
    if place is not None:
        _recover_dead(kube, place, log)
        journal, previous = _open_journal(kube, node, place)
    arrivals, stop = _Arrivals(), threading.Event()
    watch = Watcher(
        kube,
        "nodes",
        "/api/v1/nodes",
        {"fieldSelector": f"metadata.name={node}"},
        arrivals,
        stop,
        server_timeout=server_timeout,
        read_timeout=server_timeout + spec.api_timeout,
        backoff=spec.poll,
    )
    watch.start()
    try:
        with _sigterm_interrupts():
            samples = _samples(kube, path, watch, arrivals, spec)
    finally:
        _put_back(kube, node, previous, journal, log)
        watch.close()
        watch.join(timeout=spec.api_timeout)
    cal = Calibration("controller_reaction", node, tuple(samples))
    log(
        f"calibrating controller_reaction: {n} round trips ... median "
        f"{cal.median * 1000:.3g} ms, p95 {cal.p95 * 1000:.3g} ms"
    )
    return cal


def _samples(
    kube: Kube, path: str, watch: Watcher, arrivals: _Arrivals, spec: LiveSpec
) -> list[float]:
    if not watch.listed.wait(spec.api_timeout):
        raise KubeError(0, f"calibrate: cannot watch {path}: {watch.error}")
    tag = f"{time.time_ns():x}"
    # the first round trip is not timed: once its event arrived, the watch is open
    _round_trip(kube, path, arrivals, f"{tag}-0", spec.api_timeout)
    samples: list[float] = []
    n = spec.calibrate_samples
    for value in range(1, n * (1 + _RETRY_FACTOR) + 1):
        resumes = watch.resumes
        s = _round_trip(kube, path, arrivals, f"{tag}-{value}", spec.api_timeout)
        if watch.resumes == resumes and math.isfinite(s):
            samples.append(s)
        if len(samples) == n:
            return samples
    raise KubeError(0, f"calibrate: the watch on {path} kept dropping ({watch.resumes} resumes)")


def calibrate(
    kube: Kube,
    spec: LiveSpec,
    disc: Discovery,
    log: Log,
    *,
    server_timeout: int,
    place: JournalPlace | None = None,
) -> list[Calibration]:
    """Every value ``spec.calibrate`` names, measured on the cluster now (journaled in a
    folder under ``place`` when given)."""
    out = []
    for name in dict.fromkeys(spec.calibrate):
        if name == "controller_reaction":
            node = _node(disc)
            out.append(
                controller_reaction(
                    kube, node, spec, log, server_timeout=server_timeout, place=place
                )
            )
    return out
