# libs: nghttp2
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""HTTP/2 + gRPC framing for the store's native front end.

`Connection` is an asyncio Protocol. All bytes of one `data_received` go
through nghttp2 in a single `nghttp2_session_mem_recv`; gRPC messages are
reassembled in C (no Python object per frame); calls whose request is
complete are dispatched once the whole buffer is parsed; a unary handler is
driven without a Task and only handed to one (by `hooks.spawn_unary`) if it
suspends; every frame produced is written with one `transport.write`.

Sockets, TLS, tasks, deadlines and shutdown policy belong to
`kcore.store.rpc.native_server`, which passes itself in as `hooks`.
The method table maps the `:path` as bytes to
`(kind, parse_request, handler, method)`, kind 1 unary, 2 server stream, 3 bidi.
"""
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t
from libc.string cimport memcpy, memcmp, memmove
from libc.stdlib cimport malloc, realloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_XDECREF

import logging
import sys

from kcore.store.errors import StoreError

# Python >= 3.12: run unary handlers as eager Tasks (asyncio.wait_for and
# asyncio.timeout need a current task there); before: drive the coroutine here.
cdef bint _EAGER = sys.version_info >= (3, 12)

_log = logging.getLogger("kcore.store.rpc.native_server")

cdef extern from "Python.h":
    # 0 = returned (value in *presult), 1 = yielded (value in *presult), -1 = raised
    int PyIter_Send(object iterator, object arg, PyObject **presult) except -1

cdef extern from "nghttp2/nghttp2.h":
    ctypedef struct nghttp2_session:
        pass
    ctypedef struct nghttp2_session_callbacks:
        pass
    ctypedef struct nghttp2_option:
        pass
    ctypedef struct nghttp2_nv:
        uint8_t *name
        uint8_t *value
        size_t namelen
        size_t valuelen
        uint8_t flags
    ctypedef struct nghttp2_frame_hd:
        size_t length
        int32_t stream_id
        uint8_t type
        uint8_t flags
    ctypedef struct nghttp2_headers:
        nghttp2_frame_hd hd
        int cat
    ctypedef union nghttp2_frame:
        nghttp2_frame_hd hd
        nghttp2_headers headers
    ctypedef union nghttp2_data_source:
        int fd
        void *ptr
    ctypedef ssize_t (*nghttp2_data_source_read_callback)(
        nghttp2_session *, int32_t, uint8_t *, size_t, uint32_t *,
        nghttp2_data_source *, void *) noexcept
    ctypedef struct nghttp2_data_provider:
        nghttp2_data_source source
        nghttp2_data_source_read_callback read_callback
    ctypedef struct nghttp2_settings_entry:
        int32_t settings_id
        uint32_t value

    ctypedef int (*on_begin_headers_cb)(nghttp2_session *, const nghttp2_frame *, void *) noexcept
    ctypedef int (*on_header_cb)(nghttp2_session *, const nghttp2_frame *, const uint8_t *, size_t,
                                 const uint8_t *, size_t, uint8_t, void *) noexcept
    ctypedef int (*on_frame_recv_cb)(nghttp2_session *, const nghttp2_frame *, void *) noexcept
    ctypedef int (*on_data_chunk_recv_cb)(nghttp2_session *, uint8_t, int32_t, const uint8_t *,
                                          size_t, void *) noexcept
    ctypedef int (*on_stream_close_cb)(nghttp2_session *, int32_t, uint32_t, void *) noexcept

    int nghttp2_session_callbacks_new(nghttp2_session_callbacks **)
    void nghttp2_session_callbacks_set_on_begin_headers_callback(nghttp2_session_callbacks *, on_begin_headers_cb)
    void nghttp2_session_callbacks_set_on_header_callback(nghttp2_session_callbacks *, on_header_cb)
    void nghttp2_session_callbacks_set_on_frame_recv_callback(nghttp2_session_callbacks *, on_frame_recv_cb)
    void nghttp2_session_callbacks_set_on_data_chunk_recv_callback(nghttp2_session_callbacks *, on_data_chunk_recv_cb)
    void nghttp2_session_callbacks_set_on_stream_close_callback(nghttp2_session_callbacks *, on_stream_close_cb)
    void nghttp2_session_callbacks_set_on_frame_send_callback(nghttp2_session_callbacks *, on_frame_recv_cb)
    int nghttp2_option_new(nghttp2_option **)
    void nghttp2_option_set_no_closed_streams(nghttp2_option *, int)
    void nghttp2_option_set_no_auto_window_update(nghttp2_option *, int)

    int nghttp2_session_server_new2(nghttp2_session **, const nghttp2_session_callbacks *, void *,
                                    const nghttp2_option *)
    void nghttp2_session_del(nghttp2_session *)
    ssize_t nghttp2_session_mem_recv(nghttp2_session *, const uint8_t *, size_t)
    ssize_t nghttp2_session_mem_send(nghttp2_session *, const uint8_t **)
    int nghttp2_session_want_read(nghttp2_session *)
    int nghttp2_session_want_write(nghttp2_session *)
    int nghttp2_session_resume_data(nghttp2_session *, int32_t)
    void *nghttp2_session_get_stream_user_data(nghttp2_session *, int32_t)
    int nghttp2_session_set_stream_user_data(nghttp2_session *, int32_t, void *)
    int nghttp2_session_set_local_window_size(nghttp2_session *, uint8_t, int32_t, int32_t)
    int32_t nghttp2_session_get_last_proc_stream_id(nghttp2_session *)
    int nghttp2_session_get_stream_remote_close(nghttp2_session *, int32_t)
    int nghttp2_session_consume_stream(nghttp2_session *, int32_t, size_t)
    int nghttp2_session_consume_connection(nghttp2_session *, size_t)
    int nghttp2_submit_settings(nghttp2_session *, uint8_t, const nghttp2_settings_entry *, size_t)
    int nghttp2_submit_response(nghttp2_session *, int32_t, const nghttp2_nv *, size_t,
                                const nghttp2_data_provider *)
    int nghttp2_submit_trailer(nghttp2_session *, int32_t, const nghttp2_nv *, size_t)
    int nghttp2_submit_rst_stream(nghttp2_session *, uint8_t, int32_t, uint32_t)
    int nghttp2_submit_goaway(nghttp2_session *, uint8_t, int32_t, uint32_t, const uint8_t *, size_t)
    const char *nghttp2_strerror(int)

    enum:
        NGHTTP2_DATA
        NGHTTP2_HEADERS
        NGHTTP2_FLAG_NONE
        NGHTTP2_FLAG_END_STREAM
        NGHTTP2_HCAT_REQUEST
        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        NGHTTP2_NO_ERROR
        NGHTTP2_CANCEL
        NGHTTP2_ERR_DEFERRED
        NGHTTP2_ERR_CALLBACK_FAILURE
        NGHTTP2_DATA_FLAG_EOF
        NGHTTP2_DATA_FLAG_NO_END_STREAM
        NGHTTP2_NV_FLAG_NONE
        NGHTTP2_NV_FLAG_NO_COPY_NAME
        NGHTTP2_NV_FLAG_NO_COPY_VALUE


cdef enum:
    K_UNARY = 1
    K_SERVER_STREAM = 2
    K_BIDI = 3
    # gRPC status codes used here
    S_OK = 0
    S_CANCELLED = 1
    S_UNKNOWN = 2
    S_RESOURCE_EXHAUSTED = 8
    S_UNIMPLEMENTED = 12
    S_INTERNAL = 13
    # A stream's send buffer above HIGH_WATER makes send() wait until it drains to LOW_WATER.
    HIGH_WATER = 256 * 1024
    LOW_WATER = 64 * 1024
    # One flush writes at most this much, then yields to the loop.
    FLUSH_CAP = 1024 * 1024
    STREAM_WINDOW = 1024 * 1024
    CONN_WINDOW = 16 * 1024 * 1024
    MAX_STREAMS = 4096

cdef nghttp2_session_callbacks *_callbacks = NULL
cdef nghttp2_option *_option = NULL

cdef const char *_S_STATUS = ":status"
cdef const char *_S_200 = "200"
cdef const char *_S_CT = "content-type"
cdef const char *_S_GRPC = "application/grpc"
cdef const char *_S_GSTATUS = "grpc-status"
cdef const char *_S_GMESSAGE = "grpc-message"
cdef const char *_S_ZERO = "0"

cdef uint8_t NOCOPY = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE


cdef inline void _nv(nghttp2_nv *nv, const char *name, size_t namelen,
                     const char *value, size_t valuelen, uint8_t flags) noexcept:
    nv.name = <uint8_t *>name
    nv.namelen = namelen
    nv.value = <uint8_t *>value
    nv.valuelen = valuelen
    nv.flags = flags


def percent_encode(str message) -> bytes:
    """grpc-message encoding: UTF-8, then %XX for bytes outside 0x20-0x7E and '%'."""
    cdef bytes raw = message.encode("utf-8", "replace")
    cdef bytearray out
    cdef unsigned char ch
    cdef bint plain = True
    for ch in raw:
        if ch < 0x20 or ch > 0x7E or ch == 0x25:
            plain = False
            break
    if plain:
        return raw
    out = bytearray()
    for ch in raw:
        if ch < 0x20 or ch > 0x7E or ch == 0x25:
            out += b"%%%02X" % ch
        else:
            out.append(ch)
    return bytes(out)


cdef double _parse_timeout(const uint8_t *v, size_t n) noexcept:
    """grpc-timeout: 1-8 ASCII digits and a unit (H M S m u n); -1 if malformed."""
    cdef double value = 0
    cdef size_t i
    if n < 2 or n > 9:
        return -1
    for i in range(n - 1):
        if v[i] < 48 or v[i] > 57:
            return -1
        value = value * 10 + (v[i] - 48)
    u = v[n - 1]
    if u == 72:    # H
        return value * 3600.0
    if u == 77:    # M
        return value * 60.0
    if u == 83:    # S
        return value
    if u == 109:   # m
        return value / 1e3
    if u == 117:   # u
        return value / 1e6
    if u == 110:   # n
        return value / 1e9
    return -1


cdef class Stream:
    """One gRPC call. Python code (native_server) uses: send_message, writable,
    finish, reply, reset, and the attributes below; all are no-ops once closed."""
    cdef readonly int32_t id
    cdef readonly Connection conn
    cdef readonly object method
    cdef readonly int kind
    cdef readonly bytes path
    cdef readonly double timeout
    cdef readonly bint closed
    cdef readonly bint remote_closed
    cdef readonly bint finishing
    cdef bint hdr_done, started, headers_sent, deferred, queued, bad_content_type
    cdef int err_code
    cdef object err_msg
    cdef unsigned char hdr[5]
    cdef int hdr_have
    cdef bint in_body
    cdef Py_ssize_t need, have
    cdef bytes cur
    cdef list msgs
    cdef char *wbuf
    cdef Py_ssize_t wlen, woff, wcap
    cdef int status
    cdef bytes status_msg
    cdef public object task, sink, waiter, timer
    cdef public bint deadline_hit
    cdef bint end_sent
    # receive flow control: the connection window is re-opened as bytes arrive
    # (so one stalled stream cannot block the others); the stream window too,
    # except for complete messages queued for a bidi handler not read yet
    cdef Py_ssize_t recv_total, consumed_total, held
    cdef int64_t rst_after

    def __cinit__(self):
        self.timeout = -1
        self.err_code = -1
        self.rst_after = -1
        self.wbuf = NULL

    def __dealloc__(self):
        if self.wbuf != NULL:
            free(self.wbuf)

    # ---- incoming ----------------------------------------------------------------

    cdef int _feed(self, const uint8_t *data, size_t length) except -1:
        cdef size_t take
        cdef Py_ssize_t n
        if self.err_code >= 0 or self.finishing or self.closed:
            return 0
        while length:
            if not self.in_body:
                take = 5 - self.hdr_have
                if take > length:
                    take = length
                memcpy(self.hdr + self.hdr_have, data, take)
                self.hdr_have += take
                data += take
                length -= take
                if self.hdr_have < 5:
                    return 0
                self.hdr_have = 0
                if self.hdr[0] != 0:
                    self._fail(S_UNIMPLEMENTED,
                               "grpc: compressed messages are not supported by this server")
                    return 0
                n = ((<Py_ssize_t>self.hdr[1] << 24) | (<Py_ssize_t>self.hdr[2] << 16)
                     | (<Py_ssize_t>self.hdr[3] << 8) | <Py_ssize_t>self.hdr[4])
                if n > self.conn.max_recv:
                    self._fail(S_RESOURCE_EXHAUSTED,
                               "grpc: received message larger than max (%d vs. %d)"
                               % (n, self.conn.max_recv))
                    return 0
                if <size_t>n <= length:
                    self._message(PyBytes_FromStringAndSize(<const char *>data, n))
                    data += n
                    length -= n
                    continue
                self.cur = PyBytes_FromStringAndSize(NULL, n)
                self.need = n
                self.have = 0
                self.in_body = True
            else:
                take = <size_t>(self.need - self.have)
                if take > length:
                    take = length
                memcpy(PyBytes_AS_STRING(self.cur) + self.have, data, take)
                self.have += take
                data += take
                length -= take
                if self.have == self.need:
                    msg = self.cur
                    self.cur = None
                    self.in_body = False
                    self._message(msg)
        return 0

    cdef _message(self, bytes msg):
        if self.kind == K_BIDI:
            self.held += PyBytes_GET_SIZE(msg) + 5
            if self.sink is not None:
                self.sink.push(msg)
                return
        elif self.msgs is not None:
            self._fail(S_INTERNAL, "grpc: more than one request message for a unary request")
            return
        if self.msgs is None:
            self.msgs = [msg]
        else:
            self.msgs.append(msg)

    cdef int _settle(self) except -1:
        cdef Py_ssize_t delta = self.recv_total - self.held - self.consumed_total
        if delta > 0 and self.conn.session != NULL:
            self.consumed_total += delta
            nghttp2_session_consume_stream(self.conn.session, self.id, delta)
        return 0

    cpdef release(self, Py_ssize_t nbytes):
        """A bidi handler has taken a message of `nbytes` (with its 5-byte prefix):
        open the peer's window for that much."""
        if self.closed:
            return
        self.held -= nbytes
        self._settle()
        self.conn._want_flush()

    cdef _fail(self, int code, message):
        if self.err_code < 0:
            self.err_code = code
            self.err_msg = message
            self.conn._queue(self)

    cdef _on_close(self):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()
            self.task = None
        if self.waiter is not None:
            if not self.waiter.done():
                self.waiter.set_result(None)
            self.waiter = None
        if self.sink is not None:
            self.sink.end()

    # ---- outgoing ----------------------------------------------------------------

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t live = self.wlen - self.woff
        cdef Py_ssize_t cap
        cdef char *nb
        if self.woff and (self.wlen + extra > self.wcap):
            memmove(self.wbuf, self.wbuf + self.woff, live)
            self.woff = 0
            self.wlen = live
        if self.wlen + extra > self.wcap:
            cap = self.wcap * 2 if self.wcap else 256
            while cap < self.wlen + extra:
                cap *= 2
            nb = <char *>realloc(self.wbuf, cap)
            if nb == NULL:
                raise MemoryError()
            self.wbuf = nb
            self.wcap = cap
        return 0

    cdef int _append(self, bytes payload) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef unsigned char *p
        self._reserve(n + 5)
        p = <unsigned char *>(self.wbuf + self.wlen)
        p[0] = 0
        p[1] = (n >> 24) & 0xFF
        p[2] = (n >> 16) & 0xFF
        p[3] = (n >> 8) & 0xFF
        p[4] = n & 0xFF
        memcpy(p + 5, PyBytes_AS_STRING(payload), n)
        self.wlen += n + 5
        return 0

    cdef int _kick(self) except -1:
        cdef Connection c = self.conn
        if not self.headers_sent:
            self.headers_sent = True
            c._submit_headers(self)
        elif self.deferred:
            self.deferred = False
            nghttp2_session_resume_data(c.session, self.id)
        c._want_flush()
        return 0

    cpdef bint send_message(self, bytes payload) except -1:
        """Queue one serialized message; True means: await writable() before more."""
        if self.closed or self.finishing:
            return False
        self._append(payload)
        self._kick()
        return (self.wlen - self.woff) > HIGH_WATER

    def writable(self):
        """A future resolved when the send buffer has drained (or the stream closed)."""
        fut = self.conn.loop.create_future()
        if self.closed or (self.wlen - self.woff) <= LOW_WATER:
            fut.set_result(None)
        else:
            self.waiter = fut
        return fut

    cpdef finish(self, int code, message):
        """End the call with grpc-status `code` (0 = OK) and grpc-message `message`."""
        if self.closed or self.finishing:
            return
        self.finishing = True
        self.status = code
        if code != 0 and message:
            self.status_msg = percent_encode(str(message))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.headers_sent:
            self.headers_sent = True
            self.conn._submit_trailers_only(self)
            self.conn._want_flush()
        else:
            self._kick()

    cpdef reply(self, bytes payload):
        """Unary success: one message, then grpc-status 0."""
        if self.closed or self.finishing:
            return
        self._append(payload)
        self.finishing = True
        self.status = 0
        self._kick()

    cpdef reset(self, uint32_t error_code=NGHTTP2_CANCEL):
        """RST_STREAM, sent after the trailers if they are queued but not sent yet
        (nghttp2 drops a stream's queued frames once RST_STREAM is submitted)."""
        if self.closed or self.conn.session == NULL:
            return
        if self.finishing and not self.end_sent:
            self.rst_after = error_code
            return
        nghttp2_submit_rst_stream(self.conn.session, NGHTTP2_FLAG_NONE, self.id, error_code)
        self.conn._want_flush()

    @property
    def pending(self):
        """Bytes queued for sending and not yet taken by nghttp2."""
        return self.wlen - self.woff


