"""ServiceAccount tokens: verifying them (an authenticator) and issuing them (TokenRequest).

Two kinds of token, both JWTs signed with the service-account key:
- legacy tokens (issuer `kubernetes/serviceaccount`) that the token controller
  stores in `kubernetes.io/service-account-token` Secrets; valid while the
  Secret still holds the token and the ServiceAccount exists (lookup);
- bound tokens from `POST .../serviceaccounts/<name>/token` (TokenRequest,
  `kubectl create token`): issuer `--service-account-issuer`, audiences,
  expiry, optionally bound to a Pod or Secret that must still exist.
Either authenticates as `system:serviceaccount:<ns>:<name>` in the groups
`system:serviceaccounts` and `system:serviceaccounts:<ns>`.
"""
from __future__ import annotations

import base64
import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from kcore import pki
from kcore.api import errors as E
from kcore.apiserver.auth import AUTHENTICATED, User

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

log = logging.getLogger(__name__)

PREFIX = "system:serviceaccount:"
ALL_GROUP = "system:serviceaccounts"
LEGACY = "kubernetes.io/serviceaccount/"
LEEWAY = 60


class InvalidToken(Exception):
    """A token this authenticator owns (its issuer) that does not authenticate."""


def username(namespace: str, name: str) -> str:
    return f"{PREFIX}{namespace}:{name}"


def split_username(user: str) -> tuple[str, str] | None:
    if not user.startswith(PREFIX):
        return None
    ns, _, name = user[len(PREFIX):].partition(":")
    return (ns, name) if ns and name and ":" not in name else None


def sa_user(namespace: str, name: str, uid: str, extra: dict | None = None) -> User:
    return User(username(namespace, name),
                (ALL_GROUP, f"{ALL_GROUP}:{namespace}", AUTHENTICATED), uid, extra or {})


def _unverified_claims(token: str) -> dict | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        c = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return c if isinstance(c, dict) else None


@dataclass
class ServiceAccountTokens:
    """Verification keys, the signing key, accepted issuers and audiences."""
    server: APIServer | None
    verify_keys: list
    signing_key: object = None
    issuers: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=list)
    lookup: bool = True
    clock: object = time.time

    # -- verification -------------------------------------------------------------
    async def authenticate(self, token: str) -> User | None:
        """The service account of a token; None when the token is not a JWT of an
        issuer this server accepts (another authenticator may know it); raises
        InvalidToken for one that is ours but does not verify or has been revoked."""
        claims = _unverified_claims(token)
        if claims is None:
            return None
        iss = claims.get("iss")
        if iss != pki.LEGACY_SA_ISSUER and iss not in self.issuers:
            return None
        try:
            claims = pki.jwt_verify(token, self.verify_keys)
        except pki.JWTError as e:
            raise InvalidToken(str(e)) from None
        if iss == pki.LEGACY_SA_ISSUER:
            return await self._legacy(token, claims)
        return await self._bound(claims)

    async def _legacy(self, token: str, c: dict) -> User:
        ns = c.get(f"{LEGACY}namespace")
        name = c.get(f"{LEGACY}service-account.name")
        uid = c.get(f"{LEGACY}service-account.uid", "")
        secret = c.get(f"{LEGACY}secret.name")
        if not all(isinstance(v, str) and v for v in (ns, name, secret)):
            raise InvalidToken("legacy token is missing claims")
        if c.get("sub") != username(ns, name):
            raise InvalidToken("sub claim does not match the service account")
        if self.lookup and self.server is not None:
            sec = await self._get("secrets", ns, secret)
            if sec is None:
                raise InvalidToken("Token has been invalidated")
            stored = (sec.get("data") or {}).get("token", "")
            try:
                stored_raw = base64.b64decode(stored)
            except ValueError:
                stored_raw = b""
            if not hmac.compare_digest(stored_raw, token.encode()):
                raise InvalidToken("Token does not match server's copy")
            await self._check_sa(ns, name, uid)
        return sa_user(ns, name, uid)

    async def _bound(self, c: dict) -> User:
        now = self.clock()
        exp, nbf = c.get("exp"), c.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + LEEWAY:
            raise InvalidToken("token has expired")
        if isinstance(nbf, (int, float)) and now < nbf - LEEWAY:
            raise InvalidToken("token is not valid yet")
        aud = c.get("aud")
        aud = [aud] if isinstance(aud, str) else aud
        if not isinstance(aud, list) or not set(aud) & set(self.audiences):
            raise InvalidToken("token audiences are invalid")
        k8s = c.get("kubernetes.io")
        if not isinstance(k8s, dict) or not isinstance(k8s.get("serviceaccount"), dict):
            raise InvalidToken("token is missing the kubernetes.io claim")
        ns = k8s.get("namespace")
        name = k8s["serviceaccount"].get("name")
        uid = k8s["serviceaccount"].get("uid", "")
        if not isinstance(ns, str) or not isinstance(name, str) or not ns or not name:
            raise InvalidToken("token is missing the service account")
        extra: dict[str, list[str]] = {}
        if c.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={c['jti']}"]
        if self.lookup and self.server is not None:
            await self._check_sa(ns, name, uid)
            for ref_kind, plural in (("pod", "pods"), ("secret", "secrets")):
                ref = k8s.get(ref_kind)
                if isinstance(ref, dict):
                    obj = await self._get(plural, ns, ref.get("name", ""))
                    if obj is None or (obj.get("metadata") or {}).get("uid") != ref.get("uid"):
                        raise InvalidToken(f"{ref_kind} bound to the token no longer exists")
        pod = k8s.get("pod")
        if isinstance(pod, dict):
            extra["authentication.kubernetes.io/pod-name"] = [str(pod.get("name", ""))]
            extra["authentication.kubernetes.io/pod-uid"] = [str(pod.get("uid", ""))]
        return sa_user(ns, name, uid, extra)

    async def _get(self, plural: str, ns: str, name: str) -> dict | None:
        reg = self.server.registry("", "v1", plural)
        try:
            return await reg.get(ns, name)
        except E.ApiError as e:
            if e.code == 404:
                return None
            raise

    async def _check_sa(self, ns: str, name: str, uid: str) -> None:
        sa = await self._get("serviceaccounts", ns, name)
        if sa is None:
            raise InvalidToken(f"service account {ns}/{name} has been deleted")
        if uid and (sa.get("metadata") or {}).get("uid") != uid:
            raise InvalidToken(f"service account UID ({uid}) does not match claim")

    # -- issuing ------------------------------------------------------------------
    def issue(self, sa: dict, audiences: list[str], seconds: int,
              bound: tuple[str, dict] | None = None) -> tuple[str, float]:
        """A bound token for ServiceAccount `sa` (TokenRequest); (token, expiry)."""
        if self.signing_key is None:
            raise E.ApiError(404, "NotFound", "the server could not find the requested "
                             "resource (no service-account signing key)")
        md = sa["metadata"]
        now = int(self.clock())
        k8s: dict = {"namespace": md["namespace"],
                     "serviceaccount": {"name": md["name"], "uid": md.get("uid", "")}}
        if bound is not None:
            kind, obj = bound
            k8s[kind] = {"name": obj["metadata"]["name"], "uid": obj["metadata"].get("uid", "")}
        claims = {"aud": audiences or list(self.audiences), "exp": now + seconds, "iat": now,
                  "iss": self.issuers[0] if self.issuers else "", "jti": str(uuid.uuid4()),
                  "kubernetes.io": k8s, "nbf": now,
                  "sub": username(md["namespace"], md["name"])}
        return pki.jwt_sign(claims, self.signing_key), float(now + seconds)
