"""The in-memory key index: for every key, the revisions at which it changed.

etcd keeps only this index in memory and the values on disk; so does kcore.
A revision is (main, sub): main is the store revision of a write transaction,
sub the position of the change inside it. The index packs a revision and a
tombstone flag into one int, so a key's history is a sorted list of ints and
"what was visible at revision R" is one bisect.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from sortedcontainers import SortedList

SUB_BITS = 19           # up to 524,287 changes in one transaction
MAIN_SHIFT = SUB_BITS + 1
MAX_SUB = (1 << SUB_BITS) - 1


def pack(main: int, sub: int, tomb: bool = False) -> int:
    return (main << MAIN_SHIFT) | (sub << 1) | (1 if tomb else 0)


def main_of(p: int) -> int:
    return p >> MAIN_SHIFT


def sub_of(p: int) -> int:
    return (p >> 1) & MAX_SUB


def is_tomb(p: int) -> bool:
    return bool(p & 1)


class KeyRecord:
    """History of one key. `create`, `version` and `lease` describe the live
    generation (meaningful only while the last revision is not a tombstone)."""

    __slots__ = ("revs", "create", "version", "lease")

    def __init__(self) -> None:
        self.revs: list[int] = []
        self.create = 0
        self.version = 0
        self.lease = 0

    @property
    def alive(self) -> bool:
        return bool(self.revs) and not (self.revs[-1] & 1)

    def visible(self, rev: int) -> int | None:
        """The packed revision visible at store revision `rev`, or None if the key
        did not exist then."""
        revs = self.revs
        last = revs[-1]
        if (last >> MAIN_SHIFT) <= rev:
            p = last
        else:
            i = bisect_right(revs, ((rev + 1) << MAIN_SHIFT) - 1)
            if i == 0:
                return None
            p = revs[i - 1]
        return None if p & 1 else p

    def compact(self, rev: int) -> list[int]:
        """Drop history that no read at revision >= `rev` can see; return the
        packed revisions removed. Keeps the latest live revision <= rev."""
        revs = self.revs
        i = bisect_right(revs, ((rev + 1) << MAIN_SHIFT) - 1)
        if i == 0:
            return []
        keep_from = i if revs[i - 1] & 1 else i - 1
        removed = revs[:keep_from]
        del revs[:keep_from]
        return removed


class KeyIndex:
    """Keys in byte order, each with its KeyRecord.

    New keys join the sorted order lazily: writes only append them to a pending
    list, and the next ordered read merges the batch in one go (a write-heavy
    store rarely reads ranges between two writes)."""

    def __init__(self) -> None:
        self.records: dict[bytes, KeyRecord] = {}
        self._sorted = SortedList()
        self._pending: list[bytes] = []

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sorted(self) -> SortedList:
        if self._pending:
            self._sorted.update(self._pending)
            self._pending = []
        return self._sorted

    def get(self, key: bytes) -> KeyRecord | None:
        return self.records.get(key)

    def get_or_create(self, key: bytes) -> KeyRecord:
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = KeyRecord()
            self._pending.append(key)
        return rec

    def add_all(self, keys) -> None:
        """Bulk load (start-up): keys already in `records`."""
        self._pending.extend(keys)

    def remove(self, key: bytes) -> None:
        if self.records.pop(key, None) is not None:
            self.sorted.remove(key)

    def keys_in(self, start: bytes, end: bytes | None) -> Iterator[bytes]:
        """Keys in [start, end); end None means a single key, b'' means no upper bound."""
        if end is None:
            if start in self.records:
                yield start
            return
        if end == b"":
            yield from self.sorted.irange(start, None)
        elif end > start:
            yield from self.sorted.irange(start, end, inclusive=(True, False))
