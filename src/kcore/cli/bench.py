"""`kcore bench`: replay a key-value trace against a store at a target rate.

    kcore bench gen --ops 600000 --keys 100000 --value-size 256 --out trace.jsonl
    kcore bench replay trace.jsonl --endpoints 127.0.0.1:2390 --rate 10000

A trace is JSON lines: {"op": "put"|"get"|"del", "key": "...", "value": "..."}
(or "size": N instead of a value). Replay is open-loop: operation i is due at
start + i/rate whatever happened to the others (no coordinated omission), with
at most --max-inflight outstanding; latency is measured from the due time.
It reports the achieved rate, latency percentiles and errors, with a progress
bar, and can write a JSON result.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

from kcore.cli.flags import FlagSet, run_flags


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in ("replay", "gen"):
        print("usage: kcore bench replay FILE --endpoints H:P --rate N | "
              "kcore bench gen --ops N --out FILE", file=sys.stderr)
        return 2
    return _replay(argv[1:]) if argv[0] == "replay" else _gen(argv[1:])


def _gen(argv: list[str]) -> int:
    fs = FlagSet("kcore bench gen", "Generate a key-value trace.")
    fs.add("ops", "int", 100_000, "operations")
    fs.add("keys", "int", 10_000, "distinct keys")
    fs.add("value-size", "int", 256, "bytes per value")
    fs.add("read-ratio", "float", 0.0, "fraction of gets")
    fs.add("delete-ratio", "float", 0.0, "fraction of deletes")
    fs.add("prefix", "str", "/bench/", "key prefix")
    fs.add("seed", "int", 1, "random seed")
    fs.add("out", "str", "trace.jsonl", "output file")
    o, _ = run_flags(fs, argv)
    rng = random.Random(o.seed)
    with open(o.out, "w") as fh:
        for _ in range(o.ops):
            k = f"{o.prefix}{rng.randrange(o.keys):08d}"
            r = rng.random()
            if r < o.read_ratio:
                fh.write(json.dumps({"op": "get", "key": k}) + "\n")
            elif r < o.read_ratio + o.delete_ratio:
                fh.write(json.dumps({"op": "del", "key": k}) + "\n")
            else:
                fh.write(json.dumps({"op": "put", "key": k, "size": o.value_size}) + "\n")
    print(f"wrote {o.ops} operations to {o.out}")
    return 0


def _load(path: str) -> list[tuple[str, bytes, bytes]]:
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            val = r.get("value")
            val = val.encode() if isinstance(val, str) else os.urandom(int(r.get("size", 0)) // 2
                                                                        ).hex().encode()
            out.append((r["op"], r["key"].encode(), val))
    return out


def _replay(argv: list[str]) -> int:
    fs = FlagSet("kcore bench replay", "Replay a trace at a target rate.")
    fs.add("endpoints", "list", ["127.0.0.1:2390"], "store endpoints")
    fs.add("protocol", "str", "pipeline", "pipeline (kcore's) or grpc (any etcd)")
    fs.add("rate", "float", 1000.0, "operations per second (0 = as fast as possible)")
    fs.add("max-inflight", "int", 4096, "outstanding operations at most")
    fs.add("connections", "int", 2, "connections (pipeline protocol)")
    fs.add("duration", "duration", 0.0, "stop after this long (0 = the whole trace)")
    fs.add("json", "str", "", "write the result here")
    o, args = run_flags(fs, argv)
    if len(args) != 1:
        print("kcore bench replay: exactly one trace FILE is needed", file=sys.stderr)
        return 2
    ops = _load(args[0])
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(replay(ops, o.endpoints, o.protocol, o.rate, o.max_inflight,
                             o.connections, o.duration))
    print(f"ops {res['done']:,} in {res['elapsed_s']:.1f} s: {res['rate']:,.0f} ops/s "
          f"(target {o.rate:,.0f}); latency p50 {res['p50_ms']:.2f} ms p90 {res['p90_ms']:.2f}"
          f" ms p99 {res['p99_ms']:.2f} ms max {res['max_ms']:.2f} ms; errors {res['errors']}")
    if o.json:
        with open(o.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0 if not res["errors"] else 1


async def replay(ops, endpoints, protocol: str, rate: float, max_inflight: int,
                 connections: int, duration: float) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from kcore.store import client as sc
    from kcore.store import errors
    from kcore.store.rpc.pb import rpc_pb2 as pb

    if protocol == "pipeline":
        c = sc.connect_pipeline(endpoints, connections=connections)
    else:
        c = sc.connect(endpoints)
    lat: list[float] = []
    errs: dict[str, int] = {}
    sem = asyncio.Semaphore(max_inflight)
    done = 0
    start = time.perf_counter() + 0.2
    stop_at = start + duration if duration else float("inf")

    async def one(op: str, key: bytes, val: bytes, due: float) -> None:
        nonlocal done
        try:
            if op == "put":
                await c.put(pb.PutRequest(key=key, value=val))
            elif op == "get":
                await c.range(pb.RangeRequest(key=key))
            else:
                await c.delete_range(pb.DeleteRangeRequest(key=key))
            lat.append(time.perf_counter() - due)
        except (TimeoutError, errors.StoreError) as e:
            name = type(e).__name__
            errs[name] = errs.get(name, 0) + 1
        finally:
            done += 1
            sem.release()

    tasks = set()
    with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  transient=False) as bar:
        t = bar.add_task("replay", total=len(ops), rate="")
        last_update = 0.0
        for i, (op, key, val) in enumerate(ops):
            due = start + (i / rate if rate > 0 else 0.0)
            if due > stop_at:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            await sem.acquire()
            task = asyncio.get_running_loop().create_task(one(op, key, val, due if rate else
                                                             time.perf_counter()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if now - last_update > 0.25:
                last_update = now
                el = max(1e-6, now - start)
                bar.update(t, completed=done, rate=f"{done / el:,.0f} ops/s")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        bar.update(t, completed=done)
    elapsed = time.perf_counter() - start
    await c.close()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1e3 if lat else float("nan")
    return {"done": done, "elapsed_s": elapsed, "rate": done / elapsed if elapsed else 0.0,
            "target_rate": rate, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "max_ms": lat[-1] * 1e3 if lat else float("nan"), "errors": errs}
