"""autoscaling/v1: the Scale subresource type and HorizontalPodAutoscalers (stored)."""
from __future__ import annotations

from kcore.api import errors as E
from kcore.api import validation as V
from kcore.api.core import _meta_fields
from kcore.api.kinds import Kind, register
from kcore.api.schema import define

AS = "io.k8s.api.autoscaling.v1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

define(AS, "ScaleSpec", "ScaleSpec describes the attributes of a scale subresource.",
       {"replicas": ("i", "replicas is the desired number of instances for the scaled "
                     "object.")})
define(AS, "ScaleStatus", "ScaleStatus represents the current status of a scale subresource.",
       {"replicas": "i!", "selector": "s"})
define(AS, "Scale", "Scale represents a scaling request for a resource.", {
    "apiVersion": "s", "kind": "s", "metadata": OM, "spec": "ScaleSpec",
    "status": "ScaleStatus"}, gvk=("autoscaling", "v1", "Scale"))
define(AS, "CrossVersionObjectReference", "CrossVersionObjectReference contains enough "
       "information to let you identify the referred resource.",
       {"kind": "s!", "name": "s!", "apiVersion": "s"})
define(AS, "HorizontalPodAutoscalerSpec", "specification of a horizontal pod autoscaler.", {
    "scaleTargetRef": "CrossVersionObjectReference!", "minReplicas": "i", "maxReplicas": "i!",
    "targetCPUUtilizationPercentage": "i"})
define(AS, "HorizontalPodAutoscalerStatus", "current status of a horizontal pod autoscaler", {
    "observedGeneration": "l", "lastScaleTime": "t", "currentReplicas": "i!",
    "desiredReplicas": "i!", "currentCPUUtilizationPercentage": "i"})
define(AS, "HorizontalPodAutoscaler", "configuration of a horizontal pod autoscaler.", {
    "apiVersion": "s", "kind": "s", "metadata": OM, "spec": "HorizontalPodAutoscalerSpec",
    "status": "HorizontalPodAutoscalerStatus"},
    gvk=("autoscaling", "v1", "HorizontalPodAutoscaler"))


def default_hpa(obj):
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("minReplicas", 1)


def validate_hpa(obj, old):
    errs = V.object_meta(obj, True, "subdomain", old)
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        errs.append(E.required("spec.scaleTargetRef.kind", ""))
    if not ref.get("name"):
        errs.append(E.required("spec.scaleTargetRef.name", ""))
    mx, mn = spec.get("maxReplicas"), spec.get("minReplicas", 1)
    if not isinstance(mx, int) or mx < 1:
        errs.append(E.invalid("spec.maxReplicas", mx, "must be greater than or equal to 1"))
    elif isinstance(mn, int) and mn > mx:
        errs.append(E.invalid("spec.maxReplicas", mx, "must be greater than or equal to "
                              "`minReplicas`"))
    return errs


register(Kind("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
              "horizontalpodautoscaler", True, "horizontalpodautoscalers",
              f"{AS}.HorizontalPodAutoscaler", ("hpa",), ("all",), subresources=("status",),
              default=default_hpa, validate=validate_hpa, has_status=True, generation=True,
              field_labels=_meta_fields()))
