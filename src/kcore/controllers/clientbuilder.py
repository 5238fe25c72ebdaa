"""Per-controller credentials (`--use-service-account-credentials`).

Each controller then talks to the API server as its own service account in
kube-system (`replicaset-controller`, `node-controller`, ...), as kube's
controller manager does under RBAC: the manager's own identity only needs to
create those accounts, request their tokens (TokenRequest, one hour, renewed
at 80 % of the lifetime) and list/watch for the shared informers. The
RBAC policy must grant each account its controller's permissions (kube's
`system:controller:<name>` roles).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from kcore.api.meta import parse_time
from kcore.client import errors as E
from kcore.client.resources import SERVICE_ACCOUNTS
from kcore.client.rest import Client

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
TOKEN_SECONDS = 3600
# controller → the service account kube runs it as (None: the manager's own identity)
ACCOUNTS: dict[str, str | None] = {
    "replicationcontroller": "replication-controller",
    "replicaset": "replicaset-controller",
    "deployment": "deployment-controller",
    "endpoint": "endpoint-controller",
    "namespace": "namespace-controller",
    "serviceaccount": "service-account-controller",
    "serviceaccount-token": None,
    "resourcequota": "resourcequota-controller",
    "nodeipam": "node-controller",
    "nodelifecycle": "node-controller",
    "taint-eviction-controller": "node-controller",
    "garbagecollector": "generic-garbage-collector",
    "podgc": "pod-garbage-collector",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
    "root-ca-certificate-publisher-controller": "root-ca-cert-publisher",
    "csrsigning": "certificate-controller",
    "csrapproving": "certificate-controller",
}


class ServiceAccountClients:
    def __init__(self, root: Client, namespace: str = NAMESPACE,
                 seconds: int = TOKEN_SECONDS):
        self.root, self.namespace, self.seconds = root, namespace, seconds
        self.clients: dict[str, Client] = {}
        self.expiry: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def _token(self, account: str) -> tuple[str, float]:
        try:
            await self.root.create(SERVICE_ACCOUNTS, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": self.namespace}}, self.namespace)
        except E.AlreadyExists:
            pass
        out = await self.root.request_json(
            "POST", SERVICE_ACCOUNTS.path(self.namespace, account, "token"),
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": self.seconds}})
        st = out.get("status") or {}
        try:
            exp = parse_time(st.get("expirationTimestamp") or "")
        except ValueError:
            exp = time.time() + self.seconds
        return st["token"], exp

    async def client_for(self, account: str) -> Client:
        c = self.clients.get(account)
        if c is not None:
            return c
        token, exp = await self._token(account)
        cfg = dataclasses.replace(
            self.root.config, token=token, token_file="", cert_file="", cert_data=b"",
            key_file="", key_data=b"", username="", password="",
            user_agent=f"{self.root.config.user_agent}/{account}",
            extra_headers=dict(self.root.config.extra_headers))
        c = self.clients[account] = Client(cfg)
        self.expiry[account] = exp
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh())
        return c

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = time.time()
            for account, c in list(self.clients.items()):
                exp = self.expiry.get(account, 0.0)
                if now < exp - 0.2 * self.seconds:
                    continue
                try:
                    token, exp = await self._token(account)
                except E.ApiError as e:
                    log.warning("renewing the token of %s/%s failed: %s", self.namespace,
                                account, e)
                    continue
                c.set_token(token)
                self.expiry[account] = exp

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for c in self.clients.values():
            await c.close()
