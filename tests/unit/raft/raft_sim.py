"""A deterministic, seeded simulation of a kcore raft cluster in one process.

Each member is a `RawNode` plus a tiny driver (`SimNode`) that does what
`node.py` does for real: persist `Ready.entries`/hard state/snapshot into
its "disk" (a `MemoryStorage` only the driver writes), send messages, apply
committed entries to a toy state machine (a hash chain), call `advance`.
Some Readies are applied later (as etcd's server does), the member being
ticked and stepped meanwhile.

Fault model (`Simulation.ACTIONS`, one action per step, picked by weight
from the seed's `random.Random`):

* network: FIFO-ish delivery with reordering; drops (the sender may get
  `report_unreachable`, a MsgSnap always gets `report_snapshot`);
  duplicates; long delays (a share of messages is held back for up to three
  election timeouts); partitions (random two-way splits, or the leader cut
  off with a minority), healed at random;
* members: crashes (random member or the leader) that lose everything not
  persisted -- a restart rebuilds the RawNode from the member's disk and the
  application from its snapshot; clock drift (members miss ticks);
* clients and operators: proposals (mostly at the leader, some forwarded),
  ReadIndex requests, leader transfers, membership changes (add voter, add
  learner, promote, remove voter or learner; new members join empty),
  compaction with snapshots (so lagging and new members need MsgSnap);
* the seed also picks 3 or 5 members, election tick, pre-vote and
  check-quorum on or off, message size and inflight limits, run length, and
  a "churn" profile where leaders crash and get cut off far more often.

Like etcd's transport, a member refuses traffic from members it has applied
as removed (telling them, so they stop), and a removed member that applies
its own removal stops.

The `Oracle` checks the safety properties as the run goes (every Ready,
every step):

* election safety: at most one leader per term;
* log matching: an (index, term) pair names one entry, with one predecessor;
* leader completeness: a new leader holds every committed entry;
* state-machine safety: every member applies the same entry at an index
  (checked through the hash chain, snapshots included);
* committed entries are never lost: persisted commits only ever agree;
* per member: persisted term and commit never decrease, one vote per term;
* ReadIndex: a read point covers everything committed before the read.

`liveness()` then heals everything, restarts crashed members, delivers
reliably, and requires a leader to commit a final proposal which every live
voter of its configuration applies, within a bounded number of ticks.
"""
from __future__ import annotations

import bisect
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import ClassVar

import msgpack

from kcore.store.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    decode_message,
    encode_message,
)
from kcore.store.raft.log import LogCompacted

FINAL = b"final"


class SafetyViolation(AssertionError):
    pass


def _fmt(m: Message) -> str:
    s = f"{m.type.name} t{m.term}"
    if m.type in (MessageType.APP, MessageType.VOTE, MessageType.PRE_VOTE):
        s += f" i{m.index} lt{m.log_term}"
    if m.entries:
        s += f" ents={[(e.index, e.term) for e in m.entries]}"
    if m.commit:
        s += f" c{m.commit}"
    if m.reject:
        s += f" REJECT hint={m.reject_hint}"
    elif m.type == MessageType.APP_RESP:
        s += f" i{m.index}"
    if m.snapshot is not None:
        s += f" snap@{m.snapshot.index}"
    return s


def _h(prev: int, e: Entry) -> int:
    return hash((prev, e.term, e.index, e.type, e.data))


def _encode_app(index: int, h: int, removed: frozenset[int]) -> bytes:
    return msgpack.packb((index, h, sorted(removed)))


def _decode_app(data: bytes) -> tuple[int, int, frozenset[int]]:
    if not data:
        return 0, 0, frozenset()
    index, h, removed = msgpack.unpackb(data)
    return index, h, frozenset(removed)


