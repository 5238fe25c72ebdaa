"""apps/v1: Deployments and ReplicaSets (storage, defaulting, validation, /scale)."""
from __future__ import annotations

from kcore.api import errors as E
from kcore.api import labels as L
from kcore.api import validation as V
from kcore.api.core import _g, _meta_fields, default_template, validate_template
from kcore.api.errors import FieldError
from kcore.api.kinds import Kind, register
from kcore.api.schema import define

A = "io.k8s.api.apps.v1"
LS = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
PT = "io.k8s.api.core.v1.PodTemplateSpec"
COND = "io.k8s.apimachinery.pkg.apis.meta.v1.Condition"

define(A, "RollingUpdateDeployment", "Spec to control the desired behavior of rolling update.",
       {"maxUnavailable": "ios", "maxSurge": "ios"})
define(A, "DeploymentStrategy", "DeploymentStrategy describes how to replace existing pods with "
       "new ones.", {"type": ("s", "Type of deployment. Can be \"Recreate\" or "
                              "\"RollingUpdate\"."),
                     "rollingUpdate": "RollingUpdateDeployment"})
define(A, "DeploymentSpec", "DeploymentSpec is the specification of the desired behavior of the "
       "Deployment.", {
           "replicas": ("i", "Number of desired pods."),
           "selector": (f"{LS}!", "Label selector for pods."),
           "template": (f"{PT}!", "Template describes the pods that will be created."),
           "strategy": ("DeploymentStrategy%rk", "The deployment strategy to use to replace "
                        "existing pods with new ones."),
           "minReadySeconds": "i", "revisionHistoryLimit": "i", "paused": "b",
           "progressDeadlineSeconds": "i"})
define(A, "DeploymentCondition", "DeploymentCondition describes the state of a deployment at a "
       "certain point.", {"type": "s!", "status": "s!", "lastUpdateTime": "t",
                          "lastTransitionTime": "t", "reason": "s", "message": "s"})
define(A, "DeploymentStatus", "DeploymentStatus is the most recently observed status of the "
       "Deployment.", {"observedGeneration": "l", "replicas": "i", "updatedReplicas": "i",
                       "readyReplicas": "i", "availableReplicas": "i",
                       "unavailableReplicas": "i", "terminatingReplicas": "i",
                       "conditions": "[DeploymentCondition]@type", "collisionCount": "i"})
define(A, "Deployment", "Deployment enables declarative updates for Pods and ReplicaSets.", {
    "apiVersion": "s", "kind": "s", "metadata": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "spec": ("DeploymentSpec", "Specification of the desired behavior of the Deployment."),
    "status": "DeploymentStatus"}, gvk=("apps", "v1", "Deployment"))
define(A, "ReplicaSetSpec", "ReplicaSetSpec is the specification of a ReplicaSet.", {
    "replicas": "i", "minReadySeconds": "i", "selector": f"{LS}!", "template": PT})
define(A, "ReplicaSetCondition", "ReplicaSetCondition describes the state of a replica set at a "
       "certain point.", {"type": "s!", "status": "s!", "lastTransitionTime": "t",
                          "reason": "s", "message": "s"})
define(A, "ReplicaSetStatus", "ReplicaSetStatus represents the current status of a ReplicaSet.", {
    "replicas": "i!", "fullyLabeledReplicas": "i", "readyReplicas": "i",
    "availableReplicas": "i", "terminatingReplicas": "i", "observedGeneration": "l",
    "conditions": "[ReplicaSetCondition]@type"})
define(A, "ReplicaSet", "ReplicaSet ensures that a specified number of pod replicas are running "
       "at any given time.", {
           "apiVersion": "s", "kind": "s",
           "metadata": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
           "spec": "ReplicaSetSpec", "status": "ReplicaSetStatus"},
       gvk=("apps", "v1", "ReplicaSet"))


def default_deployment(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    st = spec.setdefault("strategy", {})
    if isinstance(st, dict):
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    if isinstance(spec.get("template"), dict):
        default_template(spec["template"])


def default_replicaset(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    if isinstance(spec.get("template"), dict):
        default_template(spec["template"])
    obj.setdefault("status", {}).setdefault("replicas", 0)


def _selector(spec: dict, errs: list[FieldError]):
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(E.invalid("spec.selector", sel or {}, "empty selector is invalid for "
                              "deployment") if isinstance(sel, dict) else
                    E.required("spec.selector", ""))
        return None
    try:
        return L.from_label_selector(sel)
    except L.SelectorError as e:
        errs.append(E.invalid("spec.selector", sel, str(e)))
        return None


def _validate_workload(obj: dict, old: dict | None, kind: str) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    spec = obj.get("spec") or {}
    reqs = _selector(spec, errs)
    errs += V.non_negative(spec.get("replicas"), "spec.replicas")
    errs += V.non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if spec.get("template") is None:
        if kind == "Deployment":
            errs.append(E.required("spec.template", ""))
    else:
        errs += validate_template(spec["template"], "spec.template", reqs, ["Always"])
    if kind == "Deployment":
        st = spec.get("strategy") or {}
        if st.get("type") not in (None, "RollingUpdate", "Recreate"):
            errs.append(E.unsupported("spec.strategy.type", st.get("type"),
                                      ["Recreate", "RollingUpdate"]))
        if st.get("type") == "Recreate" and st.get("rollingUpdate"):
            errs.append(E.forbidden("spec.strategy.rollingUpdate", "may not be specified when "
                                    "strategy `type` is 'Recreate'"))
    if old is not None:
        osel = (old.get("spec") or {}).get("selector")
        if osel != spec.get("selector"):
            errs.append(E.invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return errs


def validate_deployment(obj, old):
    return _validate_workload(obj, old, "Deployment")


def validate_replicaset(obj, old):
    return _validate_workload(obj, old, "ReplicaSet")


def validate_status(obj, old):
    errs = []
    for k, v in (obj.get("status") or {}).items():
        if k.endswith("eplicas"):
            errs += V.non_negative(v, f"status.{k}")
    return errs


register(Kind("apps", "v1", "Deployment", "deployments", "deployment", True, "deployments",
              f"{A}.Deployment", ("deploy",), ("all",), subresources=("status", "scale"),
              default=default_deployment, validate=validate_deployment,
              validate_status=validate_status, has_status=True, generation=True,
              scale=("spec.replicas", "status.replicas"), field_labels=_meta_fields()))
register(Kind("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, "replicasets",
              f"{A}.ReplicaSet", ("rs",), ("all",), subresources=("status", "scale"),
              default=default_replicaset, validate=validate_replicaset,
              validate_status=validate_status, has_status=True, generation=True,
              scale=("spec.replicas", "status.replicas"),
              field_labels=_meta_fields({"status.replicas": _g("status.replicas")})))
