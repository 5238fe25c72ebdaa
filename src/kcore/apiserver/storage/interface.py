"""The storage contract (what kube calls storage.Interface, reduced to etcd's shape).

Keys and values are bytes; every value carries the revision that last wrote it
(`mod_revision`), which the API server exposes as `metadata.resourceVersion`.
Writes are transactions guarded by `Cond`s on mod revisions (0 = absent): a
create is `Cond(key, 0)`, an update `Cond(key, rv)`, and admission can add its
own guards and writes (e.g. a ResourceQuota's usage) to the same transaction.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Cond:
    """Holds when key's mod_revision equals mod_revision (0: the key is absent)."""
    key: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


@dataclass(slots=True)
class TxnResult:
    succeeded: bool
    revision: int                       # store revision after (or at) the txn
    current: dict[bytes, KV | None] = field(default_factory=dict)  # on failure: guarded keys now


class WatchEvent(NamedTuple):
    """A tuple: made straight from the store client's change tuples (`_make`), and of
    atoms only, so the collector stops tracking it at its first pass."""

    type: str                           # "PUT" | "DELETE"
    key: bytes
    value: bytes                        # b"" for DELETE
    mod_revision: int                   # revision of this event


class StorageCompacted(Exception):
    """A read or watch asked for a revision older than the store's compaction."""

    def __init__(self, compact_revision: int = 0):
        super().__init__(f"required revision has been compacted ({compact_revision})")
        self.compact_revision = compact_revision


class Storage(Protocol):
    async def get(self, key: bytes) -> tuple[KV | None, int]: ...
    async def list(self, prefix: bytes, revision: int = 0, start: bytes | None = None,
                   limit: int = 0) -> tuple[list[KV], int, bool]: ...
    async def txn(self, conds: list[Cond], ops: list[Put | Delete]) -> TxnResult: ...
    def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[list[WatchEvent]]: ...
    async def revision(self) -> int: ...
    async def grant_lease(self, ttl: int) -> int: ...
    async def compact(self, revision: int) -> None: ...
    async def health(self) -> None: ...
    async def close(self) -> None: ...
