"""A 3-member `kcore etcd` cluster on loopback, driven by real etcdctl and the
gRPC client: bootstrap, replication, reads on every member, leader failure,
membership changes, snapshot catch-up, --force-new-cluster recovery, a
foreign cluster refused, and mutual TLS between peers."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time

import grpc
import pytest
from store_harness import ETCDCTL, Cluster, Member, etcdctl, wait_port

from kcore import pki
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb import rpc_pb2_grpc as rpc

pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl not installed")


def status(ep: str) -> dict:
    out = etcdctl(ep, "endpoint", "status", "-w", "json").stdout
    return json.loads(out)[0]["Status"]


def wait_leader(c: Cluster, timeout: float = 10.0) -> Member:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in c.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            try:
                st = status(m.endpoint)
            except AssertionError:
                continue
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return m
        time.sleep(0.1)
    raise AssertionError("no leader elected")


@pytest.fixture
def cluster(tmpdir_path):
    c = Cluster(tmpdir_path, 3, extra=["--snapshot-count=200",
                                      "--experimental-snapshot-catchup-entries=50"]).start()
    yield c
    c.stop()


def wait_published(c: Cluster, n: int, timeout: float = 10.0) -> list[str]:
    """Members publish their name and client URLs through the log after start."""
    deadline = time.monotonic() + timeout
    while True:
        out = etcdctl(c.endpoints, "member", "list").stdout.strip().splitlines()
        if len(out) == n and all(not line.endswith(", , false") for line in out):
            return out
        if time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def test_bootstrap_replicate_and_read_everywhere(cluster):
    wait_leader(cluster)
    out = wait_published(cluster, 3)
    assert len(out) == 3
    for line in out:
        m = re.fullmatch(r"[0-9a-f]+, started, (m\d), http://127\.0\.0\.1:\d+, "
                         r"http://127\.0\.0\.1:\d+, false", line)
        assert m, line
    leaders = {status(m.endpoint).get("leader", 0) for m in cluster.members}
    assert len(leaders) == 1 and 0 not in leaders
    # a write through each member is readable (linearizably) through every member
    for i, m in enumerate(cluster.members):
        assert etcdctl(m.endpoint, "put", f"k{i}", f"v{i}").stdout.strip() == "OK"
    for m in cluster.members:
        assert etcdctl(m.endpoint, "get", "k", "--prefix", "--keys-only").stdout.split() == \
            ["k0", "k1", "k2"]
    out = etcdctl(cluster.endpoints, "endpoint", "health", "--cluster")
    assert (out.stdout + out.stderr).count("is healthy") == 3
    # every member reports the same revision and hash
    hashes = etcdctl(cluster.endpoints, "endpoint", "hashkv", "-w", "json").stdout
    assert len({h["HashKV"]["hash"] for h in json.loads(hashes)}) == 1


def test_leader_killed_under_load(cluster):
    leader = wait_leader(cluster)
    acked: dict[bytes, bytes] = {}
    eps = [m.endpoint for m in cluster.members if m is not leader]

    async def load(stop_at: float):
        chans = [grpc.aio.insecure_channel(e) for e in eps]
        stubs = [rpc.KVStub(ch) for ch in chans]

        async def writer(w: int):
            n = 0
            while time.monotonic() < stop_at:
                k, v = f"load/{w}/{n}".encode(), os.urandom(8).hex().encode()
                try:
                    await stubs[w % len(stubs)].Put(pb.PutRequest(key=k, value=v), timeout=3)
                    acked[k] = v
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
                n += 1
        await asyncio.gather(*(writer(w) for w in range(16)))
        for ch in chans:
            await ch.close()

    async def main():
        t = asyncio.create_task(load(time.monotonic() + 6))
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        leader.kill9()
        # a new leader serves within 3 election timeouts (3 s at the default 1 s)
        new = None
        while time.monotonic() - killed_at < 3.0:
            for m in cluster.members:
                if m is leader:
                    continue
                try:
                    st = await asyncio.to_thread(status, m.endpoint)
                except AssertionError:
                    continue
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    new = m
            if new:
                break
            await asyncio.sleep(0.1)
        assert new is not None, "no new leader within 3 election timeouts"
        await t
    asyncio.run(main())
    assert acked
    leader.start()
    with grpc.insecure_channel(leader.endpoint) as ch:
        r = rpc.KVStub(ch).Range(pb.RangeRequest(key=b"load/", range_end=b"load0"), timeout=10)
    got = {kv.key: kv.value for kv in r.kvs}
    lost = [k for k, v in acked.items() if got.get(k) != v]
    assert not lost, f"{len(lost)} acknowledged writes lost"


def test_followers_learn_commits_between_heartbeats(tmpdir_path):
    """Followers learn a commit from the leader's broadcast, not from the next
    heartbeat: with a 500 ms heartbeat a write shows up in followers' serializable
    reads well before it (a --force-new-cluster recovery from a follower relies on
    that too), and a write made through a follower is readable there as soon as it
    is answered."""
    c = Cluster(tmpdir_path, 3, extra=["--heartbeat-interval=500",
                                      "--election-timeout=5000"]).start()
    try:
        leader = wait_leader(c, timeout=30)
        followers = [m for m in c.members if m is not leader]
        chans = {m.name: grpc.insecure_channel(m.endpoint) for m in c.members}
        kv = {n: rpc.KVStub(ch) for n, ch in chans.items()}

        def seen(m, key, value) -> bool:
            r = kv[m.name].Range(pb.RangeRequest(key=key, serializable=True), timeout=5)
            return bool(r.kvs) and r.kvs[0].value == value

        for i in range(3):
            key, value = f"quiet/{i}".encode(), f"v{i}".encode()
            kv[leader.name].Put(pb.PutRequest(key=key, value=value), timeout=5)
            t0 = time.monotonic()
            pending = set(m.name for m in followers)
            while pending and time.monotonic() - t0 < 0.25:
                pending -= {m.name for m in followers if m.name in pending
                            and seen(m, key, value)}
                time.sleep(0.002)
            assert not pending, f"{pending} did not apply write {i} within 250 ms"
            time.sleep(0.3)         # the leader goes quiet again
        for m in followers:
            key = f"via/{m.name}".encode()
            kv[m.name].Put(pb.PutRequest(key=key, value=b"x"), timeout=5)
            assert seen(m, key, b"x")
        for ch in chans.values():
            ch.close()
    finally:
        c.stop()


def test_member_remove_add_and_snapshot_catch_up(cluster, tmpdir_path):
    wait_leader(cluster)
    m3 = cluster.by_name("m3")
    ids = {line.split(", ")[2]: line.split(", ")[0]
           for line in etcdctl(cluster.endpoints, "member", "list").stdout.strip().splitlines()}
    out = etcdctl(cluster.members[0].endpoint, "member", "remove", ids["m3"]).stdout
    # etcdctl pads IDs to 16 characters with spaces (%16x)
    assert re.search(rf"Member\s+{ids['m3']} removed from cluster", out), out
    for _ in range(50):
        if m3.proc.poll() is not None:
            break
        time.sleep(0.1)
    assert m3.proc.poll() is not None, "a removed member shuts down"
    assert len(etcdctl(cluster.members[0].endpoint, "member", "list").stdout.splitlines()) == 2
    cluster.members.remove(m3)
    wait_leader(cluster)
    # enough writes that the log is compacted past a new member's start (snapshot-count 200)
    with grpc.insecure_channel(cluster.members[0].endpoint) as ch:
        kv = rpc.KVStub(ch)
        for i in range(400):
            for attempt in range(5):   # a client retries through a leader change
                try:
                    kv.Put(pb.PutRequest(key=f"bulk/{i:04d}".encode(), value=b"y" * 100),
                           timeout=10)
                    break
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                        raise
                    time.sleep(0.2)
    m4 = Member(os.path.join(tmpdir_path, "m4"), name="m4", extra=cluster.extra)
    out = etcdctl(cluster.members[0].endpoint, "member", "add", "m4",
                  f"--peer-urls={m4.peer_url}").stdout
    assert "Member" in out and "added to cluster" in out
    m4.initial_cluster = ",".join([f"{m.name}={m.peer_url}" for m in cluster.members[:2]]
                                  + [f"m4={m4.peer_url}"])
    m4.state = "existing"
    cluster.members.append(m4)
    m4.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = etcdctl(m4.endpoint, "get", "bulk/", "--prefix", "--keys-only", "-w", "json",
                    check=False)
        if r.returncode == 0 and json.loads(r.stdout).get("count") == 400:
            break
        time.sleep(0.3)
    assert json.loads(etcdctl(m4.endpoint, "get", "bulk/", "--prefix", "--keys-only",
                              "-w", "json").stdout)["count"] == 400
    names = "\n".join(wait_published(cluster, 3, timeout=15))
    assert ", started, m4, " in names
    assert "received snapshot" in m4.log() or "installed snapshot" in m4.log()


def test_force_new_cluster_recovers_a_member(cluster):
    wait_leader(cluster)
    for i in range(20):
        etcdctl(cluster.endpoints, "put", f"keep/{i}", str(i))
    survivor = cluster.members[0]
    for m in cluster.members:
        m.kill9()
    survivor.extra = survivor.extra + ["--force-new-cluster"]
    survivor.start()
    out = etcdctl(survivor.endpoint, "member", "list").stdout.strip().splitlines()
    assert len(out) == 1 and ", m1, " in out[0]
    assert len(etcdctl(survivor.endpoint, "get", "keep/", "--prefix", "--keys-only")
               .stdout.split()) == 20
    assert etcdctl(survivor.endpoint, "put", "after", "force").stdout.strip() == "OK"
    # restarting without the flag keeps the one-member cluster
    survivor.stop()
    survivor.extra = [a for a in survivor.extra if a != "--force-new-cluster"]
    survivor.start()
    assert etcdctl(survivor.endpoint, "get", "after").stdout.splitlines() == ["after", "force"]


def test_member_of_another_cluster_is_refused(tmpdir_path):
    a = Cluster(os.path.join(tmpdir_path, "a"), 3).start()
    try:
        wait_leader(a)
        # a fourth process claims m3's peer URL identity but with another token
        m3 = a.by_name("m3")
        m3.kill9()
        intruder = Member(os.path.join(tmpdir_path, "intruder"), name="m3",
                          extra=["--initial-cluster-token=other-cluster"])
        intruder.peer_port, intruder.client_port = m3.peer_port, m3.client_port
        intruder.initial_cluster = m3.initial_cluster
        intruder.start()
        time.sleep(2.5)
        assert "cluster ID mismatch" in a.members[0].log() + a.members[1].log() + intruder.log()
        out = etcdctl(intruder.endpoint, "--command-timeout=2s", "put", "x", "y", check=False)
        assert out.returncode != 0, "the intruder must not reach a quorum"
        intruder.stop()
    finally:
        a.stop()


def test_peer_mutual_tls(tmpdir_path):
    ca = pki.make_ca("peer-ca")
    d = tmpdir_path
    with open(os.path.join(d, "ca.crt"), "wb") as fh:
        fh.write(ca.cert_pem())
    peer = pki.make_cert(ca, "peer", hosts=("127.0.0.1",), server=True, client=True)
    peer.write(os.path.join(d, "peer.crt"), os.path.join(d, "peer.key"))
    extra = [f"--peer-cert-file={d}/peer.crt", f"--peer-key-file={d}/peer.key",
             f"--peer-trusted-ca-file={d}/ca.crt", "--peer-client-cert-auth=true"]
    c = Cluster(os.path.join(d, "c"), 3, extra=extra, peer_scheme="https").start()
    try:
        wait_leader(c)
        etcdctl(c.endpoints, "put", "tls", "peers")
        for m in c.members:
            assert etcdctl(m.endpoint, "get", "tls").stdout.splitlines() == ["tls", "peers"]
        # a plaintext peer connection is refused by the TLS listener
        p = subprocess.run(["python3", "-c", f"""
