"""kube-vip's VIP leader: a Kubernetes Lease through client-go leader election.

Closed forms (reference/network-timing.md section 7; client-go tools/leaderelection):

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


def _polls(rng: np.random.Generator, start: float, retry: float, jitter: float):
    t = start
    while True:
        yield t
        t += retry * (1.0 + jitter * float(rng.random()))


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
    span = lease + 4 * retry * (1.0 + jitter)
    for _ in range(max(1, candidates)):
        observed = None
        for t in _polls(rng, -span - retry * (1.0 + jitter) * float(rng.random()), retry, jitter):
            if t <= last_renew:
                continue  # every poll before the last renewal sees a fresh record
            if observed is None:
                observed = t  # first poll after the last renewal
                continue
            if t >= observed + lease:
                if t < best[0]:
                    best = (t, observed)
                break
            if t > best[0]:
                break
    return best


def graceful_takeover(
    rng: np.random.Generator, candidates: int, *, retry: float, jitter: float
) -> float:
    """Time until a candidate's next poll after the leader released the lease at t = 0."""
    best = float("inf")
    for _ in range(max(1, candidates)):
        # forward recurrence of the jittered poll process: a length-biased interval
        a, b = retry, retry * (1.0 + jitter)
        length = float(np.sqrt(a * a + rng.random() * (b * b - a * a)))
        best = min(best, length * float(rng.random()))
    return best
