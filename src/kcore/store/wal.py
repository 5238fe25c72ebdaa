"""Segmented write-ahead log for the raft driver: entries, hardstate, snapshot markers.

Layout (like etcd): the WAL directory (``<data-dir>/member/wal``) holds segment
files ``%016x-%016x.wal`` (sequence, index of the first entry expected).
Segments are preallocated to ``segment_bytes`` and cut once a write takes them
past it. Each segment starts with a prologue written and fsynced before the file
gets its name: a segment-header record (magic, version, sequence, first index),
the metadata, and the last hardstate (the first segment: an empty snapshot
marker instead). Record framing and CRCs: see `walcodec_ref`.

Durability: `save` only encodes and buffers; `sync` writes everything buffered
with one pwrite and then fdatasync, so many client writes share one disk flush
(group commit). `save` may run while another thread is inside `sync`: a sync
covers what was saved before it started.

Start-up damage. Only the last write of the last segment can be torn (all earlier
writes, and every non-last segment, were synced before anything was written
after them). `open` treats damage at offset T of the last segment as a torn
tail, zeroes it and logs a warning, when both hold:

* no later write exists: no valid header flagged as the start of a write batch
  follows T (each pwrite's first record carries FLAG_BATCH, and a write is only
  issued after the previous one's fdatasync returned), and
* the damage looks like an unfinished write, not like flipped bits: the file
  ends inside the record, or nothing but zeros follows the record, or a part of
  it that lies in zeroed, not yet written back space (from T to the end of its
  512-byte sector, or a whole sector) is all zero: writeback of one unsynced
  write may persist later pages before earlier ones.

Anything else -- a CRC mismatch or bad framing followed by a later write, a bit
flip inside the last write that is followed by more data, any damage in a
non-last segment -- raises `DataCorruption(path, offset, detail)`.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from kcore.store import walcodec_ref as ref
from kcore.store.disk import fsync_dir
from kcore.store.errors import DataCorruption

try:
    from kcore._native import walcodec as codec

    NATIVE = True
except ImportError:  # not built: the reference has the same contract
    codec = ref  # type: ignore[assignment]
    NATIVE = False

log = logging.getLogger(__name__)

ENTRY_NORMAL, ENTRY_CONF_CHANGE = 0, 1
SEGMENT_BYTES = 64 * 1024 * 1024
SECTOR = 512

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_ZERO_SECTOR = bytes(SECTOR)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    data: bytes
    type: int = ENTRY_NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass(frozen=True, slots=True)
class WalSnapshot:
    index: int = 0
    term: int = 0


_EMPTY_STATE = HardState()


class WalError(Exception):
    """The WAL cannot do what was asked (misuse, missing data, a failed write)."""


class SnapshotNotFound(WalError):
    """No snapshot marker for the requested snapshot in the segments that would hold it."""


class SnapshotMismatch(WalError):
    """A snapshot marker at the requested index has another term."""


class MissingEntries(WalError):
    """The WAL does not hold every entry after the snapshot (a gap in the indexes)."""


def segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(sequence, first index) of a segment file name, or None if it is not one."""
    m = _NAME.match(name)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def _list_segments(dirpath: str) -> list[tuple[int, int, str]]:
    found = []
    for name in os.listdir(dirpath):
        parsed = parse_segment_name(name)
        if parsed is not None:
            found.append((parsed[0], parsed[1], name))
        elif name.endswith(".wal"):
            log.warning("wal: ignoring file with a bad segment name: %s", os.path.join(dirpath, name))
    found.sort()
    return found


def _preallocate(fd: int, size: int) -> None:
    if os.fstat(fd).st_size >= size:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:  # a filesystem without fallocate: a sparse file still reads as zeros
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _prologue(seq: int, first_index: int, metadata: bytes, hardstate: HardState,
              snapshot: WalSnapshot | None) -> bytearray:
    buf = bytearray(codec.encode_record(ref.REC_SEGMENT, ref.encode_segment(seq, first_index)))
    buf += codec.encode_record(ref.REC_METADATA, metadata)
    if snapshot is not None:
        buf += codec.encode_record(ref.REC_SNAPSHOT, ref.encode_snapshot(snapshot.index, snapshot.term))
    if hardstate != _EMPTY_STATE:
        buf += codec.encode_record(ref.REC_HARDSTATE, ref.encode_hardstate(hardstate))
    codec.mark_batch_start(buf, 0)
    return buf


