"""A synchronous in-process network of RawNodes for scenario tests.

`Net` plays every member's driver: it persists each Ready into the member's
MemoryStorage, applies committed entries (conf changes included), records
read states, and delivers messages until the cluster is quiet. Links can be
cut and message types filtered, like etcd-io/raft's test `network`.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from kcore.store.raft import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    Raft,
    RawNode,
    ReadState,
    Role,
)


class Net:
    def __init__(self, ids: Iterable[int], *, bootstrap: bool = True,
                 storages: dict[int, MemoryStorage] | None = None, **cfg) -> None:
        self.cfg = dict(cfg)
        self.nodes: dict[int, RawNode] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.conf: dict[int, ConfState] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.snapshots_installed: dict[int, int] = {}
        self.cut: set[tuple[int, int]] = set()
        self.drop: Callable[[Message], bool] | None = None
        self.delivered: list[Message] = []
        self.report_snapshots = True
        ids = list(ids)
        storages = storages or {}
        for nid in ids:
            st = storages.get(nid)
            if st is None:
                st = MemoryStorage(None if bootstrap else ConfState(tuple(ids)))
            self.add(nid, st)
            if bootstrap and nid not in storages:
                self.nodes[nid].bootstrap(ids)
        self.flush()

    # -- members ---------------------------------------------------------------
    def config(self, nid: int) -> Config:
        return Config(id=nid, rng=random.Random(nid), **self.cfg)

    def add(self, nid: int, storage: MemoryStorage | None = None) -> RawNode:
        st = storage if storage is not None else MemoryStorage()
        self.storage[nid] = st
        self.applied.setdefault(nid, [])
        self.read_states.setdefault(nid, [])
        self.conf[nid] = st.snapshot().conf_state
        self.nodes[nid] = RawNode(self.config(nid), st)
        return self.nodes[nid]

    def restart(self, nid: int) -> RawNode:
        """Crash and restart: only what was persisted survives."""
        self.applied[nid] = []
        return self.add(nid, self.storage[nid])

    def raft(self, nid: int) -> Raft:
        return self.nodes[nid].raft

    def leader(self) -> int:
        leads = [i for i, n in self.nodes.items() if n.raft.role == Role.LEADER]
        assert len(leads) <= 1 or len({self.raft(i).term for i in leads}) == len(leads)
        return max(leads, key=lambda i: self.raft(i).term) if leads else 0

    # -- links -----------------------------------------------------------------
    def isolate(self, nid: int) -> None:
        for other in self.nodes:
            if other != nid:
                self.cut.add((nid, other))
                self.cut.add((other, nid))

    def heal(self) -> None:
        self.cut.clear()
        self.drop = None

    # -- driving -----------------------------------------------------------------
    def process(self, nid: int) -> list[Message]:
        """One member's Ready loop: persist, collect messages, apply, advance."""
        rn, st = self.nodes[nid], self.storage[nid]
        out: list[Message] = []
        while rn.has_ready():
            rd = rn.ready()
            if rd.snapshot is not None:
                st.apply_snapshot(rd.snapshot)
            st.append(rd.entries)
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            if rd.snapshot is not None:
                self.snapshots_installed[nid] = rd.snapshot.index
                self.conf[nid] = rd.snapshot.conf_state
            for e in rd.committed_entries:
                self.applied[nid].append(e)
                if e.type == EntryType.CONF_CHANGE:
                    self.conf[nid] = rn.apply_conf_change(ConfChange.decode(e.data))
            self.read_states[nid].extend(rd.read_states)
            rn.advance(rd)
        return out

    def flush(self, max_rounds: int = 10_000) -> None:
        """Process and deliver until no member has anything left to do."""
        for _ in range(max_rounds):
            msgs: list[Message] = []
            for nid in list(self.nodes):
                msgs.extend((nid, m) for m in self.process(nid))
            if not msgs:
                return
            for src, m in msgs:
                self.deliver(src, m)
        raise AssertionError("network did not quiesce")

    def deliver(self, src: int, m: Message) -> None:
        dst = self.nodes.get(m.to)
        lost = (dst is None or (src, m.to) in self.cut
                or (self.drop is not None and self.drop(m)))
        if m.type == MessageType.SNAP and self.report_snapshots and src in self.nodes:
            self.nodes[src].report_snapshot(m.to, not lost)
        if lost:
            return
        self.delivered.append(m)
        dst.step(m)

    def tick(self, nid: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[nid].tick()
            self.flush()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for rn in self.nodes.values():
                rn.tick()
            self.flush()

    def campaign(self, nid: int) -> None:
        self.nodes[nid].campaign()
        self.flush()

    def propose(self, nid: int, data: bytes) -> None:
        self.nodes[nid].propose(data)
        self.flush()

    def log_terms(self, nid: int) -> list[tuple[int, int]]:
        return [(e.index, e.term) for e in self.raft(nid).log.all_entries()]

    def values(self, nid: int) -> list[bytes]:
        return [e.data for e in self.applied[nid] if e.type == EntryType.NORMAL and e.data]


def storage_with_log(voters: Iterable[int], terms: list[int], term: int | None = None
                     ) -> MemoryStorage:
    """A member's disk holding entries 1..n with the given terms (uncommitted)."""
    from kcore.store.raft import HardState
    st = MemoryStorage(ConfState(tuple(voters)))
    st.append([Entry(t, i + 1, EntryType.NORMAL, b"e%d" % (i + 1)) for i, t in enumerate(terms)])
    st.set_hard_state(HardState(term=term if term is not None else (terms[-1] if terms else 0)))
    return st
