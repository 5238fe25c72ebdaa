"""Snapshot files: ``<data-dir>/member/snap/%016x-%016x.snap`` (term, index).

Each holds a small payload the server gives (membership and the like), framed::

    8s   magic b"KCSNAP01"
    u64  term
    u64  index
    u64  payload length
         payload
    u32  CRC-32C of everything before it

`save` is atomic (temp file, fsync, rename, directory fsync). `load_all`
gives the files that check out, newest first (`load_newest` the first of them); a file that does not is renamed to
``<name>.broken`` and skipped, as etcd does.
"""
from __future__ import annotations

import logging
import os
import re
import struct

from kcore.store.disk import fsync_dir
from kcore.store.walcodec_ref import crc32c

log = logging.getLogger(__name__)

MAGIC = b"KCSNAP01"
_HEAD = struct.Struct("<8sQQQ")
_CRC = struct.Struct("<I")
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


class SnapfileError(ValueError):
    """A snapshot file that does not check out."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}.snap"


def encode(term: int, index: int, payload: bytes) -> bytes:
    body = _HEAD.pack(MAGIC, term, index, len(payload)) + payload
    return body + _CRC.pack(crc32c(body))


def decode(buf: bytes) -> tuple[int, int, bytes]:
    """(term, index, payload); SnapfileError if the bytes do not check out."""
    if len(buf) < _HEAD.size + _CRC.size:
        raise SnapfileError(f"too short ({len(buf)} bytes)")
    magic, term, index, n = _HEAD.unpack_from(buf)
    if magic != MAGIC:
        raise SnapfileError(f"bad magic {magic!r}")
    if len(buf) != _HEAD.size + n + _CRC.size:
        raise SnapfileError(f"length {len(buf)} does not match payload length {n}")
    body = buf[:-_CRC.size]
    if crc32c(body) != _CRC.unpack_from(buf, len(body))[0]:
        raise SnapfileError("CRC mismatch")
    return term, index, body[_HEAD.size:]


def names(dirpath: str) -> list[str]:
    """Snapshot file names in dirpath, newest (highest term, then index) first."""
    try:
        found = [n for n in os.listdir(dirpath) if _NAME.match(n)]
    except FileNotFoundError:
        return []
    return sorted(found, reverse=True)  # fixed-width hex: text order is (term, index) order


def save(dirpath: str, term: int, index: int, payload: bytes) -> str:
    """Write the snapshot file for (term, index) atomically; returns its path."""
    os.makedirs(dirpath, exist_ok=True)
    final = os.path.join(dirpath, snap_name(term, index))
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(encode(term, index, payload))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    fsync_dir(dirpath)
    return final


def load(path: str) -> tuple[int, int, bytes]:
    """(term, index, payload) of one file; SnapfileError if it does not check out."""
    with open(path, "rb") as f:
        term, index, payload = decode(f.read())
    m = _NAME.match(os.path.basename(path))
    if m and (int(m.group(1), 16), int(m.group(2), 16)) != (term, index):
        raise SnapfileError(f"holds term {term} index {index}, its name says otherwise")
    return term, index, payload


def load_all(dirpath: str):
    """(term, index, payload) of each snapshot file that checks out, newest first.
    Broken ones become ``.broken``."""
    for name in names(dirpath):
        path = os.path.join(dirpath, name)
        try:
            found = load(path)
        except SnapfileError as e:
            log.warning("snap: %s is corrupt (%s); renaming it to %s.broken", path, e, name)
            os.rename(path, path + ".broken")
            fsync_dir(dirpath)
            continue
        yield found


def load_newest(dirpath: str) -> tuple[int, int, bytes] | None:
    """The newest snapshot that checks out, or None. Broken ones become ``.broken``."""
    return next(load_all(dirpath), None)


def purge(dirpath: str, keep: int = 5) -> list[str]:
    """Delete all but the newest `keep` snapshot files (and stale temp files); returns
    the deleted paths."""
    doomed = [os.path.join(dirpath, n) for n in names(dirpath)[max(keep, 0):]]
    try:
        doomed += [os.path.join(dirpath, n) for n in os.listdir(dirpath) if n.endswith(".snap.tmp")]
    except FileNotFoundError:
        return []
    for path in doomed:
        os.unlink(path)
    if doomed:
        fsync_dir(dirpath)
    return doomed
