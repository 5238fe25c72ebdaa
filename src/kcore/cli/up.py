"""`kcore up`: the control plane on one machine, in one process.

For now: the API server over the embedded store in --data-dir, on the insecure
port and on the secure port (RBAC by default); with --listen-client-urls the
same store is also served over etcd's gRPC API (for etcdctl and backups).
Controllers, scheduler and kubelet join in later issues.

On first start it creates the cluster's PKI under <data-dir>/pki (a CA, the
serving certificate, an admin client certificate CN=admin O=system:masters,
the service-account key) and <data-dir>/admin.kubeconfig for real kubectl
over https://127.0.0.1:<secure-port>; later starts reuse them.

    kcore up --data-dir /var/lib/kcore
    export KUBECONFIG=/var/lib/kcore/admin.kubeconfig
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

from kcore.cli.apiserver import apiserver_flags, config_from_flags, setup_logging
from kcore.cli.flags import run_flags


def run(argv: list[str]) -> int:
    fs = apiserver_flags("kcore up")
    fs.flags["data-dir"].default = "/var/lib/kcore"
    fs.flags["authorization-mode"].default = ["RBAC"]
    fs.add("listen-client-urls", "list", [], "also serve the embedded store's etcd v3 API "
           "on these URLs (e.g. http://127.0.0.1:2379)")
    opts, args = run_flags(fs, argv)
    if args:
        print(f"kcore up: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    setup_logging(opts.log_level, opts.v)
    cfg = config_from_flags(opts)
    if cfg.etcd_servers:
        print("kcore up: uses the embedded store; run `kcore apiserver --etcd-servers` "
              "for an external one", file=sys.stderr)
        return 2
    admin = None
    if cfg.secure_port >= 0:
        try:
            admin = ensure_pki(cfg)
        except (OSError, ValueError) as e:
            print(f"kcore up: {e}", file=sys.stderr)
            return 1
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_serve(cfg, opts.listen_client_urls, admin))


def ensure_pki(cfg):
    """Create (first start) or reuse the cluster CA and the serving and admin
    certificates and point cfg at them. Returns (ca, admin) key pairs."""
    from kcore import pki
    from kcore.apiserver import secure

    d = cfg.cert_dir or os.path.join(cfg.data_dir, "pki")
    cfg.cert_dir = d

    def p(name: str) -> str:
        return os.path.join(d, name)
    if os.path.exists(p("ca.crt")) and os.path.exists(p("ca.key")):
        ca = pki.KeyPair.load(p("ca.crt"), p("ca.key"))
        new_ca = False
    else:
        ca = pki.make_ca("kcore-ca")
        pki.write_pem(p("ca.key"), ca.key_pem(), private=True)
        pki.write_pem(p("ca.crt"), ca.cert_pem())
        new_ca = True

    def leaf(name: str, make, hosts: tuple[str, ...] = ()) -> pki.KeyPair:
        crt, key = p(f"{name}.crt"), p(f"{name}.key")
        if not new_ca and os.path.exists(crt) and os.path.exists(key):
            kp = pki.KeyPair.load(crt, key)
            if pki.cert_valid_for(kp.cert, ca.cert) and secure._names(kp.cert) >= set(hosts):
                return kp
        kp = make()
        pki.write_pem(key, kp.key_pem(), private=True)
        pki.write_pem(crt, kp.cert_pem())
        return kp

    hosts = secure.serving_hosts(cfg)
    leaf("apiserver", lambda: pki.make_cert(ca, "kube-apiserver", hosts=hosts, server=True),
         hosts)
    admin = leaf("admin", lambda: pki.make_cert(ca, "admin", orgs=("system:masters",),
                                               client=True))
    if not cfg.tls_cert_file:
        cfg.tls_cert_file, cfg.tls_private_key_file = p("apiserver.crt"), p("apiserver.key")
    if not cfg.client_ca_file:
        cfg.client_ca_file = p("ca.crt")
    return ca, admin


def write_kubeconfig(cfg, port: int, ca, admin) -> str:
    """<data-dir>/admin.kubeconfig for the admin certificate over https://127.0.0.1:<port>."""
    from kcore import pki
    host = cfg.bind_address if cfg.bind_address not in ("0.0.0.0", "::", "") else "127.0.0.1"
    kc = os.path.join(cfg.data_dir, "admin.kubeconfig")
    pki.write_pem(kc, pki.kubeconfig(f"https://{host}:{port}", ca.cert_pem(), admin.cert_pem(),
                                     admin.key_pem()).encode(), private=True)
    return kc


async def _serve(cfg, client_urls: list[str], admin=None) -> int:
    from kcore.apiserver.server import APIServer
    from kcore.cli.etcd import start_frontend

    server = APIServer(cfg)
    try:
        await server.start()
    except (ValueError, OSError) as e:
        print(f"kcore up: {e}", file=sys.stderr)
        await server.stop()
        return 1
    frontends = []
    for url in client_urls:
        frontends.append(await start_frontend(server.embedded, url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = [f"http://{cfg.insecure_bind_address}:{server.port}"] if server.port else []
    if server.secure_port:
        where.append(f"https://{cfg.bind_address}:{server.secure_port}")
    print(f"kcore up: API server on {', '.join(where)}, store in {cfg.data_dir}",
          file=sys.stderr, flush=True)
    if admin is not None and server.secure_port:
        kc = write_kubeconfig(cfg, server.secure_port, *admin)
        print(f"export KUBECONFIG={os.path.abspath(kc)}", flush=True)
    await stop.wait()
    for fe in frontends:
        await fe.stop(1.0)
    await server.stop()
    return 0