class Oracle:
    """Cluster-wide truth, built from what members persist and apply."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}            # term -> leader id
        self.entries: dict[tuple[int, int], tuple] = {}  # (index, term) -> (type, data, prev_term)
        self.committed: dict[int, int] = {}           # index -> term (persisted commits)
        self.max_commit = 0
        self.applied: dict[int, int] = {0: 0}         # index -> state-machine hash after it
        self.commit_log: list[str] = []

    def fail(self, msg: str) -> None:
        raise SafetyViolation(msg)

    def saw_leader(self, term: int, nid: int) -> None:
        prev = self.leaders.setdefault(term, nid)
        if prev != nid:
            self.fail(f"election safety: term {term} has leaders {prev} and {nid}")

    def saw_entries(self, nid: int, prev_term: int, ents: tuple[Entry, ...]) -> None:
        table = self.entries
        for e in ents:
            key = (e.index, e.term)
            val = (e.type, e.data, prev_term)
            old = table.get(key)
            if old is None:
                table[key] = val
            elif old != val:
                self.fail(f"log matching: member {nid} persisted {e} (prev term {prev_term}) "
                          f"but ({e.index},{e.term}) was {old}")
            prev_term = e.term

    def saw_commit(self, nid: int, commit: int, term_at) -> None:
        """Member `nid` persisted commit index `commit`; term_at(i) reads its log."""
        if commit == 0:
            return
        committed = self.committed
        try:
            t = term_at(commit)
        except LogCompacted:
            return  # behind a snapshot, which the applied-hash check covers
        known = committed.get(commit)
        if known is not None:
            if known != t:
                self.fail(f"committed entry lost: member {nid} has term {t} at committed "
                          f"index {commit}, cluster committed term {known}")
            return
        committed[commit] = t
        self.max_commit = max(self.max_commit, commit)

    def check_leader_log(self, nid: int, term: int, term_at, last_index: int,
                         first_index: int) -> None:
        c = self.max_commit
        if c == 0:
            return
        if c > last_index:
            self.fail(f"leader completeness: leader {nid} (term {term}) has last index "
                      f"{last_index} < committed {c}")
        if c >= first_index - 1:
            t = term_at(c)
            if t != self.committed[c]:
                self.fail(f"leader completeness: leader {nid} (term {term}) has term {t} at "
                          f"committed index {c}, expected {self.committed[c]}")

    def saw_apply(self, nid: int, index: int, h: int) -> None:
        old = self.applied.get(index)
        if old is None:
            self.applied[index] = h
        elif old != h:
            self.fail(f"state-machine safety: member {nid} applied a different entry at {index}")


@dataclass
class Knobs:
    members: int = 3
    steps: int = 300
    election_tick: int = 10
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight: int = 256
    max_committed_size: int = 1 << 40  # bytes of committed entries per Ready
    faults: bool = True
    conf_changes: bool = True
    max_added: int = 2
    wire: bool = False  # send every message through the msgpack codec
    churn: bool = False  # leaders crash and get cut off several times as often
    clock_skew: float = 0.15  # chance a member misses a tick: clocks drift apart
    delay: float = 0.03  # share of messages held back for up to 3 election timeouts
    durable_app: float = 0.5  # share of crashes after which the application kept its state
    async_apply: float = 0.2  # share of Readies applied later, the node live meanwhile


@dataclass(eq=False)
class SimNode:
    id: int
    disk: MemoryStorage
    rn: RawNode | None = None
    incarnation: int = 0
    shutdown: bool = False  # applied its own removal: stopped for good
    applied: int = 0
    app_hash: int = 0
    conf: ConfState = field(default_factory=ConfState)
    removed: frozenset[int] = frozenset()
    # Members already removed when this one joined: like etcd's transport, a
    # joining member never accepts traffic from peers outside its membership.
    joined_removed: frozenset[int] = frozenset()
    reads: dict[bytes, int] = field(default_factory=dict)  # ctx -> oracle commit at request
    pending: Ready | None = None  # persisted and sent, not yet applied/advanced
    durable: tuple | None = None  # application state that survived a crash

    @property
    def alive(self) -> bool:
        return self.rn is not None


class Simulation:
    def __init__(self, seed: int, knobs: Knobs | None = None, trace: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.k = knobs or Knobs()
        self.oracle = Oracle()
        self.nodes: dict[int, SimNode] = {}
        self.net: list[tuple[int, int, int, Message]] = []  # (src, src incarnation, dst, msg)
        self.blocked: set[tuple[int, int]] = set()
        self.held: list[tuple[int, tuple]] = []  # (release tick, message): long delays
        self.next_id = self.k.members + 1
        self.proposal_seq = 0
        self.read_seq = 0
        self.now = 0
        self.final_index = 0
        self.stats: Counter[str] = Counter()
        self._table = self._action_table()
        self.trace: deque[str] | None = deque(maxlen=trace) if trace else None
        peers = list(range(1, self.k.members + 1))
        for nid in peers:
            node = SimNode(nid, MemoryStorage())
            self.nodes[nid] = node
            self._start(node)
            node.rn.bootstrap(peers)
            self._ready(node)

    # -- driver -------------------------------------------------------------------
    def _config(self, nid: int, applied: int = 0) -> Config:
        k = self.k
        return Config(id=nid, election_tick=k.election_tick, heartbeat_tick=1, applied=applied,
                      max_size_per_msg=k.max_size_per_msg, max_inflight_msgs=k.max_inflight,
                      max_committed_size_per_ready=k.max_committed_size,
                      pre_vote=k.pre_vote, check_quorum=k.check_quorum,
                      rng=random.Random(self.rng.getrandbits(32)))

    def _start(self, node: SimNode) -> None:
        node.incarnation += 1
        snap = node.disk.snapshot()
        node.applied, node.app_hash, node.removed = _decode_app(snap.data)
        node.removed |= node.joined_removed
        node.applied = snap.index
        node.conf = snap.conf_state
        node.reads = {}
        applied = 0
        if node.durable is not None and node.durable[0] > snap.index:
            # the application kept its own state: raft resumes after it
            node.applied, node.app_hash, node.conf, node.removed = node.durable
            applied = node.applied
        node.durable = None
        node.rn = RawNode(self._config(node.id, applied), node.disk)

    def _crash(self, node: SimNode) -> None:
        self.stats["crashes"] += 1
        if self.rng.random() < self.k.durable_app:
            node.durable = (node.applied, node.app_hash, node.conf, node.removed)
        node.rn = None
        node.pending = None

    def _ready(self, node: SimNode) -> None:
        """The driver loop. Like etcd's server, it may persist and send a Ready
        but apply it (and `advance`) only later, while the node goes on being
        ticked and stepped; `_finish` completes such a held Ready."""
        rn = node.rn
        while rn is not None and node.pending is None and rn.has_ready():
            rd = rn.ready()
            self._persist_and_send(node, rn, rd)
            if self.k.async_apply and self.rng.random() < self.k.async_apply:
                node.pending = rd
                return
            self._apply(node, rn, rd)
            rn.advance(rd)
            rn = node.rn  # may have shut down

    def _finish(self, node: SimNode) -> None:
        rd, node.pending = node.pending, None
        if rd is not None and node.rn is not None:
            rn = node.rn
            self._apply(node, rn, rd)
            rn.advance(rd)
            self._ready(node)

    def _persist_and_send(self, node: SimNode, rn: RawNode, rd: Ready) -> None:
        o = self.oracle
        r = rn.raft
        disk = node.disk
        nid = node.id
        # 1. persist
        if rd.snapshot is not None:
            s = rd.snapshot
            _, h, _ = _decode_app(s.data)
            if o.applied.get(s.index, h) != h:
                o.fail(f"snapshot at {s.index} sent to {nid} does not match applied state")
            disk.apply_snapshot(s)
            self.stats["snapshots_installed"] += 1
        if rd.entries:
            first = rd.entries[0]
            o.saw_entries(nid, r.log.term(first.index - 1), rd.entries)
            disk.append(rd.entries)
        if rd.hard_state is not None:
            old, hs = disk.hard_state, rd.hard_state
            if hs.term < old.term:
                o.fail(f"member {nid} persisted term {hs.term} after {old.term}")
            if hs.term == old.term and old.vote != NONE and hs.vote != old.vote:
                o.fail(f"member {nid} voted {old.vote} then {hs.vote} in term {hs.term}")
            if hs.commit < old.commit:
                o.fail(f"member {nid} persisted commit {hs.commit} after {old.commit}")
            disk.set_hard_state(hs)
            if hs.commit != old.commit:
                o.saw_commit(nid, hs.commit, disk.term)
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            o.saw_leader(r.term, nid)
            self.stats["leaders"] += 1
            o.check_leader_log(nid, r.term, r.log.term, r.log.last_index(),
                               r.log.first_index())
        # 2. send
        inc = node.incarnation
        net = self.net
        delay = self.k.delay if self.k.faults else 0.0
        for m in rd.messages:
            if delay and self.rng.random() < delay:
                release = self.now + self.rng.randrange(1, 3 * self.k.election_tick)
                self.held.append((release, (nid, inc, m.to, m)))
            else:
                net.append((nid, inc, m.to, m))

    def _apply(self, node: SimNode, rn: RawNode, rd: Ready) -> None:
        o = self.oracle
        nid = node.id
        if rd.snapshot is not None:
            s = rd.snapshot
            _, h, removed = _decode_app(s.data)
            removed |= node.joined_removed
            if s.index <= node.applied:
                o.fail(f"member {nid} got snapshot {s.index} <= applied {node.applied}")
            node.applied, node.app_hash, node.conf = s.index, h, s.conf_state
            node.removed = removed
            o.saw_apply(nid, s.index, h)
        for e in rd.committed_entries:
            if e.index != node.applied + 1:
                o.fail(f"member {nid} applies {e.index} after {node.applied}")
            node.app_hash = _h(node.app_hash, e)
            node.applied = e.index
            o.saw_apply(nid, e.index, node.app_hash)
            if e.type == EntryType.CONF_CHANGE:
                cc = ConfChange.decode(e.data)
                node.conf = rn.apply_conf_change(cc)
                self.stats["conf_changes_applied"] += 1
                if cc.type == ConfChangeType.REMOVE_NODE:
                    node.removed = node.removed | {cc.node_id}
                    if cc.node_id == nid:
                        node.shutdown = True
            elif e.data == FINAL and self.final_index == 0:
                self.final_index = e.index
        for rs in rd.read_states:
            want = node.reads.pop(rs.request_ctx, None)
            self.stats["reads_served"] += 1
            if want is not None and rs.index < want:
                o.fail(f"ReadIndex: member {nid} got read index {rs.index} for "
                       f"{rs.request_ctx!r}, but {want} was committed before the read")
        if node.shutdown:
            node.rn = None

    # -- network --------------------------------------------------------------------
    def _deliver(self, i: int) -> None:
        src, inc, dst, m = self.net.pop(i)
        node = self.nodes.get(dst)
        sender = self.nodes[src]
        if (node is not None and node.rn is not None and src in node.removed
                and sender.incarnation == inc):
            # etcd's transport answers a removed member "you were removed" and
            # that member stops for good.
            sender.shutdown = True
            sender.rn = None
            return
        if (node is None or not node.alive or (src, dst) in self.blocked
                or dst in sender.removed):
            self._lost(sender, inc, dst, m)
            return
        if self.trace is not None:
            self.trace.append(f"  {src}->{dst} {_fmt(m)}")
        if self.k.wire:
            wire = decode_message(encode_message(m))
            if wire != m:
                self.oracle.fail(f"codec: {m} came back as {wire}")
            m = wire
        node.rn.step(m)
        self.stats["delivered"] += 1
        if m.type == MessageType.SNAP and sender.alive and sender.incarnation == inc:
            sender.rn.report_snapshot(dst, True)
            self._ready(sender)
        self._ready(node)

    def _lost(self, sender: SimNode, inc: int, dst: int, m: Message) -> None:
        if not sender.alive or sender.incarnation != inc:
            return
        if m.type == MessageType.SNAP:
            sender.rn.report_snapshot(dst, False)
        elif self.rng.random() < 0.3:
            sender.rn.report_unreachable(dst)
        else:
            return
        self._ready(sender)

    # -- helpers --------------------------------------------------------------------
    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def leader(self) -> SimNode | None:
        best = None
        for n in self.nodes.values():
            if n.alive and n.rn.raft.role == Role.LEADER and (
                    best is None or n.rn.raft.term > best.rn.raft.term):
                best = n
        return best

    def _propose(self, node: SimNode) -> None:
        self.proposal_seq += 1
        try:
            node.rn.propose(b"v%d" % self.proposal_seq)
        except ProposalDropped:
            pass
        self._ready(node)

    def _conf_change(self) -> None:
        lead = self.leader()
        if lead is None:
            return
        r = lead.rn.raft
        voters, learners = sorted(r.tracker.voters), sorted(r.tracker.learners)
        rng = self.rng
        choice = rng.random()
        if choice < 0.35 and self.next_id <= self.k.members + self.k.max_added:
            nid = self.next_id
            typ = ConfChangeType.ADD_LEARNER_NODE if rng.random() < 0.5 else \
                ConfChangeType.ADD_NODE
        elif choice < 0.6 and learners:
            nid, typ = rng.choice(learners), ConfChangeType.ADD_NODE
        elif choice < 0.8 and len(voters) > 2:
            nid, typ = rng.choice(voters), ConfChangeType.REMOVE_NODE
        elif learners:
            nid, typ = rng.choice(learners), ConfChangeType.REMOVE_NODE
        else:
            return
        try:
            lead.rn.propose_conf_change(ConfChange(typ, nid))
        except ProposalDropped:
            self._ready(lead)
            return
        if nid == self.next_id:
            self.next_id += 1
            node = SimNode(nid, MemoryStorage(), joined_removed=lead.removed)
            self.nodes[nid] = node
            self._start(node)
        self._ready(lead)

    def _compact(self, node: SimNode) -> None:
        disk = node.disk
        snap_index = disk.snapshot().index
        if node.applied <= snap_index:
            return
        disk.create_snapshot(node.applied, node.conf,
                             _encode_app(node.applied, node.app_hash, node.removed))
        keep = self.rng.randrange(4)
        at = node.applied - keep
        if at > snap_index and at > disk.first_index() - 1:
            disk.compact(at)

    def _read(self, node: SimNode) -> None:
        self.read_seq += 1
        ctx = b"r%d" % self.read_seq
        node.reads[ctx] = self.oracle.max_commit
        node.rn.read_index(ctx)
        self._ready(node)

    def _partition(self, isolate_leader: bool = False) -> None:
        ids = [n.id for n in self.nodes.values() if not n.shutdown]
        if len(ids) < 2:
            return
        self.rng.shuffle(ids)
        lead = self.leader()
        if isolate_leader and lead is not None:
            # the leader, maybe with a minority, cut off from the rest
            ids.remove(lead.id)
            ids.insert(0, lead.id)
            cut = self.rng.randrange(1, max(2, len(ids) // 2 + 1))
        else:
            cut = self.rng.randrange(1, len(ids))
        a, b = ids[:cut], ids[cut:]
        self.blocked = set()
        for x in a:
            for y in b:
                self.blocked.add((x, y))
                self.blocked.add((y, x))

    # -- the run --------------------------------------------------------------------
    # Each action is (name, weight, needs faults); `step` picks one by weight.
    ACTIONS: ClassVar[tuple] = (
        ("deliver", 50, False), ("tick", 18, False), ("propose", 10, False),
        ("finish_apply", 8, False),
        ("read", 3, False), ("tick_one", 2, False), ("compact", 3, False),
        ("transfer", 0.7, False), ("conf_change", 2.0, False),
        ("drop", 3, True), ("duplicate", 2, True), ("partition", 0.5, True),
        ("isolate_leader", 0.5, True), ("heal", 1.0, True), ("crash", 0.4, True),
        ("crash_leader", 0.4, True), ("restart", 2.0, True),
    )

    CHURN: ClassVar[dict[str, float]] = {"crash_leader": 4.0, "isolate_leader": 2.0, "restart": 2.5, "heal": 1.5}

    def _action_table(self) -> tuple[list[float], list[str]]:
        cum, names, total = [], [], 0.0
        for name, w, fault in self.ACTIONS:
            if self.k.churn:
                w *= self.CHURN.get(name, 1.0)
            if fault and not self.k.faults:
                continue
            if name == "conf_change" and not self.k.conf_changes:
                continue
            total += w
            cum.append(total)
            names.append(name)
        return [c / total for c in cum], names

    def step(self) -> None:
        cum, names = self._table
        x = self.rng.random()
        name = names[min(bisect.bisect_right(cum, x), len(names) - 1)]
        if self.trace is not None:
            lead = self.leader()
            self.trace.append(f"t={self.now} {name} leader={lead and lead.id}"
                              f"@{lead and lead.rn.raft.term} blocked={len(self.blocked)}")
        getattr(self, "_do_" + name)()

    def _tick_all(self) -> None:
        self.now += 1
        if self.held:
            now, keep, rng, net = self.now, [], self.rng, self.net
            for item in self.held:
                if item[0] <= now:
                    net.insert(rng.randrange(len(net) + 1), item[1])
                else:
                    keep.append(item)
            self.held = keep
        rng = self.rng
        skew = self.k.clock_skew
        for n in list(self.nodes.values()):
            if n.pending is not None and rng.random() < 0.5:
                self._finish(n)
            if n.rn is not None and (skew == 0 or rng.random() >= skew):
                n.rn.tick()
                self._ready(n)

    def _do_deliver(self) -> None:
        rng, net = self.rng, self.net
        for _ in range(rng.randrange(1, 5)):
            if not net:
                return
            self._deliver(0 if rng.random() < 0.75 else rng.randrange(len(net)))

    def _do_finish_apply(self) -> None:
        waiting = [n for n in self.nodes.values() if n.pending is not None]
        if waiting:
            self._finish(self.rng.choice(waiting))

    def _do_tick(self) -> None:
        self._tick_all()

    def _do_propose(self) -> None:
        live = self.live()
        if live:
            lead = self.leader()
            node = lead if lead is not None and self.rng.random() < 0.7 else self.rng.choice(live)
            self._propose(node)

    def _do_read(self) -> None:
        live = self.live()
        if live:
            self._read(self.rng.choice(live))

    def _do_tick_one(self) -> None:
        live = self.live()
        if live:
            n = self.rng.choice(live)
            n.rn.tick()
            self._ready(n)

    def _do_compact(self) -> None:
        live = self.live()
        if live:
            lead = self.leader()
            self._compact(lead if lead is not None and self.rng.random() < 0.5
                          else self.rng.choice(live))

    def _do_transfer(self) -> None:
        lead = self.leader()
        if lead is not None:
            voters = sorted(lead.rn.raft.tracker.voters)
            lead.rn.transfer_leader(self.rng.choice(voters))
            self._ready(lead)

    def _do_conf_change(self) -> None:
        self._conf_change()

    def _do_drop(self) -> None:
        if self.net:
            src, inc, dst, m = self.net.pop(self.rng.randrange(len(self.net)))
            self._lost(self.nodes[src], inc, dst, m)

    def _do_duplicate(self) -> None:
        if self.net:
            self.net.append(self.net[self.rng.randrange(len(self.net))])

    def _do_partition(self) -> None:
        self._partition()

    def _do_isolate_leader(self) -> None:
        self._partition(isolate_leader=True)

    def _do_heal(self) -> None:
        self.blocked.clear()

    def _do_crash(self) -> None:
        live = self.live()
        if len(live) > 1:
            self._crash(self.rng.choice(live))

    def _do_crash_leader(self) -> None:
        lead = self.leader()
        if lead is not None and len(self.live()) > 1:
            self._crash(lead)

    def _do_restart(self) -> None:
        dead = [n for n in self.nodes.values() if n.rn is None and not n.shutdown]
        if dead:
            node = self.rng.choice(dead)
            self._start(node)
            self._ready(node)

    def check(self) -> None:
        """Per-step global check: one leader per term among live members."""
        o = self.oracle
        for n in self.nodes.values():
            if n.rn is not None and n.rn.raft.role == Role.LEADER:
                o.saw_leader(n.rn.raft.term, n.id)

    def run(self) -> None:
        for _ in range(self.k.steps):
            self.step()
            self.check()

    def _check_final_logs(self, members: list[SimNode]) -> None:
        """Every committed entry the oracle saw is in these members' disks."""
        o = self.oracle
        for n in members:
            disk = n.disk
            lo, hi = disk.first_index() - 1, disk.last_index()
            for idx, t in o.committed.items():
                if lo <= idx <= hi and disk.term(idx) != t:
                    o.fail(f"committed entry lost: member {n.id} holds term "
                           f"{disk.term(idx)} at committed index {idx}, expected {t}")

    def liveness(self, max_ticks: int = 400) -> None:
        """Heal, restart everyone, deliver reliably: a leader must commit a
        fresh proposal and every live voter of its configuration apply it."""
        self.blocked.clear()
        self.k.faults = False
        for _, item in self.held:
            self.net.append(item)
        self.held = []
        for n in self.nodes.values():
            if not n.alive and not n.shutdown:
                self._start(n)
                self._ready(n)
        proposed_at = None
        for t in range(max_ticks):
            # deliver everything in flight (FIFO), then tick
            budget = 2000
            while (self.net or any(n.pending for n in self.nodes.values())) and budget:
                if self.net:
                    self._deliver(0)
                for n in list(self.nodes.values()):
                    if n.pending is not None:
                        self._finish(n)
                budget -= 1
            self.check()
            lead = self.leader()
            if lead is not None:
                fi = self.final_index
                if fi == 0 and (proposed_at is None or t - proposed_at >= 30):
                    proposed_at = t  # (re)propose: a leader change may have lost it
                    try:
                        lead.rn.propose(FINAL)
                    except ProposalDropped:
                        pass
                    self._ready(lead)
                    fi = self.final_index
                voters = [self.nodes[v] for v in lead.rn.raft.tracker.voters
                          if v in self.nodes and self.nodes[v].alive]
                if fi and lead.applied >= fi and all(n.applied >= fi for n in voters):
                    self._check_final_logs(voters)
                    return
            self._tick_all()
        states = {n.id: (n.alive, n.rn and n.rn.raft.role.name, n.rn and n.rn.raft.term,
                         n.rn and n.rn.raft.lead, n.applied) for n in self.nodes.values()}
        raise SafetyViolation(f"liveness: no leader committed a final proposal in "
                              f"{max_ticks} ticks; members {states}")


