"""The kernel's IPVS rules (docs/IPVS.md), checked on each engine: list order,
cursors, wrr's gcd/maxweight/cw, tie-breaking, overload thresholds, the hash
schedulers' tables, TCP states and timeouts, quiescing, persistence, expiry.

Sequences marked "observed" are what the Debian 6.1 kernel did in the test VM."""
from __future__ import annotations

import pytest

from kcore.proxy import ipvs_ref as ref
from kcore.proxy.dispatcher import (
    F_ACK,
    F_FIN,
    F_REPLY,
    F_RST,
    F_SYN,
    MH_FALLBACK,
    MH_PORT,
    SH_FALLBACK,
    SH_PORT,
    TCP,
    UDP,
    DestExists,
    Flow,
    InvalidArgument,
    NoSuchDest,
    Service,
    ServiceExists,
    ip4,
)

VIP = ip4("10.96.0.10")
CLIENT = ip4("10.0.0.7")


def two_dests(d, sched, wa=1, wb=1, **svc_kw):
    """A service with A added first, then B: the kernel lists B first."""
    svc = d.add_service(Service(VIP, 80, "tcp", sched, **svc_kw))
    a = d.add_dest(svc, "10.244.0.1", 8080, wa)
    b = d.add_dest(svc, "10.244.0.2", 8080, wb)
    return svc, {a: "A", b: "B"}


def short_connection(d, sport, now, client=CLIENT, port=80):
    """One complete short TCP exchange (ends in TIME_WAIT: inactive)."""
    f = lambda fl: Flow(TCP, client, sport, VIP, port, fl)
    dest = d.lookup_or_schedule(f(F_SYN), now)
    for fl in (F_SYN | F_ACK | F_REPLY, F_ACK, F_FIN | F_ACK, F_FIN | F_ACK | F_REPLY, F_ACK):
        assert d.lookup_or_schedule(f(fl), now) == dest
    return dest


def sequence(d, names, n, start_port=40000):
    return "".join(names.get(short_connection(d, start_port + i, i), "-") for i in range(n))


# ------------------------------------------------------------------ hashes

def test_hash_32_is_linux_generic():
    assert ref.hash_32(1, 8) == 0x61
    assert ref.hash_32(0x0A600000A, 32) == (0x0A600000A * 0x61C88647) & 0xFFFFFFFF
    assert ref.hash_32(0xFFFFFFFF, 8) == ((0xFFFFFFFF * 0x61C88647) & 0xFFFFFFFF) >> 24


def test_siphash_round_function_matches_the_published_vectors():
    """SipHash-2-4 vectors from the SipHash paper (key 00..0f); hsiphash on a
    64-bit kernel is the same round function with 1 and 3 rounds."""
    k = bytes(range(16))
    k0, k1 = int.from_bytes(k[:8], "little"), int.from_bytes(k[8:], "little")
    assert ref.siphash(b"", k0, k1) == 0x726FDB47DD0E0E31
    assert ref.siphash(bytes(range(15)), k0, k1) == 0xA129CA6149BE45E5
    v = 0x0A000007
    assert ref.hsiphash_u32(v, ref.MH_KEY1) == \
        ref.siphash(v.to_bytes(4, "little"), *ref.MH_KEY1, 1, 3) & 0xFFFFFFFF


# ------------------------------------------------------------------ observed in the VM

@pytest.mark.parametrize("sched,wa,wb,expect", [
    ("rr", 1, 1, "BABABA"),
    ("lc", 1, 1, "BABABA"),
    ("wlc", 1, 1, "BABABA"),
    ("wlc", 1, 3, "BABBBABB"),
    ("sed", 1, 1, "BBBBBB"),
    ("sed", 1, 3, "BBBBBB"),
    ("nq", 1, 3, "BBBBBB"),
])
def test_observed_sequences(make, sched, wa, wb, expect):
    d = make()
    _, names = two_dests(d, sched, wa, wb)
    assert sequence(d, names, len(expect)) == expect


