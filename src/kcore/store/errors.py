"""The store's errors: values with a name, mapped once at the edge.

Each error carries the gRPC status code and message that etcd v3.4 gives for
the same condition, so real clients print what etcd users know. The gRPC
layer turns them into statuses; in-process users catch them by class.
"""
from __future__ import annotations

# gRPC status codes (numeric, as on the wire), so this module stays free of grpc.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 6, 7, 8, 9
ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS = 10, 11, 12, 13, 14, 15
UNAUTHENTICATED = 16


class StoreError(Exception):
    """Base: `code` is the gRPC status code, `message` what etcd says."""

    code: int = UNKNOWN
    message: str = "etcdserver: unknown error"

    def __init__(self, message: str | None = None):
        if message is not None:
            self.message = message
        super().__init__(self.message)


def _err(name: str, code: int, message: str) -> type[StoreError]:
    return type(name, (StoreError,), {"code": code, "message": message, "__doc__": message})


EmptyKey = _err("EmptyKey", INVALID_ARGUMENT, "etcdserver: key is not provided")
KeyNotFound = _err("KeyNotFound", INVALID_ARGUMENT, "etcdserver: key not found")
ValueProvided = _err("ValueProvided", INVALID_ARGUMENT, "etcdserver: value is provided")
LeaseProvided = _err("LeaseProvided", INVALID_ARGUMENT, "etcdserver: lease is provided")
TooManyOps = _err("TooManyOps", INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DuplicateKey = _err("DuplicateKey", INVALID_ARGUMENT,
                    "etcdserver: duplicate key given in txn request")
Compacted = _err("Compacted", OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision has been compacted")
FutureRev = _err("FutureRev", OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision is a future revision")
NoSpace = _err("NoSpace", RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
LeaseNotFound = _err("LeaseNotFound", NOT_FOUND, "etcdserver: requested lease not found")
LeaseExists = _err("LeaseExists", FAILED_PRECONDITION, "etcdserver: lease already exists")
LeaseTTLTooLarge = _err("LeaseTTLTooLarge", OUT_OF_RANGE, "etcdserver: too large lease TTL")
RequestTooLarge = _err("RequestTooLarge", INVALID_ARGUMENT, "etcdserver: request is too large")
MemberExists = _err("MemberExists", FAILED_PRECONDITION, "etcdserver: member ID already exist")
PeerURLExists = _err("PeerURLExists", FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
MemberNotFound = _err("MemberNotFound", NOT_FOUND, "etcdserver: member not found")
MemberBadURLs = _err("MemberBadURLs", INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
MemberNotEnoughStarted = _err("MemberNotEnoughStarted", FAILED_PRECONDITION,
                              "etcdserver: re-configuration failed due to not enough started members")
MemberNotLearner = _err("MemberNotLearner", FAILED_PRECONDITION,
                        "etcdserver: can only promote a learner member")
LearnerNotReady = _err("LearnerNotReady", FAILED_PRECONDITION,
                       "etcdserver: can only promote a learner member which is in sync with leader")
AuthNotEnabled = _err("AuthNotEnabled", FAILED_PRECONDITION,
                      "etcdserver: authentication is not enabled")
NoLeader = _err("NoLeader", UNAVAILABLE, "etcdserver: no leader")
NotLeader = _err("NotLeader", FAILED_PRECONDITION, "etcdserver: not leader")
LeaderChanged = _err("LeaderChanged", UNAVAILABLE, "etcdserver: leader changed")
Stopped = _err("Stopped", UNAVAILABLE, "etcdserver: server stopped")
Timeout = _err("Timeout", UNAVAILABLE, "etcdserver: request timed out")
Unhealthy = _err("Unhealthy", UNAVAILABLE, "etcdserver: unhealthy cluster")
Corrupt = _err("Corrupt", DATA_LOSS, "etcdserver: corrupt cluster")
BadLeaderTransferee = _err("BadLeaderTransferee", FAILED_PRECONDITION,
                           "etcdserver: bad leader transferee")
NotCapable = _err("NotCapable", UNAVAILABLE, "etcdserver: not capable")
InvalidSortOption = _err("InvalidSortOption", INVALID_ARGUMENT, "etcdserver: invalid sort option")
StreamClosed = _err("StreamClosed", UNAVAILABLE,
                    "kcore: watch stream closed by its channel (endpoint failover)")
Unimplemented = _err("Unimplemented", UNIMPLEMENTED, "unknown method")


class DataCorruption(Exception):
    """A file on disk failed its check (CRC, hash, framing); names file and offset."""

    def __init__(self, path: str, offset: int, detail: str):
        self.path, self.offset, self.detail = path, offset, detail
        super().__init__(f"{path}: corrupt at offset {offset}: {detail}")
