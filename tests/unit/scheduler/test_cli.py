"""`kcore scheduler` flags and the KubeSchedulerConfiguration file: flags given win."""
from __future__ import annotations

from kcore.cli.scheduler import _leader_election, scheduler_flags


def parse(*argv):
    opts, args = scheduler_flags().parse(list(argv))
    assert not args
    return opts


def test_leader_election_defaults_are_kube_schedulers():
    le = _leader_election(parse(), {})
    assert (le.lock_namespace, le.lock_name) == ("kube-system", "kube-scheduler")
    assert (le.lease_duration, le.renew_deadline, le.retry_period) == (15.0, 10.0, 2.0)
    assert le.identity


def test_flags_and_config_file():
    doc = {"leaderElection": {"leaderElect": True, "leaseDuration": "30s",
                              "renewDeadline": "20s", "retryPeriod": "4s",
                              "resourceName": "my-sched", "resourceNamespace": "ops"}}
    le = _leader_election(parse(), doc)
    assert (le.lock_namespace, le.lock_name, le.lease_duration, le.renew_deadline,
            le.retry_period) == ("ops", "my-sched", 30.0, 20.0, 4.0)
    le = _leader_election(parse("--leader-elect-lease-duration=1m",
                                "--leader-elect-resource-name=x"), doc)
    assert (le.lock_name, le.lease_duration, le.renew_deadline) == ("x", 60.0, 20.0)
    assert _leader_election(parse("--leader-elect=false"), doc) is None
    assert _leader_election(parse(), {"leaderElection": {"leaderElect": False}}) is None
    assert _leader_election(parse("--leader-elect=true"),
                            {"leaderElection": {"leaderElect": False}}) is not None
    le = _leader_election(parse("--lock-object-name=old", "--lock-object-namespace=o"), {})
    assert (le.lock_namespace, le.lock_name) == ("o", "old")


def test_kube_flag_spellings_parse():
    o = parse("--master=http://127.0.0.1:8080", "--kubeconfig", "/k", "--port=0",
              "--secure-port=-1", "--leader-elect-retry-period=500ms", "--kube-api-qps=50",
              "--bind-transport=client", "--batch-size=100")
    assert o.master == "http://127.0.0.1:8080" and o.kubeconfig == "/k"
    assert (o.port, o.secure_port, o.leader_elect_retry_period) == (0, -1, 0.5)
    assert (o.kube_api_qps, o.bind_transport, o.batch_size) == (50.0, "client", 100)
