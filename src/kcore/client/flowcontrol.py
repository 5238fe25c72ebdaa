"""Token buckets: client-side request limits (QPS/burst) and the workqueue's
overall rate limiter. Time is injected (`clock`), so tests step it by hand."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`qps` tokens per second, at most `burst` saved up. `reserve()` takes a token
    now and returns how long the caller must wait before using it (0: at once),
    exactly as golang.org/x/time/rate's Reservation.Delay does."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.qps, self.burst = float(qps), max(int(burst), 1)
        self.clock = clock
        self.tokens = float(self.burst)
        self.last = clock()

    def _advance(self) -> float:
        now = self.clock()
        if now > self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
            self.last = now
        return now

    def reserve(self) -> float:
        self._advance()
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    def try_accept(self) -> bool:
        self._advance()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    async def wait(self) -> None:
        d = self.reserve()
        if d > 0:
            await asyncio.sleep(d)
