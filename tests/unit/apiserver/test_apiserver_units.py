"""Selectors, validation, quantities, table printers, protobuf bodies, schema decoding."""
from __future__ import annotations

import pytest

from kcore.api import core, kinds, labels, schema
from kcore.api.quantity import format_quantity, parse_quantity
from kcore.apiserver import protobuf, tables

kinds.load()


def test_label_selector_parse_and_match():
    r = labels.parse_label_selector("app=web,tier in (a, b),!canary,env!=prod,has")
    lab = {"app": "web", "tier": "b", "env": "dev", "has": ""}
    assert labels.matches(r, lab)
    assert not labels.matches(r, {**lab, "canary": "1"})
    assert not labels.matches(r, {**lab, "tier": "c"})
    assert not labels.matches(r, {**lab, "env": "prod"})
    assert labels.matches(labels.parse_label_selector(""), {})
    with pytest.raises(labels.SelectorError):
        labels.parse_label_selector("a in (")
    r = labels.from_label_selector({"matchLabels": {"a": "1"}, "matchExpressions": [
        {"key": "b", "operator": "NotIn", "values": ["x"]}]})
    assert labels.matches(r, {"a": "1"}) and not labels.matches(r, {"a": "1", "b": "x"})
    assert labels.format_selector(r) == "a=1,b notin (x)"


def test_field_selector():
    r = labels.parse_field_selector("metadata.name=x,status.phase!=Running")
    assert [(x.key, x.op, x.values) for x in r] == [("metadata.name", "=", ("x",)),
                                                     ("status.phase", "!=", ("Running",))]


def _pod(**spec):
    return {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


def test_pod_validation_messages():
    assert core.validate_pod(_pod(), None) == []
    errs = core.validate_pod({"metadata": {"name": "Bad_"}, "spec": {"containers": []}}, None)
    text = [str(e) for e in errs]
    assert any(t.startswith('metadata.name: Invalid value: "Bad_": a lowercase RFC 1123')
               for t in text)
    assert "metadata.namespace: Required value" in text
    assert "spec.containers: Required value" in text
    errs = core.validate_pod(_pod(restartPolicy="Sometimes"), None)
    assert str(errs[0]) == ('spec.restartPolicy: Unsupported value: "Sometimes": supported '
                            'values: "Always", "OnFailure", "Never"')
    old = _pod()
    new = _pod()
    new["spec"]["containers"][0]["image"] = "j"
    assert core.validate_pod(new, old) == []
    new["spec"]["containers"][0]["name"] = "d"
    assert "pod updates may not change fields" in str(core.validate_pod(new, old)[0])


def test_service_and_rc_validation():
    svc = {"metadata": {"name": "1svc", "namespace": "d"}, "spec": {"ports": [{"port": 0}]}}
    text = [str(e) for e in core.validate_service(svc, None)]
    assert any("a DNS-1035 label" in t for t in text)
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in text
    rc = {"metadata": {"name": "r", "namespace": "d"}, "spec": {
        "selector": {"a": "b"}, "template": {"metadata": {"labels": {"a": "c"}},
                                             "spec": {"containers": [{"name": "c",
                                                                      "image": "i"}]}}}}
    text = [str(e) for e in core.validate_rc(rc, None)]
    assert any("`selector` does not match template `labels`" in t for t in text)


def test_quantities():
    assert parse_quantity("100m") * 10 == 1
    assert parse_quantity("1Gi") == 2**30
    assert format_quantity(parse_quantity("100m") + parse_quantity("200m")) == "300m"
    assert format_quantity(parse_quantity("128Mi") * 2, binary=True) == "256Mi"
    assert format_quantity(parse_quantity("2")) == "2"
    assert format_quantity(parse_quantity("1500")) == "1500"
    assert format_quantity(parse_quantity("2000")) == "2k"


def test_schema_decode_prunes_and_types():
    unknown: list[str] = []
    obj = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "portz": 1}],
                                               "bogus": True}}
    schema.decode(obj, "io.k8s.api.core.v1.Pod", unknown)
    assert unknown == ["spec.containers[0].portz", "spec.bogus"]
    assert obj["spec"] == {"containers": [{"name": "c"}]}
    with pytest.raises(schema.DecodeError, match="cannot unmarshal string"):
        schema.decode({"spec": {"activeDeadlineSeconds": "x"}}, "io.k8s.api.core.v1.Pod", [])


def test_pod_table_status_column():
    pod = {"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
           "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
           "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
               {"name": "b", "ready": False, "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    t = tables.table("pods", [pod])
    cells = t["rows"][0]["cells"]
    assert cells[:4] == ["p", "1/2", "CrashLoopBackOff", "3"]
    assert cells[5:7] == ["10.1.0.5", "n1"]
    assert [c["name"] for c in t["columnDefinitions"] if c["priority"] == 0] == \
        ["Name", "Ready", "Status", "Restarts", "Age"]
    pod["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    assert tables.table("pods", [pod])["rows"][0]["cells"][2] == "Terminating"


def test_node_and_service_tables():
    node = {"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/master": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.4"}}}
    assert tables.table("nodes", [node])["rows"][0]["cells"][:5] == [
        "n", "Ready,SchedulingDisabled", "master", "<unknown>", "v1.32.4"]
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.9",
                                               "ports": [{"port": 80, "nodePort": 30001,
                                                          "protocol": "TCP"}]}}
    assert tables.table("services", [svc])["rows"][0]["cells"][:5] == [
        "s", "NodePort", "10.0.0.9", "<none>", "80:30001/TCP"]


def _pb_field(num: int, payload: bytes) -> bytes:
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_body_decodes():
    meta = _pb_field(1, b"cm1") + _pb_field(11, _pb_field(1, b"k") + _pb_field(2, b"v"))
    raw = _pb_field(1, meta) + _pb_field(2, _pb_field(1, b"a") + _pb_field(2, b"b"))
    tm = _pb_field(1, b"v1") + _pb_field(2, b"ConfigMap")
    body = protobuf.MAGIC + _pb_field(1, tm) + _pb_field(2, raw)
    assert protobuf.decode(body) == {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "cm1", "labels": {"k": "v"}},
                                     "data": {"a": "b"}}
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"k8s\x00\x0a\xff")
