"""A linearizability checker for key-value histories (Wing & Gong's search with
Porcupine's memoization, partitioned per key).

A history is a list of operations, each with the wall-clock interval in which
a client saw it run: `call` when sent, `ret` when answered. An operation whose
outcome the client never learned (timeout, connection lost) has `ret = None`:
it may have taken effect at any point after its call, or never.

The model is a register per key: `put(v)` sets it, `get()` returns it (None
when absent), `cas(old, new)` sets it only if it holds `old` and returns
whether it did, `delete()` removes it. Keys are independent, so each key's
operations are checked alone (linearizability is compositional).

`check(history)` returns a Result; for a history that is not linearizable it
names the key and the operations of the smallest failing prefix it found.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ABSENT = None


@dataclass(frozen=True)
class Op:
    client: int
    key: bytes
    kind: str                 # "put" | "get" | "cas" | "delete"
    call: float
    ret: float | None         # None: outcome unknown
    value: Any = None         # put: the value; cas: (old, new)
    result: Any = None        # get: the value read (None = absent); cas: bool


@dataclass
class Result:
    ok: bool
    checked_keys: int = 0
    operations: int = 0
    failing_key: bytes | None = None
    detail: str = ""
    unknown: int = 0
    timed_out_keys: list[bytes] = field(default_factory=list)


def _step(state: Any, op: Op) -> tuple[bool, Any]:
    """(is the op's observed outcome possible from state, next state)."""
    k = op.kind
    if k == "put":
        return True, op.value
    if k == "delete":
        return True, ABSENT
    if k == "get":
        if op.ret is None:
            return True, state  # an unanswered read constrains nothing
        return op.result == state, state
    if k == "cas":
        old, new = op.value
        hit = state == old
        if op.ret is None:
            return True, new if hit else state
        if op.result != hit:
            return False, state
        return True, new if hit else state
    raise ValueError(f"unknown operation {k!r}")


class _Entry:
    """A node of the doubly linked list of call and return events."""

    __slots__ = ("op_id", "is_call", "time", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool, time: float):
        self.op_id, self.is_call, self.time = op_id, is_call, time
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build(ops: list[Op]) -> _Entry:
    inf = float("inf")
    events = []
    for i, op in enumerate(ops):
        c = _Entry(i, True, op.call)
        r = _Entry(i, False, inf if op.ret is None else op.ret)
        c.match = r
        events.append(c)
        events.append(r)
    # calls before returns at equal times: touching intervals count as concurrent
    events.sort(key=lambda e: (e.time, 0 if e.is_call else 1))
    head = _Entry(-1, False, -inf)
    prev = head
    for e in events:
        prev.next = e
        e.prev = prev
        prev = e
    return head


def _lift(e: _Entry) -> None:
    e.prev.next = e.next
    if e.next is not None:
        e.next.prev = e.prev
    m = e.match
    m.prev.next = m.next
    if m.next is not None:
        m.next.prev = m.prev


def _unlift(e: _Entry) -> None:
    m = e.match
    m.prev.next = m
    if m.next is not None:
        m.next.prev = m
    e.prev.next = e
    if e.next is not None:
        e.next.prev = e


def check_key(ops: list[Op], initial: Any = ABSENT, max_steps: int = 2_000_000
              ) -> tuple[bool | None, str]:
    """(True, "") if linearizable; (False, why) if not; (None, why) if the search
    exceeded max_steps."""
    if not ops:
        return True, ""
    head = _build(ops)
    n = len(ops)
    linearized = 0          # bitset of linearized op ids
    state = initial
    cache: set[tuple[int, Any]] = set()
    calls: list[tuple[_Entry, Any]] = []   # stack of (call entry, state before)
    entry = head.next
    steps = 0
    best = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return None, f"search gave up after {max_steps} steps"
        if entry is not None and entry.is_call:
            op = ops[entry.op_id]
            ok, nxt = _step(state, op)
            if ok:
                bits = linearized | (1 << entry.op_id)
                key = (bits, _hashable(nxt))
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state = nxt
                    linearized = bits
                    _lift(entry)
                    best = max(best, len(calls))
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # a return with its call not linearized (or the end): backtrack
            if not calls:
                done = bin(linearized).count("1")
                return False, (f"no order explains the history ({done}/{n} operations "
                               f"placed at best {best})")
            e, state = calls.pop()
            linearized &= ~(1 << e.op_id)
            _unlift(e)
            entry = e.next
    return True, ""


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict, set)):
        return repr(v)
    return v


def check(history: Iterable[Op], max_steps_per_key: int = 2_000_000) -> Result:
    by_key: dict[bytes, list[Op]] = {}
    n = unknown = 0
    for op in history:
        by_key.setdefault(op.key, []).append(op)
        n += 1
        unknown += op.ret is None
    res = Result(ok=True, checked_keys=len(by_key), operations=n, unknown=unknown)
    for key in sorted(by_key):
        ok, why = check_key(by_key[key], max_steps=max_steps_per_key)
        if ok is None:
            res.timed_out_keys.append(key)
            continue
        if not ok:
            res.ok = False
            res.failing_key = key
            res.detail = why + "; operations: " + "; ".join(
                _fmt(o) for o in sorted(by_key[key], key=lambda o: o.call)[:40])
            return res
    return res


def _fmt(o: Op) -> str:
    ret = "?" if o.ret is None else f"{o.ret:.6f}"
    return (f"c{o.client} {o.kind}({o.value!r})->{o.result!r} "
            f"[{o.call:.6f}, {ret}]")
