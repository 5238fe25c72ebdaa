"""Where the API server is and how to prove who we are: a `ClientConfig`.

Built from a `--master` URL, a kubeconfig file (clusters/users/contexts, the
`*-data` base64 forms included), or the in-cluster service-account files;
`--master` overrides the kubeconfig's server, as in kube's components.
`ssl_context()` gives the TLS context (CA, client certificate and key,
insecure-skip-tls-verify); `headers()` the bearer token or basic credentials.
"""
from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field

import yaml

IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(ValueError):
    """A kubeconfig that cannot be used; the message names what is wrong."""


@dataclass
class ClientConfig:
    server: str = "http://127.0.0.1:8080"
    ca_file: str = ""
    ca_data: bytes = b""
    cert_file: str = ""
    cert_data: bytes = b""
    key_file: str = ""
    key_data: bytes = b""
    token: str = ""
    token_file: str = ""
    username: str = ""
    password: str = ""
    insecure_skip_tls_verify: bool = False
    tls_server_name: str = ""
    namespace: str = "default"
    user_agent: str = "kcore"
    qps: float = 0.0             # client-side rate limit (0: none), like client-go's QPS
    burst: int = 0
    timeout: float = 60.0        # per request, watches excepted
    extra_headers: dict = field(default_factory=dict)

    @property
    def is_tls(self) -> bool:
        return self.server.startswith("https://")

    def bearer_token(self) -> str:
        if self.token_file:
            try:
                with open(self.token_file) as fh:
                    return fh.read().strip()
            except OSError:
                return self.token
        return self.token

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": self.user_agent, "Accept": "application/json"}
        tok = self.bearer_token()
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        elif self.username:
            cred = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            h["Authorization"] = f"Basic {cred}"
        h.update(self.extra_headers)
        return h

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.is_tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            ctx = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None,
                cadata=self.ca_data.decode() if self.ca_data else None)
        if self.cert_file or self.cert_data:
            _load_cert_chain(ctx, self.cert_file, self.cert_data, self.key_file, self.key_data)
        return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert_file: str, cert_data: bytes, key_file: str,
                     key_data: bytes) -> None:
    """ssl loads a chain only from files: inline data goes through private temp files
    that are removed at once."""
    tmp: list[str] = []
    try:
        def materialize(path: str, data: bytes) -> str:
            if path:
                return path
            fd, p = tempfile.mkstemp(prefix="kcore-client-")
            tmp.append(p)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return p
        cf = materialize(cert_file, cert_data)
        kf = materialize(key_file, key_data) if (key_file or key_data) else None
        ctx.load_cert_chain(cf, kf)
    finally:
        for p in tmp:
            try:
                os.unlink(p)
            except OSError:
                pass


def _named(items: list | None, name: str, what: str) -> dict:
    for it in items or []:
        if isinstance(it, dict) and it.get("name") == name:
            return it.get(what.lower()) or {}
    raise ConfigError(f'{what.lower()} "{name}" not found in kubeconfig')


def _b64(v: str | None) -> bytes:
    return base64.b64decode(v) if v else b""


def _rel(base_dir: str, p: str | None) -> str:
    if not p:
        return ""
    return p if os.path.isabs(p) else os.path.join(base_dir, p)


def load_kubeconfig(path: str, context: str | None = None) -> ClientConfig:
    """A ClientConfig from a kubeconfig file (relative paths are relative to the file)."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid kubeconfig {path}: {e}") from None
    base = os.path.dirname(os.path.abspath(path))
    ctx_name = context or doc.get("current-context") or ""
    if ctx_name:
        ctx = _named(doc.get("contexts"), ctx_name, "Context")
    elif len(doc.get("contexts") or []) == 1:
        ctx = doc["contexts"][0].get("context") or {}
    else:
        ctx = {}
    clusters = doc.get("clusters") or []
    if ctx.get("cluster"):
        cluster = _named(clusters, ctx["cluster"], "Cluster")
    elif len(clusters) == 1:
        cluster = clusters[0].get("cluster") or {}
    else:
        raise ConfigError(f"kubeconfig {path}: no current context and no single cluster")
    users = doc.get("users") or []
    if ctx.get("user"):
        user = _named(users, ctx["user"], "User")
    elif len(users) == 1:
        user = users[0].get("user") or {}
    else:
        user = {}
    server = cluster.get("server") or ""
    if not server:
        raise ConfigError(f"kubeconfig {path}: the cluster has no server")
    return ClientConfig(
        server=server.rstrip("/"),
        ca_file=_rel(base, cluster.get("certificate-authority")),
        ca_data=_b64(cluster.get("certificate-authority-data")),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or "",
        cert_file=_rel(base, user.get("client-certificate")),
        cert_data=_b64(user.get("client-certificate-data")),
        key_file=_rel(base, user.get("client-key")),
        key_data=_b64(user.get("client-key-data")),
        token=user.get("token") or "", token_file=_rel(base, user.get("tokenFile")),
        username=user.get("username") or "", password=user.get("password") or "",
        namespace=ctx.get("namespace") or "default")


def in_cluster_config() -> ClientConfig:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, token and ca.crt."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), \
        os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
                          "and KUBERNETES_SERVICE_PORT must be defined")
    if ":" in host:
        host = f"[{host}]"
    ns = "default"
    try:
        with open(os.path.join(IN_CLUSTER_DIR, "namespace")) as fh:
            ns = fh.read().strip() or ns
    except OSError:
        pass
    return ClientConfig(server=f"https://{host}:{port}",
                        ca_file=os.path.join(IN_CLUSTER_DIR, "ca.crt"),
                        token_file=os.path.join(IN_CLUSTER_DIR, "token"), namespace=ns)


def build_config(master: str = "", kubeconfig: str = "", context: str | None = None
                 ) -> ClientConfig:
    """kube's BuildConfigFromFlags: kubeconfig if given (its server overridden by
    --master), else --master alone, else in-cluster, else http://127.0.0.1:8080."""
    if kubeconfig:
        cfg = load_kubeconfig(kubeconfig, context)
        if master:
            cfg.server = master.rstrip("/")
        return cfg
    if master:
        return ClientConfig(server=master.rstrip("/"))
    try:
        return in_cluster_config()
    except ConfigError:
        return ClientConfig()
