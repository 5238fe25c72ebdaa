"""The peer transport's receiving protocol: frames cut out of arbitrary reads."""
from __future__ import annotations

import msgpack

from kcore.store.raft.messages import Entry, Message, MessageType, encode_message
from kcore.store.raft.transport import MSGS, SNAP, _frame, _MsgsProtocol


class _Handler:
    def __init__(self, removed: bool = False) -> None:
        self.got: list[list[Message]] = []
        self.removed = removed

    def on_messages(self, msgs) -> None:
        self.got.append(list(msgs))

    def is_removed(self, member: int) -> bool:
        return self.removed


class _Transport:
    closed = False

    def close(self) -> None:
        self.closed = True


class _Done:
    def done(self) -> bool:
        return False


def _msgs(n: int, base: int = 0) -> list[Message]:
    return [Message(MessageType.APP, 2, 1, 3, 3, base + i, (Entry(3, base + i + 1, data=b"v"),), 0)
            for i in range(n)]


def _wire(msgs: list[Message]) -> bytes:
    return _frame(MSGS, msgpack.packb([encode_message(m) for m in msgs]))


def _proto(handler):
    return _MsgsProtocol(handler, 1, _Transport(), _Done())


def test_frames_split_anywhere_arrive_whole_and_in_order():
    a, b, c = _msgs(2), _msgs(1, 10), _msgs(3, 20)
    data = _wire(a) + _wire(b) + _wire(c)
    for cut in range(1, len(data)):
        h = _Handler()
        p = _proto(h)
        p.data_received(data[:cut])
        p.data_received(data[cut:])
        assert [m for batch in h.got for m in batch] == a + b + c
        assert not p.buf


def test_several_frames_in_one_read_are_one_delivery():
    h = _Handler()
    p = _proto(h)
    p.data_received(_wire(_msgs(1)) + _wire(_msgs(1, 5)))
    assert len(h.got) == 1 and len(h.got[0]) == 2


def test_unexpected_frame_kind_or_size_closes_the_connection():
    for data in (_frame(SNAP, b"x"), b"\xff\xff\xff\xff" + bytes([MSGS])):
        h = _Handler()
        p = _proto(h)
        p.data_received(data)
        assert p.transport.closed and not h.got


def test_messages_from_a_removed_member_are_refused():
    h = _Handler(removed=True)
    p = _proto(h)
    p.data_received(_wire(_msgs(1)))
    assert p.transport.closed and not h.got
