"""The raft log: what is stable (behind `Storage`) plus what is not yet.

`RaftLog` is the state machine's view of the log. Its tail that has not been
handed to the driver for persistence lives in `Unstable`; everything the
driver has persisted is read back through the `Storage` protocol, which the
driver implements (usually `MemoryStorage`, kept in step with the WAL).

Indexes start at 1. Position 0 (or the index of the latest snapshot) is a
"dummy" entry whose term is still known, so the log can always answer
`term(first_index - 1)`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .messages import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    entry_size,
)

NO_LIMIT = 1 << 62


class LogCompacted(Exception):
    """The requested index is older than the latest snapshot."""


class LogUnavailable(Exception):
    """The requested index is not in storage (yet)."""


class SnapshotTemporarilyUnavailable(Exception):
    """Storage cannot produce a snapshot right now; raft retries later."""


class SnapshotOutOfDate(Exception):
    """A snapshot older than the one storage already has."""


class Storage(Protocol):
    """What the state machine reads back from stable storage.

    The driver owns writes: it appends `Ready.entries`, saves
    `Ready.hard_state` and installs `Ready.snapshot` before `advance()`;
    it compacts after taking application snapshots.
    """

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries in [lo, hi), at least one if any, at most `max_size` bytes
        beyond the first. Raises LogCompacted / LogUnavailable."""

    def term(self, i: int) -> int:
        """Term of entry i; i may be first_index()-1. Raises LogCompacted /
        LogUnavailable."""

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot; may raise SnapshotTemporarilyUnavailable."""


def limit_size(ents: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix within `max_size` bytes, but never empty."""
    if max_size >= NO_LIMIT or len(ents) <= 1:
        return ents
    size = entry_size(ents[0])
    for i in range(1, len(ents)):
        size += entry_size(ents[i])
        if size > max_size:
            return ents[:i]
    return ents


