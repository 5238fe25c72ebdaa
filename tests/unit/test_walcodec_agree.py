"""The native WAL codec and the pure-Python reference agree byte for byte, on
encoding and on decoding -- including how and where they detect damage."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.store import walcodec_ref as ref

native = pytest.importorskip("kcore._native.walcodec")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["hardware", "table"], autouse=True)
def crc_impl(request):
    """Run every check with the SSE4.2 CRC (where the CPU has it) and with the table."""
    native._use_hardware(request.param == "hardware")
    yield native.IMPLEMENTATION
    native._use_hardware(True)


@dataclass(frozen=True)
class E:
    index: int
    term: int
    data: bytes
    type: int = 0


@dataclass(frozen=True)
class HS:
    term: int
    vote: int
    commit: int


u64 = st.integers(0, 2**64 - 1)
records_st = st.lists(
    st.tuples(st.integers(1, ref.REC_MAX), st.binary(max_size=300), st.sampled_from([0, 1])),
    max_size=12)
mutation_st = st.one_of(
    st.just(("none", 0, 0, 0)),
    st.tuples(st.sampled_from(["flip", "truncate", "zero", "set"]),
              st.integers(0, 10**6), st.integers(0, 600), st.integers(0, 255)),
)


def mutate(buf: bytes, how: str, pos: int, length: int, byte: int) -> bytes:
    if not buf or how == "none":
        return buf
    pos %= len(buf)
    b = bytearray(buf)
    if how == "flip":
        b[pos] ^= 1 << (byte % 8)
    elif how == "truncate":
        del b[pos:]
    elif how == "zero":
        b[pos:pos + length] = bytes(len(b[pos:pos + length]))
    else:
        b[pos] = byte
    return bytes(b)


def test_constants_agree():
    for name in ("HEADER_SIZE", "ALIGN", "REC_METADATA", "REC_ENTRY", "REC_HARDSTATE",
                 "REC_SNAPSHOT", "REC_SEGMENT", "REC_MAX", "FLAG_BATCH", "STOP_END", "STOP_ZERO",
                 "STOP_SHORT", "STOP_HEADER_CRC", "STOP_PAYLOAD_CRC", "STOP_FRAMING",
                 "ENTRY_HEADER_SIZE"):
        assert getattr(native, name) == getattr(ref, name), name


def test_crc_known_values_and_large_inputs(crc_impl):
    assert native.crc32c(b"123456789") == 0xE3069283 == ref.crc32c(b"123456789")
    assert native.crc32c(b"") == 0
    assert native.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert native.crc32c(b"\xff" * 32) == 0x62A8AB43
    big = os.urandom((1 << 20) + 13)
    assert native.crc32c(big) == ref.crc32c(big)
    mv = memoryview(big)
    for skew in range(9):  # unaligned starts and odd tails
        assert native.crc32c(mv[skew:skew + 1001]) == ref.crc32c(big[skew:skew + 1001])
    assert native.crc32c(big[5000:], native.crc32c(big[:5000])) == ref.crc32c(big)


@SETTINGS
@given(data=st.binary(max_size=2000), value=st.integers(0, 2**32 - 1))
def test_crc_agrees(data, value):
    assert native.crc32c(data, value) == ref.crc32c(data, value)


@SETTINGS
@given(records=records_st, trailing=st.integers(0, 64), mutation=mutation_st,
       start=st.integers(0, 4000), window=st.integers(0, 4000))
def test_records_encode_and_decode_agree(records, trailing, mutation, start, window):
    parts = []
    for rtype, payload, flags in records:
        a = ref.encode_record(rtype, payload, flags)
        b = native.encode_record(rtype, payload, flags)
        assert a == b
        assert len(a) == ref.record_size(len(payload)) == native.record_size(len(payload))
        parts.append(a)
    clean = b"".join(parts) + bytes(trailing)
    rr, _, rs = ref.decode(clean)
    assert [(t, p) for t, _, p in rr] == [(t, p) for t, p, _ in records]
    assert rs in (ref.STOP_END, ref.STOP_ZERO)
    buf = mutate(clean, *mutation)
    got = native.decode(buf)
    want = ref.decode(buf)
    assert got == want
    assert native.decode(bytearray(buf)) == want
    if buf:
        s = (start % len(buf)) & ~7
        assert native.decode(buf, s) == ref.decode(buf, s)
        assert native.last_nonzero(buf, s) == ref.last_nonzero(buf, s)
        stop = s + window
        assert native.find_batch_start(buf, s, stop) == ref.find_batch_start(buf, s, stop)
        assert native.read_header(buf, s) == ref.read_header(buf, s)
    assert native.last_nonzero(buf) == ref.last_nonzero(buf)
    assert native.find_batch_start(buf, 1, len(buf)) == ref.find_batch_start(buf, 1, len(buf))
    if len(buf) >= ref.HEADER_SIZE:
        a, b = bytearray(buf), bytearray(buf)
        ref.mark_batch_start(a)
        native.mark_batch_start(b)
        assert a == b


entry_st = st.builds(E, index=u64, term=u64, data=st.binary(max_size=400),
                     type=st.integers(0, 255))


@SETTINGS
@given(entries=st.lists(entry_st, max_size=20),
       hardstate=st.none() | st.builds(HS, u64, u64, u64), mutation=mutation_st)
def test_batches_agree(entries, hardstate, mutation):
    a = ref.encode_batch(entries, hardstate)
    b = native.encode_batch(entries, hardstate)
    assert a == b
    assert native.encode_batch(tuple(entries), hardstate) == a
    records, end, stop = native.decode(a)
    assert (end, stop) == (len(a), ref.STOP_END)
    decoded = [native.decode_entry(p) for t, _, p in records if t == ref.REC_ENTRY]
    assert decoded == [ref.decode_entry(p) for t, _, p in records if t == ref.REC_ENTRY]
    assert decoded == [(e.index, e.term, e.type, e.data) for e in entries]
    if hardstate is not None:
        assert records[-1][0] == ref.REC_HARDSTATE
        assert ref.decode_hardstate(records[-1][2]) == (
            hardstate.term, hardstate.vote, hardstate.commit)
    damaged = mutate(a, *mutation)
    assert native.decode(damaged) == ref.decode(damaged)


def test_malformed_inputs_are_rejected_alike():
    for payload in (b"", b"x" * 16):
        with pytest.raises(ValueError):
            ref.decode_entry(payload)
        with pytest.raises(ValueError):
            native.decode_entry(payload)
    for start in (-1, 10):
        with pytest.raises(ValueError):
            ref.decode(b"12345678", start)
        with pytest.raises(ValueError):
            native.decode(b"12345678", start)
    with pytest.raises(OverflowError):
        native.encode_batch([E(-1, 0, b"")])
    with pytest.raises(struct.error):
        ref.encode_batch([E(-1, 0, b"")])


def test_payload_crc_damage_found_at_record_offset():
    blob = native.encode_batch([E(i, 1, b"payload-%d" % i) for i in range(1, 6)])
    records, _, _ = native.decode(blob)
    third = records[2][1]
    damaged = bytearray(blob)
    damaged[third + ref.HEADER_SIZE + 3] ^= 0x40
    assert native.decode(bytes(damaged))[1:] == (third, ref.STOP_PAYLOAD_CRC)
    damaged = bytearray(blob)
    damaged[third + 1] ^= 0x01  # the length: caught by the header CRC, never trusted
    assert native.decode(bytes(damaged))[1:] == (third, ref.STOP_HEADER_CRC)
