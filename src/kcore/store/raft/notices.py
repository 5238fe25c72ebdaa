"""Commit notices: the leader's appends that bring a follower nothing but a
newer commit index, held back for a moment.

After every commit the raft core broadcasts an append without entries to each
follower (as etcd-io/raft does), so followers learn the new commit index and
apply. A follower that has already acknowledged everything gains nothing else
from that message, and in a 3-member cluster it costs the leader two socket
sends per write and each follower a wake-up and a decode: on this 2-core
machine ~0.2 ms of CPU per write across the members, and those sends and
wake-ups compete for the cores with the next write's critical path.

Any later append or heartbeat to the same follower carries the leader's commit
index too, so the notice is held for up to ``delay`` seconds: a message that
goes to the follower meanwhile with a commit index at least as new makes it
unnecessary (under load the next write's append does); otherwise it is sent
when ``delay`` is up. Raft's safety does not depend on when a follower learns the commit
index; what moves is how fresh a follower's applied state is (its
serializable reads and its watchers lag by at most ``delay`` when the leader
goes quiet, and by one write under load). Linearizable reads through a
follower are unaffected: the ReadIndex round's heartbeat carries the commit
index.

Pure logic: the caller passes the clock and arms the timer.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from kcore.store.raft.messages import Message, MessageType

APP = MessageType.APP
CARRIES_COMMIT = frozenset({MessageType.APP, MessageType.HEARTBEAT})


class CommitNotices:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.held: dict[int, tuple[float, Message]] = {}   # follower → (held since, newest)

    def filter(self, msgs: Iterable[Message], now: float,
               is_notice: Callable[[Message], bool]) -> list[Message]:
        """The messages to send now. ``is_notice(m)`` says whether an append only
        brings a newer commit index to a follower that has all the entries; those
        are held instead (the newest per follower, since the oldest still held)."""
        out = []
        held = self.held
        for m in msgs:
            to = m.to
            if m.type == APP and not m.entries and self.delay > 0 and is_notice(m):
                h = held.get(to)
                if h is None:
                    held[to] = (now, m)
                elif (h[1].term, h[1].commit) <= (m.term, m.commit):
                    held[to] = (h[0], m)
                continue
            if held and m.type in CARRIES_COMMIT:
                h = held.get(to)
                if h is not None and (h[1].term, h[1].commit) <= (m.term, m.commit):
                    del held[to]
            out.append(m)
        return out

    def due(self, now: float) -> tuple[list[Message], float | None]:
        """The held notices to send now (held for ``delay``), and when to look
        again (None: nothing left held)."""
        out = []
        nxt = None
        for to, (since, m) in list(self.held.items()):
            at = since + self.delay
            if at <= now:
                del self.held[to]
                out.append(m)
            elif nxt is None or at < nxt:
                nxt = at
        return out, nxt

    def clear(self) -> None:
        self.held.clear()
