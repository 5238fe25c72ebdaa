"""The certificate controllers: kube's csrsigning and csrapproving.

`CSRSigningController` (with --cluster-signing-cert-file/--cluster-signing-key-file)
issues certificates for approved requests to the kubelet client, kubelet serving
and API server client signers with the cluster CA, writing status.certificate; a
request its signer refuses gets a Failed condition instead.

`CSRApprovingController` approves kubelet client requests from bootstrap users
("nodeclient") and from nodes renewing their own ("selfnodeclient") once a
SubjectAccessReview says the requestor may create
`certificatesigningrequests/<recognizer>`, as kube's does. The decisions are the
pure functions of kcore.certificates.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging

from kcore.api.meta import rfc3339
from kcore.certificates.approver import SIGNER_CHECKS, approved_condition, decide
from kcore.certificates.request import is_approved, is_failed, is_issued
from kcore.certificates.signer import CA, SigningError, sign
from kcore.client import errors as E
from kcore.client.resources import CERTIFICATE_SIGNING_REQUESTS as CSRS
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _CSRController(Controller):
    def __init__(self, ctx, workers: int = 2):
        super().__init__(ctx, workers=workers)
        self.csrs = self.informer(CSRS)
        self.csrs.add_event_handler(self.enqueue, lambda o, n: self.enqueue(n))

    def _get(self, key: str) -> dict | None:
        return self.csrs.store.get(None, key)


class CSRSigningController(_CSRController):
    name = "csrsigning"
    component = "csrsigning-controller"

    def __init__(self, ctx, clock=_utcnow):
        super().__init__(ctx)
        o = ctx.options
        with open(o.cluster_signing_cert_file, "rb") as fh:
            cert_pem = fh.read()
        with open(o.cluster_signing_key_file, "rb") as fh:
            key_pem = fh.read()
        self.ca = CA.from_pem(cert_pem, key_pem)
        self.duration = o.cluster_signing_duration
        self.clock = clock
        self.issued = 0

    async def sync(self, key: str) -> None:
        csr = self._get(key)
        if csr is None or not is_approved(csr) or is_failed(csr) or is_issued(csr):
            return
        if (csr.get("spec") or {}).get("signerName") not in SIGNER_CHECKS:
            return
        status = dict(csr.get("status") or {})
        try:
            pem = sign(self.ca, csr, self.clock(), self.duration)
        except SigningError as e:
            now = rfc3339()
            status["conditions"] = [*(status.get("conditions") or []), {
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": str(e), "lastUpdateTime": now, "lastTransitionTime": now}]
            log.info("csr %s: not signed: %s", key, e)
        else:
            status["certificate"] = base64.b64encode(pem).decode()
        out = {**csr, "status": status}
        try:
            await self.client.update(CSRS, out, subresource="status")
        except (E.NotFound, E.Conflict):
            return              # deleted or changed: the informer brings it back
        if "certificate" in status:
            self.issued += 1
            log.info("csr %s: issued a certificate for %s", key,
                     (csr.get("spec") or {}).get("username", ""))


class CSRApprovingController(_CSRController):
    name = "csrapproving"
    component = "csrapproving-controller"

    async def sync(self, key: str) -> None:
        csr = self._get(key)
        if csr is None:
            return
        d = decide(csr)
        if not d.approve:
            return
        if not await self._authorized(csr, d.recognizer):
            log.info("csr %s: requestor may not create certificatesigningrequests/%s", key,
                     d.recognizer)
            return
        st = dict(csr.get("status") or {})
        st["conditions"] = [*(st.get("conditions") or []),
                            approved_condition(d.recognizer, rfc3339())]
        try:
            await self.client.update(CSRS, {**csr, "status": st}, subresource="approval")
        except (E.NotFound, E.Conflict):
            return
        log.info("csr %s: approved (%s)", key, d.recognizer)

    async def _authorized(self, csr: dict, recognizer: str) -> bool:
        spec = csr.get("spec") or {}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": spec.get("username", ""), "uid": spec.get("uid", ""),
                         "groups": list(spec.get("groups") or []),
                         "extra": spec.get("extra") or {},
                         "resourceAttributes": {"group": "certificates.k8s.io",
                                                "resource": "certificatesigningrequests",
                                                "verb": "create",
                                                "subresource": recognizer}}}
        out = await self.client.request_json("POST", SAR_PATH, body=body)
        return bool((out.get("status") or {}).get("allowed"))
