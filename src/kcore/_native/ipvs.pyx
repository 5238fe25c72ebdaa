# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Userspace IPVS dispatcher, native: the same `Engine` class and results as
kcore.proxy.ipvs_ref (see there for the model; the property tests in
tests/unit/proxy/ prove agreement). kcore.proxy.dispatcher.Dispatcher is the
validated front; this module trusts its inputs.

Layout:
* connection table: open addressing, linear probing, tombstones, 32-byte
  entries keyed by two words (saddr|daddr<<32, sport|dport<<16|proto<<32|kind<<40;
  state and flags ride in the top bytes of the second word). Templates share
  it under their own kind. Entries never move except on rehash.
* expiry: a binary heap of (time*2 + is_template, slot). An entry records the
  time of its authoritative node (`sched`); refreshing to a later time only
  writes `expires` (the node is re-pushed when it pops), an earlier one pushes
  a new node. Stored times are u32 milliseconds compared modulo 2**32 (the
  Dispatcher keeps every deadline within 24 days); the heap keys are int64.
* dests and services: arrays indexed by id (ids are never reused); a
  service's dests are an id array in list order, newest first.
* the batch loop hashes flow i+8 and prefetches its bucket while handling
  flow i.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memmove, memset

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    #define KC_PREFETCH(p) __builtin_prefetch((const void *)(p), 1, 3)

    static inline uint64_t kc_rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

    #define KC_SIPROUND do { \\
        v0 += v1; v1 = kc_rotl(v1, 13); v1 ^= v0; v0 = kc_rotl(v0, 32); \\
        v2 += v3; v3 = kc_rotl(v3, 16); v3 ^= v2; \\
        v0 += v3; v3 = kc_rotl(v3, 21); v3 ^= v0; \\
        v2 += v1; v1 = kc_rotl(v1, 17); v1 ^= v2; v2 = kc_rotl(v2, 32); } while (0)

    /* hsiphash(&v, 4, key) on a 64-bit kernel: SipHash-1-3, 64-bit key words, u32 result */
    static inline uint32_t kc_hsiphash_u32(uint32_t v, uint64_t k0, uint64_t k1) {
        uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
        uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
        uint64_t b = ((uint64_t)4 << 56) | (uint64_t)v;
        v3 ^= b; KC_SIPROUND; v0 ^= b;
        v2 ^= 0xff; KC_SIPROUND; KC_SIPROUND; KC_SIPROUND;
        return (uint32_t)(v0 ^ v1 ^ v2 ^ v3);
    }

    static inline uint32_t kc_hash_32(uint32_t v, int bits) {
        return (uint32_t)(v * 0x61C88647u) >> (32 - bits);
    }

    /* the connection table's hash: seeded, well mixed in the top bits */
    static inline uint64_t kc_mix(uint64_t seed, uint64_t k0, uint64_t k1) {
        uint64_t h = (k0 ^ seed) * 0x9E3779B97F4A7C15ULL;
        h ^= (k1 + kc_rotl(seed, 29)) * 0xC2B2AE3D27D4EB4FULL;
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 29;
        return h;
    }

    static inline int kc_fls(uint32_t x) { return x ? 32 - __builtin_clz(x) : 0; }

    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    /* A zeroed block for the connection table: 2 MiB aligned and marked for
       transparent huge pages when large (random probes over tens of MiB are
       TLB-bound), and touched now so that inserts take no page faults. */
    static void *kc_table_alloc(size_t bytes) {
        void *p = NULL;
        if (bytes >= (2u << 20)) {
            if (posix_memalign(&p, 2u << 20, bytes) != 0) return NULL;
    #ifdef MADV_HUGEPAGE
            madvise(p, bytes, MADV_HUGEPAGE);
    #endif
        } else {
            p = malloc(bytes);
            if (!p) return NULL;
        }
        memset(p, 0, bytes);
        return p;
    }

    #define KC_KEYMASK 0xFFFFFFFFFFFFULL
    #define KC_MH_K1 2654435761ULL
    #define KC_MH_K2 2654446892ULL
    """
    void KC_PREFETCH(const void *p) nogil
    uint32_t kc_hsiphash_u32(uint32_t v, uint64_t k0, uint64_t k1) nogil
    uint32_t kc_hash_32(uint32_t v, int bits) nogil
    uint64_t kc_mix(uint64_t seed, uint64_t k0, uint64_t k1) nogil
    int kc_fls(uint32_t x) nogil
    void *kc_table_alloc(size_t bytes) nogil
    const uint64_t KEYMASK "KC_KEYMASK"
    const uint64_t MH_K1 "KC_MH_K1"
    const uint64_t MH_K2 "KC_MH_K2"

# ------------------------------------------------------------------ constants (ipvs_ref)

DEF TCP = 6
DEF UDP = 17
DEF F_FIN = 0x01
DEF F_SYN = 0x02
DEF F_RST = 0x04
DEF F_ACK = 0x10
DEF F_REPLY = 0x100
DEF SVC_F_PERSISTENT = 0x0001
DEF SVC_F_SCHED1 = 0x0008
DEF SVC_F_SCHED2 = 0x0010
DEF RR = 0
DEF WRR = 1
DEF LC = 2
DEF WLC = 3
DEF SED = 4
DEF NQ = 5
DEF DH = 6
DEF SH = 7
DEF MH = 8
DEF S_NONE = 0
DEF S_ESTABLISHED = 1
DEF S_FIN_WAIT = 4
DEF S_TIME_WAIT = 5
DEF S_CLOSE = 6
DEF UDP_TIMEOUT_MS = 300000
DEF TEMPLATE_LATER_MS = 60000
DEF SH_TAB_SIZE = 256
DEF DH_TAB_SIZE = 256
DEF MH_TAB_SIZE = 4093
DEF MH_TAB_BITS = 6
DEF FTP_PORT = 21

# entry kinds
DEF K_EMPTY = 0
DEF K_CONN = 1
DEF K_TPL = 2
DEF K_DEAD = 3
DEF K_TPLX = 4  # invalidated template: alive, never matched
# entry flags
DEF CF_INACTIVE = 1
DEF CF_NOOUT = 2
DEF CF_REARMED = 4
DEF CF_ARMED = 8

DEF PREFETCH_AHEAD = 8

cdef uint8_t TCP_NEXT[12][11]
cdef int32_t TCP_TIMEOUT[11]
cdef uint8_t TCP_ACTIVE[11]


def _init_tables():
    from kcore.proxy import ipvs_ref as r
    for i in range(12):
        for j in range(11):
            TCP_NEXT[i][j] = r.TCP_NEXT[i][j]
    for j in range(11):
        TCP_TIMEOUT[j] = r.TCP_TIMEOUT_MS[j]
        TCP_ACTIVE[j] = r.TCP_ACTIVE[j]


_init_tables()

# ------------------------------------------------------------------ types

cdef packed struct flow_t:  # kcore.proxy.dispatcher.FLOW_DTYPE
    uint32_t saddr
    uint32_t daddr
    uint16_t sport
    uint16_t dport
    uint8_t proto
    uint8_t pad
    uint16_t flags

ctypedef struct conn_t:
    uint64_t k0  # saddr | daddr << 32
    uint64_t k1  # sport | dport << 16 | proto << 32 | kind << 40 | state << 48 | flags << 56
    int32_t dest
    int32_t aux  # conn: its template's slot or -1; template: connections it controls
    uint32_t expires
    uint32_t sched

ctypedef struct node_t:
    int64_t key  # time * 2 + is_template
    int64_t slot

ctypedef struct dest_t:
    uint32_t addr
    uint32_t vip
    uint16_t port
    uint16_t vport
    uint8_t vproto
    uint8_t linked
    uint8_t available
    uint8_t overload
    uint8_t noout
    uint8_t alive
    int32_t svc
    int32_t weight
    int32_t last_weight
    int32_t u_threshold
    int32_t l_threshold
    int32_t active
    int32_t inactive
    int32_t persist
    int32_t refcnt

ctypedef struct svc_t:
    uint32_t vip
    uint32_t netmask
    uint32_t flags
    uint16_t port
    uint8_t proto
    uint8_t sched
    uint8_t alive
    int64_t timeout_ms
    int32_t n
    int32_t cap
    int32_t *dests  # ids, newest first
    int32_t rr_pos
    int32_t wrr_cl
    int32_t wrr_cw
    int32_t wrr_mw
    int32_t wrr_di
    int32_t *table  # dh/sh: 256 dest ids, mh: 4093; -1 = none


cdef inline uint64_t mk_k0(uint32_t saddr, uint32_t daddr) noexcept nogil:
    return <uint64_t>saddr | (<uint64_t>daddr << 32)


cdef inline uint64_t mk_k1(uint16_t sport, uint16_t dport, uint8_t proto,
                           uint8_t kind) noexcept nogil:
    return (<uint64_t>sport | (<uint64_t>dport << 16) | (<uint64_t>proto << 32)
            | (<uint64_t>kind << 40))


cdef inline int e_kind(conn_t *e) noexcept nogil:
    return (e.k1 >> 40) & 0xFF


cdef inline int e_state(conn_t *e) noexcept nogil:
    return (e.k1 >> 48) & 0xFF


cdef inline int e_flags(conn_t *e) noexcept nogil:
    return <int>(e.k1 >> 56)


cdef inline int e_proto(conn_t *e) noexcept nogil:
    return (e.k1 >> 32) & 0xFF


cdef inline void e_set_kind(conn_t *e, uint64_t k) noexcept nogil:
    e.k1 = (e.k1 & ~(<uint64_t>0xFF << 40)) | (k << 40)


cdef inline void e_set_state(conn_t *e, uint64_t s) noexcept nogil:
    e.k1 = (e.k1 & ~(<uint64_t>0xFF << 48)) | (s << 48)


cdef inline void e_set_flags(conn_t *e, uint64_t f) noexcept nogil:
    e.k1 = (e.k1 & ~(<uint64_t>0xFF << 56)) | (f << 56)


cdef inline bint live_kind(int k) noexcept nogil:
    return k == K_CONN or k == K_TPL or k == K_TPLX


cdef inline bint u32_before(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) < 0


cdef inline int32_t gcd32(int32_t a, int32_t b) noexcept nogil:
    cdef int32_t t
    while b:
        t = a % b
        a = b
        b = t
    return a


cdef inline uint32_t mh_hashkey(uint32_t addr, uint32_t port, uint64_t key,
                                uint32_t offset) noexcept nogil:
    return kc_hsiphash_u32(offset + port + addr, key, key)


cdef class Engine:
    """See kcore.proxy.ipvs_ref.Engine: same methods, same results."""

    cdef conn_t *tab
    cdef uint64_t cap
    cdef uint64_t mask
    cdef int shift
    cdef int64_t n_conn
    cdef int64_t n_tpl
    cdef int64_t n_dead
    cdef int64_t limit
    cdef uint64_t seed

    cdef node_t *heap
    cdef int64_t hn
    cdef int64_t hcap
    cdef int64_t _clock

    cdef dest_t *dests
    cdef int32_t nd
    cdef int32_t dcap
    cdef int32_t *trash
    cdef int32_t ntrash
    cdef int32_t trcap

    cdef svc_t *svcs
    cdef int32_t ns
    cdef int32_t scap
    cdef uint64_t *smap_k
    cdef int32_t *smap_v
    cdef uint32_t smap_cap
    cdef uint32_t smap_used

    cdef bint busy  # process() runs without the GIL: no other call may touch the engine
    cdef int conn_reuse_mode
    cdef bint expire_nodest_conn
    cdef bint expire_quiescent_template
    cdef bint sloppy_tcp

    def __cinit__(self, int conn_reuse_mode=1, bint expire_nodest_conn=False,
                  bint expire_quiescent_template=False, bint sloppy_tcp=False,
                  uint64_t capacity=1024, uint64_t seed=0):
        cdef uint64_t cap = 16
        while cap < capacity:
            cap <<= 1
        self.conn_reuse_mode = conn_reuse_mode
        self.expire_nodest_conn = expire_nodest_conn
        self.expire_quiescent_template = expire_quiescent_template
        self.sloppy_tcp = sloppy_tcp
        self.seed = seed
        self.tab = NULL
        self.hcap = 1024
        self.heap = <node_t *>malloc(self.hcap * sizeof(node_t))
        if self.heap == NULL:
            raise MemoryError()
        self._alloc_table(cap)
        self.dcap = 64
        self.dests = <dest_t *>calloc(self.dcap, sizeof(dest_t))
        self.trcap = 16
        self.trash = <int32_t *>malloc(self.trcap * sizeof(int32_t))
        self.scap = 16
        self.svcs = <svc_t *>calloc(self.scap, sizeof(svc_t))
        self.smap_cap = 64
        self.smap_k = <uint64_t *>calloc(self.smap_cap, sizeof(uint64_t))
        self.smap_v = <int32_t *>calloc(self.smap_cap, sizeof(int32_t))
        if (self.heap == NULL or self.dests == NULL or self.trash == NULL or self.svcs == NULL
                or self.smap_k == NULL or self.smap_v == NULL):
            raise MemoryError()

    def __dealloc__(self):
        cdef int32_t i
        if self.svcs != NULL:
            for i in range(self.ns):
                free(self.svcs[i].dests)
                free(self.svcs[i].table)
        free(self.tab)
        free(self.heap)
        free(self.dests)
        free(self.trash)
        free(self.svcs)
        free(self.smap_k)
        free(self.smap_v)

    cdef int _alloc_table(self, uint64_t cap) except -1:
        cdef node_t *nh
        self.tab = <conn_t *>kc_table_alloc(cap * sizeof(conn_t))
        if self.tab == NULL:
            raise MemoryError()
        if self.heap != NULL and self.hcap < <int64_t>(cap // 2):
            nh = <node_t *>realloc(self.heap, (cap // 2) * sizeof(node_t))
            if nh == NULL:
                raise MemoryError()
            self.heap = nh
            self.hcap = cap // 2
        self.cap = cap
        self.mask = cap - 1
        self.shift = 64 - (kc_fls(<uint32_t>(cap >> 1)) if cap <= 0x100000000 else 33)
        self.limit = <int64_t>(cap * 7 // 10)
        self.n_dead = 0
        return 0

    cdef inline int _check(self) except -1:
        if self.busy:
            raise RuntimeError("ipvs Engine used from two threads at once")
        return 0

    # ------------------------------------------------------------ service map

    cdef inline uint32_t _smap_slot(self, uint64_t key) noexcept nogil:
        return <uint32_t>(kc_mix(0, key, 0) >> 40) & (self.smap_cap - 1)

    cdef int32_t _smap_get(self, uint64_t key) noexcept nogil:
        cdef uint32_t i = self._smap_slot(key)
        while self.smap_k[i] != 0:
            if self.smap_k[i] == key:
                return self.smap_v[i]
            i = (i + 1) & (self.smap_cap - 1)
        return -1

    cdef int _smap_put(self, uint64_t key, int32_t val) except -1:
        cdef uint32_t i, old_cap
        cdef uint64_t *ok
        cdef int32_t *ov
        if (self.smap_used + 1) * 2 > self.smap_cap:
            ok, ov, old_cap = self.smap_k, self.smap_v, self.smap_cap
            self.smap_cap *= 2
            self.smap_k = <uint64_t *>calloc(self.smap_cap, sizeof(uint64_t))
            self.smap_v = <int32_t *>calloc(self.smap_cap, sizeof(int32_t))
            if self.smap_k == NULL or self.smap_v == NULL:
                raise MemoryError()
            self.smap_used = 0
            for i in range(old_cap):
                if ok[i] > 1:
                    self._smap_put(ok[i], ov[i])
            free(ok)
            free(ov)
        i = self._smap_slot(key)
        while self.smap_k[i] > 1:
            i = (i + 1) & (self.smap_cap - 1)
        if self.smap_k[i] == 0:
            self.smap_used += 1
        self.smap_k[i] = key
        self.smap_v[i] = val
        return 0

    cdef void _smap_del(self, uint64_t key) noexcept nogil:
        cdef uint32_t i = self._smap_slot(key)
        while self.smap_k[i] != 0:
            if self.smap_k[i] == key:
                self.smap_k[i] = 1  # tombstone (never a real key: proto is never 0)
                return
            i = (i + 1) & (self.smap_cap - 1)

    # ------------------------------------------------------------ services (Python API)

    @property
    def clock(self):
        return self._clock

    def find_service(self, int proto, uint32_t vip, int port):
        return self._smap_get((<uint64_t>proto << 48) | (<uint64_t>port << 32) | vip)

    def has_service(self, int32_t sid):
        return 0 <= sid < self.ns and self.svcs[sid].alive

    def add_service(self, int proto, uint32_t vip, int port, int sched, uint32_t flags,
                    int64_t timeout_ms, uint32_t netmask):
        cdef svc_t *s
        cdef int32_t sid
        self._check()
        if self.ns == self.scap:
            s = <svc_t *>realloc(self.svcs, 2 * self.scap * sizeof(svc_t))
            if s == NULL:
                raise MemoryError()
            self.svcs = s
            memset(&self.svcs[self.scap], 0, self.scap * sizeof(svc_t))
            self.scap *= 2
        sid = self.ns
        s = &self.svcs[sid]
        s.vip = vip
        s.port = port
        s.proto = proto
        s.sched = sched
        s.flags = flags
        s.timeout_ms = timeout_ms
        s.netmask = netmask
        s.alive = 1
        s.n = 0
        s.cap = 8
        s.dests = <int32_t *>malloc(s.cap * sizeof(int32_t))
        s.table = NULL
        if s.dests == NULL:
            raise MemoryError()
        self.ns += 1
        self._smap_put((<uint64_t>proto << 48) | (<uint64_t>port << 32) | vip, sid)
        self._sched_init(s)
        return sid

    def edit_service(self, int32_t sid, int sched, uint32_t flags):
        cdef svc_t *s = &self.svcs[sid]
        self._check()
        s.flags = (s.flags & SVC_F_PERSISTENT) | (flags & ~SVC_F_PERSISTENT)
        if sched != s.sched:
            s.sched = sched
            self._sched_init(s)

    def service_sched(self, int32_t sid):
        cdef svc_t *s = &self.svcs[sid]
        return s.sched, s.flags & ~SVC_F_PERSISTENT

    def del_service(self, int32_t sid):
        cdef svc_t *s = &self.svcs[sid]
        cdef int32_t i
        self._check()
        self._smap_del((<uint64_t>s.proto << 48) | (<uint64_t>s.port << 32) | s.vip)
        for i in range(s.n):
            self._unlink(s.dests[i])
        s.n = 0
        s.alive = 0
        free(s.table)
        s.table = NULL

    def service_dests(self, int32_t sid):
        cdef svc_t *s = &self.svcs[sid]
        return [s.dests[i] for i in range(s.n)]

    # ------------------------------------------------------------ dests (Python API)

    def find_dest(self, int32_t sid, uint32_t addr, int port):
        cdef svc_t *s = &self.svcs[sid]
        cdef int32_t i
        for i in range(s.n):
            if self.dests[s.dests[i]].addr == addr and self.dests[s.dests[i]].port == port:
                return s.dests[i]
        return -1

    def add_dest(self, int32_t sid, uint32_t addr, int port, int32_t weight,
                 int32_t u_threshold, int32_t l_threshold, bint noout):
        cdef svc_t *s = &self.svcs[sid]
        cdef dest_t *d
        cdef int32_t did = -1, i
        cdef dest_t *nd
        cdef int32_t *nl
        self._check()
        for i in range(self.ntrash):
            d = &self.dests[self.trash[i]]
            if (d.vproto == s.proto and d.vip == s.vip and d.vport == s.port
                    and d.addr == addr and d.port == port):
                did = self.trash[i]
                self.ntrash -= 1
                self.trash[i] = self.trash[self.ntrash]
                break
        if did < 0:
            if self.nd == self.dcap:
                nd = <dest_t *>realloc(self.dests, 2 * self.dcap * sizeof(dest_t))
                if nd == NULL:
                    raise MemoryError()
                self.dests = nd
                memset(&self.dests[self.dcap], 0, self.dcap * sizeof(dest_t))
                self.dcap *= 2
            did = self.nd
            self.nd += 1
            d = &self.dests[did]
            d.addr = addr
            d.port = port
            d.vproto = s.proto
            d.vip = s.vip
            d.vport = s.port
            d.alive = 1
        d = &self.dests[did]
        d.svc = sid
        self._update(d, weight, u_threshold, l_threshold, noout, True)
        if s.n == s.cap:
            nl = <int32_t *>realloc(s.dests, 2 * s.cap * sizeof(int32_t))
            if nl == NULL:
                raise MemoryError()
            s.dests = nl
            s.cap *= 2
        memmove(&s.dests[1], &s.dests[0], s.n * sizeof(int32_t))
        s.dests[0] = did
        s.n += 1
        d.linked = 1
        if s.sched == RR:
            if s.rr_pos >= 0:
                s.rr_pos += 1
        elif s.sched == WRR or s.sched == DH or s.sched == SH or s.sched == MH:
            self._sched_changed(s)
        return did

    def edit_dest(self, int32_t did, int32_t weight, int32_t u_threshold, int32_t l_threshold):
        cdef dest_t *d = &self.dests[did]
        cdef svc_t *s = &self.svcs[d.svc]
        self._check()
        self._update(d, weight, u_threshold, l_threshold, d.noout, False)
        if s.sched == WRR or s.sched == SH or s.sched == MH:
            self._sched_changed(s)

    def del_dest(self, int32_t did):
        cdef dest_t *d = &self.dests[did]
        cdef svc_t *s = &self.svcs[d.svc]
        cdef int32_t pos = 0
        self._check()
        while s.dests[pos] != did:
            pos += 1
        memmove(&s.dests[pos], &s.dests[pos + 1], (s.n - pos - 1) * sizeof(int32_t))
        s.n -= 1
        self._unlink(did)
        if s.sched == RR:
            if pos < s.rr_pos:
                s.rr_pos -= 1
            elif pos == s.rr_pos:
                s.rr_pos = pos - 1
        elif s.sched == WRR or s.sched == DH or s.sched == SH or s.sched == MH:
            self._sched_changed(s)

    def dest_info(self, int32_t did):
        cdef dest_t *d
        if did < 0 or did >= self.nd or not self.dests[did].alive:
            return None
        d = &self.dests[did]
        return (d.svc if d.linked else -1, d.addr, d.port, d.weight, d.last_weight,
                d.u_threshold, d.l_threshold, d.active, d.inactive, d.persist,
                bool(d.overload), bool(d.available))

    cdef void _update(self, dest_t *d, int32_t weight, int32_t u, int32_t lo, bint noout,
                      bint add) noexcept nogil:
        if add or weight != 0:
            d.last_weight = weight
        d.weight = weight
        d.noout = noout
        d.available = 1
        if u == 0 or u > d.u_threshold:
            d.overload = 0
        d.u_threshold = u
        d.l_threshold = lo

    cdef int _unlink(self, int32_t did) except -1:
        cdef dest_t *d = &self.dests[did]
        cdef int32_t *nt
        d.available = 0
        d.linked = 0
        if d.refcnt == 0:
            d.alive = 0
            return 0
        if self.ntrash == self.trcap:
            nt = <int32_t *>realloc(self.trash, 2 * self.trcap * sizeof(int32_t))
            if nt == NULL:
                raise MemoryError()
            self.trash = nt
            self.trcap *= 2
        self.trash[self.ntrash] = did
        self.ntrash += 1
        return 0

    cdef inline void _put_dest(self, int32_t did) noexcept nogil:
        cdef dest_t *d = &self.dests[did]
        cdef int32_t i
        d.refcnt -= 1
        if d.refcnt == 0 and not d.linked:
            d.alive = 0
            for i in range(self.ntrash):
                if self.trash[i] == did:
                    self.ntrash -= 1
                    self.trash[i] = self.trash[self.ntrash]
                    break

    # ------------------------------------------------------------ scheduler state

    cdef int _sched_init(self, svc_t *s) except -1:
        s.rr_pos = -1
        s.wrr_cl = -1
        free(s.table)
        s.table = NULL
        if s.sched == WRR:
            s.wrr_di = self._wrr_gcd(s)
            s.wrr_mw = self._max_weight(s) - (s.wrr_di - 1)
            s.wrr_cw = s.wrr_mw
        elif s.sched == DH or s.sched == SH or s.sched == MH:
            s.table = <int32_t *>malloc((MH_TAB_SIZE if s.sched == MH else 256) * sizeof(int32_t))
            if s.table == NULL:
                raise MemoryError()
            self._sched_changed(s)
        return 0

    cdef int32_t _wrr_gcd(self, svc_t *s) noexcept nogil:
        cdef int32_t g = 0, i, w
        for i in range(s.n):
            w = self.dests[s.dests[i]].weight
            if w > 0:
                g = gcd32(w, g) if g > 0 else w
        return g if g else 1

    cdef int32_t _max_weight(self, svc_t *s) noexcept nogil:
        cdef int32_t m = 0, i
        for i in range(s.n):
            if self.dests[s.dests[i]].weight > m:
                m = self.dests[s.dests[i]].weight
        return m

    cdef int _sched_changed(self, svc_t *s) except -1:
        cdef int32_t i, p, count
        if s.sched == WRR:
            s.wrr_cl = -1
            s.wrr_di = self._wrr_gcd(s)
            s.wrr_mw = self._max_weight(s) - (s.wrr_di - 1)
            if s.wrr_cw > s.wrr_mw or s.wrr_cw == 0:
                s.wrr_cw = s.wrr_mw
            elif s.wrr_di > 1:
                s.wrr_cw = (s.wrr_cw // s.wrr_di) * s.wrr_di + 1
        elif s.sched == DH:
            for i in range(DH_TAB_SIZE):
                s.table[i] = s.dests[i % s.n] if s.n else -1
        elif s.sched == SH:
            p = count = 0
            for i in range(SH_TAB_SIZE):
                if s.n == 0:
                    s.table[i] = -1
                    continue
                s.table[i] = s.dests[p]
                count += 1
                if count >= self.dests[s.dests[p]].weight:
                    p += 1
                    if p == s.n:
                        p = 0
                    count = 0
        elif s.sched == MH:
            self._mh_build(s)
        return 0

    cdef int _mh_build(self, svc_t *s) except -1:
        cdef int32_t g = 0, mw = 0, lw, i, j, t, rshift
        cdef uint32_t c, n = 0
        cdef dest_t *d
        cdef uint32_t *perm
        cdef uint32_t *skip
        cdef int32_t *turns
        cdef uint8_t *taken
        for i in range(s.n):
            lw = self.dests[s.dests[i]].last_weight
            if lw > 0:
                g = gcd32(lw, g) if g > 0 else lw
        if g < 1:
            for i in range(MH_TAB_SIZE):
                s.table[i] = -1
            return 0
        for i in range(s.n):
            if self.dests[s.dests[i]].last_weight > mw:
                mw = self.dests[s.dests[i]].last_weight
        rshift = kc_fls(<uint32_t>(mw // g)) - MH_TAB_BITS
        if rshift < 0:
            rshift = 0
        perm = <uint32_t *>malloc(s.n * sizeof(uint32_t))
        skip = <uint32_t *>malloc(s.n * sizeof(uint32_t))
        turns = <int32_t *>malloc(s.n * sizeof(int32_t))
        taken = <uint8_t *>calloc(MH_TAB_SIZE, 1)
        if perm == NULL or skip == NULL or turns == NULL or taken == NULL:
            free(perm)
            free(skip)
            free(turns)
            free(taken)
            raise MemoryError()
        for j in range(s.n):
            d = &self.dests[s.dests[j]]
            perm[j] = mh_hashkey(d.addr, d.port, MH_K1, 0) % MH_TAB_SIZE
            skip[j] = mh_hashkey(d.addr, d.port, MH_K2, 0) % (MH_TAB_SIZE - 1) + 1
            lw = d.last_weight
            turns[j] = (lw // g) >> rshift
            if turns[j] == 0:
                turns[j] = 1 if lw != 0 else 0
        while n < MH_TAB_SIZE:
            for j in range(s.n):
                for t in range(turns[j]):
                    c = perm[j]
                    while taken[c]:
                        c += skip[j]
                        if c >= MH_TAB_SIZE:
                            c -= MH_TAB_SIZE
                    perm[j] = c
                    taken[c] = 1
                    s.table[c] = s.dests[j]
                    n += 1
                    if n == MH_TAB_SIZE:
                        break
                if n == MH_TAB_SIZE:
                    break
        free(perm)
        free(skip)
        free(turns)
        free(taken)
        return 0

    # ------------------------------------------------------------ schedulers

    cdef inline bint _usable(self, int32_t did) noexcept nogil:
        return self.dests[did].weight > 0 and not self.dests[did].overload

    cdef int32_t _schedule(self, svc_t *s, uint32_t saddr, uint16_t sport,
                           uint32_t daddr) noexcept nogil:
        cdef int32_t i, p, did, least = -1, k = s.sched, n = s.n
        cdef int64_t loh = 0, doh
        cdef dest_t *d
        cdef uint32_t port, ih, h, off
        if k == RR:
            for i in range(n):
                p = s.rr_pos + 1 + i
                if p >= n:
                    p -= n
                d = &self.dests[s.dests[p]]
                if not d.overload and d.weight > 0:
                    s.rr_pos = p
                    return s.dests[p]
            return -1
        if k == WRR:
            return self._wrr(s)
        if k == LC:
            for i in range(n):
                d = &self.dests[s.dests[i]]
                if d.overload or d.weight == 0:
                    continue
                doh = (<int64_t>d.active << 8) + d.inactive
                if least < 0 or doh < loh:
                    least = s.dests[i]
                    loh = doh
            return least
        if k == WLC or k == SED:
            for i in range(n):
                d = &self.dests[s.dests[i]]
                if not d.overload and d.weight > 0:
                    least = s.dests[i]
                    loh = ((<int64_t>d.active << 8) + d.inactive) if k == WLC else d.active + 1
                    break
            if least < 0:
                return -1
            for p in range(i + 1, n):
                d = &self.dests[s.dests[p]]
                if d.overload:
                    continue
                doh = ((<int64_t>d.active << 8) + d.inactive) if k == WLC else d.active + 1
                if loh * d.weight > doh * self.dests[least].weight:
                    least = s.dests[p]
                    loh = doh
            return least
        if k == NQ:
            for i in range(n):
                d = &self.dests[s.dests[i]]
                if d.overload or d.weight == 0:
                    continue
                doh = d.active + 1
                if d.active == 0:
                    return s.dests[i]
                if least < 0 or loh * d.weight > doh * self.dests[least].weight:
                    least = s.dests[i]
                    loh = doh
            return least
        if k == DH:
            did = s.table[kc_hash_32(daddr, 8)]
            if did < 0:
                return -1
            d = &self.dests[did]
            if not d.available or d.weight <= 0 or d.overload:
                return -1
            return did
        port = sport if s.flags & SVC_F_SCHED2 else 0
        if k == SH:
            ih = kc_hash_32(port + saddr, 8)
            did = s.table[ih]
            if did < 0 or self._usable(did):
                return did
            if not s.flags & SVC_F_SCHED1:
                return -1
            for off in range(SH_TAB_SIZE):
                did = s.table[((off + ih) % SH_TAB_SIZE + kc_hash_32(port + saddr, 8)) & 255]
                if did < 0:
                    return -1
                if self._usable(did):
                    return did
            return -1
        # MH
        ih = mh_hashkey(saddr, port, MH_K1, 0) % MH_TAB_SIZE
        did = s.table[ih]
        if did < 0 or self._usable(did):
            return did
        if not s.flags & SVC_F_SCHED1:
            return -1
        for i in range(n):  # no usable dest: the walk would find none
            if self._usable(s.dests[i]):
                break
        else:
            return -1
        for off in range(MH_TAB_SIZE):
            h = mh_hashkey(saddr, port, MH_K1, (off + ih) % MH_TAB_SIZE) % MH_TAB_SIZE
            did = s.table[h]
            if did < 0:
                return -1
            if self._usable(did):
                return did
        return -1

    cdef int32_t _wrr(self, svc_t *s) noexcept nogil:
        cdef int32_t pos = s.wrr_cl, last, stop = -2, p
        cdef bint last_pass = False, restarted = False
        cdef dest_t *d
        if s.wrr_mw == 0:
            return -1
        last = pos
        while True:
            for p in range(pos + 1, s.n):
                d = &self.dests[s.dests[p]]
                if not d.overload and d.weight >= s.wrr_cw:
                    s.wrr_cl = p
                    return s.dests[p]
                if p == stop:
                    s.wrr_cl = p
                    return -1
            pos = -1
            s.wrr_cw -= s.wrr_di
            if s.wrr_cw <= 0:
                s.wrr_cw = s.wrr_mw
                if last_pass or last == -1:
                    s.wrr_cl = -1
                    return -1
                restarted = True
            last_pass = s.wrr_cw <= s.wrr_di
            if last_pass and restarted and last != -1:
                stop = last

    # ------------------------------------------------------------ table

    cdef inline int64_t _find(self, uint64_t k0, uint64_t k1, uint64_t h) noexcept nogil:
        cdef uint64_t i = h >> self.shift
        cdef conn_t *e
        while True:
            e = &self.tab[i]
            if e.k0 == k0 and (e.k1 & KEYMASK) == k1:
                return <int64_t>i
            if (e.k1 >> 40) & 0xFF == K_EMPTY:
                return -1
            i = (i + 1) & self.mask

    cdef inline int64_t _insert(self, uint64_t k0, uint64_t k1, uint64_t h,
                                int32_t did) noexcept nogil:
        """Take the first empty or dead slot on the probe path (the caller knows the
        key is not live); the caller has reserved room."""
        cdef uint64_t i = h >> self.shift
        cdef int kind
        cdef conn_t *e
        while True:
            e = &self.tab[i]
            kind = (e.k1 >> 40) & 0xFF
            if kind == K_EMPTY or kind == K_DEAD:
                break
            i = (i + 1) & self.mask
        if kind == K_DEAD:
            self.n_dead -= 1
        e.k0 = k0
        e.k1 = k1
        e.dest = did
        e.aux = -1
        e.expires = 0
        e.sched = 0
        return <int64_t>i

    cdef int _grow(self) except -1 nogil:
        with gil:
            self._rehash()
        return 0

    cdef int _rehash(self) except -1:
        cdef conn_t *old = self.tab
        cdef uint64_t old_cap = self.cap, i, new_cap = self.cap
        cdef int64_t live = self.n_conn + self.n_tpl, j, w
        cdef int64_t *remap
        cdef conn_t *e
        cdef int64_t slot
        cdef int kind
        while live * 10 > <int64_t>(new_cap * 4):
            new_cap <<= 1
        remap = <int64_t *>malloc(old_cap * sizeof(int64_t))
        if remap == NULL:
            raise MemoryError()
        try:
            self._alloc_table(new_cap)
        except MemoryError:
            free(remap)
            self.tab = old
            raise
        for i in range(old_cap):
            e = &old[i]
            kind = e_kind(e)
            remap[i] = -1
            if live_kind(kind):
                slot = self._insert(e.k0, e.k1 & KEYMASK,
                                    kc_mix(self.seed, e.k0, e.k1 & KEYMASK), e.dest)
                self.tab[slot] = e[0]
                remap[i] = slot
        for i in range(self.cap):
            e = &self.tab[i]
            if e_kind(e) == K_CONN and e.aux >= 0:
                e.aux = <int32_t>remap[e.aux]
        w = 0
        for j in range(self.hn):
            slot = remap[self.heap[j].slot]
            if slot >= 0 and <uint32_t>(self.heap[j].key >> 1) == self.tab[slot].sched:
                self.heap[w].key = self.heap[j].key
                self.heap[w].slot = slot
                w += 1
        self.hn = w
        j = self.hn // 2 - 1
        while j >= 0:
            self._sift_down(j)
            j -= 1
        free(remap)
        free(old)
        return 0

    # ------------------------------------------------------------ heap

    cdef int _push(self, int64_t key, int64_t slot) except -1 nogil:
        cdef int64_t i, parent
        cdef node_t *nh
        if self.hn == self.hcap:
            with gil:
                nh = <node_t *>realloc(self.heap, 2 * self.hcap * sizeof(node_t))
                if nh == NULL:
                    raise MemoryError()
                self.heap = nh
                self.hcap *= 2
        i = self.hn
        self.hn += 1
        while i > 0:
            parent = (i - 1) >> 1
            if self.heap[parent].key <= key:
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i].key = key
        self.heap[i].slot = slot
        return 0

    cdef void _sift_down(self, int64_t i) noexcept nogil:
        cdef node_t x = self.heap[i]
        cdef int64_t c
        while True:
            c = 2 * i + 1
            if c >= self.hn:
                break
            if c + 1 < self.hn and self.heap[c + 1].key < self.heap[c].key:
                c += 1
            if self.heap[c].key >= x.key:
                break
            self.heap[i] = self.heap[c]
            i = c
        self.heap[i] = x

    cdef inline node_t _pop(self) noexcept nogil:
        cdef node_t top = self.heap[0]
        self.hn -= 1
        if self.hn > 0:
            self.heap[0] = self.heap[self.hn]
            self._sift_down(0)
        return top

    cdef inline int _arm(self, int64_t slot, int64_t t) except -1 nogil:
        cdef conn_t *e = &self.tab[slot]
        cdef int f = e_flags(e)
        e.expires = <uint32_t>t
        if not (f & CF_ARMED) or u32_before(<uint32_t>t, e.sched):
            e.sched = <uint32_t>t
            if not (f & CF_ARMED):
                e_set_flags(e, f | CF_ARMED)
            self._push(t * 2 + (e_kind(e) != K_CONN), slot)
        return 0

    cdef int _advance(self, int64_t now) except -1 nogil:
        cdef node_t nd
        cdef int64_t t, slot
        cdef conn_t *e
        cdef int kind
        if now > self._clock:
            self._clock = now
        now = self._clock
        while self.hn > 0 and (self.heap[0].key >> 1) <= now:
            nd = self._pop()
            t = nd.key >> 1
            slot = nd.slot
            e = &self.tab[slot]
            kind = e_kind(e)
            if not live_kind(kind) or e.sched != <uint32_t>t:
                continue
            if e.expires != <uint32_t>t:  # pushed back: re-queue at its deadline
                t += <int32_t>(e.expires - <uint32_t>t)
                e.sched = e.expires
                self._push(t * 2 + (kind != K_CONN), slot)
                continue
            if kind != K_CONN and e.aux > 0:
                e_set_flags(e, e_flags(e) | CF_REARMED)
                e.expires = e.sched = <uint32_t>(t + TEMPLATE_LATER_MS)
                self._push((t + TEMPLATE_LATER_MS) * 2 + 1, slot)
                continue
            self._expire_conn(slot)
        return 0

    cdef void _expire_conn(self, int64_t slot) noexcept nogil:
        cdef conn_t *e = &self.tab[slot]
        cdef int kind = e_kind(e)
        if kind == K_CONN:
            self.n_conn -= 1
            if e.aux >= 0:
                self.tab[e.aux].aux -= 1
        else:
            self.n_tpl -= 1
        self._unbind(e)
        e_set_kind(e, K_DEAD)
        self.n_dead += 1

    # ------------------------------------------------------------ binding, state

    cdef inline void _bind(self, conn_t *e) noexcept nogil:
        cdef dest_t *d = &self.dests[e.dest]
        d.refcnt += 1
        if e_kind(e) == K_CONN:
            d.inactive += 1
        else:
            d.persist += 1
        if d.u_threshold and d.active + d.inactive >= d.u_threshold:
            d.overload = 1

    cdef inline void _unbind(self, conn_t *e) noexcept nogil:
        cdef dest_t *d = &self.dests[e.dest]
        cdef int32_t total
        if e_kind(e) != K_CONN:
            d.persist -= 1
        elif e_flags(e) & CF_INACTIVE:
            d.inactive -= 1
        else:
            d.active -= 1
        total = d.active + d.inactive
        if d.l_threshold:
            if total < d.l_threshold:
                d.overload = 0
        elif d.u_threshold:
            if <int64_t>total * 4 < <int64_t>d.u_threshold * 3:
                d.overload = 0
        else:
            d.overload = 0
        self._put_dest(e.dest)

    cdef inline int32_t _set_state(self, conn_t *e, uint16_t flags,
                                   bint output) noexcept nogil:
        """The state transition of one packet; returns the new timeout (ms)."""
        cdef int off, state, new, f
        cdef dest_t *d
        if e_proto(e) != TCP:
            return UDP_TIMEOUT_MS
        state = e_state(e)
        f = e_flags(e)
        off = 4 if output else 0
        if f & CF_NOOUT:
            if output:
                f &= ~CF_NOOUT
                e_set_flags(e, f)
            else:
                off = 8
        if flags & F_RST:
            new = TCP_NEXT[off + 3][state]
        elif flags & F_SYN:
            new = TCP_NEXT[off][state]
        elif flags & F_FIN:
            new = TCP_NEXT[off + 1][state]
        elif flags & F_ACK:
            new = TCP_NEXT[off + 2][state]
        else:
            new = S_CLOSE
        if new != state:
            d = &self.dests[e.dest]
            if not (f & CF_INACTIVE) and not TCP_ACTIVE[new]:
                d.active -= 1
                d.inactive += 1
                e_set_flags(e, f | CF_INACTIVE)
            elif (f & CF_INACTIVE) and TCP_ACTIVE[new]:
                d.active += 1
                d.inactive -= 1
                e_set_flags(e, f & ~CF_INACTIVE)
            e_set_state(e, new)
        return TCP_TIMEOUT[new]

    # ------------------------------------------------------------ packets

    cdef int64_t _try_schedule(self, uint8_t proto, uint32_t saddr, uint16_t sport,
                               uint32_t daddr, uint16_t dport, uint16_t flags, uint64_t k0,
                               uint64_t k1, uint64_t h, int64_t now) except -2 nogil:
        """Schedule a new connection and insert it (bound); -1 if none."""
        cdef int32_t sid, did
        cdef svc_t *s
        cdef int64_t slot, tslot
        cdef uint64_t tk0, tk1
        cdef conn_t *ct
        cdef dest_t *d
        sid = self._smap_get((<uint64_t>proto << 48) | (<uint64_t>dport << 32) | daddr)
        if sid < 0:
            return -1
        if proto == TCP and (flags & F_RST or not (self.sloppy_tcp or flags & F_SYN)):
            return -1
        s = &self.svcs[sid]
        if not s.flags & SVC_F_PERSISTENT:
            did = self._schedule(s, saddr, sport, daddr)
            if did < 0:
                return -1
            slot = self._insert(k0, k1, h, did)
            self.n_conn += 1
            self._new_flags(slot, did)
            self._bind(&self.tab[slot])
            return slot
        tk0 = mk_k0(saddr & s.netmask, daddr)
        tk1 = mk_k1(0, 0 if s.port == FTP_PORT else dport, proto, K_TPL)
        tslot = self._find(tk0, tk1, kc_mix(self.seed, tk0, tk1))
        if tslot >= 0:
            d = &self.dests[self.tab[tslot].dest]
            if not d.available or (self.expire_quiescent_template and d.weight == 0):
                e_set_kind(&self.tab[tslot], K_TPLX)
                tslot = -1
        if tslot < 0:
            did = self._schedule(s, saddr, sport, daddr)
            if did < 0:
                return -1
            tslot = self._insert(tk0, tk1, kc_mix(self.seed, tk0, tk1), did)
            self.n_tpl += 1
            self._new_flags(tslot, did)
            self.tab[tslot].aux = 0
            self._bind(&self.tab[tslot])
        ct = &self.tab[tslot]
        slot = self._insert(k0, k1, h, ct.dest)
        self.n_conn += 1
        self._new_flags(slot, ct.dest)
        self._bind(&self.tab[slot])
        self.tab[slot].aux = <int32_t>tslot
        ct.aux += 1
        self._arm(tslot, now + (TEMPLATE_LATER_MS if e_flags(ct) & CF_REARMED
                                else s.timeout_ms))
        return slot

    cdef inline void _new_flags(self, int64_t slot, int32_t did) noexcept nogil:
        e_set_flags(&self.tab[slot], CF_INACTIVE | (CF_NOOUT if self.dests[did].noout else 0))

    cdef int32_t _packet(self, uint8_t proto, uint32_t saddr, uint16_t sport, uint32_t daddr,
                         uint16_t dport, uint16_t flags, uint64_t h) except -2 nogil:
        cdef uint64_t k0 = mk_k0(saddr, daddr)
        cdef uint64_t k1 = mk_k1(sport, dport, proto, K_CONN)
        cdef int64_t slot, old = -1, now = self._clock
        cdef conn_t *e
        cdef dest_t *d
        cdef int state
        if self.n_conn + self.n_tpl + self.n_dead + 2 > self.limit:
            self._grow()  # room for a connection and a template: no rehash below
        slot = self._find(k0, k1, h)
        if flags & F_REPLY:
            if slot < 0:
                return -1
            e = &self.tab[slot]
            self._arm(slot, now + self._set_state(e, flags, True))
            return e.dest
        if slot >= 0:
            e = &self.tab[slot]
            d = &self.dests[e.dest]
            if proto == TCP and flags & F_SYN:
                state = e_state(e)
                if self.expire_nodest_conn and d.weight == 0:
                    old = slot
                elif (self.conn_reuse_mode and e.aux < 0
                      and (state == S_TIME_WAIT or state == S_CLOSE
                           or (self.conn_reuse_mode & 2 and state == S_FIN_WAIT
                               and e_flags(e) & CF_NOOUT))):
                    old = slot
            if old < 0:
                if not d.available:
                    if not self.expire_nodest_conn:
                        return -1
                    old = slot
                else:
                    self._arm(slot, now + self._set_state(e, flags, False))
                    return e.dest
        slot = self._try_schedule(proto, saddr, sport, daddr, dport, flags, k0, k1, h, now)
        if old >= 0:
            self._expire_conn(old)
        if slot < 0:
            return -1
        e = &self.tab[slot]
        self._arm(slot, now + self._set_state(e, flags, False))
        return e.dest

    # ------------------------------------------------------------ traffic (Python API)

    def lookup_or_schedule(self, int proto, uint32_t saddr, int sport, uint32_t daddr,
                           int dport, int flags, int64_t now):
        cdef uint64_t k0 = mk_k0(saddr, daddr)
        cdef uint64_t k1 = mk_k1(sport, dport, proto, K_CONN)
        self._check()
        self._advance(now)
        return self._packet(proto, saddr, sport, daddr, dport, flags,
                            kc_mix(self.seed, k0, k1))

    def process(self, cnp.ndarray flows, now, cnp.ndarray out):
        """flows: contiguous FLOW_DTYPE; now: int or contiguous int64 array; out: int32."""
        cdef flow_t *f = <flow_t *>cnp.PyArray_DATA(flows)
        cdef int32_t *o = <int32_t *>cnp.PyArray_DATA(out)
        cdef int64_t n = cnp.PyArray_DIM(flows, 0)
        cdef int64_t *tarr = NULL
        cdef int64_t tnow = 0
        self._check()
        if isinstance(now, cnp.ndarray):
            tarr = <int64_t *>cnp.PyArray_DATA(<cnp.ndarray>now)
        else:
            tnow = now
        self.busy = True
        try:
            self._process(f, o, n, tarr, tnow)
        finally:
            self.busy = False

    cdef int _process(self, flow_t *f, int32_t *o, int64_t n, int64_t *tarr,
                      int64_t tnow) except -1:
        cdef int64_t i, j, t
        cdef uint64_t hb[16]
        cdef flow_t *g
        with nogil:
            for j in range(min(n, PREFETCH_AHEAD)):
                g = &f[j]
                hb[j & 15] = kc_mix(self.seed, mk_k0(g.saddr, g.daddr),
                                    mk_k1(g.sport, g.dport, g.proto, K_CONN))
            for i in range(n):
                j = i + PREFETCH_AHEAD
                if j < n:
                    g = &f[j]
                    hb[j & 15] = kc_mix(self.seed, mk_k0(g.saddr, g.daddr),
                                        mk_k1(g.sport, g.dport, g.proto, K_CONN))
                    KC_PREFETCH(&self.tab[hb[j & 15] >> self.shift])
                t = tarr[i] if tarr != NULL else tnow
                if t > self._clock:
                    self._clock = t
                if self.hn > 0 and (self.heap[0].key >> 1) <= self._clock:
                    self._advance(self._clock)
                g = &f[i]
                o[i] = self._packet(g.proto, g.saddr, g.sport, g.daddr, g.dport, g.flags,
                                    hb[i & 15])

    def expire(self, int64_t now):
        self._check()
        self._advance(now)

    def conn_count(self):
        return self.n_conn, self.n_tpl

    def conn_info(self, int proto, uint32_t saddr, int sport, uint32_t daddr, int dport):
        cdef uint64_t k0 = mk_k0(saddr, daddr)
        cdef uint64_t k1 = mk_k1(sport, dport, proto, K_CONN)
        cdef int64_t slot = self._find(k0, k1, kc_mix(self.seed, k0, k1))
        cdef conn_t *e
        if slot < 0:
            return None
        e = &self.tab[slot]
        expires = self._clock + <int32_t>(e.expires - <uint32_t>self._clock)
        return (e.dest, e_state(e), bool(e_flags(e) & CF_INACTIVE), expires, e.aux >= 0)

    def table_stats(self):
        """(capacity, connections, templates, dead slots, heap nodes)."""
        return self.cap, self.n_conn, self.n_tpl, self.n_dead, self.hn
