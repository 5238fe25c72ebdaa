"""gRPC front-end benchmark: the same toy unary KV.Put served by (a) a stock
grpc.aio server and (b) kcore's native HTTP/2 server, driven by a
multi-process grpc.aio client at several concurrencies.

Prints, per server and concurrency, calls/s and the server's CPU time per
call (user+sys of the server process over the run), then the native/aio
ratios; `--json PATH` also writes them as JSON. Runs are short on purpose
(the machine has 2 cores shared with other work).

    python bench/grpc_frontend.py                         # both servers, 1/16/64/256
    python bench/grpc_frontend.py --duration 2 --concurrency 1,64 --json out.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

SERVERS = ("aio", "native")


# ---- the toy service ---------------------------------------------------------------------

def toy_registry(handler: str = "sync"):
    """KV.Put over a dict. handler "sync" answers at once; "commit" waits, like a
    store's group commit, for a future resolved with all others of its loop turn."""
    import asyncio

    from kcore.store.rpc.pb import kv_pb2
    from kcore.store.rpc.pb import rpc_pb2 as pb
    from kcore.store.rpc.registry import UNARY, Registry

    data: dict[bytes, kv_pb2.KeyValue] = {}
    state = {"rev": 1}

    batch: list[asyncio.Future] = []

    def commit() -> None:
        done = batch[:]
        batch.clear()
        for f in done:
            f.set_result(None)

    async def put(req):
        if handler == "commit":
            fut = asyncio.get_running_loop().create_future()
            if not batch:
                asyncio.get_running_loop().call_soon(commit)
            batch.append(fut)
            await fut
        state["rev"] += 1
        rev = state["rev"]
        data[req.key] = kv_pb2.KeyValue(key=req.key, value=req.value, mod_revision=rev)
        return pb.PutResponse(header=pb.ResponseHeader(cluster_id=1, member_id=1,
                                                       revision=rev, raft_term=2))

    reg = Registry()
    reg.add("etcdserverpb.KV", "Put", UNARY, pb.PutRequest, pb.PutResponse, put)
    return reg


def aio_handlers(registry):
    """The registry's unary methods as a grpc.aio generic handler."""
    import grpc

    def wrap(m):
        async def call(request, context):
            return await m.handler(request)
        return grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=m.request_type.FromString,
            response_serializer=m.response_type.SerializeToString)

    by_service: dict[str, dict] = {}
    for m in registry.methods.values():
        by_service.setdefault(m.service, {})[m.name] = wrap(m)
    return [grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items()]


async def _serve(kind: str, handler: str) -> None:
    registry = toy_registry(handler)
    if kind == "native":
        from kcore.store.rpc.native_server import NativeGrpcServer
        server = NativeGrpcServer(registry)
        port = await server.start("127.0.0.1", 0)
    else:
        import grpc
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(aio_handlers(registry))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.stop(0.5)


def serve_main(kind: str, handler: str) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(kind, handler))


# ---- the load generator -------------------------------------------------------------------

async def _drive(port: int, workers: int, duration: float, start_at: float) -> int:
    import grpc

    from kcore.store.rpc.pb import rpc_pb2 as pb
    from kcore.store.rpc.pb import rpc_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rpc_pb2_grpc.KVStub(channel)
        await stub.Put(pb.PutRequest(key=b"warm", value=b"up"))
        count = 0
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.time() + duration

        async def worker(i: int) -> None:
            nonlocal count
            req = pb.PutRequest(key=b"bench/%d" % i, value=b"v" * 64)
            while time.time() < end:
                await stub.Put(req)
                count += 1

        await asyncio.gather(*(worker(i) for i in range(workers)))
        return count


def _client_proc(port: int, workers: int, duration: float, start_at: float, out) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_drive(port, workers, duration, start_at)))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(kind: str, port: int, pid: int, concurrency: int, procs: int,
            duration: float) -> dict:
    nproc = max(1, min(procs, concurrency))
    split = [concurrency // nproc + (1 if i < concurrency % nproc else 0) for i in range(nproc)]
    q: mp.Queue = mp.Queue()
    start_at = time.time() + 1.0
    ps = [mp.Process(target=_client_proc, args=(port, w, duration, start_at, q)) for w in split]
    for p in ps:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, t0 = _cpu_seconds(pid), time.time()
    calls = sum(q.get(timeout=duration + 60) for _ in ps)
    cpu1, t1 = _cpu_seconds(pid), time.time()
    for p in ps:
        p.join(10)
    elapsed = min(t1 - t0, duration + 0.5)
    return {"server": kind, "concurrency": concurrency, "client_procs": nproc,
            "calls": calls, "calls_per_s": round(calls / elapsed, 1),
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "server_cpu_us_per_call": round((cpu1 - cpu0) / max(calls, 1) * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    ap.add_argument("--procs", type=int, default=2, help="client processes (at most)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--handler", choices=("sync", "commit"), default="sync",
                    help="toy Put answers at once, or after a simulated group commit")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_main(args.serve, args.handler)
        return 0

    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[dict] = []
    for kind in args.servers.split(","):
        server = subprocess.Popen([sys.executable, __file__, "--serve", kind,
                                   "--handler", args.handler],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            for c in levels:
                r = run_one(kind, port, server.pid, c, args.procs, args.duration)
                results.append(r)
                print(f"{kind:7s} c={c:<4d} {r['calls_per_s']:9.1f} calls/s  "
                      f"server {r['server_cpu_us_per_call']:7.1f} us CPU/call", flush=True)
        finally:
            server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    ratios = []
    by = {(r["server"], r["concurrency"]): r for r in results}
    for c in levels:
        a, n = by.get(("aio", c)), by.get(("native", c))
        if a and n:
            ratios.append({"concurrency": c,
                           "calls_per_s_ratio": round(n["calls_per_s"] / a["calls_per_s"], 2),
                           "cpu_per_call_ratio": round(n["server_cpu_us_per_call"]
                                                       / a["server_cpu_us_per_call"], 3)})
            print(f"c={c:<4d} native/aio: calls/s x{ratios[-1]['calls_per_s_ratio']}, "
                  f"server CPU per call x{ratios[-1]['cpu_per_call_ratio']}")
    doc = {"bench": "grpc_frontend", "handler": args.handler, "duration_s": args.duration,
           "results": results,
           "ratios": ratios}
    print(json.dumps(doc))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
