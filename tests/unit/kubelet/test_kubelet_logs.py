"""Log files: tail, limits, the offset→time index behind --timestamps."""
from __future__ import annotations

import os

from kcore.kubelet.logs import LogIndex, attempts, read_lines


def test_tail_and_limits(tmp_path):
    p = tmp_path / "0.log"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    assert read_lines(str(p), tail=2)[0] == b"line 998\nline 999\n"
    assert read_lines(str(p), tail=0)[0] == b""
    assert read_lines(str(p), tail=5000)[0].count(b"\n") == 1000
    assert read_lines(str(p), limit_bytes=7)[0] == b"line 0\n"
    p.write_bytes(b"a\nb\nno newline")
    assert read_lines(str(p), tail=1)[0] == b"no newline"
    assert read_lines(str(p), tail=2)[0] == b"b\nno newline"
    data, end = read_lines(str(p), start_offset=2)
    assert data == b"b\nno newline" and end == os.path.getsize(p)
    assert read_lines(str(tmp_path / "missing.log")) == (b"", 0)


def test_index_gives_first_seen_times(tmp_path):
    p = tmp_path / "3.log"
    p.write_bytes(b"one\n")
    ix = LogIndex(str(p))
    assert ix.observe(100.0)
    assert not ix.observe(101.0)          # no growth, no record
    with open(p, "ab") as fh:
        fh.write(b"two\nthree\n")
    assert ix.observe(105.5)
    out, _ = read_lines(str(p), index=ix, timestamps=True)
    lines = out.splitlines()
    assert lines[0].endswith(b" one") and b"T00:01:40" in lines[0]
    assert b"T00:01:45.500000000Z two" in lines[1] and lines[2].endswith(b" three")
    since, _ = read_lines(str(p), index=ix, since=105.0)
    assert since == b"two\nthree\n"
    again = LogIndex(str(p))               # persisted beside the log
    assert again.time_at(4, 0) == 105.5 and again.size == os.path.getsize(p)


def test_attempts_order(tmp_path):
    for n in (10, 2, 0):
        (tmp_path / f"{n}.log").write_text("x")
    (tmp_path / "2.log.idx").write_text("0 1\n")
    assert [a for a, _ in attempts(str(tmp_path))] == [0, 2, 10]