import socket; s=socket.create_connection(('127.0.0.1', {c.members[0].peer_port}), 2)
s.sendall(b'\\x00\\x00\\x00\\x01\\x01x'); s.settimeout(2)
try:
    print(s.recv(100))
except Exception as e:
    print('closed', e)"""], capture_output=True, text=True, timeout=10)
        assert "OK" not in p.stdout
    finally:
        c.stop()


del wait_port


def test_learner_add_catch_up_and_promote(cluster, tmpdir_path):
    wait_leader(cluster)
    for i in range(30):
        etcdctl(cluster.endpoints, "put", f"l/{i}", "x")
    m4 = Member(os.path.join(tmpdir_path, "m4"), name="m4", extra=cluster.extra)
    out = etcdctl(cluster.members[0].endpoint, "member", "add", "m4", "--learner",
                  f"--peer-urls={m4.peer_url}").stdout
    mid = re.search(r"Member\s+([0-9a-f]+) added", out)[1]
    m4.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members) + \
        f",m4={m4.peer_url}"
    m4.state = "existing"
    cluster.members.append(m4)
    m4.start()
    # a learner replicates the data but does not vote; it reports itself as a learner
    lines = [ln for ln in etcdctl(cluster.members[0].endpoint, "member", "list").stdout
             .splitlines() if ln.startswith(mid) or ln.lstrip().startswith(mid)]
    assert lines and lines[0].endswith(", true"), lines
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = etcdctl(m4.endpoint, "get", "l/", "--prefix", "--keys-only", "-w", "json",
                    "--consistency=s", check=False)
        if r.returncode == 0 and json.loads(r.stdout).get("count") == 30:
            break
        time.sleep(0.3)
    assert json.loads(r.stdout).get("count") == 30
    out = etcdctl(cluster.members[0].endpoint, "member", "promote", mid).stdout
    assert "promoted" in out
    line = [ln for ln in etcdctl(cluster.members[0].endpoint, "member", "list").stdout
            .splitlines() if mid in ln][0]
    assert line.endswith(", false"), line
    etcdctl(m4.endpoint, "put", "after-promote", "v")
    assert etcdctl(cluster.members[1].endpoint, "get", "after-promote").stdout.splitlines() \
        == ["after-promote", "v"]
