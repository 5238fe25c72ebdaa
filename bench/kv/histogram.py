"""A mergeable latency histogram with bounded relative error.

Each generator process records its own latencies; the parent adds the
histograms together, so percentiles are computed over every call of the run
without shipping raw samples between processes.

Buckets are log-linear over integer microseconds: values below
``2 * SUB`` get one bucket per microsecond, and every power of two above
that is split into ``SUB`` equal buckets, so a bucket is at most 1/SUB
(1.6 % with SUB = 64) wider than its lower bound. A percentile is reported as
the midpoint of the bucket holding it (clamped to the exact min and max).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

SUB_BITS = 6
SUB = 1 << SUB_BITS          # sub-buckets per power of two
_EXACT = SUB << 1            # values below this have a bucket of their own


def bucket_of(us: int) -> int:
    """Index of the bucket holding ``us`` microseconds (negative counts as 0)."""
    if us < _EXACT:
        return max(us, 0)
    shift = us.bit_length() - (SUB_BITS + 1)
    return _EXACT + (shift - 1) * SUB + ((us >> shift) - SUB)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) microseconds covered by bucket ``index``."""
    if index < _EXACT:
        return index, index + 1
    shift = (index - _EXACT) // SUB + 1
    mantissa = (index - _EXACT) % SUB + SUB
    return mantissa << shift, (mantissa + 1) << shift


@dataclass
class Histogram:
    """Counts per bucket plus the exact count, sum, min and max (microseconds)."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None

    def record_many(self, values_us: Iterable[int]) -> None:
        exact = Counter(values_us)
        for us, n in exact.items():
            b = bucket_of(us)
            self.counts[b] = self.counts.get(b, 0) + n
            self.count += n
            self.total_us += us * n
        if exact:
            lo, hi = min(exact), max(exact)
            self.min_us = lo if self.min_us is None else min(self.min_us, lo)
            self.max_us = hi if self.max_us is None else max(self.max_us, hi)

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding the samples of both."""
        out = Histogram(dict(self.counts), self.count, self.total_us, self.min_us, self.max_us)
        for b, n in other.counts.items():
            out.counts[b] = out.counts.get(b, 0) + n
        out.count += other.count
        out.total_us += other.total_us
        mins = [m for m in (self.min_us, other.min_us) if m is not None]
        maxs = [m for m in (self.max_us, other.max_us) if m is not None]
        out.min_us = min(mins) if mins else None
        out.max_us = max(maxs) if maxs else None
        return out

    def quantile_us(self, q: float) -> float | None:
        """The value below which a fraction ``q`` of samples fall (nearest rank)."""
        if not self.count:
            return None
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} outside [0, 1]")
        rank = max(1, math.ceil(q * self.count - 1e-9))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                lo, hi = bucket_bounds(b)
                mid = (lo + hi - 1) / 2
                return float(min(max(mid, self.min_us), self.max_us))
        return float(self.max_us)

    def mean_us(self) -> float | None:
        return self.total_us / self.count if self.count else None

    def to_json(self) -> dict:
        return {
            "counts": {str(b): n for b, n in sorted(self.counts.items())},
            "count": self.count, "total_us": self.total_us,
            "min_us": self.min_us, "max_us": self.max_us,
        }

    @classmethod
    def from_json(cls, data: dict) -> Histogram:
        return cls({int(b): n for b, n in data["counts"].items()}, data["count"],
                   data["total_us"], data["min_us"], data["max_us"])


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for h in histograms:
        out = out.merge(h)
    return out
