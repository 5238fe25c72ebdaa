"""The leader's commit notices (raft/notices.py): which appends are held, what
makes a held one unnecessary, and when the rest go out."""
from __future__ import annotations

from kcore.store.raft.messages import Entry, Message
from kcore.store.raft.messages import MessageType as MT
from kcore.store.raft.notices import CommitNotices


def app(to, commit, term=2, entries=()):
    return Message(MT.APP, to=to, from_=1, term=term, index=10, log_term=term,
                   entries=entries, commit=commit)


def always(_m):
    return True


def test_commit_only_appends_are_held_and_others_pass():
    n = CommitNotices(0.005)
    e = (Entry(2, 11, data=b"x"),)
    hb = Message(MT.HEARTBEAT, to=3, from_=1, term=2, commit=9)
    out = n.filter([app(2, 10), app(3, 10, entries=e), hb], 0.0, always)
    assert [m.to for m in out] == [3, 3]           # the entries and the heartbeat
    assert set(n.held) == {2}


def test_not_a_notice_is_sent_at_once():
    n = CommitNotices(0.005)
    assert n.filter([app(2, 10)], 0.0, lambda m: False) == [app(2, 10)]
    assert not n.held


def test_delay_zero_holds_nothing():
    n = CommitNotices(0.0)
    assert n.filter([app(2, 10)], 0.0, always) == [app(2, 10)]


def test_a_later_message_with_the_commit_makes_the_notice_unnecessary():
    n = CommitNotices(0.005)
    n.filter([app(2, 10), app(3, 10)], 0.0, always)
    e = (Entry(2, 11, data=b"x"),)
    # the next write's append to 2 carries commit 10: 2's notice goes; 3 keeps its own
    assert n.filter([app(2, 10, entries=e)], 0.001, always)[0].to == 2
    assert set(n.held) == {3}
    # a heartbeat with an older commit does not replace the notice
    n.filter([Message(MT.HEARTBEAT, to=3, from_=1, term=2, commit=9)], 0.002, always)
    assert set(n.held) == {3}


def test_held_notices_go_out_when_the_delay_is_up():
    n = CommitNotices(0.005)
    n.filter([app(2, 10)], 1.000, always)
    n.filter([app(2, 11)], 1.003, always)          # newer, keeps the first one's time
    out, nxt = n.due(1.004)
    assert out == [] and abs(nxt - 1.005) < 1e-9
    out, nxt = n.due(1.005)
    assert [m.commit for m in out] == [11] and nxt is None
    assert not n.held


def test_an_older_notice_does_not_replace_a_newer_one():
    n = CommitNotices(0.005)
    n.filter([app(2, 11)], 0.0, always)
    n.filter([app(2, 10)], 0.001, always)
    assert n.held[2][1].commit == 11
    n.filter([app(2, 4, term=3)], 0.002, always)   # a newer term wins
    assert n.held[2][1].term == 3


def test_clear_drops_everything():
    n = CommitNotices(0.005)
    n.filter([app(2, 10), app(3, 10)], 0.0, always)
    n.clear()
    assert n.due(1.0) == ([], None)
