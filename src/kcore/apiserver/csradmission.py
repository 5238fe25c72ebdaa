"""kube's CertificateApproval and CertificateSigning admission plugins.

Approving or denying a CertificateSigningRequest (/approval) needs the verb
`approve`, and issuing its certificate (/status, certificate changed) the verb
`sign`, on the `signers` resource of certificates.k8s.io named after the
request's signer, either exactly (`example.com/foo`) or by its domain
(`example.com/*`). Both are on by default, as in kube.
"""
from __future__ import annotations

from kcore.api import errors as E
from kcore.apiserver.auth import CURRENT, RequestInfo

GROUP = "certificates.k8s.io"


def signer_checks(signer: str, verb: str) -> list[RequestInfo]:
    """The two authorization questions for `verb` on a signer (exact, then domain)."""
    names = [signer]
    domain, sep, _ = signer.partition("/")
    if sep:
        names.append(f"{domain}/*")
    return [RequestInfo(path="", verb=verb, is_resource=True, group=GROUP, resource="signers",
                        name=n) for n in names]


def needed_verb(subresource: str, obj: dict | None, old: dict | None) -> str:
    """'approve', 'sign' or '' (nothing to check) for an update of a CSR."""
    if subresource == "approval":
        return "approve"
    if subresource == "status":
        new_cert = ((obj or {}).get("status") or {}).get("certificate")
        old_cert = ((old or {}).get("status") or {}).get("certificate")
        if new_cert and new_cert != old_cert:
            return "sign"
    return ""


async def admit(op: str, subresource: str, name: str, obj: dict | None, old: dict | None,
                plugins: set[str]) -> None:
    if op != "UPDATE":
        return
    verb = needed_verb(subresource, obj, old)
    if not verb or (verb == "approve" and "CertificateApproval" not in plugins) or \
            (verb == "sign" and "CertificateSigning" not in plugins):
        return
    cur = CURRENT.get()
    if cur is None:
        return
    user, authorizer = cur
    signer = ((old or obj or {}).get("spec") or {}).get("signerName", "")
    for info in signer_checks(signer, verb):
        ok, _ = await authorizer.authorize(user, info)
        if ok:
            return
    raise E.forbidden_error("certificatesigningrequests", name,
                            f'user not permitted to {verb} requests with signerName '
                            f'"{signer}"', GROUP)
