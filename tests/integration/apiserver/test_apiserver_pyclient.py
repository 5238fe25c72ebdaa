"""The official `kubernetes` Python client against `kcore apiserver`: typed CRUD and watch."""
from __future__ import annotations

import json
import threading
import time

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture(scope="module")
def api(cluster):
    cfg = client.Configuration(host=cluster.url)
    c = client.ApiClient(cfg)
    yield c
    c.close()


def _pod(name: str, **labels) -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or None),
                        spec=client.V1PodSpec(containers=[client.V1Container(
                            name="c", image="busybox:1.36",
                            resources=client.V1ResourceRequirements(
                                requests={"cpu": "100m", "memory": "64Mi"}))]))


def test_pods_crud_and_watch(api):
    v1 = client.CoreV1Api(api)
    ns = "py"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    p = v1.create_namespaced_pod(ns, _pod("p1", app="a"))
    assert p.status.phase == "Pending" and p.metadata.uid and p.spec.service_account_name == \
        "default"
    assert int(p.metadata.resource_version) > 0
    got = v1.read_namespaced_pod("p1", ns)
    assert got.spec.containers[0].resources.requests["cpu"] == "100m"
    assert got.status.qos_class == "Burstable"
    lst = v1.list_namespaced_pod(ns, label_selector="app=a")
    assert [x.metadata.name for x in lst.items] == ["p1"]
    assert v1.list_namespaced_pod(ns, label_selector="app=b").items == []
    assert v1.list_namespaced_pod(ns, field_selector="status.phase=Pending").items
    # watch from the list's resourceVersion sees later changes, in order
    events = []

    def watcher():
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=lst.metadata
                           .resource_version, timeout_seconds=5):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 3:
                w.stop()
    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.5)
    v1.create_namespaced_pod(ns, _pod("p2"))
    v1.patch_namespaced_pod("p2", ns, {"metadata": {"labels": {"x": "y"}}})
    deleted = v1.delete_namespaced_pod("p2", ns)
    assert deleted.metadata.name == "p2"
    t.join(10)
    assert events == [("ADDED", "p2"), ("MODIFIED", "p2"), ("DELETED", "p2")]
    # status and binding
    b = client.V1Binding(metadata=client.V1ObjectMeta(name="p1"),
                         target=client.V1ObjectReference(kind="Node", name="node-1"))
    v1.create_namespaced_binding(ns, b, _preload_content=False)
    bound = v1.read_namespaced_pod("p1", ns)
    assert bound.spec.node_name == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True"
               for c in bound.status.conditions)
    bound.status.phase = "Running"
    bound.status.container_statuses = [client.V1ContainerStatus(
        name="c", ready=True, restart_count=0, image="busybox:1.36", image_id="x",
        state=client.V1ContainerState(running=client.V1ContainerStateRunning(
            started_at=None)))]
    st = v1.replace_namespaced_pod_status("p1", ns, bound)
    assert st.status.phase == "Running" and st.status.container_statuses[0].ready
    # a bound pod is deleted gracefully; grace 0 removes it
    d = v1.delete_namespaced_pod("p1", ns)
    assert d.metadata.deletion_timestamp is not None
    v1.delete_namespaced_pod("p1", ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("p1", ns)
    assert e.value.status == 404


def test_services_and_rcs(api):
    v1 = client.CoreV1Api(api)
    svc = v1.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="websvc"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "web"},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)])))
    assert svc.spec.cluster_ip.startswith("10.0.0.") and svc.spec.cluster_ip != "10.0.0.1"
    assert 30000 <= svc.spec.ports[0].node_port <= 32767
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_service("default", client.V1Service(
            metadata=client.V1ObjectMeta(name="dup-ip"),
            spec=client.V1ServiceSpec(cluster_ip=svc.spec.cluster_ip,
                                      ports=[client.V1ServicePort(port=80)])))
    assert e.value.status == 422 and "already allocated" in e.value.body
    rc = v1.create_namespaced_replication_controller("default", client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name="rc1"),
        spec=client.V1ReplicationControllerSpec(
            replicas=1, selector={"app": "rc1"},
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "rc1"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                     image="x")])))))
    assert rc.spec.replicas == 1 and rc.metadata.generation == 1
    sc = v1.patch_namespaced_replication_controller_scale("rc1", "default",
                                                          {"spec": {"replicas": 4}})
    assert sc.spec.replicas == 4 and sc.status.replicas == 0
    rc = v1.read_namespaced_replication_controller("rc1", "default")
    assert rc.spec.replicas == 4 and rc.metadata.generation == 2
    rc.spec.replicas = 2
    rc2 = v1.replace_namespaced_replication_controller("rc1", "default", rc)
    rc.spec.replicas = 3    # stale resourceVersion now
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_replication_controller("rc1", "default", rc)
    assert e.value.status == 409
    assert rc2.spec.replicas == 2
    v1.delete_namespaced_replication_controller("rc1", "default")
    v1.delete_namespaced_service("websvc", "default")


def test_leases(api):
    co = client.CoordinationV1Api(api)
    lease = co.create_namespaced_lease("kube-system", client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15)))
    lease.spec.holder_identity = "b"
    import datetime
    now = datetime.datetime.now(datetime.UTC)
    lease.spec.renew_time = now
    got = co.replace_namespaced_lease("leader", "kube-system", lease)
    assert got.spec.holder_identity == "b"
    assert abs((got.spec.renew_time - now).total_seconds()) < 1
    names = [x.metadata.name for x in co.list_namespaced_lease("kube-system").items]
    assert "leader" in names
    w = watch.Watch()
    seen = []
    for ev in w.stream(co.list_namespaced_lease, "kube-system", timeout_seconds=1):
        seen.append(ev["object"].spec.holder_identity)
    assert "b" in seen
    co.delete_namespaced_lease("leader", "kube-system")


def test_quota_and_limits(api):
    v1 = client.CoreV1Api(api)
    ns = "quota"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    v1.create_namespaced_limit_range(ns, client.V1LimitRange(
        metadata=client.V1ObjectMeta(name="lr"),
        spec=client.V1LimitRangeSpec(limits=[client.V1LimitRangeItem(
            type="Container", default={"cpu": "200m"}, default_request={"cpu": "100m"})])))
    q = v1.create_namespaced_resource_quota(ns, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="q"),
        spec=client.V1ResourceQuotaSpec(hard={"pods": "2", "requests.cpu": "1"})))
    assert q.status.used == {"pods": "0", "requests.cpu": "0"}
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="a"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="x")]))
    made = v1.create_namespaced_pod(ns, pod)
    assert made.spec.containers[0].resources.limits == {"cpu": "200m"}
    assert made.spec.containers[0].resources.requests == {"cpu": "100m"}
    pod.metadata.name = "b"
    v1.create_namespaced_pod(ns, pod)
    used = v1.read_namespaced_resource_quota("q", ns).status.used
    assert used == {"pods": "2", "requests.cpu": "200m"}
    pod.metadata.name = "c"
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(ns, pod)
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == (
        'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
        'limited: pods=2')
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod("no-such-ns", pod)
    assert e.value.status == 404
