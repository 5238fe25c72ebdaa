"""Authentication on the secure port: the union of kube's request authenticators.

In kube-apiserver's order: the client certificate (verified by the TLS layer
against --client-ca-file; CN = user, O = groups), then the bearer token
(--token-auth-file, then bootstrap tokens with --enable-bootstrap-token-auth, then
ServiceAccount JWTs), then HTTP basic
(--basic-auth-file). The first that recognises the request wins and the user
joins `system:authenticated`. A request that presents credentials none of them
accepts is refused (401) even when anonymous access is on; one that presents
none is `system:anonymous` in `system:unauthenticated` with --anonymous-auth.
"""
from __future__ import annotations

import base64
import binascii
import csv
import functools
import hmac
import logging
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kcore import pki
from kcore.apiserver.auth import ANONYMOUS_NAME, AUTHENTICATED, UNAUTHENTICATED, User
from kcore.apiserver.serviceaccount import InvalidToken, ServiceAccountTokens

log = logging.getLogger(__name__)

ANONYMOUS = User(ANONYMOUS_NAME, (UNAUTHENTICATED,))


class AuthFileError(ValueError):
    pass


def _read_csv(path: str, what: str) -> list[tuple[str, User]]:
    """Rows of `secret,user,uid[,"group1,group2"]` (kube's token and password files)."""
    out = []
    try:
        fh = open(path, newline="")
    except OSError as e:
        raise AuthFileError(f"{what} file {path!r}: {e.strerror}") from None
    with fh:
        for lineno, rec in enumerate(csv.reader(fh, skipinitialspace=True), 1):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) < 3:
                raise AuthFileError(f"{what} file '{path}' must have at least 3 columns "
                                    f"({what}, user name, user uid), found {len(rec)} "
                                    f"(line {lineno})")
            secret, name, uid = rec[0].strip(), rec[1].strip(), rec[2].strip()
            if not secret or not name:
                log.warning("%s file %s line %d: empty %s or user name, skipped", what, path,
                            lineno, what)
                continue
            groups = tuple(g.strip() for g in rec[3].split(",") if g.strip()) \
                if len(rec) > 3 else ()
            out.append((secret, User(name, groups, uid)))
    return out


def load_token_file(path: str) -> dict[str, User]:
    """--token-auth-file: token,user,uid,"group1,group2" per line."""
    tokens: dict[str, User] = {}
    for tok, user in _read_csv(path, "token"):
        if tok in tokens:
            log.warning("token file %s: duplicate token for user %s", path, user.name)
        tokens[tok] = user
    return tokens


def load_basic_file(path: str) -> dict[str, tuple[str, User]]:
    """--basic-auth-file: password,user,uid,"group1,group2" per line; keyed by user."""
    return {u.name: (pw, u) for pw, u in _read_csv(path, "password")}


def with_authenticated(u: User) -> User:
    if AUTHENTICATED in u.groups:
        return u
    return User(u.name, (*u.groups, AUTHENTICATED), u.uid, u.extra)


@functools.lru_cache(maxsize=1024)
def _cert_user(der: bytes) -> tuple[User | None, str]:
    """(user, error) of a client certificate the TLS layer has verified."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        return None, f"unparseable client certificate: {e}"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and \
                ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            return None, "x509: certificate specifies an incompatible key usage"
    except x509.ExtensionNotFound:
        pass
    name, groups = pki.subject_user(cert)
    if not name:
        return None, ""
    h = cert.fingerprint(pki.hashes.SHA256()).hex()
    return User(name, tuple(groups), "",
                {"authentication.kubernetes.io/credential-id": [f"X509SHA256={h}"]}), ""


def peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        return sslobj.getpeercert(binary_form=True)
    except ValueError:
        return None


@dataclass
class RequestAuthenticator:
    """The secure port's authenticator (see the module docstring for the order)."""
    client_certs: bool = False
    tokens: dict[str, User] = field(default_factory=dict)
    basic: dict[str, tuple[str, User]] = field(default_factory=dict)
    service_accounts: ServiceAccountTokens | None = None
    bootstrap_tokens: object = None      # bootstraptoken.BootstrapTokens
    anonymous: bool = True

    async def authenticate(self, request: web.Request) -> User | None:
        failed = ""
        if self.client_certs:
            der = peer_certificate(request)
            if der:
                user, err = _cert_user(der)
                if user is not None:
                    return with_authenticated(user)
                failed = err
        header = request.headers.get("Authorization", "")
        scheme, _, cred = header.strip().partition(" ")
        cred = cred.strip()
        if scheme.lower() == "bearer" and cred:
            user, err = await self.authenticate_token(cred)
            if user is not None:
                return user
            failed = err or "invalid bearer token"
        elif scheme.lower() == "basic" and cred and self.basic:
            user = self._basic(cred)
            if user is not None:
                return user
            failed = "invalid username/password combination"
        if failed:
            log.debug("authentication failed for %s %s: %s", request.method, request.path,
                      failed)
            return None
        return ANONYMOUS if self.anonymous else None

    async def authenticate_token(self, token: str) -> tuple[User | None, str]:
        """A bearer token (also what TokenReview asks): (user, error)."""
        u = self.tokens.get(token)
        if u is not None:
            return with_authenticated(u), ""
        if self.bootstrap_tokens is not None:
            u = await self.bootstrap_tokens.authenticate(token)
            if u is not None:
                return u, ""
        if self.service_accounts is not None:
            try:
                u = await self.service_accounts.authenticate(token)
            except InvalidToken as e:
                return None, str(e)
            if u is not None:
                return with_authenticated(u), ""
        return None, "invalid bearer token"

    def _basic(self, cred: str) -> User | None:
        try:
            raw = base64.b64decode(cred, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = raw.partition(":")
        entry = self.basic.get(name) if sep else None
        if entry is None or not hmac.compare_digest(entry[0].encode(), password.encode()):
            return None
        return with_authenticated(entry[1])
