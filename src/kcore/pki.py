"""Certificates for a cluster: a CA and the server/client certificates signed by it.

Used by `kcore certs`, by `kcore up` (first start) and by tests. Kubernetes
reads a client certificate's CN as the user and its O entries as the groups.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())

    def write(self, cert_path: str, key_path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(cert_path)), exist_ok=True)
        with open(cert_path, "wb") as fh:
            fh.write(self.cert_pem())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem())

    @classmethod
    def load(cls, cert_path: str, key_path: str) -> "KeyPair":
        with open(cert_path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        with open(key_path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        return cls(cert, key)  # type: ignore[arg-type]


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(cn: str = "kcore-ca", days: int = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(cn)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert, key)


def make_cert(ca: KeyPair, cn: str, *, orgs: tuple[str, ...] = (), hosts: tuple[str, ...] = (),
              server: bool = False, client: bool = False, days: int = 365) -> KeyPair:
    """A leaf certificate signed by `ca`; `hosts` are DNS names or IP addresses."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    b = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                      key_cert_sign=False, crl_sign=False,
                                      content_commitment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False,
                                      decipher_only=False), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca.key.public_key()), critical=False))
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        b = b.add_extension(subject_alt_names(hosts), critical=False)
    return KeyPair(b.sign(ca.key, hashes.SHA256()), key)


