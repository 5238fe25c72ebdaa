"""A member's configuration, with etcd's defaults, and the member identity rules."""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ServerConfig:
    name: str = "default"
    data_dir: str = ""
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    # an embedded one-member store needs no peer listener; `kcore etcd` passes etcd's
    # default (http://localhost:2380) from its flags
    listen_peer_urls: list[str] = field(default_factory=list)
    initial_advertise_peer_urls: list[str] = field(
        default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""
    initial_cluster_token: str = "etcd-cluster"
    initial_cluster_state: str = "new"
    force_new_cluster: bool = False
    snapshot_count: int = 100_000
    wal_segment_bytes: int = 64 * 1024 * 1024
    snapshot_catchup_entries: int = 5000    # log kept after a snapshot for slow followers
    quota_backend_bytes: int = 2 << 30
    max_request_bytes: int = 1536 * 1024
    max_txn_ops: int = 128
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"
    progress_notify_interval: float = 600.0
    lease_check_interval: float = 0.5
    # client TLS
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    # peer TLS (used by the raft transport)
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    frontend: str = "auto"          # auto | native | grpc
    listen_pipeline_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.data_dir:
            self.data_dir = f"{self.name}.etcd"
        if not self.initial_cluster:
            self.initial_cluster = ",".join(
                f"{self.name}={u}" for u in self.initial_advertise_peer_urls)

    @property
    def member_dir(self) -> str:
        return os.path.join(self.data_dir, "member")

    @property
    def wal_dir(self) -> str:
        return os.path.join(self.member_dir, "wal")

    @property
    def snap_dir(self) -> str:
        return os.path.join(self.member_dir, "snap")

    @property
    def min_lease_ttl(self) -> int:
        """etcd: 1.5 election timeouts, rounded up to whole seconds."""
        return max(1, -(-(3 * self.election_timeout_ms // 2) // 1000))

    def cluster_members(self) -> dict[str, list[str]]:
        return parse_initial_cluster(self.initial_cluster)


def parse_initial_cluster(text: str) -> dict[str, list[str]]:
    """'a=http://h1:2380,b=http://h2:2380' → {'a': [...], 'b': [...]} (a name may repeat)."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"invalid --initial-cluster entry {part!r}")
        check_url(url)
        out.setdefault(name, []).append(url)
    return out


def check_url(url: str) -> tuple[str, str, int]:
    u = urlsplit(url)
    if u.scheme not in ("http", "https", "unix", "unixs") or not u.hostname:
        raise ValueError(f"invalid URL {url!r} (want http(s)://host:port)")
    return u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80)


def member_id(peer_urls: list[str], token: str, now: int | None = None) -> int:
    """etcd's member ID: the first 8 bytes of sha1(sorted peer URLs + cluster token
    [+ unix time when added later]), so IDs look the same as etcd's."""
    b = "".join(sorted(peer_urls)) + token + ("" if now is None else str(now))
    return struct.unpack(">Q", hashlib.sha1(b.encode()).digest()[:8])[0]


def cluster_id(member_ids: list[int]) -> int:
    b = b"".join(struct.pack(">Q", m) for m in sorted(member_ids))
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]