cdef ssize_t _read_cb(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length,
                      uint32_t *data_flags, nghttp2_data_source *source, void *ud) noexcept:
    cdef Stream s = <Stream>source.ptr
    cdef Py_ssize_t avail = s.wlen - s.woff
    cdef Py_ssize_t n = 0
    if avail > 0:
        n = avail if <size_t>avail <= length else <Py_ssize_t>length
        memcpy(buf, s.wbuf + s.woff, n)
        s.woff += n
        if s.woff == s.wlen:
            s.woff = 0
            s.wlen = 0
        if s.waiter is not None and (s.wlen - s.woff) <= LOW_WATER:
            try:
                if not s.waiter.done():
                    s.waiter.set_result(None)
            except BaseException:
                pass
            s.waiter = None
        if s.wlen or not s.finishing:
            return n
    elif not s.finishing:
        s.deferred = True
        return NGHTTP2_ERR_DEFERRED
    data_flags[0] |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM
    if _submit_trailers(session, s) != 0:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return n


cdef int _submit_trailers(nghttp2_session *session, Stream s) noexcept:
    cdef nghttp2_nv nva[2]
    cdef char code[8]
    cdef int nlen
    cdef size_t n = 1
    if s.status == 0:
        _nv(&nva[0], _S_GSTATUS, 11, _S_ZERO, 1, NOCOPY)
    else:
        nlen = _itoa(s.status, code)
        _nv(&nva[0], _S_GSTATUS, 11, code, nlen, NGHTTP2_NV_FLAG_NO_COPY_NAME)
        if s.status_msg is not None:
            _nv(&nva[1], _S_GMESSAGE, 12, PyBytes_AS_STRING(s.status_msg),
                PyBytes_GET_SIZE(s.status_msg), NGHTTP2_NV_FLAG_NO_COPY_NAME)
            n = 2
    return nghttp2_submit_trailer(session, s.id, nva, n)


