"""The linearizability checker against histories whose answer is known, and
against a brute-force reference on small random histories (hypothesis)."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.check.linearizability import Op, _step, check, check_key


def put(c, call, ret, v, key=b"k"):
    return Op(c, key, "put", call, ret, v)


def get(c, call, ret, r, key=b"k"):
    return Op(c, key, "get", call, ret, None, r)


def test_sequential_history_is_linearizable():
    h = [put(0, 0, 1, "a"), get(1, 2, 3, "a"), put(0, 4, 5, "b"), get(1, 6, 7, "b")]
    assert check(h).ok


def test_stale_read_after_write_completed_is_not():
    h = [put(0, 0, 1, "a"), put(0, 2, 3, "b"), get(1, 4, 5, "a")]
    r = check(h)
    assert not r.ok and r.failing_key == b"k"


def test_concurrent_read_may_see_either():
    h = [put(0, 0, 1, "a"), put(0, 2, 6, "b"), get(1, 3, 4, "a"), get(2, 3, 5, "b")]
    assert check(h).ok


def test_read_cannot_go_back_in_time():
    # once a reader saw "b", a later read (starting after) cannot see "a"
    h = [put(0, 0, 1, "a"), put(0, 2, 10, "b"), get(1, 3, 4, "b"), get(2, 5, 6, "a")]
    assert not check(h).ok


def test_unknown_write_may_or_may_not_happen():
    h1 = [put(0, 0, None, "a"), get(1, 5, 6, "a")]
    h2 = [put(0, 0, None, "a"), get(1, 5, 6, None)]
    assert check(h1).ok and check(h2).ok
    # but not before it was called
    h3 = [get(1, 0, 1, "a"), put(0, 2, None, "a")]
    assert not check(h3).ok


def test_lost_acknowledged_write_is_caught():
    h = [put(0, 0, 1, "a"), get(1, 2, 3, None)]
    assert not check(h).ok


def test_cas():
    h = [put(0, 0, 1, "a"),
         Op(1, b"k", "cas", 2, 3, ("a", "b"), True),
         Op(2, b"k", "cas", 2.5, 3.5, ("a", "c"), True)]   # both succeeding is impossible
    assert not check(h).ok
    h[2] = Op(2, b"k", "cas", 2.5, 3.5, ("a", "c"), False)
    assert check(h).ok


def test_keys_are_checked_independently():
    h = [put(0, 0, 1, "a", b"x"), get(1, 2, 3, "a", b"x"), put(0, 0, 1, "z", b"y"),
         get(1, 2, 3, None, b"y")]
    r = check(h)
    assert not r.ok and r.failing_key == b"y"


def brute_force(ops):
    """Try every order that respects real time."""
    n = len(ops)
    for perm in itertools.permutations(range(n)):
        pos = {op: i for i, op in enumerate(perm)}
        bad = False
        for a in range(n):
            for b in range(n):
                oa, ob = ops[a], ops[b]
                if oa.ret is not None and oa.ret < ob.call and pos[a] > pos[b]:
                    bad = True
                    break
            if bad:
                break
        if bad:
            continue
        # unknown ops may be left out: try subsets by allowing skipping
        if _explains(ops, perm, 0, None):
            return True
    return False


def _explains(ops, perm, i, state):
    if i == len(perm):
        return True
    op = ops[perm[i]]
    ok, nxt = _step(state, op)
    if ok and _explains(ops, perm, i + 1, nxt):
        return True
    if op.ret is None:  # it may never have happened
        return _explains(ops, perm, i + 1, state)
    return False


times = st.integers(0, 10)
values = st.sampled_from(["a", "b", None])


@st.composite
def histories(draw):
    n = draw(st.integers(1, 5))
    ops = []
    for c in range(n):
        t0 = draw(times)
        dt = draw(st.integers(0, 4))
        ret = None if draw(st.integers(0, 6)) == 0 else t0 + dt
        kind = draw(st.sampled_from(["put", "get", "cas"]))
        if kind == "put":
            ops.append(Op(c, b"k", "put", t0, ret, draw(st.sampled_from(["a", "b"]))))
        elif kind == "get":
            ops.append(Op(c, b"k", "get", t0, ret, None, draw(values)))
        else:
            ops.append(Op(c, b"k", "cas", t0, ret, (draw(values), draw(st.sampled_from(["a", "b"]))),
                          draw(st.booleans())))
    return ops


@settings(max_examples=400, deadline=None)
@given(histories())
def test_agrees_with_brute_force(ops):
    ok, _ = check_key(ops)
    assert ok == brute_force(ops)
