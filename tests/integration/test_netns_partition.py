"""The same fault test with real network partitions: three test hosts as
network namespaces on a bridge (made by the test), one store member on each;
iptables inside the namespaces cuts members apart. Needs root and iproute2."""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time

import netns
import pytest
from store_harness import Cluster

from kcore.check import workload
from kcore.check.linearizability import Op, check
from kcore.store import client as sc

pytestmark = pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")
DURATION = 12.0
KEYS = [f"ns/{i}".encode() for i in range(3)]


def test_partitions_between_namespaces(tmpdir_path):
    hosts = netns.Hosts(3)
    c = Cluster(tmpdir_path, 3)
    procs = []
    try:
        for i, m in enumerate(c.members):
            m.host = hosts.ips[i]
            m.client_port, m.peer_port = 2379, 2380
            m.listen_peer_port = 2380
            m.cmd_prefix = hosts.exec_prefix(i)
        ic = ",".join(f"{m.name}={m.peer_url}" for m in c.members)
        for m in c.members:
            m.initial_cluster = ic
        c.start()
        endpoints = [m.endpoint for m in c.members]
        paths = [os.path.join(tmpdir_path, f"h{i}.jsonl") for i in range(2)]
        ctx = mp.get_context("spawn")
        for i, p in enumerate(paths):
            pr = ctx.Process(target=workload.client_process,
                             args=(i, endpoints, KEYS, DURATION, 7 + i, p))
            pr.start()
            procs.append(pr)
        log = []
        t_end = time.monotonic() + DURATION
        time.sleep(2)
        i = 0
        while time.monotonic() < t_end - 3:
            victim = i % 3
            if i % 2 == 0:
                hosts.isolate(victim)
                log.append(f"isolate {victim}")
            else:
                hosts.partition(victim, (victim + 1) % 3)
                log.append(f"cut {victim}-{(victim + 1) % 3}")
            time.sleep(2.0)
            hosts.heal()
            time.sleep(1.0)
            i += 1
        hosts.heal()
        for pr in procs:
            pr.join(DURATION + 60)
            assert pr.exitcode == 0
        history = workload.load_history(paths)

        async def finals():
            async with sc.connect(endpoints, timeout=5) as cl:
                out = []
                for k in KEYS:
                    for _ in range(50):
                        try:
                            t0 = time.monotonic()
                            kv, _ = await cl.get(k)
                            out.append(Op(999, k, "get", t0, time.monotonic(), None,
                                          kv.value.decode() if kv else None))
                            break
                        except Exception:  # noqa: BLE001 - still electing
                            await asyncio.sleep(0.2)
                return out
        fin = asyncio.run(finals())
        assert len(fin) == len(KEYS)
        assert len(history) > 100
        r = check(history + fin)
        assert r.ok, f"{r.failing_key}: {r.detail}; faults {log}"
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        c.stop()
        hosts.close()