def test_wrr_observed_b_a_b_b_b_a_b_b(make):
    """Empty service, then A w=1, then B w=3."""
    d = make()
    _, names = two_dests(d, "wrr", 1, 3)
    assert sequence(d, names, 8) == "BABBBABB"


# ------------------------------------------------------------------ rr / wrr cursors

def rr_service(d, n, sched="rr", weights=None):
    svc = d.add_service(Service(VIP, 80, "tcp", sched))
    names = {}
    for i in range(n):  # A first, so the list is ... C B A
        w = 1 if weights is None else weights[i]
        names[d.add_dest(svc, ip4("10.244.0.1") + i, 8080, w)] = "ABCDEFGH"[i]
    return svc, names


def syn(d, sport, now=0, proto=TCP, port=80, client=CLIENT, flags=F_SYN):
    return d.lookup_or_schedule(Flow(proto, client, sport, VIP, port, flags), now)


def picks(d, names, n, start):
    return "".join(names.get(syn(d, start + i), "-") for i in range(n))


def test_rr_add_keeps_cursor_delete_moves_it_back(make):
    d = make()
    svc, names = rr_service(d, 3)
    assert picks(d, names, 2, 1000) == "CB"  # cursor on B
    dd = d.add_dest(svc, "10.244.9.9", 8080)  # at the head, cursor stays on B
    names[dd] = "D"
    assert picks(d, names, 4, 2000) == "ADCB"
    b = next(k for k, v in names.items() if v == "B")
    d.del_dest(b)  # the cursor's dest: the cursor goes back to C
    assert picks(d, names, 3, 3000) == "ADC"


def test_rr_skips_quiesced_and_overloaded(make):
    d = make()
    _svc, names = rr_service(d, 3)
    inv = {v: k for k, v in names.items()}
    d.update_dest(inv["B"], weight=0)
    assert picks(d, names, 4, 1000) == "CACA"
    d.update_dest(inv["C"], u_threshold=1)  # C has 2 connections: overloaded at its next bind
    assert d.dest(inv["C"]).overloaded is False  # raising/setting u clears, binding sets
    assert picks(d, names, 1, 2000) == "C"
    assert d.dest(inv["C"]).overloaded
    assert picks(d, names, 3, 3000) == "AAA"
    d.update_dest(inv["A"], weight=0)
    assert picks(d, names, 1, 4000) == "-"


def test_wrr_gcd_and_cw_rules():
    """di = gcd of positive weights, mw = max - (di - 1); a change resets the
    cursor and cw = (cw / di) * di + 1 when di > 1 (reference internals)."""
    e = ref.Engine()
    sid = e.add_service(TCP, VIP, 80, ref.WRR, 0, 0, 0xFFFFFFFF)
    s = e._services[sid]
    assert (s.wrr_cw, s.wrr_mw, s.wrr_di) == (0, 0, 1)
    a = e.add_dest(sid, 1, 1, 2, 0, 0, False)
    assert (s.wrr_cw, s.wrr_mw, s.wrr_di) == (1, 1, 2)  # cw was 0: cw = mw
    e.add_dest(sid, 2, 1, 4, 0, 0, False)
    assert (s.wrr_cw, s.wrr_mw, s.wrr_di) == (1, 3, 2)  # (1 // 2) * 2 + 1
    got = []
    for i in range(6):
        dest = e.lookup_or_schedule(TCP, CLIENT, 1000 + i, VIP, 80, F_SYN, 0)
        got.append("A" if dest == a else "B")
    assert "".join(got) == "BABBAB"
    e.add_dest(sid, 3, 1, 6, 0, 0, False)
    assert s.wrr_cl == -1 and (s.wrr_mw, s.wrr_di) == (5, 2)


def test_wrr_weight_ratios(make):
    d = make()
    _svc, names = rr_service(d, 3, "wrr", weights=[1, 2, 3])
    got = picks(d, names, 60, 1000)
    assert (got.count("A"), got.count("B"), got.count("C")) == (10, 20, 30)


def test_wrr_all_overloaded_or_zero_gives_none(make):
    d = make()
    _svc, names = rr_service(d, 2, "wrr", weights=[0, 0])
    assert picks(d, names, 2, 1000) == "--"


