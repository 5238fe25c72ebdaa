"""authorization.k8s.io/v1: access reviews (create-only; never stored).

SelfSubjectAccessReview answers `kubectl auth can-i`, SelfSubjectRulesReview
`kubectl auth can-i --list`; SubjectAccessReview and LocalSubjectAccessReview
ask about another user. The kinds are served by kcore.apiserver.reviews, not
by a registry, so they are listed in REVIEW_KINDS rather than registered.
"""
from __future__ import annotations

from kcore.api.kinds import Kind
from kcore.api.schema import define

AZ = "io.k8s.api.authorization.v1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
GROUP = "authorization.k8s.io"

define(AZ, "FieldSelectorAttributes", "FieldSelectorAttributes indicates a field limited access.",
       {"rawSelector": "s", "requirements": "*"})
define(AZ, "LabelSelectorAttributes", "LabelSelectorAttributes indicates a label limited access.",
       {"rawSelector": "s", "requirements": "*"})
define(AZ, "ResourceAttributes", "ResourceAttributes includes the authorization attributes "
       "available for resource requests to the Authorizer interface", {
           "namespace": ("s", "Namespace is the namespace of the action being requested."),
           "verb": ("s", "Verb is a kubernetes resource API verb, like: get, list, watch, "
                    "create, update, delete, proxy.  \"*\" means all."),
           "group": ("s", "Group is the API Group of the Resource.  \"*\" means all."),
           "version": ("s", "Version is the API Version of the Resource.  \"*\" means all."),
           "resource": ("s", "Resource is one of the existing resource types.  \"*\" means "
                        "all."),
           "subresource": ("s", "Subresource is one of the existing resource types.  \"\" "
                           "means none."),
           "name": ("s", "Name is the name of the resource being requested for a \"get\" or "
                    "deleted for a \"delete\". \"\" (empty) means all."),
           "fieldSelector": "FieldSelectorAttributes",
           "labelSelector": "LabelSelectorAttributes"})
define(AZ, "NonResourceAttributes", "NonResourceAttributes includes the authorization attributes "
       "available for non-resource requests to the Authorizer interface", {
           "path": ("s", "Path is the URL path of the request"),
           "verb": ("s", "Verb is the standard HTTP verb")})
define(AZ, "SubjectAccessReviewStatus", "SubjectAccessReviewStatus", {
    "allowed": ("b!", "Allowed is required. True if the action would be allowed, false "
                "otherwise."),
    "denied": ("b", "Denied is optional. True if the action would be denied, otherwise false."),
    "reason": ("s", "Reason is optional.  It indicates why a request was allowed or denied."),
    "evaluationError": ("s", "EvaluationError is an indication that some error occurred during "
                        "the authorization check.")})
define(AZ, "SelfSubjectAccessReviewSpec", "SelfSubjectAccessReviewSpec is a description of the "
       "access request.  Exactly one of ResourceAuthorizationAttributes and "
       "NonResourceAuthorizationAttributes must be set", {
           "resourceAttributes": "ResourceAttributes",
           "nonResourceAttributes": "NonResourceAttributes"})
define(AZ, "SubjectAccessReviewSpec", "SubjectAccessReviewSpec is a description of the access "
       "request.", {
           "resourceAttributes": "ResourceAttributes",
           "nonResourceAttributes": "NonResourceAttributes",
           "user": ("s", "User is the user you're testing for."),
           "groups": ("[s]", "Groups is the groups you're testing for."),
           "extra": ("{[s]}", "Extra corresponds to the user.Info.GetExtra() method from the "
                     "authenticator."),
           "uid": ("s", "UID information about the requesting user.")})
define(AZ, "SelfSubjectAccessReview", "SelfSubjectAccessReview checks whether or the current "
       "user can perform an action.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "spec": "SelfSubjectAccessReviewSpec!", "status": "SubjectAccessReviewStatus"},
       gvk=(GROUP, "v1", "SelfSubjectAccessReview"))
define(AZ, "SubjectAccessReview", "SubjectAccessReview checks whether or not a user or group "
       "can perform an action.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "spec": "SubjectAccessReviewSpec!", "status": "SubjectAccessReviewStatus"},
       gvk=(GROUP, "v1", "SubjectAccessReview"))
define(AZ, "LocalSubjectAccessReview", "LocalSubjectAccessReview checks whether or not a user or "
       "group can perform an action in a given namespace.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "spec": "SubjectAccessReviewSpec!", "status": "SubjectAccessReviewStatus"},
       gvk=(GROUP, "v1", "LocalSubjectAccessReview"))
define(AZ, "ResourceRule", "ResourceRule is the list of actions the subject is allowed to "
       "perform on resources.", {"verbs": "[s]!", "apiGroups": "[s]", "resources": "[s]",
                                 "resourceNames": "[s]"})
define(AZ, "NonResourceRule", "NonResourceRule holds information that describes a rule for the "
       "non-resource", {"verbs": "[s]!", "nonResourceURLs": "[s]"})
define(AZ, "SubjectRulesReviewStatus", "SubjectRulesReviewStatus contains the result of a rules "
       "check.", {"resourceRules": "[ResourceRule]!", "nonResourceRules": "[NonResourceRule]!",
                  "incomplete": "b!", "evaluationError": "s"})
define(AZ, "SelfSubjectRulesReviewSpec", "SelfSubjectRulesReviewSpec defines the specification "
       "for SelfSubjectRulesReview.", {"namespace": ("s", "Namespace to evaluate rules for.")})
define(AZ, "SelfSubjectRulesReview", "SelfSubjectRulesReview enumerates the set of actions the "
       "current user can perform within a namespace.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "spec": "SelfSubjectRulesReviewSpec!", "status": "SubjectRulesReviewStatus"},
       gvk=(GROUP, "v1", "SelfSubjectRulesReview"))


def _review(kind: str, plural: str, namespaced: bool = False) -> Kind:
    return Kind(GROUP, "v1", kind, plural, kind.lower(), namespaced, "", f"{AZ}.{kind}",
                verbs=("create",))


REVIEW_KINDS = [_review("SelfSubjectAccessReview", "selfsubjectaccessreviews"),
                _review("SelfSubjectRulesReview", "selfsubjectrulesreviews"),
                _review("SubjectAccessReview", "subjectaccessreviews"),
                _review("LocalSubjectAccessReview", "localsubjectaccessreviews", True)]
