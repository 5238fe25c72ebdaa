"""The store's disk: one LMDB environment with named sub-databases.

Like etcd's bbolt file (`member/snap/db`), it holds every revision of every
key, the leases, the members and the metadata (consistent index, current and
compacted revision). Only the key index lives in memory. Durability comes from
the WAL: LMDB is written without fsync on every commit and synced before the
WAL is allowed to forget anything (snapshot points) and on close.
"""
from __future__ import annotations

import os
import struct

import lmdb

from kcore.store.disk import fsync_dir

DB_FILE = "db"
BUCKETS = ("key", "meta", "lease", "members", "alarm")
_U64 = struct.Struct(">Q")
_DEFAULT_MAP_SIZE = 64 << 30  # address space only; the file grows as it is used


class Backend:
    def __init__(self, snap_dir: str, map_size: int = _DEFAULT_MAP_SIZE):
        os.makedirs(snap_dir, exist_ok=True)
        self.path = os.path.join(snap_dir, DB_FILE)
        self.map_size = map_size
        self._open()

    def _open(self) -> None:
        self.env = lmdb.open(self.path, subdir=False, map_size=self.map_size,
                             max_dbs=len(BUCKETS) + 2, sync=False, metasync=False,
                             readahead=False, lock=True, max_readers=512,
                             max_spare_txns=8)
        self.db = {name: self.env.open_db(name.encode()) for name in BUCKETS}
        self.key, self.meta = self.db["key"], self.db["meta"]
        self.lease, self.members, self.alarm = self.db["lease"], self.db["members"], self.db["alarm"]

    # -- transactions ---------------------------------------------------------------
    def begin_write(self) -> lmdb.Transaction:
        return self.env.begin(write=True)

    def begin_read(self) -> lmdb.Transaction:
        return self.env.begin(buffers=False)

    # -- metadata --------------------------------------------------------------------
    def get_u64(self, txn: lmdb.Transaction, name: bytes, default: int = 0) -> int:
        v = txn.get(name, db=self.meta)
        return default if v is None else _U64.unpack(v)[0]

    def put_u64(self, txn: lmdb.Transaction, name: bytes, value: int) -> None:
        txn.put(name, _U64.pack(value), db=self.meta)

    def get_meta(self, txn: lmdb.Transaction, name: bytes) -> bytes | None:
        return txn.get(name, db=self.meta)

    def put_meta(self, txn: lmdb.Transaction, name: bytes, value: bytes) -> None:
        txn.put(name, value, db=self.meta)

    # -- sizes, sync, copies ---------------------------------------------------------
    def size(self) -> int:
        """Bytes of the file on disk (etcd's dbSize)."""
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def size_in_use(self) -> int:
        """Bytes of pages holding live data (etcd's dbSizeInUse): the pages of every
        sub-database, without LMDB's free pages."""
        stat = self.env.stat()
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        with self.env.begin() as txn:
            for db in self.db.values():
                st = txn.stat(db)
                pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return (pages + 2) * stat["psize"]  # + the two meta pages

    def sync(self) -> None:
        self.env.sync(True)

    def copy_to(self, path: str) -> None:
        """A consistent, compacted copy of the database (a snapshot's body)."""
        self.env.copy(path, compact=True)

    def defragment(self) -> None:
        """Rewrite the file without free pages (etcd's defrag), then reopen it."""
        tmp = self.path + ".defrag"
        if os.path.exists(tmp):
            os.unlink(tmp)
        self.env.copy(tmp, compact=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        self.env.close()
        os.replace(tmp, self.path)
        lock = self.path + "-lock"
        if os.path.exists(lock):
            os.unlink(lock)
        fsync_dir(os.path.dirname(self.path))
        self._open()

    def close(self) -> None:
        try:
            self.env.sync(True)
        finally:
            self.env.close()


def u64(v: int) -> bytes:
    return _U64.pack(v)


def from_u64(b: bytes) -> int:
    return _U64.unpack(b)[0]