# ------------------------------------------------------------------ least-connection family

def test_lc_counts_active_as_256(make):
    d = make()
    _svc, names = rr_service(d, 2, "lc")  # list B A
    inv = {v: k for k, v in names.items()}
    # one established (active) connection on B
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    assert d.lookup_or_schedule(f, 0) == inv["B"]
    d.lookup_or_schedule(f._replace(flags=F_ACK), 0)
    assert d.dest(inv["B"]).active == 1
    # A takes the next 256 inactive ones before B gets one: tie at 256 keeps B (first)
    got = ""
    for i in range(257):
        dest = syn(d, 6000 + i, flags=F_SYN)
        # the server resets it: SYN_RECV -> CLOSE, inactive (a client RST keeps SYN_RECV)
        d.lookup_or_schedule(Flow(TCP, CLIENT, 6000 + i, VIP, 80, F_RST | F_REPLY), 0)
        got += names[dest]
    assert got == "A" * 256 + "B"


def test_wlc_strict_comparison_keeps_newest_on_ties(make):
    d = make()
    _, names = two_dests(d, "wlc", 2, 2)
    assert sequence(d, names, 4) == "BABA"


def test_nq_returns_first_idle_dest(make):
    d = make()
    _svc, names = rr_service(d, 3, "nq", weights=[1, 1, 5])
    inv = {v: k for k, v in names.items()}
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    assert d.lookup_or_schedule(f, 0) == inv["C"]  # idle, first in list
    assert d.dest(inv["C"]).active == 1  # SYN_RECV counts as active
    assert syn(d, 5001) == inv["B"]  # C busy, B idle
    assert syn(d, 5002) == inv["A"]
    # none idle: SED minimum (a+1)/w: C (2/5) beats B and A (2/1)
    assert syn(d, 5003) == inv["C"]


def test_sed_ignores_inactive(make):
    d = make()
    _svc, names = rr_service(d, 2, "sed")
    inv = {v: k for k, v in names.items()}
    for i in range(5):  # inactive connections on B only
        assert syn(d, 100 + i, flags=F_SYN) == inv["B"]
        d.lookup_or_schedule(Flow(TCP, CLIENT, 100 + i, VIP, 80, F_RST | F_REPLY), 0)
    assert d.dest(inv["B"]).inactive == 5
    assert syn(d, 200) == inv["B"]  # still (0+1)/1 each: the first wins


# ------------------------------------------------------------------ overload thresholds

def test_overload_set_at_u_cleared_below_three_quarters(make):
    d = make()
    _svc, names = rr_service(d, 2, "lc")
    inv = {v: k for k, v in names.items()}
    d.update_dest(inv["B"], u_threshold=4)
    for i in range(8):
        syn(d, 100 + i, now=0)
    info = d.dest(inv["B"])
    assert (info.active, info.overloaded) == (4, True)
    assert syn(d, 200, now=0) == inv["A"]
    # expire B's: SYN_RECV lasts 60 s. 4*4 < 4*3 needs total <= 2
    for i in range(3):
        d.lookup_or_schedule(Flow(TCP, CLIENT, 100 + 2 * i, VIP, 80, F_RST | F_REPLY), 1000)
    d.expire(1000 + 10_000)  # CLOSE lasts 10 s
    assert d.dest(inv["B"]).active == 1 and not d.dest(inv["B"]).overloaded


def test_overload_cleared_below_l_threshold(make):
    d = make()
    _svc, names = rr_service(d, 1, "rr")
    a = next(iter(names))
    d.update_dest(a, u_threshold=3, l_threshold=1)
    for i in range(3):
        assert syn(d, 100 + i) == a
    assert d.dest(a).overloaded and syn(d, 200) == -1
    d.lookup_or_schedule(Flow(TCP, CLIENT, 100, VIP, 80, F_RST | F_REPLY), 0)
    d.lookup_or_schedule(Flow(TCP, CLIENT, 101, VIP, 80, F_RST | F_REPLY), 0)
    d.expire(10_000)
    assert d.dest(a).active + d.dest(a).inactive == 1 and d.dest(a).overloaded
    d.lookup_or_schedule(Flow(TCP, CLIENT, 102, VIP, 80, F_RST | F_REPLY), 10_000)
    d.expire(20_000)
    assert not d.dest(a).overloaded


