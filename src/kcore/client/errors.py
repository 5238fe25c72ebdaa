"""API errors as named exceptions, mapped once from a Kubernetes `Status` body.

Every non-2xx answer of the API server carries a `Status` (`reason`, `message`,
`code`, `details`); `error_from_status` picks the exception class by reason,
then by HTTP code, so callers write `except NotFound:` rather than comparing
numbers. The message is the server's, verbatim (controllers copy it into
conditions and events, as kube's do).
"""
from __future__ import annotations


class ApiError(Exception):
    """A failed API call. `status` is the server's Status body (or a synthetic one)."""

    code: int = 0
    reason: str = ""

    def __init__(self, message: str, status: dict | None = None, code: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status or {}
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    @property
    def details(self) -> dict:
        return self.status.get("details") or {}


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class Conflict(ApiError):
    """409 on a stale resourceVersion (optimistic concurrency lost)."""
    code, reason = 409, "Conflict"


class AlreadyExists(Conflict):
    """409 on create of a name that exists (a subclass of Conflict, as both are 409)."""
    code, reason = 409, "AlreadyExists"


class Gone(ApiError):
    """410: the resourceVersion asked for is compacted away (reason Expired or Gone)."""
    code, reason = 410, "Expired"


Expired = Gone


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(ApiError):
    code, reason = 504, "Timeout"


class TransportError(ApiError):
    """The server could not be reached or the connection broke (no HTTP status)."""
    code, reason = 0, "TransportError"


_BY_REASON: dict[str, type[ApiError]] = {
    "BadRequest": BadRequest, "Unauthorized": Unauthorized, "Forbidden": Forbidden,
    "NotFound": NotFound, "MethodNotAllowed": MethodNotAllowed, "Conflict": Conflict,
    "AlreadyExists": AlreadyExists, "Gone": Gone, "Expired": Gone,
    "RequestEntityTooLarge": RequestEntityTooLarge,
    "UnsupportedMediaType": UnsupportedMediaType, "Invalid": Invalid,
    "TooManyRequests": TooManyRequests, "InternalError": InternalError,
    "ServiceUnavailable": ServiceUnavailable, "Timeout": Timeout,
    "ServerTimeout": Timeout,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 410: Gone, 413: RequestEntityTooLarge, 415: UnsupportedMediaType,
    422: Invalid, 429: TooManyRequests, 500: InternalError, 503: ServiceUnavailable,
    504: Timeout,
}


def error_from_status(code: int, body: object, retry_after: float | None = None) -> ApiError:
    """The named exception for an HTTP error answer (`body`: decoded JSON or text)."""
    status = body if isinstance(body, dict) and body.get("kind") == "Status" else None
    reason = (status or {}).get("reason", "")
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is None:
        cls = InternalError if code >= 500 else ApiError
    if status is not None:
        message = status.get("message") or reason or f"HTTP {code}"
        code = int(status.get("code") or code)
        ra = (status.get("details") or {}).get("retryAfterSeconds")
        if retry_after is None and ra:
            retry_after = float(ra)
    else:
        message = body if isinstance(body, str) and body else f"HTTP {code}"
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                  "message": message, "reason": cls.reason, "code": code}
    return cls(message, status, code, retry_after)


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, NotFound)


def is_conflict(e: BaseException) -> bool:
    return isinstance(e, Conflict) and not isinstance(e, AlreadyExists)


def is_already_exists(e: BaseException) -> bool:
    return isinstance(e, AlreadyExists)