def subject_user(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(user, groups) as Kubernetes reads a client certificate: CN and O entries."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), [str(o.value) for o in orgs]


# ------------------------------------------------------------------ files on disk --
def write_pem(path: str, data: bytes, private: bool = False) -> None:
    """Write atomically (temp file + rename); private files get mode 0600."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def load_certs(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as fh:
        return x509.load_pem_x509_certificates(fh.read())


def cert_valid_for(cert: x509.Certificate, issuer: x509.Certificate | None = None,
                   min_days: float = 1.0) -> bool:
    """True while `cert` has at least `min_days` left and (if given) names `issuer`."""
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc - now < dt.timedelta(days=min_days):
        return False
    return issuer is None or cert.issuer == issuer.subject


def cert_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | \
        set(san.get_values_for_type(x509.DNSName))


def self_signed_serving(hosts: tuple[str, ...], cn: str = "kcore-apiserver",
                        days: int = 365) -> tuple[KeyPair, KeyPair]:
    """What kube-apiserver does without --tls-cert-file: a throw-away CA named after
    the host and a serving certificate for `hosts` signed by it. Returns (ca, serving);
    the certificate file holds the serving certificate followed by the CA's."""
    ca = make_ca(f"{cn}-ca@{int(dt.datetime.now().timestamp())}", days=days)
    return ca, make_cert(ca, cn, hosts=hosts, server=True, days=days)


# ----------------------------------------------------- service-account keys, JWTs --
# Service-account tokens are JWS compact serializations (RFC 7515) signed with the
# cluster's service-account key (kubeadm's sa.key / sa.pub). The API server verifies
# them with the public keys; the token controller and TokenRequest sign them.

def make_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_key_pem(key) -> bytes:
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: str):
    with open(path, "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


def load_public_keys(path: str) -> list:
    """Every public key in a PEM file: PUBLIC KEY blocks, private keys (their public
    halves) and certificates (their keys), as kube reads --service-account-key-file."""
    with open(path, "rb") as fh:
        data = fh.read()
    keys = []
    for block in _pem_blocks(data):
        label = block.split(b"\n", 1)[0]
        if b"CERTIFICATE" in label:
            keys.append(x509.load_pem_x509_certificate(block).public_key())
        elif b"PRIVATE KEY" in label:
            keys.append(serialization.load_pem_private_key(block, password=None).public_key())
        elif b"PUBLIC KEY" in label:
            keys.append(serialization.load_pem_public_key(block))
    if not keys:
        raise ValueError(f"{path}: no public keys found")
    return keys


def _pem_blocks(data: bytes) -> list[bytes]:
    out, cur = [], None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith(b"-----END "):
                out.append(b"".join(cur))
                cur = None
    return out


def _b64u(b: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64u(s: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def key_id(key) -> str:
    """kube's `kid`: base64url of the SHA-256 of the public key's DER."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return _b64u(h.finalize())


_EC_ALGS = {"secp256r1": ("ES256", hashes.SHA256, 32), "secp384r1": ("ES384", hashes.SHA384, 48),
            "secp521r1": ("ES512", hashes.SHA512, 66)}


def jwt_sign(claims: dict, key) -> str:
    """A compact JWS of `claims` signed with an EC (ES256/384/512) or RSA (RS256) key."""
    import json

    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS256"
    else:
        alg, hash_cls, size = _EC_ALGS[key.curve.name]
    header = {"alg": alg, "kid": key_id(key)}
    signing_input = (_b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64u(json.dumps(claims, separators=(",", ":")).encode())).encode()
    if alg == "RS256":
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hash_cls())))
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return signing_input.decode() + "." + _b64u(sig)


class JWTError(ValueError):
    pass


def jwt_verify(token: str, keys: list) -> dict:
    """The claims of a compact JWS whose signature one of `keys` verifies (no claim
    checks: expiry, issuer and audience are the caller's policy)."""
    import json

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("not a JWT")
    try:
        header = json.loads(_unb64u(parts[0]))
        claims = json.loads(_unb64u(parts[1]))
        sig = _unb64u(parts[2])
    except (ValueError, UnicodeDecodeError) as e:
        raise JWTError(f"malformed JWT: {e}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("malformed JWT")
    alg = header.get("alg")
    signing_input = (parts[0] + "." + parts[1]).encode()
    for k in keys:
        try:
            if isinstance(k, rsa.RSAPublicKey):
                if alg != "RS256":
                    continue
                k.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
                return claims
            if isinstance(k, ec.EllipticCurvePublicKey):
                kalg, hash_cls, size = _EC_ALGS.get(k.curve.name, ("", None, 0))
                if alg != kalg or len(sig) != 2 * size:
                    continue
                der = encode_dss_signature(int.from_bytes(sig[:size], "big"),
                                           int.from_bytes(sig[size:], "big"))
                k.verify(der, signing_input, ec.ECDSA(hash_cls()))
                return claims
        except InvalidSignature:
            continue
    raise JWTError("invalid signature")


# -------------------------------------------------------------------- kubeconfig --
def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
               user: str = "admin", cluster: str = "kcore") -> str:
    """A kubeconfig (YAML) with the CA and the client pair embedded, as kubeadm writes
    admin.conf."""
    import base64

    def b(x: bytes) -> str:
        return base64.b64encode(x).decode()
    ctx = f"{user}@{cluster}"
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n"
            f"    server: {server}\n    certificate-authority-data: {b(ca_pem)}\n"
            f"users:\n- name: {user}\n  user:\n    client-certificate-data: {b(cert_pem)}\n"
            f"    client-key-data: {b(key_pem)}\ncontexts:\n- name: {ctx}\n  context:\n"
            f"    cluster: {cluster}\n    user: {user}\ncurrent-context: {ctx}\n"
            f"preferences: {{}}\n")


LEGACY_SA_ISSUER = "kubernetes/serviceaccount"


def legacy_service_account_token(key, namespace: str, name: str, uid: str,
                                 secret_name: str) -> str:
    """The long-lived token kube's token controller stores in a
    `kubernetes.io/service-account-token` Secret (valid while the Secret and the
    ServiceAccount exist)."""
    p = "kubernetes.io/serviceaccount/"
    return jwt_sign({"iss": LEGACY_SA_ISSUER, f"{p}namespace": namespace,
                     f"{p}secret.name": secret_name, f"{p}service-account.name": name,
                     f"{p}service-account.uid": uid,
                     "sub": f"system:serviceaccount:{namespace}:{name}"}, key)


def subject_alt_names(hosts) -> x509.SubjectAlternativeName:
    """IP SANs for addresses, DNS SANs for names."""
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(sans)
