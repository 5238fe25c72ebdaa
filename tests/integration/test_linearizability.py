"""Jepsen-style: concurrent clients in separate processes against a 3-member
cluster while a nemesis kills -9 and restarts members, partitions them through
a fault-injecting peer proxy, and pauses them (SIGSTOP/SIGCONT). Every history
must be linearizable (which also means no acknowledged write is lost), and a
watcher that resumes from its last revision across member failures must see
exactly the store's history: ordered, no duplicates, no gaps.

KCORE_FULL=1 runs longer histories."""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import signal
import time

from faultproxy import FaultProxy
from store_harness import Cluster, free_port

from kcore.check import workload
from kcore.check.linearizability import check
from kcore.store import client as sc
from kcore.store.config import member_id

FULL = os.environ.get("KCORE_FULL") == "1"
DURATION = 40.0 if FULL else 14.0
KEYS = [f"lin/{i}".encode() for i in range(4)]


def proxied_cluster(root: str) -> tuple[Cluster, FaultProxy, dict[str, int]]:
    c = Cluster(root, 3)
    proxy = FaultProxy()
    for m in c.members:
        m.listen_peer_port = free_port()
        proxy.add_route(m.peer_port, m.listen_peer_port)
    ids = {m.name: member_id([m.peer_url], "etcd-cluster") for m in c.members}
    return c, proxy, ids


def nemesis(c: Cluster, proxy: FaultProxy, ids: dict[str, int], stop_at: float, seed: int,
            log: list[str]) -> None:
    rng = random.Random(seed)
    time.sleep(1.5)
    kinds = ["kill", "partition", "pause"]
    n = 0
    while time.monotonic() < stop_at - 3:
        m = rng.choice(c.members)
        fault = kinds[n % 3]
        n += 1
        log.append(f"{time.monotonic():.3f} {fault} {m.name}")
        if fault == "kill":
            m.kill9()
            time.sleep(rng.uniform(0.5, 1.5))
            m.start(wait=False)
        elif fault == "partition":
            proxy.isolate(ids[m.name], list(ids.values()))
            time.sleep(rng.uniform(1.0, 2.5))
            proxy.heal()
        else:
            m.signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.5, 1.5))
            m.signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.5, 1.5))
    proxy.heal()
    for m in c.members:
        m.signal(signal.SIGCONT)
        if m.proc.poll() is not None:
            m.start(wait=False)


def test_linearizable_under_faults(tmpdir_path):
    c, proxy, ids = proxied_cluster(tmpdir_path)
    c.start()
    procs = []
    try:
        endpoints = [m.endpoint for m in c.members]
        ctx = mp.get_context("spawn")
        paths = [os.path.join(tmpdir_path, f"hist-{i}.jsonl") for i in range(3)]
        stop_at = time.monotonic() + DURATION
        for i, p in enumerate(paths):
            pr = ctx.Process(target=workload.client_process,
                             args=(i, endpoints, KEYS, DURATION, 100 + i, p))
            pr.start()
            procs.append(pr)
        seen: list = []
        log: list[str] = []

        async def watch_and_nemesis():
            wt = asyncio.create_task(workload.resumable_watch(endpoints, b"lin/", stop_at + 2,
                                                               seen))
            await asyncio.to_thread(nemesis, c, proxy, ids, stop_at, 42, log)
            return await wt
        reconnects = asyncio.run(watch_and_nemesis())
        for pr in procs:
            pr.join(DURATION + 60)
            assert pr.exitcode == 0
        history = workload.load_history(paths)
        assert len(history) > 200, "too few operations completed"

        # after healing: one final read per key joins the history
        async def final_reads():
            async with sc.connect(endpoints, timeout=5) as cl:
                for _ in range(100):
                    try:
                        await cl.status()
                        break
                    except Exception:  # noqa: BLE001
                        await asyncio.sleep(0.2)
                from kcore.check.linearizability import Op
                out = []
                for k in KEYS:
                    t0 = time.monotonic()
                    kv, _ = await cl.get(k)
                    out.append(Op(999, k, "get", t0, time.monotonic(), None,
                                  kv.value.decode() if kv else None))
                # the reference history of the prefix, from revision 1
                ref = []
                w = cl.watch_prefix(b"lin/", start_revision=1)
                it = w.__aiter__()
                head = await cl.get_prefix(b"lin/")
                while not ref or ref[-1][0] < head.header.revision:
                    resp = await asyncio.wait_for(it.__anext__(), 10)
                    ref += [(e.kv.mod_revision, e.type, e.kv.key, e.kv.value)
                            for e in resp.events]
                await w.cancel()
                return out, ref
        finals, ref = asyncio.run(final_reads())
        result = check(history + finals)
        assert result.ok, f"not linearizable on {result.failing_key}: {result.detail}\n" \
                          f"nemesis: {log}"
        assert not result.timed_out_keys
        # the watcher resumed across failures and saw exactly the store's history
        cut = [e for e in seen if e[0] <= ref[-1][0]]
        if cut != ref[:len(cut)]:
            i = next(i for i, (a, b) in enumerate(zip(cut, ref)) if a != b) \
                if any(a != b for a, b in zip(cut, ref)) else min(len(cut), len(ref))
            raise AssertionError(f"watch events out of order, duplicated or missing at {i}: "
                                 f"watched {cut[max(0, i - 2):i + 3]} store {ref[max(0, i - 2):i + 3]}"
                                 f" (lengths {len(cut)} vs {len(ref)}); nemesis {log}")
        assert len(cut) >= len(ref) * 0.9, (len(cut), len(ref))
        print(f"{len(history)} ops ({result.unknown} unknown), {len(ref)} revisions, "
              f"watch reconnects {reconnects}, nemesis {log}")
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        for m in c.members:
            m.signal(signal.SIGCONT)
        c.stop()
        proxy.close()