class MemoryStorage:
    """In-memory `Storage`, as a cache in front of a WAL or alone in tests.

    `_ents[0]` is the dummy entry standing for the snapshot position.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        """`conf_state` seeds the membership at index 0 (tests, or a member
        started from a known membership). A new cluster should rather be
        started with `RawNode.bootstrap`, which writes the membership into
        the log, where members that join later can replay it."""
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot: Snapshot = (EMPTY_SNAPSHOT if conf_state is None
                                    else Snapshot(conf_state=conf_state))
        self._ents: list[Entry] = [Entry(0, 0)]

    # -- Storage --------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompacted(lo)
        if hi > self.last_index() + 1:
            raise ValueError(f"entries hi {hi} out of bound, last index {self.last_index()}")
        if len(self._ents) == 1:
            raise LogUnavailable(lo)
        return limit_size(self._ents[lo - offset:hi - offset], max_size)

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise LogCompacted(i)
        if i - offset >= len(self._ents):
            raise LogUnavailable(i)
        return self._ents[i - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes (the driver's) ------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the log with a snapshot received from the leader."""
        if snap.index <= self._snapshot.index:
            raise SnapshotOutOfDate(snap.index)
        self._snapshot = snap
        self._ents = [Entry(snap.term, snap.index)]

    def create_snapshot(self, i: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record the application's snapshot at applied index i (then `compact`)."""
        if i <= self._snapshot.index:
            raise SnapshotOutOfDate(i)
        if i > self.last_index():
            raise ValueError(f"snapshot {i} is out of bound, last index {self.last_index()}")
        cs = self._snapshot.conf_state if conf_state is None else conf_state
        self._snapshot = Snapshot(i, self.term(i), cs, data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries before compact_index (it becomes the dummy entry)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise LogCompacted(compact_index)
        if compact_index > self.last_index():
            raise ValueError(f"compact {compact_index} is out of bound, last {self.last_index()}")
        i = compact_index - offset
        self._ents = [Entry(self._ents[i].term, compact_index)] + self._ents[i + 1:]

    def append(self, entries: Sequence[Entry]) -> None:
        """Persist entries; a conflicting suffix of the stored log is replaced."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return
        if first > entries[0].index:
            entries = entries[first - entries[0].index:]
        offset = entries[0].index - self._ents[0].index
        if len(self._ents) > offset:
            del self._ents[offset:]
            self._ents.extend(entries)
        elif len(self._ents) == offset:
            self._ents.extend(entries)
        else:
            raise ValueError(f"missing log entry [last: {self.last_index()}, "
                             f"append at: {entries[0].index}]")


class Unstable:
    """Entries (and maybe a snapshot) not yet handed to storage.

    `entries[i]` has index `offset + i`; `offset` may be below storage's
    last index, in which case the unstable entries replace storage's tail
    when persisted.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.index == i:
                return self.snapshot.term
            return None
        j = i - self.offset
        if j < len(self.entries):
            return self.entries[j].term
        return None

    def stable_to(self, i: int, t: int) -> None:
        if i < self.offset:
            return
        j = i - self.offset
        if j < len(self.entries) and self.entries[j].term == t:
            del self.entries[:j + 1]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replaces the whole unstable tail (and storage's tail from `after`).
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset:]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset:hi - self.offset]


class RaftLog:
    """Storage + unstable tail, with the commit and applied cursors."""

    def __init__(self, storage: Storage, max_next_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Storage may keep a few entries below its snapshot; the snapshot is
        # what the application restarts from, so it is where applied starts.
        try:
            floor = max(first - 1, storage.snapshot().index)
        except SnapshotTemporarilyUnavailable:
            floor = first - 1
        self.committed = floor
        self.applied = floor
        self.max_next_ents_size = max_next_ents_size

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, "
                f"len(unstable)={len(self.unstable.entries)})")

    # -- positions ------------------------------------------------------------
    def first_index(self) -> int:
        snap = self.unstable.snapshot
        return snap.index + 1 if snap is not None else self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, i: int) -> int:
        """Term at i; 0 past the end; LogCompacted before the dummy entry."""
        u = self.unstable
        j = i - u.offset
        if 0 <= j < len(u.entries):
            return u.entries[j].term
        t = u.maybe_term(i) if j < 0 else None
        if t is not None:
            return t
        if i < self.first_index() - 1:
            raise LogCompacted(i)
        if i > self.last_index():
            return 0
        return self.storage.term(i)

    def zero_term_on_compacted(self, i: int) -> int:
        try:
            return self.term(i)
        except (LogCompacted, LogUnavailable):
            return 0

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (LogCompacted, LogUnavailable):
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is a candidate's log (last index, last term) at least as new as ours?"""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # -- reads ----------------------------------------------------------------
    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        if lo > hi:
            raise ValueError(f"invalid slice {lo} > {hi}")
        if lo < self.first_index():
            raise LogCompacted(lo)
        if hi > self.last_index() + 1:
            raise ValueError(f"slice [{lo},{hi}) out of bound [{self.first_index()},"
                             f"{self.last_index()}]")
        if lo == hi:
            return []
        off = self.unstable.offset
        ents: list[Entry] = []
        if lo < off:
            stored = self.storage.entries(lo, min(hi, off), max_size)
            if len(stored) < min(hi, off) - lo:
                return stored  # cut by max_size
            ents = list(stored)
        if hi > off:
            ents.extend(self.unstable.slice(max(lo, off), hi))
        return limit_size(ents, max_size)

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index())

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def has_next_committed_entries(self) -> bool:
        c = self.committed
        return c > self.applied and c >= self.first_index()

    def next_committed_entries(self) -> list[Entry]:
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- writes ---------------------------------------------------------------
    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or that we
        lack); 0 if all of `ents` are already in the log."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= `index` whose term is <= `term` (the reject hint)."""
        while index > 0:
            try:
                t = self.term(index)
            except (LogCompacted, LogUnavailable):
                return index
            if t <= term:
                return index
            index -= 1
        return 0

    def maybe_append(self, index: int, log_term: int, committed: int,
                     ents: Sequence[Entry]) -> int | None:
        """Append after (index, log_term) if we have it; return the new last
        index the leader can count as matched, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflicts with committed entry "
                                     f"[committed({self.committed})]")
            self.append(ents[ci - index - 1:])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: Sequence[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def commit_to(self, to: int) -> None:
        if self.committed < to:
            if self.last_index() < to:
                raise AssertionError(f"commit {to} is out of range [last {self.last_index()}]")
            self.committed = to

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to max_index only if that entry is of `term` (Raft §5.4.2)."""
        if max_index > self.committed and self.zero_term_on_compacted(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(f"applied({i}) out of range [prev applied {self.applied}, "
                                 f"committed {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: Snapshot) -> None:
        self.committed = s.index
        self.unstable.restore(s)
