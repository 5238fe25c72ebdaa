"""`kcore scheduler`: kube-scheduler's process, flags and endpoints.

    kcore scheduler --master=http://127.0.0.1:8080 --leader-elect=true --config sched.yaml
    kcore scheduler explain default/web-1 --master=http://127.0.0.1:8080

The config file is a KubeSchedulerConfiguration (profiles, plugins, weights,
percentageOfNodesToScore, podInitialBackoffSeconds, podMaxBackoffSeconds,
leaderElection, clientConnection); flags given on the command line win over it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import sys
import uuid

from kcore.cli.flags import FlagSet, run_flags

log = logging.getLogger("kcore.scheduler")


def scheduler_flags(prog: str = "kcore scheduler") -> FlagSet:
    fs = FlagSet(prog, "Run the kcore scheduler (binds pending pods to nodes). "
                 "Subcommand: `explain NAMESPACE/POD`.")
    a = fs.add
    a("master", "str", "", "the address of the Kubernetes API server (overrides any value "
      "in kubeconfig)")
    a("kubeconfig", "str", "", "path to kubeconfig file with authorization and master "
      "location information")
    a("config", "str", "", "the path to the KubeSchedulerConfiguration file")
    a("leader-elect", "bool", True, "start a leader election client and gain leadership "
      "before executing the main loop")
    a("leader-elect-lease-duration", "duration", 15.0, "the duration that non-leader "
      "candidates will wait after observing a leadership renewal until attempting to "
      "acquire leadership")
    a("leader-elect-renew-deadline", "duration", 10.0, "the interval between attempts by "
      "the acting master to renew a leadership slot before it stops leading")
    a("leader-elect-retry-period", "duration", 2.0, "the duration the clients should wait "
      "between attempting acquisition and renewal of a leadership")
    a("leader-elect-resource-name", "str", "kube-scheduler", "the name of the resource "
      "object that is used for locking during leader election")
    a("leader-elect-resource-namespace", "str", "kube-system", "the namespace of the "
      "resource object that is used for locking during leader election")
    a("lock-object-name", "str", "", "deprecated: use --leader-elect-resource-name")
    a("lock-object-namespace", "str", "", "deprecated: use "
      "--leader-elect-resource-namespace")
    a("port", "int", 10251, "the port on which to serve HTTP /healthz and /metrics "
      "insecurely (0: any free port, -1: disabled)")
    a("address", "str", "127.0.0.1", "the IP address on which to serve the insecure --port")
    a("secure-port", "int", -1, "the port on which to serve HTTPS /healthz and /metrics "
      "(0: any free port, -1: disabled); without --tls-cert-file a self-signed "
      "certificate is generated")
    a("bind-address", "str", "127.0.0.1", "the IP address on which to listen for the "
      "--secure-port port")
    a("tls-cert-file", "str", "", "file containing the x509 certificate for HTTPS")
    a("tls-private-key-file", "str", "", "file containing the x509 private key matching "
      "--tls-cert-file")
    a("kube-api-qps", "float", 0.0, "QPS to use while talking with kubernetes apiserver "
      "(kcore: 0 = no client-side limit)")
    a("kube-api-burst", "int", 100, "burst to use while talking with kubernetes apiserver")
    a("event-qps", "float", 50.0, "kcore: QPS of event writes (events beyond the "
      "recorder's queue are dropped, as kube's broadcaster does)")
    a("event-burst", "int", 100, "kcore: burst of event writes")
    a("pod-initial-backoff-seconds", "float", 0.0, "initial backoff of a pod that failed "
      "(default 1, or podInitialBackoffSeconds from --config)")
    a("pod-max-backoff-seconds", "float", 0.0, "maximum backoff (default 10, or "
      "podMaxBackoffSeconds from --config)")
    a("batch-size", "int", 500, "kcore: pods taken from the active queue per scheduling "
      "batch")
    a("parallel-binds", "int", 128, "kcore: pods/binding requests in flight at once")
    a("bind-transport", "str", "direct", "kcore: how bindings are POSTed: direct (one "
      "keep-alive HTTP/1.1 connection per binder, ~6x less CPU) or client (the shared "
      "aiohttp client)")
    a("seed", "int", -1, "kcore: seed of the tie-breaking draws (-1: random)")
    a("v", "int", 0, "number for the log level verbosity")
    a("log-level", "str", "info", "kcore: debug, info, warn, error")
    return fs


def explain_flags() -> FlagSet:
    fs = FlagSet("kcore scheduler explain", "Print the filter verdicts and per-plugin "
                 "scores of the top nodes for NAMESPACE/POD (changes nothing).")
    fs.add("master", "str", "", "the address of the Kubernetes API server")
    fs.add("kubeconfig", "str", "", "path to kubeconfig file")
    fs.add("config", "str", "", "the KubeSchedulerConfiguration file (profiles)")
    fs.add("top", "int", 5, "how many of the best nodes to show")
    return fs


def _read_config(path: str) -> dict:
    if not path:
        return {}
    import yaml
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a KubeSchedulerConfiguration")
    return doc


def _duration(v, default: float) -> float:
    if v is None or v == "":
        return default
    if isinstance(v, (int, float)):
        return float(v)
    from kcore.durations import parse_duration
    return parse_duration(str(v))


def run(argv: list[str]) -> int:
    if argv and argv[0] == "explain":
        return explain(argv[1:])
    opts, args = run_flags(scheduler_flags(), argv)
    if args:
        print(f"kcore scheduler: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    from kcore.cli.apiserver import setup_logging
    setup_logging(opts.log_level, opts.v)
    try:
        doc = _read_config(opts.config)
        from kcore.scheduler import load_config
        sched_config = load_config(doc)
    except (OSError, ValueError) as e:
        print(f"kcore scheduler: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(opts, doc, sched_config))


def _leader_election(opts, doc: dict):
    from kcore.client import LeaderElectionConfig
    le = doc.get("leaderElection") or {}
    given = opts._given
    elect = opts.leader_elect if "leader_elect" in given or "leaderElect" not in le \
        else bool(le["leaderElect"])
    if not elect:
        return None

    def pick(flag: str, key: str, default):
        return getattr(opts, flag) if flag in given or key not in le else le[key]
    name = opts.lock_object_name or pick("leader_elect_resource_name", "resourceName",
                                         "kube-scheduler")
    ns = opts.lock_object_namespace or pick("leader_elect_resource_namespace",
                                            "resourceNamespace", "kube-system")
    return LeaderElectionConfig(
        lock_namespace=ns, lock_name=name,
        identity=f"{socket.gethostname()}_{uuid.uuid4()}",
        lease_duration=_duration(pick("leader_elect_lease_duration", "leaseDuration", 15.0),
                                 15.0),
        renew_deadline=_duration(pick("leader_elect_renew_deadline", "renewDeadline", 10.0),
                                 10.0),
        retry_period=_duration(pick("leader_elect_retry_period", "retryPeriod", 2.0), 2.0))


def _client_config(opts, doc: dict, qps: float = 0.0, burst: int = 0):
    from kcore.client import build_config
    cc = doc.get("clientConnection") or {}
    cfg = build_config(master=opts.master, kubeconfig=opts.kubeconfig or
                       cc.get("kubeconfig") or "")
    cfg.qps = qps
    cfg.burst = burst
    cfg.user_agent = "kcore-scheduler"
    return cfg


def _ssl_context(opts):
    import ssl
    import tempfile

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if opts.tls_cert_file:
        ctx.load_cert_chain(opts.tls_cert_file, opts.tls_private_key_file or None)
        return ctx
    from kcore import pki
    _ca, kp = pki.self_signed_serving(("127.0.0.1", "localhost", socket.gethostname()),
                                      cn="kcore-scheduler")
    with tempfile.TemporaryDirectory(prefix="kcore-scheduler-") as d:
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        kp.write(cert, key)
        ctx.load_cert_chain(cert, key)      # read now; nothing is left on disk
    return ctx


async def serve(opts, doc: dict, sched_config) -> int:
    from kcore.cli.process import sd_notify, tune_gc
    from kcore.client import Client, ConfigError
    from kcore.scheduler.driver import SchedulerDriver
    from kcore.scheduler.server import serve as serve_http

    try:
        le = _leader_election(opts, doc)
        cc = doc.get("clientConnection") or {}
        qps = opts.kube_api_qps if "kube_api_qps" in opts._given else \
            float(cc.get("qps") or 0.0)
        main = Client(_client_config(opts, doc, qps, opts.kube_api_burst))
        events = Client(_client_config(opts, doc, opts.event_qps, opts.event_burst))
        election = Client(_client_config(opts, doc))
    except (ConfigError, OSError, ValueError) as e:
        print(f"kcore scheduler: {e}", file=sys.stderr)
        return 2
    initial = opts.pod_initial_backoff_seconds or float(doc.get("podInitialBackoffSeconds")
                                                        or 1.0)
    maximum = opts.pod_max_backoff_seconds or float(doc.get("podMaxBackoffSeconds") or 10.0)
    seed = opts.seed if opts.seed >= 0 else random.getrandbits(63)
    if opts.bind_transport not in ("direct", "client"):
        print("kcore scheduler: --bind-transport must be direct or client", file=sys.stderr)
        return 2
    transport = None
    if opts.bind_transport == "direct":
        from kcore.scheduler.binder import DirectBinding
        transport = lambda: DirectBinding(main.config)  # noqa: E731
    driver = SchedulerDriver(main, sched_config, seed=seed, batch_size=opts.batch_size,
                             parallel_binds=opts.parallel_binds, initial_backoff=initial,
                             max_backoff=max(maximum, initial), leader_election=le,
                             event_client=events, election_client=election,
                             bind_transport=transport,
                             after_sync=tune_gc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        ctx = _ssl_context(opts) if opts.secure_port >= 0 else None
        runner, port, sport = await serve_http(driver, opts.address, opts.port,
                                               secure_host=opts.bind_address,
                                               secure_port=opts.secure_port, ssl_context=ctx)
    except (OSError, ValueError) as e:
        print(f"kcore scheduler: {e}", file=sys.stderr)
        await _close(driver, runner, main, events, election)
        return 1
    where = ", ".join(x for x in (f"http://{opts.address}:{port}" if port else "",
                                  f"https://{opts.bind_address}:{sport}" if sport else "")
                      if x)
    print(f"kcore scheduler: serving /healthz and /metrics on {where or '(nothing)'}",
          file=sys.stderr, flush=True)
    from kcore.scheduler import warmup
    warmup()
    code = 0
    try:
        started = loop.create_task(driver.start())
        waiter = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({started, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if started in done:
            started.result()
            sd_notify("READY=1")
            runner_task = loop.create_task(driver.run())
            done, _ = await asyncio.wait({runner_task, waiter},
                                         return_when=asyncio.FIRST_COMPLETED)
            if runner_task in done:
                runner_task.result()
                log.error("leaderelection lost")
                code = 1
            else:
                runner_task.cancel()
                try:
                    await runner_task
                except asyncio.CancelledError:
                    pass
        else:
            started.cancel()
        waiter.cancel()
    except Exception as e:  # noqa: BLE001
        log.exception("scheduler failed")
        print(f"kcore scheduler: {e}", file=sys.stderr)
        code = 1
    await _close(driver, runner, main, events, election)
    return code


async def _close(driver, runner, *clients) -> None:
    try:
        await driver.stop()
    except Exception:  # noqa: BLE001
        log.exception("stopping")
    if runner is not None:
        await runner.cleanup()
    for c in clients:
        await c.close()


# -- explain ---------------------------------------------------------------------------------
def explain(argv: list[str]) -> int:
    opts, args = run_flags(explain_flags(), argv)
    if len(args) != 1:
        print("usage: kcore scheduler explain NAMESPACE/POD [--master URL] [--config FILE] "
              "[--top N]", file=sys.stderr)
        return 2
    ns, sep, name = args[0].partition("/")
    if not sep:
        ns, name = "default", ns
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        from kcore.scheduler import load_config
        cfg = load_config(_read_config(opts.config))
    except (OSError, ValueError) as e:
        print(f"kcore scheduler explain: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_explain(opts, cfg, ns, name))


async def _explain(opts, cfg, ns: str, name: str) -> int:
    from kcore.client import NODES, PODS, ApiError, Client, ConfigError, build_config
    from kcore.scheduler import Scheduler
    from kcore.scheduler.driver import explain_text

    try:
        client = Client(build_config(master=opts.master, kubeconfig=opts.kubeconfig))
    except (ConfigError, OSError, ValueError) as e:
        print(f"kcore scheduler explain: {e}", file=sys.stderr)
        return 2
    try:
        pod = await client.get(PODS, name, ns)
        nodes, _ = await client.list_all(NODES)
        pods, _ = await client.list_all(PODS)
    except ApiError as e:
        print(f"kcore scheduler explain: {e.message if hasattr(e, 'message') else e}",
              file=sys.stderr)
        return 1
    finally:
        await client.close()
    core = Scheduler(cfg)
    if not core.responsible_for(pod):
        print(f"kcore scheduler explain: no profile for schedulerName "
              f"{pod['spec'].get('schedulerName')!r}", file=sys.stderr)
        return 1
    for n in nodes:
        core.add_node(n)
    uid = pod["metadata"].get("uid")
    for p in pods:
        if p["metadata"].get("uid") != uid and (p.get("spec") or {}).get("nodeName"):
            core.add_pod(p)
    print(explain_text(core, pod, opts.top))
    return 0
