"""Service accounts: a `default` account in every namespace, and token Secrets.

`ServiceAccountsController` creates `default` in every active namespace (and
again if it is deleted). `TokensController` gives every ServiceAccount a
`kubernetes.io/service-account-token` Secret (`<account>-token-<5 chars>`,
annotated with the account's name and uid, listed in the account's
`secrets`), fills token Secrets that users create for an account, and deletes
token Secrets whose account is gone. The token is a legacy service-account
JWT signed with `--service-account-private-key-file` (kcore.pki's format,
which the API server verifies with `--service-account-key-file`); `ca.crt`
is `--root-ca-file`. Signing goes through `TokenGenerator`, the hook to
replace; without a key no token is written (as kube, which then does not run
the token controller at all, but kcore still creates the Secret so that the
account's wiring is visible).
"""
from __future__ import annotations

import base64
import logging
import random

from kcore.client import errors as E
from kcore.client.resources import NAMESPACES, SECRETS, SERVICE_ACCOUNTS
from kcore.client.store import deep_copy
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)

TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANN = "kubernetes.io/service-account.name"
UID_ANN = "kubernetes.io/service-account.uid"
DEFAULT = "default"
_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class TokenGenerator:
    """The signing hook: a token for (namespace, account, uid, secret) or None."""

    def generate(self, namespace: str, name: str, uid: str, secret_name: str) -> str | None:
        return None


class LegacyJWTGenerator(TokenGenerator):
    """Legacy service-account JWTs signed with a PEM private key (EC or RSA)."""

    def __init__(self, key_file: str):
        from kcore import pki
        self.key = pki.load_private_key(key_file)
        self._sign = pki.legacy_service_account_token

    def generate(self, namespace: str, name: str, uid: str, secret_name: str) -> str | None:
        return self._sign(self.key, namespace, name, uid, secret_name)


def token_generator(key_file: str) -> TokenGenerator:
    if not key_file:
        return TokenGenerator()
    return LegacyJWTGenerator(key_file)


def _b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class ServiceAccountsController(Controller):
    name = "serviceaccount"
    component = "service-account-controller"

    def __init__(self, ctx):
        super().__init__(ctx, workers=1)
        self.namespaces = self.informer(NAMESPACES)
        self.accounts = self.informer(SERVICE_ACCOUNTS)
        self.namespaces.add_event_handler(self._ns, lambda o, n: self._ns(n))
        self.accounts.add_event_handler(on_delete=self._sa_deleted)

    def _ns(self, ns: dict) -> None:
        if not ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    def _sa_deleted(self, sa: dict) -> None:
        if sa["metadata"].get("name") == DEFAULT:
            self.queue.add(sa["metadata"].get("namespace", ""))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.store.get("", key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.accounts.store.get(key, DEFAULT) is not None:
            return
        try:
            await self.client.create(SERVICE_ACCOUNTS, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT, "namespace": key}}, key)
        except E.AlreadyExists:
            return
        except E.Forbidden as e:
            if "being terminated" in e.message:
                return
            raise
        except E.NotFound:
            return


