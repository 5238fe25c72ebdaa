"""Raft's immutable values: entries, messages, hard/soft state, snapshots.

Everything here is immutable -- a named tuple (the values made per message:
entries, messages, hard and soft state; a tuple is built 3-4x faster than a
frozen dataclass), a frozen dataclass, or an int enum -- so a value handed out
in a `Ready` can be kept by the driver without copying and can never be
changed behind the state machine's back.

The module also holds the wire codec the transport and the WAL use
(`encode_message`/`decode_message`, `encode_entry`/`decode_entry`, ...):
msgpack arrays in field order, small and fast, no schema files.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import msgpack

NONE = 0  # "no node": ids start at 1


class MessageType(IntEnum):
    """Message kinds, as in etcd-io/raft. Local ones never cross the wire."""

    HUP = 0               # local: start an election (tick or campaign())
    BEAT = 1              # local: leader sends heartbeats
    PROP = 2              # propose entries (local, or forwarded by a follower)
    APP = 3               # append entries
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7              # install snapshot
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10      # local: report_unreachable()
    SNAP_STATUS = 11      # local: report_snapshot()
    CHECK_QUORUM = 12     # local: leader checks it still hears from a quorum
    TRANSFER_LEADER = 13  # ask the leader to hand leadership to `from_`
    TIMEOUT_NOW = 14      # leader tells the transferee to campaign at once
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


# The members as plain module constants for the hot paths: an attribute of an
# enum class is looked up through its metaclass (0.12 us in Python 3.11), a
# global is not (0.02 us). Unpacked in definition order; a test checks the names.
(MT_HUP, MT_BEAT, MT_PROP, MT_APP, MT_APP_RESP, MT_VOTE, MT_VOTE_RESP, MT_SNAP,
 MT_HEARTBEAT, MT_HEARTBEAT_RESP, MT_UNREACHABLE, MT_SNAP_STATUS, MT_CHECK_QUORUM,
 MT_TRANSFER_LEADER, MT_TIMEOUT_NOW, MT_READ_INDEX, MT_READ_INDEX_RESP,
 MT_PRE_VOTE, MT_PRE_VOTE_RESP) = MessageType

LOCAL_MESSAGES = frozenset({
    MessageType.HUP, MessageType.BEAT, MessageType.UNREACHABLE,
    MessageType.SNAP_STATUS, MessageType.CHECK_QUORUM,
})
RESPONSE_MESSAGES = frozenset({
    MessageType.APP_RESP, MessageType.VOTE_RESP, MessageType.HEARTBEAT_RESP,
    MessageType.UNREACHABLE, MessageType.PRE_VOTE_RESP,
})


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


(ENTRY_NORMAL, ENTRY_CONF_CHANGE) = EntryType


class ConfChangeType(IntEnum):
    ADD_NODE = 0          # add a voter, or promote a learner
    REMOVE_NODE = 1       # remove a voter or a learner
    ADD_LEARNER_NODE = 2  # add a learner (a no-op for an existing voter)


class Role(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


(ROLE_FOLLOWER, ROLE_CANDIDATE, ROLE_LEADER, ROLE_PRE_CANDIDATE) = Role


class Entry(NamedTuple):
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


class HardState(NamedTuple):
    """What must be on disk before messages that depend on it are sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


EMPTY_HARD_STATE = HardState()


class SoftState(NamedTuple):
    """Volatile, for the driver's information only (never persisted)."""

    leader: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state as of log position (index, term), plus the
    membership at that position. `data` is opaque to raft."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = ConfState()
    data: bytes = b""


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; stored encoded in an EntryType.CONF_CHANGE entry."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return msgpack.packb((int(self.type), self.node_id, self.context))

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        t, node_id, ctx = msgpack.unpackb(data)
        return ConfChange(ConfChangeType(t), node_id, ctx)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex result: reads issued with `request_ctx` are linearizable
    once the local state machine has applied `index`."""

    index: int
    request_ctx: bytes


class Message(NamedTuple):
    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


# -- codec -------------------------------------------------------------------

def _entry_tuple(e: Entry) -> tuple:
    return (e.term, e.index, int(e.type), e.data)


_ENTRY_TYPES = {int(t): t for t in EntryType}       # a dict lookup, not an enum call
_MESSAGE_TYPES = {int(t): t for t in MessageType}


def _entry_from(t) -> Entry:
    et = _ENTRY_TYPES.get(t[2]) if type(t[2]) is int else None
    return Entry(t[0], t[1], EntryType(t[2]) if et is None else et, t[3])


def _snapshot_tuple(s: Snapshot) -> tuple:
    return (s.index, s.term, s.conf_state.voters, s.conf_state.learners, s.data)


def _snapshot_from(t) -> Snapshot:
    return Snapshot(t[0], t[1], ConfState(tuple(t[2]), tuple(t[3])), t[4])


def encode_message(m: Message) -> bytes:
    return msgpack.packb((
        int(m.type), m.to, m.from_, m.term, m.log_term, m.index,
        [_entry_tuple(e) for e in m.entries], m.commit,
        None if m.snapshot is None else _snapshot_tuple(m.snapshot),
        m.reject, m.reject_hint, m.context,
    ))


def decode_message(data: bytes) -> Message:
    (t, to, frm, term, log_term, index, ents, commit, snap, reject, hint,
     ctx) = msgpack.unpackb(data)
    mt = _MESSAGE_TYPES.get(t) if type(t) is int else None
    return Message(
        MessageType(t) if mt is None else mt, to, frm, term, log_term, index,
        tuple([_entry_from(e) for e in ents]) if ents else (), commit,
        None if snap is None else _snapshot_from(snap), reject, hint, ctx,
    )


def encode_entry(e: Entry) -> bytes:
    return msgpack.packb(_entry_tuple(e))


def decode_entry(data: bytes) -> Entry:
    return _entry_from(msgpack.unpackb(data))


def encode_hard_state(hs: HardState) -> bytes:
    return msgpack.packb((hs.term, hs.vote, hs.commit))


def decode_hard_state(data: bytes) -> HardState:
    return HardState(*msgpack.unpackb(data))


def encode_snapshot(s: Snapshot) -> bytes:
    return msgpack.packb(_snapshot_tuple(s))


def decode_snapshot(data: bytes) -> Snapshot:
    return _snapshot_from(msgpack.unpackb(data))


ENTRY_OVERHEAD = 16  # bytes counted per entry on top of its data, for size limits


def entry_size(e: Entry) -> int:
    return len(e.data) + ENTRY_OVERHEAD
