"""The create-only review resources and TokenRequest.

authorization.k8s.io/v1 SelfSubjectAccessReview (`kubectl auth can-i`),
SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview,
LocalSubjectAccessReview; authentication.k8s.io/v1 SelfSubjectReview
(`kubectl auth whoami`), TokenReview; and core/v1 serviceaccounts/token
(`kubectl create token`). Each takes the decoded body and the requesting user
and returns the object to answer with; nothing is stored. Access reviews ask
the server's configured authorizer chain, whichever port they arrive on.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from kcore.api import errors as E
from kcore.api import schema
from kcore.api.authentication import AN
from kcore.api.authentication import GROUP as AUTHN_GROUP
from kcore.api.authorization import AZ
from kcore.api.authorization import GROUP as AUTHZ_GROUP
from kcore.apiserver.auth import RequestInfo, User

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

MIN_TOKEN_SECONDS = 600
DEFAULT_TOKEN_SECONDS = 3600


def _decode(body, kind: str, defname: str, api_version: str) -> dict:
    if not isinstance(body, dict):
        raise E.bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: json: '
                            f"cannot unmarshal into Go value of type struct")
    if body.get("kind") not in (None, kind):
        raise E.bad_request(f"the kind in the data ({body.get('kind')}) does not match the "
                            f"expected kind ({kind})")
    if body.get("apiVersion") not in (None, api_version):
        raise E.bad_request(f"the API version in the data ({body.get('apiVersion')}) does not "
                            f"match the expected API version ({api_version})")
    try:
        schema.decode(body, defname, [])
    except schema.DecodeError as e:
        raise E.bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {e}'
                            ) from None
    return body


def _out(body: dict, kind: str, api_version: str, status: dict, keep_spec: bool = True) -> dict:
    md = dict(body.get("metadata") or {})
    md.setdefault("creationTimestamp", None)
    out = {"kind": kind, "apiVersion": api_version, "metadata": md}
    if keep_spec:
        out["spec"] = body.get("spec") or {}
    out["status"] = status
    return out


def _attrs(spec: dict, kind: str) -> RequestInfo:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None):
        raise E.invalid_object(kind, "", [E.invalid(
            "spec.resourceAttributes", ra, "exactly one of nonResourceAttributes or "
            "resourceAttributes must be specified")], AUTHZ_GROUP)
    if nra is not None:
        return RequestInfo(path=nra.get("path", ""), verb=nra.get("verb", ""))
    return RequestInfo(path="", verb=ra.get("verb", ""), is_resource=True,
                       api_prefix="apis" if ra.get("group") else "api",
                       group=ra.get("group", ""), version=ra.get("version", ""),
                       namespace=ra.get("namespace", ""), resource=ra.get("resource", ""),
                       subresource=ra.get("subresource", ""), name=ra.get("name", ""))


async def _decide(server: APIServer, user: User, info: RequestInfo) -> dict:
    ok, reason = await server.authorizer.authorize(user, info)
    st: dict = {"allowed": ok}
    if reason:
        st["reason"] = reason
    return st


async def self_subject_access_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHZ_GROUP}/v1"
    body = _decode(body, "SelfSubjectAccessReview", f"{AZ}.SelfSubjectAccessReview", v)
    info = _attrs(body.get("spec") or {}, "SelfSubjectAccessReview")
    return _out(body, "SelfSubjectAccessReview", v, await _decide(server, user, info))


def _sar_user(spec: dict, kind: str) -> User:
    name, groups = spec.get("user") or "", tuple(spec.get("groups") or ())
    if not name and not groups:
        raise E.invalid_object(kind, "", [E.invalid("spec.user", name, "at least one of user "
                                                    "or group must be specified")],
                               AUTHZ_GROUP)
    return User(name, groups, spec.get("uid") or "", spec.get("extra") or {})


async def subject_access_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHZ_GROUP}/v1"
    body = _decode(body, "SubjectAccessReview", f"{AZ}.SubjectAccessReview", v)
    spec = body.get("spec") or {}
    info = _attrs(spec, "SubjectAccessReview")
    return _out(body, "SubjectAccessReview", v,
                await _decide(server, _sar_user(spec, "SubjectAccessReview"), info))


async def local_subject_access_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHZ_GROUP}/v1"
    kind = "LocalSubjectAccessReview"
    body = _decode(body, kind, f"{AZ}.{kind}", v)
    spec = body.get("spec") or {}
    if spec.get("nonResourceAttributes") is not None:
        raise E.invalid_object(kind, "", [E.invalid(
            "spec.nonResourceAttributes", spec["nonResourceAttributes"],
            "disallowed on this kind of request")], AUTHZ_GROUP)
    info = _attrs(spec, kind)
    md_ns = (body.get("metadata") or {}).get("namespace") or ns
    if info.namespace != md_ns or md_ns != ns:
        raise E.invalid_object(kind, "", [E.invalid(
            "spec.resourceAttributes.namespace", info.namespace,
            "must match metadata.namespace")], AUTHZ_GROUP)
    body.setdefault("metadata", {})["namespace"] = ns
    return _out(body, kind, v, await _decide(server, _sar_user(spec, kind), info))


async def self_subject_rules_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHZ_GROUP}/v1"
    body = _decode(body, "SelfSubjectRulesReview", f"{AZ}.SelfSubjectRulesReview", v)
    namespace = (body.get("spec") or {}).get("namespace") or ""
    rules = await server.authorizer.rules_for(user, namespace)
    st: dict = {"resourceRules": list(rules.resource), "nonResourceRules":
                list(rules.non_resource), "incomplete": rules.incomplete}
    if rules.error:
        st["evaluationError"] = rules.error
    return _out(body, "SelfSubjectRulesReview", v, st)


def user_info(u: User) -> dict:
    out: dict = {"username": u.name, "groups": list(u.groups)}
    if u.uid:
        out["uid"] = u.uid
    if u.extra:
        out["extra"] = {k: list(vs) for k, vs in u.extra.items()}
    return out


async def self_subject_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHN_GROUP}/v1"
    body = _decode(body, "SelfSubjectReview", f"{AN}.SelfSubjectReview", v)
    return _out(body, "SelfSubjectReview", v, {"userInfo": user_info(user)}, keep_spec=False)


async def token_review(server: APIServer, user: User, body, ns: str) -> dict:
    v = f"{AUTHN_GROUP}/v1"
    body = _decode(body, "TokenReview", f"{AN}.TokenReview", v)
    spec = body.get("spec") or {}
    token = spec.get("token") or ""
    if not token:
        raise E.invalid_object("TokenReview", "", [E.required("spec.token", "")], AUTHN_GROUP)
    authn = server.token_authenticator
    st: dict = {"user": {}}
    if authn is not None:
        u, err = await authn.authenticate_token(token)
        if u is not None:
            st = {"authenticated": True, "user": user_info(u)}
            auds = spec.get("audiences") or []
            if auds:
                st["audiences"] = auds
        elif err:
            st["error"] = err
    return _out(body, "TokenReview", v, st)


HANDLERS = {
    (AUTHZ_GROUP, "v1", "selfsubjectaccessreviews"): self_subject_access_review,
    (AUTHZ_GROUP, "v1", "selfsubjectrulesreviews"): self_subject_rules_review,
    (AUTHZ_GROUP, "v1", "subjectaccessreviews"): subject_access_review,
    (AUTHZ_GROUP, "v1", "localsubjectaccessreviews"): local_subject_access_review,
    (AUTHN_GROUP, "v1", "selfsubjectreviews"): self_subject_review,
    (AUTHN_GROUP, "v1", "tokenreviews"): token_review,
}


# --------------------------------------------------------------------- TokenRequest --
async def token_request(server: APIServer, user: User, body, ns: str, name: str) -> dict:
    v = f"{AUTHN_GROUP}/v1"
    body = _decode(body, "TokenRequest", f"{AN}.TokenRequest", v)
    sa = await server.registry("", "v1", "serviceaccounts").get(ns, name)
    spec = dict(body.get("spec") or {})
    secs = spec.get("expirationSeconds")
    if secs is None:
        secs = DEFAULT_TOKEN_SECONDS
    if not isinstance(secs, int) or isinstance(secs, bool) or secs < MIN_TOKEN_SECONDS:
        raise E.invalid_object("TokenRequest", name, [E.invalid(
            "spec.expirationSeconds", secs, "may not specify a duration less than 10 minutes")],
            AUTHN_GROUP)
    if secs > 2 ** 32:
        raise E.invalid_object("TokenRequest", name, [E.invalid(
            "spec.expirationSeconds", secs, "may not specify a duration larger than 2^32 "
            "seconds")], AUTHN_GROUP)
    bound = None
    ref = spec.get("boundObjectRef")
    if ref:
        kind = ref.get("kind")
        plural = {"Pod": "pods", "Secret": "secrets"}.get(kind or "")
        if plural is None:
            raise E.invalid_object("TokenRequest", name, [E.unsupported(
                "spec.boundObjectRef.kind", kind or "", ["Pod", "Secret"])], AUTHN_GROUP)
        obj = await server.registry("", "v1", plural).get(ns, ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != obj["metadata"].get("uid"):
            raise E.conflict(plural, ref.get("name", ""), f"the UID in the bound object "
                             f"reference ({ref['uid']}) does not match the UID in record. The "
                             f"object might have been deleted and then recreated")
        bound = (kind.lower(), obj)
    tokens = server.service_accounts
    if tokens is None:
        raise E.ApiError(404, "NotFound", "the server could not find the requested resource")
    audiences = list(spec.get("audiences") or []) or list(tokens.audiences)
    token, exp = tokens.issue(sa, audiences, secs, bound)
    spec["audiences"] = audiences
    spec["expirationSeconds"] = secs
    md = {"name": name, "namespace": ns, "creationTimestamp": None}
    ts = dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": v, "metadata": md, "spec": spec,
            "status": {"token": token, "expirationTimestamp": ts}}


# ------------------------------------------------------ protobuf bodies (kubectl auth) --
def _register_protobuf() -> None:
    from kcore.apiserver import protobuf as pb
    pb.MESSAGES.update({
        "ResourceAttributes": {1: ("namespace", "s"), 2: ("verb", "s"), 3: ("group", "s"),
                               4: ("version", "s"), 5: ("resource", "s"),
                               6: ("subresource", "s"), 7: ("name", "s")},
        "NonResourceAttributes": {1: ("path", "s"), 2: ("verb", "s")},
        "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "m:ResourceAttributes"),
                                        2: ("nonResourceAttributes",
                                            "m:NonResourceAttributes")},
        "SelfSubjectAccessReview": {1: ("metadata", "m:ObjectMeta"),
                                    2: ("spec", "m:SelfSubjectAccessReviewSpec")},
        "SubjectAccessReviewSpec": {1: ("resourceAttributes", "m:ResourceAttributes"),
                                    2: ("nonResourceAttributes", "m:NonResourceAttributes"),
                                    3: ("user", "s"), 4: ("groups", "rs"), 6: ("uid", "s")},
        "SubjectAccessReview": {1: ("metadata", "m:ObjectMeta"),
                                2: ("spec", "m:SubjectAccessReviewSpec")},
        "LocalSubjectAccessReview": {1: ("metadata", "m:ObjectMeta"),
                                     2: ("spec", "m:SubjectAccessReviewSpec")},
        "SelfSubjectRulesReviewSpec": {1: ("namespace", "s")},
        "SelfSubjectRulesReview": {1: ("metadata", "m:ObjectMeta"),
                                   2: ("spec", "m:SelfSubjectRulesReviewSpec")},
        "SelfSubjectReview": {1: ("metadata", "m:ObjectMeta")},
        "TokenReviewSpec": {1: ("token", "s"), 2: ("audiences", "rs")},
        "TokenReview": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:TokenReviewSpec")},
        "BoundObjectReference": {1: ("kind", "s"), 2: ("apiVersion", "s"), 3: ("name", "s"),
                                 4: ("uid", "s")},
        "TokenRequestSpec": {1: ("audiences", "rs"), 3: ("boundObjectRef",
                                                         "m:BoundObjectReference"),
                             4: ("expirationSeconds", "i")},
        "TokenRequest": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:TokenRequestSpec")},
    })
    pb.TOP.update({"SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview",
                   "SelfSubjectRulesReview", "SelfSubjectReview", "TokenReview",
                   "TokenRequest"})


_register_protobuf()
