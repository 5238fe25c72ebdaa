"""Put load generator for any etcd v3 endpoint.

N clients (coroutines), each doing one Put after another, are split across P
worker processes; each process has its own event loop and channels. A run is
a warm-up followed by a measured window; only calls that complete inside the
window count. Every process keeps a latency histogram and its own CPU time
over the window (getrusage covers grpc's threads too); the parent adds them
up, so the generator's own cost is reported next to the server's.

Alone:  python bench/kv/loadgen.py --endpoints 127.0.0.1:2379 --clients 64 --duration 10

Clients go to endpoints round-robin (client i -> endpoints[i % len]), so a
3-member target list spreads the load like a balancing client would. The
client protocol is a seam (`PROTOCOLS`): today grpc.aio, later kcore's native
path, with the same worker loop and accounting.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from histogram import Histogram, merge_all

NS = 1_000_000_000


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Sizes are bytes, times seconds."""

    endpoints: tuple[str, ...]
    clients: int
    duration_s: float = 10.0
    warmup_s: float = 2.0
    value_size: int = 256
    key_space: int = 0            # 0: unique keys <prefix>/<proc>/<client>/<n>; N: N keys, random
    key_prefix: str = "bench"
    procs: int = 0                # worker processes; 0: default_procs()
    conns: int = 1                # channels (HTTP/2 connections) per endpoint per process
    timeout_s: float = 10.0       # per call
    protocol: str = "grpc"
    loop: str = "asyncio"         # or "uvloop"
    seed: int = 1


@dataclass
class LoadResult:
    clients: int
    procs: int
    conns: int
    endpoints: list[str]
    window_s: float
    puts: int
    errors: dict[str, int]
    puts_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    gen_cpu_s: float
    gen_cpu_ms_per_call: float | None
    timeline: list[int]           # completed puts per second of the window
    probe: dict[str, float] = field(default_factory=dict)   # caller's probe, after - before
    histogram: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_procs(clients: int, cores: int) -> int:
    """One process per 8 clients, at most one per core, never more than clients.

    One Python process tops out near a core's worth of calls, so high
    concurrency needs several; a lone client gains nothing from a second one.
    """
    return max(1, min(clients, cores, math.ceil(clients / 8)))


def split_clients(clients: int, procs: int) -> list[list[int]]:
    """Global client ids per process, as even as possible: 10 over 3 -> 4, 3, 3."""
    base, extra = divmod(clients, procs)
    out, start = [], 0
    for p in range(procs):
        n = base + (1 if p < extra else 0)
        out.append(list(range(start, start + n)))
        start += n
    return out


def summarize(spec: LoadSpec, procs: int, parts: list[dict], window_s: float,
              probe: dict[str, float]) -> LoadResult:
    """Add up the per-process reports into one result (pure)."""
    hist = merge_all(Histogram.from_json(p["histogram"]) for p in parts)
    errors: dict[str, int] = {}
    for p in parts:
        for name, n in p["errors"].items():
            errors[name] = errors.get(name, 0) + n
    width = max((len(p["timeline"]) for p in parts), default=0)
    timeline = [sum(p["timeline"][i] for p in parts if i < len(p["timeline"]))
                for i in range(width)]
    cpu = sum(p["cpu_s"] for p in parts)
    calls = sum(p["calls"] for p in parts)

    def ms(us: float | None) -> float | None:
        return None if us is None else round(us / 1000, 3)

    return LoadResult(
        clients=spec.clients, procs=procs, conns=spec.conns, endpoints=list(spec.endpoints),
        window_s=round(window_s, 3), puts=hist.count, errors=errors,
        puts_per_s=round(hist.count / window_s, 1) if window_s > 0 else 0.0,
        p50_ms=ms(hist.quantile_us(0.50)), p90_ms=ms(hist.quantile_us(0.90)),
        p99_ms=ms(hist.quantile_us(0.99)), max_ms=ms(hist.max_us), mean_ms=ms(hist.mean_us()),
        gen_cpu_s=round(cpu, 3),
        gen_cpu_ms_per_call=round(cpu / calls * 1000, 4) if calls else None,
        timeline=timeline, probe=probe, histogram=hist.to_json(),
    )


# ---- client protocols -------------------------------------------------------