def _write_segment(dirpath: str, name: str, prologue: bytes, segment_bytes: int) -> int:
    """Create a complete, synced segment under its final name; returns an open fd."""
    final = os.path.join(dirpath, name)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _preallocate(fd, segment_bytes)
        _pwrite_all(fd, prologue, 0)
        os.fsync(fd)
        os.rename(tmp, final)
        fsync_dir(dirpath)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _describe(stop: int) -> str:
    return {
        ref.STOP_ZERO: "zeroed record header followed by data",
        ref.STOP_SHORT: "record runs past the end of the file",
        ref.STOP_HEADER_CRC: "record header CRC mismatch",
        ref.STOP_PAYLOAD_CRC: "record CRC mismatch",
        ref.STOP_FRAMING: "bad record framing (type, flags, reserved bits or padding)",
    }[stop]


def _is_torn(buf: bytes, off: int, stop: int, tail: int) -> bool:
    """Whether damage at off (the last segment) is an unfinished last write; see module doc."""
    if stop == ref.STOP_FRAMING:
        return False  # its header CRC is valid: a whole record that we do not understand
    if stop == ref.STOP_SHORT:
        return True  # the file ends inside it: nothing can follow
    span_end = extent = off + ref.HEADER_SIZE
    if stop == ref.STOP_PAYLOAD_CRC:  # the header, length included, is intact
        n = ref.read_header(buf, off)[0]
        span_end += n
        extent = off + ref.record_size(n)
    if codec.find_batch_start(buf, extent if stop == ref.STOP_PAYLOAD_CRC else off + ref.ALIGN,
                              tail) >= 0:
        return False  # a later write exists, so this one had been synced
    if tail <= extent:
        return True  # nothing but zeros after it
    size = len(buf)
    first_end = min(off - off % SECTOR + SECTOR, size)
    if buf[off:first_end] == _ZERO_SECTOR[: first_end - off]:
        return True
    for s in range(first_end, min(span_end, size), SECTOR):
        e = min(s + SECTOR, size)
        if buf[s:e] == _ZERO_SECTOR[: e - s]:
            return True
    return False


def _scan(path: str, buf: bytes, last: bool) -> tuple[list, int, int]:
    """Decode one segment: (records, end of good data, end of a torn tail to zero)."""
    records, end, stop = codec.decode(buf, 0)
    if stop == ref.STOP_END:
        return records, end, end
    tail = codec.last_nonzero(buf, end)
    if stop == ref.STOP_ZERO and tail <= end:
        return records, end, end
    detail = _describe(stop)
    if not last:
        raise DataCorruption(path, end, detail + " (in a segment that is not the last)")
    if len(records) < 2:
        raise DataCorruption(path, end, detail + " (in the segment prologue)")
    if not _is_torn(buf, end, stop, tail):
        raise DataCorruption(path, end, detail)
    return records, end, tail


