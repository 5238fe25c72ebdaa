"""Who counts: the voter/learner sets, votes, and per-peer replication progress.

A majority of `voters` decides elections, commits and ReadIndex
confirmations; learners only receive the log. `Progress` is the leader's
flow-control view of one peer (probe / replicate / snapshot, with an
inflight window for pipelined appends).
"""
from __future__ import annotations

from collections import deque
from enum import IntEnum

from .messages import ConfState


class VoteResult(IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


class ProgressState(IntEnum):
    PROBE = 0      # one append per heartbeat/response, until we find the match
    REPLICATE = 1  # optimistic pipelining: next advances on send
    SNAPSHOT = 2   # waiting for report_snapshot() / a response past the snapshot


(VOTE_PENDING, VOTE_LOST, VOTE_WON) = VoteResult
(PS_PROBE, PS_REPLICATE, PS_SNAPSHOT) = ProgressState


class Inflights:
    """Last indexes of in-flight appends, oldest first, at most `cap` of them."""

    __slots__ = ("cap", "q")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.q: deque[int] = deque()

    def add(self, last: int) -> None:
        if len(self.q) >= self.cap:
            raise AssertionError("cannot add into a full inflights")
        self.q.append(last)

    def free_le(self, to: int) -> None:
        q = self.q
        while q and q[0] <= to:
            q.popleft()

    def free_first_one(self) -> None:
        if self.q:
            self.q.popleft()

    def full(self) -> bool:
        return len(self.q) >= self.cap

    def count(self) -> int:
        return len(self.q)

    def reset(self) -> None:
        self.q.clear()


class Progress:
    """The leader's view of one follower (or learner)."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_: int, max_inflight: int, *, match: int = 0,
                 is_learner: bool = False, recent_active: bool = False) -> None:
        self.match = match
        self.next = next_
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = recent_active
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (f"Progress({self.state.name} match={self.match} next={self.next}"
                f"{' learner' if self.is_learner else ''}"
                f"{' paused' if self.is_paused() else ''}"
                f"{f' pending_snap={self.pending_snapshot}' if self.pending_snapshot else ''}"
                f" inflight={self.inflights.count()})")

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == PS_SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(PS_PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(PS_PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(PS_REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(PS_SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An ack up to n: returns whether match moved."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append after `rejected`: move next back (to just
        past `match_hint`, the follower's conflict hint). False if stale."""
        if self.state == PS_REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == PS_PROBE:
            return self.probe_sent
        if self.state == PS_REPLICATE:
            return self.inflights.full()
        return True


def committed_index(voters: frozenset[int], progress: dict[int, Progress]) -> int:
    """Highest index matched by a majority of voters (0 without voters)."""
    n = len(voters)
    if n == 0:
        return 0
    matches = sorted((progress[v].match for v in voters), reverse=True)
    return matches[n // 2]


def vote_result(voters: frozenset[int], votes: dict[int, bool]) -> VoteResult:
    if not voters:
        return VOTE_WON
    granted = rejected = 0
    for v in voters:
        r = votes.get(v)
        if r is True:
            granted += 1
        elif r is False:
            rejected += 1
    q = len(voters) // 2 + 1
    if granted >= q:
        return VOTE_WON
    if granted + (len(voters) - granted - rejected) >= q:
        return VOTE_PENDING
    return VOTE_LOST


class ProgressTracker:
    """The configuration (voters, learners) and each member's Progress."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def committed(self) -> int:
        return committed_index(self.voters, self.progress)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        return granted, rejected, vote_result(self.voters, self.votes)

    def vote_result_of(self, votes: dict[int, bool]) -> VoteResult:
        return vote_result(self.voters, votes)

    def quorum_active(self) -> bool:
        active = {v: True for v in self.voters if self.progress[v].recent_active}
        return vote_result(self.voters, active) == VOTE_WON
