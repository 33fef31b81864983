"""memberlist failure detection (MetalLB L2 speakers) and the VIP leader by hash.

Closed forms (docs/model-network.md, memberlist; hashicorp/memberlist util.go,
state.go):

- suspicion min = ``SuspicionMult`` x max(1, log10(max(1, n))) x ``ProbeInterval``;
  max = ``SuspicionMaxTimeoutMult`` x min (4 s and 24 s for n <= 10 nodes).
- k = SuspicionMult - 2 independent confirmations are wanted (k = 0 when n - 2 < k); the
  timer started at the first suspicion runs for
  ``max - log(c + 1) / log(k + 1) x (max - min)`` with c confirmations so far, never
  below min (with k = 0: min at once).
- Each live member probes the others round robin, one per ``ProbeInterval``: it reaches
  the dead node within one cycle of n - 1 probes, and suspects it at the end of that
  probe's interval (direct ack timeout + indirect probes fit inside it).
- The death spreads by gossip (``GossipInterval``), then every speaker recomputes the
  leader of the VIP: the first live speaker in the order of hash(node + VIP).

So detection after a silent failure lies in [probe interval + min,
(n - 1) x probe interval + probe interval + max + gossip].
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from chaoslab.mechanisms.base import register_milestones
from chaoslab.mechanisms.cluster import Node

__all__ = ["detection_time", "hash_order", "suspicion_bounds", "suspicion_timeout"]

register_milestones(
    {
        "memberlist.dead": "memberlist marked the failed speaker dead",
        "metallb.leader_changed": "another speaker announces the LoadBalancer IP",
    }
)


def suspicion_bounds(n: int, mult: float, max_mult: float, probe: float) -> tuple[float, float]:
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    lo = mult * node_scale * probe
    return lo, max_mult * lo


def suspicion_timeout(c: int, k: int, lo: float, hi: float) -> float:
    if k < 1:
        return lo
    frac = math.log(c + 1.0) / math.log(k + 1.0)
    return max(lo, hi - frac * (hi - lo))


def detection_time(
    rng: np.random.Generator,
    n: int,
    *,
    probe: float,
    mult: float,
    max_mult: float,
    gossip: float,
) -> float:
    """Time from a member's silent death to the survivors marking it dead (n members)."""
    others = max(1, n - 1)
    lo, hi = suspicion_bounds(n, mult, max_mult, probe)
    k = int(mult) - 2
    if n - 2 < k:
        k = 0
    # each survivor reaches the dead node once per cycle of (n - 1) probes
    cycle = max(1, others - 1 + 1) * probe
    suspects = sorted(float(rng.random()) * cycle + probe for _ in range(others))
    start = suspects[0]
    confirmations = suspects[1:]
    c = 0
    while True:
        deadline = start + suspicion_timeout(c, k, lo, hi)
        if c < len(confirmations) and confirmations[c] < deadline:
            c += 1
            continue
        break
    return deadline + gossip * float(rng.random())


def hash_order(nodes: Sequence[Node], key: str) -> list[Node]:
    """Speakers in MetalLB's per-IP order (sha256 of node+IP there; crc32 here)."""
    return sorted(nodes, key=lambda n: zlib.crc32((n.name + key).encode()))
