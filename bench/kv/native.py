"""Sustained durable writes through kcore's pipelined protocol (issue 3's target:
>= 10,000 writes/s for 60 s on a 3-member cluster on this 2-core machine).

    python bench/kv/native.py                       # 3 members, 256 clients, 60 s
    python bench/kv/native.py --duration 10 --clients 128 --members 1
    python bench/kv/native.py --target all          # spread over every member

Starts the members itself (fresh temp dirs, fsync on, default snapshot count),
drives them with bench/kv/loadgen.py's generator (--protocol pipeline, several
processes), and prints writes/s over the window, the slowest and median
second, p50/p99, and server and generator CPU per write; writes a JSON result.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadgen import LoadSpec, run_load  # noqa: E402
from procstat import process_table, tree_cpu_s  # noqa: E402
from servers import free_ports  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def start_members(n: int, root: str, extra: list[str]) -> tuple[list[subprocess.Popen], list[str],
                                                                  list[str]]:
    ports = free_ports(3 * n)
    names = [f"n{i}" for i in range(n)]
    peer = [f"http://127.0.0.1:{ports[3 * i + 1]}" for i in range(n)]
    cluster = ",".join(f"{names[i]}={peer[i]}" for i in range(n))
    procs, pipes, grpcs = [], [], []
    for i in range(n):
        client = f"http://127.0.0.1:{ports[3 * i]}"
        pipe = f"127.0.0.1:{ports[3 * i + 2]}"
        argv = [sys.executable, "-m", "kcore.cli.main", "etcd", "--name", names[i],
                "--data-dir", os.path.join(root, names[i]),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
                "--initial-cluster", cluster, "--listen-pipeline-urls", f"tcp://{pipe}", *extra]
        log = open(os.path.join(root, f"{names[i]}.log"), "wb")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        pipes.append(pipe)
        grpcs.append(client.split("//")[1])
    return procs, pipes, grpcs


def wait_leader(grpc_eps: list[str], timeout: float = 30.0) -> int:
    import grpc

    from kcore.store.rpc.pb import rpc_pb2 as pb
    from kcore.store.rpc.pb import rpc_pb2_grpc as rpc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, ep in enumerate(grpc_eps):
            try:
                with grpc.insecure_channel(ep) as ch:
                    st = rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=1)
                if st.leader and st.leader == st.header.member_id:
                    return i
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise RuntimeError("no leader")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--target", choices=["leader", "all"], default="leader")
    ap.add_argument("--kcore-arg", action="append", default=[])
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    root = tempfile.mkdtemp(prefix="bench-native-")
    procs: list[subprocess.Popen] = []
    try:
        procs, pipes, grpcs = start_members(a.members, root, a.kcore_arg)
        leader = wait_leader(grpcs)
        eps = (pipes[leader],) if a.target == "leader" else tuple(pipes)
        spec = LoadSpec(endpoints=eps, clients=a.clients, duration_s=a.duration,
                        warmup_s=a.warmup, value_size=a.value_size, procs=a.procs,
                        conns=a.conns, protocol="pipeline", loop="uvloop")
        pids = [p.pid for p in procs]

        def probe() -> dict[str, float]:
            return {"server_cpu_s": tree_cpu_s(pids, process_table())}
        print(f"{a.members} member(s), {a.clients} clients over {a.procs} processes, "
              f"{a.duration:g} s, target {a.target} …", flush=True)
        r = run_load(spec, probe=probe)
        tl = sorted(r.timeline) or [0]
        srv = r.probe.get("server_cpu_s", 0.0)
        out = {
            "members": a.members, "clients": a.clients, "procs": a.procs, "target": a.target,
            "duration_s": r.window_s, "writes_per_s": r.puts_per_s,
            "slowest_second": tl[0], "median_second": tl[len(tl) // 2],
            "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "max_ms": r.max_ms, "errors": r.errors,
            "server_cpu_ms_per_write": srv / max(1, r.puts) * 1e3,
            "gen_cpu_ms_per_write": r.gen_cpu_ms_per_call, "timeline": r.timeline,
        }
        print(f"writes/s {r.puts_per_s:,.0f} (slowest second {tl[0]:,}, median {tl[len(tl)//2]:,})"
              f"  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  errors {sum(r.errors.values())}"
              f"  server CPU {out['server_cpu_ms_per_write']:.3f} ms/write"
              f"  generator CPU {r.gen_cpu_ms_per_call or 0:.3f} ms/write")
        path = a.out or os.path.join(HERE, "..", "results",
                                     time.strftime("kv-native-%Y%m%d-%H%M%S.json"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            json.dump(out, fh, indent=1)
        print(f"result: {os.path.abspath(path)}")
        return 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
