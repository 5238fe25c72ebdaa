"""Container logs: reading (tail, limit, follow) and line timestamps.

Containers write their stdout/stderr straight into `<attempt>.log`, so a line
has no time of its own. While the kubelet runs it watches each running
container's file and appends `offset time` to `<attempt>.log.idx` whenever
the file grew: a line's timestamp is the time the kubelet first saw the bytes
it starts at (at most one watch period late). `kubectl logs --timestamps`
prints those."""
from __future__ import annotations

import bisect
import glob
import os
import re

from kcore.kubelet.timeutil import rfc3339_nano

_ATTEMPT = re.compile(r"^(\d+)\.log$")


def attempts(log_dir: str) -> list[tuple[int, str]]:
    """(attempt, path) of every log file in a container's directory, oldest first."""
    out = []
    for p in glob.glob(os.path.join(glob.escape(log_dir), "*.log")):
        m = _ATTEMPT.match(os.path.basename(p))
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


class LogIndex:
    """offset → first-seen time for one log file, persisted beside it."""

    def __init__(self, path: str):
        self.path = path
        self.offsets: list[int] = []
        self.times: list[float] = []
        self.size = 0
        try:
            with open(path + ".idx") as fh:
                for line in fh:
                    o, _, t = line.partition(" ")
                    self.offsets.append(int(o))
                    self.times.append(float(t))
            self.size = os.path.getsize(path)
        except (OSError, ValueError):
            pass

    def observe(self, now: float) -> bool:
        """Stat the file; record where new bytes start. True if it grew."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return False
        if size <= self.size:
            return False
        self.offsets.append(self.size)
        self.times.append(now)
        try:
            with open(self.path + ".idx", "a") as fh:
                fh.write(f"{self.size} {now:.6f}\n")
        except OSError:
            pass
        self.size = size
        return True

    def time_at(self, offset: int, default: float) -> float:
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self.times[i] if i >= 0 else default


def read_lines(path: str, tail: int | None = None, limit_bytes: int | None = None,
               since: float | None = None, index: LogIndex | None = None,
               timestamps: bool = False, start_offset: int = 0
               ) -> tuple[bytes, int]:
    """The file's content from `start_offset` (or its last `tail` lines), filtered by
    `since` and prefixed with timestamps if asked. Returns (bytes, end offset)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            begin = start_offset
            if tail is not None and start_offset == 0:
                begin = _tail_offset(fh, end, tail)
            fh.seek(begin)
            data = fh.read(end - begin)
    except OSError:
        return b"", start_offset
    if not data:
        return b"", begin
    # only whole lines unless the writer has stopped (caller decides)
    if timestamps or since is not None:
        mtime = os.path.getmtime(path)
        out, off = [], begin
        for line in data.splitlines(keepends=True):
            ts = index.time_at(off, mtime) if index is not None else mtime
            off += len(line)
            if since is not None and ts < since:
                continue
            out.append((rfc3339_nano(ts) + " ").encode() + line if timestamps else line)
        data = b"".join(out)
    if limit_bytes is not None and limit_bytes >= 0:
        data = data[:limit_bytes]
    return data, end


def _tail_offset(fh, end: int, n: int) -> int:
    """Offset of the start of the last n lines (a final line without newline counts)."""
    if n <= 0:
        return end
    pos, count, block = end, 0, 8192
    fh.seek(max(end - 1, 0))
    last = fh.read(1) if end else b""
    skip_final_nl = last == b"\n"
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        chunk = fh.read(step)
        i = len(chunk)
        while True:
            i = chunk.rfind(b"\n", 0, i)
            if i < 0:
                break
            if skip_final_nl and pos + i == end - 1:
                continue
            count += 1
            if count == n:
                return pos + i + 1
    return 0
