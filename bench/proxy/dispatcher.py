"""Userspace IPVS dispatcher benchmark: batch API rates per scheduler, one core.

    python bench/proxy/dispatcher.py              # all nine schedulers, ~1 min
    python bench/proxy/dispatcher.py --quick      # smaller tables, fewer rounds
    python bench/proxy/dispatcher.py --sched rr,mh --dests 32 --out result.json

Per scheduler, through Dispatcher.process() (FLOW_DTYPE arrays in, dest ids out):

* lookups/s: ACK packets of existing ESTABLISHED connections, in random order,
  against a table of --conns connections (and of --big-conns, which no longer
  fits in cache). Each is a hash probe, a TCP state step and an expiry re-arm.
* decisions/s: SYNs of new connections (fresh 5-tuples from many clients):
  service lookup, the scheduler's choice, a new entry, its counters, its timer.
  The table is pre-sized (--capacity) and rebuilt, untimed, between rounds.
* ref: the same two measurements on the pure-Python reference (smaller batch);
  ratio = native rate / reference rate.

Best of --rounds per figure (the machine is shared). JSON goes to stdout and to
bench/results/proxy-dispatcher-<time>.json (or --out). Targets from the issue:
>= 20M lookups/s and >= 10M new-connection decisions/s per core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from kcore.proxy.dispatcher import (
    F_ACK,
    F_SYN,
    NATIVE_AVAILABLE,
    SCHEDULERS,
    TCP,
    Dispatcher,
    Service,
    make_flows,
)

VIP = 0x0A60000A
PORT = 80
TARGET_LOOKUPS = 20e6
TARGET_DECISIONS = 10e6


def build(native: bool, sched: str, n_dests: int, capacity: int) -> Dispatcher:
    d = Dispatcher(native=native, capacity=capacity, seed=42)
    flags = 0x10 if sched in ("sh", "mh") else 0  # hash the source port too: spread one client
    sid = d.add_service(Service(VIP, PORT, "tcp", sched, flags=flags))
    for i in range(n_dests):
        d.add_dest(sid, 0x0AF40001 + i, 8080, 1 + i % 4)
    return d


def flows_for(n: int, offset: int, flags: int) -> np.ndarray:
    """n distinct client 5-tuples (index offset.. offset+n), all to the VIP."""
    idx = np.arange(offset, offset + n, dtype=np.uint64)
    fl = make_flows(n)
    fl["saddr"] = (0x64400000 + (idx >> np.uint64(14))).astype(np.uint32)  # 100.64/10 clients
    fl["sport"] = (1024 + (idx & np.uint64(0x3FFF))).astype(np.uint16)
    fl["daddr"] = VIP
    fl["dport"] = PORT
    fl["proto"] = TCP
    fl["flags"] = flags
    return fl


def timed(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def lookups(native: bool, sched: str, n_dests: int, conns: int, batch: int, rounds: int,
            rng: np.random.Generator) -> float:
    d = build(native, sched, n_dests, capacity=conns * 2)
    syn = flows_for(conns, 0, F_SYN)
    d.process(syn, 1)
    ack = syn.copy()
    ack["flags"] = F_ACK
    d.process(ack, 2)  # all ESTABLISHED now
    assert d.conn_count()[0] == conns
    pick = ack[rng.integers(0, conns, batch)]
    out = np.empty(batch, dtype=np.int32)
    d.process(pick, 3, out)
    assert (out >= 0).all()
    return batch / timed(lambda: d.process(pick, 3, out), rounds)


def decisions(native: bool, sched: str, n_dests: int, batch: int, rounds: int) -> float:
    syn = flows_for(batch, 1 << 30, F_SYN)
    out = np.empty(batch, dtype=np.int32)
    best = float("inf")
    for _ in range(rounds):
        d = build(native, sched, n_dests, capacity=batch * 2)  # untimed
        t0 = time.perf_counter()
        d.process(syn, 1, out)
        best = min(best, time.perf_counter() - t0)
        assert (out >= 0).all() and d.conn_count()[0] == batch
    return batch / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sched", default=",".join(SCHEDULERS))
    ap.add_argument("--dests", type=int, default=8, help="real servers per service")
    ap.add_argument("--conns", type=int, default=100_000, help="table size for lookups")
    ap.add_argument("--big-conns", type=int, default=2_000_000,
                    help="larger table for lookups (0 to skip)")
    ap.add_argument("--batch", type=int, default=1_000_000, help="flows per timed batch")
    ap.add_argument("--ref-batch", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if not NATIVE_AVAILABLE:
        print("kcore._native.ipvs is not built", file=sys.stderr)
        return 2
    if args.quick:
        args.conns, args.big_conns, args.batch, args.rounds = 50_000, 0, 300_000, 3
        args.ref_batch = 5_000
    rng = np.random.default_rng(1)
    rows = []
    for sched in args.sched.split(","):
        row = {"scheduler": sched}
        row["lookups_per_s"] = lookups(True, sched, args.dests, args.conns, args.batch,
                                       args.rounds, rng)
        if args.big_conns:
            row["lookups_per_s_big"] = lookups(True, sched, args.dests, args.big_conns,
                                               args.batch, args.rounds, rng)
        row["decisions_per_s"] = decisions(True, sched, args.dests, args.batch, args.rounds)
        ref_conns = min(args.conns, 4 * args.ref_batch)
        row["ref_lookups_per_s"] = lookups(False, sched, args.dests, ref_conns, args.ref_batch,
                                           2, rng)
        row["ref_decisions_per_s"] = decisions(False, sched, args.dests, args.ref_batch, 2)
        row["lookup_ratio"] = row["lookups_per_s"] / row["ref_lookups_per_s"]
        row["decision_ratio"] = row["decisions_per_s"] / row["ref_decisions_per_s"]
        rows.append(row)
        big = f"  big {row['lookups_per_s_big'] / 1e6:6.1f}M" if args.big_conns else ""
        print(f"{sched:4s} lookups {row['lookups_per_s'] / 1e6:6.1f}M/s{big}  "
              f"decisions {row['decisions_per_s'] / 1e6:6.1f}M/s  "
              f"ref {row['ref_lookups_per_s'] / 1e3:6.1f}k / {row['ref_decisions_per_s'] / 1e3:6.1f}k"
              f"  ratio x{row['lookup_ratio']:.0f} / x{row['decision_ratio']:.0f}",
              file=sys.stderr)
    result = {
        "bench": "proxy-dispatcher",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version()},
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "targets": {"lookups_per_s": TARGET_LOOKUPS, "decisions_per_s": TARGET_DECISIONS},
        "rows": rows,
        "met": {
            "lookups": all(r["lookups_per_s"] >= TARGET_LOOKUPS for r in rows),
            "decisions": all(r["decisions_per_s"] >= TARGET_DECISIONS for r in rows),
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results",
                                   time.strftime("proxy-dispatcher-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
