"""MVCC against a simple in-memory model: random put/delete/txn/compact
sequences; reads of any key range at any revision must agree, and so must
the same reads after a restart from disk."""
from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.store import errors
from kcore.store.apply import Alarms, Applier, range_response
from kcore.store.backend import Backend
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb.internal_pb2 import InternalRequest

KEYS = [b"a", b"ab", b"b", b"ba", b"c", b"d"]


class Model:
    """Each revision's full state: key -> (value, create, mod, version)."""

    def __init__(self) -> None:
        self.states: list[dict[bytes, tuple[bytes, int, int, int]]] = [{}]
        self.compacted = 0

    @property
    def rev(self) -> int:
        return len(self.states) - 1

    def cur(self) -> dict:
        return self.states[-1]

    def write(self, ops) -> None:
        """ops: list of ('put', k, v) / ('del', k, end); one revision if anything changed."""
        st = dict(self.cur())
        rev = self.rev + 1
        changed = False
        for op in ops:
            if op[0] == "put":
                _, k, v = op
                old = st.get(k)
                st[k] = (v, old[1] if old else rev, rev, old[3] + 1 if old else 1)
                changed = True
            else:
                _, k, end = op
                for kk in list(st):
                    if in_range(kk, k, end):
                        del st[kk]
                        changed = True
        if changed:
            self.states.append(st)

    def read(self, rev: int, k: bytes, end: bytes):
        if rev == 0:
            rev = self.rev
        if rev > self.rev:
            raise errors.FutureRev()
        if rev < self.compacted:
            raise errors.Compacted()
        st = self.states[rev]
        return sorted((kk, *v) for kk, v in st.items() if in_range(kk, k, end))


def in_range(kk: bytes, k: bytes, end: bytes) -> bool:
    if not end:
        return kk == k
    if end == b"\x00":
        return kk >= k
    return k <= kk < end


keys = st.sampled_from(KEYS)
ends = st.sampled_from([b"", b"\x00", b"b", b"c", b"z"])
vals = st.binary(min_size=0, max_size=8)
put_op = st.tuples(st.just("put"), keys, vals)
del_op = st.tuples(st.just("del"), keys, ends)
action = st.one_of(
    put_op.map(lambda o: ("write", [o])),
    del_op.map(lambda o: ("write", [o])),
    st.tuples(keys, st.integers(0, 3), st.lists(put_op, max_size=3, unique_by=lambda o: o[1]),
              st.lists(put_op, max_size=3, unique_by=lambda o: o[1])).map(
        lambda t: ("txn",) + t),
    st.integers(1, 40).map(lambda r: ("compact", r)),
)


def to_request(op) -> pb.RequestOp:
    if op[0] == "put":
        return pb.RequestOp(request_put=pb.PutRequest(key=op[1], value=op[2]))
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=op[1], range_end=op[2]))


class Store:
    def __init__(self, path: str):
        self.path = path
        self.open()

    def open(self) -> None:
        self.backend = Backend(self.path)
        self.mvcc = MVCC(self.backend)
        self.lessor = Lessor(self.backend)
        self.applier = Applier(self.mvcc, self.lessor, Alarms(self.backend))

    def apply(self, ireq: InternalRequest):
        with self.backend.begin_write() as txn:
            res = self.applier.apply(txn, ireq)
        return res

    def read(self, rev: int, k: bytes, end: bytes):
        txn = self.backend.begin_read()
        try:
            resp = range_response(lambda **kw: self.mvcc.range(txn, **kw),
                                  pb.RangeRequest(key=k, range_end=end, revision=rev))
        finally:
            txn.abort()
        return sorted((kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)
                      for kv in resp.kvs), resp.count

    def reopen(self) -> None:
        self.backend.close()
        self.open()

    def close(self) -> None:
        self.backend.close()


