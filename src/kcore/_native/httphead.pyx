# cython: language_level=3, boundscheck=False, wraparound=False
"""The fast HTTP/1.1 front's request-head parser, native: the same contract and
results as kcore.apiserver.fastpath.parse_head_ref (see there), without decoding
and splitting the whole head into Python strings first (3.1 -> under 1 µs for a
usual head here). Lines, the request line's three parts and the header names are
found by scanning the bytes; a header's name and value become latin-1 str (as the
reference decodes them); what the reference does with Python string methods on a
value it needs (Content-Length's digits, Connection's tokens) is done here the
same way on those str."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1


cdef inline bint _ws(unsigned char c) noexcept nogil:
    # what the reference strips: " \t\n\r\x0b\x0c" (bytes.strip's ASCII whitespace)
    return c == 32 or (9 <= c <= 13)


cdef inline bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lower_ascii,
                      Py_ssize_t m) noexcept nogil:
    """ASCII-case-insensitive equality with a lower-case ASCII name (a byte >= 0x80
    never matches: str.lower() of a latin-1 letter stays outside ASCII)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if n != m:
        return False
    for i in range(n):
        c = p[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>lower_ascii[i]:
            return False
    return True


cdef inline Py_ssize_t _find_crlf(const unsigned char* p, Py_ssize_t start,
                                  Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = start
    while i + 1 < n:
        if p[i] == 13 and p[i + 1] == 10:
            return i
        i += 1
    return n


cdef inline str _latin1(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    return PyUnicode_DecodeLatin1(<const char*>(p + a), b - a, NULL)


def parse_head(bytes head not None, make):
    """`make(method, target, headers, length, keep_alive)` of the request line and
    headers (without the blank line), or None for anything the fast front does not
    serve itself (the reference's rules)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(head)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t e0 = _find_crlf(p, 0, n)
    cdef Py_ssize_t s1 = -1, s2 = -1, i, a, b, colon, na, nb, va, vb
    # the request line: exactly three parts separated by single spaces
    for i in range(e0):
        if p[i] == 32:
            if s1 < 0:
                s1 = i
            elif s2 < 0:
                s2 = i
            else:
                return None
    if s2 < 0:
        return None
    if not (e0 - s2 - 1 == 8 and p[s2 + 1] == 72 and p[s2 + 2] == 84 and p[s2 + 3] == 84
            and p[s2 + 4] == 80 and p[s2 + 5] == 47 and p[s2 + 6] == 49
            and p[s2 + 7] == 46 and p[s2 + 8] == 49):          # "HTTP/1.1"
        return None
    if s2 == s1 + 1 or p[s1 + 1] != 47:                          # target starts with "/"
        return None
    for i in range(s1 + 1, s2):
        if p[i] >= 0x80:                                         # target.isascii()
            return None
    method = _latin1(p, 0, s1)
    if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        return None
    target = _latin1(p, s1 + 1, s2)
    headers = []
    length = -1
    keep_alive = True
    a = e0 + 2
    while a <= n and e0 < n:
        b = _find_crlf(p, a, n)
        colon = -1
        for i in range(a, b):
            if p[i] == 58:
                colon = i
                break
        if colon < 0 or colon == a:
            return None                  # no ":" or an empty name
        if _ws(p[a]) or _ws(p[colon - 1]):
            return None                  # a name with surrounding whitespace, or folded
        na, nb = a, colon
        va, vb = colon + 1, b
        while va < vb and _ws(p[va]):
            va += 1
        while vb > va and _ws(p[vb - 1]):
            vb -= 1
        name = _latin1(p, na, nb)
        v = _latin1(p, va, vb)
        if _ieq(p + na, nb - na, b"content-length", 14):
            if not (v.isascii() and v.isdigit()) or (length >= 0 and int(v) != length):
                return None
            length = int(v)
        elif (_ieq(p + na, nb - na, b"transfer-encoding", 17)
              or _ieq(p + na, nb - na, b"upgrade", 7) or _ieq(p + na, nb - na, b"expect", 6)):
            return None
        elif _ieq(p + na, nb - na, b"connection", 10):
            tokens = {t.strip().lower() for t in v.split(",")}
            if "upgrade" in tokens:
                return None
            if "close" in tokens:
                keep_alive = False
        headers.append((name, v))
        if b >= n:
            break
        a = b + 2
    return make(method, target, headers, length if length > 0 else 0, keep_alive)
