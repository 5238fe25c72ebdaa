"""certificates.k8s.io/v1: CertificateSigningRequests (cluster-scoped; /status for
signers, /approval for approvers).

On create the API server records who asked (spec.username/uid/groups/extra,
`set_requestor`); spec is immutable afterwards. /approval changes only the
conditions, /status only the certificate and non-approval conditions.
"""
from __future__ import annotations

import re

from kcore.api import errors as E
from kcore.api import validation as V
from kcore.api.core import _meta_fields
from kcore.api.kinds import Kind, register
from kcore.api.schema import define
from kcore.certificates.request import (
    CONDITION_TYPES,
    LEGACY_UNKNOWN,
    MIN_EXPIRATION_SECONDS,
    USAGES,
    RequestError,
    decode_b64,
    parse_request,
)

CE = "io.k8s.api.certificates.v1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
GROUP = "certificates.k8s.io"

define(CE, "CertificateSigningRequestSpec", "CertificateSigningRequestSpec contains the "
       "certificate request.", {
           "request": ("bytes!", "request contains an x509 certificate signing request "
                       "encoded in a \"CERTIFICATE REQUEST\" PEM block."),
           "signerName": ("s!", "signerName indicates the requested signer, and is a "
                          "qualified name."),
           "expirationSeconds": ("i", "expirationSeconds is the requested duration of "
                                 "validity of the issued certificate."),
           "usages": ("[s]", "usages specifies a set of key usages requested in the issued "
                      "certificate."),
           "username": ("s", "username contains the name of the user that created the CSR."),
           "uid": ("s", "uid contains the uid of the user that created the CSR."),
           "groups": ("[s]", "groups contains group membership of the user that created "
                      "the CSR."),
           "extra": ("{[s]}", "extra contains extra attributes of the user that created "
                     "the CSR.")})
define(CE, "CertificateSigningRequestCondition", "CertificateSigningRequestCondition describes "
       "a condition of a CertificateSigningRequest object", {
           "type": ("s!", "type of the condition: Approved, Denied or Failed."),
           "status": ("s!", "status of the condition, one of True, False, Unknown."),
           "reason": "s", "message": "s", "lastUpdateTime": "t", "lastTransitionTime": "t"})
define(CE, "CertificateSigningRequestStatus", "CertificateSigningRequestStatus contains "
       "conditions used to indicate approved/denied/failed status of the request, and the "
       "issued certificate.", {
           "conditions": ("[CertificateSigningRequestCondition]@type",
                          "conditions applied to the request."),
           "certificate": ("bytes", "certificate is populated with an issued certificate by "
                           "the signer after an Approved condition is present.")})
define(CE, "CertificateSigningRequest", "CertificateSigningRequest objects provide a mechanism "
       "to obtain x509 certificates by submitting a certificate signing request, and having "
       "it asynchronously approved and issued.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "spec": "CertificateSigningRequestSpec!",
           "status": "CertificateSigningRequestStatus"},
       gvk=(GROUP, "v1", "CertificateSigningRequest"))