# ------------------------------------------------------------------ dh / sh / mh

def test_dh_buckets_cycle_list_order_and_ignore_weights(make):
    d = make()
    svc, _names = rr_service(d, 3, "dh", weights=[1, 5, 9])
    order = d.service_dests(svc)
    assert syn(d, 1) == order[ref.hash_32(VIP, 8) % 3]
    d.update_dest(order[ref.hash_32(VIP, 8) % 3], weight=0)  # no fallback
    assert syn(d, 2) == -1


def test_sh_table_weights_and_source_hash(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "sh"))
    a = d.add_dest(svc, "10.244.0.1", 8080, 2)
    b = d.add_dest(svc, "10.244.0.2", 8080, 1)
    table = ([b] + [a, a]) * 86  # list B A: B one bucket, A two, repeated
    for i in range(40):
        client = ip4("192.168.0.1") + 7919 * i
        assert syn(d, 1000 + i, client=client) == table[ref.hash_32(client, 8)]


def test_sh_port_flag_and_fallback(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "sh", flags=SH_PORT | SH_FALLBACK))
    a = d.add_dest(svc, "10.244.0.1", 8080, 1)
    b = d.add_dest(svc, "10.244.0.2", 8080, 1)
    table = [b, a] * 128
    for sport in range(1000, 1020):
        assert syn(d, sport) == table[ref.hash_32(sport + CLIENT, 8)]
    d.update_dest(a, weight=0)
    for sport in range(2000, 2020):
        assert syn(d, sport) == b  # the fallback walks on to a usable bucket


def test_sh_weight_zero_still_takes_one_bucket(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "sh"))
    a = d.add_dest(svc, "10.244.0.1", 8080, 0)
    b = d.add_dest(svc, "10.244.0.2", 8080, 3)
    table = ([b] * 3 + [a]) * 64
    for i in range(30):
        client = ip4("172.16.0.1") + 104729 * i
        want = table[ref.hash_32(client, 8)]
        assert syn(d, 1000 + i, client=client) == (want if want == b else -1)


def mh_lookup_table(dests):
    """Independent Maglev fill for equal weights: offset/skip from hsiphash."""
    m = ref.MH_TAB_SIZE
    perm = [ref.mh_hashkey(a, p, ref.MH_KEY1, 0) % m for a, p in dests]
    skip = [ref.mh_hashkey(a, p, ref.MH_KEY2, 0) % (m - 1) + 1 for a, p in dests]
    table, n, j = [None] * m, 0, 0
    while n < m:
        c = perm[j]
        while table[c] is not None:
            c = (c + skip[j]) % m
        perm[j] = c
        table[c] = j
        n += 1
        j = (j + 1) % len(dests)
    return table


def test_mh_maglev_table_and_lookup(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "mh"))
    ids = [d.add_dest(svc, ip4("10.244.0.1") + i, 8080, 1) for i in range(3)]
    order = d.service_dests(svc)  # newest first
    addrs = {i: (ip4("10.244.0.1") + k, 8080) for k, i in enumerate(ids)}
    table = mh_lookup_table([addrs[i] for i in order])
    for i in range(50):
        client = ip4("192.168.1.1") + 31337 * i
        slot = ref.mh_hashkey(client, 0, ref.MH_KEY1, 0) % ref.MH_TAB_SIZE
        assert syn(d, 1000 + i, client=client) == order[table[slot]]


