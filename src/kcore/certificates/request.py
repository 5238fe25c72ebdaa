"""PKCS#10 requests as a CertificateSigningRequest carries them, and its conditions.

`spec.request` is a PEM `CERTIFICATE REQUEST`, base64-encoded once more in JSON
(the field is `[]byte`). `parse_request` decodes both layers and checks the
self-signature; `make_request` builds one (the kubelet's TLS bootstrap).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kcore import pki

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

USAGES = ("signing", "digital signature", "content commitment", "key encipherment",
          "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
          "decipher only", "any", "server auth", "client auth", "code signing",
          "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
          "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
CONDITION_TYPES = ("Approved", "Denied", "Failed")
MIN_EXPIRATION_SECONDS = 600


class RequestError(ValueError):
    """spec.request is not a usable PEM certificate request."""


@dataclass(frozen=True)
class ParsedRequest:
    csr: x509.CertificateSigningRequest
    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    emails: tuple[str, ...]
    uris: tuple[str, ...]


def decode_b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RequestError("illegal base64 data") from None


def parse_pem(pem: bytes) -> ParsedRequest:
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise RequestError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise RequestError(f"invalid certificate request: {e}") from None
    if not csr.is_signature_valid:
        raise RequestError("certificate request signature is invalid")
    subj = csr.subject
    cn = subj.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = subj.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    dns: list[str] = []
    ips: list[str] = []
    emails: list[str] = []
    uris: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
        emails = list(san.get_values_for_type(x509.RFC822Name))
        uris = list(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        pass
    return ParsedRequest(csr, str(cn[0].value) if cn else "",
                         tuple(str(o.value) for o in orgs), tuple(dns), tuple(ips),
                         tuple(emails), tuple(uris))


def parse_request(value: str) -> ParsedRequest:
    """spec.request (base64 of PEM) → the checked request."""
    return parse_pem(decode_b64(value))


def make_request(key, common_name: str, organizations: tuple[str, ...] = (),
                 hosts: tuple[str, ...] = ()) -> bytes:
    """A PEM certificate request for `key` (CN, O entries, DNS/IP SANs)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if hosts:
        b = b.add_extension(pki.subject_alt_names(hosts), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def key_usages_for(key) -> list[str]:
    """The usages a kubelet asks for: RSA keys also need key encipherment."""
    if isinstance(key, rsa.RSAPrivateKey):
        return ["digital signature", "key encipherment", "client auth"]
    return ["digital signature", "client auth"]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# ---------------------------------------------------------------- conditions --
def condition(csr: dict, ctype: str) -> dict | None:
    for c in ((csr.get("status") or {}).get("conditions") or []):
        if isinstance(c, dict) and c.get("type") == ctype and c.get("status", "True") == "True":
            return c
    return None


def is_approved(csr: dict) -> bool:
    return condition(csr, "Approved") is not None and condition(csr, "Denied") is None


def is_denied(csr: dict) -> bool:
    return condition(csr, "Denied") is not None


def is_failed(csr: dict) -> bool:
    return condition(csr, "Failed") is not None


def is_issued(csr: dict) -> bool:
    return bool((csr.get("status") or {}).get("certificate"))


def display_condition(csr: dict) -> str:
    """kubectl's CONDITION column: Approved,Issued / Denied / Failed / Pending."""
    out = [t for t in CONDITION_TYPES if condition(csr, t) is not None]
    if is_issued(csr):
        out.append("Issued")
    return ",".join(out) or "Pending"
