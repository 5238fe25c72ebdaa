"""authentication.k8s.io/v1: SelfSubjectReview (`kubectl auth whoami`), TokenReview and
TokenRequest (the body of serviceaccounts/token, `kubectl create token`).

Create-only, never stored: served by kcore.apiserver.reviews.
"""
from __future__ import annotations

from kcore.api.kinds import Kind
from kcore.api.schema import define

AN = "io.k8s.api.authentication.v1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
GROUP = "authentication.k8s.io"

define(AN, "UserInfo", "UserInfo holds the information about the user needed to implement the "
       "user.Info interface.", {
           "username": ("s", "The name that uniquely identifies this user among all active "
                        "users."),
           "uid": ("s", "A unique value that identifies this user across time."),
           "groups": ("[s]", "The names of groups this user is a part of."),
           "extra": ("{[s]}", "Any additional information provided by the authenticator.")})
define(AN, "SelfSubjectReviewStatus", "SelfSubjectReviewStatus is filled by the kube-apiserver "
       "and sent back to a user.", {"userInfo": "UserInfo"})
define(AN, "SelfSubjectReview", "SelfSubjectReview contains the user information that the "
       "kube-apiserver has about the user making this request.", {
           "apiVersion": "s", "kind": "s", "metadata": OM,
           "status": "SelfSubjectReviewStatus"}, gvk=(GROUP, "v1", "SelfSubjectReview"))
define(AN, "TokenReviewSpec", "TokenReviewSpec is a description of the token authentication "
       "request.", {"token": ("s", "Token is the opaque bearer token."),
                    "audiences": "[s]"})
define(AN, "TokenReviewStatus", "TokenReviewStatus is the result of the token authentication "
       "request.", {"authenticated": "b", "user": "UserInfo", "audiences": "[s]", "error": "s"})
define(AN, "TokenReview", "TokenReview attempts to authenticate a token to a known user.", {
    "apiVersion": "s", "kind": "s", "metadata": OM, "spec": "TokenReviewSpec!",
    "status": "TokenReviewStatus"}, gvk=(GROUP, "v1", "TokenReview"))
define(AN, "BoundObjectReference", "BoundObjectReference is a reference to an object that a "
       "token is bound to.", {"kind": "s", "apiVersion": "s", "name": "s", "uid": "s"})
define(AN, "TokenRequestSpec", "TokenRequestSpec contains client provided parameters of a token "
       "request.", {
           "audiences": ("[s]!", "Audiences are the intendend audiences of the token."),
           "expirationSeconds": ("l", "ExpirationSeconds is the requested duration of validity "
                                 "of the request."),
           "boundObjectRef": "BoundObjectReference"})
define(AN, "TokenRequestStatus", "TokenRequestStatus is the result of a token request.", {
    "token": "s!", "expirationTimestamp": "t!"})
define(AN, "TokenRequest", "TokenRequest requests a token for a given service account.", {
    "apiVersion": "s", "kind": "s", "metadata": OM, "spec": "TokenRequestSpec!",
    "status": "TokenRequestStatus"}, gvk=(GROUP, "v1", "TokenRequest"))

REVIEW_KINDS = [
    Kind(GROUP, "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", False, "",
         f"{AN}.SelfSubjectReview", verbs=("create",)),
    Kind(GROUP, "v1", "TokenReview", "tokenreviews", "tokenreview", False, "",
         f"{AN}.TokenReview", verbs=("create",)),
]
