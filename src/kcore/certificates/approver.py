"""Which signer accepts which request, and what the auto-approver approves.

kube's rules, as pure checks over a parsed request and its usages:
- kubelet client (`kube-apiserver-client-kubelet`): O exactly `system:nodes`,
  CN `system:node:<name>`, no SANs, usages `digital signature` (+ `key
  encipherment`) + `client auth`;
- kubelet serving (`kubelet-serving`): same subject, at least one DNS or IP SAN
  and no e-mail/URI SAN, usages within `digital signature`, `key encipherment`,
  `server auth` and including `server auth`;
- apiserver client (`kube-apiserver-client`): usages within `digital signature`,
  `key encipherment`, `client auth` and including `client auth`.

The approver (kube's csrapproving) approves kubelet client requests that are
either a bootstrap user's (group `system:bootstrappers`: "nodeclient") or a
node renewing its own certificate (username == CN: "selfnodeclient").
"""
from __future__ import annotations

from dataclasses import dataclass

from kcore.certificates.request import (
    KUBE_APISERVER_CLIENT,
    KUBELET_CLIENT,
    KUBELET_SERVING,
    ParsedRequest,
    RequestError,
    is_approved,
    is_denied,
    is_failed,
    parse_request,
)

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS = "system:bootstrappers"

_CLIENT_USAGES = {"digital signature", "key encipherment", "client auth"}
_SERVING_USAGES = {"digital signature", "key encipherment", "server auth"}


def _node_subject(req: ParsedRequest) -> str:
    if list(req.organizations) != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    if not req.common_name.startswith(NODE_PREFIX) or len(req.common_name) == len(NODE_PREFIX):
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    return ""


def kubelet_client_problem(req: ParsedRequest, usages: list[str]) -> str:
    """Why this is not a valid kubelet client request ("" when it is)."""
    why = _node_subject(req)
    if why:
        return why
    if req.dns_names or req.ip_addresses or req.emails or req.uris:
        return "subject alternative names are not allowed"
    u = set(usages)
    if "client auth" not in u or not u <= _CLIENT_USAGES or "digital signature" not in u:
        return "usages must be digital signature, client auth (and key encipherment)"
    return ""


def kubelet_serving_problem(req: ParsedRequest, usages: list[str]) -> str:
    why = _node_subject(req)
    if why:
        return why
    if not (req.dns_names or req.ip_addresses):
        return "DNS or IP subjectAltName is required"
    if req.emails or req.uris:
        return "email and URI subjectAltNames are not allowed"
    u = set(usages)
    if "server auth" not in u or not u <= _SERVING_USAGES:
        return "usages must be within digital signature, key encipherment, server auth"
    return ""


def apiserver_client_problem(req: ParsedRequest, usages: list[str]) -> str:
    u = set(usages)
    if "client auth" not in u or not u <= _CLIENT_USAGES:
        return "usages must be within digital signature, key encipherment, client auth"
    return ""


SIGNER_CHECKS = {
    KUBELET_CLIENT: kubelet_client_problem,
    KUBELET_SERVING: kubelet_serving_problem,
    KUBE_APISERVER_CLIENT: apiserver_client_problem,
}


@dataclass(frozen=True)
class Decision:
    approve: bool
    recognizer: str = ""       # "nodeclient" | "selfnodeclient"
    reason: str = ""


APPROVED_MESSAGE = {
    "nodeclient": "Auto approving kubelet client certificate after SubjectAccessReview.",
    "selfnodeclient": "Auto approving self kubelet client certificate after "
                      "SubjectAccessReview.",
}


def decide(csr: dict) -> Decision:
    """Whether the approver approves this CSR (and why not, when it does not)."""
    spec = csr.get("spec") or {}
    if is_approved(csr) or is_denied(csr) or is_failed(csr):
        return Decision(False, reason="already decided")
    if spec.get("signerName") != KUBELET_CLIENT:
        return Decision(False, reason="not a kubelet client signer")
    try:
        req = parse_request(spec.get("request") or "")
    except RequestError as e:
        return Decision(False, reason=str(e))
    why = kubelet_client_problem(req, list(spec.get("usages") or []))
    if why:
        return Decision(False, reason=why)
    if spec.get("username") == req.common_name:
        return Decision(True, "selfnodeclient")
    if BOOTSTRAPPERS in (spec.get("groups") or []):
        return Decision(True, "nodeclient")
    return Decision(False, reason="requestor is neither a bootstrapper nor the node")


def approved_condition(recognizer: str, now: str) -> dict:
    return {"type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": APPROVED_MESSAGE.get(recognizer, "Auto approved"),
            "lastUpdateTime": now, "lastTransitionTime": now}
