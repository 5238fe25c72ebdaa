"""The authentication/authorization seam of the HTTP layer.

Every request passes the `auth` middleware (app.py): an Authenticator turns it
into a `User` (None: 401), an Authorizer decides on (user, RequestInfo) (False:
403). The insecure port uses `InsecureAuthenticator` (kube's
"system:unsecured" in system:masters) and `AlwaysAllow`; the secure port
plugs the certificate/token/basic/service-account authenticators (authn.py)
and the AlwaysAllow/AlwaysDeny/ABAC/RBAC authorizers (authz.py, rbac.py) into
the same slots. The user is on the request as request["user"], and on the
request's task as `CURRENT` (what RBAC's escalation check reads).

Authorizers decide in three ways, as kube's do: Allow, Deny, or NoOpinion
(the next authorizer of the chain is asked); `authorize` folds that to a bool.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

ALLOW, DENY, NO_OPINION = "Allow", "Deny", "NoOpinion"

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class RequestInfo:
    """kube's RequestInfo: what is being asked, resolved from method and path."""
    path: str
    verb: str                    # get list watch create update patch delete deletecollection
    is_resource: bool = False
    api_prefix: str = ""         # "api" | "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


ANONYMOUS_NAME = "system:anonymous"


@dataclass(frozen=True)
class Rules:
    """What a user may do (SelfSubjectRulesReview's status): lists of
    {verbs, apiGroups, resources, resourceNames} and {verbs, nonResourceURLs}."""
    resource: tuple = ()
    non_resource: tuple = ()
    incomplete: bool = False
    error: str = ""


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> User | None: ...


class Authorizer(Protocol):
    async def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]: ...


class InsecureAuthenticator:
    USER = User("system:unsecured", (MASTERS, AUTHENTICATED))

    async def authenticate(self, request: web.Request) -> User | None:
        return self.USER


class DecidingAuthorizer:
    """Base of the chain's members: `decide` returns (ALLOW|DENY|NO_OPINION, reason)."""

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        return NO_OPINION, ""

    async def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        d, reason = await self.decide(user, info)
        return d == ALLOW, reason

    async def rules_for(self, user: User, namespace: str) -> Rules:
        return Rules()


ALL_RULES = Rules(({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},),
                  ({"verbs": ["*"], "nonResourceURLs": ["*"]},))


class AlwaysAllow(DecidingAuthorizer):
    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        return ALLOW, ""

    async def rules_for(self, user: User, namespace: str) -> Rules:
        return ALL_RULES


class AlwaysDeny(DecidingAuthorizer):
    """kube's AlwaysDeny has no opinion (with its reason), so a later member may allow."""

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        return NO_OPINION, "Everything is forbidden."


CURRENT: contextvars.ContextVar[tuple[User, object] | None] = contextvars.ContextVar(
    "kcore_apiserver_current_user", default=None)


def forbidden_message(user: User, info: RequestInfo, reason: str = "") -> str:
    """kube's wording: 'pods is forbidden: User "u" cannot list resource "pods" in API
    group "" in the namespace "default"'."""
    if not info.is_resource:
        msg = (f'forbidden: User "{user.name}" cannot {info.verb} path "{info.path}"')
    else:
        res = info.resource + (f"/{info.subresource}" if info.subresource else "")
        what = f'{info.resource}.{info.group}' if info.group else info.resource
        if info.name:
            what = f'{what} "{info.name}"'
        msg = (f'{what} is forbidden: User "{user.name}" cannot {info.verb} resource "{res}" '
               f'in API group "{info.group}"')
        msg += f' in the namespace "{info.namespace}"' if info.namespace else \
            " at the cluster scope"
    if reason:
        msg += f": {reason}"
    return msg