def check_reads(store: Store, model: Model) -> None:
    for rev in range(0, model.rev + 2):
        for k, end in [(b"a", b"\x00"), (b"a", b"b"), (b"ab", b""), (b"b", b"d")]:
            try:
                want = model.read(rev, k, end)
            except errors.StoreError as e:
                try:
                    store.read(rev, k, end)
                except errors.StoreError as got:
                    assert type(got) is type(e), (rev, k, end)
                    continue
                raise AssertionError(f"expected {type(e).__name__} at rev {rev}")
            got, count = store.read(rev, k, end)
            assert got == want, (rev, k, end)
            assert count == len(want)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=25))
def test_mvcc_matches_model(actions):
    d = tempfile.mkdtemp()
    store = Store(d)
    model = Model()
    try:
        for a in actions:
            if a[0] == "write":
                op = a[1][0]
                req = (InternalRequest(put=to_request(op).request_put) if op[0] == "put"
                       else InternalRequest(delete_range=to_request(op).request_delete_range))
                res = store.apply(req)
                assert res.error is None
                model.write(a[1])
            elif a[0] == "txn":
                _, key, version, then_ops, else_ops = a
                cur = model.cur().get(key)
                ok = (cur[3] if cur else 0) == version
                req = pb.TxnRequest(
                    compare=[pb.Compare(key=key, target=pb.Compare.VERSION,
                                        result=pb.Compare.EQUAL, version=version)],
                    success=[to_request(o) for o in then_ops],
                    failure=[to_request(o) for o in else_ops])
                res = store.apply(InternalRequest(txn=req))
                assert res.error is None
                assert res.response.succeeded == ok
                model.write(then_ops if ok else else_ops)
            else:
                rev = a[1]
                res = store.apply(InternalRequest(compaction=pb.CompactionRequest(revision=rev)))
                if rev <= model.compacted:
                    assert isinstance(res.error, errors.Compacted)
                elif rev > model.rev:
                    assert isinstance(res.error, errors.FutureRev)
                else:
                    assert res.error is None
                    model.compacted = rev
            assert store.mvcc.rev == model.rev
        check_reads(store, model)
        store.reopen()
        assert store.mvcc.rev == model.rev
        assert store.mvcc.compact_rev == model.compacted
        check_reads(store, model)
    finally:
        store.close()
        shutil.rmtree(d, ignore_errors=True)


TARGETS = [pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD, pb.Compare.LEASE]
RESULTS = [pb.Compare.EQUAL, pb.Compare.NOT_EQUAL, pb.Compare.GREATER, pb.Compare.LESS]


def _compare(key: bytes, target, result, n: int) -> pb.Compare:
    field = {pb.Compare.VERSION: "version", pb.Compare.CREATE: "create_revision",
             pb.Compare.MOD: "mod_revision", pb.Compare.LEASE: "lease"}[target]
    return pb.Compare(key=key, target=target, result=result, **{field: n})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(put_op, put_op, put_op, del_op,   # mostly puts: keys with history
                          st.integers(1, 30).map(lambda r: ("compact", r))),
                min_size=1, max_size=25))
def test_compare_from_the_key_index_agrees_with_reading_the_value(writes):
    """A single-key compare on a revision, version or lease is answered from the key
    index; it must agree with evaluating the stored KeyValue (the reference) for every
    key, target, result and operand up to past the head revision, also after a restart
    rebuilt the index."""
    d = tempfile.mkdtemp()
    store = Store(d)
    try:
        for w in writes:
            if w[0] == "compact":
                store.apply(InternalRequest(compaction=pb.CompactionRequest(revision=w[1])))
            elif w[0] == "put":
                store.apply(InternalRequest(put=to_request(w).request_put))
            else:
                store.apply(InternalRequest(delete_range=to_request(w).request_delete_range))
        for _ in range(2):
            with store.backend.begin_write() as txn:
                wt = store.mvcc.begin(txn)
                for key in KEYS:
                    for target in TARGETS:
                        for result in RESULTS:
                            for n in range(store.mvcc.rev + 2):
                                c = _compare(key, target, result, n)
                                assert store.applier._compare(wt, c) == \
                                    store.applier._compare_read(wt, c), (key, target, result, n)
                txn.abort()
            store.reopen()
    finally:
        store.close()
        shutil.rmtree(d, ignore_errors=True)
