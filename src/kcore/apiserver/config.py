"""The API server's configuration (what `kcore apiserver` flags fill in)."""
from __future__ import annotations

from dataclasses import dataclass, field

from kcore.apiserver.admission import DEFAULT_PLUGINS


@dataclass
class Config:
    insecure_bind_address: str = "127.0.0.1"
    insecure_port: int = 8080           # 0: pick a free port; -1: no insecure port
    etcd_servers: list[str] = field(default_factory=list)   # empty: embedded store
    # kcore stores only: their pipelined protocol for reads and writes (watches stay
    # on etcd_servers' gRPC)
    etcd_pipeline_servers: list[str] = field(default_factory=list)
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    etcd_prefix: str = "/registry"
    data_dir: str = "./kcore-data"      # the embedded store's directory
    service_cluster_ip_range: str = "10.0.0.0/24"
    service_node_port_range: str = "30000-32767"
    admission_plugins: list[str] = field(default_factory=lambda: list(DEFAULT_PLUGINS))
    allow_privileged: bool = False
    event_ttl: int = 3600
    watch_cache_size: int = 50_000      # history events kept per resource
    min_request_timeout: int = 1800     # watch timeout is random in [this, 2*this)
    bookmark_interval: float = 60.0
    max_body_bytes: int = 3 * 1024 * 1024
    fast_path: bool = True              # plain calls through fastpath.py (False: all aiohttp)
    gc_finalizers: bool = False         # keep orphan/foregroundDeletion finalizers (needs GC)
    advertise_address: str = "127.0.0.1"
    verbosity: int = 0
    # the secure port (secure.py): HTTPS with authentication and authorization.
    # `kcore apiserver` defaults to 6443 on 0.0.0.0 as kube-apiserver; an embedded
    # Config serves no HTTPS unless asked (0: any free port, -1: off).
    secure_port: int = -1
    bind_address: str = "0.0.0.0"
    tls_cert_file: str = ""             # empty: self-signed apiserver.crt in cert_dir
    tls_private_key_file: str = ""
    client_ca_file: str = ""
    token_auth_file: str = ""
    basic_auth_file: str = ""
    anonymous_auth: bool = True
    enable_bootstrap_token_auth: bool = False
    authorization_mode: list[str] = field(default_factory=lambda: ["AlwaysAllow"])
    authorization_policy_file: str = ""
    cert_dir: str = ""                  # empty: <data_dir>/pki
    service_account_key_files: list[str] = field(default_factory=list)
    service_account_signing_key_file: str = ""   # empty: sa.key in cert_dir (generated)
    service_account_issuers: list[str] = field(
        default_factory=lambda: ["https://kubernetes.default.svc.cluster.local"])
    api_audiences: list[str] = field(default_factory=list)   # empty: the first issuer
    service_account_lookup: bool = True
