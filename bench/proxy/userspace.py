"""userspace mode throughput: connections/s and MB/s through the forwarder on
loopback, next to the same load sent straight to the backends.

    python bench/proxy/userspace.py                  # ~40 s
    python bench/proxy/userspace.py --duration 5 --concurrency 32 --out r.json

Three processes: backends (3 servers on 127.0.0.1), the proxy (UserspaceProxier,
rr, ClusterIP 127.0.10.1 -- local on loopback, nothing is bound), and the load
generator (this process). All share the machine's cores, as they would on a
node. Measured, each for --duration seconds after a 1 s warm-up:

* conns/s: --concurrency clients, each in a loop: connect, send a 4-byte
  request, read the 2-byte answer, close. Every connection is a new flow in
  the dispatcher (SYN, SYN-ACK, ACK, FINs) and a new backend connection.
* MB/s: --streams connections each sending 1 MiB chunks to a backend that
  discards them (one direction through the forwarder).
* direct: the same two against a backend port, no proxy, for scale.

uvloop is used when installed (as `kcore proxy` does). JSON to stdout and to
--out (default bench/results/proxy-userspace-<time>.json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "src")
sys.path.insert(0, SRC)
VIP = "127.0.10.1"
CHUNK = 1 << 20


def _loop_policy() -> str:
    try:
        import uvloop
        uvloop.install()
        return "uvloop"
    except ImportError:
        return "asyncio"


# -- roles --------------------------------------------------------------------------------------
async def backends(ports: list[int]) -> None:
    async def answer(r, w):
        try:
            await r.readexactly(4)
            w.write(b"ok")
            await r.read()          # until the client closes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        w.close()

    class Sink(asyncio.Protocol):      # discards what it gets, no stream buffering
        def data_received(self, data: bytes) -> None:
            pass
    loop = asyncio.get_running_loop()
    servers = [await asyncio.start_server(answer, "127.0.0.1", p, backlog=4096) for p in ports]
    servers.append(await loop.create_server(Sink, "127.0.0.1", ports[0] + 100, backlog=64))
    print("ready", flush=True)
    await asyncio.Event().wait()


async def proxy(vport: int, sink_vport: int, ports: list[int]) -> None:
    from kcore.proxy.servicemap import build
    from kcore.proxy.userspace import UserspaceProxier

    def svc(name, port, targets):
        return ({"metadata": {"name": name, "namespace": "bench"},
                 "spec": {"clusterIP": VIP, "ports": [{"port": port, "protocol": "TCP"}]}},
                {"metadata": {"name": name, "namespace": "bench"},
                 "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": p}]}
                             for p in targets]})
    a, b = svc("answer", vport, ports), svc("sink", sink_vport, [ports[0] + 100])
    p = UserspaceProxier("rr")
    await p.sync(build([a[0], b[0]], [a[1], b[1]]))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(json.dumps({"forwarded": p.forwarded, "refused": p.refused,
                      "backend_errors": p.backend_errors}), flush=True)
    await p.close()


# -- load ---------------------------------------------------------------------------------------
async def conns_per_s(host: str, port: int, concurrency: int, duration: float) -> dict:
    done = errors = 0
    measuring = False
    end = time.monotonic() + 1.0 + duration

    async def worker():
        nonlocal done, errors
        while time.monotonic() < end:
            try:
                r, w = await asyncio.open_connection(host, port)
                w.write(b"GET\n")
                await r.readexactly(2)
                w.close()
                await w.wait_closed()
                if measuring:
                    done += 1
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                await asyncio.sleep(0.01)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(1.0)
    measuring = True
    t0 = time.monotonic()
    await asyncio.gather(*tasks)
    dt = time.monotonic() - t0
    return {"conns_per_s": done / dt, "connections": done, "errors": errors, "seconds": dt}


async def mb_per_s(host: str, port: int, streams: int, duration: float) -> dict:
    sent = 0
    measuring = False
    end = time.monotonic() + 1.0 + duration
    blob = os.urandom(CHUNK)

    async def stream():
        nonlocal sent
        loop = asyncio.get_running_loop()
        sock = socket.create_connection((host, port))
        sock.setblocking(False)
        while time.monotonic() < end:
            await loop.sock_sendall(sock, blob)
            if measuring:
                sent += CHUNK
        sock.close()
    tasks = [asyncio.create_task(stream()) for _ in range(streams)]
    await asyncio.sleep(1.0)
    measuring = True
    t0 = time.monotonic()
    await asyncio.gather(*tasks)
    dt = time.monotonic() - t0
    return {"MB_per_s": sent / dt / 1e6, "bytes": sent, "seconds": dt}


def spawn(role: str, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, __file__, "--role", role, *args],
                         stdout=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{role} did not start")
    return p


def stop(p: subprocess.Popen) -> str:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--base-port", type=int, default=23100)
    ap.add_argument("--out", default="")
    ap.add_argument("--role", default="", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    loop_kind = _loop_policy()
    ports = [a.base_port + i for i in range(3)]
    vport, sink_vport = a.base_port + 50, a.base_port + 51
    if a.role == "backends":
        asyncio.run(backends(ports))
        return 0
    if a.role == "proxy":
        asyncio.run(proxy(vport, sink_vport, ports))
        return 0
    be = spawn("backends", "--base-port", str(a.base_port))
    px = None
    res: dict = {}
    try:
        px = spawn("proxy", "--base-port", str(a.base_port))
        res["proxy_conns"] = asyncio.run(conns_per_s(VIP, vport, a.concurrency, a.duration))
        res["proxy_stream"] = asyncio.run(mb_per_s(VIP, sink_vport, a.streams, a.duration))
        res["proxy_counters"] = json.loads(stop(px).strip().splitlines()[-1])
        px = None
        res["direct_conns"] = asyncio.run(conns_per_s("127.0.0.1", ports[0], a.concurrency,
                                                      a.duration))
        res["direct_stream"] = asyncio.run(mb_per_s("127.0.0.1", ports[0] + 100, a.streams,
                                                    a.duration))
    finally:
        if px is not None:
            stop(px)
        stop(be)
    from kcore.proxy.dispatcher import NATIVE_AVAILABLE
    doc = {"bench": "proxy-userspace", "loop": loop_kind, "native_dispatcher": NATIVE_AVAILABLE,
           "concurrency": a.concurrency, "streams": a.streams, "duration_s": a.duration,
           "result": res, "python": platform.python_version(), "cpus": os.cpu_count(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
    text = json.dumps(doc, indent=2)
    print(text)
    out = a.out or os.path.join(HERE, "..", "results",
                                f"proxy-userspace-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
