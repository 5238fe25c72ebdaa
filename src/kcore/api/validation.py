"""Validation shared by all kinds: names, labels, annotations, object metadata.

Messages are kube's (k8s.io/apimachinery/pkg/util/validation), so kubectl
users see the familiar text.
"""
from __future__ import annotations

import re

from kcore.api import errors as E
from kcore.api.errors import FieldError

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
           "'-' or '.', and must start and end with an alphanumeric character (e.g. "
           "'example.com', regex used for validation is "
           "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
               "start with an alphabetic character, and end with an alphanumeric character "
               "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
               "'[a-z]([-a-z0-9]*[a-z0-9])?')")


def dns1123_label(v: str) -> list[str]:
    out = []
    if len(v) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(v):
        out.append(LABEL_MSG)
    return out


def dns1123_subdomain(v: str) -> list[str]:
    out = []
    if len(v) > 253:
        out.append("must be no more than 253 characters")
    if not _DNS1123_SUB.match(v):
        out.append(SUB_MSG)
    return out


def dns1035_label(v: str) -> list[str]:
    out = []
    if len(v) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1035.match(v):
        out.append(DNS1035_MSG)
    return out


def path_segment(v: str) -> list[str]:
    if v in (".", ".."):
        return [f"may not be '{v}'"]
    for bad in ("/", "%"):
        if bad in v:
            return [f"may not contain '{bad}'"]
    return []


NAME_CHECKS = {"subdomain": dns1123_subdomain, "label": dns1123_label,
               "dns1035": dns1035_label, "path": path_segment}


def qualified_name(v: str) -> list[str]:
    out = []
    prefix, sep, name = v.rpartition("/")
    if sep:
        if not prefix:
            out.append("prefix part must be non-empty")
        else:
            out += ["prefix part " + m for m in dns1123_subdomain(prefix)]
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if name and not _QNAME.match(name):
        out.append("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                   "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                   "'my.name',  or '123-abc', regex used for validation is "
                   "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return out


def label_value(v: str) -> list[str]:
    out = []
    if len(v) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(v):
        out.append("a valid label must be an empty string or consist of alphanumeric "
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                   "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    return out


def labels(m, path: str) -> list[FieldError]:
    errs = []
    if not isinstance(m, dict):
        return errs
    for k, v in m.items():
        for msg in qualified_name(k):
            errs.append(E.invalid(path, k, msg))
        for msg in label_value(v if isinstance(v, str) else str(v)):
            errs.append(E.invalid(f"{path}", v, msg))
    return errs


def annotations(m, path: str) -> list[FieldError]:
    errs = []
    if not isinstance(m, dict):
        return errs
    total = 0
    for k, v in m.items():
        for msg in qualified_name(k.lower()):
            errs.append(E.invalid(path, k, msg))
        total += len(k) + len(v or "")
    if total > 256 * 1024:
        errs.append(E.too_long(path, 256 * 1024))
    return errs


def object_meta(obj: dict, namespaced: bool, name_check: str, old: dict | None = None
                ) -> list[FieldError]:
    md = obj.get("metadata") or {}
    errs: list[FieldError] = []
    name = md.get("name", "")
    if not name:
        if not md.get("generateName"):
            errs.append(E.required("metadata.name", "name or generateName is required"))
    else:
        for msg in NAME_CHECKS[name_check](name):
            errs.append(E.invalid("metadata.name", name, msg))
    ns = md.get("namespace", "")
    if namespaced:
        if not ns:
            errs.append(E.required("metadata.namespace", ""))
        else:
            for msg in dns1123_label(ns):
                errs.append(E.invalid("metadata.namespace", ns, msg))
    elif ns:
        errs.append(E.forbidden("metadata.namespace", "not allowed on this type"))
    errs += labels(md.get("labels"), "metadata.labels")
    errs += annotations(md.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(md.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                errs.append(E.invalid(f"metadata.ownerReferences[{i}].{f}", ref.get(f, ""),
                                      f"{f} must not be empty" if f != "uid"
                                      else "uid must not be empty"))
    g = md.get("generation")
    if isinstance(g, int) and g < 0:
        errs.append(E.invalid("metadata.generation", g, "must be greater than or equal to 0"))
    if old is not None:
        om = old.get("metadata") or {}
        for f in ("name", "namespace", "uid", "creationTimestamp"):
            if md.get(f) != om.get(f) and not (f in ("uid", "creationTimestamp")
                                                and not md.get(f)):
                errs.append(E.invalid(f"metadata.{f}", md.get(f),
                                      "field is immutable"))
    return errs


def immutable(new, old, path: str) -> list[FieldError]:
    if new != old:
        return [E.invalid(path, new, "field is immutable")]
    return []


def non_negative(v, path: str) -> list[FieldError]:
    if isinstance(v, int) and v < 0:
        return [E.invalid(path, v, "must be greater than or equal to 0")]
    return []


def port_number(v, path: str) -> list[FieldError]:
    if not isinstance(v, int) or not (1 <= v <= 65535):
        return [E.invalid(path, v, "must be between 1 and 65535, inclusive")]
    return []
