"""WAL: round trips, segments, raft overwrite semantics, release, torn tails, corruption.

Every test runs with the reference codec and, when built, the native one.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

import pytest

from kcore.store import wal as walmod
from kcore.store import walcodec_ref as ref
from kcore.store.errors import DataCorruption
from kcore.store.wal import (
    WAL,
    Entry,
    HardState,
    MissingEntries,
    SnapshotMismatch,
    SnapshotNotFound,
    WalError,
    WalSnapshot,
    parse_segment_name,
    segment_name,
)

try:
    from kcore._native import walcodec as native
except ImportError:  # pragma: no cover
    native = None

SEG = 8192


@pytest.fixture(params=["ref", "native"], autouse=True)
def codec(request, monkeypatch):
    if request.param == "native":
        if native is None:
            pytest.skip("native walcodec not built")
        monkeypatch.setattr(walmod, "codec", native)
        return native
    monkeypatch.setattr(walmod, "codec", ref)
    return ref


@pytest.fixture
def waldir(tmp_path):
    return str(tmp_path / "member" / "wal")


@pytest.fixture
def fastdir():
    """A WAL dir in tmpfs where there is one: the loops below reopen (and so fsync)
    a WAL hundreds of times, which says nothing about the disk and is slow on a busy one."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="kcore-wal-", dir=base) as d:
        yield os.path.join(d, "member", "wal")


def ents(lo, hi, term=1, size=40):
    return [Entry(i, term, bytes([i % 251]) * (size + i % 13)) for i in range(lo, hi + 1)]


def segments(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".wal"))


def reopen(d, snap=None):
    w = WAL.open(d, snap or WalSnapshot(), segment_bytes=SEG)
    try:
        return w.read_all()
    finally:
        w.close()


def write_batches(d, batches, metadata=b"meta"):
    """batches: list of (hardstate | None, entries); one save+sync each."""
    w = WAL.create(d, metadata, segment_bytes=SEG)
    for hs, es in batches:
        w.save(hs, es)
        w.sync()
    w.close()


def records_of(path):
    with open(path, "rb") as f:
        buf = f.read()
    records, end, stop = ref.decode(buf)
    assert stop in (ref.STOP_ZERO, ref.STOP_END)
    return buf, records, end


# -- basics --------------------------------------------------------------------

def test_round_trip(waldir):
    assert not WAL.exists(waldir)
    w = WAL.create(waldir, b"cluster-1")
    assert WAL.exists(waldir)
    assert w.read_all() == (b"cluster-1", HardState(), [])
    batch = ents(1, 5) + [Entry(6, 2, b"", walmod.ENTRY_CONF_CHANGE)]
    w.save(HardState(2, 7, 4), batch)
    w.sync()
    w.close()
    assert segments(waldir) == [segment_name(0, 0)]
    assert os.path.getsize(os.path.join(waldir, segment_name(0, 0))) == walmod.SEGMENT_BYTES
    assert not os.path.exists(waldir + ".tmp")
    meta, hs, got = reopen(waldir)
    assert (meta, hs, got) == (b"cluster-1", HardState(2, 7, 4), batch)
    assert got[-1].type == walmod.ENTRY_CONF_CHANGE


def test_create_refuses_existing_wal_and_replaces_empty_dir(waldir):
    os.makedirs(waldir)
    WAL.create(waldir, b"m").close()
    with pytest.raises(WalError):
        WAL.create(waldir, b"m")


def test_open_requires_read_all_before_save(waldir):
    write_batches(waldir, [(None, ents(1, 3))])
    w = WAL.open(waldir)
    with pytest.raises(WalError):
        w.save(None, ents(4, 4))
    w.read_all()
    w.save(None, ents(4, 4))
    w.close()
    assert [e.index for e in reopen(waldir)[2]] == [1, 2, 3, 4]


def test_second_handle_is_refused(waldir):
    w = WAL.create(waldir, b"m")
    with pytest.raises(WalError, match="in use"):
        WAL.open(waldir)
    w.close()
    WAL.open(waldir).close()


def test_save_rejects_gaps(waldir):
    w = WAL.create(waldir, b"m")
    w.save(None, ents(1, 3))
    with pytest.raises(WalError, match="gap"):
        w.save(None, ents(5, 6))
    with pytest.raises(WalError, match="consecutive"):
        w.save(None, [Entry(4, 1, b""), Entry(6, 1, b"")])
    w.close()


