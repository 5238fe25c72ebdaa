"""Kubelet TLS bootstrap: from a bootstrap token to a client certificate.

With --bootstrap-kubeconfig and no usable --kubeconfig (missing, unreadable, or
its client certificate expired), the kubelet generates a
key, asks for `CN=system:node:<node>, O=system:nodes` through a
CertificateSigningRequest (signer `kubernetes.io/kube-apiserver-client-kubelet`)
made with the bootstrap credentials, waits until it is approved and issued,
writes the certificate and key to `<cert-dir>/kubelet-client-current.pem` and a
kubeconfig naming that file at --kubeconfig, and then runs with it.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time

import yaml
from cryptography.hazmat.primitives import serialization

from kcore import pki
from kcore.certificates.approver import NODE_PREFIX, NODES_GROUP
from kcore.certificates.request import (
    KUBELET_CLIENT,
    is_denied,
    is_failed,
    key_usages_for,
    make_request,
    new_key,
)
from kcore.client import Client
from kcore.client import errors as E
from kcore.client.config import ClientConfig, load_kubeconfig
from kcore.client.resources import CERTIFICATE_SIGNING_REQUESTS as CSRS

log = logging.getLogger(__name__)

CERT_FILE = "kubelet-client-current.pem"


class BootstrapError(RuntimeError):
    """The CSR was denied or failed, or was not issued in time."""


def csr_name(request_pem: bytes) -> str:
    """A name derived from the request (kube: node-csr-<digest>), so a retry with the
    same key finds its own CSR."""
    return "node-csr-" + hashlib.sha256(request_pem).hexdigest()[:40]


def csr_object(name: str, request_pem: bytes, usages: list[str]) -> dict:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(request_pem).decode(),
                     "signerName": KUBELET_CLIENT, "usages": usages}}


def kubeconfig_text(server: str, ca_pem: bytes, cert_path: str, tls_server_name: str = "",
                    insecure: bool = False) -> str:
    """A kubeconfig for the kubelet's own certificate (cert and key in one file)."""
    cluster: dict = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "users": [{"name": "default-auth", "user": {"client-certificate": cert_path,
                                                     "client-key": cert_path}}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default"}}],
        "current-context": "default-context"}, sort_keys=False)


def kubeconfig_usable(path: str, now: float | None = None) -> bool:
    """Whether an existing kubeconfig can be used as is: it loads and its client
    certificate (if it has one) has not expired. Otherwise the kubelet bootstraps
    again, as kube's does."""
    import datetime as dt

    from cryptography import x509

    from kcore.client.config import ConfigError
    try:
        cfg = load_kubeconfig(path)
        pem = cfg.cert_data
        if not pem and cfg.cert_file:
            with open(cfg.cert_file, "rb") as fh:
                pem = fh.read()
        if not pem:
            return True
        cert = x509.load_pem_x509_certificates(pem)[0]
    except (ConfigError, OSError, ValueError, IndexError):
        return False
    t = dt.datetime.now(dt.UTC) if now is None else dt.datetime.fromtimestamp(now, dt.UTC)
    return cert.not_valid_before_utc <= t < cert.not_valid_after_utc


def _ca_pem(cfg: ClientConfig) -> bytes:
    if cfg.ca_data:
        return cfg.ca_data
    if cfg.ca_file:
        with open(cfg.ca_file, "rb") as fh:
            return fh.read()
    return b""


async def request_certificate(client: Client, node_name: str, timeout: float = 900.0,
                              poll: float = 0.5) -> tuple[bytes, bytes]:
    """Create the CSR and wait for its certificate: (cert PEM, key PEM)."""
    key = new_key()
    req = make_request(key, NODE_PREFIX + node_name, (NODES_GROUP,))
    name = csr_name(req)
    deadline = time.monotonic() + timeout
    while True:     # the API server may not be up yet: retry until the deadline
        try:
            await client.create(CSRS, csr_object(name, req, key_usages_for(key)))
            break
        except E.AlreadyExists:
            break
        except (E.TransportError, E.Timeout, E.ServiceUnavailable, E.InternalError) as e:
            if time.monotonic() > deadline:
                raise BootstrapError(f"cannot create the certificate signing request: {e}"
                                     ) from None
            log.info("creating certificate signing request %s: %s (retrying)", name, e)
            await asyncio.sleep(min(1.0, poll * 2))
    log.info("waiting for certificate signing request %s to be approved and issued", name)
    while time.monotonic() < deadline:
        try:
            csr = await client.get(CSRS, name)
        except (E.NotFound, E.TransportError) as e:
            log.info("csr %s: %s", name, e)
            csr = {}
        if is_denied(csr) or is_failed(csr):
            conds = (csr.get("status") or {}).get("conditions") or []
            raise BootstrapError(f"certificate signing request {name} was not issued: "
                                 + "; ".join(f"{c.get('type')}: {c.get('message', '')}"
                                             for c in conds))
        cert = (csr.get("status") or {}).get("certificate")
        if cert:
            key_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            return base64.b64decode(cert), key_pem
        await asyncio.sleep(poll)
    raise BootstrapError(f"certificate signing request {name} not issued in {timeout:.0f}s")


async def bootstrap(bootstrap_kubeconfig: str, kubeconfig: str, cert_dir: str,
                    node_name: str, master: str = "", timeout: float = 900.0) -> None:
    """Get a client certificate with the bootstrap credentials; write it and the
    kubeconfig that uses it."""
    cfg = load_kubeconfig(bootstrap_kubeconfig)
    if master:
        cfg.server = master.rstrip("/")
    cfg.user_agent = "kubelet/v1.32.4 (linux) kcore bootstrap"
    client = Client(cfg)
    try:
        cert_pem, key_pem = await request_certificate(client, node_name, timeout)
    finally:
        await client.close()
    cert_path = os.path.join(os.path.abspath(cert_dir), CERT_FILE)
    pki.write_pem(cert_path, cert_pem + key_pem, private=True)
    pki.write_pem(kubeconfig, kubeconfig_text(cfg.server, _ca_pem(cfg), cert_path,
                                              cfg.tls_server_name,
                                              cfg.insecure_skip_tls_verify).encode(),
                  private=True)
    log.info("wrote client certificate %s and kubeconfig %s", cert_path, kubeconfig)
