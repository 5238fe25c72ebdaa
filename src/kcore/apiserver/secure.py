"""The secure port's wiring: serving certificate, TLS context, authenticators, authorizers.

Without --tls-cert-file/--tls-private-key-file the server does what
kube-apiserver does: it writes a self-signed serving certificate (and key) to
--cert-dir (`apiserver.crt`, `apiserver.key`) for localhost, 127.0.0.1, the
host name, the first service IP and the `kubernetes.default.svc...` names, and
reuses it on later starts while it is valid and names the same hosts.
The service-account signing key is --service-account-signing-key-file, else
`sa.key` in --cert-dir (created on first start); tokens verify against
--service-account-key-file keys plus the signing key's public half.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from typing import TYPE_CHECKING

from cryptography import x509

from kcore import pki
from kcore.apiserver import authz
from kcore.apiserver.authn import RequestAuthenticator, load_basic_file, load_token_file
from kcore.apiserver.bootstraptoken import BootstrapTokens
from kcore.apiserver.serviceaccount import ServiceAccountTokens

if TYPE_CHECKING:
    from kcore.apiserver.config import Config
    from kcore.apiserver.server import APIServer

log = logging.getLogger(__name__)

SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")


def cert_dir(config: Config) -> str:
    return config.cert_dir or os.path.join(config.data_dir, "pki")


def first_service_ip(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


def serving_hosts(config: Config) -> tuple[str, ...]:
    hosts = ["localhost", "127.0.0.1", socket.gethostname(),
             first_service_ip(config.service_cluster_ip_range), *SERVICE_NAMES]
    for a in (config.advertise_address, config.bind_address):
        if a and a not in ("0.0.0.0", "::"):
            hosts.append(a)
    out: list[str] = []
    for h in hosts:
        if h and h not in out:
            out.append(h)
    return tuple(out)


def _names(cert: x509.Certificate) -> set[str]:
    return pki.cert_names(cert)


def ensure_self_signed(directory: str, hosts: tuple[str, ...]) -> tuple[str, str]:
    crt, key = os.path.join(directory, "apiserver.crt"), os.path.join(directory, "apiserver.key")
    if os.path.exists(crt) and os.path.exists(key):
        try:
            leaf = pki.load_certs(crt)[0]
            if pki.cert_valid_for(leaf) and set(hosts) <= _names(leaf):
                return crt, key
        except (ValueError, IndexError, OSError):
            pass
    ca, serving = pki.self_signed_serving(hosts)
    pki.write_pem(key, serving.key_pem(), private=True)
    pki.write_pem(crt, serving.cert_pem() + ca.cert_pem())
    log.info("generated self-signed serving certificate %s for %s", crt, ", ".join(hosts))
    return crt, key


def serving_files(config: Config) -> tuple[str, str]:
    if config.tls_cert_file or config.tls_private_key_file:
        if not (config.tls_cert_file and config.tls_private_key_file):
            raise ValueError("--tls-cert-file and --tls-private-key-file go together")
        return config.tls_cert_file, config.tls_private_key_file
    return ensure_self_signed(cert_dir(config), serving_hosts(config))


def ssl_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """TLS 1.2+, HTTP/1.1 only (clients fall back from h2); with a client CA the server
    asks for (and verifies) client certificates but does not require them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def service_account_tokens(server: APIServer) -> ServiceAccountTokens:
    c = server.config
    if c.service_account_signing_key_file:
        signing = pki.load_private_key(c.service_account_signing_key_file)
    else:
        path = os.path.join(cert_dir(c), "sa.key")
        if os.path.exists(path):
            signing = pki.load_private_key(path)
        else:
            signing = pki.make_signing_key()
            pki.write_pem(path, pki.private_key_pem(signing), private=True)
            pki.write_pem(os.path.join(cert_dir(c), "sa.pub"), pki.public_key_pem(signing))
            log.info("generated service-account signing key %s", path)
    keys = [k for f in c.service_account_key_files for k in pki.load_public_keys(f)]
    keys.append(signing.public_key())
    issuers = list(c.service_account_issuers)
    return ServiceAccountTokens(server, keys, signing, issuers,
                                list(c.api_audiences) or issuers[:1],
                                c.service_account_lookup)


def setup(server: APIServer) -> None:
    """Build the server's authorizer chain, RBAC, service-account tokens and the secure
    port's authenticator from the config (bad files fail the start)."""
    c = server.config
    server.service_accounts = service_account_tokens(server)
    server.authorizer = authz.build_chain(c.authorization_mode, c.authorization_policy_file,
                                          server.rbac)
    server.token_authenticator = RequestAuthenticator(
        client_certs=bool(c.client_ca_file),
        tokens=load_token_file(c.token_auth_file) if c.token_auth_file else {},
        basic=load_basic_file(c.basic_auth_file) if c.basic_auth_file else {},
        service_accounts=server.service_accounts, anonymous=c.anonymous_auth,
        bootstrap_tokens=BootstrapTokens(server) if c.enable_bootstrap_token_auth else None)


def bind_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((address, port))
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"secure port {address}:{port}: {e.strerror}") from None
    s.listen(1024)
    s.setblocking(False)
    return s
