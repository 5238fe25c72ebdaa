# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""WAL record codec, native: the same functions and results as
kcore.store.walcodec_ref (see there for the record layout and the contract).

CRC-32C: a slicing-by-8 table everywhere; on x86-64 with GCC or Clang an SSE4.2
version is compiled in as well and used when the CPU has it (checked once at
import). `IMPLEMENTATION` says which one runs; `_use_hardware(False)` forces the
table (tests check both against the reference).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyObject_GetBuffer, PyBuffer_Release
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    #include <string.h>

    static uint32_t kc_tab[8][256];
    static int kc_use_hw = 0;

    static void kc_init_tables(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            kc_tab[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = kc_tab[0][i];
            for (int s = 1; s < 8; s++) {
                c = kc_tab[0][c & 0xff] ^ (c >> 8);
                kc_tab[s][i] = c;
            }
        }
    }

    static uint32_t kc_crc_table(uint32_t c, const unsigned char *p, size_t n) {
        while (n && ((uintptr_t)p & 7)) { c = kc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
        while (n >= 8) {
            uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                               (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
                          (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
            c = kc_tab[7][lo & 0xff] ^ kc_tab[6][(lo >> 8) & 0xff] ^
                kc_tab[5][(lo >> 16) & 0xff] ^ kc_tab[4][lo >> 24] ^
                kc_tab[3][hi & 0xff] ^ kc_tab[2][(hi >> 8) & 0xff] ^
                kc_tab[1][(hi >> 16) & 0xff] ^ kc_tab[0][hi >> 24];
            p += 8;
            n -= 8;
        }
        while (n--) c = kc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        return c;
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <nmmintrin.h>
    #define KC_HW_BUILT 1
    __attribute__((target("sse4.2")))
    static uint32_t kc_crc_hw(uint32_t c, const unsigned char *p, size_t n) {
        uint64_t c64;
        while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8(c, *p++); n--; }
        c64 = c;
        while (n >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            c64 = _mm_crc32_u64(c64, v);
            p += 8;
            n -= 8;
        }
        c = (uint32_t)c64;
        while (n--) c = _mm_crc32_u8(c, *p++);
        return c;
    }
    static int kc_hw_detect(void) { __builtin_cpu_init(); return __builtin_cpu_supports("sse4.2"); }
    #else
    #define KC_HW_BUILT 0
    static uint32_t kc_crc_hw(uint32_t c, const unsigned char *p, size_t n) {
        return kc_crc_table(c, p, n);
    }
    static int kc_hw_detect(void) { return 0; }
    #endif

    static inline uint32_t kc_crc32c(uint32_t value, const unsigned char *p, size_t n) {
        uint32_t c = ~value;
        c = kc_use_hw ? kc_crc_hw(c, p, n) : kc_crc_table(c, p, n);
        return ~c;
    }

    static inline void kc_put32(unsigned char *p, uint32_t v) {
        p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
        p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
    }
    static inline void kc_put64(unsigned char *p, uint64_t v) {
        kc_put32(p, (uint32_t)v); kc_put32(p + 4, (uint32_t)(v >> 32));
    }
    static inline uint32_t kc_get32(const unsigned char *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    static inline uint64_t kc_get64(const unsigned char *p) {
        return (uint64_t)kc_get32(p) | (uint64_t)kc_get32(p + 4) << 32;
    }
    static inline int kc_is_zero(const unsigned char *p, size_t n) {
        while (n--) if (*p++) return 0;
        return 1;
    }
    /* one past the last non-zero byte of p[start:size], or start */
    static size_t kc_last_nonzero(const unsigned char *p, size_t start, size_t size) {
        size_t i = size;
        while (i > start && (i & 7)) { if (p[i - 1]) return i; i--; }
        while (i >= start + 8) {
            uint64_t v;
            memcpy(&v, p + i - 8, 8);
            if (v) break;
            i -= 8;
        }
        while (i > start) { if (p[i - 1]) return i; i--; }
        return start;
    }
    """
    int KC_HW_BUILT
    int kc_use_hw
    void kc_init_tables() nogil
    int kc_hw_detect() nogil
    uint32_t kc_crc32c(uint32_t value, const unsigned char *p, size_t n) nogil
    void kc_put32(unsigned char *p, uint32_t v) nogil
    void kc_put64(unsigned char *p, uint64_t v) nogil
    uint32_t kc_get32(const unsigned char *p) nogil
    uint64_t kc_get64(const unsigned char *p) nogil
    int kc_is_zero(const unsigned char *p, size_t n) nogil
    size_t kc_last_nonzero(const unsigned char *p, size_t start, size_t size) nogil

cdef enum:
    _HDR = 16
    _ENTRY_HDR = 17
    _NOGIL_CRC = 65536
    C_REC_ENTRY = 2
    C_REC_HARDSTATE = 3
    C_REC_MAX = 5
    C_FLAG_BATCH = 1
    C_STOP_END = 0
    C_STOP_ZERO = 1
    C_STOP_SHORT = 2
    C_STOP_HEADER_CRC = 3
    C_STOP_PAYLOAD_CRC = 4
    C_STOP_FRAMING = 5

HEADER_SIZE = _HDR
ALIGN = 8
REC_METADATA = 1
REC_ENTRY = C_REC_ENTRY
REC_HARDSTATE = C_REC_HARDSTATE
REC_SNAPSHOT = 4
REC_SEGMENT = 5
REC_MAX = C_REC_MAX
FLAG_BATCH = C_FLAG_BATCH
STOP_END = C_STOP_END
STOP_ZERO = C_STOP_ZERO
STOP_SHORT = C_STOP_SHORT
STOP_HEADER_CRC = C_STOP_HEADER_CRC
STOP_PAYLOAD_CRC = C_STOP_PAYLOAD_CRC
STOP_FRAMING = C_STOP_FRAMING
ENTRY_HEADER_SIZE = _ENTRY_HDR

cdef uint32_t _type_crc[256]



cdef void _init() noexcept:
    global kc_use_hw
    cdef unsigned char b
    kc_init_tables()
    for t in range(256):
        b = <unsigned char>t
        _type_crc[t] = kc_crc32c(0, &b, 1)
    kc_use_hw = kc_hw_detect()


_init()
IMPLEMENTATION = "sse4.2" if kc_use_hw else "table"


def _use_hardware(bint on):
    """Switch the SSE4.2 CRC on or off (off: the table); returns whether it is on."""
    global kc_use_hw, IMPLEMENTATION
    kc_use_hw = 1 if (on and KC_HW_BUILT and kc_hw_detect()) else 0
    IMPLEMENTATION = "sse4.2" if kc_use_hw else "table"
    return bool(kc_use_hw)


cdef inline Py_ssize_t _size(Py_ssize_t n) noexcept nogil:
    return _HDR + n + ((-n) & 7)


cdef inline void _frame(unsigned char *out, unsigned char rtype, unsigned char flags,
                        Py_ssize_t n) noexcept:
    """Header for the payload already at out + 16; zero padding after it."""
    cdef uint32_t pcrc
    if n >= _NOGIL_CRC:
        with nogil:
            pcrc = kc_crc32c(_type_crc[rtype], out + _HDR, <size_t>n)
    else:
        pcrc = kc_crc32c(_type_crc[rtype], out + _HDR, <size_t>n)
    kc_put32(out, <uint32_t>n)
    out[4] = rtype
    out[5] = flags
    out[6] = 0
    out[7] = 0
    kc_put32(out + 8, pcrc)
    kc_put32(out + 12, kc_crc32c(0, out, 12))
    memset(out + _HDR + n, 0, (-n) & 7)


def crc32c(data, uint32_t value=0):
    """CRC-32C (Castagnoli) of data, continuing from value."""
    cdef Py_buffer view
    cdef uint32_t c
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len >= _NOGIL_CRC:
            with nogil:
                c = kc_crc32c(value, <const unsigned char *>view.buf, <size_t>view.len)
        else:
            c = kc_crc32c(value, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return c


def record_size(Py_ssize_t payload_len):
    """Bytes a record with this payload occupies on disk."""
    return _size(payload_len)


def encode_record(unsigned char rtype, payload, unsigned char flags=0):
    """One framed record."""
    cdef Py_buffer view
    cdef bytes out
    cdef unsigned char *o
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if view.len > 0xFFFFFFFF:
            raise ValueError("record payload too large")
        out = PyBytes_FromStringAndSize(NULL, _size(view.len))
        o = <unsigned char *>PyBytes_AS_STRING(out)
        memcpy(o + _HDR, view.buf, view.len)
        _frame(o, rtype, flags, view.len)
    finally:
        PyBuffer_Release(&view)
    return out


def encode_batch(entries, hardstate=None):
    """Entry records (objects with .index .term .type .data), then a hardstate
    record (.term .vote .commit) unless hardstate is None."""
    cdef list items = entries if type(entries) is list else list(entries)
    cdef Py_ssize_t count = len(items), i, total = 0, n, off = 0
    cdef list datas = [None] * count
    cdef object e, d
    cdef bytes out
    cdef unsigned char *o
    for i in range(count):
        d = items[i].data
        if type(d) is not bytes:
            d = bytes(d)
        datas[i] = d
        n = _ENTRY_HDR + PyBytes_GET_SIZE(d)
        if n > 0xFFFFFFFF:
            raise ValueError("entry too large")
        total += _size(n)
    if hardstate is not None:
        total += _size(24)
    out = PyBytes_FromStringAndSize(NULL, total)
    o = <unsigned char *>PyBytes_AS_STRING(out)
    for i in range(count):
        e = items[i]
        d = datas[i]
        n = PyBytes_GET_SIZE(d)
        kc_put64(o + off + _HDR, <uint64_t>e.index)
        kc_put64(o + off + _HDR + 8, <uint64_t>e.term)
        o[off + _HDR + 16] = <unsigned char>e.type
        memcpy(o + off + _HDR + _ENTRY_HDR, PyBytes_AS_STRING(d), n)
        _frame(o + off, C_REC_ENTRY, 0, _ENTRY_HDR + n)
        off += _size(_ENTRY_HDR + n)
    if hardstate is not None:
        kc_put64(o + off + _HDR, <uint64_t>hardstate.term)
        kc_put64(o + off + _HDR + 8, <uint64_t>hardstate.vote)
        kc_put64(o + off + _HDR + 16, <uint64_t>hardstate.commit)
        _frame(o + off, C_REC_HARDSTATE, 0, 24)
    return out


def mark_batch_start(buf, Py_ssize_t offset=0):
    """Set FLAG_BATCH on the record at offset (in place, header CRC updated)."""
    cdef Py_buffer view
    cdef unsigned char *p
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        if offset < 0 or offset + _HDR > view.len:
            raise IndexError("no record header at that offset")
        p = <unsigned char *>view.buf + offset
        p[5] |= C_FLAG_BATCH
        kc_put32(p + 12, kc_crc32c(0, p, 12))
    finally:
        PyBuffer_Release(&view)


def decode(buf, Py_ssize_t start=0):
    """Decode records from buf[start:]: (records, end, stop); see the reference."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t size, off, body, nxt, n
    cdef unsigned char rtype
    cdef uint32_t pcrc
    cdef int stop
    cdef list records = []
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char *>view.buf
        size = view.len
        if start < 0 or start > size:
            raise ValueError("start outside the buffer")
        off = start
        while True:
            if off == size:
                stop = C_STOP_END
                break
            if size - off < _HDR:
                stop = C_STOP_ZERO if kc_is_zero(p + off, size - off) else C_STOP_SHORT
                break
            if kc_crc32c(0, p + off, 12) != kc_get32(p + off + 12):
                stop = C_STOP_ZERO if kc_is_zero(p + off, _HDR) else C_STOP_HEADER_CRC
                break
            n = kc_get32(p + off)
            rtype = p[off + 4]
            if rtype == 0 or rtype > C_REC_MAX or (p[off + 5] & ~C_FLAG_BATCH) or p[off + 6] or p[off + 7]:
                stop = C_STOP_FRAMING
                break
            body = off + _HDR
            nxt = body + n + ((-n) & 7)
            if nxt > size:
                stop = C_STOP_SHORT
                break
            if n >= _NOGIL_CRC:
                with nogil:
                    pcrc = kc_crc32c(_type_crc[rtype], p + body, <size_t>n)
            else:
                pcrc = kc_crc32c(_type_crc[rtype], p + body, <size_t>n)
            if pcrc != kc_get32(p + off + 8):
                stop = C_STOP_PAYLOAD_CRC
                break
            if not kc_is_zero(p + body + n, nxt - body - n):
                stop = C_STOP_FRAMING
                break
            records.append((rtype, off, PyBytes_FromStringAndSize(<const char *>p + body, n)))
            off = nxt
    finally:
        PyBuffer_Release(&view)
    return records, off, stop


def read_header(buf, Py_ssize_t offset):
    """(payload length, type, flags) of a header whose own CRC is valid, else None."""
    cdef Py_buffer view
    cdef const unsigned char *p
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        if offset < 0 or view.len - offset < _HDR:
            return None
        p = <const unsigned char *>view.buf + offset
        if kc_crc32c(0, p, 12) != kc_get32(p + 12):
            return None
        return kc_get32(p), p[4], p[5]
    finally:
        PyBuffer_Release(&view)


def find_batch_start(buf, Py_ssize_t start, Py_ssize_t stop):
    """Offset of the first 8-aligned header in [start, stop) with a valid header CRC
    and FLAG_BATCH set, or -1."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t off, last
    cdef Py_ssize_t found = -1
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char *>view.buf
        if start < 0:
            start = 0
        off = start + ((-start) & 7)
        last = min(stop, view.len - _HDR + 1)
        with nogil:
            while off < last:
                if (p[off + 5] & C_FLAG_BATCH) and kc_crc32c(0, p + off, 12) == kc_get32(p + off + 12):
                    found = off
                    break
                off += 8
    finally:
        PyBuffer_Release(&view)
    return found


def last_nonzero(buf, Py_ssize_t start=0):
    """One past the last non-zero byte of buf, or start if buf[start:] is all zero."""
    cdef Py_buffer view
    cdef size_t r
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        if start < 0:
            raise ValueError("negative start")
        if start >= view.len:
            return start
        with nogil:
            r = kc_last_nonzero(<const unsigned char *>view.buf, <size_t>start, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return r


def decode_entry(payload):
    """(index, term, type, data); ValueError if too short."""
    cdef const unsigned char *p
    cdef Py_ssize_t n
    if type(payload) is not bytes:
        payload = bytes(payload)
    n = PyBytes_GET_SIZE(payload)
    if n < _ENTRY_HDR:
        raise ValueError(f"entry record too short ({n} bytes)")
    p = <const unsigned char *>PyBytes_AS_STRING(payload)
    return (kc_get64(p), kc_get64(p + 8), p[16],
            PyBytes_FromStringAndSize(<const char *>p + _ENTRY_HDR, n - _ENTRY_HDR))
