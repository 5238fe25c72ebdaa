"""`kcore proxy`: kube-proxy's process and flags over kcore.proxy.

    kcore proxy --master=http://127.0.0.1:8080 --proxy-mode=ipvs --ipvs-scheduler=rr \\
        --cluster-cidr=10.244.0.0/16 --hostname-override=node-1
    kcore proxy list                # the IPVS table, as `ipvsadm -Ln` prints it
    kcore proxy --cleanup --proxy-mode=ipvs    # remove what a proxy programmed, exit

--proxy-mode=ipvs on a node without IPVS logs why and runs iptables mode, as
kube-proxy does; iptables mode where iptables cannot be programmed falls back
to userspace. Acts on the network namespace it runs in.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

from kcore.cli.flags import FlagSet, run_flags

log = logging.getLogger("kcore.proxy")


def proxy_flags(prog: str = "kcore proxy") -> FlagSet:
    fs = FlagSet(prog, "Run the kcore network proxy (Services on this node: iptables, IPVS or "
                 "userspace). Subcommand: `list` prints the IPVS table.")
    a = fs.add
    a("master", "str", "", "the address of the Kubernetes API server (overrides any value "
      "in kubeconfig)")
    a("kubeconfig", "str", "", "path to kubeconfig file with authorization information")
    a("proxy-mode", "str", "iptables", "which proxy mode to use: 'iptables', 'ipvs' or "
      "'userspace' (ipvs falls back to iptables when the kernel lacks IPVS)")
    a("cluster-cidr", "str", "", "the CIDR range of pods in the cluster; traffic to a "
      "Service from outside it is masqueraded")
    a("masquerade-all", "bool", False, "SNAT all traffic sent via Service cluster IPs")
    a("iptables-masquerade-bit", "int", 14, "the bit of the fwmark space to mark packets "
      "requiring SNAT (0-31)")
    a("nodeport-addresses", "list", [], "CIDRs of the node addresses that serve NodePorts "
      "(default: all)")
    a("ipvs-scheduler", "str", "rr", "the IPVS scheduler: rr, wrr, lc, wlc, sed, nq, dh, "
      "sh, mh (userspace mode: the same nine)")
    a("hostname-override", "str", "", "the name of this node (default: the hostname)")
    a("sync-period", "duration", 30.0, "the maximum interval between full syncs of the "
      "node's rules")
    a("min-sync-period", "duration", 1.0, "the minimum interval between syncs (a burst of "
      "changes becomes one sync)")
    a("iptables-sync-period", "duration", 0.0, "iptables mode: overrides --sync-period")
    a("iptables-min-sync-period", "duration", -1.0, "iptables mode: overrides "
      "--min-sync-period")
    a("ipvs-sync-period", "duration", 0.0, "ipvs mode: overrides --sync-period")
    a("ipvs-min-sync-period", "duration", -1.0, "ipvs mode: overrides --min-sync-period")
    a("bind-address", "str", "0.0.0.0", "the IP address for the health check server")
    a("healthz-port", "int", 10256, "the port of /healthz (0: disabled)")
    a("healthz-bind-address", "str", "", "host for /healthz (default: --bind-address)")
    a("metrics-port", "int", 10249, "the port of /metrics and /proxyMode (0: disabled)")
    a("metrics-bind-address", "str", "127.0.0.1", "host for /metrics")
    a("cleanup", "bool", False, "remove the rules of the chosen mode and exit")
    a("v", "int", 0, "number for the log level verbosity")
    a("log-level", "str", "info", "kcore: debug, info, warn, error")
    return fs


def run(argv: list[str]) -> int:
    if argv and argv[0] == "list":
        return list_ipvs(argv[1:])
    opts, args = run_flags(proxy_flags(), argv)
    if args:
        print(f"kcore proxy: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    from kcore.cli.process import setup_logging
    setup_logging("debug" if opts.v >= 4 else opts.log_level)
    from kcore.proxy.ipvs import SCHEDULERS
    if opts.ipvs_scheduler not in SCHEDULERS:
        print(f"kcore proxy: unknown --ipvs-scheduler {opts.ipvs_scheduler!r}", file=sys.stderr)
        return 2
    if not 0 <= opts.iptables_masquerade_bit <= 31:
        print("kcore proxy: --iptables-masquerade-bit must be within 0..31", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(opts))


def make_proxier(mode: str, opts):
    from kcore.proxy.iptables_rules import NodeConfig
    node = NodeConfig(cluster_cidr=opts.cluster_cidr, masquerade_all=opts.masquerade_all,
                      masquerade_bit=opts.iptables_masquerade_bit,
                      node_port_addresses=tuple(opts.nodeport_addresses))
    if mode == "ipvs":
        from kcore.proxy.ipvs_mode import IPVSProxier
        return IPVSProxier(scheduler=opts.ipvs_scheduler, node=node)
    if mode == "iptables":
        from kcore.proxy.iptables_mode import IptablesProxier
        return IptablesProxier(node)
    from kcore.proxy.dispatcher import ipvs_ref
    from kcore.proxy.links import DummyLink
    from kcore.proxy.userspace import UserspaceProxier
    sched = opts.ipvs_scheduler
    if sched not in ipvs_ref.SCHEDULERS:
        log.warning("userspace mode has no %s scheduler (it has %s): using rr", sched,
                    ", ".join(ipvs_ref.SCHEDULERS))
        sched = "rr"
    return UserspaceProxier(scheduler=sched, link=DummyLink())


def _periods(mode: str, opts) -> tuple[float, float]:
    period, minimum = opts.sync_period, opts.min_sync_period
    if mode == "iptables":
        period = opts.iptables_sync_period or period
        minimum = minimum if opts.iptables_min_sync_period < 0 else opts.iptables_min_sync_period
    elif mode == "ipvs":
        period = opts.ipvs_sync_period or period
        minimum = minimum if opts.ipvs_min_sync_period < 0 else opts.ipvs_min_sync_period
    return max(period, 0.1), max(minimum, 0.0)


async def serve(opts) -> int:
    from kcore.cli.process import sd_notify
    from kcore.client import Client, ConfigError, build_config
    from kcore.proxy.modes import select_mode
    from kcore.proxy.server import ProxyServer, SyncConfig, serve_http

    hostname = opts.hostname_override or socket.gethostname()
    try:   # pyroute2's blocking API runs its own event loop: probe on a thread
        mode = await asyncio.get_running_loop().run_in_executor(None, select_mode,
                                                                opts.proxy_mode)
    except ValueError as e:
        print(f"kcore proxy: {e}", file=sys.stderr)
        return 2
    proxier = make_proxier(mode, opts)
    if opts.cleanup:
        try:
            await proxier.cleanup()
        finally:
            await proxier.close()
        log.info("%s rules removed", mode)
        return 0
    try:
        cfg = build_config(master=opts.master, kubeconfig=opts.kubeconfig)
        cfg.user_agent = "kcore-proxy"
        client = Client(cfg)
    except (ConfigError, OSError, ValueError) as e:
        print(f"kcore proxy: {e}", file=sys.stderr)
        return 2
    period, minimum = _periods(mode, opts)
    srv = ProxyServer(client, proxier, SyncConfig(sync_period=period, min_sync_period=minimum,
                                                  hostname=hostname))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners = []
    code = 0
    try:
        hz = (opts.healthz_bind_address or opts.bind_address, opts.healthz_port)
        mt = (opts.metrics_bind_address, opts.metrics_port)
        runners = await serve_http(srv, [(*hz, True, True)] if hz == mt else
                                   [(*hz, True, False), (*mt, False, True)])
        log.info("kcore proxy on node %s: mode %s, scheduler %s, sync period %.0fs", hostname,
                 mode, opts.ipvs_scheduler if mode != "iptables" else "-", period)
        starter = loop.create_task(srv.start())
        waiter = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({starter, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if starter in done:
            starter.result()
            sd_notify("READY=1")
            runner = loop.create_task(srv.run())
            await waiter
            srv.stop()
            await runner
        else:
            starter.cancel()
    except Exception as e:  # noqa: BLE001
        log.exception("proxy failed")
        print(f"kcore proxy: {e}", file=sys.stderr)
        code = 1
    finally:
        for r in runners:
            await r.cleanup()
        await srv.close()
        await client.close()
    return code


def list_ipvs(argv: list[str]) -> int:
    """`kcore proxy list`: the kernel's IPVS table in ipvsadm -Ln's layout."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: kcore proxy list     (prints the IPVS table like `ipvsadm -Ln`)")
        return 0
    from kcore.proxy.ipvs import format_table
    from kcore.proxy.ipvs_kernel import IPVSUnavailable, KernelIPVS
    try:
        k = KernelIPVS()
    except IPVSUnavailable as e:
        print(f"kcore proxy list: {e}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(format_table(k.read(), k.header()))
    finally:
        k.close()
    return 0
