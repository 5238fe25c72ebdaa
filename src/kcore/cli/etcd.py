"""`kcore etcd`: run a store member with etcd's flags (also from ETCD_* variables).

    kcore etcd --name s1 --data-dir /var/lib/etcd --listen-client-urls http://127.0.0.1:2379 ...
    kcore etcd snapshot restore FILE --data-dir DIR [--name --initial-cluster ...]
    kcore etcd snapshot status FILE
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
from urllib.parse import urlsplit

from kcore.cli.flags import FlagSet, run_flags
from kcore.cli.process import sd_notify, setup_logging, tune_gc

log = logging.getLogger("kcore.etcd")


def member_flags(prog: str) -> FlagSet:
    fs = FlagSet(prog, "Run a kcore store member (etcd v3 API).", env_prefix="ETCD")
    a = fs.add
    a("name", "str", "default", "human-readable name for this member")
    a("data-dir", "str", "", "path to the data directory (default: ${name}.etcd)")
    a("wal-dir", "str", "", "dedicated WAL directory (not supported: must be empty)")
    a("listen-client-urls", "list", ["http://localhost:2379"], "URLs to serve clients on")
    a("advertise-client-urls", "list", ["http://localhost:2379"],
      "client URLs advertised to the cluster")
    a("listen-peer-urls", "list", ["http://localhost:2380"], "URLs to listen on for peers")
    a("initial-advertise-peer-urls", "list", ["http://localhost:2380"],
      "peer URLs advertised to the cluster")
    a("initial-cluster", "str", "", "initial cluster configuration for bootstrapping")
    a("initial-cluster-token", "str", "etcd-cluster", "initial cluster token")
    a("initial-cluster-state", "str", "new", "initial cluster state ('new' or 'existing')")
    a("force-new-cluster", "bool", False, "force to create a new one-member cluster")
    a("snapshot-count", "int", 100000, "committed transactions to trigger a snapshot")
    a("experimental-snapshot-catchup-entries", "int", 5000,
      "entries kept after a snapshot for slow followers")
    a("quota-backend-bytes", "int", 0, "raise alarms when the backend exceeds this size")
    a("max-request-bytes", "int", 1536 * 1024, "maximum client request size in bytes")
    a("max-txn-ops", "int", 128, "maximum operations in one transaction")
    a("heartbeat-interval", "int", 100, "time (ms) of a heartbeat interval")
    a("election-timeout", "int", 1000, "time (ms) for an election to timeout")
    a("auto-compaction-mode", "str", "periodic", "'periodic' or 'revision'")
    a("auto-compaction-retention", "str", "0", "auto compaction retention (0 = off)")
    a("cert-file", "str", "", "path to the client server TLS cert file")
    a("key-file", "str", "", "path to the client server TLS key file")
    a("trusted-ca-file", "str", "", "path to the client server TLS trusted CA file")
    a("client-cert-auth", "bool", False, "enable client cert authentication")
    a("peer-cert-file", "str", "", "path to the peer server TLS cert file")
    a("peer-key-file", "str", "", "path to the peer server TLS key file")
    a("peer-trusted-ca-file", "str", "", "path to the peer server TLS trusted CA file")
    a("peer-client-cert-auth", "bool", False, "enable peer client cert authentication")
    a("experimental-watch-progress-notify-interval", "duration", 600.0,
      "interval of periodic watch progress notifications")
    a("logger", "str", "zap", "accepted for compatibility")
    a("log-level", "str", "info", "debug, info, warn, error")
    a("log-outputs", "list", ["stderr"], "accepted for compatibility (stderr)")
    a("debug", "bool", False, "enable debug-level logging")
    a("enable-v2", "bool", False, "v2 API (not supported; must stay false)")
    a("frontend", "str", "auto", "kcore: gRPC front end: native, grpc or auto")
    a("listen-pipeline-urls", "list", [],
      "kcore: URLs (tcp://host:port) for kcore's pipelined client protocol")
    return fs


def config_from_flags(o):
    from kcore.store.config import ServerConfig

    return ServerConfig(
        name=o.name, data_dir=o.data_dir,
        listen_client_urls=o.listen_client_urls, advertise_client_urls=o.advertise_client_urls,
        listen_peer_urls=o.listen_peer_urls,
        initial_advertise_peer_urls=o.initial_advertise_peer_urls,
        initial_cluster=o.initial_cluster, initial_cluster_token=o.initial_cluster_token,
        initial_cluster_state=o.initial_cluster_state, force_new_cluster=o.force_new_cluster,
        snapshot_count=o.snapshot_count,
        snapshot_catchup_entries=o.experimental_snapshot_catchup_entries,
        quota_backend_bytes=o.quota_backend_bytes or (2 << 30),
        max_request_bytes=o.max_request_bytes, max_txn_ops=o.max_txn_ops,
        heartbeat_interval_ms=o.heartbeat_interval, election_timeout_ms=o.election_timeout,
        auto_compaction_mode=o.auto_compaction_mode,
        auto_compaction_retention=o.auto_compaction_retention,
        progress_notify_interval=o.experimental_watch_progress_notify_interval,
        cert_file=o.cert_file, key_file=o.key_file, trusted_ca_file=o.trusted_ca_file,
        client_cert_auth=o.client_cert_auth, peer_cert_file=o.peer_cert_file,
        peer_key_file=o.peer_key_file, peer_trusted_ca_file=o.peer_trusted_ca_file,
        peer_client_cert_auth=o.peer_client_cert_auth, frontend=o.frontend,
        listen_pipeline_urls=o.listen_pipeline_urls)


def run(argv: list[str]) -> int:
    if argv and argv[0] == "snapshot":
        return _snapshot_cmd(argv[1:])
    if argv and argv[0] == "backup":
        return _backup_cmd(argv[1:])
    opts, args = run_flags(member_flags("kcore etcd"), argv)
    if args:
        print(f"kcore etcd: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    setup_logging("debug" if opts.debug else opts.log_level)
    if opts.enable_v2:
        print("kcore etcd: --enable-v2 is not supported (kcore speaks the v3 API only)",
              file=sys.stderr)
        return 2
    if opts.wal_dir:
        print("kcore etcd: --wal-dir is not supported; the WAL lives in "
              "<data-dir>/member/wal", file=sys.stderr)
        return 2
    cfg = config_from_flags(opts)
    try:
        cfg.cluster_members()
    except ValueError as e:
        print(f"kcore etcd: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(cfg))


async def serve(cfg) -> int:
    from kcore.store.server import EtcdServer

    server = EtcdServer(cfg)
    await server.start()
    tune_gc()
    frontends = []
    try:
        for url in cfg.listen_client_urls:
            frontends.append(await start_frontend(server, url))
        for url in cfg.listen_pipeline_urls:
            frontends.append(await start_pipeline(server, url))
    except Exception:
        await server.stop()
        raise
    sd_notify("READY=1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [loop.create_task(stop.wait()), loop.create_task(server.removed_event.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    code = 0
    if server.removed_event.is_set() and not stop.is_set():
        log.error("the member has been permanently removed from the cluster; exiting")
        code = 1
    log.info("stopping")
    sd_notify("STOPPING=1")
    for fe in frontends:
        await fe.stop(1.0)
    await server.stop()
    return code


async def start_frontend(server, url: str):
    """Serve the etcd API on one listen URL (http:// or https://)."""
    from kcore.store.rpc.services import build_registry

    u = urlsplit(url)
    host = u.hostname or "127.0.0.1"
    port = u.port if u.port is not None else (2379 if u.scheme == "http" else 2379)
    tls = u.scheme == "https"
    cfg = server.cfg
    if tls and not (cfg.cert_file and cfg.key_file):
        raise SystemExit(f"kcore etcd: {url} needs --cert-file and --key-file")
    registry = build_registry(server)
    max_recv = cfg.max_request_bytes + 512 * 1024
    kind = cfg.frontend
    if kind in ("auto", "native"):
        try:
            from kcore.store.rpc.native_server import NativeGrpcServer
        except ImportError as e:
            if kind == "native":
                raise SystemExit(f"kcore etcd: native front end unavailable: {e}") from None
            kind = "grpc"
        else:
            kind = "native"
    if kind == "native":
        ctx = _ssl_context(cfg) if tls else None
        fe = NativeGrpcServer(registry, max_recv_bytes=max_recv, ssl_context=ctx)
    else:
        from kcore.store.rpc.grpc_server import GrpcAioServer
        creds = _grpc_credentials(cfg) if tls else None
        fe = GrpcAioServer(registry, max_recv_bytes=max_recv, credentials=creds)
    hosts = [host]
    if host == "localhost":
        hosts = ["127.0.0.1"]
    for h in hosts:
        bound = await fe.start(h, port)
        log.info("serving client requests on %s://%s:%d (%s front end)", u.scheme, h, bound, kind)
    return fe


async def start_pipeline(server, url: str):
    """Serve kcore's pipelined protocol (plain TCP) on one URL."""
    from kcore.store.rpc.pipeline import PipelineServer
    from kcore.store.rpc.services import build_registry

    u = urlsplit(url if "://" in url else "tcp://" + url)
    fe = PipelineServer(build_registry(server))
    port = await fe.start(u.hostname or "127.0.0.1", u.port or 2390)
    log.info("serving kcore's pipelined protocol on %s:%d", u.hostname, port)
    return fe


def _ssl_context(cfg) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.trusted_ca_file:
        ctx.load_verify_locations(cfg.trusted_ca_file)
    if cfg.client_cert_auth:
        if not cfg.trusted_ca_file:
            raise SystemExit("kcore etcd: --client-cert-auth needs --trusted-ca-file")
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _grpc_credentials(cfg):
    import grpc

    with open(cfg.key_file, "rb") as fh:
        key = fh.read()
    with open(cfg.cert_file, "rb") as fh:
        cert = fh.read()
    ca = None
    if cfg.trusted_ca_file:
        with open(cfg.trusted_ca_file, "rb") as fh:
            ca = fh.read()
    if cfg.client_cert_auth and ca is None:
        raise SystemExit("kcore etcd: --client-cert-auth needs --trusted-ca-file")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=cfg.client_cert_auth)


