"""Tie-breaking among the best-scoring nodes: seeded, and identical on every path.

kube-scheduler picks uniformly at random among the nodes sharing the top
score (reservoir sampling over its score list, one ``rand.Intn`` per tied
node). kcore keeps the distribution and fixes the draw so that a cached,
incremental search can reproduce it without visiting every node:

    k = number of feasible nodes with the top score (k >= 1)
    if k > 1:  j = splitmix64(seed + (d + 1) * 0x9E3779B97F4A7C15) mod k;  d += 1
    else:      j = 0 (no draw)
    choose the j-th of those k nodes in node-name order

``d`` counts draws made so far by this scheduler. The choice depends only on
the *set* of top nodes, which the exhaustive scan, the segment tree and the
reference all compute exactly, and on how many draws came before — the same
on every path because every path makes the same decisions in the same order.
The modulo bias (k / 2**64) is negligible.
"""
from __future__ import annotations

__all__ = ["MASK64", "draw"]

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


def draw(seed: int, counter: int, k: int) -> int:
    """Draw number ``counter`` (0-based) of a scheduler seeded with ``seed``, in [0, k)."""
    z = (seed + (counter + 1) * _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _C1) & MASK64
    z = ((z ^ (z >> 27)) * _C2) & MASK64
    z ^= z >> 31
    return z % k
