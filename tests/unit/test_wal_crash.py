"""kill -9 a process that is writing its WAL: every write it was told is durable is
there after a restart, and the restarted WAL takes new writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kcore.store.wal import WAL, Entry, HardState

WRITER = textwrap.dedent("""
    import os, sys, threading, queue
    from kcore.store import wal as walmod
    if os.environ["WAL_CODEC"] == "ref":
        from kcore.store import walcodec_ref
        walmod.codec = walcodec_ref
    from kcore.store.wal import WAL, Entry, HardState
    d = sys.argv[1]
    w = WAL.create(d, b"crash-test", segment_bytes=32768)
    # the server's shape: the loop saves batches, one worker thread syncs them
    acks = queue.Queue()
    def worker():
        while True:
            last = acks.get()
            w.sync()
            sys.stdout.write(f"{last}\\n")
            sys.stdout.flush()
    threading.Thread(target=worker, daemon=True).start()
    i = 0
    while True:
        n = 1 + i % 7
        w.save(HardState(1, 1, i), [Entry(j, 1, b"v%d" % j * 9) for j in range(i + 1, i + n + 1)])
        i += n
        acks.put(i)
        while acks.qsize() > 2:
            threading.Event().wait(0.0005)
""")


@pytest.mark.parametrize("codec", ["ref", "native"])
def test_kill_9_keeps_every_acknowledged_write(tmp_path, codec):
    if codec == "native":
        pytest.importorskip("kcore._native.walcodec")
    d = str(tmp_path / "member" / "wal")
    env = dict(os.environ, WAL_CODEC=codec)
    p = subprocess.Popen([sys.executable, "-c", WRITER, d], stdout=subprocess.PIPE, env=env,
                         text=True)
    acked = 0
    try:
        for line in p.stdout:
            acked = int(line)
            if acked >= 1500:
                break
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stdout.close()
    assert acked >= 1500
    w = WAL.open(d, segment_bytes=32768)
    meta, hs, got = w.read_all()
    assert meta == b"crash-test"
    assert [e.index for e in got] == list(range(1, len(got) + 1))
    assert len(got) >= acked
    assert all(e.data == b"v%d" % e.index * 9 for e in got)
    nxt = len(got) + 1
    w.save(HardState(2, 1, nxt), [Entry(nxt, 2, b"after restart")])
    w.sync()
    w.close()
    w = WAL.open(d, segment_bytes=32768)
    _, hs, again = w.read_all()
    w.close()
    assert again == got + [Entry(nxt, 2, b"after restart")] and hs == HardState(2, 1, nxt)
    assert len([n for n in os.listdir(d) if n.endswith(".wal")]) > 3
