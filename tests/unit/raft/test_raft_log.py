"""The log, storage, flow-control and codec pieces on their own."""
from __future__ import annotations

import pytest

from kcore.store.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    LogCompacted,
    LogUnavailable,
    MemoryStorage,
    Message,
    MessageType,
    RaftLog,
    Snapshot,
    SnapshotOutOfDate,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot,
)
from kcore.store.raft.quorum import Inflights, Progress, ProgressState, committed_index


def ents(*terms, start=1):
    return [Entry(t, start + i) for i, t in enumerate(terms)]


def storage(*terms):
    st = MemoryStorage()
    st.append(ents(*terms))
    return st


# -- MemoryStorage ------------------------------------------------------------------

def test_storage_append_replaces_a_conflicting_tail():
    st = storage(1, 1, 1)
    st.append([Entry(2, 2), Entry(2, 3), Entry(2, 4)])
    assert [st.term(i) for i in range(1, 5)] == [1, 2, 2, 2]
    with pytest.raises(ValueError):
        st.append([Entry(3, 9)])  # a gap


def test_storage_compact_snapshot_and_bounds():
    st = storage(1, 1, 2, 2, 3)
    snap = st.create_snapshot(3, ConfState((1, 2)), b"d")
    assert (snap.index, snap.term, snap.data) == (3, 2, b"d")
    st.compact(3)
    assert (st.first_index(), st.last_index()) == (4, 5)
    assert st.term(3) == 2  # the dummy entry keeps the term
    with pytest.raises(LogCompacted):
        st.term(2)
    with pytest.raises(LogCompacted):
        st.entries(3, 5)
    with pytest.raises(LogUnavailable):
        st.term(7)
    with pytest.raises(SnapshotOutOfDate):
        st.create_snapshot(2, None, b"")
    assert st.initial_state() == (HardState(), ConfState((1, 2)))


def test_storage_apply_snapshot_resets_the_log():
    st = storage(1, 1)
    st.apply_snapshot(Snapshot(10, 4, ConfState((1,)), b"s"))
    assert (st.first_index(), st.last_index(), st.term(10)) == (11, 10, 4)
    with pytest.raises(SnapshotOutOfDate):
        st.apply_snapshot(Snapshot(9, 4))


def test_entries_size_limit_returns_at_least_one():
    st = MemoryStorage()
    st.append([Entry(1, i, data=b"x" * 10) for i in range(1, 6)])
    assert len(st.entries(1, 6, 0)) == 1
    assert len(st.entries(1, 6, 52)) == 2  # 26 bytes each with overhead
    assert len(st.entries(1, 6, 1 << 30)) == 5


# -- RaftLog ----------------------------------------------------------------------------

def test_maybe_append_truncates_only_on_conflict():
    log = RaftLog(storage(1, 1, 2))
    assert log.maybe_append(3, 2, 0, [Entry(3, 4)]) == 4
    assert log.maybe_append(1, 1, 0, [Entry(1, 2)]) == 2  # a stale duplicate: no truncation
    assert log.last_index() == 4
    assert log.maybe_append(1, 1, 2, [Entry(4, 2)]) == 2  # conflict at 2: tail dropped
    assert [(e.index, e.term) for e in log.all_entries()] == [(1, 1), (2, 4)]
    assert log.committed == 2
    assert log.maybe_append(5, 4, 2, []) is None  # we lack index 5


def test_commit_from_append_is_capped_at_the_verified_prefix():
    log = RaftLog(storage(1, 1, 1, 1))
    assert log.maybe_append(1, 1, 4, [Entry(1, 2)]) == 2
    assert log.committed == 2  # entries 3 and 4 were not verified by this message


def test_find_conflict_by_term():
    log = RaftLog(storage(1, 1, 3, 3, 5, 5))
    assert log.find_conflict_by_term(6, 4) == 4
    assert log.find_conflict_by_term(6, 2) == 2
    assert log.find_conflict_by_term(6, 9) == 6
    assert log.find_conflict_by_term(6, 0) == 0


def test_is_up_to_date():
    log = RaftLog(storage(1, 2, 2))
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_unstable_entries_become_stable_and_committed_ones_are_handed_out():
    st = storage(1, 1)
    log = RaftLog(st)
    log.append([Entry(2, 3), Entry(2, 4)])
    assert [e.index for e in log.unstable_entries()] == [3, 4]
    log.commit_to(4)
    assert [e.index for e in log.next_committed_entries()] == [1, 2, 3, 4]
    st.append(log.unstable_entries())
    log.stable_to(4, 2)
    assert log.unstable_entries() == []
    log.applied_to(4)
    assert not log.has_next_committed_entries()
    with pytest.raises(AssertionError):
        log.commit_to(9)