_SIGNER = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
                     r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def set_requestor(obj: dict, user) -> None:
    """What the API server records on create: the authenticated requestor."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict) or user is None:
        return
    spec["username"] = getattr(user, "name", "")
    spec["uid"] = getattr(user, "uid", "") or None
    spec["groups"] = list(getattr(user, "groups", ()) or ())
    spec["extra"] = dict(getattr(user, "extra", {}) or {}) or None
    for k in ("uid", "extra"):
        if spec[k] is None:
            del spec[k]


def validate_signer_name(v, path: str) -> list[E.FieldError]:
    if not v:
        return [E.required(path, "")]
    if not isinstance(v, str) or not _SIGNER.match(v) or len(v) > 571:
        return [E.invalid(path, v, "must be a fully qualified domain and path of the form "
                          "'example.com/signer-name'")]
    return []


def _validate_conditions(obj: dict) -> list[E.FieldError]:
    errs: list[E.FieldError] = []
    conds = (obj.get("status") or {}).get("conditions") or []
    seen: set[str] = set()
    for i, c in enumerate(conds):
        p = f"status.conditions[{i}]"
        t, s = c.get("type"), c.get("status")
        if not t:
            errs.append(E.required(f"{p}.type", ""))
        elif t in CONDITION_TYPES:
            if t in seen:
                errs.append(E.duplicate(f"{p}.type", t))
            seen.add(t)
        if t in ("Approved", "Denied") and s != "True":
            errs.append(E.unsupported(f"{p}.status", s, ["True"]))
        elif s not in ("True", "False", "Unknown"):
            errs.append(E.unsupported(f"{p}.status", s, ["False", "True", "Unknown"]))
    if "Approved" in seen and "Denied" in seen:
        errs.append(E.invalid("status.conditions", "Approved", "Approved and Denied "
                              "conditions are mutually exclusive"))
    cert = (obj.get("status") or {}).get("certificate")
    if cert:
        try:
            pem = decode_b64(cert)
        except RequestError:
            pem = b""
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            errs.append(E.invalid("status.certificate", "<certificate data>",
                                  "must contain at least one CERTIFICATE PEM block"))
        if "Approved" not in seen:
            errs.append(E.invalid("status.certificate", "<certificate data>",
                                  "certificate may only be set if an Approved condition "
                                  "exists"))
        if "Denied" in seen or "Failed" in seen:
            errs.append(E.invalid("status.certificate", "<certificate data>",
                                  "certificate may not be set if a Denied or Failed "
                                  "condition exists"))
    return errs


def validate_csr(obj: dict, old: dict | None) -> list[E.FieldError]:
    errs = V.object_meta(obj, False, "subdomain", old)
    spec = obj.get("spec") or {}
    if old is not None:
        errs += V.immutable(spec, old.get("spec") or {}, "spec")
    req = spec.get("request")
    if not req:
        errs.append(E.required("spec.request", ""))
    elif old is None:
        try:
            parse_request(req)
        except RequestError as e:
            errs.append(E.invalid("spec.request", "<request data>", str(e)))
    errs += validate_signer_name(spec.get("signerName"), "spec.signerName")
    if spec.get("signerName") == LEGACY_UNKNOWN:
        errs.append(E.invalid("spec.signerName", LEGACY_UNKNOWN, "the legacy signerName is "
                              "not allowed via this API version"))
    exp = spec.get("expirationSeconds")
    if exp is not None and exp < MIN_EXPIRATION_SECONDS:
        errs.append(E.invalid("spec.expirationSeconds", exp,
                              f"may not specify a duration less than {MIN_EXPIRATION_SECONDS} "
                              f"seconds"))
    usages = spec.get("usages")
    if not usages:
        errs.append(E.required("spec.usages", ""))
    else:
        for i, u in enumerate(usages):
            if u not in USAGES:
                errs.append(E.unsupported(f"spec.usages[{i}]", u, list(USAGES)))
        if len(set(usages)) != len(usages):
            errs.append(E.invalid("spec.usages", usages, "duplicate usages"))
    return errs + _validate_conditions(obj)


def _kept_conditions(obj: dict, old: dict | None) -> list[E.FieldError]:
    """Approved, Denied and Failed conditions, once set, stay."""
    if old is None:
        return []
    new_types = {c.get("type") for c in ((obj.get("status") or {}).get("conditions") or [])}
    return [E.forbidden("status.conditions", f'updates may not remove a condition of type '
                        f'"{c.get("type")}"')
            for c in ((old.get("status") or {}).get("conditions") or [])
            if c.get("type") in CONDITION_TYPES and c.get("type") not in new_types]


def validate_csr_status(obj: dict, old: dict | None) -> list[E.FieldError]:
    errs = _validate_conditions(obj) + _kept_conditions(obj, old)
    old_cert = ((old or {}).get("status") or {}).get("certificate")
    new_cert = (obj.get("status") or {}).get("certificate")
    if old_cert and new_cert != old_cert:
        errs.append(E.forbidden("status.certificate", "updates may not modify existing "
                                "certificate content"))
    return errs


def approval_update(new: dict, old: dict) -> dict:
    """/approval: the conditions from the request, everything else as stored."""
    out = _copy(old)
    conds = (new.get("status") or {}).get("conditions")
    st = out.setdefault("status", {})
    if conds:
        st["conditions"] = conds
    else:
        st.pop("conditions", None)
    return out


def status_update(new: dict, old: dict) -> dict:
    """/status: the request's status, but Approved/Denied conditions stay as stored."""
    out = _copy(old)
    st = dict(new.get("status") or {})
    keep = [c for c in ((old.get("status") or {}).get("conditions") or [])
            if c.get("type") in ("Approved", "Denied")]
    mine = [c for c in (st.get("conditions") or []) if c.get("type") not in ("Approved",
                                                                               "Denied")]
    if keep or mine:
        st["conditions"] = keep + mine
    else:
        st.pop("conditions", None)
    out["status"] = st
    return out


def _copy(o: dict) -> dict:
    import orjson
    return orjson.loads(orjson.dumps(o))


CSR = register(Kind(
    GROUP, "v1", "CertificateSigningRequest", "certificatesigningrequests",
    "certificatesigningrequest", False, "certificatesigningrequests",
    f"{CE}.CertificateSigningRequest", ("csr",), (), subresources=("status", "approval"),
    validate=validate_csr, validate_status=validate_csr_status, has_status=True,
    on_create=set_requestor,
    subresource_updates={"status": status_update, "approval": approval_update},
    field_labels=_meta_fields({"spec.signerName": lambda o: (o.get("spec") or {}).get(
        "signerName", "")})))
