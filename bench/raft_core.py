"""Raft core micro-benchmarks: no disk, no network, one process.

    python bench/raft_core.py            # all
    python bench/raft_core.py --quick    # shorter runs

* commit: a 3-member cluster driven in-process (MemoryStorage, messages
  handed over directly); proposals/s committed and applied on every member,
  one proposal per Ready round, 64 separate proposals per round, and one
  `propose_batch` of 64 per round (one append per follower).
* codec: MsgApp with 16 entries of 256 bytes, encode + decode per second.
* simulation: seeds/s of the deterministic cluster simulation (the CI test).

Times are CPU seconds of this process (time.process_time), so a busy shared
machine skews them less than wall time would.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from kcore.store.raft import (
    Config,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    decode_message,
    encode_message,
)

HERE = os.path.dirname(os.path.abspath(__file__))


class Cluster:
    def __init__(self, n: int = 3) -> None:
        ids = list(range(1, n + 1))
        self.st = {i: MemoryStorage() for i in ids}
        self.nodes = {i: RawNode(Config(id=i), self.st[i]) for i in ids}
        for rn in self.nodes.values():
            rn.bootstrap(ids)
        self.applied = 0
        self.flush()
        self.nodes[1].campaign()
        self.flush()

    def flush(self) -> None:
        while True:
            out = []
            for i, rn in self.nodes.items():
                while rn.has_ready():
                    rd = rn.ready()
                    st = self.st[i]
                    st.append(rd.entries)
                    if rd.hard_state is not None:
                        st.set_hard_state(rd.hard_state)
                    out.extend(rd.messages)
                    if i == 1:
                        self.applied += len(rd.committed_entries)
                    rn.advance(rd)
            if not out:
                return
            for m in out:
                self.nodes[m.to].step(m)


def bench_commit(total: int, batch: int, together: bool = False) -> float:
    c = Cluster()
    data = b"x" * 256
    base = c.applied
    t = time.process_time()
    done = 0
    while done < total:
        if together:
            c.nodes[1].propose_batch([data] * batch)
        else:
            for _ in range(batch):
                c.nodes[1].propose(data)
        done += batch
        c.flush()
    dt = time.process_time() - t
    assert c.applied - base == done
    return done / dt


def bench_codec(n: int) -> float:
    m = Message(MessageType.APP, to=2, from_=1, term=7, log_term=7, index=100,
                entries=tuple(Entry(7, 101 + i, data=b"y" * 256) for i in range(16)), commit=99)
    t = time.process_time()
    for _ in range(n):
        decode_message(encode_message(m))
    return n / (time.process_time() - t)


def bench_sim(seeds: int) -> float:
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "unit", "raft"))
    import raft_sim
    t = time.process_time()
    for s in range(seeds):
        raft_sim.run_seed(s)
    return seeds / (time.process_time() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    k = 1 if a.quick else 5
    rows = [
        ("commit, 1 proposal per round", f"{bench_commit(2000 * k, 1):,.0f} proposals/s"),
        ("commit, 64 proposals per round", f"{bench_commit(20000 * k, 64):,.0f} proposals/s"),
        ("commit, propose_batch of 64", f"{bench_commit(50000 * k, 64, True):,.0f} proposals/s"),
        ("codec MsgApp 16x256B enc+dec", f"{bench_codec(20000 * k):,.0f} msgs/s"),
        ("simulation", f"{bench_sim(200 * k):,.1f} seeds/s"),
    ]
    w = max(len(r[0]) for r in rows)
    for name, val in rows:
        print(f"{name:<{w}}  {val}")


if __name__ == "__main__":
    main()
