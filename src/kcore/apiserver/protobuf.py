"""Decoding Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf).

kubectl's typed clients (`kubectl create namespace|configmap|secret|...`) send
protobuf. A body is the magic `k8s\\0` and a runtime.Unknown envelope
(typeMeta, raw); raw is the object in the k8s.io/api generated.proto wire
format. Field numbers of the messages kcore decodes are tabled below; unknown
field numbers are skipped. Responses are always JSON (clients accept it).
"""
from __future__ import annotations

import base64

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


# message -> {field number: (json name, type)}; types: s i b bytes time q ios
# m:Msg rs rm:Msg ri map:s map:bytes map:q (bytes: base64 in JSON)
OM = {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 4: ("selfLink", "s"),
      5: ("uid", "s"), 6: ("resourceVersion", "s"), 7: ("generation", "i"),
      8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
      10: ("deletionGracePeriodSeconds", "i"), 11: ("labels", "map:s"),
      12: ("annotations", "map:s"), 13: ("ownerReferences", "rm:OwnerReference"),
      14: ("finalizers", "rs")}
MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": OM,
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"),
                       5: ("apiVersion", "s"), 6: ("controller", "b"),
                       7: ("blockOwnerDeletion", "b")},
    "LabelSelector": {1: ("matchLabels", "map:s"),
                      2: ("matchExpressions", "rm:LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "rs")},
    "Namespace": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:NamespaceSpec"),
                  3: ("status", "m:NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "rs")},
    "NamespaceStatus": {1: ("phase", "s")},
    "ConfigMap": {1: ("metadata", "m:ObjectMeta"), 2: ("data", "map:s"),
                  3: ("binaryData", "map:bytes"), 4: ("immutable", "b")},
    "Secret": {1: ("metadata", "m:ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "s"),
               4: ("stringData", "map:s"), 5: ("immutable", "b")},
    "ServiceAccount": {1: ("metadata", "m:ObjectMeta"), 2: ("secrets", "rm:ObjectReference"),
                       3: ("imagePullSecrets", "rm:LocalObjectReference"),
                       4: ("automountServiceAccountToken", "b")},
    "ObjectReference": {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"),
                        4: ("uid", "s"), 5: ("apiVersion", "s"), 6: ("resourceVersion", "s"),
                        7: ("fieldPath", "s")},
    "LocalObjectReference": {1: ("name", "s")},
    "ResourceQuota": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:ResourceQuotaSpec"),
                      3: ("status", "m:ResourceQuotaStatus")},
    "ResourceQuotaSpec": {1: ("hard", "map:q"), 2: ("scopes", "rs")},
    "ResourceQuotaStatus": {1: ("hard", "map:q"), 2: ("used", "map:q")},
    "Service": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:ServiceSpec"),
                3: ("status", "m:Empty")},
    "ServiceSpec": {1: ("ports", "rm:ServicePort"), 2: ("selector", "map:s"),
                    3: ("clusterIP", "s"), 4: ("type", "s"), 5: ("externalIPs", "rs"),
                    7: ("sessionAffinity", "s"), 8: ("loadBalancerIP", "s"),
                    9: ("loadBalancerSourceRanges", "rs"), 10: ("externalName", "s"),
                    11: ("externalTrafficPolicy", "s"), 12: ("healthCheckNodePort", "i"),
                    13: ("publishNotReadyAddresses", "b"), 17: ("ipFamilyPolicy", "s"),
                    18: ("clusterIPs", "rs"), 19: ("ipFamilies", "rs"),
                    20: ("allocateLoadBalancerNodePorts", "b"),
                    21: ("loadBalancerClass", "s"), 22: ("internalTrafficPolicy", "s")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"),
                    4: ("targetPort", "ios"), 5: ("nodePort", "i"), 6: ("appProtocol", "s")},
    "Deployment": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:DeploymentSpec"),
                   3: ("status", "m:Empty")},
    "DeploymentSpec": {1: ("replicas", "i"), 2: ("selector", "m:LabelSelector"),
                       3: ("template", "m:PodTemplateSpec"),
                       4: ("strategy", "m:DeploymentStrategy"), 5: ("minReadySeconds", "i"),
                       6: ("revisionHistoryLimit", "i"), 7: ("paused", "b"),
                       9: ("progressDeadlineSeconds", "i")},
    "DeploymentStrategy": {1: ("type", "s")},
    "PodTemplateSpec": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:PodSpec")},
    "PodSpec": {2: ("containers", "rm:Container"), 3: ("restartPolicy", "s"),
                4: ("terminationGracePeriodSeconds", "i"), 6: ("dnsPolicy", "s"),
                7: ("nodeSelector", "map:s"), 8: ("serviceAccountName", "s"),
                10: ("nodeName", "s"), 11: ("hostNetwork", "b"),
                19: ("schedulerName", "s"), 20: ("initContainers", "rm:Container")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "rs"),
                  4: ("args", "rs"), 5: ("workingDir", "s"), 6: ("ports", "rm:ContainerPort"),
                  7: ("env", "rm:EnvVar"), 8: ("resources", "m:ResourceRequirements"),
                  13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"),
                  16: ("stdin", "b"), 17: ("stdinOnce", "b"), 18: ("tty", "b"),
                  20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                      4: ("protocol", "s"), 5: ("hostIP", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", "map:q"), 2: ("requests", "map:q")},
    "CertificateSigningRequest": {1: ("metadata", "m:ObjectMeta"),
                                  2: ("spec", "m:CertificateSigningRequestSpec"),
                                  3: ("status", "m:CertificateSigningRequestStatus")},
    "CertificateSigningRequestSpec": {1: ("request", "bytes"), 2: ("username", "s"),
                                      3: ("uid", "s"), 4: ("groups", "rs"),
                                      5: ("usages", "rs"), 7: ("signerName", "s"),
                                      8: ("expirationSeconds", "i")},
    "CertificateSigningRequestStatus": {1: ("conditions",
                                            "rm:CertificateSigningRequestCondition"),
                                        2: ("certificate", "bytes")},
    "CertificateSigningRequestCondition": {1: ("type", "s"), 2: ("reason", "s"),
                                           3: ("message", "s"), 4: ("lastUpdateTime", "time"),
                                           5: ("lastTransitionTime", "time"),
                                           6: ("status", "s")},
    "Empty": {},
    # autoscaling/v1 (`kubectl autoscale`)
    "HorizontalPodAutoscaler": {1: ("metadata", "m:ObjectMeta"),
                                2: ("spec", "m:HorizontalPodAutoscalerSpec"),
                                3: ("status", "m:Empty")},
    "HorizontalPodAutoscalerSpec": {1: ("scaleTargetRef", "m:CrossVersionObjectReference"),
                                    2: ("minReplicas", "i"), 3: ("maxReplicas", "i"),
                                    4: ("targetCPUUtilizationPercentage", "i")},
    "CrossVersionObjectReference": {1: ("kind", "s"), 2: ("name", "s"),
                                    3: ("apiVersion", "s")},
}
TOP = {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "ResourceQuota", "Service",
       "Deployment", "HorizontalPodAutoscaler", "CertificateSigningRequest"}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b):
            raise ProtobufError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ProtobufError("varint too long")