class _Replay:
    """Folds records into (metadata, hardstate, entries after the snapshot)."""

    def __init__(self, snap: WalSnapshot):
        self.snap = snap
        self.metadata: bytes | None = None
        self.hardstate = _EMPTY_STATE
        self.entries: list[Entry] = []
        self.matched = False
        self.last_index = 0

    def segment(self, path: str, seq: int, first_index: int, records: list) -> None:
        if not records or records[0][0] != ref.REC_SEGMENT:
            raise DataCorruption(path, 0, "segment does not start with a segment header")
        try:
            hseq, hindex = ref.decode_segment(records[0][2])
        except ValueError as e:
            raise DataCorruption(path, 0, str(e)) from None
        if (hseq, hindex) != (seq, first_index):
            raise DataCorruption(path, 0, f"segment header says {segment_name(hseq, hindex)}")
        snap_index = self.snap.index
        ents = self.entries
        expect = snap_index + len(ents) + 1  # the index that simply extends the log
        decode_entry = codec.decode_entry
        for rtype, off, payload in itertools.islice(records, 1, None):
            try:
                if rtype == ref.REC_ENTRY:
                    index, term, etype, data = decode_entry(payload)
                    if index == expect:
                        ents.append(Entry(index, term, data, etype))
                        expect += 1
                    elif index > snap_index:
                        if index > expect:
                            raise MissingEntries(
                                f"{path}: entry {index} at offset {off} follows entry "
                                f"{expect - 1}: entries in between are missing")
                        del ents[index - snap_index - 1:]  # a new leader overwrote the tail
                        ents.append(Entry(index, term, data, etype))
                        expect = index + 1
                    self.last_index = index
                elif rtype == ref.REC_HARDSTATE:
                    self.hardstate = HardState(*ref.decode_hardstate(payload))
                elif rtype == ref.REC_METADATA:
                    if self.metadata is None:
                        self.metadata = payload
                    elif payload != self.metadata:
                        raise DataCorruption(path, off, "metadata differs from earlier segments")
                elif rtype == ref.REC_SNAPSHOT:
                    index, term = ref.decode_snapshot(payload)
                    if index == snap_index:
                        if term != self.snap.term:
                            raise SnapshotMismatch(
                                f"{path}: snapshot marker at index {index} has term {term}, "
                                f"want {self.snap.term}")
                        self.matched = True
                    self.last_index = max(self.last_index, index)
                else:
                    raise DataCorruption(path, off, "segment header in the middle of a segment")
            except ValueError as e:
                raise DataCorruption(path, off, str(e)) from None