cdef int _itoa(int v, char *out) noexcept:
    cdef int n = 0
    cdef int i
    cdef char tmp[8]
    if v == 0:
        out[0] = 48
        return 1
    while v and n < 7:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


# ---- nghttp2 callbacks (run inside mem_recv / mem_send, GIL held) ---------------------

cdef int _on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                           void *ud) noexcept:
    cdef Connection c = <Connection>ud
    cdef Stream s
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    try:
        s = Stream.__new__(Stream)
        s.id = frame.hd.stream_id
        s.conn = c
        c.streams[s.id] = s
        nghttp2_session_set_stream_user_data(session, s.id, <void *>s)
    except BaseException as exc:
        c.cb_error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_header(nghttp2_session *session, const nghttp2_frame *frame,
                    const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
                    uint8_t flags, void *ud) noexcept:
    cdef void *p
    cdef Stream s
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    s = <Stream>p
    try:
        if namelen == 5 and memcmp(name, b":path", 5) == 0:
            s.path = PyBytes_FromStringAndSize(<const char *>value, valuelen)
        elif namelen == 12 and memcmp(name, b"grpc-timeout", 12) == 0:
            s.timeout = _parse_timeout(value, valuelen)
        elif namelen == 12 and memcmp(name, b"content-type", 12) == 0:
            if not (valuelen >= 16 and memcmp(value, b"application/grpc", 16) == 0
                    and (valuelen == 16 or value[16] == 43 or value[16] == 59)):
                s.bad_content_type = True
    except BaseException as exc:
        (<Connection>ud).cb_error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                        void *ud) noexcept:
    cdef Connection c = <Connection>ud
    cdef void *p
    cdef Stream s
    if frame.hd.type != NGHTTP2_HEADERS and frame.hd.type != NGHTTP2_DATA:
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    s = <Stream>p
    try:
        if frame.hd.type == NGHTTP2_HEADERS and frame.headers.cat == NGHTTP2_HCAT_REQUEST:
            s.hdr_done = True
            entry = c.methods.get(s.path)
            if entry is None:
                s._fail(S_UNIMPLEMENTED, c.hooks.unknown_path(s.path))
            else:
                s.method = entry
                s.kind = (<tuple>entry)[0]
                if s.bad_content_type:
                    s._fail(S_INTERNAL, "grpc: unsupported content-type")
        if frame.hd.flags & NGHTTP2_FLAG_END_STREAM:
            s.remote_closed = True
            if s.sink is not None:
                s.sink.end()
        c._queue(s)
    except BaseException as exc:
        c.cb_error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t sid,
                        const uint8_t *data, size_t length, void *ud) noexcept:
    cdef void *p = nghttp2_session_get_stream_user_data(session, sid)
    nghttp2_session_consume_connection(session, length)
    if p == NULL:
        return 0
    try:
        (<Stream>p).recv_total += length
        (<Stream>p)._feed(data, length)
        (<Stream>p)._settle()
    except BaseException as exc:
        (<Connection>ud).cb_error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                        void *ud) noexcept:
    cdef void *p
    cdef Stream s
    if not (frame.hd.flags & NGHTTP2_FLAG_END_STREAM):
        return 0
    if frame.hd.type != NGHTTP2_HEADERS and frame.hd.type != NGHTTP2_DATA:
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    s = <Stream>p
    s.end_sent = True
    if s.rst_after >= 0 and not s.remote_closed:
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s.id, <uint32_t>s.rst_after)
    return 0


