"""Issuing a certificate for an approved request with the cluster CA.

The subject and SANs come from the request; key usages and extended key usages
from spec.usages. Validity starts 5 minutes back (clock skew, as kube's signer
backdates) and lasts spec.expirationSeconds (at least 600 s) capped by the
signer's --cluster-signing-duration, never past the CA's own expiry.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from kcore.certificates.approver import SIGNER_CHECKS
from kcore.certificates.request import (
    MIN_EXPIRATION_SECONDS,
    RequestError,
    parse_request,
)

BACKDATE = dt.timedelta(minutes=5)

_EKU = {"server auth": ExtendedKeyUsageOID.SERVER_AUTH,
        "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
        "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
        "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
        "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
        "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
        "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
_KU = {"digital signature": "digital_signature", "signing": "digital_signature",
       "content commitment": "content_commitment", "key encipherment": "key_encipherment",
       "key agreement": "key_agreement", "data encipherment": "data_encipherment",
       "cert sign": "key_cert_sign", "crl sign": "crl_sign",
       "encipher only": "encipher_only", "decipher only": "decipher_only"}


class SigningError(ValueError):
    """The request cannot be signed by this signer (the CSR gets a Failed condition)."""


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: object

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        return cls(x509.load_pem_x509_certificates(cert_pem)[0],
                   serialization.load_pem_private_key(key_pem, password=None))


def validity(now: dt.datetime, expiration_seconds: int | None, max_duration: float,
             ca_not_after: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(not_before, not_after) for a certificate issued at `now`."""
    dur = max_duration
    if expiration_seconds is not None:
        dur = min(dur, max(int(expiration_seconds), MIN_EXPIRATION_SECONDS))
    return now - BACKDATE, min(now + dt.timedelta(seconds=dur), ca_not_after)


def sign(ca: CA, csr: dict, now: dt.datetime, max_duration: float) -> bytes:
    """The PEM certificate for an approved CSR object (raises SigningError)."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName", "")
    check = SIGNER_CHECKS.get(signer)
    if check is None:
        raise SigningError(f"signer {signer!r} is not handled")
    try:
        req = parse_request(spec.get("request") or "")
    except RequestError as e:
        raise SigningError(str(e)) from None
    usages = list(spec.get("usages") or [])
    why = check(req, usages)
    if why:
        raise SigningError(why)
    not_before, not_after = validity(now, spec.get("expirationSeconds"), max_duration,
                                     ca.cert.not_valid_after_utc)
    ku = {v: False for v in _KU.values()}
    for u in usages:
        if u in _KU:
            ku[_KU[u]] = True
    b = (x509.CertificateBuilder().subject_name(req.csr.subject).issuer_name(ca.cert.subject)
         .public_key(req.csr.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(**ku), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca.key.public_key()), critical=False))
    ekus = [_EKU[u] for u in usages if u in _EKU]
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    try:
        san = req.csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        b = b.add_extension(san, critical=False)
    except x509.ExtensionNotFound:
        pass
    return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
