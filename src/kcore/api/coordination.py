"""coordination.k8s.io/v1: Leases (leader election and node heartbeats)."""
from __future__ import annotations

from kcore.api import errors as E
from kcore.api import validation as V
from kcore.api.core import _meta_fields
from kcore.api.kinds import Kind, register
from kcore.api.schema import define

CO = "io.k8s.api.coordination.v1"

define(CO, "LeaseSpec", "LeaseSpec is a specification of a Lease.", {
    "holderIdentity": ("s", "holderIdentity contains the identity of the holder of a current "
                       "lease."),
    "leaseDurationSeconds": ("i", "leaseDurationSeconds is a duration that candidates for a "
                             "lease need to wait to force acquire it."),
    "acquireTime": "mt", "renewTime": "mt", "leaseTransitions": "i", "strategy": "s",
    "preferredHolder": "s"})
define(CO, "Lease", "Lease defines a lease concept.", {
    "apiVersion": "s", "kind": "s", "metadata": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "spec": ("LeaseSpec", "spec contains the specification of the Lease.")},
    gvk=("coordination.k8s.io", "v1", "Lease"))


def validate_lease(obj, old):
    errs = V.object_meta(obj, True, "subdomain", old)
    spec = obj.get("spec") or {}
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        errs.append(E.invalid("spec.leaseDurationSeconds", d, "must be greater than 0"))
    errs += V.non_negative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return errs


register(Kind("coordination.k8s.io", "v1", "Lease", "leases", "lease", True, "leases",
              f"{CO}.Lease", (), (), validate=validate_lease, field_labels=_meta_fields()))