def test_mh_quiesce_does_not_reshuffle_and_fallback_probes(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "mh", flags=MH_PORT))
    ids = [d.add_dest(svc, ip4("10.244.0.1") + i, 8080, 1) for i in range(4)]
    before = [syn(d, 1000 + i, client=ip4("192.168.2.1") + i) for i in range(64)]
    d.update_dest(ids[0], weight=0)  # last_weight keeps 1: same table, ids[0] unusable
    after = [syn(d, 3000 + i, client=ip4("192.168.2.1") + i) for i in range(64)]
    # mh-port: the source port is hashed too, so compare through the reference formula
    order = d.service_dests(svc)
    addrs = {i: (ip4("10.244.0.1") + k, 8080) for k, i in enumerate(ids)}
    table = mh_lookup_table([addrs[i] for i in order])
    for i, (b, a) in enumerate(zip(before, after)):
        cl = ip4("192.168.2.1") + i
        assert b == order[table[ref.mh_hashkey(cl, 1000 + i, ref.MH_KEY1, 0) % 4093]]
        want = order[table[ref.mh_hashkey(cl, 3000 + i, ref.MH_KEY1, 0) % 4093]]
        assert a == (want if want != ids[0] else -1)
    d.update_service(svc, flags=MH_PORT | MH_FALLBACK)
    assert ids[0] not in [syn(d, 5000 + i, client=ip4("192.168.2.1") + i) for i in range(64)]
    assert -1 not in [syn(d, 6000 + i, client=ip4("192.168.2.1") + i) for i in range(64)]


def test_mh_weights_share_table_by_turns(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "mh"))
    a = d.add_dest(svc, "10.244.0.1", 8080, 1)
    d.add_dest(svc, "10.244.0.2", 8080, 3)
    got = [syn(d, 1000 + i, client=ip4("100.64.0.1") + 7 * i) for i in range(2000)]
    assert 0.2 < got.count(a) / len(got) < 0.3


# ------------------------------------------------------------------ connections

def test_existing_connection_sticks_and_quiescing_keeps_it(make):
    d = make()
    svc, names = rr_service(d, 2)
    inv = {v: k for k, v in names.items()}
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    dest = d.lookup_or_schedule(f, 0)
    d.update_dest(dest, weight=0)
    assert d.lookup_or_schedule(f._replace(flags=F_ACK), 1) == dest
    assert syn(d, 5001, now=2) != dest
    d.del_dest(dest)  # gone: its connections' packets are dropped
    assert d.lookup_or_schedule(f._replace(flags=F_ACK), 3) == -1
    info = d.dest(dest)
    assert info.service == -1 and not info.available and info.active == 1
    # added back while referenced: the same dest, counters kept, traffic flows again
    again = d.add_dest(svc, *(("10.244.0.1", 8080) if names[dest] == "A" else ("10.244.0.2", 8080)))
    assert again == dest and d.dest(dest).active == 1
    assert d.lookup_or_schedule(f._replace(flags=F_ACK), 4) == dest
    assert set(inv.values()) == set(names)


def test_expire_nodest_conn_reschedules(make):
    d = make(expire_nodest_conn=True)
    _svc, _names = rr_service(d, 2)
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    dest = d.lookup_or_schedule(f, 0)
    d.del_dest(dest)
    assert d.lookup_or_schedule(f._replace(flags=F_ACK), 1) == -1  # expired, not a SYN
    assert d.dest(dest) is None  # freed with its last connection
    other = d.lookup_or_schedule(f, 2)
    assert other not in (-1, dest)


def test_tcp_needs_syn_udp_does_not(make):
    d = make()
    svc = d.add_service(Service(VIP, 53, "udp", "rr"))
    a = d.add_dest(svc, "10.244.0.1", 53)
    assert d.lookup_or_schedule(Flow(UDP, CLIENT, 999, VIP, 53, 0), 0) == a
    tsvc = d.add_service(Service(VIP, 80, "tcp", "rr"))
    b = d.add_dest(tsvc, "10.244.0.1", 80)
    assert syn(d, 1, flags=F_ACK) == -1
    assert syn(d, 2, flags=F_SYN | F_RST) == -1
    assert syn(d, 3, flags=F_SYN) == b
    assert syn(d, 4, port=81) == -1  # no such service
    sloppy = make(sloppy_tcp=True)
    s2 = sloppy.add_service(Service(VIP, 80, "tcp", "rr"))
    c = sloppy.add_dest(s2, "10.244.0.1", 80)
    assert sloppy.lookup_or_schedule(Flow(TCP, CLIENT, 1, VIP, 80, F_ACK), 0) == c
    assert sloppy.conn(Flow(TCP, CLIENT, 1, VIP, 80)).state == "ESTABLISHED"


