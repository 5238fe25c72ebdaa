"""Two controller managers on one API server: one leads (holds the Lease and runs the
controllers), the other waits; kill -9 the leader and the other takes over within
the lease time, and at no point are pods created twice."""
from __future__ import annotations

import threading
import time

import pytest

from .cm_harness import Cluster, wait_until

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: le, namespace: default}
spec:
  replicas: %d
  selector: {app: le}
  template:
    metadata: {labels: {app: le}}
    spec: {containers: [{name: c, image: busybox}]}
"""


@pytest.fixture(scope="module")
def pair():
    c = Cluster()
    try:
        c.start_apiserver()
        flags = ["--leader-elect=true", f"--leader-elect-lease-duration={LEASE}s",
                 f"--leader-elect-renew-deadline={RENEW}s",
                 f"--leader-elect-retry-period={RETRY}s",
                 "--controllers=replicationcontroller,replicaset,garbagecollector"]
        c.start_cm(*flags, "--leader-elect-identity=cm-a", name="cm-a")
        wait_until(lambda: holder(c) == "cm-a", 10, what="cm-a leads")
        c.start_cm(*flags, "--leader-elect-identity=cm-b", name="cm-b")
        yield c
    finally:
        c.stop()


def holder(c: Cluster) -> str:
    r = c.kubectl("get", "lease", "kube-controller-manager", "-n", "kube-system", "-o",
                  "jsonpath={.spec.holderIdentity}", check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def leading(c: Cluster, i: int) -> bool:
    return 'leader_election_master_status{name="kube-controller-manager"} 1' in c.metrics(i)


class PodWatch:
    """Counts every pod ever created for the RC (ADDED events of a watch)."""

    def __init__(self, c: Cluster):
        self.c = c
        self.uids: set[str] = set()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from kubernetes import client, watch
        core = client.CoreV1Api(self.c.py())
        while not self._stop.is_set():
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, "default", label_selector="app=le",
                               timeout_seconds=1):
                self.uids.add(ev["object"].metadata.uid)
            w.stop()

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def active_pods(c: Cluster) -> list[dict]:
    return [p for p in c.kjson("get", "pods", "-l", "app=le")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def test_one_leader_takes_over_after_kill_9_without_duplicates(pair):
    c = pair
    a, b = c.cms
    assert leading(c, 0) and not leading(c, 1)
    with PodWatch(c) as w:
        c.kubectl("create", "-f", "-", input=RC % 6)
        wait_until(lambda: len(active_pods(c)) == 6, 15, what="6 pods")
        time.sleep(1.0)
        assert len(w.uids) == 6                      # the follower created nothing
        lease = c.kjson("get", "lease", "kube-controller-manager", "-n", "kube-system")
        transitions = lease["spec"].get("leaseTransitions", 0)
        assert lease["spec"]["leaseDurationSeconds"] == int(LEASE)

        a.kill9()
        killed = time.monotonic()
        wait_until(lambda: holder(c) == "cm-b", LEASE + 5, step=0.05, what="cm-b leads")
        took = time.monotonic() - killed
        assert took <= LEASE + 2 * RETRY * 1.2 + 0.5, took
        wait_until(lambda: leading(c, 1), 5, what="cm-b reports leadership")
        lease = c.kjson("get", "lease", "kube-controller-manager", "-n", "kube-system")
        assert lease["spec"]["leaseTransitions"] == transitions + 1

        # the new leader starts from the informers: no duplicates of existing pods
        time.sleep(1.5)
        assert len(active_pods(c)) == 6 and len(w.uids) == 6
        # and it acts: scale up, and replace a deleted pod
        c.kubectl("scale", "rc", "le", "--replicas=8")
        victim = active_pods(c)[0]["metadata"]["name"]
        c.kubectl("delete", "pod", victim)
        wait_until(lambda: len(active_pods(c)) == 8 and victim not in
                   {p["metadata"]["name"] for p in active_pods(c)}, 15, what="8 pods")
        time.sleep(1.0)
        assert len(active_pods(c)) == 8
        assert len(w.uids) == 6 + 2 + 1               # exactly what was asked for
    st = c.kjson("get", "rc", "le")["status"]
    assert st["replicas"] == 8


def test_clean_shutdown_releases_the_lease(pair):
    c = pair
    b = c.cms[1]
    assert holder(c) == "cm-b"
    c.start_cm("--leader-elect=true", f"--leader-elect-lease-duration={LEASE}s",
               f"--leader-elect-renew-deadline={RENEW}s",
               f"--leader-elect-retry-period={RETRY}s", "--controllers=replicationcontroller",
               "--leader-elect-identity=cm-c", name="cm-c")
    time.sleep(1.0)
    assert holder(c) == "cm-b"
    b.stop()                                         # SIGTERM: the lease is released
    stopped = time.monotonic()
    wait_until(lambda: holder(c) == "cm-c", LEASE + 3, step=0.05, what="cm-c leads")
    assert time.monotonic() - stopped < LEASE        # no need to wait for expiry
    assert b.proc.returncode == 0