class TokensController(Controller):
    name = "serviceaccount-token"
    component = "tokens-controller"

    def __init__(self, ctx, generator: TokenGenerator | None = None):
        super().__init__(ctx, ctx.options.concurrent_serviceaccount_token_syncs)
        o = ctx.options
        self.generator = generator or token_generator(o.service_account_private_key_file)
        self.root_ca = b""
        if o.root_ca_file:
            with open(o.root_ca_file, "rb") as fh:
                self.root_ca = fh.read()
        self.accounts = self.informer(SERVICE_ACCOUNTS)
        self.secrets = self.informer(SECRETS)
        self.secrets.add_indexers({"sa": self._secret_sa})
        self.accounts.add_event_handler(self._sa, lambda o, n: self._sa(n), self._sa)
        self.secrets.add_event_handler(self._secret, lambda o, n: self._secret(n),
                                       self._secret)
        if isinstance(self.generator, TokenGenerator) and type(self.generator) is \
                TokenGenerator:
            log.info("tokens controller: no --service-account-private-key-file; token "
                     "Secrets are created without tokens")

    @staticmethod
    def _secret_sa(s: dict) -> list[str]:
        if s.get("type") != TOKEN_TYPE:
            return []
        ann = s["metadata"].get("annotations") or {}
        name = ann.get(NAME_ANN)
        return [f"{s['metadata'].get('namespace', '')}/{name}"] if name else []

    def _sa(self, sa: dict) -> None:
        self.queue.add(f"{sa['metadata'].get('namespace', '')}/{sa['metadata']['name']}")

    def _secret(self, s: dict) -> None:
        for k in self._secret_sa(s):
            self.queue.add(k)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        sa = self.accounts.store.get(ns, name)
        secrets = self.secrets.store.by_index("sa", key)
        if sa is None:
            for s in secrets:
                await self._delete(s)
            return
        uid = sa["metadata"]["uid"]
        mine = []
        for s in secrets:
            suid = (s["metadata"].get("annotations") or {}).get(UID_ANN)
            if suid and suid != uid:
                await self._delete(s)           # belongs to a deleted account of that name
                continue
            mine.append(s)
        for s in mine:
            await self._fill(sa, s)
        if not mine:
            await self._create(sa)
            return
        refs = {r.get("name") for r in sa.get("secrets") or []}
        missing = [s["metadata"]["name"] for s in mine if s["metadata"]["name"] not in refs]
        if missing and not sa["metadata"].get("deletionTimestamp"):
            obj = deep_copy(sa)
            obj.setdefault("secrets", []).extend({"name": n} for n in missing)
            await self.client.update(SERVICE_ACCOUNTS, obj)

    async def _delete(self, s: dict) -> None:
        md = s["metadata"]
        try:
            await self.client.delete(SECRETS, md["name"], md["namespace"],
                                     preconditions={"uid": md["uid"]})
        except (E.NotFound, E.Conflict):
            pass

    def _data(self, sa: dict, secret_name: str) -> dict:
        md = sa["metadata"]
        data = {"namespace": _b64(md["namespace"])}
        if self.root_ca:
            data["ca.crt"] = _b64(self.root_ca)
        tok = self.generator.generate(md["namespace"], md["name"], md["uid"], secret_name)
        if tok:
            data["token"] = _b64(tok)
        return data

    async def _create(self, sa: dict) -> None:
        md = sa["metadata"]
        if md.get("deletionTimestamp"):
            return
        sname = f"{md['name']}-token-" + "".join(random.choice(_CHARS) for _ in range(5))
        secret = {"apiVersion": "v1", "kind": "Secret", "type": TOKEN_TYPE,
                  "metadata": {"name": sname, "namespace": md["namespace"],
                               "annotations": {NAME_ANN: md["name"], UID_ANN: md["uid"]}},
                  "data": self._data(sa, sname)}
        try:
            await self.client.create(SECRETS, secret)
        except E.Forbidden as e:
            if "being terminated" in e.message:
                return
            raise
        obj = deep_copy(sa)
        obj.setdefault("secrets", []).append({"name": sname})
        try:
            await self.client.update(SERVICE_ACCOUNTS, obj)
        except E.Conflict:
            fresh = await self.client.get(SERVICE_ACCOUNTS, md["name"], md["namespace"])
            fresh.setdefault("secrets", []).append({"name": sname})
            await self.client.update(SERVICE_ACCOUNTS, fresh)

    async def _fill(self, sa: dict, s: dict) -> None:
        """Complete a token Secret that lacks its token (or its uid annotation)."""
        ann = s["metadata"].get("annotations") or {}
        data = s.get("data") or {}
        want = self._data(sa, s["metadata"]["name"])
        if "token" in data and ann.get(UID_ANN) and \
                all(k in data for k in want if k != "token"):
            return
        if "token" not in want and ann.get(UID_ANN) and "namespace" in data:
            return
        obj = deep_copy(s)
        obj["metadata"].setdefault("annotations", {})[UID_ANN] = sa["metadata"]["uid"]
        obj.setdefault("data", {})
        for k, v in want.items():
            obj["data"].setdefault(k, v)
        try:
            await self.client.update(SECRETS, obj)
        except E.NotFound:
            pass
