# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The API server's compare-and-put request on the wire, native: the same
functions and results as kcore.store.cas.encode_txn_ref and
kcore.store.server.encode_request_ref (see there for the layout). One exact-size
allocation per request instead of a dozen concatenations in Python
(3.7 + 1.1 µs -> well under 1 µs per write here)."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy


cdef inline Py_ssize_t _vlen(uint64_t n) noexcept nogil:
    cdef Py_ssize_t k = 1
    while n > 0x7F:
        n >>= 7
        k += 1
    return k


cdef inline char* _vput(char* p, uint64_t n) noexcept nogil:
    while n > 0x7F:
        p[0] = <char>((n & 0x7F) | 0x80)
        p += 1
        n >>= 7
    p[0] = <char>n
    return p + 1


cdef inline char* _bytes_field(char* p, unsigned char tag, const char* s, Py_ssize_t n) noexcept nogil:
    p[0] = <char>tag
    p = _vput(p + 1, <uint64_t>n)
    memcpy(p, s, n)
    return p + n


cdef inline Py_ssize_t _field_size(Py_ssize_t n) noexcept nogil:
    return 1 + _vlen(<uint64_t>n) + n


def encode_txn(bytes key not None, bytes value not None, int64_t lease, int64_t mod_revision):
    """The TxnRequest {compare: [key MOD == mod_revision], success: [put key value
    lease], failure: [range key]} on the wire (an int64 < 0 as its two's complement,
    as protobuf encodes it)."""
    cdef Py_ssize_t klen = PyBytes_GET_SIZE(key)
    cdef Py_ssize_t vlen = PyBytes_GET_SIZE(value)
    cdef const char* k = PyBytes_AS_STRING(key)
    cdef uint64_t mod_u = <uint64_t>mod_revision
    cdef uint64_t lease_u = <uint64_t>lease
    cdef Py_ssize_t kf = _field_size(klen)
    cdef Py_ssize_t compare = 2 + kf + 1 + _vlen(mod_u)
    cdef Py_ssize_t put = kf
    if vlen:
        put += _field_size(vlen)
    if lease:
        put += 1 + _vlen(lease_u)
    cdef Py_ssize_t success = _field_size(put)
    cdef Py_ssize_t failure = _field_size(kf)
    cdef Py_ssize_t total = _field_size(compare) + _field_size(success) + _field_size(failure)
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* p = PyBytes_AS_STRING(out)
    # TxnRequest.compare (1): Compare{target=MOD (2), key (3), mod_revision (6)}
    p[0] = <char>0x0A
    p = _vput(p + 1, <uint64_t>compare)
    p[0] = <char>0x10
    p[1] = <char>0x02
    p = _bytes_field(p + 2, 0x1A, k, klen)
    p[0] = <char>0x30
    p = _vput(p + 1, mod_u)
    # TxnRequest.success (2): RequestOp{request_put (2): PutRequest{key, value, lease}}
    p[0] = <char>0x12
    p = _vput(p + 1, <uint64_t>success)
    p[0] = <char>0x12
    p = _vput(p + 1, <uint64_t>put)
    p = _bytes_field(p, 0x0A, k, klen)
    if vlen:
        p = _bytes_field(p, 0x12, PyBytes_AS_STRING(value), vlen)
    if lease:
        p[0] = <char>0x18
        p = _vput(p + 1, lease_u)
    # TxnRequest.failure (3): RequestOp{request_range (1): RangeRequest{key}}
    p[0] = <char>0x1A
    p = _vput(p + 1, <uint64_t>failure)
    p[0] = <char>0x0A
    p = _vput(p + 1, <uint64_t>kf)
    _bytes_field(p, 0x0A, k, klen)
    return out


def encode_request(uint64_t rid, bytes tag not None, bytes body not None):
    """An InternalRequest's wire bytes: field 1 (ID = rid), then `tag` (the request
    field's key byte(s)) and `body` as a length-delimited field."""
    cdef Py_ssize_t tlen = PyBytes_GET_SIZE(tag)
    cdef Py_ssize_t blen = PyBytes_GET_SIZE(body)
    out = PyBytes_FromStringAndSize(NULL, 1 + _vlen(rid) + tlen + _vlen(<uint64_t>blen) + blen)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = <char>0x08
    p = _vput(p + 1, rid)
    memcpy(p, PyBytes_AS_STRING(tag), tlen)
    p = _vput(p + tlen, <uint64_t>blen)
    memcpy(p, PyBytes_AS_STRING(body), blen)
    return out