def test_tcp_states_timeouts_and_counts(make):
    d = make()
    _svc, names = rr_service(d, 1)
    a = next(iter(names))
    f = Flow(TCP, CLIENT, 5000, VIP, 80)
    steps = [
        (F_SYN, "SYN_RECV", 60_000, False),
        (F_SYN | F_ACK | F_REPLY, "SYN_RECV", 60_000, False),
        (F_ACK, "ESTABLISHED", 900_000, False),
        (F_FIN | F_ACK, "CLOSE_WAIT", 60_000, True),
        (F_FIN | F_ACK | F_REPLY, "TIME_WAIT", 120_000, True),
        (F_ACK, "TIME_WAIT", 120_000, True),
    ]
    for t, (fl, state, timeout, inactive) in enumerate(steps, start=1):
        d.lookup_or_schedule(f._replace(flags=fl), t)
        c = d.conn(f)
        assert (c.state, c.expires_ms - t, c.inactive) == (state, timeout, inactive), fl
        info = d.dest(a)
        assert (info.active, info.inactive) == ((0, 1) if inactive else (1, 0))
    d.expire(6 + 120_000 - 1)
    assert d.conn(f) is not None
    d.expire(6 + 120_000)
    assert d.conn(f) is None and d.dest(a).inactive == 0


def test_no_flags_moves_tcp_to_close_and_udp_has_300s(make):
    d = make()
    _svc, _names = rr_service(d, 1)
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    d.lookup_or_schedule(f, 0)
    d.lookup_or_schedule(f._replace(flags=0), 0)
    assert d.conn(f).state == "CLOSE"
    u = d.add_service(Service(VIP, 53, "udp", "rr"))
    d.add_dest(u, "10.244.0.9", 53)
    g = Flow(UDP, CLIENT, 5000, VIP, 53)
    d.lookup_or_schedule(g, 100)
    c = d.conn(g)
    assert (c.state, c.expires_ms, c.inactive) == ("UDP", 300_100, True)


def test_route_forwarding_uses_input_only_table(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "rr"))
    d.add_dest(svc, "10.244.0.1", 80, forward="route")
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    d.lookup_or_schedule(f, 0)
    d.lookup_or_schedule(f._replace(flags=F_ACK), 0)
    d.lookup_or_schedule(f._replace(flags=F_FIN | F_ACK), 0)
    assert d.conn(f).state == "FIN_WAIT"  # INPUT-ONLY: ES + fin -> FW (masq: CLOSE_WAIT)


def test_syn_on_time_wait_reschedules_and_counts_old_first(make):
    d = make()
    _, names = two_dests(d, "lc")
    inv = {v: k for k, v in names.items()}
    assert short_connection(d, 7000, 0) == inv["B"]  # now in TIME_WAIT on B
    # the old connection is still counted when the new one is scheduled: A wins
    assert syn(d, 7000, now=1) == inv["A"]
    assert d.dest(inv["B"]).inactive == 0 and d.dest(inv["A"]).active == 1
    no_reuse = make(conn_reuse_mode=0)
    _, _names2 = two_dests(no_reuse, "lc")
    first = short_connection(no_reuse, 7000, 0)
    assert syn(no_reuse, 7000, now=1) == first  # stays on the old connection


def test_time_never_goes_back(make):
    d = make()
    _svc, _names = rr_service(d, 1)
    d.expire(10_000)
    f = Flow(TCP, CLIENT, 5000, VIP, 80, F_SYN)
    d.lookup_or_schedule(f, 5)
    assert d.clock_ms == 10_000 and d.conn(f).expires_ms == 70_000


# ------------------------------------------------------------------ persistence