def test_unchanged_hardstate_is_not_rewritten(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    w.save(HardState(1, 1, 0), [])
    w.sync()
    w.save(HardState(1, 1, 0), [])
    w.sync()
    w.close()
    _, records, _ = records_of(os.path.join(waldir, segment_name(0, 0)))
    assert [r[0] for r in records].count(ref.REC_HARDSTATE) == 1


def test_close_syncs_pending(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    w.save(HardState(1, 0, 2), ents(1, 2))
    w.close()
    assert reopen(waldir)[1:] == (HardState(1, 0, 2), ents(1, 2))


def test_reopen_and_continue(waldir):
    write_batches(waldir, [(HardState(1, 1, 1), ents(1, 10))])
    for k in range(3):
        w = WAL.open(waldir, segment_bytes=SEG)
        got = w.read_all()[2]
        assert [e.index for e in got] == list(range(1, 11 + 10 * k))
        w.save(HardState(1, 1, got[-1].index), ents(11 + 10 * k, 20 + 10 * k))
        w.sync()
        w.close()
    assert [e.index for e in reopen(waldir)[2]] == list(range(1, 41))


# -- segments ------------------------------------------------------------------

def test_segment_cut_and_read_across(waldir):
    batches = [(HardState(1, 1, i), ents(i, i + 4, size=150)) for i in range(1, 400, 5)]
    write_batches(waldir, batches)
    names = segments(waldir)
    assert len(names) > 5
    parsed = [parse_segment_name(n) for n in names]
    assert [p[0] for p in parsed] == list(range(len(names)))
    for name, (seq, first) in zip(names, parsed):
        buf, records, end = records_of(os.path.join(waldir, name))
        assert records[0][0] == ref.REC_SEGMENT and ref.decode_segment(records[0][2]) == (seq, first)
        assert records[1] [0] == ref.REC_METADATA and records[1][2] == b"meta"
        entries = [ref.decode_entry(p)[0] for t, _, p in records if t == ref.REC_ENTRY]
        if seq:
            assert entries[0] == first  # named after the first entry it holds
            assert records[2][0] == ref.REC_HARDSTATE  # last hardstate carried over
        if name != names[-1]:
            assert len(buf) == end  # preallocation trimmed on cut
    assert os.path.getsize(os.path.join(waldir, names[-1])) == SEG
    _, hs, got = reopen(waldir)
    assert got == [e for _, es in batches for e in es]
    assert hs == batches[-1][0]


def test_overwrite_keeps_the_later_entries(waldir):
    write_batches(waldir, [
        (HardState(1, 1, 3), ents(1, 10, term=1)),
        (HardState(2, 2, 3), ents(6, 8, term=2)),    # a new leader rewrote the tail
        (HardState(3, 3, 3), ents(8, 9, term=3)),
    ])
    _, hs, got = reopen(waldir)
    assert [(e.index, e.term) for e in got] == [(i, 1) for i in range(1, 6)] + [
        (6, 2), (7, 2), (8, 3), (9, 3)]
    assert hs == HardState(3, 3, 3)


def test_overwrite_across_segments(waldir):
    batches = [(None, ents(i, i + 9, term=1, size=200)) for i in range(1, 200, 10)]
    batches.append((HardState(2, 2, 50), ents(120, 125, term=2)))
    write_batches(waldir, batches)
    assert len(segments(waldir)) > 3
    got = reopen(waldir)[2]
    assert [e.index for e in got] == list(range(1, 126))
    assert all(e.term == (2 if e.index >= 120 else 1) for e in got)


def test_snapshot_marker_and_open_after_it(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    w.save(HardState(1, 1, 20), ents(1, 20))
    w.sync()
    w.save_snapshot(WalSnapshot(15, 1))
    w.save(None, ents(21, 25))
    w.close()
    _, _, got = reopen(waldir, WalSnapshot(15, 1))
    assert [e.index for e in got] == list(range(16, 26))
    with pytest.raises(SnapshotMismatch):
        reopen(waldir, WalSnapshot(15, 2))
    with pytest.raises(SnapshotNotFound):
        reopen(waldir, WalSnapshot(16, 1))


def test_snapshot_beyond_the_log_then_entries(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    w.save(HardState(1, 1, 3), ents(1, 3))
    w.save_snapshot(WalSnapshot(100, 4))  # a follower installs the leader's snapshot
    w.save(HardState(4, 0, 100), ents(101, 102, term=4))
    w.close()
    assert [e.index for e in reopen(waldir, WalSnapshot(100, 4))[2]] == [101, 102]


def test_release_to(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    for i in range(1, 400, 5):
        w.save(HardState(1, 1, i), ents(i, i + 4, size=150))
        w.sync()
    w.save_snapshot(WalSnapshot(300, 1))
    before = segments(waldir)
    firsts = [parse_segment_name(n)[1] for n in before]
    keep_from = max(i for i, f in enumerate(firsts) if f <= 300)
    w.release_to(300)
    assert segments(waldir) == before[keep_from:]
    w.release_to(10**9)  # never the live segment
    assert segments(waldir) == before[-1:]
    w.close()
    assert segment_name(0, 0) not in segments(waldir)
    with pytest.raises(SnapshotNotFound):
        reopen(waldir)


def test_release_then_open_after_snapshot(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    for i in range(1, 400, 5):
        w.save(HardState(1, 1, i), ents(i, i + 4, size=150))
        w.sync()
    w.save_snapshot(WalSnapshot(300, 1))
    w.release_to(300)
    w.save(None, ents(401, 410))
    w.close()
    meta, hs, got = reopen(waldir, WalSnapshot(300, 1))
    assert meta == b"m" and hs == HardState(1, 1, 396)
    assert [e.index for e in got] == list(range(301, 411))


def test_missing_middle_segment(waldir):
    write_batches(waldir, [(None, ents(i, i + 9, size=200)) for i in range(1, 200, 10)])
    names = segments(waldir)
    os.unlink(os.path.join(waldir, names[2]))
    with pytest.raises(DataCorruption) as ei:
        reopen(waldir)
    assert ei.value.path == os.path.join(waldir, names[3])


def test_leftover_tmp_files_are_ignored(waldir, tmp_path):
    write_batches(waldir, [(None, ents(1, 3))])
    with open(os.path.join(waldir, segment_name(1, 4) + ".tmp"), "wb") as f:
        f.write(b"half a cut")
    os.makedirs(str(tmp_path / "other" / "wal.tmp"))
    assert not WAL.exists(str(tmp_path / "other" / "wal"))
    assert [e.index for e in reopen(waldir)[2]] == [1, 2, 3]
    assert segments(waldir) == [segment_name(0, 0)]
    WAL.create(str(tmp_path / "other" / "wal"), b"m").close()  # a crashed create is redone
    assert WAL.exists(str(tmp_path / "other" / "wal"))
    assert not os.path.exists(str(tmp_path / "other" / "wal.tmp"))


def test_save_during_sync_from_another_thread(waldir):
    w = WAL.create(waldir, b"m", segment_bytes=SEG)
    stop = threading.Event()

    def syncer():
        while not stop.is_set():
            w.sync()

    t = threading.Thread(target=syncer)
    t.start()
    for i in range(1, 301):
        w.save(HardState(1, 1, i - 1), [Entry(i, 1, b"x" * 30)])
    stop.set()
    t.join()
    w.sync()
    w.close()
    _, hs, got = reopen(waldir)
    assert [e.index for e in got] == list(range(1, 301)) and hs == HardState(1, 1, 299)


# -- torn tails ----------------------------------------------------------------

def _expected(records, cut, by_payload_end):
    """State a reader must see when everything from byte `cut` on is lost."""
    hs, got = HardState(), []
    for rtype, off, payload in records:
        end = off + ref.HEADER_SIZE + len(payload) if by_payload_end else off + ref.record_size(
            len(payload))
        if end > cut:
            break
        if rtype == ref.REC_ENTRY:
            i, t, ty, data = ref.decode_entry(payload)
            got = [e for e in got if e.index < i] + [Entry(i, t, data, ty)]
        elif rtype == ref.REC_HARDSTATE:
            hs = HardState(*ref.decode_hardstate(payload))
    return hs, got


@pytest.mark.parametrize("last_batch", ["one entry", "entries and hardstate"])
def test_torn_tail_every_cut_point(fastdir, last_batch, caplog):
    waldir = fastdir
    last = (None, ents(7, 7, size=90)) if last_batch == "one entry" else (
        HardState(2, 1, 6), ents(7, 9, size=30))
    write_batches(waldir, [(HardState(1, 1, 3), ents(1, 4)), (HardState(1, 1, 4), ents(5, 6)), last])
    path = os.path.join(waldir, segment_name(0, 0))
    orig, records, end = records_of(path)
    first = next(off for rtype, off, p in records if rtype == ref.REC_ENTRY and
                 ref.decode_entry(p)[0] == 7)
    for how in ("truncate", "zero"):
        for cut in range(first, end):
            with open(path, "wb") as f:
                f.write(orig[:cut] if how == "truncate" else orig[:cut] + bytes(len(orig) - cut))
            with caplog.at_level(logging.WARNING, logger="kcore.store.wal"):
                caplog.clear()
                _, hs, got = reopen(waldir)
            # zeroing bytes that already were zero damages nothing
            eff = cut if how == "truncate" else next(
                (i for i in range(cut, end) if orig[i]), end)
            want = _expected(records, eff, by_payload_end=(how == "zero"))
            assert (hs, got) == want, (how, cut)
            partial = any(off < eff < off + ref.HEADER_SIZE + len(p) + (
                how == "truncate") * (ref.record_size(len(p)) - ref.HEADER_SIZE - len(p))
                for _, off, p in records)
            assert ("torn" in caplog.text) == partial, (how, cut)
            if cut % 11 == 0:  # the repaired segment takes new writes
                w = WAL.open(waldir, segment_bytes=SEG)
                w.read_all()
                nxt = got[-1].index + 1
                w.save(HardState(3, 1, nxt), [Entry(nxt, 3, b"after repair")])
                w.sync()
                w.close()
                assert reopen(waldir)[2] == got + [Entry(nxt, 3, b"after repair")]
                assert os.path.getsize(path) == SEG


def test_torn_tail_in_a_fresh_segment(waldir):
    write_batches(waldir, [(None, ents(i, i + 9, size=200)) for i in range(1, 100, 10)])
    last = os.path.join(waldir, segments(waldir)[-1])
    w = WAL.open(waldir, segment_bytes=SEG)
    w.read_all()
    w.save(HardState(1, 1, 100), ents(101, 101, size=300))
    w.sync()
    w.close()
    end = records_of(last)[2]
    with open(last, "r+b") as f:
        f.truncate(end - 50)
    got = reopen(waldir)[2]
    assert got[-1].index == 100


def test_out_of_order_writeback_hole_in_last_write(waldir, caplog):
    """One unsynced write whose middle sector never reached the disk but later ones did."""
    write_batches(waldir, [(HardState(1, 1, 1), ents(1, 2)),
                           (HardState(1, 1, 2), ents(3, 40, size=100))])
    path = os.path.join(waldir, segment_name(0, 0))
    orig, records, end = records_of(path)
    hole = (end // 2) - (end // 2) % walmod.SECTOR
    damaged = bytearray(orig)
    damaged[hole:hole + walmod.SECTOR] = bytes(walmod.SECTOR)
    with open(path, "wb") as f:
        f.write(damaged)
    with caplog.at_level(logging.WARNING, logger="kcore.store.wal"):
        _, hs, got = reopen(waldir)
    assert "torn" in caplog.text
    assert (hs, got) == _expected(records, hole, by_payload_end=True)
    assert len(got) >= 3


def test_hole_in_an_earlier_write_is_corruption(waldir):
    write_batches(waldir, [(HardState(1, 1, 1), ents(1, 30, size=100)),
                           (HardState(1, 1, 2), ents(31, 32))])
    path = os.path.join(waldir, segment_name(0, 0))
    orig, records, _ = records_of(path)
    hole = 2 * walmod.SECTOR
    damaged = bytearray(orig)
    damaged[hole:hole + walmod.SECTOR] = bytes(walmod.SECTOR)
    with open(path, "wb") as f:
        f.write(damaged)
    with pytest.raises(DataCorruption) as ei:
        reopen(waldir)
    first_bad = next(off for _, off, p in records if off + ref.HEADER_SIZE + len(p) > hole)
    assert (ei.value.path, ei.value.offset) == (path, first_bad)


# -- corruption ----------------------------------------------------------------

def _flip(path, pos, bit=0):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << bit)]))


@pytest.mark.parametrize("same_write", [False, True], ids=["earlier write", "same write"])
def test_bit_flip_before_valid_records(fastdir, same_write):
    waldir = fastdir
    batches = [(HardState(1, 1, 3), ents(1, 8, size=60))]
    if not same_write:
        batches.append((HardState(1, 1, 8), ents(9, 10)))
    write_batches(waldir, batches)
    path = os.path.join(waldir, segment_name(0, 0))
    orig, records, _ = records_of(path)
    victim = [r for r in records if r[0] == ref.REC_ENTRY][4]
    rec_end = victim[1] + ref.record_size(len(victim[2]))
    for pos in range(victim[1], rec_end):
        with open(path, "wb") as f:
            f.write(orig)
        _flip(path, pos, bit=pos % 8)
        with pytest.raises(DataCorruption) as ei:
            reopen(waldir)
        assert (ei.value.path, ei.value.offset) == (path, victim[1]), pos
        assert path in str(ei.value) and str(victim[1]) in str(ei.value)


def test_bit_flip_in_non_last_segment(waldir):
    write_batches(waldir, [(None, ents(i, i + 9, size=200)) for i in range(1, 100, 10)])
    names = segments(waldir)
    assert len(names) >= 3
    path = os.path.join(waldir, names[1])
    orig, records, end = records_of(path)
    for victim in (records[0], records[1], records[-1]):  # header, metadata, last record
        with open(path, "wb") as f:
            f.write(orig)
        _flip(path, victim[1] + ref.HEADER_SIZE + len(victim[2]) // 2, bit=3)
        with pytest.raises(DataCorruption) as ei:
            reopen(waldir)
        assert (ei.value.path, ei.value.offset) == (path, victim[1])
    with open(path, "wb") as f:  # a torn-looking end is still corruption here
        f.write(orig[:end - 10])
    with pytest.raises(DataCorruption, match="not the last"):
        reopen(waldir)


def test_flip_in_last_record_is_a_torn_tail(waldir):
    """Indistinguishable from an unfinished write: dropped with a warning."""
    write_batches(waldir, [(None, ents(1, 3)), (None, ents(4, 4))])
    path = os.path.join(waldir, segment_name(0, 0))
    records = records_of(path)[1]
    _flip(path, records[-1][1] + 20)
    assert [e.index for e in reopen(waldir)[2]] == [1, 2, 3]


def test_damaged_segment_prologue_is_corruption(waldir):
    write_batches(waldir, [(None, ents(1, 3))])
    path = os.path.join(waldir, segment_name(0, 0))
    with open(path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataCorruption):
        reopen(waldir)


def test_zeroed_header_followed_by_data_is_corruption(waldir):
    write_batches(waldir, [(None, ents(1, 6)), (None, ents(7, 8))])
    path = os.path.join(waldir, segment_name(0, 0))
    records = records_of(path)[1]
    victim = [r for r in records if r[0] == ref.REC_ENTRY][2]
    if victim[1] % walmod.SECTOR + ref.HEADER_SIZE > walmod.SECTOR:
        pytest.skip("header crosses a sector")
    with open(path, "r+b") as f:
        f.seek(victim[1])
        f.write(bytes(ref.HEADER_SIZE))
    with pytest.raises(DataCorruption) as ei:
        reopen(waldir)
    assert ei.value.offset == victim[1]


def test_unknown_record_type_is_corruption(waldir):
    write_batches(waldir, [(None, ents(1, 2))])
    path = os.path.join(waldir, segment_name(0, 0))
    end = records_of(path)[2]
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(ref.encode_record(ref.REC_MAX, b"x").replace(bytes([ref.REC_MAX]), b"\x09", 1))
    with pytest.raises(DataCorruption):
        reopen(waldir)


def test_copy_of_wal_opens_elsewhere(waldir, tmp_path):
    write_batches(waldir, [(HardState(1, 1, 1), ents(1, 5))])
    dst = str(tmp_path / "copy")
    shutil.copytree(waldir, dst)
    assert reopen(dst)[2] == ents(1, 5)


def test_gap_in_entries_is_reported(waldir):
    write_batches(waldir, [(None, ents(1, 3))])
    path = os.path.join(waldir, segment_name(0, 0))
    end = records_of(path)[2]
    gap = bytearray(ref.encode_record(ref.REC_ENTRY, ref.encode_entry(5, 1, 0, b"x")))
    ref.mark_batch_start(gap)
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(gap)
    with pytest.raises(MissingEntries, match="entry 5"):
        reopen(waldir)


def test_renamed_segment_is_corruption(waldir):
    write_batches(waldir, [(None, ents(i, i + 9, size=200)) for i in range(1, 100, 10)])
    name = segments(waldir)[-1]
    seq, first = parse_segment_name(name)
    os.rename(os.path.join(waldir, name), os.path.join(waldir, segment_name(seq, first - 1)))
    with pytest.raises(DataCorruption, match="segment header says"):
        reopen(waldir)
