"""kube-vip's VIP leader: a Kubernetes Lease through client-go leader election.

Closed forms (docs/model-network.md, kube-vip; client-go tools/leaderelection):

- The leader renews every ``RetryPeriod``. A candidate polls the Lease every
  RetryPeriod x U(1, 1 + JitterFactor) (``wait.JitterUntil``, factor 1.2) and records
  ``observedTime`` when it sees the record change.
- It may acquire once ``now >= observedTime + LeaseDuration``: after a silent leader
  death the takeover lands in [lease, lease + 2.2 x retry] after the last observed
  renewal (15-19.4 s with 15/10/2, 5-7.2 s with 5/3/1).
- SIGTERM: ``ReleaseOnCancel`` empties the holder; a candidate takes it on its next
  poll (within 2.2 x retry).
- A leader that cannot reach the API server gives up after ``RenewDeadline``.
- The new leader adds the VIP and sends a gratuitous ARP at once, then every
  ``vip_arpRate``.
"""

from __future__ import annotations

import numpy as np

from chaoslab.mechanisms.base import register_milestones

__all__ = ["graceful_takeover", "silent_takeover"]

register_milestones(
    {
        "kube_vip.leader_changed": "another kube-vip instance acquired the lease",
    }
)


def _forward(rng: np.random.Generator, retry: float, jitter: float) -> float:
    """Time to a candidate's next poll from a random instant (stationary jittered polls):
    a length-biased interval U(retry, (1 + jitter) retry), then a uniform point in it."""
    a, b = retry, retry * (1.0 + jitter)
    length = float(np.sqrt(a * a + rng.random() * (b * b - a * a)))
    return length * float(rng.random())


def silent_takeover(
    rng: np.random.Generator,
    candidates: int,
    *,
    lease: float,
    retry: float,
    jitter: float,
) -> tuple[float, float]:
    """(takeover time, winner's observed time) after the leader goes silent at t = 0."""
    # the leader's renewals run on a grid at a random phase; the last one is at -age
    last_renew = -retry * float(rng.random())
    best = (float("inf"), 0.0)
    for _ in range(max(1, candidates)):
        # the first poll after the last renewal sees the new record: observedTime
        observed = last_renew + _forward(rng, retry, jitter)
        t = observed
        while t < observed + lease and t < best[0]:
            t += retry * (1.0 + jitter * float(rng.random()))
        if t < best[0]:
            best = (t, observed)
    return best


def graceful_takeover(
    rng: np.random.Generator, candidates: int, *, retry: float, jitter: float
) -> float:
    """Time until a candidate's next poll after the leader released the lease at t = 0."""
    return min(_forward(rng, retry, jitter) for _ in range(max(1, candidates)))
