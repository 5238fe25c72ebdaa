"""Leases: time-to-live handles that delete their keys when they expire.

Grants and revocations are replicated requests (applied through the log);
keep-alives only move an in-memory deadline, as in etcd. Deadlines are not
persisted: after a restart every lease gets its full TTL again. The clock is
injected, so the lessor is a pure object that tests drive by hand.
"""
from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lmdb

from kcore.store import errors
from kcore.store.backend import Backend

MAX_LEASE_TTL = 9_000_000_000
_LEASE = struct.Struct(">qq")  # ttl, remaining ttl (checkpoint; 0 = none)
_ID = struct.Struct(">q")


@dataclass(slots=True, eq=False)
class Lease:
    id: int
    ttl: int
    expiry: float = math.inf
    keys: set[bytes] = field(default_factory=set)

    def remaining(self, now: float) -> float:
        return max(0.0, self.expiry - now)


class Lessor:
    def __init__(self, backend: Backend, min_ttl: int = 2,
                 clock: Callable[[], float] = time.monotonic):
        self.backend = backend
        self.min_ttl = min_ttl
        self.clock = clock
        self.leases: dict[int, Lease] = {}
        self.primary = False
        with backend.env.begin() as txn:
            for k, v in txn.cursor(db=backend.lease):
                lid = _ID.unpack(k)[0]
                ttl, _ = _LEASE.unpack(v)
                self.leases[lid] = Lease(lid, ttl)

    # -- replicated operations (called by the applier inside a write txn) -----------
    def grant(self, txn: lmdb.Transaction, lease_id: int, ttl: int) -> Lease:
        if ttl > MAX_LEASE_TTL:
            raise errors.LeaseTTLTooLarge()
        if lease_id in self.leases:
            raise errors.LeaseExists()
        ttl = max(ttl, self.min_ttl)
        lease = Lease(lease_id, ttl)
        if self.primary:
            lease.expiry = self.clock() + ttl
        self.leases[lease_id] = lease
        txn.put(_ID.pack(lease_id), _LEASE.pack(ttl, 0), db=self.backend.lease)
        return lease

    def revoke(self, txn: lmdb.Transaction, lease_id: int) -> Lease:
        """Forget the lease; the caller deletes the returned lease's keys."""
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise errors.LeaseNotFound()
        txn.delete(_ID.pack(lease_id), db=self.backend.lease)
        return lease

    def attach(self, lease_id: int, key: bytes) -> None:
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    # -- local operations -----------------------------------------------------------
    def lookup(self, lease_id: int) -> Lease | None:
        return self.leases.get(lease_id)

    def promote(self, extend: float = 0.0) -> None:
        """This member now expires leases: every deadline restarts at a full TTL."""
        self.primary = True
        now = self.clock()
        for lease in self.leases.values():
            lease.expiry = now + lease.ttl + extend

    def demote(self) -> None:
        self.primary = False
        for lease in self.leases.values():
            lease.expiry = math.inf

    def renew(self, lease_id: int) -> int:
        """Keep-alive: restart the deadline; returns the TTL."""
        lease = self.leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        if self.primary:
            lease.expiry = self.clock() + lease.ttl
        return lease.ttl

    def remaining_ttl(self, lease: Lease) -> int:
        """Seconds left, truncated as etcd reports them."""
        if not self.primary:
            return lease.ttl
        return int(lease.remaining(self.clock()))

    def expired(self, limit: int = 1000) -> list[int]:
        if not self.primary:
            return []
        now = self.clock()
        out = [lid for lid, lease in self.leases.items() if lease.expiry <= now]
        return out[:limit]
