"""`kcore controller-manager`: kube-controller-manager's flags over kcore.controllers.

    kcore controller-manager --master=http://127.0.0.1:8080 --leader-elect=true \\
        --cluster-cidr=10.244.0.0/16 --allocate-node-cidrs=true \\
        --service-cluster-ip-range=10.0.0.0/24 --node-monitor-grace-period=40s
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys

from kcore.cli.flags import FlagSet, run_flags

log = logging.getLogger("kcore.controller-manager")


def controller_manager_flags(prog: str = "kcore controller-manager") -> FlagSet:
    fs = FlagSet(prog, "Run the kcore controller manager (replication, deployments, node "
                 "lifecycle, endpoints, namespaces, service accounts, quota, node IPAM, "
                 "garbage collection, horizontal pod autoscaling).")
    a = fs.add
    a("master", "str", "", "the address of the Kubernetes API server (overrides any value "
      "in kubeconfig)")
    a("kubeconfig", "str", "", "path to kubeconfig file with authorization and master "
      "location information")
    a("controllers", "list", ["*"], "controllers to enable: '*' enables all on-by-default "
      "controllers, 'foo' enables 'foo', '-foo' disables 'foo'")
    a("leader-elect", "bool", True, "start a leader election client and gain leadership "
      "before executing the main loop")
    a("leader-elect-lease-duration", "duration", 15.0, "how long non-leader candidates wait "
      "after observing a leadership renewal before attempting to acquire leadership")
    a("leader-elect-renew-deadline", "duration", 10.0, "how long the acting master tries to "
      "refresh leadership before it stops leading")
    a("leader-elect-retry-period", "duration", 2.0, "how long clients wait between attempts "
      "of acquisition and renewal of a leadership")
    a("leader-elect-resource-lock", "str", "leases", "the type of resource object used for "
      "locking during leader election (leases)")
    a("leader-elect-resource-name", "str", "kube-controller-manager", "the name of the "
      "resource object used for locking during leader election")
    a("leader-elect-resource-namespace", "str", "kube-system", "the namespace of the "
      "resource object used for locking during leader election")
    a("leader-elect-identity", "str", "", "kcore: the holder identity (default "
      "hostname_uuid)")
    a("bind-address", "str", "127.0.0.1", "the IP address on which to serve /healthz and "
      "/metrics")
    a("address", "str", "", "deprecated alias of --bind-address for the insecure port")
    a("port", "int", 10252, "the port on which to serve HTTP /healthz and /metrics "
      "(0: disabled)")
    a("secure-port", "int", 0, "the port on which to serve HTTPS /healthz and /metrics "
      "(needs --tls-cert-file; 0: disabled)")
    a("tls-cert-file", "str", "", "x509 certificate for HTTPS")
    a("tls-private-key-file", "str", "", "x509 private key matching --tls-cert-file")
    a("kube-api-qps", "float", 20.0, "QPS to use while talking with the API server")
    a("kube-api-burst", "int", 30, "burst to use while talking with the API server")
    a("min-resync-period", "duration", 0.0, "the resync period of informers (kcore: 0, "
      "events only)")
    for name, default in (("concurrent-rc-syncs", 5), ("concurrent-replicaset-syncs", 5),
                          ("concurrent-deployment-syncs", 5),
                          ("concurrent-endpoint-syncs", 5),
                          ("concurrent-namespace-syncs", 10),
                          ("concurrent-serviceaccount-token-syncs", 5),
                          ("concurrent-resource-quota-syncs", 5),
                          ("concurrent-gc-syncs", 20)):
        a(name, "int", default, "the number of objects synced concurrently by the "
          "controller (more: more responsive, more CPU and network load)")
    a("node-monitor-period", "duration", 5.0, "the period for syncing NodeStatus in the "
      "node lifecycle controller")
    a("node-monitor-grace-period", "duration", 40.0, "amount of time a running Node may be "
      "unresponsive before it is marked unhealthy")
    a("node-startup-grace-period", "duration", 60.0, "amount of time a starting Node may be "
      "unresponsive before it is marked unhealthy")
    a("pod-eviction-timeout", "duration", 300.0, "kcore: tolerationSeconds assumed for pods "
      "that carry no not-ready/unreachable toleration at all (DefaultTolerationSeconds off)")
    a("node-eviction-rate", "float", 0.1, "nodes per second whose pods are evicted (NoExecute "
      "tainted) when a zone is healthy")
    a("secondary-node-eviction-rate", "float", 0.01, "nodes per second whose pods are "
      "evicted when a zone is unhealthy")
    a("large-cluster-size-threshold", "int", 50, "number of nodes from which the secondary "
      "eviction rate applies to an unhealthy zone (smaller: evictions stop)")
    a("unhealthy-zone-threshold", "float", 0.55, "fraction of NotReady nodes (at least 3) "
      "that makes a zone unhealthy")
    a("enable-taint-manager", "bool", True, "deprecated: the taint eviction controller is "
      "enabled through --controllers")
    a("allocate-node-cidrs", "bool", False, "should CIDRs for Pods be allocated and set on "
      "nodes")
    a("cluster-cidr", "str", "", "CIDR range for Pods in the cluster")
    a("node-cidr-mask-size", "int", 24, "mask size for node CIDRs in the cluster")
    a("service-cluster-ip-range", "str", "", "CIDR range for Services (excluded from node "
      "CIDRs)")
    a("resource-quota-sync-period", "duration", 300.0, "the period for syncing quota usage "
      "status in the system")
    a("namespace-sync-period", "duration", 300.0, "the period for resyncing namespace "
      "life-cycle updates")
    a("service-account-private-key-file", "str", "", "PEM private key used to sign "
      "service account tokens")
    a("use-service-account-credentials", "bool", False, "if true, use individual service "
      "account credentials for each controller")
    a("root-ca-file", "str", "", "root certificate authority included in service account "
      "token secrets")
    a("enable-garbage-collector", "bool", True, "enables the generic garbage collector; "
      "must be synced with the API server's flag")
    a("terminated-pod-gc-threshold", "int", 12500, "number of terminated pods that can exist "
      "before the terminated pod garbage collector starts deleting them (<= 0: disabled)")
    a("concurrent-horizontal-pod-autoscaler-syncs", "int", 5, "the number of horizontal pod "
      "autoscaler objects allowed to sync concurrently")
    a("horizontal-pod-autoscaler-sync-period", "duration", 15.0, "the period for syncing the "
      "number of pods in horizontal pod autoscaler")
    a("horizontal-pod-autoscaler-use-rest-clients", "bool", True, "deprecated and accepted: "
      "metrics are always read through the metrics.k8s.io REST API")
    a("horizontal-pod-autoscaler-downscale-stabilization", "duration", 300.0, "the period for "
      "which autoscaler will look backwards and not scale down below any recommendation it "
      "made during that period")
    a("horizontal-pod-autoscaler-tolerance", "float", 0.1, "the minimum change (from 1.0) in "
      "the desired-to-actual metrics ratio for the horizontal pod autoscaler to consider "
      "scaling")
    a("horizontal-pod-autoscaler-cpu-initialization-period", "duration", 300.0, "the period "
      "after pod start when CPU samples might be skipped")
    a("horizontal-pod-autoscaler-initial-readiness-delay", "duration", 30.0, "the period after "
      "pod start during which readiness changes will be treated as initial readiness")
    a("cluster-signing-cert-file", "str", "", "PEM-encoded X509 CA certificate used to issue "
      "cluster-scoped certificates (enables the csrsigning controller)")
    a("cluster-signing-key-file", "str", "", "PEM-encoded private key used to sign "
      "cluster-scoped certificates")
    a("cluster-signing-duration", "duration", 365 * 24 * 3600.0, "the max length of "
      "duration signed certificates will be given (a CSR's expirationSeconds may ask less)")
    a("v", "int", 0, "number for the log level verbosity")
    a("log-level", "str", "info", "kcore: debug, info, warn, error")
    return fs


def options_from_flags(o):
    from kcore.controllers.context import Options
    return Options(
        concurrent_rc_syncs=o.concurrent_rc_syncs,
        concurrent_replicaset_syncs=o.concurrent_replicaset_syncs,
        concurrent_deployment_syncs=o.concurrent_deployment_syncs,
        concurrent_endpoint_syncs=o.concurrent_endpoint_syncs,
        concurrent_namespace_syncs=o.concurrent_namespace_syncs,
        concurrent_serviceaccount_token_syncs=o.concurrent_serviceaccount_token_syncs,
        concurrent_resource_quota_syncs=o.concurrent_resource_quota_syncs,
        concurrent_gc_syncs=o.concurrent_gc_syncs,
        node_monitor_period=o.node_monitor_period,
        node_monitor_grace_period=o.node_monitor_grace_period,
        node_startup_grace_period=o.node_startup_grace_period,
        pod_eviction_timeout=o.pod_eviction_timeout, node_eviction_rate=o.node_eviction_rate,
        secondary_node_eviction_rate=o.secondary_node_eviction_rate,
        large_cluster_size_threshold=o.large_cluster_size_threshold,
        unhealthy_zone_threshold=o.unhealthy_zone_threshold,
        allocate_node_cidrs=o.allocate_node_cidrs, cluster_cidr=o.cluster_cidr,
        node_cidr_mask_size=o.node_cidr_mask_size,
        service_cluster_ip_range=o.service_cluster_ip_range,
        resource_quota_sync_period=o.resource_quota_sync_period,
        namespace_sync_period=o.namespace_sync_period,
        service_account_private_key_file=o.service_account_private_key_file,
        root_ca_file=o.root_ca_file, enable_garbage_collector=o.enable_garbage_collector,
        terminated_pod_gc_threshold=o.terminated_pod_gc_threshold,
        min_resync_period=o.min_resync_period,
        concurrent_horizontal_pod_autoscaler_syncs=o.concurrent_horizontal_pod_autoscaler_syncs,
        horizontal_pod_autoscaler_sync_period=o.horizontal_pod_autoscaler_sync_period,
        horizontal_pod_autoscaler_downscale_stabilization=(
            o.horizontal_pod_autoscaler_downscale_stabilization),
        horizontal_pod_autoscaler_tolerance=o.horizontal_pod_autoscaler_tolerance,
        horizontal_pod_autoscaler_cpu_initialization_period=(
            o.horizontal_pod_autoscaler_cpu_initialization_period),
        horizontal_pod_autoscaler_initial_readiness_delay=(
            o.horizontal_pod_autoscaler_initial_readiness_delay),
        cluster_signing_cert_file=o.cluster_signing_cert_file,
        cluster_signing_key_file=o.cluster_signing_key_file,
        cluster_signing_duration=o.cluster_signing_duration)


def _check(o) -> str | None:
    if o.allocate_node_cidrs:
        if not o.cluster_cidr:
            return "--allocate-node-cidrs needs --cluster-cidr"
        try:
            net = ipaddress.ip_network(o.cluster_cidr, strict=False)
        except ValueError as e:
            return f"invalid --cluster-cidr: {e}"
        if not net.prefixlen <= o.node_cidr_mask_size <= net.max_prefixlen:
            return (f"--node-cidr-mask-size {o.node_cidr_mask_size} does not fit in "
                    f"--cluster-cidr {o.cluster_cidr}")
    if o.service_cluster_ip_range:
        try:
            ipaddress.ip_network(o.service_cluster_ip_range, strict=False)
        except ValueError as e:
            return f"invalid --service-cluster-ip-range: {e}"
    if o.horizontal_pod_autoscaler_sync_period <= 0:
        return "--horizontal-pod-autoscaler-sync-period must be positive"
    if o.horizontal_pod_autoscaler_tolerance < 0:
        return "--horizontal-pod-autoscaler-tolerance must not be negative"
    if bool(o.cluster_signing_cert_file) != bool(o.cluster_signing_key_file):
        return "--cluster-signing-cert-file and --cluster-signing-key-file go together"
    if o.cluster_signing_cert_file:
        from kcore.certificates.signer import CA
        try:
            with open(o.cluster_signing_cert_file, "rb") as c, \
                    open(o.cluster_signing_key_file, "rb") as k:
                CA.from_pem(c.read(), k.read())
        except (OSError, ValueError, IndexError) as e:
            return f"cannot load the cluster signing CA: {e}"
    if o.cluster_signing_duration <= 0:
        return "--cluster-signing-duration must be positive"
    if o.leader_elect and o.leader_elect_resource_lock not in ("leases", "endpointsleases",
                                                                "configmapsleases"):
        return f"unsupported --leader-elect-resource-lock {o.leader_elect_resource_lock!r}"
    return None


def run(argv: list[str]) -> int:
    opts, args = run_flags(controller_manager_flags(), argv)
    if args:
        print(f"kcore controller-manager: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    from kcore.cli.process import setup_logging
    setup_logging("debug" if opts.v >= 4 else opts.log_level)
    err = _check(opts)
    if err:
        print(f"kcore controller-manager: {err}", file=sys.stderr)
        return 2
    from kcore.controllers.manager import select_controllers
    options = options_from_flags(opts)
    try:
        names = select_controllers(opts.controllers, options)
    except ValueError as e:
        print(f"kcore controller-manager: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(opts, options, names))


def _kubeconfig_ca(cfg) -> str:
    """The kubeconfig's CA (root-ca-cert-publisher's fallback for --root-ca-file)."""
    if cfg.ca_data:
        return cfg.ca_data.decode()
    if cfg.ca_file:
        try:
            with open(cfg.ca_file) as fh:
                return fh.read()
        except OSError:
            return ""
    return ""


async def serve(opts, options, names: list[str]) -> int:
    from kcore.client import Client, ConfigError, build_config
    from kcore.client.leaderelection import LeaderElectionConfig
    from kcore.controllers.manager import ControllerManager, default_identity

    try:
        cfg = build_config(master=opts.master, kubeconfig=opts.kubeconfig)
    except ConfigError as e:
        print(f"kcore controller-manager: {e}", file=sys.stderr)
        return 2
    cfg.qps, cfg.burst = opts.kube_api_qps, opts.kube_api_burst
    options.root_ca_bundle = _kubeconfig_ca(cfg)
    cfg.user_agent = "kcore-controller-manager/v1.32.4"
    le = None
    if opts.leader_elect:
        le = LeaderElectionConfig(
            lock_namespace=opts.leader_elect_resource_namespace,
            lock_name=opts.leader_elect_resource_name,
            identity=opts.leader_elect_identity or default_identity(),
            lease_duration=opts.leader_elect_lease_duration,
            renew_deadline=opts.leader_elect_renew_deadline,
            retry_period=opts.leader_elect_retry_period)
        try:
            le.validate()
        except ValueError as e:
            print(f"kcore controller-manager: {e}", file=sys.stderr)
            return 2
    client = Client(cfg)
    mgr = ControllerManager(client, options, names, le,
                            bind_address=opts.address or opts.bind_address, port=opts.port,
                            secure_port=opts.secure_port, tls_cert_file=opts.tls_cert_file,
                            tls_key_file=opts.tls_private_key_file,
                            use_service_account_credentials=opts.use_service_account_credentials)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"kcore controller-manager: talking to {cfg.server}; controllers: "
          f"{','.join(names)}" + (f"; leader election as {le.identity}" if le else ""),
          file=sys.stderr, flush=True)
    try:
        code = await mgr.run(stop)
    except OSError as e:
        print(f"kcore controller-manager: {e}", file=sys.stderr)
        code = 1
    finally:
        await client.close()
    return code
