"""ECMP at the router: which next hop a flow's hash picks, and which flows move.

Modes (docs/model-network.md, ECMP; RFC 2991 section 4, RFC 2992):

- ``modulo``: next hop = hops[h mod N]. Removing or adding one hop moves (N-1)/N of all
  flows (for N -> N-1: the pair (h mod N, h mod N-1) is uniform since gcd = 1).
- ``hash-threshold``: the hash space is cut into N equal contiguous regions (Linux legacy
  multipath). Removing one hop moves between 1/4 and 1/2 of the flows (1/2 for an edge
  region, towards 1/4 for a central one with many hops), the removed hop's 1/N included.
- ``resilient``: buckets keep their next hop; only the removed hop's buckets are
  reassigned (Linux nexthop groups ``type resilient``): exactly its 1/N moves. A returning
  hop gets buckets only once they are idle (``idle_timer`` 120 s), so established flows
  stay; the model moves no flow on a return.

An established TCP flow moved to a node without its conntrack entry and socket is reset
(RFC 793 section 3.4; ``nf_conntrack_tcp_loose`` picks the packet up and DNATs it to a
backend with no socket).

`moved_share` computes exact shares for uniformly distributed hashes; `route` maps one
hash, and the tests check the two against each other over many flows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "BUCKETS",
    "moved_from",
    "moved_share",
    "resilient_buckets",
    "route",
    "share_by_hop",
]

#: hash space of the per-flow model (32-bit, like the kernel's flow hash)
SPACE = 2**32
#: buckets of a resilient group (the kernel needs an explicit count; 2^n is customary)
BUCKETS = 128


def route(mode: str, hops: Sequence[str], h: int, *, buckets: Sequence[str] | None = None) -> str:
    """Next hop of a flow with 32-bit hash ``h``."""
    n = len(hops)
    if n == 0:
        raise ValueError("no next hop")
    if mode == "modulo":
        return hops[h % n]
    if mode == "hash-threshold":
        return hops[min(n - 1, h * n // SPACE)]
    if mode == "resilient":
        if buckets is None:
            buckets = resilient_buckets(hops)
        return buckets[h % len(buckets)]
    raise ValueError(f"unknown ECMP mode {mode!r}")


def resilient_buckets(hops: Sequence[str], before: Sequence[str] | None = None) -> list[str]:
    """Bucket table: round robin at creation; after a removal only orphans are reassigned."""
    if before is None:
        return [hops[i % len(hops)] for i in range(BUCKETS)]
    out = list(before)
    alive = list(hops)
    load = {h: sum(1 for b in out if b == h) for h in alive}
    for i, b in enumerate(out):
        if b not in load:
            tgt = min(alive, key=lambda x: (load[x], alive.index(x)))
            out[i] = tgt
            load[tgt] += 1
    return out


def _regions(hops: Sequence[str]) -> list[tuple[float, float, str]]:
    n = len(hops)
    return [(i / n, (i + 1) / n, h) for i, h in enumerate(hops)]


def moved_share(mode: str, before: Sequence[str], after: Sequence[str]) -> float:
    """Share of all flows whose next hop differs between two next-hop lists."""
    if not before or not after:
        return 1.0 if before != after else 0.0
    if list(before) == list(after):
        return 0.0
    if mode == "modulo":
        # pairs (h mod N, h mod M) are uniform when gcd(N, M) = 1 (N, M consecutive);
        # in general, same hop only where the residues name the same hop
        n, m = len(before), len(after)
        g = math.gcd(n, m)
        same = 0
        for i, hb in enumerate(before):
            for j, ha in enumerate(after):
                if hb == ha and (i - j) % g == 0:
                    same += 1
        return 1.0 - same * g / (n * m)
    if mode == "hash-threshold":
        overlap = 0.0
        for a0, a1, ha in _regions(before):
            for b0, b1, hb in _regions(after):
                if ha == hb:
                    overlap += max(0.0, min(a1, b1) - max(a0, b0))
        return 1.0 - overlap
    if mode == "resilient":
        gone = [h for h in before if h not in after]
        if not gone:
            return 0.0  # a new hop gets only idle buckets: established flows stay
        return len(gone) / len(before)
    raise ValueError(f"unknown ECMP mode {mode!r}")


def share_by_hop(hops: Sequence[str]) -> dict[str, float]:
    """Share of new flows per next hop (uniform hashes: equal shares in every mode)."""
    if not hops:
        return {}
    return {h: 1.0 / len(hops) for h in hops}


def moved_from(mode: str, before: Sequence[str], after: Sequence[str]) -> dict[str, float]:
    """Per old next hop: share of *its* flows that move (exact, uniform hashes)."""
    out: dict[str, float] = {}
    n = len(before)
    if not after:
        return {h: 1.0 for h in before}
    if mode == "hash-threshold":
        for a0, a1, ha in _regions(before):
            kept = 0.0
            for b0, b1, hb in _regions(after):
                if ha == hb:
                    kept += max(0.0, min(a1, b1) - max(a0, b0))
            out[ha] = 1.0 - kept * n
        return out
    if mode == "resilient":
        return {h: (0.0 if h in after else 1.0) for h in before}
    if mode == "modulo":
        m = len(after)
        g = math.gcd(n, m)
        for i, hb in enumerate(before):
            same = sum(1 for j, ha in enumerate(after) if ha == hb and (i - j) % g == 0)
            out[hb] = 1.0 - same * g / m
        return out
    raise ValueError(f"unknown ECMP mode {mode!r}")
