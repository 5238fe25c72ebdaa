"""The raft driver: runs the pure RawNode against a WAL, a clock and peers.

It owns the I/O the core leaves out. One loop turns `Ready`s around:
entries and hard state go to the WAL (one fdatasync per Ready, on the WAL
thread — the group commit of every proposal batched into it); messages go
to the transport after that; committed entries go to the application's
`apply` callback, the part already durable here while the fsync runs, the
rest right after it. Proposals that arrive meanwhile are batched into the
next Ready. Ticks come from a timer task. Linearizable reads go through
ReadIndex, many reads sharing one round.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from kcore.store.raft.core import Config, ProposalDropped, RawNode
from kcore.store.raft.log import MemoryStorage
from kcore.store.raft.messages import (
    ENTRY_CONF_CHANGE,
    ROLE_FOLLOWER,
    ROLE_LEADER,
    ConfChange,
    ConfState,
    Entry,
    Message,
    Snapshot,
    SoftState,
)
from kcore.tasks import cancel_all

log = logging.getLogger(__name__)


class Application(Protocol):
    """What the node drives (the store server)."""

    def apply(self, entries: list[Entry]) -> None: ...
    def apply_conf_change(self, entry: Entry, cc: ConfChange, cs: ConfState) -> None: ...
    def restore(self, snap: Snapshot) -> None: ...
    def save_snapshot_file(self, snap: Snapshot) -> None: ...   # called on the WAL thread
    def on_soft_state(self, ss: SoftState, term: int) -> None: ...
    def waits_for(self, entries) -> bool: ...   # a client of this member waits for each


class Transport(Protocol):
    def send(self, msgs: tuple[Message, ...]) -> None: ...


@dataclass
class NodeConfig:
    id: int
    heartbeat_s: float = 0.1
    election_ticks: int = 10
    max_batch: int = 4096
    pre_vote: bool = True
    check_quorum: bool = True


class RaftNode:
    def __init__(self, cfg: NodeConfig, storage: MemoryStorage, wal, app: Application,
                 transport: Transport, applied: int = 0, rng=None):
        self.cfg = cfg
        self.id = cfg.id
        self.storage = storage
        self.wal = wal
        self.app = app
        self.transport = transport
        self.raw = RawNode(Config(id=cfg.id, election_tick=cfg.election_ticks, heartbeat_tick=1,
                                  applied=applied, pre_vote=cfg.pre_vote,
                                  check_quorum=cfg.check_quorum, rng=rng,
                                  max_inflight_msgs=256, max_size_per_msg=1 << 20),
                           storage)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal")
        self.pending: list[bytes] = []
        self.pending_cc: list[tuple[ConfChange, asyncio.Future]] = []
        self.applied = applied
        self.persisted = storage.last_index()
        self.leader = 0
        self.role = ROLE_FOLLOWER
        self.term = storage.hard_state.term
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._reads: list[asyncio.Future] = []          # waiting for the next ReadIndex round
        self._read_inflight: dict[bytes, list[asyncio.Future]] = {}
        self._read_sent: dict[bytes, float] = {}
        self._read_wait: list[tuple[int, list[asyncio.Future]]] = []   # (index, waiters)
        self._read_ids = itertools.count(1)
        self._cc_waiters: dict[bytes, asyncio.Future] = {}
        self.fatal: BaseException | None = None
        self.stopped = False
        self.on_snapshot_sent: Callable[[int, bool], None] | None = None
        self._campaign = False
        self._solo_check = True
        self._applyq: collections.deque = collections.deque()
        self._wal_jobs = 0              # jobs queued on the WAL thread (snapshots)
        self._apply_wake = asyncio.Event()
        self._busy = False                   # a turn is running or waits for the WAL thread
        self._held: tuple | None = None      # (Ready, ctx) being persisted by the WAL thread
        self._kick_scheduled = False

    # ---------------------------------------------------------------- lifecycle --
    def bootstrap(self, peers: list[int]) -> None:
        self.raw.bootstrap(peers)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake.set()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._ticker()),
                       loop.create_task(self._apply_loop())]

    async def stop(self) -> None:
        self.stopped = True
        await cancel_all(self._tasks)
        self.executor.shutdown(wait=True)

    def run_in_wal_thread(self, fn: Callable[[], object]) -> asyncio.Future:
        """Run fn on the WAL thread, ordered with the writes (snapshots, release)."""
        self._wal_jobs += 1
        fut = asyncio.get_running_loop().run_in_executor(self.executor, fn)

        def done(_f) -> None:
            self._wal_jobs -= 1
        fut.add_done_callback(done)
        return fut

    # ---------------------------------------------------------------- inputs -----
    def propose(self, data: bytes) -> None:
        self.pending.append(data)
        if not self._kick_scheduled:
            # once per loop turn: the proposals of one read from clients go together
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick_soon)

    def step(self, m: Message, kick: bool = True) -> None:
        """Step a peer's message; with kick=False the caller calls `kick()` once
        after a batch of them."""
        self.raw.step(m)
        if kick:
            self.kick()

    def report_unreachable(self, node_id: int) -> None:
        self.raw.report_unreachable(node_id)
        self._wake.set()

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        self.raw.report_snapshot(node_id, ok)
        self._wake.set()

    def transfer_leader(self, node_id: int) -> None:
        self.raw.transfer_leader(node_id)
        self._wake.set()

    def campaign(self) -> None:
        """Start an election as soon as the committed membership is applied (a
        member with unapplied conf changes may not campaign)."""
        self._campaign = True
        self._wake.set()

    async def propose_conf_change(self, cc: ConfChange) -> int:
        """Propose a membership change; returns the index it was applied at."""
        fut = asyncio.get_running_loop().create_future()
        self.pending_cc.append((cc, fut))
        self._wake.set()
        return await fut

    async def read_barrier(self) -> None:
        """Returns once this member has applied everything committed before the
        call: a linearizable read point (ReadIndex)."""
        fut = asyncio.get_running_loop().create_future()
        self._reads.append(fut)
        self._wake.set()
        await fut

    def is_leader(self) -> bool:
        return self.role == ROLE_LEADER

    def status(self):
        return self.raw.status()

    # ---------------------------------------------------------------- loop -------
    async def _ticker(self) -> None:
        interval = self.cfg.heartbeat_s
        nxt = time.monotonic()
        while True:
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            if time.monotonic() - nxt > interval * 5:
                nxt = time.monotonic()  # we were stalled: do not tick in a burst
            self.raw.tick()
            self._retry_stale_reads()
            self._wake.set()

    def _flush_inputs(self) -> None:
        if self.pending:
            batch = self.pending[: self.cfg.max_batch]
            del self.pending[: self.cfg.max_batch]
            try:
                self.raw.propose_batch(batch)
            except ProposalDropped:
                if self.leader == 0 or self.raw.raft.lead_transferee:
                    # no leader to take them now: keep them for the next round
                    self.pending[:0] = batch
                # else dropped for good; the request times out
        while self.pending_cc:
            cc, fut = self.pending_cc.pop(0)
            try:
                self.raw.propose_conf_change(cc)
            except ProposalDropped as e:
                if not fut.done():
                    fut.set_exception(e)
                continue
            self._cc_waiters[_cc_key(cc)] = fut
        if self._reads and self.leader:
            ctx = struct.pack(">Q", next(self._read_ids))
            self._read_inflight[ctx] = self._reads
            self._read_sent[ctx] = time.monotonic()
            self._reads = []
            self.raw.read_index(ctx)

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.fatal is not None:
                    return
                self._busy = True
                try:
                    while True:
                        if self._held is not None:
                            rd, ctx = self._held
                            await ctx[0]
                            self._held = None
                            self._finish_ready(rd, ctx)
                        if self._turn() is None:
                            break
                finally:
                    self._busy = False
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)
            raise

    def _fail(self, e: BaseException) -> None:
        log.critical("raft loop failed: %r", e, exc_info=True)
        self.fatal = e

    def kick(self) -> None:
        """Turn the Readies of what was just stepped in, here and now when the loop
        is idle (no task switch on a write's path: a follower's append, a leader's
        acknowledgement), else by the loop's task."""
        if self._busy or self.fatal is not None or self.stopped or not self._tasks:
            self._wake.set()
            return
        self._busy = True
        try:
            fut = self._turn()
        except BaseException as e:  # noqa: BLE001 - the same end as the loop task's
            self._fail(e)
            self._busy = False
            self._wake.set()            # the task sees `fatal` and ends
            return
        if fut is None:
            self._busy = False
        else:
            self._wake.set()            # the task waits for the WAL thread and goes on

    def _kick_soon(self) -> None:
        self._kick_scheduled = False
        self.kick()

    def _turn(self) -> asyncio.Future | None:
        """Handle Readies until there are none, or one waits for the WAL thread: that
        one is left in `_held` and its future returned."""
        self._flush_inputs()
        while self.raw.has_ready():
            rd = self.raw.ready()
            ctx = self._begin_ready(rd)
            if ctx[0] is not None:
                self._held = (rd, ctx)
                return ctx[0]
            self._finish_ready(rd, ctx)
        if self._campaign and self.applied >= self.raw.raft.log.committed:
            self._campaign = False
            if self.role != ROLE_LEADER:
                self.raw.campaign()
                self._wake.set()
        if self._solo_check and self.applied >= self.raw.raft.log.committed:
            # the only voter need not wait an election timeout to lead
            self._solo_check = False
            if self.raw.status().conf_state.voters == (self.id,):
                self._campaign = True
                self._wake.set()
        if self.leader == 0 and self._read_inflight:
            self._fail_reads()
        return None

    def _begin_ready(self, rd) -> tuple:
        """Everything of one Ready up to its persisting: returns (the WAL thread's
        future or None, sent, local, early) for `_finish_ready`."""
        if rd.soft_state is not None:
            self._soft(rd.soft_state)
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
        # 0. a leader sends first and writes its log meanwhile (raft thesis
        # 10.2.1, as etcd does): the followers' fsyncs overlap its own. Safe:
        # the leader applies only what it has persisted itself, and its vote
        # and term are durable already (only the commit index may be newer)
        sent = False
        committed = rd.committed_entries
        # 0'. ... except the news of a commit only this member's clients wait
        # for: they are answered first, and the followers told after that
        # (a send to two peers costs ~0.1 ms here, on the client's path)
        local = (committed and rd.messages and self.role == ROLE_LEADER
                 and not rd.entries and rd.snapshot is None
                 and all(not m.entries for m in rd.messages)
                 and self.app.waits_for(committed))
        hs, durable = rd.hard_state, self.storage.hard_state
        if (rd.messages and rd.snapshot is None and self.role == ROLE_LEADER
                and not local
                and (hs is None or (hs.term, hs.vote) ==
                     (durable.term, durable.vote))):
            self.transport.send(rd.messages)
            sent = True
        early = []
        if local:
            # a commit this member's clients wait for, no entries: answer them first
            # (the hard state's new commit index needs no fsync, and a crash before
            # it is written only makes the restart apply those entries again)
            early = [e for e in committed if e.index <= self.persisted]
            if early:
                self._drain_apply()
                self._apply(early)
                self._release_reads()
        # 1. persist (the WAL thread), applying what is already durable meanwhile
        fut = None
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            if (rd.snapshot is None and len(rd.entries) <= 2 and not self.pending
                    and not self._wal_jobs):
                # a lone write: the fsync costs less than two thread handoffs
                self._persist(rd)
            else:
                fut = asyncio.get_running_loop().run_in_executor(
                    self.executor, self._persist, rd)
        if not local:
            early = [e for e in committed if e.index <= self.persisted] \
                if rd.snapshot is None else []
            if early:
                # a follower told of a commit (no fsync, nothing to send after it)
                # applies it here, without a task switch
                self._apply_or_enqueue(early, fut is None and not rd.entries
                                       and not rd.messages)
        return fut, sent, local, len(early)

    def _finish_ready(self, rd, ctx: tuple) -> None:
        """The rest of a Ready once it is durable: send, install, apply, advance."""
        _, sent, local, n_early = ctx
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.storage.append(rd.entries)
            self.persisted = rd.entries[-1].index
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        # 2. send
        if local:
            # after the answers: their callbacks were queued by the apply
            asyncio.get_running_loop().call_soon(self.transport.send, rd.messages)
            sent = True
        if rd.messages and not sent:
            self.transport.send(rd.messages)
        # 3. install and apply the rest
        if rd.snapshot is not None:
            self._drain_apply()
            self.app.restore(rd.snapshot)
            self.applied = max(self.applied, rd.snapshot.index)
        rest = rd.committed_entries[n_early:]
        if rest:
            self._apply_or_enqueue(rest, not self.pending)
        for rs in rd.read_states:
            self._read_sent.pop(rs.request_ctx, None)
            waiters = self._read_inflight.pop(rs.request_ctx, None)
            if waiters:
                self._read_wait.append((rs.index, waiters))
        self._release_reads()
        self.raw.advance(rd)
        self._flush_inputs()

    def _persist(self, rd) -> None:
        if rd.snapshot is not None:
            self.app.save_snapshot_file(rd.snapshot)
            self.wal.save_snapshot(_wal_snap(rd.snapshot))
        if rd.entries or rd.hard_state is not None:
            self.wal.save(rd.hard_state, rd.entries)
            if rd.must_sync or rd.entries:
                self.wal.sync()

    def _apply_or_enqueue(self, entries, now: bool) -> None:
        """Apply here when `now` (nothing to overlap with) and nothing is queued
        before them; else on the apply task, in order."""
        if now and not self._applyq:
            self._apply(entries)
            self._release_reads()
        else:
            self._enqueue_apply(entries)

    def _enqueue_apply(self, entries) -> None:
        """Committed entries are applied by their own task, in order, so that applying
        one batch overlaps the fsync of the next."""
        self._applyq.append(entries)
        self._apply_wake.set()

    def _drain_apply(self) -> None:
        while self._applyq:
            self._apply(self._applyq.popleft())
        self._release_reads()
        if self._campaign or self._solo_check:
            self._wake.set()

    async def _apply_loop(self) -> None:
        try:
            while True:
                await self._apply_wake.wait()
                self._apply_wake.clear()
                self._drain_apply()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            log.critical("apply failed: %r", e, exc_info=True)
            self.fatal = e
            raise

    def _apply(self, entries) -> None:
        normal: list[Entry] = []
        for e in entries:
            if e.index <= self.applied:
                continue
            if e.type == ENTRY_CONF_CHANGE:
                if normal:
                    self.app.apply(normal)
                    normal = []
                cc = ConfChange.decode(e.data)
                cs = self.raw.apply_conf_change(cc)
                self.app.apply_conf_change(e, cc, cs)
                fut = self._cc_waiters.pop(_cc_key(cc), None)
                if fut is not None and not fut.done():
                    fut.set_result(e.index)
            else:
                normal.append(e)
            self.applied = e.index
        if normal:
            self.app.apply(normal)

    def _soft(self, ss: SoftState) -> None:
        changed = ss.leader != self.leader or ss.role != self.role
        self.leader, self.role = ss.leader, ss.role
        if changed:
            self.app.on_soft_state(ss, self.raw.raft.term)
            if ss.leader == 0:
                self._fail_reads()

    def _release_reads(self) -> None:
        if not self._read_wait:
            return
        keep = []
        for index, waiters in self._read_wait:
            if index <= self.applied:
                for f in waiters:
                    if not f.done():
                        f.set_result(None)
            else:
                keep.append((index, waiters))
        self._read_wait = keep

    def _fail_reads(self) -> None:
        """Reads in flight when leadership is lost are retried in the next round."""
        for waiters in self._read_inflight.values():
            self._reads.extend(f for f in waiters if not f.done())
        self._read_inflight.clear()
        self._read_sent.clear()

    def _retry_stale_reads(self) -> None:
        """A ReadIndex request can be dropped (a leader not yet ready to serve reads,
        a lost message): ask again for reads waiting longer than a few heartbeats."""
        if not self._read_sent:
            return
        limit = time.monotonic() - max(0.3, 3 * self.cfg.heartbeat_s)
        for ctx, sent in list(self._read_sent.items()):
            if sent < limit:
                del self._read_sent[ctx]
                waiters = self._read_inflight.pop(ctx, [])
                self._reads.extend(f for f in waiters if not f.done())


def _cc_key(cc: ConfChange) -> bytes:
    return bytes([int(cc.type)]) + cc.node_id.to_bytes(8, "big")


def _wal_snap(s: Snapshot):
    from kcore.store.wal import WalSnapshot
    return WalSnapshot(s.index, s.term)
