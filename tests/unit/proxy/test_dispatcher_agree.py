"""The native dispatcher and the pure-Python reference agree: the same dest for
every packet, the same counters, overload flags, connection states and
expiry, over random services (all nine schedulers, flags, persistence),
random dest add/update/delete sequences (weights, thresholds, quiescing,
deleting and re-adding), random packet sequences through both the
per-packet and the batch API, and time jumps across every timeout.

KCORE_FULL=1 runs many more examples."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.proxy.dispatcher import (
    F_ACK,
    F_FIN,
    F_REPLY,
    F_RST,
    F_SYN,
    NATIVE_AVAILABLE,
    SCHEDULERS,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    TCP,
    UDP,
    Dispatcher,
    DispatcherError,
    Flow,
    Service,
    make_flows,
)

pytestmark = pytest.mark.skipif(not NATIVE_AVAILABLE, reason="kcore._native.ipvs not built")

FULL = os.environ.get("KCORE_FULL") == "1"
SETTINGS = settings(max_examples=1500 if FULL else 120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VIPS = [0x0A60000A, 0x0A60000B]
DEST_ADDRS = [0x0AF40001 + i for i in range(6)]
CLIENTS = [0xC0A80001, 0xC0A80101, 0x0A000007]
SPORTS = [1000, 40000]
FLAG_SETS = [F_SYN, F_SYN, F_SYN, F_ACK, F_ACK, F_FIN | F_ACK, F_RST, 0, F_SYN | F_RST,
             F_SYN | F_ACK | F_REPLY, F_ACK | F_REPLY, F_FIN | F_ACK | F_REPLY, F_RST | F_REPLY]
DT = [0, 0, 1, 700, 10_000, 30_000, 60_000, 125_000, 300_000, 1_000_000]

def service_st(scheduler=None):
    if scheduler is None:
        scheduler = st.sampled_from(SCHEDULERS)
    return st.builds(
    dict,
    proto=st.sampled_from(["tcp", "tcp", "udp"]),
    scheduler=scheduler,
    flags=st.sampled_from([0, SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED1 | SVC_F_SCHED2]),
    persistence=st.sampled_from([0, 0, 0, 30, 600]),
    netmask=st.sampled_from(["255.255.255.255", "255.255.255.0"]),
    )


weight_st = st.sampled_from([0, 1, 1, 2, 3, 5, 100])
thresh_st = st.sampled_from([(0, 0), (0, 0), (1, 0), (2, 1), (3, 0), (4, 0), (4, 2), (8, 0)])

op_st = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 1), st.integers(0, 5), weight_st, thresh_st,
              st.sampled_from(["masq", "masq", "route"])),
    st.tuples(st.just("upd"), st.integers(0, 30), weight_st, thresh_st),
    st.tuples(st.just("del"), st.integers(0, 30)),
    st.tuples(st.just("pkt"), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1),
              st.sampled_from(FLAG_SETS), st.sampled_from(DT)),
    st.tuples(st.just("pkt"), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1),
              st.sampled_from(FLAG_SETS), st.sampled_from(DT)),
    st.tuples(st.just("batch"), st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 1),
                  st.sampled_from(FLAG_SETS), st.sampled_from([0, 0, 1, 1000, 70_000])),
        min_size=1, max_size=24), st.booleans()),
    st.tuples(st.just("expire"), st.sampled_from(DT)),
    st.tuples(st.just("edit"), st.integers(0, 1), st.sampled_from(SCHEDULERS),
              st.sampled_from([0, SVC_F_SCHED1, SVC_F_SCHED2])),
    st.tuples(st.just("resvc"), st.integers(0, 1)),
)


class Pair:
    """The same calls on both engines; results (or error types) must match."""

    def __init__(self, **kw):
        self.ref = Dispatcher(native=False, seed=1, **kw)
        self.nat = Dispatcher(native=True, seed=99, **kw)

    def call(self, name, *args, **kw):
        out = []
        for d in (self.ref, self.nat):
            try:
                out.append(("ok", getattr(d, name)(*args, **kw)))
            except DispatcherError as e:
                out.append(("err", type(e).__name__))
        assert out[0] == out[1], (name, args, kw, out)
        return out[0][1] if out[0][0] == "ok" else None


def compare_state(p: Pair, dest_ids, svcs, flows_seen):
    assert p.ref.conn_count() == p.nat.conn_count()
    assert p.ref.clock_ms == p.nat.clock_ms
    for did in dest_ids:
        assert p.ref.dest(did) == p.nat.dest(did), did
    for sid in svcs:
        if sid is not None:
            assert p.ref.service_dests(sid) == p.nat.service_dests(sid)
    for f in flows_seen:
        assert p.ref.conn(f) == p.nat.conn(f), f


def run(services, ops, **kw):
    p = Pair(**kw)
    specs = [None, None]
    svcs = [None, None]
    now = 0
    dest_ids: list[int] = []
    flows_seen: set[Flow] = set()

    def add_svc(i):
        spec = services[i]
        port = 53 if spec["proto"] == "udp" else 80
        specs[i] = (spec, port)
        svcs[i] = p.call("add_service", Service(VIPS[i], port, **spec))

    def flow(si, ci, pi, fl):
        spec, port = specs[si]
        proto = UDP if spec["proto"] == "udp" else TCP
        return Flow(proto, CLIENTS[ci], SPORTS[pi], VIPS[si], port, fl)

    for i in range(2):
        add_svc(i)
    for op in ops:
        kind = op[0]
        if kind == "add":
            _, si, ai, w, (u, lo), fwd = op
            if svcs[si] is not None:
                did = p.call("add_dest", svcs[si], DEST_ADDRS[ai], 8080, w, u_threshold=u,
                             l_threshold=lo, forward=fwd)
                if did is not None and did not in dest_ids:
                    dest_ids.append(did)
        elif kind == "upd" and dest_ids:
            _, k, w, (u, lo) = op
            p.call("update_dest", dest_ids[k % len(dest_ids)], weight=w, u_threshold=u,
                   l_threshold=lo)
        elif kind == "del" and dest_ids:
            p.call("del_dest", dest_ids[op[1] % len(dest_ids)])
        elif kind == "pkt":
            _, si, ci, pi, fl, dt = op
            now += dt
            f = flow(si, ci, pi, fl)
            flows_seen.add(f._replace(flags=0))
            p.call("lookup_or_schedule", f, now)
        elif kind == "batch":
            _, items, per_flow_time = op
            fl_arr = make_flows(len(items))
            times = np.empty(len(items), dtype=np.int64)
            t = now
            for j, (si, ci, pi, fl, dt) in enumerate(items):
                f = flow(si, ci, pi, fl)
                flows_seen.add(f._replace(flags=0))
                fl_arr[j] = (f.saddr, f.daddr, f.sport, f.dport, f.proto, 0, f.flags)
                t += dt
                times[j] = t
            when = times if per_flow_time else now
            a = p.ref.process(fl_arr, when)
            b = p.nat.process(fl_arr, when)
            assert a.tolist() == b.tolist(), items
            now = int(times[-1]) if per_flow_time else now
        elif kind == "expire":
            now += op[1]
            p.call("expire", now)
        elif kind == "edit":
            _, si, sched, fl = op
            if svcs[si] is not None:
                p.call("update_service", svcs[si], scheduler=sched, flags=fl)
        elif kind == "resvc":
            si = op[1]
            if svcs[si] is not None:
                p.call("del_service", svcs[si])
                svcs[si] = None
            else:
                add_svc(si)
        compare_state(p, dest_ids, svcs, flows_seen)
    p.call("expire", now + 10**7)
    compare_state(p, dest_ids, svcs, flows_seen)
    assert p.nat.conn_count() == (0, 0)


@pytest.mark.parametrize("sched", SCHEDULERS)
@settings(SETTINGS, max_examples=400 if FULL else 40)
@given(data=st.data())
def test_engines_agree(sched, data):
    services = [data.draw(service_st(st.just(sched))), data.draw(service_st())]
    run(services, data.draw(st.lists(op_st, max_size=60)))


@SETTINGS
@given(services=st.lists(service_st(), min_size=2, max_size=2),
       ops=st.lists(op_st, max_size=40),
       reuse=st.sampled_from([0, 1, 2, 3]), nodest=st.booleans(), quiescent=st.booleans(),
       sloppy=st.booleans())
def test_engines_agree_with_sysctls(services, ops, reuse, nodest, quiescent, sloppy):
    run(services, ops, conn_reuse_mode=reuse, expire_nodest_conn=nodest,
        expire_quiescent_template=quiescent, sloppy_tcp=sloppy)


@pytest.mark.parametrize("sched", SCHEDULERS)
@settings(SETTINGS, max_examples=300 if FULL else 25)
@given(flags=st.sampled_from([0, 8, 16, 24]),
       weights=st.lists(st.sampled_from([0, 0, 1, 1, 2, 3, 7, 64, 1000]), min_size=1,
                        max_size=12),
       clients=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 65535)),
                        min_size=1, max_size=40),
       quiesce=st.lists(st.integers(0, 11), max_size=3))
def test_schedulers_agree_on_many_dests_and_clients(sched, flags, weights, clients, quiesce):
    """Wide dest lists and arbitrary source addresses/ports: hash and Maglev tables
    (quiescing keeps last_weight in the Maglev fill)."""
    p = Pair()
    sid = p.call("add_service", Service(VIPS[0], 80, "tcp", sched, flags=flags))
    ids = [p.call("add_dest", sid, DEST_ADDRS[0] + 7 * i, 8000 + i, w)
           for i, w in enumerate(weights)]
    for q in quiesce:
        p.call("update_dest", ids[q % len(ids)], weight=0)
    for saddr, sport in clients:
        p.call("lookup_or_schedule", Flow(TCP, saddr, sport, VIPS[0], 80, F_SYN), 0)


def test_table_growth_and_rehash_keep_agreement():
    """Thousands of connections through a table that starts tiny (rehashes, tombstones)."""
    p = Pair(capacity=16)
    sid = p.call("add_service", Service(VIPS[0], 80, "tcp", "wlc", persistence=30))
    for i in range(4):
        p.call("add_dest", sid, DEST_ADDRS[i], 8080, i + 1)
    rng = np.random.default_rng(7)
    n = 6000
    fl = make_flows(n)
    fl["saddr"] = rng.integers(0xC0A80000, 0xC0A80000 + 300, n)
    fl["daddr"] = VIPS[0]
    fl["sport"] = rng.integers(1024, 1100, n)
    fl["dport"] = 80
    fl["proto"] = TCP
    fl["flags"] = rng.choice([F_SYN, F_ACK, F_FIN | F_ACK, F_RST | F_REPLY], n)
    times = np.cumsum(rng.integers(0, 40, n)).astype(np.int64)
    a = p.ref.process(fl, times)
    b = p.nat.process(fl, times)
    assert a.tolist() == b.tolist()
    assert p.ref.conn_count() == p.nat.conn_count()
    for did in range(4):
        assert p.ref.dest(did) == p.nat.dest(did)


@pytest.mark.parametrize("sched", SCHEDULERS)
@settings(SETTINGS, max_examples=100 if FULL else 8)
@given(seed=st.integers(0, 2**32 - 1), persistence=st.sampled_from([0, 0, 20]),
       flags=st.sampled_from([0, 8, 16, 24]), reuse=st.sampled_from([0, 1, 3]),
       nodest=st.booleans(), quiescent=st.booleans())
def test_long_streams_agree(sched, seed, persistence, flags, reuse, nodest, quiescent):
    """Long seeded packet streams (SYN-heavy, few clients so connections are reused)
    in batches, with weights, thresholds, quiescing and dest churn in between."""
    rng = np.random.default_rng(seed)
    p = Pair(conn_reuse_mode=reuse, expire_nodest_conn=nodest,
             expire_quiescent_template=quiescent)
    sid = p.call("add_service", Service(VIPS[0], 80, "tcp", sched, flags=flags,
                                        persistence=persistence))
    ids = []
    now = 0
    for rnd in range(12):
        action = rng.integers(0, 4)
        if action == 0 or len(ids) < 2:
            a = DEST_ADDRS[int(rng.integers(0, len(DEST_ADDRS)))]
            u = int(rng.choice([0, 0, 3, 4, 8]))
            lo = int(rng.choice([0, 0, 1])) if u else 0
            did = p.call("add_dest", sid, a, 8080, int(rng.choice([0, 1, 1, 2, 3])),
                         u_threshold=u, l_threshold=min(lo, u))
            if did is not None and did not in ids:
                ids.append(did)
        elif action == 1:
            p.call("update_dest", ids[int(rng.integers(0, len(ids)))],
                   weight=int(rng.choice([0, 1, 2, 5])), u_threshold=int(rng.choice([0, 4, 8])))
        elif action == 2:
            p.call("del_dest", ids[int(rng.integers(0, len(ids)))])
        n = 300
        fl = make_flows(n)
        fl["saddr"] = rng.integers(0xC0A80000, 0xC0A80000 + 24, n)
        fl["daddr"] = VIPS[0]
        fl["sport"] = rng.integers(1024, 1028, n)
        fl["dport"] = 80
        fl["proto"] = TCP
        fl["flags"] = rng.choice([F_SYN, F_SYN, F_ACK, F_FIN | F_ACK, F_FIN | F_ACK | F_REPLY,
                                  F_RST | F_REPLY, F_RST, 0, F_ACK | F_REPLY], n)
        times = now + np.cumsum(rng.choice([0, 0, 5, 400, 3000], n)).astype(np.int64)
        a = p.ref.process(fl, times)
        b = p.nat.process(fl, times)
        assert a.tolist() == b.tolist(), rnd
        now = int(times[-1])
        assert p.ref.conn_count() == p.nat.conn_count()
        for did in ids:
            assert p.ref.dest(did) == p.nat.dest(did), did
        for i in range(0, n, 7):
            f = Flow(TCP, int(fl["saddr"][i]), int(fl["sport"][i]), VIPS[0], 80)
            assert p.ref.conn(f) == p.nat.conn(f)


@pytest.mark.parametrize("sched", SCHEDULERS)
@settings(SETTINGS, max_examples=100 if FULL else 6)
@given(seed=st.integers(0, 2**32 - 1), flags=st.sampled_from([0, 8, 24]))
def test_overload_churn_agrees(sched, seed, flags):
    """Every dest has a small upper threshold: OVERLOAD flips on and off all the
    time (wrr's stop-at-last rule, the 3/4 and l_threshold clearing)."""
    rng = np.random.default_rng(seed)
    p = Pair()
    sid = p.call("add_service", Service(VIPS[0], 80, "tcp", sched, flags=flags))
    ids = []
    for i in range(int(rng.integers(1, 5))):
        u = int(rng.integers(1, 5))
        ids.append(p.call("add_dest", sid, DEST_ADDRS[i], 8080, int(rng.integers(0, 4)),
                          u_threshold=u, l_threshold=int(rng.integers(0, u + 1))))
    now = 0
    for rnd in range(10):
        n = 200
        fl = make_flows(n)
        fl["saddr"] = rng.integers(0xC0A80000, 0xC0A80000 + 8, n)
        fl["daddr"] = VIPS[0]
        fl["sport"] = rng.integers(1024, 1032, n)
        fl["dport"] = 80
        fl["proto"] = TCP
        fl["flags"] = rng.choice([F_SYN, F_SYN, F_SYN, F_RST | F_REPLY, F_ACK], n)
        times = now + np.cumsum(rng.choice([0, 10, 2500], n)).astype(np.int64)
        a = p.ref.process(fl, times)
        b = p.nat.process(fl, times)
        assert a.tolist() == b.tolist(), rnd
        now = int(times[-1])
        for did in ids:
            assert p.ref.dest(did) == p.nat.dest(did)
        if rnd % 3 == 2:
            p.call("update_dest", ids[int(rng.integers(0, len(ids)))],
                   weight=int(rng.integers(0, 4)))
