"""Expectations: what a controller has asked for and not yet seen in its informer.

A replica controller that creates 3 pods must not create 3 more on the next
sync just because the watch has not delivered them yet. It records
"expect 3 creations" for the owner's key; each pod add seen through the
informer lowers the count; syncs that would act on the pod count wait until
the expectations are satisfied (or expire after 5 minutes, in case an event
was lost). Deletions are tracked by pod key, so a pod deleted by someone
else does not count as one of ours.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Record:
    add: int = 0
    delete: int = 0
    timestamp: float = 0.0
    deleting: set[str] = field(default_factory=set)


class Expectations:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock, self.timeout = clock, timeout
        self.records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        r = self.records.get(key)
        if r is None:
            return True
        if r.add <= 0 and r.delete <= 0:
            return True
        return self.clock() - r.timestamp > self.timeout

    def expect_creations(self, key: str, n: int) -> None:
        self.records[key] = _Record(add=n, timestamp=self.clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self.records[key] = _Record(delete=len(pod_keys), timestamp=self.clock(),
                                    deleting=set(pod_keys))

    def creation_observed(self, key: str) -> None:
        r = self.records.get(key)
        if r is not None:
            r.add -= 1

    def lower_creations(self, key: str, n: int) -> None:
        r = self.records.get(key)
        if r is not None:
            r.add -= n

    def deletion_observed(self, key: str, pod_key: str) -> None:
        r = self.records.get(key)
        if r is not None and pod_key in r.deleting:
            r.deleting.discard(pod_key)
            r.delete -= 1

    def delete(self, key: str) -> None:
        self.records.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        r = self.records.get(key)
        return (0, 0) if r is None else (max(r.add, 0), max(r.delete, 0))