def test_persistence_pins_client_even_to_quiesced_dest(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "rr", persistence=300))
    a = d.add_dest(svc, "10.244.0.1", 80)
    b = d.add_dest(svc, "10.244.0.2", 80)
    first = syn(d, 1000)
    assert [syn(d, 1001 + i) for i in range(5)] == [first] * 5
    assert syn(d, 1000, client=CLIENT + 1) != first  # another client: scheduled
    d.update_dest(first, weight=0)
    assert syn(d, 2000) == first  # the template still holds (expire_quiescent_template off)
    assert d.dest(first).persist == 1 and d.conn_count() == (8, 2)
    q = make(expire_quiescent_template=True)
    s2 = q.add_service(Service(VIP, 80, "tcp", "rr", persistence=300))
    q.add_dest(s2, "10.244.0.1", 80)
    q.add_dest(s2, "10.244.0.2", 80)
    f1 = syn(q, 1000)
    q.update_dest(f1, weight=0)
    assert syn(q, 1001) != f1
    assert {a, b} == set(d.service_dests(svc))


def test_persistence_netmask_groups_clients(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "rr", persistence=60, netmask="255.255.255.0"))
    d.add_dest(svc, "10.244.0.1", 80)
    d.add_dest(svc, "10.244.0.2", 80)
    first = syn(d, 1000, client=ip4("192.168.5.1"))
    assert syn(d, 1001, client=ip4("192.168.5.200")) == first
    assert syn(d, 1002, client=ip4("192.168.6.1")) != first


def test_template_timeout_and_sixty_second_rearm(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "rr", persistence=10))
    a = d.add_dest(svc, "10.244.0.1", 80)
    b = d.add_dest(svc, "10.244.0.2", 80)
    f = Flow(TCP, CLIENT, 1000, VIP, 80, F_SYN)
    first = d.lookup_or_schedule(f, 0)
    d.lookup_or_schedule(f._replace(flags=F_ACK), 0)  # established: 900 s
    d.expire(10_000)  # template due but controls a connection: re-armed 60 s
    assert d.conn_count() == (1, 1)
    d.lookup_or_schedule(f._replace(flags=F_RST), 20_000)  # CLOSE: gone at 30 s
    d.expire(30_000)
    assert d.conn_count() == (0, 1)
    assert syn(d, 2000, now=69_999) == first  # template alive until 70 s
    d.lookup_or_schedule(Flow(TCP, CLIENT, 2000, VIP, 80, F_RST | F_REPLY), 69_999)
    d.expire(69_999 + 60_000 - 1)  # re-armed template now lives 60 s per use
    assert d.conn_count() == (0, 1)
    d.expire(69_999 + 60_000)
    assert d.conn_count() == (0, 0)
    assert {a, b} >= {first}


def test_template_to_deleted_dest_is_replaced(make):
    d = make()
    svc = d.add_service(Service(VIP, 80, "tcp", "rr", persistence=300))
    d.add_dest(svc, "10.244.0.1", 80)
    d.add_dest(svc, "10.244.0.2", 80)
    first = syn(d, 1000)
    d.del_dest(first)
    second = syn(d, 1001)
    assert second not in (-1, first)
    assert syn(d, 1002) == second
    assert d.conn_count() == (3, 2)  # the invalidated template lives until it expires


# ------------------------------------------------------------------ API validation

def test_validation_errors(make):
    d = make()
    svc = d.add_service(Service(VIP, 80))
    with pytest.raises(ServiceExists):
        d.add_service(Service(VIP, 80))
    a = d.add_dest(svc, "10.244.0.1", 80)
    with pytest.raises(DestExists):
        d.add_dest(svc, "10.244.0.1", 80)
    with pytest.raises(InvalidArgument):
        d.add_dest(svc, "10.244.0.2", 80, u_threshold=1, l_threshold=2)
    with pytest.raises(InvalidArgument):
        d.add_dest(svc, "10.244.0.2", 80, weight=-1)
    with pytest.raises(InvalidArgument):
        d.add_service(Service(VIP, 81, "sctp"))
    with pytest.raises(InvalidArgument):
        d.add_service(Service(VIP, 81, scheduler="fo"))
    d.del_dest(a)
    with pytest.raises(NoSuchDest):
        d.update_dest(a, weight=2)
    assert d.find_service(VIP, 80) == svc
    d.del_service(svc)
    assert d.find_service(VIP, 80) is None
