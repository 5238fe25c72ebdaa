"""API errors as values with a name, rendered once as a Kubernetes `Status`.

Messages follow kube-apiserver's wording (k8s.io/apimachinery errors), because
kubectl prints them verbatim and users search for them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One field error (k8s.io/apimachinery/pkg/util/validation/field.Error)."""

    type: str            # "Required value", "Invalid value", ...
    field: str
    value: object = None
    detail: str = ""

    REASONS = {
        "Required value": "FieldValueRequired", "Invalid value": "FieldValueInvalid",
        "Unsupported value": "FieldValueNotSupported", "Duplicate value": "FieldValueDuplicate",
        "Forbidden": "FieldValueForbidden", "Not found": "FieldValueNotFound",
        "Too long": "FieldValueTooLong", "Too many": "FieldValueTooMany",
        "Internal error": "InternalError",
    }

    def body(self) -> str:
        """What kube calls ErrorBody: the message without the field path."""
        t = self.type
        if t in ("Required value", "Forbidden", "Too long", "Too many", "Internal error"):
            return f"{t}: {self.detail}" if self.detail else t
        s = f"{t}: {_go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        return {"reason": self.REASONS.get(self.type, "FieldValueInvalid"),
                "message": self.body(), "field": self.field}


def _go_value(v) -> str:
    """Render a bad value roughly as Go's %#v / %q do in kube's messages."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        if all(isinstance(x, str) for x in v):
            return "[]string{" + ", ".join(_go_value(x) for x in v) + "}"
        return "[" + ", ".join(_go_value(x) for x in v) + "]"
    return str(v)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required value", field, None, detail)


def invalid(field: str, value, detail: str = "") -> FieldError:
    return FieldError("Invalid value", field, value, detail)


def unsupported(field: str, value, valid: list[str]) -> FieldError:
    return FieldError("Unsupported value", field, value,
                      "supported values: " + ", ".join(f'"{v}"' for v in valid))


def duplicate(field: str, value) -> FieldError:
    return FieldError("Duplicate value", field, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, None, detail)


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("Too long", field, None, f"must have at most {limit} bytes")


def not_found_field(field: str, value) -> FieldError:
    return FieldError("Not found", field, value)


class ApiError(Exception):
    """An HTTP error with a Kubernetes Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


def _details(name: str, group: str, kind: str) -> dict:
    d: dict = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    _details(name, group, resource))


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists",
                    f'{_qualified(resource, group)} "{name}" already exists',
                    _details(name, group, resource))


def conflict(resource: str, name: str, why: str, group: str = "") -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                    _details(name, group, resource))


MODIFIED = ("the object has been modified; please apply your changes to the latest version "
            "and try again")


def invalid_object(kind: str, name: str, errs: list[FieldError], group: str = "") -> ApiError:
    if len(errs) == 1:
        agg = str(errs[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errs) + "]"
    d = _details(name, group, kind)
    d["causes"] = [e.cause() for e in errs]
    return ApiError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {agg}' if group
                    else f'{kind} "{name}" is invalid: {agg}', d)


def forbidden_error(resource: str, name: str, why: str, group: str = "") -> ApiError:
    q = _qualified(resource, group)
    msg = f'{q} "{name}" is forbidden: {why}' if name else f"{q} is forbidden: {why}"
    return ApiError(403, "Forbidden", msg, _details(name, group, resource))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(ctype: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: application/json-patch+json, application/merge-patch+json, '
                    f'application/apply-patch+yaml (got "{ctype}")')


def not_acceptable(accept: str) -> ApiError:
    return ApiError(406, "NotAcceptable",
                    "only the following media types are accepted: application/json, "
                    "application/yaml, application/vnd.kubernetes.protobuf")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large() -> ApiError:
    return ApiError(413, "RequestEntityTooLarge",
                    "Request entity too large: limit is 3145728")


def timeout(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(504, "Timeout", message, {"retryAfterSeconds": retry_after})


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def success_status(details: dict | None = None, code: int = 200) -> dict:
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
         "code": code}
    if details:
        s["details"] = details
    return s
