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
annotation is removed afterwards, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

from chaoslab.live.k8s.discover import Discovery
from chaoslab.live.k8s.kube import Kube, KubeError
from chaoslab.live.k8s.observe import Observation, Watcher
from chaoslab.live.k8s.spec import LiveSpec
from chaoslab.params.dists import Empirical, format_seconds

__all__ = ["ANNOTATION", "PARAMS", "Calibration", "calibrate", "controller_reaction"]

Log = Callable[[str], None]
#: the annotation the round trips write (and remove)
ANNOTATION = "chaoslab.io/calibrate"
#: calibration name -> the catalogue key its samples override
PARAMS = {"controller_reaction": "kube_controller_manager.controller_reaction"}
#: a round trip whose watch resumed meanwhile is taken again (a resumed watch replays the
#: event late); after this many extra attempts per wanted sample the cluster is too unsteady
_RETRY_FACTOR = 2


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


def _remove(kube: Kube, path: str, log: Log) -> None:
    try:
        kube.merge_patch(path, {"metadata": {"annotations": {ANNOTATION: None}}})
    except KubeError as e:
        node = path.rsplit("/", 1)[-1]
        log(
            f"calibrate: could not remove annotation {ANNOTATION} from node {node} ({e}); "
            f"remove it with: kubectl annotate node {node} {ANNOTATION}-"
        )


def controller_reaction(
    kube: Kube, node: str, spec: LiveSpec, log: Log, *, server_timeout: int
) -> Calibration:
    """``spec.calibrate_samples`` round trips on ``node``; the annotation is removed after."""
    n, path = spec.calibrate_samples, f"/api/v1/nodes/{node}"
    log(
        f"calibrating controller_reaction: {n} round trips (PATCH {ANNOTATION} on node "
        f"{node}, watch event) ..."
    )
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
        _remove(kube, path, log)
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
    kube: Kube, spec: LiveSpec, disc: Discovery, log: Log, *, server_timeout: int
) -> list[Calibration]:
    """Every value ``spec.calibrate`` names, measured on the cluster now."""
    out = []
    for name in dict.fromkeys(spec.calibrate):
        if name == "controller_reaction":
            node = _node(disc)
            out.append(controller_reaction(kube, node, spec, log, server_timeout=server_timeout))
    return out
