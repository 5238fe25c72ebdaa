"""`kcore apiserver`: the Kubernetes API server with kube-apiserver's flags.

    kcore apiserver --insecure-port=8080 --data-dir=/var/lib/kcore/apiserver
    kcore apiserver --etcd-servers=http://127.0.0.1:2379 --service-cluster-ip-range=10.0.0.0/24
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

from kcore.cli.flags import FlagSet, run_flags
from kcore.cli.process import sd_notify

log = logging.getLogger("kcore.apiserver")


def apiserver_flags(prog: str = "kcore apiserver") -> FlagSet:
    fs = FlagSet(prog, "Run the kcore API server (the Kubernetes REST API).")
    a = fs.add
    a("insecure-bind-address", "str", "127.0.0.1", "the IP address on which to serve the "
      "insecure port (no authentication)")
    a("insecure-port", "int", 8080, "the port on which to serve unsecured, unauthenticated "
      "access (0: any free port, -1: disabled)")
    a("etcd-servers", "list", [], "list of etcd servers to connect with (scheme://ip:port), "
      "comma separated; empty: the embedded store in --data-dir")
    a("etcd-cafile", "str", "", "SSL Certificate Authority file used to secure etcd "
      "communication")
    a("etcd-certfile", "str", "", "SSL certification file used to secure etcd communication")
    a("etcd-keyfile", "str", "", "SSL key file used to secure etcd communication")
    a("etcd-pipeline-servers", "list", [], "kcore: a kcore store's pipelined-protocol "
      "endpoints (tcp://host:port); reads and writes go there, watches to --etcd-servers")
    a("etcd-prefix", "str", "/registry", "the prefix to prepend to all resource paths in etcd")
    a("listen-client-urls", "list", [], "kcore: also serve the embedded store's etcd v3 API "
      "on these URLs (e.g. http://127.0.0.1:2379), for etcdctl and backups")
    a("data-dir", "str", "./kcore-data", "kcore: directory of the embedded store (when "
      "--etcd-servers is empty)")
    a("service-cluster-ip-range", "str", "10.0.0.0/24", "a CIDR notation IP range from which "
      "to assign service cluster IPs")
    a("service-node-port-range", "str", "30000-32767", "a port range to reserve for services "
      "with NodePort visibility")
    a("admission-control", "list", [], "admission plugins, in order (deprecated: use "
      "--enable-admission-plugins)")
    a("enable-admission-plugins", "list", [], "admission plugins that should be enabled in "
      "addition to default enabled ones")
    a("disable-admission-plugins", "list", [], "admission plugins that should be disabled")
    a("allow-privileged", "bool", False, "if true, allow privileged containers")
    a("event-ttl", "duration", 3600.0, "amount of time to retain events")
    a("enable-garbage-collector", "bool", True, "enables the generic garbage collector "
      "(Orphan/Foreground deletions keep their finalizers); must be synced with the "
      "controller manager's flag")
    a("watch-cache-size", "int", 50000, "kcore: events of history kept per resource")
    a("min-request-timeout", "int", 1800, "minimum watch timeout in seconds (randomized up to "
      "twice that)")
    a("advertise-address", "str", "127.0.0.1", "the IP address on which to advertise the "
      "apiserver to members of the cluster")
    a("v", "int", 0, "number for the log level verbosity")
    a("log-level", "str", "info", "kcore: debug, info, warn, error")
    # secure serving and auth (kcore.apiserver.secure)
    a("secure-port", "int", 6443, "the port on which to serve HTTPS with authentication and "
      "authorization (0: any free port, -1: disabled)")
    a("bind-address", "str", "0.0.0.0", "the IP address on which to listen for the "
      "--secure-port port")
    a("tls-cert-file", "str", "", "file containing the default x509 certificate for HTTPS")
    a("tls-private-key-file", "str", "", "file containing the default x509 private key "
      "matching --tls-cert-file")
    a("client-ca-file", "str", "", "client certificates signed by one of these authorities "
      "are authenticated")
    a("token-auth-file", "str", "", "file used to secure the secure port via token "
      "authentication")
    a("basic-auth-file", "str", "", "file used to admit requests via HTTP basic "
      "authentication")
    a("enable-bootstrap-token-auth", "bool", False, "enable to allow secrets of type "
      "'bootstrap.kubernetes.io/token' in the 'kube-system' namespace to be used for TLS "
      "bootstrapping authentication")
    a("anonymous-auth", "bool", True, "enables anonymous requests to the secure port "
      "(user system:anonymous, group system:unauthenticated)")
    a("authorization-mode", "list", ["AlwaysAllow"], "ordered list of plug-ins to do "
      "authorization on secure port: AlwaysAllow, AlwaysDeny, ABAC, RBAC, Node")
    a("authorization-policy-file", "str", "", "file with authorization policy in json line "
      "by line format (ABAC)")
    a("cert-dir", "str", "", "the directory where the TLS certs are located; the "
      "self-signed serving certificate and the service-account key are generated here "
      "(default: <data-dir>/pki)")
    a("service-account-key-file", "list", [], "PEM files with keys (public or private, or "
      "certificates) that verify ServiceAccount tokens", repeated=True)
    a("service-account-signing-key-file", "str", "", "private key that signs "
      "ServiceAccount tokens (default: sa.key in --cert-dir, generated)")
    a("service-account-issuer", "list", ["https://kubernetes.default.svc.cluster.local"],
      "issuer of ServiceAccount tokens (the first one is used to sign)", repeated=True)
    a("service-account-lookup", "bool", True, "validate that ServiceAccount tokens' "
      "accounts (and secrets) still exist")
    a("api-audiences", "list", [], "audiences of the API; tokens must name one "
      "(default: the first --service-account-issuer)")
    return fs


def config_from_flags(o):
    from kcore.apiserver.admission import DEFAULT_PLUGINS
    from kcore.apiserver.config import Config

    plugins = list(o.admission_control) if o.admission_control else list(DEFAULT_PLUGINS)
    for p in o.enable_admission_plugins:
        if p not in plugins:
            plugins.append(p)
    plugins = [p for p in plugins if p not in set(o.disable_admission_plugins)]
    return Config(
        insecure_bind_address=o.insecure_bind_address, insecure_port=o.insecure_port,
        etcd_servers=list(o.etcd_servers), etcd_cafile=o.etcd_cafile,
        etcd_certfile=o.etcd_certfile, etcd_keyfile=o.etcd_keyfile, etcd_prefix=o.etcd_prefix,
        etcd_pipeline_servers=list(o.etcd_pipeline_servers),
        data_dir=o.data_dir, service_cluster_ip_range=o.service_cluster_ip_range,
        service_node_port_range=o.service_node_port_range, admission_plugins=plugins,
        allow_privileged=o.allow_privileged, event_ttl=int(o.event_ttl),
        gc_finalizers=o.enable_garbage_collector,
        watch_cache_size=o.watch_cache_size, min_request_timeout=o.min_request_timeout,
        advertise_address=o.advertise_address, verbosity=o.v,
        secure_port=o.secure_port, bind_address=o.bind_address,
        tls_cert_file=o.tls_cert_file, tls_private_key_file=o.tls_private_key_file,
        client_ca_file=o.client_ca_file, token_auth_file=o.token_auth_file,
        basic_auth_file=o.basic_auth_file, authorization_mode=list(o.authorization_mode),
        authorization_policy_file=o.authorization_policy_file, cert_dir=o.cert_dir,
        anonymous_auth=o.anonymous_auth, enable_bootstrap_token_auth=o.enable_bootstrap_token_auth,
        service_account_key_files=list(o.service_account_key_file),
        service_account_signing_key_file=o.service_account_signing_key_file,
        service_account_issuers=list(o.service_account_issuer),
        service_account_lookup=o.service_account_lookup, api_audiences=list(o.api_audiences))


def setup_logging(level: str, v: int) -> None:
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}.get(level.lower(), logging.INFO)
    if v >= 4:
        lvl = logging.DEBUG
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(argv: list[str]) -> int:
    opts, args = run_flags(apiserver_flags(), argv)
    if args:
        print(f"kcore apiserver: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    setup_logging(opts.log_level, opts.v)
    try:
        cfg = config_from_flags(opts)
        import ipaddress
        ipaddress.ip_network(cfg.service_cluster_ip_range, strict=False)
    except ValueError as e:
        print(f"kcore apiserver: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(cfg, opts.listen_client_urls))


async def serve(cfg, client_urls: list[str] = ()) -> int:
    from kcore.apiserver.server import APIServer

    try:
        server = APIServer(cfg)
    except ValueError as e:
        print(f"kcore apiserver: {e}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except (ValueError, OSError) as e:
        print(f"kcore apiserver: {e}", file=sys.stderr)
        await server.stop()
        return 1
    frontends = []
    if client_urls:
        if server.embedded is None:
            print("kcore apiserver: --listen-client-urls needs the embedded store "
                  "(no --etcd-servers)", file=sys.stderr)
            await server.stop()
            return 2
        from kcore.cli.etcd import start_frontend
        for url in client_urls:
            frontends.append(await start_frontend(server.embedded, url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = f"http://{cfg.insecure_bind_address}:{server.port}" if server.port else ""
    if server.secure_port:
        where += (", " if where else "") + f"https://{cfg.bind_address}:{server.secure_port}"
    print(f"kcore apiserver: serving on {where}", file=sys.stderr, flush=True)
    sd_notify("READY=1")
    await stop.wait()
    log.info("stopping")
    for fe in frontends:
        await fe.stop(1.0)
    await server.stop()
    return 0
