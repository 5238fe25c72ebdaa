"""The real kubectl against `kcore apiserver`, on the embedded store and on real etcd."""
from __future__ import annotations

import json
import subprocess
import time

import yaml

POD = """apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports: [{containerPort: 80}]
    env: [{name: A, value: "1"}, {name: B, value: "2"}]
"""

RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: frontend}
spec:
  replicas: 2
  selector: {app: frontend}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      containers: [{name: c, image: busybox}]
"""

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "registry/api:v1"}]
"""


def test_discovery_commands(cluster):
    out = cluster.kubectl("api-versions").stdout.split()
    assert {"v1", "apps/v1", "autoscaling/v1", "coordination.k8s.io/v1"} <= set(out)
    res = cluster.kubectl("api-resources").stdout
    for name, short in (("pods", "po"), ("replicationcontrollers", "rc"),
                        ("deployments", "deploy"), ("leases", ""), ("nodes", "no")):
        line = next(ln for ln in res.splitlines() if ln.startswith(name + " "))
        assert short in line
    assert cluster.kubectl("get", "--raw", "/healthz/etcd").stdout.strip() == "ok"
    ns = cluster.kubectl("get", "ns").stdout
    for n in ("default", "kube-system", "kube-public"):
        assert n in ns
    svc = cluster.kubectl("get", "svc", "kubernetes", "-o", "json").stdout
    assert json.loads(svc)["spec"]["clusterIP"] == "10.0.0.1"
    assert "kubernetes" in cluster.kubectl("get", "endpoints").stdout