def knobs_for_seed(seed: int) -> Knobs:
    """Vary the cluster shape and options with the seed (deterministically)."""
    rng = random.Random(seed ^ 0x5EED)
    return Knobs(
        members=3 if seed % 2 == 0 else 5,
        steps=rng.choice((400, 600, 900)),
        churn=rng.random() < 0.3,
        wire=seed % 10 == 0,
        election_tick=rng.choice((3, 5, 10)),
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.75,
        max_size_per_msg=rng.choice((1, 40, 200, 1 << 20)),
        max_inflight=rng.choice((1, 3, 256)),
        max_committed_size=rng.choice((50, 1 << 40)),
    )


def run_seed(seed: int, knobs: Knobs | None = None, trace: int = 0) -> Simulation:
    """Run one seed; raises SafetyViolation naming the seed (and, with
    `trace`, the last `trace` scheduler events)."""
    sim = Simulation(seed, knobs or knobs_for_seed(seed), trace=trace)
    try:
        sim.run()
        sim.liveness()
    except Exception as e:  # noqa: BLE001 -- a crash inside raft fails the seed too
        what = str(e) if isinstance(e, SafetyViolation) else f"{type(e).__name__}: {e}"
        tail = "\n".join(sim.trace) if sim.trace else ""
        raise SafetyViolation(
            f"seed {seed}: {what}\n  reproduce: KCORE_RAFT_SEED={seed} pytest "
            f"tests/unit/raft -k seed" + (f"\n  last events:\n{tail}" if tail else ""),
        ) from (None if isinstance(e, SafetyViolation) else e)
    return sim
