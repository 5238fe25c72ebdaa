"""The Raft state machine: messages and ticks in, `Ready` out.

No I/O, no clock, no global randomness: the driver calls `tick()` on its
timer, feeds received messages to `step()`, and loops on `ready()`:

1. persist `rd.snapshot` (if any; `MemoryStorage.apply_snapshot`), then
   `rd.entries` (append, replacing any conflicting tail), then
   `rd.hard_state` (if any) -- one atomic, fsynced write when
   `rd.must_sync`;
2. send `rd.messages` (only after 1: votes and acks promise what is on
   disk). For every MsgSnap sent, call `report_snapshot(to, ok)` once its
   delivery is known (ok=False on failure), or replication to that peer
   stays paused;
3. install `rd.snapshot` into the application, then apply
   `rd.committed_entries` in order (for a CONF_CHANGE entry decode it with
   `ConfChange.decode` and call `apply_conf_change`, keeping the returned
   ConfState for the next snapshot); a `rd.read_states` entry may be served
   once the application has applied its index;
4. call `advance(rd)`; only then call `ready()` again.

Between `ready()` and `advance()` the driver may keep calling `tick`,
`step` and `propose` (for example while a separate task applies). Removed
members are the driver's to stop: once a member applies its own removal
it should shut down, and the transport should refuse traffic from removed
members.

Starting: a new cluster's members call `RawNode.bootstrap(peers)` on empty
storage (the membership then sits in the log as entries 1..n, so members
added later replay it); a joining member starts on empty storage with no
bootstrap and waits for the leader. On restart, build the storage from the
WAL (snapshot, entries, hard state) and restart the application from the
snapshot: committed entries after it come back in `committed_entries`,
conf changes included, and must be applied again.

Compaction is the application's: `storage.create_snapshot(applied,
conf_state, data)` then `storage.compact(i)` for some i <= applied.

Features follow etcd-io/raft: pre-vote, check-quorum with leader lease,
batched and pipelined replication with conflict hints, ReadIndex, leader
transfer, snapshots, single-member changes and learners.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from . import confchange
from .log import (
    NO_LIMIT,
    LogCompacted,
    LogUnavailable,
    RaftLog,
    SnapshotTemporarilyUnavailable,
    Storage,
)
from .messages import (
    EMPTY_HARD_STATE,
    ENTRY_CONF_CHANGE,
    ENTRY_NORMAL,
    LOCAL_MESSAGES,
    MT_APP,
    MT_APP_RESP,
    MT_BEAT,
    MT_CHECK_QUORUM,
    MT_HEARTBEAT,
    MT_HEARTBEAT_RESP,
    MT_HUP,
    MT_PRE_VOTE,
    MT_PRE_VOTE_RESP,
    MT_PROP,
    MT_READ_INDEX,
    MT_READ_INDEX_RESP,
    MT_SNAP,
    MT_SNAP_STATUS,
    MT_TIMEOUT_NOW,
    MT_TRANSFER_LEADER,
    MT_UNREACHABLE,
    MT_VOTE,
    MT_VOTE_RESP,
    NONE,
    RESPONSE_MESSAGES,
    ROLE_CANDIDATE,
    ROLE_FOLLOWER,
    ROLE_LEADER,
    ROLE_PRE_CANDIDATE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    Message,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)
from .messages import MessageType as MT
from .quorum import (
    PS_PROBE,
    PS_REPLICATE,
    PS_SNAPSHOT,
    VOTE_LOST,
    VOTE_WON,
    Progress,
    ProgressTracker,
    VoteResult,
)

CAMPAIGN_TRANSFER = b"CampaignTransfer"

_PRE_ELECTION, _ELECTION, _TRANSFER = 0, 1, 2


class ProposalDropped(Exception):
    """The proposal was not appended (no leader, transfer in progress,
    conf change pending or invalid, ...). The caller may retry."""


@dataclass
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    """On restart, the index the application has durably applied (0: the
    snapshot's). Committed entries after it are handed out again; membership
    changes up to it are re-read from the log. Capped at the persisted
    commit: entries the application applied beyond that come out again and
    must be skipped by index -- but a CONF_CHANGE entry must always reach
    `apply_conf_change`, even when the application skips it."""
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    max_inflight_msgs: int = 256
    pre_vote: bool = True
    check_quorum: bool = True
    disable_proposal_forwarding: bool = False
    rng: random.Random | None = field(default=None, repr=False)
    """Source of the randomized election timeout; default Random(id)."""

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")


class Ready(NamedTuple):
    """What the driver must do now; see the module docstring for the order."""

    soft_state: SoftState | None
    hard_state: HardState | None
    read_states: tuple[ReadState, ...]
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    must_sync: bool


@dataclass(frozen=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    role: Role
    lead_transferee: int
    conf_state: ConfState
    progress: dict[int, Progress]  # leader only; copies


class _ReadIndexStatus:
    __slots__ = ("acks", "index", "req")

    def __init__(self, req: Message, index: int) -> None:
        self.req = req
        self.index = index
        self.acks: dict[int, bool] = {}


class _ReadOnly:
    """ReadIndex requests waiting for a heartbeat round to confirm leadership."""

    def __init__(self) -> None:
        self.pending: dict[bytes, _ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        if m.context in self.pending:
            return
        self.pending[m.context] = _ReadIndexStatus(m, index)
        self.queue.append(m.context)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[_ReadIndexStatus]:
        """Requests up to and including `ctx` (in arrival order) are confirmed."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = self.queue[:i + 1]
        del self.queue[:i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""


class Raft:
    """The algorithm. Use it through `RawNode`."""

    def __init__(self, cfg: Config, storage: Storage) -> None:
        cfg.validate()
        self.id = cfg.id
        self.log = RaftLog(storage, cfg.max_committed_size_per_ready)
        hs, cs = storage.initial_state()
        self.max_msg_size = cfg.max_size_per_msg
        self.tracker = ProgressTracker(cfg.max_inflight_msgs)
        self.election_timeout = cfg.election_tick
        self.heartbeat_timeout = cfg.heartbeat_tick
        self.check_quorum = cfg.check_quorum
        self.pre_vote = cfg.pre_vote
        self.disable_proposal_forwarding = cfg.disable_proposal_forwarding
        self.rng = cfg.rng if cfg.rng is not None else random.Random(cfg.id)

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = ROLE_FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self._last_ack: tuple[int, int, int] = (0, 0, 0)   # (term, leader, index)
        self.read_states: list[ReadState] = []
        self.pending_read_index: list[Message] = []
        self.read_only = _ReadOnly()
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = cfg.election_tick

        self._switch_to_config(*confchange.from_conf_state(cs))
        if hs != EMPTY_HARD_STATE:
            if not self.log.committed <= hs.commit <= self.log.last_index():
                raise AssertionError(f"{self.id} hard state commit {hs.commit} out of range "
                                     f"[{self.log.committed}, {self.log.last_index()}]")
            self.log.committed = hs.commit
            self.term = hs.term
            self.vote = hs.vote
        floor = self.log.applied
        applied = min(cfg.applied, self.log.committed)
        if applied > floor:
            # The application is past the snapshot: those entries are not handed
            # out again, so take their membership changes from the log here.
            for e in self.log.slice(floor + 1, applied + 1):
                if e.type == ENTRY_CONF_CHANGE:
                    self.apply_conf_change(ConfChange.decode(e.data))
            self.log.applied_to(applied)
        self.become_follower(self.term, NONE)

    # -- state ------------------------------------------------------------------
    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        return self.id in self.tracker.voters

    # -- sending ------------------------------------------------------------------
    def _send(self, type_: MT, to: int, **kw) -> None:
        # Votes and their responses carry an explicit term; proposals and
        # forwarded read requests travel at term 0 (they are re-stepped).
        if "term" not in kw and type_ not in (MT_PROP, MT_READ_INDEX):
            kw["term"] = self.term
        if "from_" not in kw:
            kw["from_"] = self.id
        self.msgs.append(Message(type_, to, **kw))

    def _forward(self, m: Message, to: int) -> None:
        self.msgs.append(Message(
            m.type, to, m.from_ or self.id,
            0 if m.type in (MT_PROP, MT_READ_INDEX) else self.term,
            m.log_term, m.index, m.entries, m.commit, m.snapshot, m.reject, m.reject_hint,
            m.context))

    def send_append(self, to: int) -> None:
        self.maybe_send_append(to, True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        if not send_if_empty and pr.next > log.last_index():
            return False
        try:
            prev_term = log.term(pr.next - 1)
            ents = log.entries(pr.next, self.max_msg_size)
        except (LogCompacted, LogUnavailable):
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        prev_index = pr.next - 1
        if ents:
            if pr.state == PS_REPLICATE:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
            else:
                pr.probe_sent = True
        self.msgs.append(Message(MT_APP, to, self.id, self.term, prev_term, prev_index,
                                 tuple(ents), log.committed))
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snap = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snap.index == 0:
            raise AssertionError("need a non-empty snapshot")
        pr.become_snapshot(snap.index)
        self._send(MT_SNAP, to, snapshot=snap)
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        commit = min(self.tracker.progress[to].match, self.log.committed)
        self._send(MT_HEARTBEAT, to, commit=commit, context=ctx)

    def bcast_append(self) -> None:
        for pid in self.tracker.progress:
            if pid != self.id:
                self.send_append(pid)

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_ctx()
        for pid in self.tracker.progress:
            if pid != self.id:
                self._send_heartbeat(pid, ctx)

    # -- role transitions -------------------------------------------------------
    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = (
            self.election_timeout + self.rng.randrange(self.election_timeout))
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        last = self.log.last_index()
        mi = self.tracker.max_inflight
        for pid, pr in self.tracker.progress.items():
            np = Progress(last + 1, mi, is_learner=pr.is_learner)
            if pid == self.id:
                np.match = last
            self.tracker.progress[pid] = np
        self.pending_conf_index = 0
        self.read_only = _ReadOnly()
        self.pending_read_index = []

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = ROLE_FOLLOWER

    def become_candidate(self) -> None:
        if self.role == ROLE_LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = ROLE_CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.role == ROLE_LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Neither the term nor the vote changes: a pre-vote is only a question.
        self.tracker.reset_votes()
        self.lead = NONE
        self.role = ROLE_PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.role == ROLE_FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._reset(self.term)
        self.lead = self.id
        self.role = ROLE_LEADER
        self.tracker.progress[self.id].become_replicate()
        # No conf change until everything before our own first entry is applied.
        self.pending_conf_index = self.log.last_index()
        self._append_entries([Entry(0, 0)])

    # -- elections ----------------------------------------------------------------
    def _hup(self, kind: int) -> None:
        if self.role == ROLE_LEADER or not self.promotable():
            return
        log = self.log
        if log.committed > log.applied:
            lo = max(log.applied + 1, log.first_index())
            for e in log.slice(lo, log.committed + 1):
                if e.type == ENTRY_CONF_CHANGE:
                    return  # our configuration may be stale: apply first
        if kind == _TRANSFER:
            self._campaign(_TRANSFER)
        elif self.pre_vote:
            self._campaign(_PRE_ELECTION)
        else:
            self._campaign(_ELECTION)

    def _campaign(self, kind: int) -> None:
        if kind == _PRE_ELECTION:
            self.become_pre_candidate()
            vote_type, term = MT_PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT_VOTE, self.term
        if self._poll(self.id, True) == VOTE_WON:
            if kind == _PRE_ELECTION:
                self._campaign(_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == _TRANSFER else b""
        li, lt = self.log.last_index(), self.log.last_term()
        for pid in sorted(self.tracker.voters):
            if pid != self.id:
                self._send(vote_type, pid, term=term, index=li, log_term=lt, context=ctx)

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        self.tracker.record_vote(node_id, granted)
        return self.tracker.tally_votes()[2]

    # -- ticks ----------------------------------------------------------------------
    def tick(self) -> None:
        if self.role == ROLE_LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.step(Message(MT_HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT_CHECK_QUORUM, from_=self.id))
            if self.role == ROLE_LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # transfer timed out
        if self.role != ROLE_LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT_BEAT, from_=self.id))

    # -- step ----------------------------------------------------------------------
    def step(self, m: Message) -> None:
        t = m.type
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if t == MT_VOTE or t == MT_PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    return  # we hear from a live leader: ignore the disruption
            if t == MT_PRE_VOTE or (t == MT_PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote never moves our term
            elif t == MT_APP or t == MT_HEARTBEAT or t == MT_SNAP:
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if t == MT_HEARTBEAT or t == MT_APP:
                # A stale leader: tell it our term so it steps down. (etcd-io/raft
                # does this only with check-quorum or pre-vote; we always do, or a
                # member that cannot campaign -- a learner, a joiner -- whose term
                # was bumped by a removed peer would never hear from the leader.)
                self._send(MT_APP_RESP, m.from_)
            elif t == MT_PRE_VOTE:
                self._send(MT_PRE_VOTE_RESP, m.from_, reject=True)
            return

        if t == MT_HUP:
            self._hup(_PRE_ELECTION)
        elif t == MT_VOTE or t == MT_PRE_VOTE:
            can_vote = (self.vote == m.from_
                        or (self.vote == NONE and self.lead == NONE)
                        or (t == MT_PRE_VOTE and m.term > self.term))
            resp = MT_VOTE_RESP if t == MT_VOTE else MT_PRE_VOTE_RESP
            if can_vote and self.log.is_up_to_date(m.index, m.log_term):
                # Answer with the message's term: a pre-candidate asks for term+1.
                self._send(resp, m.from_, term=m.term)
                if t == MT_VOTE:
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                self._send(resp, m.from_, reject=True)
        elif self.role == ROLE_LEADER:
            self._step_leader(m)
        elif self.role == ROLE_FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        tr = self.tracker
        if t == MT_BEAT:
            self.bcast_heartbeat()
            return
        if t == MT_CHECK_QUORUM:
            me = tr.progress.get(self.id)
            if me is not None:
                me.recent_active = True
            if not tr.quorum_active():
                self.become_follower(self.term, NONE)
                return
            for pid, pr in tr.progress.items():
                if pid != self.id:
                    pr.recent_active = False
            return
        if t == MT_PROP:
            self._leader_propose(m)
            return
        if t == MT_READ_INDEX:
            if tr.is_singleton():
                self._answer_read_index(m, self.log.committed)
            elif not self._committed_entry_in_current_term():
                self.pending_read_index.append(m)
            else:
                self._start_read_index(m)
            return

        pr = tr.progress.get(m.from_)
        if pr is None:
            return
        if t == MT_APP_RESP:
            self._leader_app_resp(m, pr)
        elif t == MT_HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == PS_REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self.send_append(m.from_)
            if not m.context:
                return
            acks = self.read_only.recv_ack(m.from_, m.context)
            if acks is None or tr.vote_result_of(acks) != VOTE_WON:
                return
            for rs in self.read_only.advance(m.context):
                self._answer_read_index(rs.req, rs.index)
        elif t == MT_SNAP_STATUS:
            if pr.state != PS_SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's response (or a heartbeat) before the next append.
            pr.probe_sent = True
        elif t == MT_UNREACHABLE:
            if pr.state == PS_REPLICATE:
                pr.become_probe()
        elif t == MT_TRANSFER_LEADER:
            if pr.is_learner:
                return
            target = m.from_
            if self.lead_transferee != NONE:
                if self.lead_transferee == target:
                    return
                self.lead_transferee = NONE
            if target == self.id:
                return
            self.election_elapsed = 0  # the transfer must finish within an election timeout
            self.lead_transferee = target
            if pr.match == self.log.last_index():
                self._send(MT_TIMEOUT_NOW, target)
            else:
                self.send_append(target)

    def _leader_propose(self, m: Message) -> None:
        tr = self.tracker
        if self.id not in tr.progress:
            raise ProposalDropped("leader is not a member any more")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership transfer to {self.lead_transferee} in progress")
        pending = self.pending_conf_index
        for i, e in enumerate(m.entries):
            if e.type != ENTRY_CONF_CHANGE:
                continue
            if not self._committed_entry_in_current_term():
                # A new leader first commits an entry of its own term, so no
                # change of an earlier leader can still be in flight
                # (the fix to single-server changes, Ongaro 2015).
                raise ProposalDropped("no entry of this term committed yet")
            if pending > self.log.applied:
                raise ProposalDropped(f"conf change at index {pending} not applied yet "
                                      f"(applied {self.log.applied})")
            try:
                confchange.apply_change(tr.voters, tr.learners, ConfChange.decode(e.data))
            except confchange.InvalidConfChange as err:
                raise ProposalDropped(str(err)) from None
            pending = self.log.last_index() + i + 1
        self.pending_conf_index = pending
        self._append_entries(m.entries)
        self.bcast_append()

    def _append_entries(self, es) -> None:
        li = self.log.last_index()
        term = self.term
        ents = [Entry(term, li + 1 + i, e.type, e.data) for i, e in enumerate(es)]
        self.log.append(ents)
        me = self.tracker.progress.get(self.id)
        if me is not None:
            me.maybe_update(self.log.last_index())
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        return self.log.maybe_commit(self.tracker.committed(), self.term)

    def _leader_app_resp(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        frm = m.from_
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == PS_REPLICATE:
                    pr.become_probe()
                self.send_append(frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == PS_PROBE:
            pr.become_replicate()
        elif pr.state == PS_SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == PS_REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index()
            self.bcast_append()
        elif old_paused:
            self.send_append(frm)
        while self.maybe_send_append(frm, False):
            pass
        if frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(MT_TIMEOUT_NOW, frm)

    # -- ReadIndex ----------------------------------------------------------------
    def _committed_entry_in_current_term(self) -> bool:
        return self.log.zero_term_on_compacted(self.log.committed) == self.term

    def _start_read_index(self, m: Message) -> None:
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self.bcast_heartbeat(m.context)

    def _release_pending_read_index(self) -> None:
        if not self.pending_read_index or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index = self.pending_read_index, []
        for m in pending:
            self._start_read_index(m)

    def _answer_read_index(self, req: Message, index: int) -> None:
        if req.from_ == NONE or req.from_ == self.id:
            self.read_states.append(ReadState(index, req.context))
        else:
            self._send(MT_READ_INDEX_RESP, req.from_, index=index, context=req.context)

    # -- follower / candidate ---------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT_PROP:
            if self.lead == NONE:
                raise ProposalDropped("no leader")
            if self.disable_proposal_forwarding:
                raise ProposalDropped("proposal forwarding disabled")
            self._forward(m, self.lead)
        elif t == MT_APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append(m)
        elif t == MT_HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self.log.commit_to(m.commit)
            self._send(MT_HEARTBEAT_RESP, m.from_, context=m.context)
        elif t == MT_SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MT_TRANSFER_LEADER or t == MT_READ_INDEX:
            if self.lead != NONE:
                self._forward(m, self.lead)
        elif t == MT_TIMEOUT_NOW:
            self._hup(_TRANSFER)
        elif t == MT_READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT_PRE_VOTE_RESP if self.role == ROLE_PRE_CANDIDATE else MT_VOTE_RESP
        if t == MT_PROP:
            raise ProposalDropped("no leader")
        if t == MT_APP:
            self.become_follower(m.term, m.from_)
            self._handle_append(m)
        elif t == MT_HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self.log.commit_to(m.commit)
            self._send(MT_HEARTBEAT_RESP, m.from_, context=m.context)
        elif t == MT_SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self._poll(m.from_, not m.reject)
            if res == VOTE_WON:
                if self.role == ROLE_PRE_CANDIDATE:
                    self._campaign(_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == VOTE_LOST:
                self.become_follower(self.term, NONE)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(MT_APP_RESP, m.from_, index=log.committed)
            return
        before = log.committed
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            # An append without entries that brings only a new commit index (the
            # leader's broadcast after each commit), to a follower that has already
            # acknowledged that index to this leader, needs no answer: it would only
            # wake the leader again, twice per write in a 3-member cluster. Any other
            # append is answered, so a lost acknowledgement is repaired by the empty
            # append the leader sends after the next heartbeat response.
            ack = (self.term, m.from_, last_new)
            if m.entries or log.committed == before or ack != self._last_ack:
                self._last_ack = ack
                self._send(MT_APP_RESP, m.from_, index=last_new)
            return
        self._last_ack = (0, 0, 0)
        hint = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(MT_APP_RESP, m.from_, index=m.index, reject=True, reject_hint=hint,
                   log_term=log.zero_term_on_compacted(hint))

    def _handle_snapshot(self, m: Message) -> None:
        self._last_ack = (0, 0, 0)
        if self._restore(m.snapshot):
            self._send(MT_APP_RESP, m.from_, index=self.log.last_index())
        else:
            self._send(MT_APP_RESP, m.from_, index=self.log.committed)

    def _restore(self, s: Snapshot) -> bool:
        if s.index <= self.log.committed:
            return False
        if self.role != ROLE_FOLLOWER:
            self.become_follower(self.term + 1, NONE)
            return False
        if self.log.match_term(s.index, s.term):
            self.log.commit_to(s.index)  # we have it all: just fast-forward the commit
            return False
        self.log.restore(s)
        self.tracker.progress = {}
        self._switch_to_config(*confchange.from_conf_state(s.conf_state))
        return True

    # -- membership -----------------------------------------------------------------
    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        tr = self.tracker
        try:
            voters, learners = confchange.apply_change(tr.voters, tr.learners, cc)
        except confchange.InvalidConfChange:
            return tr.conf_state()  # deterministic no-op on every member
        self._switch_to_config(voters, learners)
        return tr.conf_state()

    def _switch_to_config(self, voters: frozenset[int], learners: frozenset[int]) -> None:
        tr = self.tracker
        last = self.log.last_index()
        for pid in list(tr.progress):
            if pid not in voters and pid not in learners:
                del tr.progress[pid]
        for pid in voters | learners:
            pr = tr.progress.get(pid)
            if pr is None:
                # Next at our last entry, not past it: the first append then
                # carries an entry and probes the newcomer right away.
                pr = Progress(max(last, 1), tr.max_inflight, recent_active=True)
                if pid == self.id:
                    pr.match, pr.next = last, last + 1
                tr.progress[pid] = pr
            pr.is_learner = pid in learners
        tr.voters, tr.learners = voters, learners
        self.is_learner = self.id in learners

        if self.role != ROLE_LEADER:
            return
        if self.id not in voters:
            # Removed (or demoted) leader: hand over to an up-to-date voter and
            # step down rather than lead a group we are not part of.
            best = max((p for p in voters if tr.progress[p].match == last), default=NONE)
            if best != NONE:
                self._send(MT_TIMEOUT_NOW, best)
            self.become_follower(self.term, NONE)
            return
        if self._maybe_commit():
            self.bcast_append()
        else:
            for pid in tr.progress:
                if pid != self.id:
                    self.maybe_send_append(pid, False)
        if self.lead_transferee != NONE and self.lead_transferee not in tr.progress:
            self.lead_transferee = NONE


class RawNode:
    """The driver's handle on one member's state machine (etcd's RawNode)."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    def bootstrap(self, peers: Iterable[int]) -> None:
        """Start a brand-new cluster: the log gets one ADD_NODE entry per peer
        (term 1, committed), so members that join later learn the initial
        membership from the log like any other change. Only on empty storage."""
        r = self.raft
        if r.log.last_index() != 0:
            raise ValueError("can't bootstrap a nonempty storage")
        peers = list(peers)
        if not peers:
            raise ValueError("must provide at least one peer to bootstrap")
        self._prev_hard = EMPTY_HARD_STATE
        r.become_follower(1, NONE)
        ents = [Entry(1, i + 1, ENTRY_CONF_CHANGE,
                      ConfChange(ConfChangeType.ADD_NODE, p).encode())
                for i, p in enumerate(peers)]
        r.log.append(ents)
        r.log.committed = len(ents)
        for p in peers:
            r.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, p))

    # -- inputs -----------------------------------------------------------------
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MT_HUP, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Raises ProposalDropped when it is certainly lost; success only
        means it was appended or forwarded, not that it will commit."""
        self.raft.step(Message(MT_PROP, from_=self.raft.id,
                               entries=(Entry(0, 0, ENTRY_NORMAL, data),)))

    def propose_batch(self, datas: Iterable[bytes]) -> None:
        """Propose several entries at once: they travel in the same appends
        (group commit). All or none are appended."""
        ents = tuple(Entry(0, 0, ENTRY_NORMAL, d) for d in datas)
        if ents:
            self.raft.step(Message(MT_PROP, from_=self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange) -> None:
        self.raft.step(Message(MT_PROP, from_=self.raft.id,
                               entries=(Entry(0, 0, ENTRY_CONF_CHANGE, cc.encode()),)))

    def step(self, m: Message) -> None:
        """Feed a message received from a peer. Local message types are refused;
        a forwarded proposal the leader cannot take is dropped silently."""
        if m.type in LOCAL_MESSAGES:
            raise ValueError(f"cannot step local message {m.type.name}")
        if m.type in RESPONSE_MESSAGES and m.from_ not in self.raft.tracker.progress:
            return  # a response from a peer we no longer track
        try:
            self.raft.step(m)
        except ProposalDropped:
            pass

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes back as a
        ReadState with the same (unique, non-empty) ctx in a later Ready.
        Requests are dropped silently when there is no leader: time out."""
        self.raft.step(Message(MT_READ_INDEX, context=ctx))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MT_TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(MT_UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """Must follow every MsgSnap the driver sent (ok=False if it failed)."""
        self.raft.step(Message(MT_SNAP_STATUS, from_=node_id, reject=not ok))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Call when applying a committed CONF_CHANGE entry; returns the new
        membership, to be stored with the next snapshot."""
        return self.raft.apply_conf_change(cc)

    # -- outputs -------------------------------------------------------------------
    def has_ready(self) -> bool:
        r = self.raft
        if r.msgs or r.read_states:
            return True
        if r.log.unstable.entries or r.log.unstable.snapshot is not None:
            return True
        if r.log.has_next_committed_entries():
            return True
        if r.lead != self._prev_soft.leader or r.role != self._prev_soft.role:
            return True
        hs = self._prev_hard
        return (r.term != hs.term or r.vote != hs.vote or r.log.committed != hs.commit)

    def ready(self) -> Ready:
        r = self.raft
        ss = r.soft_state()
        hs = r.hard_state()
        entries = tuple(r.log.unstable.entries)
        snap = r.log.unstable.snapshot
        prev = self._prev_hard
        rd = Ready(
            soft_state=None if ss == self._prev_soft else ss,
            hard_state=None if hs == prev else hs,
            read_states=tuple(r.read_states),
            entries=entries,
            snapshot=snap,
            committed_entries=tuple(r.log.next_committed_entries()),
            messages=tuple(r.msgs),
            must_sync=bool(entries) or snap is not None
            or hs.term != prev.term or hs.vote != prev.vote,
        )
        self._prev_soft = ss
        r.msgs = []
        r.read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """Everything in `rd` has been persisted, sent and applied."""
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
        elif rd.snapshot is not None:
            r.log.applied_to(rd.snapshot.index)
        if rd.entries:
            e = rd.entries[-1]
            r.log.stable_to(e.index, e.term)
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.index)

    def status(self) -> Status:
        r = self.raft
        prs: dict[int, Progress] = {}
        if r.role == ROLE_LEADER:
            for pid, pr in r.tracker.progress.items():
                c = Progress(pr.next, pr.inflights.cap, match=pr.match,
                             is_learner=pr.is_learner, recent_active=pr.recent_active)
                c.state = pr.state
                c.pending_snapshot = pr.pending_snapshot
                c.probe_sent = pr.probe_sent
                c.inflights.q.extend(pr.inflights.q)
                prs[pid] = c
        return Status(r.id, r.term, r.vote, r.log.committed, r.log.applied, r.lead, r.role,
                      r.lead_transferee, r.tracker.conf_state(), prs)
