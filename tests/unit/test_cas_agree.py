"""The compare-and-put fast path (kcore.store.cas, Applier.cas_put) against its
reference, the generic txn: the request bytes are those of the TxnRequest, and
random sequences applied both ways give the same results, errors, stored
revisions, key index and lease attachments."""
from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.store.apply import Alarms, Applier
from kcore.store.backend import Backend
from kcore.store.cas import encode_txn
from kcore.store.keyindex import MAIN_SHIFT
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC
from kcore.store.rpc.pb import rpc_pb2 as pb

KEYS = [b"/registry/pods/a", b"/registry/pods/b", b"/registry/pods/c"]
LEASES = [0, 0, 7, 8, 9]          # 7 and 8 are granted, 9 is not


def reference_request(key: bytes, value: bytes, lease: int, mod: int) -> pb.TxnRequest:
    req = pb.TxnRequest()
    cmp = req.compare.add()
    cmp.key, cmp.target, cmp.result, cmp.mod_revision = key, pb.Compare.MOD, \
        pb.Compare.EQUAL, mod
    put = req.success.add().request_put
    put.key, put.value = key, value
    if lease:
        put.lease = lease
    req.failure.add().request_range.key = key
    return req


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=1, max_size=300), value=st.binary(max_size=3000),
       lease=st.integers(-(1 << 63), (1 << 63) - 1),
       mod=st.integers(-(1 << 63), (1 << 63) - 1))
def test_encoding_is_the_txn_requests(key, value, lease, mod):
    assert encode_txn(key, value, lease, mod) == \
        reference_request(key, value, lease, mod).SerializeToString()


class Store:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kcore-cas-")
        self.backend = Backend(self.dir)
        self.mvcc = MVCC(self.backend)
        self.lessor = Lessor(self.backend)
        self.applier = Applier(self.mvcc, self.lessor, Alarms(self.backend))
        with self.backend.begin_write() as txn:
            for lid in (7, 8):
                self.lessor.grant(txn, lid, 60)

    def close(self) -> None:
        self.backend.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def state(self):
        with self.backend.begin_read() as txn:
            stored = list(txn.cursor(db=self.backend.key))
        index = {k: (tuple(r.revs), r.create, r.version, r.lease)
                 for k, r in self.mvcc.index.records.items()}
        leases = {lid: sorted(lease.keys) for lid, lease in self.lessor.leases.items()}
        return self.mvcc.rev, stored, index, leases

    def mod_of(self, key: bytes) -> int:
        rec = self.mvcc.current(key)
        return 0 if rec is None else rec.revs[-1] >> MAIN_SHIFT


op = st.tuples(st.sampled_from(KEYS), st.binary(max_size=40), st.sampled_from(LEASES),
               st.sampled_from(["current", "zero", "stale", "future"]),
               st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=40))
def test_fast_path_agrees_with_the_generic_txn(ops):
    fast, ref = Store(), Store()
    try:
        for key, value, lease, which, delete_first in ops:
            if delete_first and which == "zero":
                for s in (fast, ref):   # the key absent again: a create after a delete
                    with s.backend.begin_write() as txn:
                        s.applier.apply_op(txn, "delete_range",
                                           pb.DeleteRangeRequest(key=key))
            cur = ref.mod_of(key)
            assert cur == fast.mod_of(key)
            mod = {"current": cur, "zero": 0, "stale": max(cur - 1, 1),
                   "future": cur + 5}[which]
            with fast.backend.begin_write() as txn:
                a = fast.applier.apply_op(txn, "cas", (key, value, lease, mod))
            req = pb.TxnRequest.FromString(encode_txn(key, value, lease, mod))
            with ref.backend.begin_write() as txn:
                b = ref.applier.apply_op(txn, "txn", req)
            assert type(a.error) is type(b.error)
            assert a.rev == b.rev
            if b.error is None:
                r = b.response
                assert a.response.succeeded == r.succeeded
                assert a.response.revision == b.rev
                if not r.succeeded:
                    kvs = r.responses[0].response_range.kvs
                    assert a.response.kv == (kvs[0] if kvs else None)
                else:
                    assert a.response.kv is None
            assert [(c.type, c.kv, c.prev_rev, c.prev_lease) for c in a.changes] == \
                [(c.type, c.kv, c.prev_rev, c.prev_lease) for c in b.changes]
            assert fast.state() == ref.state()
    finally:
        fast.close()
        ref.close()