def test_apply_lifecycle(cluster):
    ns = "apply-" + cluster.backend
    cluster.kubectl("create", "namespace", ns)
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)
    assert "pod/web created" in k("apply", "-f", "-", input=POD).stdout
    assert "pod/web unchanged" in k("apply", "-f", "-", input=POD).stdout
    edited = POD.replace("nginx:1.25", "nginx:1.26")
    assert "pod/web configured" in k("apply", "-f", "-", input=edited).stdout
    pod = json.loads(k("get", "pod", "web", "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
    assert "pod/web unchanged" in k("apply", "-f", "-", input=edited).stdout
    # a strategic merge patch with $setElementOrder and deleted list items
    dep = DEPLOY.replace("containers: [{name: api, image: \"registry/api:v1\"}]",
                         'containers: [{name: api, image: "registry/api:v1", env: '
                         '[{name: A, value: "1"}, {name: B, value: "2"}]}, '
                         '{name: side, image: "side:1"}]')
    assert "deployment.apps/api created" in k("apply", "-f", "-", input=dep).stdout
    assert "unchanged" in k("apply", "-f", "-", input=dep).stdout
    dep2 = dep.replace('env: [{name: A, value: "1"}, {name: B, value: "2"}]',
                       'env: [{name: B, value: "3"}, {name: C, value: "4"}]').replace(
        ', {name: side, image: "side:1"}', "")
    assert "deployment.apps/api configured" in k("apply", "-f", "-", input=dep2).stdout
    d = json.loads(k("get", "deploy", "api", "-o", "json").stdout)
    cs = d["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["api"]
    assert cs[0]["env"] == [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert d["metadata"]["generation"] == 2
    assert "unchanged" in k("apply", "-f", "-", input=dep2).stdout
    # server-side apply: create-or-merge
    ssa = POD.replace("name: web", "name: web-ssa")
    assert "serverside-applied" in k("apply", "--server-side", "-f", "-", input=ssa).stdout
    assert "serverside-applied" in k("apply", "--server-side", "-f", "-",
                                     input=ssa.replace("app: web", "app: web2")).stdout
    got = yaml.safe_load(k("get", "pod", "web-ssa", "-o", "yaml").stdout)
    assert got["metadata"]["labels"] == {"app": "web2"}
    # label / annotate / -o wide / describe
    k("label", "pod", "web", "tier=frontend")
    k("annotate", "pod", "web", "note=hello")
    wide = k("get", "pods", "-o", "wide").stdout
    head = wide.splitlines()[0].split()
    assert head[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in head
    assert "web " in wide and "Pending" in wide
    assert "tier=frontend" in k("get", "pod", "web", "--show-labels").stdout
    k("label", "pod", "web", "tier-")
    assert "tier" not in k("get", "pod", "web", "--show-labels").stdout
    d = k("describe", "pod", "web").stdout
    assert "nginx:1.26" in d and "note: hello" in d
    # delete
    assert 'pod "web" deleted' in k("delete", "pod", "web").stdout
    p = k("get", "pod", "web", check=False)
    assert p.returncode == 1 and 'Error from server (NotFound): pods "web" not found' in p.stderr


def test_create_errors(cluster):
    cluster.kubectl("create", "-f", "-", input=RC)
    p = cluster.kubectl("create", "-f", "-", input=RC, check=False)
    assert "Error from server (AlreadyExists)" in p.stderr
    assert 'replicationcontrollers "frontend" already exists' in p.stderr
    bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {containers: [{name: c}]}\n"
    p = cluster.kubectl("create", "-f", "-", input=bad, check=False)
    assert 'The Pod "Web_1" is invalid' in p.stderr
    assert "metadata.name: Invalid value" in p.stderr
    assert "spec.containers[0].image: Required value" in p.stderr
    strict = POD.replace("name: web", "name: strict").replace("ports:", "portz:")
    p = cluster.kubectl("create", "-f", "-", input=strict, check=False)
    assert p.returncode != 0
    assert 'strict decoding error: unknown field "spec.containers[0].portz"' in p.stderr
    p = cluster.kubectl("get", "rc", "nothere", check=False)
    assert 'replicationcontrollers "nothere" not found' in p.stderr


def test_scale_and_get_all(cluster):
    cluster.kubectl("apply", "-f", "-", input=RC.replace("frontend", "scaled"))
    assert "scaled" in cluster.kubectl("scale", "rc", "scaled", "--replicas=3").stdout
    rc = json.loads(cluster.kubectl("get", "rc", "scaled", "-o", "json").stdout)
    assert rc["spec"]["replicas"] == 3 and rc["metadata"]["generation"] == 2
    cluster.kubectl("apply", "-f", "-", input=DEPLOY)
    cluster.kubectl("scale", "deployment", "api", "--replicas=5")
    out = cluster.kubectl("get", "all").stdout
    assert "replicationcontroller/scaled" in out and "deployment.apps/api" in out
    assert "service/kubernetes" in out
    wide = cluster.kubectl("get", "rc", "-o", "wide").stdout
    assert "CONTAINERS" in wide and "busybox" in wide and "app=scaled" in wide


def test_explain_and_output_formats(cluster):
    ex = cluster.kubectl("explain", "pods.spec.containers").stdout
    assert "KIND:" in ex and "Pod" in ex and "image" in ex
    ex = cluster.kubectl("explain", "deployment.spec.replicas").stdout
    assert "replicas" in ex and "integer" in ex
    svc = yaml.safe_load(cluster.kubectl("get", "svc", "kubernetes", "-o", "yaml").stdout)
    assert svc["kind"] == "Service" and svc["spec"]["ports"][0]["port"] == 443
    nodes = cluster.kubectl("get", "nodes").stdout + cluster.kubectl("get", "nodes").stderr
    assert "No resources found" in nodes


def test_get_watch_events(cluster):
    ns = "watch-" + cluster.backend
    cluster.kubectl("create", "namespace", ns)
    proc = subprocess.Popen(
        [*_kubectl_base(cluster), "-n", ns, "get", "pods", "-w", "--output-watch-events",
         "--request-timeout=8s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        cluster.kubectl("-n", ns, "run", "w1", "--image=busybox")
        cluster.kubectl("-n", ns, "label", "pod", "w1", "x=y")
        cluster.kubectl("-n", ns, "delete", "pod", "w1")
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip()]
    assert events[:3] == ["ADDED", "MODIFIED", "DELETED"], out


def _kubectl_base(cluster):
    import os
    return [os.environ.get("KUBECTL", "kubectl"), f"--server={cluster.url}",
            f"--cache-dir={cluster.cache_dir}"]


def test_conflict_message(cluster):
    cluster.kubectl("create", "configmap", "cm1", "--from-literal=a=b")
    cm = json.loads(cluster.kubectl("get", "cm", "cm1", "-o", "json").stdout)
    cm["data"]["a"] = "c"
    cluster.kubectl("replace", "-f", "-", input=json.dumps(cm))
    cm["data"]["a"] = "d"          # stale resourceVersion
    p = cluster.kubectl("replace", "-f", "-", input=json.dumps(cm), check=False)
    assert "Error from server (Conflict)" in p.stderr
    assert "the object has been modified" in p.stderr