def test_stable_to_ignores_a_replaced_entry():
    log = RaftLog(storage(1))
    log.append([Entry(2, 2)])
    log.append([Entry(3, 2)])  # replaced before it was persisted
    log.stable_to(2, 2)
    assert [e.term for e in log.unstable_entries()] == [3]


def test_log_restored_from_snapshot():
    log = RaftLog(storage(1, 1))
    log.restore(Snapshot(20, 5, ConfState((1,))))
    assert (log.first_index(), log.last_index(), log.committed, log.term(20)) == (21, 20, 20, 5)
    with pytest.raises(LogCompacted):
        log.term(5)


def test_restart_starts_applied_at_the_snapshot_even_below_first_index():
    st = storage(1, 1, 1, 1)
    st.create_snapshot(3, ConfState((1,)), b"")
    st.compact(2)  # keeps entry 3 although the snapshot covers it
    st.set_hard_state(HardState(1, 0, 4))
    log = RaftLog(st)
    assert log.applied == 3


# -- flow control and quorum -------------------------------------------------------------

def test_inflights_window():
    f = Inflights(3)
    for i in (5, 7, 9):
        f.add(i)
    assert f.full()
    f.free_le(7)
    assert f.count() == 1 and not f.full()
    f.free_first_one()
    assert f.count() == 0


def test_progress_probe_and_replicate_transitions():
    pr = Progress(10, 4)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()
    assert not pr.maybe_decr_to(5, 3)  # stale rejection
    assert pr.maybe_decr_to(9, 3) and pr.next == 4 and not pr.is_paused()
    assert pr.maybe_update(6)
    pr.become_replicate()
    assert pr.next == 7
    pr.optimistic_update(12)
    assert pr.maybe_decr_to(12, 0) and pr.next == 7  # back to match + 1
    pr.become_snapshot(30)
    assert pr.is_paused()
    pr.become_probe()
    assert pr.next == 31


def test_committed_index_is_the_majority_match():
    prs = {i: Progress(1, 1, match=m) for i, m in zip((1, 2, 3, 4, 5), (9, 3, 7, 5, 1))}
    assert committed_index(frozenset({1, 2, 3, 4, 5}), prs) == 5
    assert committed_index(frozenset({1, 2, 3}), prs) == 7
    assert committed_index(frozenset({1, 2}), prs) == 3
    assert committed_index(frozenset(), prs) == 0


# -- codec -------------------------------------------------------------------------------

def test_message_codec_round_trip():
    snap = Snapshot(7, 3, ConfState((1, 2), (3,)), b"state")
    m = Message(MessageType.APP, to=2, from_=1, term=3, log_term=2, index=6,
                entries=(Entry(3, 7, EntryType.NORMAL, b"a"),
                         Entry(3, 8, EntryType.CONF_CHANGE,
                               ConfChange(ConfChangeType.ADD_NODE, 4, b"u").encode())),
                commit=5, snapshot=snap, reject=True, reject_hint=4, context=b"ctx")
    assert decode_message(encode_message(m)) == m
    assert decode_message(encode_message(Message(MessageType.HEARTBEAT))) == \
        Message(MessageType.HEARTBEAT)


def test_entry_hard_state_snapshot_codecs():
    e = Entry(2, 9, EntryType.CONF_CHANGE, b"\x00\x01")
    assert decode_entry(encode_entry(e)) == e
    hs = HardState(5, 2, 40)
    assert decode_hard_state(encode_hard_state(hs)) == hs
    s = Snapshot(3, 1, ConfState((1,)), b"x")
    assert decode_snapshot(encode_snapshot(s)) == s
    cc = ConfChange(ConfChangeType.REMOVE_NODE, 3)
    assert ConfChange.decode(cc.encode()) == cc


def test_values_are_immutable():
    e = Entry(1, 1)
    with pytest.raises(AttributeError):
        e.term = 2


def test_enum_constants_name_their_members():
    # the hot paths compare against module constants unpacked from the enums in
    # definition order: each must be the member of its own name
    from kcore.store.raft import messages, quorum
    for mod, prefix, enum in ((messages, "MT", messages.MessageType),
                              (messages, "ENTRY", messages.EntryType),
                              (messages, "ROLE", messages.Role),
                              (quorum, "VOTE", quorum.VoteResult),
                              (quorum, "PS", quorum.ProgressState)):
        for member in enum:
            assert getattr(mod, f"{prefix}_{member.name}") is member
