"""`kcore up`: the control plane on one machine, in one process.

For now: the API server (insecure port) over the embedded store in --data-dir;
with --listen-client-urls the same store is also served over etcd's gRPC API
(for etcdctl and backups). Controllers, scheduler and kubelet join in later
issues.

    kcore up --data-dir /var/lib/kcore --insecure-port 8080
"""
from __future__ import annotations

import asyncio
import signal
import sys

from kcore.cli.apiserver import apiserver_flags, config_from_flags, setup_logging
from kcore.cli.flags import run_flags


def run(argv: list[str]) -> int:
    fs = apiserver_flags("kcore up")
    fs.flags["data-dir"].default = "/var/lib/kcore"
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
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_serve(cfg, opts.listen_client_urls))


async def _serve(cfg, client_urls: list[str]) -> int:
    from kcore.apiserver.server import APIServer
    from kcore.cli.etcd import start_frontend

    server = APIServer(cfg)
    await server.start()
    frontends = []
    for url in client_urls:
        frontends.append(await start_frontend(server.embedded, url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"kcore up: API server on http://{cfg.insecure_bind_address}:{server.port}, "
          f"store in {cfg.data_dir}", file=sys.stderr, flush=True)
    await stop.wait()
    for fe in frontends:
        await fe.stop(1.0)
    await server.stop()
    return 0
