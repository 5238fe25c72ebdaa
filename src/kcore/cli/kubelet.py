"""`kcore kubelet`: the node agent, with kubelet's flags.

    kcore kubelet --master=http://127.0.0.1:8080 --node-name=n1 --root-dir=/var/lib/kcore/n1 --port=10250
    kcore kubelet --kubeconfig=admin.kubeconfig --pod-network=netns --pod-cidr=10.244.1.0/24
    kcore kubelet --master=http://127.0.0.1:8080 --hollow-nodes=1000      # simulated nodes
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from kcore.cli.flags import FlagSet, run_flags
from kcore.cli.process import setup_logging

log = logging.getLogger("kcore.kubelet")


def kubelet_flags(prog: str = "kcore kubelet") -> FlagSet:
    fs = FlagSet(prog, "Run the kcore kubelet (node agent), or many hollow nodes.")
    a = fs.add
    a("kubeconfig", "str", "", "path to a kubeconfig file with the API server and credentials")
    a("bootstrap-kubeconfig", "str", "", "kubeconfig with bootstrap credentials (a "
      "bootstrap token); used to request a client certificate when --kubeconfig does not "
      "exist yet, which is then written there")
    a("cert-dir", "str", "", "directory of the kubelet's certificates (default: "
      "<root-dir>/pki)")
    a("master", "str", "", "the address of the API server (overrides the kubeconfig's)")
    a("node-name", "str", "", "the Node's name (default: the hostname)")
    a("hostname-override", "str", "", "the Hostname address and kubernetes.io/hostname "
      "label (default: --node-name)")
    a("root-dir", "str", "/var/lib/kcore/kubelet", "directory for pod logs, pid files and "
      "state")
    a("address", "str", "0.0.0.0", "the IP address for the kubelet to serve on")
    a("port", "int", 10250, "the port for the kubelet to serve on (0: any free port)")
    a("node-ip", "str", "", "the Node's InternalIP (default: the address of the default "
      "route, else 127.0.0.1)")
    a("runtime", "str", "process", "container runtime: process (local processes) or fake")
    a("pod-network", "str", "none", "none (pods share the host network; podIP = node IP) or "
      "netns (a network namespace per pod on a node bridge; root)")
    a("pod-cidr", "str", "", "pod IP range when the Node has no spec.podCIDR")
    a("node-labels", "list", [], "labels to add when registering the node (k=v,...)",
      repeated=True)
    a("register-with-taints", "list", [], "taints to register the node with "
      "(key=value:Effect,...)", repeated=True)
    a("register-node", "bool", True, "register the node with the API server")
    a("cpu", "str", "", "kcore: cpu capacity to report (default: the host's CPU count)")
    a("memory", "str", "", "kcore: memory capacity to report (default: MemTotal)")
    a("pods", "int", 0, "kcore: pods capacity (same as --max-pods)")
    a("max-pods", "int", 110, "number of pods that can run on this kubelet")
    a("ephemeral-storage", "str", "", "kcore: ephemeral-storage capacity to report")
    a("node-status-update-frequency", "duration", 10.0, "how often the kubelet computes "
      "node status (and posts it when it changed)")
    a("node-status-report-frequency", "duration", 300.0, "how often the node status is "
      "posted when nothing changed")
    a("node-lease-duration-seconds", "int", 40, "duration of the node's Lease")
    a("node-lease-renew-interval", "duration", 10.0, "kcore: how often the Lease is renewed")
    a("image-registries", "list", [], "kcore: images that pull (registry hosts, "
      "repositories, globs); empty: every image", repeated=True)
    a("crash-loop-backoff", "duration", 10.0, "kcore: first crash back-off (doubles)")
    a("crash-loop-backoff-max", "duration", 300.0, "kcore: longest crash back-off")
    a("image-pull-backoff", "duration", 10.0, "kcore: first image pull back-off (doubles)")
    a("image-pull-backoff-max", "duration", 300.0, "kcore: longest image pull back-off")
    a("hollow-nodes", "int", 0, "kcore: run N simulated nodes (fake runtime) in this process")
    a("hollow-name-prefix", "str", "hollow-", "kcore: hollow nodes are <prefix><i>")
    a("hollow-connections", "int", 32, "kcore: HTTP connections shared by the hollow nodes")
    a("hollow-stats-file", "str", "", "kcore: write the hollow nodes' heartbeat figures here "
      "(JSON) every few seconds")
    a("v", "int", 0, "number for the log level verbosity")
    a("log-level", "str", "info", "kcore: debug, info, warn, error")
    return fs


def kubelet_config(o):
    from kcore.kubelet.agent import KubeletConfig
    from kcore.kubelet.node import parse_labels, parse_taints

    name = (o.node_name or o.hostname_override or socket.gethostname()).lower()
    if o.runtime not in ("process", "fake"):
        raise ValueError(f"--runtime must be process or fake, not {o.runtime!r}")
    if o.pod_network not in ("none", "netns"):
        raise ValueError(f"--pod-network must be none or netns, not {o.pod_network!r}")
    if o.pod_network == "netns":
        from kcore.kubelet.runtime.netns import available
        why = available()
        if why:
            raise ValueError(why)
    if o.pod_cidr:
        import ipaddress
        ipaddress.ip_network(o.pod_cidr, strict=False)
    return KubeletConfig(
        node_name=name, root_dir=os.path.abspath(o.root_dir), port=o.port, address=o.address,
        node_ip=o.node_ip, hostname=(o.hostname_override or name).lower(), runtime=o.runtime,
        pod_network=o.pod_network, pod_cidr=o.pod_cidr,
        labels=parse_labels(o.node_labels), taints=parse_taints(o.register_with_taints),
        cpu=o.cpu, memory=o.memory, pods=o.pods or o.max_pods,
        ephemeral_storage=o.ephemeral_storage,
        node_status_update_frequency=o.node_status_update_frequency,
        node_status_report_frequency=o.node_status_report_frequency,
        node_lease_duration=o.node_lease_duration_seconds,
        node_lease_renew_interval=o.node_lease_renew_interval,
        image_registries=list(o.image_registries), crash_backoff_base=o.crash_loop_backoff,
        crash_backoff_max=o.crash_loop_backoff_max, image_backoff_base=o.image_pull_backoff,
        image_backoff_max=o.image_pull_backoff_max, register_node=o.register_node)


def run(argv: list[str]) -> int:
    opts, args = run_flags(kubelet_flags(), argv)
    if args:
        print(f"kcore kubelet: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    setup_logging("debug" if opts.v >= 4 else opts.log_level)
    try:
        cfg = kubelet_config(opts)
    except ValueError as e:
        print(f"kcore kubelet: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if opts.hollow_nodes > 0:
        return asyncio.run(serve_hollow(opts, cfg))
    return asyncio.run(serve(opts, cfg))


def _client(opts, connections: int = 0):
    from kcore.client import Client, build_config
    conf = build_config(master=opts.master, kubeconfig=opts.kubeconfig)
    conf.user_agent = "kubelet/v1.32.4 (linux) kcore"
    return Client(conf)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def tls_bootstrap(opts, cfg) -> bool:
    """Run the TLS bootstrap when asked and needed; False (and a message) on failure."""
    from kcore.kubelet.bootstrap import kubeconfig_usable
    if not opts.bootstrap_kubeconfig or (opts.kubeconfig and kubeconfig_usable(opts.kubeconfig)):
        return True
    if not opts.kubeconfig:
        print("kcore kubelet: --bootstrap-kubeconfig needs --kubeconfig (where the "
              "bootstrapped credentials go)", file=sys.stderr)
        return False
    from kcore.client import ConfigError
    from kcore.client import errors as CE
    from kcore.kubelet.bootstrap import BootstrapError, bootstrap
    cert_dir = opts.cert_dir or os.path.join(cfg.root_dir, "pki")
    try:
        await bootstrap(opts.bootstrap_kubeconfig, opts.kubeconfig, cert_dir, cfg.node_name,
                        opts.master)
    except (BootstrapError, ConfigError, CE.ApiError, OSError) as e:
        print(f"kcore kubelet: TLS bootstrap failed: {e}", file=sys.stderr)
        return False
    return True


async def serve(opts, cfg) -> int:
    from kcore.kubelet.agent import Kubelet

    if not await tls_bootstrap(opts, cfg):
        return 1
    client = _client(opts)
    kl = Kubelet(client, cfg)
    try:
        await kl.start()
    except (OSError, RuntimeError, ValueError) as e:
        print(f"kcore kubelet: {e}", file=sys.stderr)
        await kl.stop()
        await client.close()
        return 1
    print(f"kcore kubelet: node {cfg.node_name} serving on {cfg.address}:{kl.port} "
          f"(runtime {cfg.runtime}, pod network {cfg.pod_network})", file=sys.stderr,
          flush=True)
    await _wait_for_signal()
    log.info("stopping")
    await kl.stop()
    await client.close()
    return 0


async def serve_hollow(opts, cfg) -> int:
    from kcore.kubelet.hollow import HollowConfig, HollowNodes

    client = _client(opts)
    hc = HollowConfig(count=opts.hollow_nodes, prefix=opts.hollow_name_prefix,
                      base=cfg, connections=opts.hollow_connections,
                      stats_file=opts.hollow_stats_file)
    hollow = HollowNodes(client, hc)
    try:
        await hollow.start()
    except (OSError, RuntimeError, ValueError) as e:
        print(f"kcore kubelet: {e}", file=sys.stderr)
        await hollow.stop()
        await client.close()
        return 1
    print(f"kcore kubelet: {opts.hollow_nodes} hollow nodes ({opts.hollow_name_prefix}0..) "
          f"serving on {cfg.address}:{hollow.port}", file=sys.stderr, flush=True)
    await _wait_for_signal()
    await hollow.stop()
    await client.close()
    return 0