def fields(b: bytes):
    """(number, wire type, value) for each field; value is int or bytes."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ProtobufError("truncated length-delimited field")
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")
        yield num, wt, v


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _str(v) -> str:
    if not isinstance(v, bytes):
        raise ProtobufError("expected a length-delimited field")
    return v.decode("utf-8")


def _time(v: bytes):
    secs = 0
    for n, _, x in fields(v):
        if n == 1:
            secs = _signed(x)
    if secs == 0:
        return None
    import time as _t
    return _t.strftime("%Y-%m-%dT%H:%M:%SZ", _t.gmtime(secs))


def _quantity(v: bytes) -> str:
    for n, _, x in fields(v):
        if n == 1:
            return _str(x)
    return "0"


def _ios(v: bytes):
    t, iv, sv = 0, 0, ""
    for n, _, x in fields(v):
        if n == 1:
            t = x
        elif n == 2:
            iv = _signed(x)
        elif n == 3:
            sv = _str(x)
    return sv if t == 1 else iv


def _map_entry(v: bytes, vtype: str):
    k, val = "", None
    for n, _, x in fields(v):
        if n == 1:
            k = _str(x)
        elif n == 2:
            val = x
    if vtype == "s":
        return k, _str(val or b"")
    if vtype == "bytes":
        return k, base64.b64encode(val or b"").decode()
    return k, _quantity(val or b"")


def decode_message(b: bytes, msg: str) -> dict:
    table = MESSAGES[msg]
    out: dict = {}
    for num, _, v in fields(b):
        spec = table.get(num)
        if spec is None:
            continue
        name, t = spec
        if t == "s":
            sv = _str(v)
            if sv:            # Go's zero value: absent in JSON (omitempty)
                out[name] = sv
        elif t == "i":
            out[name] = _signed(v) if isinstance(v, int) else 0
        elif t == "b":
            out[name] = bool(v)
        elif t == "bytes":
            if v:
                out[name] = base64.b64encode(v).decode()
        elif t == "time":
            out[name] = _time(v)
        elif t == "ios":
            out[name] = _ios(v)
        elif t == "rs":
            out.setdefault(name, []).append(_str(v))
        elif t.startswith("m:"):
            out[name] = decode_message(v, t[2:])
        elif t.startswith("rm:"):
            out.setdefault(name, []).append(decode_message(v, t[3:]))
        elif t.startswith("map:"):
            k, val = _map_entry(v, t[4:])
            out.setdefault(name, {})[k] = val
    return out


def decode(body: bytes) -> dict:
    """A protobuf request body as the JSON-shaped object."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for num, _, v in fields(body[len(MAGIC):]):
        if num == 1:
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    api_version = _str(v2)
                elif n2 == 2:
                    kind = _str(v2)
        elif num == 2:
            raw = v
    if kind not in TOP:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported; send JSON")
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(decode_message(raw, kind))
    return obj
