"""Per-key exponential back-off with an injected clock: crash loops and image pulls.

kube's shape: the first failure is retried at once; from then on each retry
waits base, 2·base, ... up to max. A key left alone for `reset_after` (a
container that ran long enough) starts over."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Entry:
    delay: float
    last_update: float


@dataclass
class Backoff:
    base: float = 10.0
    max: float = 300.0
    reset_after: float = 600.0
    entries: dict = field(default_factory=dict)

    def next(self, key, now: float) -> float:
        """Record a failure at `now`; returns the delay before the next try."""
        e = self.entries.get(key)
        if e is None or now - e.last_update > self.reset_after:
            e = _Entry(self.base, now)
        else:
            e = _Entry(min(e.delay * 2, self.max), now)
        self.entries[key] = e
        return e.delay

    def delay(self, key) -> float:
        e = self.entries.get(key)
        return e.delay if e is not None else 0.0

    def in_backoff_since(self, key, since: float, now: float) -> bool:
        """True while `now` is within the current delay after `since` (the last exit)."""
        e = self.entries.get(key)
        if e is None:
            return False
        if now - e.last_update > self.reset_after:
            return False
        return now - since < e.delay

    def reset(self, key) -> None:
        self.entries.pop(key, None)

    def gc(self, now: float) -> None:
        for k in [k for k, e in self.entries.items() if now - e.last_update > 2 * self.max]:
            del self.entries[k]
