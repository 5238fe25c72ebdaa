"""root-ca-cert-publisher: the `kube-root-ca.crt` ConfigMap in every namespace.

Pods read the cluster CA from it (the `ca.crt` of their service-account
volume). The CA is `--root-ca-file`; kube falls back to the CA of the
manager's kubeconfig, which `ca_bundle` is given by the caller. A cluster with
neither (an insecure `--master=http://...`) has no CA to publish: the
ConfigMap then holds an empty `ca.crt`, so that pods still start (and a client
that needs TLS fails on the empty file, which says what is missing).
The ConfigMap is put back when deleted and its data restored when edited.
"""
from __future__ import annotations

import logging

from kcore.client import errors as E
from kcore.client.resources import CONFIG_MAPS, NAMESPACES
from kcore.client.store import deep_copy
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)

NAME = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when "
               "using internal endpoints such as the internal service IP or "
               "kubernetes.default.svc. No other usage is guaranteed across distributions "
               "of Kubernetes clusters.")
DESCRIPTION_ANN = "kubernetes.io/description"


def desired(namespace: str, ca: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace,
                         "annotations": {DESCRIPTION_ANN: DESCRIPTION}},
            "data": {KEY: ca}}


def repaired(cm: dict, ca: str) -> dict | None:
    """The update that makes an existing ConfigMap right, or None if it is."""
    ann = cm["metadata"].get("annotations") or {}
    if cm.get("data") == {KEY: ca} and ann.get(DESCRIPTION_ANN) == DESCRIPTION:
        return None
    obj = deep_copy(cm)
    obj["data"] = {KEY: ca}
    obj.pop("binaryData", None)
    obj["metadata"].setdefault("annotations", {})[DESCRIPTION_ANN] = DESCRIPTION
    return obj


def read_ca(path: str) -> str:
    if not path:
        return ""
    with open(path) as fh:
        return fh.read()


class RootCACertPublisher(Controller):
    name = "root-ca-certificate-publisher-controller"
    component = "root-ca-cert-publisher"

    def __init__(self, ctx, ca: str | None = None):
        super().__init__(ctx, workers=1)
        self.ca = ca if ca is not None else (read_ca(ctx.options.root_ca_file)
                                             or ctx.options.root_ca_bundle)
        if not self.ca:
            log.warning("root-ca-cert-publisher: no --root-ca-file and no CA in the "
                        "kubeconfig; %s ConfigMaps get an empty %s", NAME, KEY)
        self.namespaces = self.informer(NAMESPACES)
        self.configmaps = self.informer(CONFIG_MAPS)
        self.namespaces.add_event_handler(self._ns, lambda o, n: self._ns(n))
        self.configmaps.add_event_handler(self._cm, lambda o, n: self._cm(n), self._cm)

    def _ns(self, ns: dict) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _cm(self, cm: dict) -> None:
        if cm["metadata"].get("name") == NAME:
            self.queue.add(cm["metadata"].get("namespace", ""))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.store.get("", key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        cm = self.configmaps.store.get(key, NAME)
        try:
            if cm is None:
                await self.client.create(CONFIG_MAPS, desired(key, self.ca), key)
                return
            obj = repaired(cm, self.ca)
            if obj is not None:
                await self.client.update(CONFIG_MAPS, obj)
        except (E.AlreadyExists, E.NotFound):
            return
        except E.Forbidden as e:
            if "being terminated" in e.message:
                return
            raise