def _snapshot_cmd(argv: list[str]) -> int:
    from kcore.store import snapshot as snap

    if not argv or argv[0] not in ("restore", "status"):
        print("usage: kcore etcd snapshot restore FILE --data-dir DIR | snapshot status FILE",
              file=sys.stderr)
        return 2
    cmd = argv[0]
    fs = member_flags(f"kcore etcd snapshot {cmd}")
    fs.add("skip-hash-check", "bool", False, "ignore the snapshot's sha256")
    fs.add("write-out", "str", "simple", "status output: simple, json, table")
    opts, args = run_flags(fs, argv[1:])
    if len(args) != 1:
        print(f"kcore etcd snapshot {cmd}: exactly one FILE is needed", file=sys.stderr)
        return 2
    try:
        if cmd == "status":
            st = snap.status(args[0])
            if opts.write_out == "json":
                print(json.dumps(st))
            else:
                print(f"{st['hash']:x}, {st['revision']}, {st['totalKey']}, {st['totalSize']}")
            return 0
        cfg = config_from_flags(opts)
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
        with Progress(TextColumn("restore"), BarColumn(), DownloadColumn(),
                      transient=True) as bar:
            t = bar.add_task("restore", total=None)
            snap.restore(args[0], cfg, skip_hash_check=opts.skip_hash_check,
                         progress=lambda d, n: bar.update(t, completed=d, total=n))
    except (snap.SnapshotError, ValueError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(f"restored snapshot {args[0]} into {cfg.data_dir}")
    return 0


def _backup_cmd(argv: list[str]) -> int:
    """`kcore etcd backup`: a dated, verified snapshot with retention (cron-friendly)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from kcore.store import backup
    from kcore.store import client as sc

    fs = FlagSet("kcore etcd backup", "Save a dated snapshot of a member and prune old ones.",
                 env_prefix="ETCDCTL")
    fs.add("endpoints", "list", ["127.0.0.1:2379"], "members to try, in order")
    fs.add("dir", "str", "/var/backups/kcore-etcd", "where snapshots are kept")
    fs.add("keep", "int", 7, "snapshots to keep (0 = all)")
    fs.add("cacert", "str", "", "CA bundle to verify the member")
    fs.add("cert", "str", "", "client certificate")
    fs.add("key", "str", "", "client key")
    fs.add("quiet", "bool", False, "no progress bar")
    o, args = run_flags(fs, argv)
    if args:
        print(f"kcore etcd backup: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    tls = None
    if o.cacert or o.cert:
        tls = sc.TLSConfig(o.cacert, o.cert, o.key)
    eps = [e if "://" in e else ("https://" + e if tls else e) for e in o.endpoints]

    async def main() -> int:
        async with sc.connect(eps, tls=tls, timeout=600) as c:
            if o.quiet:
                res = await backup.take(c, o.dir, o.keep)
            else:
                with Progress(TextColumn("snapshot"), BarColumn(), DownloadColumn()) as bar:
                    t = bar.add_task("snapshot", total=None)
                    res = await backup.take(c, o.dir, o.keep,
                                            progress=lambda d, tot: bar.update(t, completed=d,
                                                                               total=tot))
        print(f"Snapshot saved at {res.path} ({res.size} bytes, {res.seconds:.1f} s)")
        for r in res.removed:
            print(f"removed old snapshot {r}")
        return 0
    try:
        return asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - the operator sees one clear line
        print(f"Error: {e}", file=sys.stderr)
        return 1
