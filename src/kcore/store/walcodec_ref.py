"""WAL record codec, pure-Python reference.

The on-disk record, little endian, 8-byte aligned::

    0  u32  payload length L
    4  u8   record type (REC_*; 0 is never valid, so zero-filled space reads as "end")
    5  u8   flags (FLAG_BATCH: first record of one write(); other bits zero)
    6  u16  reserved, zero
    8  u32  CRC-32C of the type byte followed by the payload
    12 u32  CRC-32C of bytes 0..11 (so a damaged length is caught before it is used)
    16      payload, then zero padding to the next multiple of 8 (checked to be zero)

`kcore._native.walcodec` implements the same functions with the same results;
tests/unit/test_walcodec_agree.py proves it. The payload layouts of the typed
records (entry, hardstate, snapshot marker, segment header) live here too,
because encoding a batch of entries is the hot path.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

try:
    from google_crc32c import extend as _extend
    from google_crc32c import value as _value

    def crc32c(data: bytes, value: int = 0) -> int:
        """CRC-32C (Castagnoli) of data, continuing from value."""
        return _extend(value, data) if value else _value(data)
except ImportError:  # pragma: no cover - the other packaging of the same CRC
    from crc32c import crc32c as _crc

    def crc32c(data: bytes, value: int = 0) -> int:
        """CRC-32C (Castagnoli) of data, continuing from value."""
        return _crc(data, value)


HEADER_SIZE = 16
ALIGN = 8

REC_METADATA = 1
REC_ENTRY = 2
REC_HARDSTATE = 3
REC_SNAPSHOT = 4
REC_SEGMENT = 5
REC_MAX = 5

FLAG_BATCH = 1

# Why decode() stopped.
STOP_END = 0           # the buffer ended exactly at a record boundary
STOP_ZERO = 1          # an all-zero header: the written part of the segment ends here
STOP_SHORT = 2         # a header or record reaches past the end of the buffer
STOP_HEADER_CRC = 3    # header CRC mismatch (and the header is not all zero)
STOP_PAYLOAD_CRC = 4   # header fine, payload CRC mismatch
STOP_FRAMING = 5       # header CRC fine but a field is invalid (type, flags, reserved,
                       # non-zero padding)

SEGMENT_MAGIC = b"KCOREWAL"
SEGMENT_VERSION = 1

_HEAD12 = struct.Struct("<IBBHI")
_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<QQB")             # index, term, entry type; data follows
_HARDSTATE = struct.Struct("<QQQ")         # term, vote, commit
_SNAPSHOT = struct.Struct("<QQ")           # index, term
_SEGMENT = struct.Struct("<8sHQQ")         # magic, version, sequence, first index expected
_ZERO_HEADER = bytes(HEADER_SIZE)
_PADS = [bytes(n) for n in range(ALIGN)]
_TYPE_CRC = [crc32c(bytes([t])) for t in range(256)]

ENTRY_HEADER_SIZE = _ENTRY.size


def record_size(payload_len: int) -> int:
    """Bytes a record with this payload occupies on disk."""
    return HEADER_SIZE + payload_len + (-payload_len & (ALIGN - 1))


def encode_record(rtype: int, payload: bytes, flags: int = 0) -> bytes:
    """One framed record."""
    n = len(payload)
    head = _HEAD12.pack(n, rtype, flags, 0, crc32c(payload, _TYPE_CRC[rtype]))
    return b"".join((head, _U32.pack(crc32c(head)), payload, _PADS[-n & (ALIGN - 1)]))


def encode_batch(entries: Sequence[Any], hardstate: Any = None) -> bytes:
    """Entry records (objects with .index .term .type .data), then a hardstate
    record (an object with .term .vote .commit) unless hardstate is None."""
    out = []
    append = out.append
    pack_entry = _ENTRY.pack
    pack_head = _HEAD12.pack
    pack_u32 = _U32.pack
    entry_crc = _TYPE_CRC[REC_ENTRY]
    pads = _PADS
    for e in entries:
        payload = pack_entry(e.index, e.term, e.type) + e.data
        n = len(payload)
        head = pack_head(n, REC_ENTRY, 0, 0, crc32c(payload, entry_crc))
        append(head)
        append(pack_u32(crc32c(head)))
        append(payload)
        append(pads[-n & 7])
    if hardstate is not None:
        append(encode_record(REC_HARDSTATE, encode_hardstate(hardstate)))
    return b"".join(out)


def mark_batch_start(buf: bytearray, offset: int = 0) -> None:
    """Set FLAG_BATCH on the record at offset (in place, header CRC updated)."""
    buf[offset + 5] |= FLAG_BATCH
    _U32.pack_into(buf, offset + 12, crc32c(bytes(buf[offset:offset + 12])))


def decode(buf: bytes, start: int = 0) -> tuple[list[tuple[int, int, bytes]], int, int]:
    """Decode records from buf[start:].

    Returns (records, end, stop): records as (type, offset, payload) in order,
    end the offset where decoding stopped (just past the last good record) and
    stop one of STOP_*, saying why.
    """
    records: list[tuple[int, int, bytes]] = []
    append = records.append
    unpack_head = _HEAD12.unpack_from
    unpack_u32 = _U32.unpack_from
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    size = len(buf)
    if start < 0 or start > size:
        raise ValueError("start outside the buffer")
    off = start
    while True:
        if off == size:
            return records, off, STOP_END
        if size - off < HEADER_SIZE:
            if not buf[off:].strip(b"\0"):
                return records, off, STOP_ZERO
            return records, off, STOP_SHORT
        if crc32c(buf[off:off + 12]) != unpack_u32(buf, off + 12)[0]:
            if buf[off:off + HEADER_SIZE] == _ZERO_HEADER:
                return records, off, STOP_ZERO
            return records, off, STOP_HEADER_CRC
        n, rtype, flags, reserved, pcrc = unpack_head(buf, off)
        if rtype == 0 or rtype > REC_MAX or flags & ~FLAG_BATCH or reserved:
            return records, off, STOP_FRAMING
        body = off + HEADER_SIZE
        nxt = body + n + (-n & (ALIGN - 1))
        if nxt > size:
            return records, off, STOP_SHORT
        payload = buf[body:body + n]
        if crc32c(payload, _TYPE_CRC[rtype]) != pcrc:
            return records, off, STOP_PAYLOAD_CRC
        if nxt - body - n and buf[body + n:nxt] != _PADS[nxt - body - n]:
            return records, off, STOP_FRAMING
        append((rtype, off, payload))
        off = nxt


def read_header(buf: bytes, offset: int) -> tuple[int, int, int] | None:
    """(payload length, type, flags) of a header whose own CRC is valid, else None."""
    if len(buf) - offset < HEADER_SIZE:
        return None
    if crc32c(bytes(buf[offset:offset + 12])) != _U32.unpack_from(buf, offset + 12)[0]:
        return None
    n, rtype, flags, _reserved, _pcrc = _HEAD12.unpack_from(buf, offset)
    return n, rtype, flags


def find_batch_start(buf: bytes, start: int, stop: int) -> int:
    """Offset of the first 8-aligned header in [start, stop) with a valid header
    CRC and FLAG_BATCH set, or -1. Used to tell a torn last write (nothing was
    written after it) from damage to data that later writes prove was synced."""
    start = max(start, 0)
    off = start + (-start & (ALIGN - 1))
    stop = min(stop, len(buf) - HEADER_SIZE + 1)
    unpack_u32 = _U32.unpack_from
    while off < stop:
        if buf[off + 5] & FLAG_BATCH and crc32c(bytes(buf[off:off + 12])) == unpack_u32(buf, off + 12)[0]:
            return off
        off += ALIGN
    return -1


def last_nonzero(buf: bytes, start: int = 0) -> int:
    """One past the last non-zero byte of buf, or start if buf[start:] is all zero."""
    return max(len(bytes(buf).rstrip(b"\0")), start)


# -- payload layouts ---------------------------------------------------------

def encode_entry(index: int, term: int, etype: int, data: bytes) -> bytes:
    return _ENTRY.pack(index, term, etype) + data


def decode_entry(payload: bytes) -> tuple[int, int, int, bytes]:
    """(index, term, type, data); ValueError if too short."""
    if len(payload) < _ENTRY.size:
        raise ValueError(f"entry record too short ({len(payload)} bytes)")
    index, term, etype = _ENTRY.unpack_from(payload)
    return index, term, etype, payload[_ENTRY.size:]


def encode_hardstate(hs: Any) -> bytes:
    return _HARDSTATE.pack(hs.term, hs.vote, hs.commit)


def decode_hardstate(payload: bytes) -> tuple[int, int, int]:
    """(term, vote, commit); ValueError if malformed."""
    if len(payload) != _HARDSTATE.size:
        raise ValueError(f"hardstate record has {len(payload)} bytes, want {_HARDSTATE.size}")
    return _HARDSTATE.unpack(payload)


def encode_snapshot(index: int, term: int) -> bytes:
    return _SNAPSHOT.pack(index, term)


def decode_snapshot(payload: bytes) -> tuple[int, int]:
    """(index, term); ValueError if malformed."""
    if len(payload) != _SNAPSHOT.size:
        raise ValueError(f"snapshot record has {len(payload)} bytes, want {_SNAPSHOT.size}")
    return _SNAPSHOT.unpack(payload)


def encode_segment(seq: int, first_index: int) -> bytes:
    return _SEGMENT.pack(SEGMENT_MAGIC, SEGMENT_VERSION, seq, first_index)


def decode_segment(payload: bytes) -> tuple[int, int]:
    """(sequence, first index expected); ValueError if not a segment header we know."""
    if len(payload) != _SEGMENT.size:
        raise ValueError(f"segment header has {len(payload)} bytes, want {_SEGMENT.size}")
    magic, version, seq, first_index = _SEGMENT.unpack(payload)
    if magic != SEGMENT_MAGIC:
        raise ValueError(f"bad segment magic {magic!r}")
    if version != SEGMENT_VERSION:
        raise ValueError(f"unsupported segment version {version}")
    return seq, first_index
