"""Start-up of a member's log: a new cluster, joining one, restarting, or
forcing a new one-member cluster out of an old data dir.

Produces what the raft driver needs: the member's identity, the WAL (open for
appending), the in-memory raft storage rebuilt from the newest snapshot file
and the WAL, and — for a new cluster — the peers to bootstrap with.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from kcore.store import snapfile
from kcore.store.config import ServerConfig, cluster_id, member_id
from kcore.store.raft.log import MemoryStorage
from kcore.store.raft.messages import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
)
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.wal import WAL, SnapshotNotFound, WalSnapshot

log = logging.getLogger(__name__)


class BootstrapError(Exception):
    pass


@dataclass
class Boot:
    member_id: int
    cluster_id: int
    wal: WAL
    storage: MemoryStorage
    snapshot: Snapshot
    bootstrap_peers: list[int] = field(default_factory=list)
    members: list[pb.Member] = field(default_factory=list)   # to write (new or joined)
    new: bool = False


def save_snapshot(snap_dir: str, snap: Snapshot) -> None:
    snapfile.save(snap_dir, snap.term, snap.index, encode_snapshot(snap))


def _storage(snap: Snapshot, hs: HardState, entries: list) -> MemoryStorage:
    st = MemoryStorage()
    if snap.index:
        st.apply_snapshot(snap)
    if entries:
        st.append([Entry(e.term, e.index, EntryType(e.type), e.data) for e in entries])
    st.set_hard_state(HardState(hs.term, hs.vote, hs.commit))
    return st


def _snapshots(snap_dir: str):
    """The snapshot files that check out, newest first (Snapshot() if none)."""
    found = False
    for term, index, payload in snapfile.load_all(snap_dir):
        found = True
        try:
            yield decode_snapshot(payload)
        except Exception:  # noqa: BLE001 - a one-member store's snapshot (no raft payload)
            yield Snapshot(index=index, term=term, data=payload)
    if not found:
        yield Snapshot()


def restart(cfg: ServerConfig) -> Boot:
    """An existing member: the newest snapshot the WAL has a marker for, then the
    WAL after it. A snapshot file is written before its WAL marker (as etcd does:
    a marker never names a missing file), so a crash between the two leaves a
    newer file the WAL does not know; like etcd, start from an older one."""
    first: SnapshotNotFound | None = None
    for snap in _snapshots(cfg.snap_dir):
        try:
            wal = WAL.open(cfg.wal_dir, WalSnapshot(snap.index, snap.term),
                           segment_bytes=cfg.wal_segment_bytes)
        except SnapshotNotFound as e:
            first = first or e
            log.warning("snapshot at index %d: %s; trying an older one", snap.index, e)
            continue
        break
    else:
        raise first
    metadata, hs, entries = wal.read_all()
    meta = json.loads(metadata.decode())
    storage = _storage(snap, HardState(hs.term, hs.vote, hs.commit), entries)
    return Boot(meta["member_id"], meta["cluster_id"], wal, storage, snap)


def force_new_cluster(cfg: ServerConfig, boot: Boot, applied: int) -> Boot:
    """etcd's --force-new-cluster: keep the data, forget the other members. The
    committed log is kept up to `applied` (what the backend holds); the member
    restarts from a snapshot at that point whose membership is itself alone."""
    st = boot.storage
    hs = st.hard_state
    index = max(applied, boot.snapshot.index)
    term = st.term(index) if index >= st.first_index() - 1 and index <= st.last_index() \
        else max(hs.term, boot.snapshot.term)
    snap = Snapshot(index=index, term=term, conf_state=ConfState(voters=(boot.member_id,)),
                    data=b"")
    boot.wal.close()
    wal_dir = cfg.wal_dir
    old = wal_dir + ".old"
    if os.path.exists(old):
        import shutil
        shutil.rmtree(old)
    os.rename(wal_dir, old)
    meta = {"member_id": boot.member_id, "cluster_id": boot.cluster_id}
    wal = WAL.create(wal_dir, json.dumps(meta).encode(), segment_bytes=cfg.wal_segment_bytes)
    save_snapshot(cfg.snap_dir, snap)
    wal.save_snapshot(WalSnapshot(snap.index, snap.term))
    wal.save(HardState(term=snap.term, vote=0, commit=snap.index), [])
    wal.sync()
    import shutil
    shutil.rmtree(old, ignore_errors=True)
    storage = MemoryStorage()
    storage.apply_snapshot(snap)
    storage.set_hard_state(HardState(snap.term, 0, snap.index))
    log.warning("forced a new one-member cluster from %s at index %d", cfg.data_dir, index)
    return Boot(boot.member_id, boot.cluster_id, wal, storage, snap)


def new_cluster(cfg: ServerConfig) -> Boot:
    members = cfg.cluster_members()
    if cfg.name not in members:
        raise BootstrapError(f"couldn't find local name {cfg.name!r} in the initial cluster "
                             f"configuration {cfg.initial_cluster!r}")
    mine = sorted(members[cfg.name])
    if sorted(cfg.initial_advertise_peer_urls) != mine:
        raise BootstrapError(
            f"--initial-cluster has {cfg.name}={','.join(mine)} but missing from "
            f"--initial-advertise-peer-urls={','.join(cfg.initial_advertise_peer_urls)}")
    ids = {n: member_id(urls, cfg.initial_cluster_token) for n, urls in members.items()}
    if len(set(ids.values())) != len(ids):
        raise BootstrapError("two members of --initial-cluster have the same peer URLs")
    cid = cluster_id(list(ids.values()))
    me = ids[cfg.name]
    meta = {"member_id": me, "cluster_id": cid}
    wal = WAL.create(cfg.wal_dir, json.dumps(meta).encode(), segment_bytes=cfg.wal_segment_bytes)
    out = [pb.Member(ID=ids[n], name=n, peerURLs=urls,
                     clientURLs=cfg.advertise_client_urls if n == cfg.name else [])
           for n, urls in members.items()]
    return Boot(me, cid, wal, MemoryStorage(), Snapshot(), sorted(ids.values()), out, new=True)


async def join_cluster(cfg: ServerConfig, client_ssl) -> Boot:
    """--initial-cluster-state=existing: learn the cluster (and this member's ID,
    given by `member add`) from a running member."""
    from kcore.store.raft.transport import PeerTransport

    members = cfg.cluster_members()
    urls = [u for n, us in members.items() if n != cfg.name for u in us]
    if not urls:
        raise BootstrapError("--initial-cluster-state=existing needs the other members in "
                             "--initial-cluster")
    info = await PeerTransport.fetch_members(urls, client_ssl)
    mine = set(cfg.initial_advertise_peer_urls)
    me = 0
    out = []
    for m in info["members"]:
        pm = pb.Member(ID=m["id"], name=m["name"], peerURLs=m["peerURLs"],
                       clientURLs=m["clientURLs"], isLearner=m.get("isLearner", False))
        if set(m["peerURLs"]) & mine:
            me = m["id"]
            pm.name = cfg.name
            pm.ClearField("clientURLs")
            pm.clientURLs.extend(cfg.advertise_client_urls)
        out.append(pm)
    if not me:
        raise BootstrapError(
            f"member with peer URLs {sorted(mine)} is not in the cluster: add it first with "
            "`etcdctl member add`")
    meta = {"member_id": me, "cluster_id": info["cluster_id"]}
    wal = WAL.create(cfg.wal_dir, json.dumps(meta).encode(), segment_bytes=cfg.wal_segment_bytes)
    return Boot(me, info["cluster_id"], wal, MemoryStorage(), Snapshot(), [], out, new=True)
