"""Snapshot files: what `etcdctl snapshot save` writes, and restoring one.

A snapshot is the database file followed by its sha256 (32 bytes), the form
etcd streams; because the database is a whole number of 512-byte sectors, a
file whose size is 32 more than a multiple of 512 carries the hash. Restore
builds a fresh data dir from it: the keys, revisions and leases of the
snapshot, and a new one-member cluster identity from the flags given.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable

from kcore.store.backend import DB_FILE, Backend
from kcore.store.bootstrap import save_snapshot
from kcore.store.config import ServerConfig, cluster_id, member_id
from kcore.store.raft.messages import ConfState, HardState, Snapshot
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.wal import WAL, WalSnapshot

HASH_SIZE = 32


class SnapshotError(Exception):
    pass


def has_hash(size: int) -> bool:
    return size % 512 == HASH_SIZE


def verify(path: str, skip_hash_check: bool = False,
           progress: Callable[[int, int], None] | None = None) -> int:
    """Check the trailing sha256; returns the size of the database part."""
    size = os.path.getsize(path)
    if not has_hash(size):
        if skip_hash_check:
            return size
        raise SnapshotError(f"{path}: sha256 checksum not found [bytes: {size}]")
    h = hashlib.sha256()
    body = size - HASH_SIZE
    with open(path, "rb") as fh:
        left = body
        while left:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                raise SnapshotError(f"{path}: truncated")
            h.update(chunk)
            left -= len(chunk)
            if progress is not None:
                progress(body - left, 2 * body)
        want = fh.read(HASH_SIZE)
    if not skip_hash_check and h.digest() != want:
        raise SnapshotError(f"{path}: expected sha256 {want.hex()}, got {h.hexdigest()}")
    return body


def status(path: str) -> dict:
    """Hash, revision, total keys and size of a snapshot file (etcdctl snapshot status)."""
    body = verify(path)
    tmp = path + ".status.tmp"
    os.makedirs(tmp, exist_ok=True)
    try:
        _copy_prefix(path, os.path.join(tmp, DB_FILE), body)
        b = Backend(tmp)
        try:
            from kcore.store.mvcc import MVCC
            m = MVCC(b)
            with b.begin_read() as txn:
                h, _, _ = m.hash_kv(txn, 0)
            return {"hash": h, "revision": m.rev, "totalKey": sum(
                1 for r in m.index.records.values() if r.alive), "totalSize": body}
        finally:
            b.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def restore(path: str, cfg: ServerConfig, skip_hash_check: bool = False,
            progress: Callable[[int, int], None] | None = None) -> None:
    """Build cfg.data_dir from the snapshot at `path` (the data dir must not exist)."""
    if os.path.exists(cfg.data_dir) and os.listdir(cfg.data_dir):
        raise SnapshotError(f"data-dir {cfg.data_dir!r} exists")
    body = verify(path, skip_hash_check, progress)
    members = cfg.cluster_members()
    if cfg.name not in members:
        raise SnapshotError(f"--initial-cluster has no member named {cfg.name!r}")
    tmp_dir = cfg.data_dir.rstrip("/") + ".restore.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tcfg = ServerConfig(**{**cfg.__dict__, "data_dir": tmp_dir})
    os.makedirs(tcfg.snap_dir)
    _copy_prefix(path, os.path.join(tcfg.snap_dir, DB_FILE), body,
                 (lambda done, _n: progress(body + done, 2 * body)) if progress else None)
    ids = {n: member_id(urls, cfg.initial_cluster_token) for n, urls in members.items()}
    cid = cluster_id(list(ids.values()))
    b = Backend(tcfg.snap_dir)
    try:
        with b.begin_write() as txn:
            txn.drop(b.members, delete=False)
            txn.drop(b.alarm, delete=False)
            for n, urls in members.items():
                m = pb.Member(ID=ids[n], name=n if n == cfg.name else "", peerURLs=urls,
                              clientURLs=cfg.advertise_client_urls if n == cfg.name else [])
                txn.put(ids[n].to_bytes(8, "big"), m.SerializeToString(), db=b.members)
            b.put_u64(txn, b"consistent_index", 1)
            b.put_u64(txn, b"cluster_id", cid)
            b.put_u64(txn, b"member_id", ids[cfg.name])
        b.sync()
    finally:
        b.close()
    # the log starts from a snapshot at index 1 holding the new membership
    meta = {"member_id": ids[cfg.name], "cluster_id": cid}
    wal = WAL.create(tcfg.wal_dir, json.dumps(meta).encode())
    snap = Snapshot(index=1, term=1, conf_state=ConfState(voters=tuple(sorted(ids.values()))))
    save_snapshot(tcfg.snap_dir, snap)
    wal.save_snapshot(WalSnapshot(1, 1))
    wal.save(HardState(term=1, vote=0, commit=1), [])
    wal.sync()
    wal.close()
    os.makedirs(os.path.dirname(os.path.abspath(cfg.data_dir)), exist_ok=True)
    if os.path.exists(cfg.data_dir):
        os.rmdir(cfg.data_dir)
    os.rename(tmp_dir, cfg.data_dir)


def _copy_prefix(src: str, dst: str, n: int,
                 progress: Callable[[int, int], None] | None = None) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = n
        while left:
            chunk = fi.read(min(left, 1 << 20))
            if not chunk:
                break
            fo.write(chunk)
            left -= len(chunk)
            if progress is not None:
                progress(n - left, n)
        fo.flush()
        os.fsync(fo.fileno())
