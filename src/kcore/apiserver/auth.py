"""The authentication/authorization seam of the HTTP layer.

Every request passes `auth_middleware`: an Authenticator turns it into a
`User` (None: 401), an Authorizer decides on (user, RequestInfo) (False:
403). The insecure port uses `InsecureAuthenticator` (kube's
"system:unsecured" in system:masters) and `AlwaysAllow`; the secure port
plugs certificate/token/basic authenticators and ABAC/RBAC authorizers into
the same slots. The user is on the request as request["user"].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web


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


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> User | None: ...


class Authorizer(Protocol):
    async def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]: ...


class InsecureAuthenticator:
    USER = User("system:unsecured", ("system:masters", "system:authenticated"))

    async def authenticate(self, request: web.Request) -> User | None:
        return self.USER


class AlwaysAllow:
    async def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        return True, ""


class AlwaysDeny:
    async def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        return False, "Everything is forbidden."


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