cdef int _on_stream_close(nghttp2_session *session, int32_t sid, uint32_t error_code,
                          void *ud) noexcept:
    cdef Connection c = <Connection>ud
    cdef void *p = nghttp2_session_get_stream_user_data(session, sid)
    if p == NULL:
        return 0
    try:
        (<Stream>p)._on_close()
    except BaseException as exc:
        _log.exception("closing stream %d: %r", sid, exc)
    c.streams.pop(sid, None)
    return 0


cdef _init_nghttp2():
    global _callbacks, _option
    if nghttp2_session_callbacks_new(&_callbacks) != 0:
        raise MemoryError()
    nghttp2_session_callbacks_set_on_begin_headers_callback(_callbacks, _on_begin_headers)
    nghttp2_session_callbacks_set_on_header_callback(_callbacks, _on_header)
    nghttp2_session_callbacks_set_on_frame_recv_callback(_callbacks, _on_frame_recv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(_callbacks, _on_data_chunk)
    nghttp2_session_callbacks_set_on_stream_close_callback(_callbacks, _on_stream_close)
    nghttp2_session_callbacks_set_on_frame_send_callback(_callbacks, _on_frame_send)
    if nghttp2_option_new(&_option) != 0:
        raise MemoryError()
    nghttp2_option_set_no_closed_streams(_option, 1)
    nghttp2_option_set_no_auto_window_update(_option, 1)


_init_nghttp2()


cdef class Connection:
    """asyncio Protocol for one HTTP/2 connection carrying gRPC calls.

    hooks (native_server) provides: loop, connection_made(conn), connection_lost(conn),
    unknown_path(path) -> str, spawn_unary(stream, coro, yielded),
    run_unary_eager(stream, coro) (Python >= 3.12),
    start_server_stream(stream, request_bytes), start_bidi(stream) -> sink,
    handler_error(stream, exc).
    """
    cdef nghttp2_session *session
    cdef readonly object hooks
    cdef readonly object loop
    cdef readonly object transport
    cdef readonly dict streams
    cdef dict methods
    cdef readonly Py_ssize_t max_recv
    cdef list ready
    cdef bint in_recv, flush_scheduled, paused
    cdef public object cb_error
    cdef char *out
    cdef Py_ssize_t out_cap

    def __cinit__(self, hooks, dict methods, Py_ssize_t max_recv):
        self.hooks = hooks
        self.loop = hooks.loop
        self.methods = methods
        self.max_recv = max_recv
        self.streams = {}
        self.ready = []
        if nghttp2_session_server_new2(&self.session, _callbacks, <void *>self, _option) != 0:
            raise MemoryError()

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        if self.out != NULL:
            free(self.out)

    # ---- asyncio Protocol ------------------------------------------------------------

    def connection_made(self, transport):
        cdef nghttp2_settings_entry iv[3]
        self.transport = transport
        try:
            transport.set_write_buffer_limits(high=512 * 1024)
        except (AttributeError, NotImplementedError):
            pass
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = MAX_STREAMS
        iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[1].value = STREAM_WINDOW
        iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[2].value = 1024 * 1024
        nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 3)
        nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW)
        self.hooks.connection_made(self)
        self._flush()

    def data_received(self, data):
        cdef ssize_t rv = 0
        cdef bytes buf = data if type(data) is bytes else bytes(data)
        if self.session == NULL:
            return
        self.in_recv = True
        try:
            rv = nghttp2_session_mem_recv(self.session,
                                          <const uint8_t *>PyBytes_AS_STRING(buf),
                                          PyBytes_GET_SIZE(buf))
            if rv < 0:
                if self.cb_error is not None:
                    exc, self.cb_error = self.cb_error, None
                    _log.error("HTTP/2 callback failed: %r", exc, exc_info=exc)
                else:
                    _log.debug("HTTP/2 protocol error: %s", nghttp2_strerror(<int>rv).decode())
            elif self.ready:
                self._dispatch()
        finally:
            self.in_recv = False
        self._flush()
        if rv < 0 and self.transport is not None:
            self.transport.close()

    def eof_received(self):
        return False

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._flush()

    def connection_lost(self, exc):
        self.transport = None
        streams = list(self.streams.values())
        self.streams.clear()
        for s in streams:
            try:
                (<Stream>s)._on_close()
            except BaseException as e:
                _log.exception("closing stream: %r", e)
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        self.hooks.connection_lost(self)

    # ---- control used by the server ----------------------------------------------------

    def goaway(self):
        """Refuse new streams; the connection closes once the open ones are done."""
        if self.session == NULL:
            return
        nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(self.session),
                              NGHTTP2_NO_ERROR, NULL, 0)
        self._flush()

    def abort(self):
        """Cancel every call and close the transport now."""
        if self.transport is not None:
            self.transport.close()
        for s in list(self.streams.values()):
            (<Stream>s)._on_close()

    @property
    def active_streams(self):
        return len(self.streams)

    # ---- internals -----------------------------------------------------------------------

    cdef inline _queue(self, Stream s):
        if not s.queued:
            s.queued = True
            self.ready.append(s)

    cdef _dispatch(self):
        cdef Stream s
        while self.ready:
            ready = self.ready
            self.ready = []
            for s in ready:
                s.queued = False
                if s.closed or not s.hdr_done:
                    continue
                if s.err_code >= 0:
                    if not s.finishing:
                        s.finish(s.err_code, s.err_msg)
                        if s.task is not None and not s.task.done():
                            s.task.cancel()
                        if not s.remote_closed:
                            s.reset(NGHTTP2_NO_ERROR)
                    continue
                if s.started:
                    continue
                if s.kind == K_BIDI:
                    s.started = True
                    self._start_bidi(s)
                elif s.remote_closed:
                    s.started = True
                    if s.msgs is None:
                        s.finish(S_INTERNAL, "grpc: no request message for a unary request")
                    elif s.kind == K_UNARY:
                        self._run_unary(s, <bytes>s.msgs[0])
                    else:
                        self.hooks.start_server_stream(s, s.msgs[0])
                    s.msgs = None

    cdef _start_bidi(self, Stream s):
        sink = self.hooks.start_bidi(s)
        s.sink = sink
        if s.msgs is not None:
            for m in s.msgs:
                sink.push(m)
            s.msgs = None
        if s.remote_closed:
            sink.end()

    cdef _run_unary(self, Stream s, bytes raw):
        cdef tuple entry = <tuple>s.method
        cdef PyObject *res = NULL
        cdef int r
        try:
            request = entry[1](raw)
        except Exception as exc:
            s.finish(S_INTERNAL, "grpc: error unmarshalling request: %s" % exc)
            return
        try:
            coro = entry[2](request)
            if _EAGER:
                self.hooks.run_unary_eager(s, coro)
                return
            r = PyIter_Send(coro, None, &res)
        except StoreError as exc:
            s.finish(exc.code, exc.message)
            return
        except Exception as exc:
            self.hooks.handler_error(s, exc)
            s.finish(S_UNKNOWN, str(exc))
            return
        except BaseException as exc:   # CancelledError raised synchronously
            s.finish(S_CANCELLED, str(exc) or "cancelled")
            return
        value = <object>res
        Py_XDECREF(res)
        if r == 0:
            try:
                payload = value.SerializeToString()
            except Exception as exc:
                self.hooks.handler_error(s, exc)
                s.finish(S_INTERNAL, "grpc: error while marshaling: %s" % exc)
                return
            s.reply(payload)
        else:
            self.hooks.spawn_unary(s, coro, value)

    cdef int _submit_headers(self, Stream s) except -1:
        cdef nghttp2_nv nva[2]
        cdef nghttp2_data_provider prd
        _nv(&nva[0], _S_STATUS, 7, _S_200, 3, NOCOPY)
        _nv(&nva[1], _S_CT, 12, _S_GRPC, 16, NOCOPY)
        prd.source.ptr = <void *>s
        prd.read_callback = _read_cb
        rv = nghttp2_submit_response(self.session, s.id, nva, 2, &prd)
        if rv != 0:
            raise RuntimeError("nghttp2_submit_response: %s" % nghttp2_strerror(rv).decode())
        return 0

    cdef int _submit_trailers_only(self, Stream s) except -1:
        cdef nghttp2_nv nva[4]
        cdef char code[8]
        cdef int nlen = _itoa(s.status, code)
        cdef size_t n = 3
        _nv(&nva[0], _S_STATUS, 7, _S_200, 3, NOCOPY)
        _nv(&nva[1], _S_CT, 12, _S_GRPC, 16, NOCOPY)
        _nv(&nva[2], _S_GSTATUS, 11, code, nlen, NGHTTP2_NV_FLAG_NO_COPY_NAME)
        if s.status_msg is not None:
            _nv(&nva[3], _S_GMESSAGE, 12, PyBytes_AS_STRING(s.status_msg),
                PyBytes_GET_SIZE(s.status_msg), NGHTTP2_NV_FLAG_NO_COPY_NAME)
            n = 4
        rv = nghttp2_submit_response(self.session, s.id, nva, n, NULL)
        if rv != 0:
            raise RuntimeError("nghttp2_submit_response: %s" % nghttp2_strerror(rv).decode())
        return 0

    cpdef flush(self):
        """Write what is queued now rather than on the loop's next turn (answers made
        outside `data_received`, e.g. a batch of writes just applied)."""
        if not self.in_recv:
            self._flush()

    cdef _want_flush(self):
        if self.in_recv or self.flush_scheduled:
            return
        self.flush_scheduled = True
        self.loop.call_soon(self._flush_cb)

    def _flush_cb(self):
        self.flush_scheduled = False
        self._flush()

    cdef _flush(self):
        cdef const uint8_t *p
        cdef ssize_t n
        cdef Py_ssize_t used = 0
        cdef char *nb
        cdef Py_ssize_t cap
        cdef bint more = False
        if self.session == NULL or self.transport is None or self.paused:
            return
        while True:
            n = nghttp2_session_mem_send(self.session, &p)
            if n < 0:
                _log.debug("HTTP/2 send error: %s", nghttp2_strerror(<int>n).decode())
                self.transport.close()
                return
            if n == 0:
                break
            if used + n > self.out_cap:
                cap = self.out_cap * 2 if self.out_cap else 64 * 1024
                while cap < used + n:
                    cap *= 2
                nb = <char *>realloc(self.out, cap)
                if nb == NULL:
                    raise MemoryError()
                self.out = nb
                self.out_cap = cap
            memcpy(self.out + used, p, n)
            used += n
            if used >= FLUSH_CAP:
                more = True
                break
        if used:
            self.transport.write(PyBytes_FromStringAndSize(self.out, used))
        if more:
            self._want_flush()
        elif (not nghttp2_session_want_read(self.session)
              and not nghttp2_session_want_write(self.session)):
            self.transport.close()
