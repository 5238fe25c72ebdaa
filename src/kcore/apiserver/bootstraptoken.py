"""Bootstrap tokens (`--enable-bootstrap-token-auth`): `<id>.<secret>` bearer tokens
backed by Secrets of type `bootstrap.kubernetes.io/token` named
`bootstrap-token-<id>` in kube-system.

A token authenticates as `system:bootstrap:<id>` in `system:bootstrappers` (plus
the Secret's `auth-extra-groups`, each `system:bootstrappers:*`) while the
Secret says `usage-bootstrap-authentication: "true"`, holds the same secret, is
not being deleted and its `expiration` (RFC 3339) has not passed.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import TYPE_CHECKING

from kcore.api.meta import parse_time
from kcore.apiserver.auth import AUTHENTICATED, User

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")


def parse_token(token: str) -> tuple[str, str] | None:
    m = _TOKEN.match(token)
    return (m.group(1), m.group(2)) if m else None


def _data(secret: dict, key: str) -> str:
    v = (secret.get("data") or {}).get(key)
    if v is None:
        return ""
    try:
        return base64.b64decode(v).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def token_user(secret: dict | None, token_id: str, token_secret: str, now: float
               ) -> User | None:
    """The user a bootstrap token stands for, or None (pure: the Secret and the clock
    are given)."""
    if not secret or secret.get("type") != SECRET_TYPE:
        return None
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if _data(secret, "token-id") != token_id:
        return None
    if not hmac.compare_digest(_data(secret, "token-secret").encode(), token_secret.encode()):
        return None
    if _data(secret, "usage-bootstrap-authentication") != "true":
        return None
    exp = _data(secret, "expiration")
    if exp:
        try:
            if parse_time(exp) <= now:
                return None
        except ValueError:
            return None
    groups = [GROUP]
    for g in _data(secret, "auth-extra-groups").split(","):
        g = g.strip()
        if g and _GROUP.match(g) and g not in groups:
            groups.append(g)
    return User(USER_PREFIX + token_id, (*groups, AUTHENTICATED))


class BootstrapTokens:
    """Looks tokens up in the API server's own Secret cache."""

    def __init__(self, server: APIServer, clock=None):
        import time
        self.server = server
        self.clock = clock or time.time

    async def authenticate(self, token: str) -> User | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        reg = self.server.registry("", "v1", "secrets")
        if reg is None:
            return None
        ent = await reg.current(reg.key(NAMESPACE, SECRET_PREFIX + parsed[0]))
        return token_user(ent.obj if ent is not None else None, parsed[0], parsed[1],
                          self.clock())