class WAL:
    """A write-ahead log directory opened for appending by one process."""

    def __init__(self, dirpath: str, dir_fd: int, segment_bytes: int):
        self.dirpath = dirpath
        self.segment_bytes = segment_bytes
        self._dir_fd = dir_fd
        self._fd = -1
        self._segments: list[tuple[int, int, str]] = []
        self._offset = 0
        self._metadata = b""
        self._lock = threading.Lock()       # pending buffer and saved state
        self._sync_lock = threading.Lock()  # file state: writes, cuts, releases
        self._pending: list[bytes] = []
        self._last_index = 0                # as saved (buffered or written)
        self._hardstate = _EMPTY_STATE
        self._synced_last_index = 0         # as written and synced
        self._synced_hardstate = _EMPTY_STATE
        self._read: tuple[bytes, HardState, list[Entry]] | None = None
        self._ready = False
        self._failed: BaseException | None = None

    # -- construction ----------------------------------------------------

    @staticmethod
    def exists(dirpath: str) -> bool:
        """Whether dirpath holds at least one WAL segment."""
        try:
            return bool(_list_segments(dirpath))
        except (FileNotFoundError, NotADirectoryError):
            return False

    @classmethod
    def create(cls, dirpath: str, metadata: bytes, *, segment_bytes: int = SEGMENT_BYTES) -> WAL:
        """A new WAL holding metadata and an empty snapshot marker, ready to save.

        Built in ``dirpath + ".tmp"`` and renamed into place, so a crash leaves
        either no WAL or a complete one.
        """
        dirpath = os.path.normpath(dirpath)
        if cls.exists(dirpath):
            raise WalError(f"{dirpath}: already holds a WAL")
        parent = os.path.dirname(os.path.abspath(dirpath))
        os.makedirs(parent, exist_ok=True)
        tmp = dirpath + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp, 0o700)
        prologue = _prologue(0, 0, metadata, _EMPTY_STATE, WalSnapshot())
        fd = _write_segment(tmp, segment_name(0, 0), prologue, segment_bytes)
        try:
            if os.path.exists(dirpath):
                shutil.rmtree(dirpath)  # holds no segment (checked above)
            os.rename(tmp, dirpath)
            fsync_dir(parent)
            fsync_dir(os.path.dirname(parent))
            wal = cls(dirpath, _lock_dir(dirpath), segment_bytes)
        except BaseException:
            os.close(fd)
            raise
        wal._fd = fd
        wal._segments = [(0, 0, segment_name(0, 0))]
        wal._offset = len(prologue)
        wal._metadata = metadata
        wal._read = (metadata, _EMPTY_STATE, [])
        wal._ready = True
        return wal

    @classmethod
    def open(cls, dirpath: str, snap: WalSnapshot = WalSnapshot(), *,
             segment_bytes: int = SEGMENT_BYTES) -> WAL:
        """Open for appending after snap: reads and checks every segment that can
        hold entries after snap.index, repairs a torn tail (see module doc).

        Raises DataCorruption, SnapshotNotFound, SnapshotMismatch, MissingEntries.
        """
        dirpath = os.path.normpath(dirpath)
        segments = _list_segments(dirpath)
        if not segments:
            raise WalError(f"{dirpath}: no WAL segments")
        wal = cls(dirpath, _lock_dir(dirpath), segment_bytes)
        try:
            wal._open(segments, snap)
        except BaseException:
            wal.close()
            raise
        return wal

    def _open(self, segments: list[tuple[int, int, str]], snap: WalSnapshot) -> None:
        stale = [n for n in os.listdir(self.dirpath) if n.endswith(".wal.tmp")]
        for name in stale:  # a cut that crashed before its rename
            os.unlink(os.path.join(self.dirpath, name))
        if stale:
            os.fsync(self._dir_fd)
        start = next((i for i in range(len(segments) - 1, -1, -1) if segments[i][1] <= snap.index),
                     None)
        if start is None:
            raise SnapshotNotFound(
                f"{self.dirpath}: oldest segment {segments[0][2]} starts after snapshot index "
                f"{snap.index}")
        chosen = segments[start:]
        for (aseq, _, _), (bseq, _, bname) in itertools.pairwise(chosen):
            if bseq != aseq + 1:
                raise DataCorruption(os.path.join(self.dirpath, bname), 0,
                                     f"segment sequence gap: expected {aseq + 1:016x}")
        replay = _Replay(snap)
        end = tail = 0
        for i, (seq, first_index, name) in enumerate(chosen):
            path = os.path.join(self.dirpath, name)
            with open(path, "rb") as f:
                buf = f.read()
            records, end, tail = _scan(path, buf, i == len(chosen) - 1)
            del buf
            replay.segment(path, seq, first_index, records)
        if not replay.matched:
            raise SnapshotNotFound(
                f"{self.dirpath}: no snapshot marker for index {snap.index} term {snap.term} "
                f"in {chosen[0][2]} or later")
        path = os.path.join(self.dirpath, chosen[-1][2])
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._fd = fd
        if tail > end:
            log.warning("wal: %s: torn last write at offset %d (%d bytes): zeroed, "
                        "starting from the records before it", path, end, tail - end)
            _pwrite_all(fd, bytes(tail - end), end)
            os.fdatasync(fd)
        _preallocate(fd, self.segment_bytes)
        self._segments = segments
        self._offset = end
        self._metadata = replay.metadata if replay.metadata is not None else b""
        self._last_index = self._synced_last_index = max(replay.last_index, snap.index)
        self._hardstate = self._synced_hardstate = replay.hardstate
        self._read = (self._metadata, replay.hardstate, replay.entries)

    # -- reading -----------------------------------------------------------

    def read_all(self) -> tuple[bytes, HardState, list[Entry]]:
        """(metadata, last hardstate, entries after the snapshot given to open)."""
        if self._read is None:
            raise WalError("read_all() is only available before the first save()")
        self._ready = True
        return self._read

    @property
    def last_index(self) -> int:
        """Index of the last entry saved (or of the snapshot, if later)."""
        return self._last_index

    # -- writing -----------------------------------------------------------

    def save(self, hardstate: HardState | None, entries: Sequence[Entry]) -> None:
        """Buffer entries, then hardstate (skipped when None or unchanged). No I/O."""
        self._check_writable()
        data = None
        with self._lock:
            hs = hardstate if hardstate is not None and hardstate != self._hardstate else None
            if entries:
                first, last = entries[0].index, entries[-1].index
                if first > self._last_index + 1:
                    raise WalError(f"entry {first} would leave a gap after {self._last_index}")
                if last - first != len(entries) - 1:
                    raise WalError("entries saved together must have consecutive indexes")
            elif hs is None:
                return
            data = codec.encode_batch(entries, hs)
            self._pending.append(data)
            if entries:
                self._last_index = last
            if hs is not None:
                self._hardstate = hs
        self._read = None

    def sync(self) -> None:
        """Write everything saved so far and fdatasync; then cut if the segment is full."""
        with self._sync_lock:
            self._check_writable()
            with self._lock:
                pending, self._pending = self._pending, []
                last_index, hardstate = self._last_index, self._hardstate
            if not pending:
                return
            buf = bytearray().join(pending)
            codec.mark_batch_start(buf, 0)
            try:
                _pwrite_all(self._fd, buf, self._offset)
                os.fdatasync(self._fd)
            except BaseException as e:
                # after a failed write or fdatasync the page cache cannot be trusted
                self._failed = e
                raise
            self._offset += len(buf)
            self._synced_last_index, self._synced_hardstate = last_index, hardstate
            if self._offset >= self.segment_bytes:
                self._cut()

    def save_snapshot(self, snap: WalSnapshot) -> None:
        """Record a snapshot marker (open() can then start from snap) and sync."""
        self._check_writable()
        data = codec.encode_record(ref.REC_SNAPSHOT, ref.encode_snapshot(snap.index, snap.term))
        with self._lock:
            self._pending.append(data)
            self._last_index = max(self._last_index, snap.index)
        self._read = None
        self.sync()

    def _cut(self) -> None:
        """Close the full segment (trim its preallocation) and start the next one."""
        try:
            os.ftruncate(self._fd, self._offset)
            os.fdatasync(self._fd)
            seq = self._segments[-1][0] + 1
            name = segment_name(seq, self._synced_last_index + 1)
            prologue = _prologue(seq, self._synced_last_index + 1, self._metadata,
                                 self._synced_hardstate, None)
            fd = _write_segment(self.dirpath, name, prologue, self.segment_bytes)
        except BaseException as e:
            self._failed = e
            raise
        os.close(self._fd)
        self._fd = fd
        self._offset = len(prologue)
        self._segments.append((seq, self._synced_last_index + 1, name))
        log.debug("wal: cut %s", name)

    def release_to(self, index: int) -> None:
        """Delete the segments before the last one whose first index is <= index:
        every entry they hold that a reader could still see is < index."""
        with self._sync_lock:
            keep = next((i for i in range(len(self._segments) - 1, -1, -1)
                         if self._segments[i][1] <= index), 0)
            doomed, self._segments = self._segments[:keep], self._segments[keep:]
            for _, _, name in doomed:
                os.unlink(os.path.join(self.dirpath, name))
            if doomed:
                os.fsync(self._dir_fd)

    def close(self) -> None:
        """Sync what is buffered (unless a write failed) and release the directory."""
        with self._sync_lock:
            if self._fd < 0 and self._dir_fd < 0:
                return
        try:
            if self._pending and self._failed is None and self._fd >= 0:
                self.sync()
        finally:
            with self._sync_lock:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                if self._dir_fd >= 0:
                    os.close(self._dir_fd)  # also drops the flock
                    self._dir_fd = -1

    def __enter__(self) -> WAL:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise WalError(f"{self.dirpath}: an earlier write failed: {self._failed!r}")
        if self._fd < 0:
            raise WalError(f"{self.dirpath}: closed")
        if not self._ready:
            raise WalError("call read_all() after open() before saving")


def _lock_dir(dirpath: str) -> int:
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WalError(f"{dirpath}: WAL is in use by another process or handle") from None
    return fd