class GrpcPut:
    """etcd v3 KV.Put over grpc.aio; one channel per (endpoint, conn slot)."""

    def __init__(self, spec: LoadSpec) -> None:
        import grpc

        from kcore.store.rpc.pb import rpc_pb2, rpc_pb2_grpc

        self._grpc, self._pb, self._pb_grpc = grpc, rpc_pb2, rpc_pb2_grpc
        self._timeout = spec.timeout_s
        self._channels: list[Any] = []
        self._stubs: dict[tuple[str, int], Any] = {}

    async def open(self, endpoint: str, slot: int) -> None:
        # A local subchannel pool makes each channel its own TCP connection;
        # the default global pool would fold them into one.
        ch = self._grpc.aio.insecure_channel(
            endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            await asyncio.wait_for(ch.channel_ready(), self._timeout)
        except TimeoutError:
            await ch.close()
            raise ConnectionError(f"{endpoint}: no connection within {self._timeout:g}s") from None
        self._channels.append(ch)
        self._stubs[(endpoint, slot)] = self._pb_grpc.KVStub(ch).Put

    def putter(self, endpoint: str, slot: int) -> Callable[[bytes, bytes], Any]:
        put, req, timeout = self._stubs[(endpoint, slot)], self._pb.PutRequest, self._timeout
        return lambda key, value: put(req(key=key, value=value), timeout=timeout)

    def error_name(self, exc: BaseException) -> str | None:
        if isinstance(exc, self._grpc.aio.AioRpcError):
            return exc.code().name
        return None

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


class PipelinePut:
    """KV.Put over kcore's pipelined TCP protocol (kcore etcd --listen-pipeline-urls);
    one connection per (endpoint, conn slot), every request of every client in flight."""

    def __init__(self, spec: LoadSpec) -> None:
        from kcore.store import client as store_client
        from kcore.store.rpc.pb import rpc_pb2

        self._client_mod, self._pb = store_client, rpc_pb2
        self._timeout = spec.timeout_s
        self._clients: dict[tuple[str, int], Any] = {}

    async def open(self, endpoint: str, slot: int) -> None:
        c = self._client_mod.connect_pipeline([endpoint], timeout=self._timeout)
        await c.transport._connect()
        self._clients[(endpoint, slot)] = c

    def putter(self, endpoint: str, slot: int) -> Callable[[bytes, bytes], Any]:
        put, req = self._clients[(endpoint, slot)].put, self._pb.PutRequest
        return lambda key, value: put(req(key=key, value=value))

    def error_name(self, exc: BaseException) -> str | None:
        from kcore.store import errors
        if isinstance(exc, errors.StoreError):
            return type(exc).__name__
        return None

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()


PROTOCOLS: dict[str, Callable[[LoadSpec], Any]] = {"grpc": GrpcPut, "pipeline": PipelinePut}


# ---- worker process -----------------------------------------------------------

def _cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _worker_main(spec: LoadSpec, proc: int, client_ids: list[int], conn: Any) -> dict:
    client = PROTOCOLS[spec.protocol](spec)
    n_ep = len(spec.endpoints)
    for ep in spec.endpoints:
        for slot in range(spec.conns):
            await client.open(ep, slot)
    conn.send(("ready", proc))
    msg = conn.recv()                        # ("go", warm_end_ns, end_ns) or ("stop",)
    if msg[0] != "go":
        await client.close()
        return {}
    _, warm_ns, end_ns = msg

    value = os.urandom(spec.value_size // 2 + 1).hex()[: spec.value_size].encode()
    latencies: list[int] = []
    timeline = [0] * max(1, math.ceil((end_ns - warm_ns) / NS))
    last_sec = len(timeline) - 1
    errors: dict[str, int] = {}
    calls = 0
    now = time.monotonic_ns

    async def run_client(g: int, local: int) -> None:
        nonlocal calls
        ep = spec.endpoints[g % n_ep]
        put = client.putter(ep, (g // n_ep) % spec.conns)
        rng = random.Random(spec.seed * 1_000_003 + g)
        n = 0
        while True:
            t0 = now()
            if t0 >= end_ns:
                return
            if spec.key_space:
                key = f"{spec.key_prefix}/{rng.randrange(spec.key_space):012d}".encode()
            else:
                key = f"{spec.key_prefix}/{proc}/{local}/{n}".encode()
            n += 1
            try:
                await put(key, value)
                failed = None
            except Exception as exc:  # noqa: BLE001 - a failed call is counted, never fatal
                failed = client.error_name(exc) or type(exc).__name__
            t1 = now()
            if warm_ns <= t1 < end_ns:
                calls += 1
                if failed is None:
                    latencies.append((t1 - t0) // 1000)
                    timeline[min((t1 - warm_ns) // NS, last_sec)] += 1
                else:
                    errors[failed] = errors.get(failed, 0) + 1
            if failed is not None:
                await asyncio.sleep(0.01)     # do not spin on a dead endpoint

    cpu: dict[str, float] = {}

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, (warm_ns - now()) / NS))
        cpu["start"] = _cpu_now()
        await asyncio.sleep(max(0.0, (end_ns - now()) / NS))
        cpu["end"] = _cpu_now()

    meter = asyncio.ensure_future(cpu_window())
    tasks = [asyncio.ensure_future(run_client(g, i)) for i, g in enumerate(client_ids)]
    await meter
    _, pending = await asyncio.wait(tasks, timeout=spec.timeout_s + 1)
    for t in pending:
        t.cancel()
    await client.close()

    hist = Histogram()
    hist.record_many(latencies)
    return {"proc": proc, "histogram": hist.to_json(), "errors": errors, "calls": calls,
            "timeline": timeline, "cpu_s": cpu["end"] - cpu["start"]}


def _worker(spec: LoadSpec, proc: int, client_ids: list[int], conn: Any) -> None:
    try:
        if spec.loop == "uvloop":
            import uvloop
            uvloop.install()
        result = asyncio.run(_worker_main(spec, proc, client_ids, conn))
        conn.send(("done", result))
    except BaseException as exc:  # noqa: BLE001 - report it; the parent decides
        conn.send(("error", f"worker {proc}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ---- parent -------------------------------------------------------------------

class LoadError(RuntimeError):
    """A worker failed to connect or crashed; the message names it."""


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / NS
    if delay > 0:
        time.sleep(delay)


def run_load(spec: LoadSpec, probe: Callable[[], dict[str, float]] | None = None,
             ready_timeout_s: float = 30.0) -> LoadResult:
    """Run one load level and return the merged result.

    ``probe`` is called at the start and at the end of the measured window
    (e.g. to read server CPU); ``result.probe`` holds after - before per key.
    """
    procs = spec.procs or default_procs(spec.clients, usable_cores())
    groups = split_clients(spec.clients, procs)
    ctx = mp.get_context("spawn")             # grpc does not survive fork
    workers, conns = [], []
    finished = False
    try:
        for p, ids in enumerate(groups):
            parent_end, child_end = ctx.Pipe()
            w = ctx.Process(target=_worker, args=(spec, p, ids, child_end), daemon=True,
                            name=f"loadgen-{p}")
            w.start()
            child_end.close()
            workers.append(w)
            conns.append(parent_end)
        deadline = time.monotonic() + ready_timeout_s
        for c in conns:
            if not c.poll(max(0.0, deadline - time.monotonic())):
                raise LoadError(f"workers not ready after {ready_timeout_s:.0f}s")
            msg = c.recv()
            if msg[0] != "ready":
                raise LoadError(msg[1])
        warm_ns = time.monotonic_ns() + int(spec.warmup_s * NS)
        end_ns = warm_ns + int(spec.duration_s * NS)
        for c in conns:
            c.send(("go", warm_ns, end_ns))
        before: dict[str, float] = {}
        after: dict[str, float] = {}
        if probe:
            _sleep_until(warm_ns)
            before = probe()
            _sleep_until(end_ns)
            after = probe()
        parts = []
        for c in conns:
            if not c.poll(spec.warmup_s + spec.duration_s + spec.timeout_s + 30):
                raise LoadError("a worker did not report")
            msg = c.recv()
            if msg[0] != "done":
                raise LoadError(msg[1])
            parts.append(msg[1])
        finished = True
    finally:
        for c in conns:
            c.close()
        for w in workers:
            if finished:
                w.join(5)
            if w.is_alive():           # our own worker; interrupted or stuck
                w.terminate()
                w.join(5)
    delta = {k: round(after[k] - before[k], 3) for k in before if k in after}
    return summarize(spec, procs, parts, spec.duration_s, delta)


def format_line(r: LoadResult) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"
    err = sum(r.errors.values())
    cpu = "-" if r.gen_cpu_ms_per_call is None else f"{r.gen_cpu_ms_per_call:.3f}"
    return (f"clients={r.clients} procs={r.procs} puts/s={r.puts_per_s:.0f} "
            f"p50={f(r.p50_ms)}ms p90={f(r.p90_ms)}ms p99={f(r.p99_ms)}ms max={f(r.max_ms)}ms "
            f"errors={err} gen_cpu={r.gen_cpu_s:.2f}s ({cpu} ms/call)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoints", required=True,
                    help="comma-separated host:port list; clients go round-robin")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-space", type=int, default=0,
                    help="0: a new key per put; N: random keys among N")
    ap.add_argument("--key-prefix", default="bench")
    ap.add_argument("--procs", type=int, default=0, help="worker processes (0: auto)")
    ap.add_argument("--conns", type=int, default=1, help="connections per endpoint per process")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-call timeout, seconds")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="grpc")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    return ap.parse_args(argv)


def spec_from_args(a: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        endpoints=tuple(e.strip() for e in a.endpoints.split(",") if e.strip()),
        clients=a.clients, duration_s=a.duration, warmup_s=a.warmup, value_size=a.value_size,
        key_space=a.key_space, key_prefix=a.key_prefix, procs=a.procs, conns=a.conns,
        timeout_s=a.timeout, protocol=a.protocol, loop=a.loop)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    spec = spec_from_args(a)
    try:
        result = run_load(spec)
    except LoadError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    if a.json:
        out = result.to_json()
        out.pop("histogram")
        print(json.dumps(out, indent=2))
    else:
        print(format_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
