"""Snapshot files: atomic save, newest-first load that skips broken files, purge."""
from __future__ import annotations

import logging
import os

import pytest

from kcore.store import snapfile


@pytest.fixture
def snapdir(tmp_path):
    return str(tmp_path / "member" / "snap")


def test_round_trip(snapdir):
    assert snapfile.load_newest(snapdir) is None
    path = snapfile.save(snapdir, 3, 1200, b"members: a,b,c")
    assert os.path.basename(path) == "0000000000000003-00000000000004b0.snap"
    assert snapfile.load_newest(snapdir) == (3, 1200, b"members: a,b,c")
    assert os.listdir(snapdir) == [os.path.basename(path)]  # no temp file left


def test_newest_wins(snapdir):
    snapfile.save(snapdir, 2, 900, b"old")
    snapfile.save(snapdir, 3, 100, b"newer term")
    snapfile.save(snapdir, 3, 50, b"older index")
    snapfile.save(snapdir, 1, 5000, b"oldest term")
    assert snapfile.load_newest(snapdir) == (3, 100, b"newer term")


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "renamed"])
def test_corrupt_newest_is_skipped_and_renamed(snapdir, damage, caplog):
    snapfile.save(snapdir, 1, 10, b"good")
    bad = snapfile.save(snapdir, 1, 20, b"payload that will be damaged")
    with open(bad, "rb") as f:
        raw = f.read()
    if damage == "flip":
        raw = raw[:30] + bytes([raw[30] ^ 0x10]) + raw[31:]
    elif damage == "truncate":
        raw = raw[:-3]
    elif damage == "empty":
        raw = b""
    if damage == "renamed":
        os.rename(bad, os.path.join(snapdir, snapfile.snap_name(1, 30)))
        bad = os.path.join(snapdir, snapfile.snap_name(1, 30))
    else:
        with open(bad, "wb") as f:
            f.write(raw)
    with caplog.at_level(logging.WARNING, logger="kcore.store.snapfile"):
        assert snapfile.load_newest(snapdir) == (1, 10, b"good")
    assert bad in caplog.text
    assert os.path.exists(bad + ".broken") and not os.path.exists(bad)
    assert snapfile.load_newest(snapdir) == (1, 10, b"good")


def test_all_broken_gives_none(snapdir):
    path = snapfile.save(snapdir, 1, 1, b"x")
    with open(path, "r+b") as f:
        f.write(b"garbage!")
    assert snapfile.load_newest(snapdir) is None


def test_purge_keeps_newest(snapdir):
    for i in range(1, 9):
        snapfile.save(snapdir, 1, i * 10, b"%d" % i)
    open(os.path.join(snapdir, snapfile.snap_name(1, 99) + ".tmp"), "wb").close()
    deleted = snapfile.purge(snapdir, keep=5)
    assert len(deleted) == 4
    assert snapfile.names(snapdir) == [snapfile.snap_name(1, i * 10) for i in range(8, 3, -1)]
    assert not any(n.endswith(".tmp") for n in os.listdir(snapdir))
    assert snapfile.purge(snapdir, keep=5) == []
    assert snapfile.purge(str(os.path.join(snapdir, "missing"))) == []


def test_empty_payload(snapdir):
    snapfile.save(snapdir, 0, 0, b"")
    assert snapfile.load_newest(snapdir) == (0, 0, b"")
