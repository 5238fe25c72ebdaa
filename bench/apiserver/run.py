"""API server benchmark: pod creates/s, bindings/s, gets/s, list latency, watch fan-out.

    python bench/apiserver/run.py                       # 10k pods, embedded store
    python bench/apiserver/run.py --pods 100000         # the 100k list point
    python bench/apiserver/run.py --server http://127.0.0.1:8080   # any running apiserver
    python bench/apiserver/run.py --etcd-servers http://127.0.0.1:2379

Starts `kcore apiserver` (embedded store, temp data dir on disk, fsync on) unless
--server is given, drives it over HTTP from a separate process with concurrent
aiohttp clients (keep-alive connections), and prints one JSON document (also
written to --out). Latencies are per request, wall clock, client side.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import aiohttp
import orjson


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def summary(lat: list[float], seconds: float) -> dict:
    return {"count": len(lat), "seconds": round(seconds, 3),
            "per_second": round(len(lat) / seconds, 1) if seconds else 0,
            "p50_ms": round(pct(lat, 50) * 1000, 2), "p99_ms": round(pct(lat, 99) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2) if lat else 0}


def pod(name: str) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "labels": {"app": "bench", "tier": "x"}}, "spec": {"containers": [{
            "name": "c", "image": "registry.k8s.io/pause:3.9",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "ports": [{"containerPort": 8080}]}]}})


class RawConn:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost less CPU than
    the server it measures (both share this machine's cores)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.r = self.w = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      ctype: str = "application/json") -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.w.write(head.encode() + body)
        hdr = await self.r.readuntil(b"\r\n\r\n")
        status = int(hdr[9:12])
        i = hdr.lower().find(b"content-length:")
        n = int(hdr[i + 15:hdr.index(b"\r\n", i)]) if i >= 0 else 0
        data = await self.r.readexactly(n) if n else b""
        return status, data

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


async def raw_phase(base: str, n: int, conc: int, make) -> dict:
    """n requests by conc workers, each on its own keep-alive connection."""
    from urllib.parse import urlsplit
    u = urlsplit(base)
    lat: list[float] = []
    errors = 0
    nxt = iter(range(n))
    conns = [RawConn(u.hostname, u.port) for _ in range(conc)]

    async def worker(c):
        nonlocal errors
        for i in nxt:
            t = time.perf_counter()
            ok = await make(c, i)
            lat.append(time.perf_counter() - t)
            if not ok:
                errors += 1
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(c) for c in conns])
    dt = time.perf_counter() - t0
    for c in conns:
        c.close()
    out = summary(lat, dt)
    out["errors"] = errors
    return out


async def run_phase(base: str, n: int, conc: int, make) -> dict:
    """n requests by conc workers; make(session, i) performs request i."""
    lat: list[float] = []
    errors = 0
    nxt = iter(range(n))
    conn = aiohttp.TCPConnector(limit=conc, force_close=False)
    async with aiohttp.ClientSession(base, connector=conn) as s:
        async def worker():
            nonlocal errors
            for i in nxt:
                t = time.perf_counter()
                ok = await make(s, i)
                lat.append(time.perf_counter() - t)
                if not ok:
                    errors += 1
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conc)])
        dt = time.perf_counter() - t0
    out = summary(lat, dt)
    out["errors"] = errors
    return out


async def bench(args) -> dict:
    base = args.server
    ns = "bench"
    res: dict = {"pods": args.pods, "concurrency": args.concurrency}
    async with aiohttp.ClientSession(base) as s, s.post("/api/v1/namespaces", data=orjson.dumps(
            {"metadata": {"name": ns}})) as r:
        await r.read()

    async def create(c, i):
        st, _ = await c.request("POST", f"/api/v1/namespaces/{ns}/pods", pod(f"p-{i}"))
        return st == 201
    res["create"] = await raw_phase(base, args.pods, args.concurrency, create)

    async def get(c, i):
        st, _ = await c.request("GET", f"/api/v1/namespaces/{ns}/pods/p-{i % args.pods}")
        return st == 200
    res["get"] = await raw_phase(base, min(args.pods, args.gets), args.concurrency, get)

    async def bind(c, i):
        body = orjson.dumps({"apiVersion": "v1", "kind": "Binding",
                             "metadata": {"name": f"p-{i}"},
                             "target": {"kind": "Node", "name": f"node-{i % 100}"}})
        st, _ = await c.request("POST", f"/api/v1/namespaces/{ns}/pods/p-{i}/binding", body)
        return st == 201
    res["binding"] = await raw_phase(base, args.pods, args.concurrency, bind)

    # list latency: the whole namespace, JSON; and a selector list
    lat = []
    async with aiohttp.ClientSession(base) as s:
        for _ in range(args.lists):
            t = time.perf_counter()
            async with s.get(f"/api/v1/namespaces/{ns}/pods") as r:
                body = await r.read()
            lat.append(time.perf_counter() - t)
        n_items = len(orjson.loads(body)["items"])
        sel = []
        for _ in range(args.lists):
            t = time.perf_counter()
            async with s.get(f"/api/v1/namespaces/{ns}/pods?fieldSelector="
                             f"spec.nodeName%3Dnode-7") as r:
                await r.read()
            sel.append(time.perf_counter() - t)
        paged = []
        for _ in range(args.lists):
            t = time.perf_counter()
            async with s.get(f"/api/v1/namespaces/{ns}/pods?limit=500") as r:
                await r.read()
            paged.append(time.perf_counter() - t)
    res["list"] = {"items": n_items, "full_p50_ms": round(pct(lat, 50) * 1000, 1),
                   "full_max_ms": round(max(lat) * 1000, 1),
                   "field_selector_p50_ms": round(pct(sel, 50) * 1000, 1),
                   "limit500_p50_ms": round(pct(paged, 50) * 1000, 1)}
    res["watch"] = await watch_fanout(base, ns, args.watchers, args.watch_events)
    return res


async def watch_fanout(base: str, ns: str, watchers: int, events: int) -> dict:
    """watchers clients watch configmaps in ns; `events` updates are made; count the
    events delivered to all watchers and the time until the last one arrived."""
    async with aiohttp.ClientSession(base) as s:
        async with s.post(f"/api/v1/namespaces/{ns}/configmaps", data=orjson.dumps(
                {"metadata": {"name": "fan"}, "data": {"v": "0"}}),
                headers={"Content-Type": "application/json"}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
    got = [0] * watchers
    done = asyncio.Event()
    target = watchers * events
    total = [0]
    conn = aiohttp.TCPConnector(limit=0)
    sess = aiohttp.ClientSession(base, connector=conn, timeout=aiohttp.ClientTimeout(
        total=None))
    ready = [0]

    async def watch(i):
        async with sess.get(f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion="
                            f"{rv}&timeoutSeconds=120") as r:
            ready[0] += 1
            async for line in r.content:
                if line.strip():
                    got[i] += 1
                    total[0] += 1
                    if total[0] >= target:
                        done.set()
                    if got[i] >= events:
                        return
    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    while ready[0] < watchers:
        await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(base) as s:
        for k in range(1, events + 1):
            async with s.patch(f"/api/v1/namespaces/{ns}/configmaps/fan",
                               data=orjson.dumps({"data": {"v": str(k)}}),
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    dt = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sess.close()
    return {"watchers": watchers, "updates": events, "delivered": total[0],
            "seconds": round(dt, 3), "delivered_per_second": round(total[0] / dt, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="")
    ap.add_argument("--etcd-servers", default="")
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--gets", type=int, default=10000)
    ap.add_argument("--lists", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--watch-events", type=int, default=20)
    ap.add_argument("--out", default="")
    ap.add_argument("--data-root", default="")
    args = ap.parse_args()
    proc = None
    tmp = None
    try:
        if not args.server:
            tmp = tempfile.mkdtemp(prefix="kcore-bench-", dir=args.data_root or None)
            port = free_port()
            cmd = [sys.executable, "-m", "kcore.cli.main", "apiserver",
                   f"--insecure-port={port}", f"--data-dir={tmp}/data"]
            if args.etcd_servers:
                cmd.append(f"--etcd-servers={args.etcd_servers}")
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(tmp, "log"), "wb"))
            args.server = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(args.server + "/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        res = asyncio.run(bench(args))
        res["server"] = "embedded" if proc and not args.etcd_servers else (
            args.etcd_servers or args.server)
        res["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = json.dumps(res, indent=2)
        print(text)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write(text + "\n")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
