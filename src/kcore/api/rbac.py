"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Schemas, validation and registration; evaluation of the rules lives in
kcore.apiserver.rbac. Names are path segments (`system:discovery` is valid),
as kube validates them.
"""
from __future__ import annotations

from kcore.api import errors as E
from kcore.api import validation as V
from kcore.api.core import _meta_fields
from kcore.api.kinds import Kind, register
from kcore.api.schema import define

R = "io.k8s.api.rbac.v1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LS = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
GROUP = "rbac.authorization.k8s.io"

define(R, "PolicyRule", "PolicyRule holds information that describes a policy rule, but does not "
       "contain information about who the rule applies to or which namespace the rule applies "
       "to.", {
           "verbs": ("[s]!", "Verbs is a list of Verbs that apply to ALL the ResourceKinds "
                     "contained in this rule. '*' represents all verbs."),
           "apiGroups": ("[s]", "APIGroups is the name of the APIGroup that contains the "
                         "resources. \"\" represents the core API group and \"*\" represents "
                         "all API groups."),
           "resources": ("[s]", "Resources is a list of resources this rule applies to. '*' "
                         "represents all resources."),
           "resourceNames": ("[s]", "ResourceNames is an optional white list of names that "
                             "the rule applies to. An empty set means that everything is "
                             "allowed."),
           "nonResourceURLs": ("[s]", "NonResourceURLs is a set of partial urls that a user "
                               "should have access to. *s are allowed, but only as the full, "
                               "final step in the path.")})
define(R, "AggregationRule", "AggregationRule describes how to locate ClusterRoles to aggregate "
       "into the ClusterRole", {
           "clusterRoleSelectors": (f"[{LS}]", "ClusterRoleSelectors holds a list of selectors "
                                    "which will be used to find ClusterRoles and create the "
                                    "rules.")})
define(R, "Subject", "Subject contains a reference to the object or user identities a role "
       "binding applies to.", {
           "kind": ("s!", "Kind of object being referenced. Values defined by this API group "
                    "are \"User\", \"Group\", and \"ServiceAccount\"."),
           "apiGroup": ("s", "APIGroup holds the API group of the referenced subject."),
           "name": ("s!", "Name of the object being referenced."),
           "namespace": ("s", "Namespace of the referenced object.")})
define(R, "RoleRef", "RoleRef contains information that points to the role being used", {
    "apiGroup": ("s!", "APIGroup is the group for the resource being referenced"),
    "kind": ("s!", "Kind is the type of resource being referenced"),
    "name": ("s!", "Name is the name of resource being referenced")})
define(R, "Role", "Role is a namespaced, logical grouping of PolicyRules that can be referenced "
       "as a unit by a RoleBinding.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "rules": ("[PolicyRule]", "Rules holds all the PolicyRules for this Role")},
       gvk=(GROUP, "v1", "Role"))
define(R, "ClusterRole", "ClusterRole is a cluster level, logical grouping of PolicyRules that "
       "can be referenced as a unit by a RoleBinding or ClusterRoleBinding.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "rules": ("[PolicyRule]", "Rules holds all the PolicyRules for this ClusterRole"),
           "aggregationRule": ("AggregationRule", "AggregationRule is an optional field that "
                               "describes how to build the Rules for this ClusterRole.")},
       gvk=(GROUP, "v1", "ClusterRole"))
define(R, "RoleBinding", "RoleBinding references a role, but does not contain it.", {
    "apiVersion": "s", "kind": "s", "metadata": OM,
    "subjects": ("[Subject]", "Subjects holds references to the objects the role applies to."),
    "roleRef": ("RoleRef!", "RoleRef can reference a Role in the current namespace or a "
                "ClusterRole in the global namespace.")}, gvk=(GROUP, "v1", "RoleBinding"))
define(R, "ClusterRoleBinding", "ClusterRoleBinding references a ClusterRole, but not contain "
       "it.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "subjects": ("[Subject]", "Subjects holds references to the objects the role "
                        "applies to."),
           "roleRef": ("RoleRef!", "RoleRef can only reference a ClusterRole in the global "
                       "namespace.")}, gvk=(GROUP, "v1", "ClusterRoleBinding"))


# ---------------------------------------------------------------------- validation --
def _rules(rules, path: str, namespaced: bool) -> list[E.FieldError]:
    errs: list[E.FieldError] = []
    if rules is None:
        return errs
    for i, r in enumerate(rules):
        p = f"{path}[{i}]"
        if not isinstance(r, dict):
            errs.append(E.invalid(p, r, "must be an object"))
            continue
        if not r.get("verbs"):
            errs.append(E.required(f"{p}.verbs", "verbs must contain at least one value"))
        urls = r.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                errs.append(E.invalid(f"{p}.nonResourceURLs", urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
            if r.get("apiGroups") or r.get("resources") or r.get("resourceNames"):
                errs.append(E.invalid(f"{p}.nonResourceURLs", urls, "rules cannot apply to "
                                      "both regular resources and non-resource URLs"))
            continue
        if not r.get("apiGroups"):
            errs.append(E.required(f"{p}.apiGroups", "resource rules must supply at least one "
                                   "api group"))
        if not r.get("resources"):
            errs.append(E.required(f"{p}.resources", "resource rules must supply at least one "
                                   "resource"))
    return errs


def validate_role(obj, old):
    return V.object_meta(obj, True, "path", old) + _rules(obj.get("rules"), "rules", True)


def validate_cluster_role(obj, old):
    errs = V.object_meta(obj, False, "path", old) + _rules(obj.get("rules"), "rules", False)
    agg = obj.get("aggregationRule")
    if isinstance(agg, dict) and not agg.get("clusterRoleSelectors"):
        errs.append(E.required("aggregationRule.clusterRoleSelectors",
                               "at least one clusterRoleSelector required if aggregationRule "
                               "is non-nil"))
    return errs


SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _binding(obj, old, namespaced: bool) -> list[E.FieldError]:
    errs = V.object_meta(obj, namespaced, "path", old)
    ref = obj.get("roleRef") or {}
    if ref.get("apiGroup") != GROUP:
        errs.append(E.unsupported("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(E.unsupported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(E.required("roleRef.name", ""))
    else:
        for msg in V.path_segment(ref["name"]):
            errs.append(E.invalid("roleRef.name", ref["name"], msg))
    if old is not None and (old.get("roleRef") or {}) != ref:
        errs.append(E.invalid("roleRef", ref, "cannot change roleRef"))
    for i, s in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        if not isinstance(s, dict):
            errs.append(E.invalid(p, s, "must be an object"))
            continue
        if not s.get("name"):
            errs.append(E.required(f"{p}.name", ""))
        kind = s.get("kind")
        if kind not in SUBJECT_KINDS:
            errs.append(E.unsupported(f"{p}.kind", kind or "", list(SUBJECT_KINDS)))
        elif kind == "ServiceAccount":
            if s.get("apiGroup"):
                errs.append(E.unsupported(f"{p}.apiGroup", s["apiGroup"], [""]))
            if not namespaced and not s.get("namespace"):
                errs.append(E.required(f"{p}.namespace", ""))
        elif s.get("apiGroup") != GROUP:
            errs.append(E.unsupported(f"{p}.apiGroup", s.get("apiGroup", ""), [GROUP]))
    return errs


def validate_role_binding(obj, old):
    return _binding(obj, old, True)


def validate_cluster_role_binding(obj, old):
    return _binding(obj, old, False)


def default_binding(obj: dict) -> None:
    """kube defaults a User/Group subject's apiGroup to rbac.authorization.k8s.io."""
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and s.get("kind") in ("User", "Group") and "apiGroup" not in s:
            s["apiGroup"] = GROUP


register(Kind(GROUP, "v1", "Role", "roles", "role", True, "roles", f"{R}.Role",
              validate=validate_role, name_validator="path", field_labels=_meta_fields()))
register(Kind(GROUP, "v1", "ClusterRole", "clusterroles", "clusterrole", False, "clusterroles",
              f"{R}.ClusterRole", validate=validate_cluster_role, name_validator="path",
              field_labels=_meta_fields()))
register(Kind(GROUP, "v1", "RoleBinding", "rolebindings", "rolebinding", True, "rolebindings",
              f"{R}.RoleBinding", default=default_binding, validate=validate_role_binding,
              name_validator="path", field_labels=_meta_fields()))
register(Kind(GROUP, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
              False, "clusterrolebindings", f"{R}.ClusterRoleBinding", default=default_binding,
              validate=validate_cluster_role_binding, name_validator="path",
              field_labels=_meta_fields()))
