"""Backups: dated snapshot files with retention, written safely.

`take(client, dir, keep)` streams a snapshot from a member into
`<dir>/snapshot-YYYYmmdd-HHMMSS.db.part`, checks its sha256 the way restore
will, fsyncs, renames it into place, and deletes the oldest snapshots beyond
`keep`. A failed or corrupt transfer leaves nothing but the old backups.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from kcore.store.disk import fsync_dir
from kcore.store.snapshot import HASH_SIZE, SnapshotError

NAME = re.compile(r"^snapshot-(\d{8}-\d{6})\.db$")


@dataclass
class BackupResult:
    path: str
    size: int
    removed: list[str]
    seconds: float


def backups(dirpath: str) -> list[str]:
    """Backup files in dirpath, oldest first."""
    try:
        names = [n for n in os.listdir(dirpath) if NAME.match(n)]
    except FileNotFoundError:
        return []
    return [os.path.join(dirpath, n) for n in sorted(names)]


async def take(client, dirpath: str, keep: int = 7, now: float | None = None,
               progress: Callable[[int, int], None] | None = None) -> BackupResult:
    t0 = time.monotonic()
    os.makedirs(dirpath, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    final = os.path.join(dirpath, f"snapshot-{stamp}.db")
    part = final + ".part"
    h = hashlib.sha256()
    total = 0
    chunks: list[bytes] = []
    try:
        with open(part, "wb") as fh:
            async for resp in client.snapshot():
                blob = resp.blob
                if chunks:
                    prev = chunks.pop()
                    h.update(prev)
                    fh.write(prev)
                chunks.append(blob)
                total += len(blob)
                if progress is not None:
                    progress(total, total + resp.remaining_bytes)
            if not chunks or len(chunks[-1]) != HASH_SIZE:
                raise SnapshotError("the snapshot stream did not end with its sha256")
            if h.digest() != chunks[-1]:
                raise SnapshotError("snapshot sha256 mismatch: the transfer was corrupted")
            fh.write(chunks[-1])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, final)
        fsync_dir(dirpath)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    removed = []
    existing = backups(dirpath)
    if keep > 0 and len(existing) > keep:
        for old in existing[: len(existing) - keep]:
            os.unlink(old)
            removed.append(old)
    return BackupResult(final, total, removed, time.monotonic() - t0)
