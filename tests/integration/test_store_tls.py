"""`kcore etcd` with TLS on the client URL and client-certificate auth, driven by
real etcdctl (and refused without a certificate)."""
from __future__ import annotations

import os

import pytest
from store_harness import ETCDCTL, FRONTENDS, Member, etcdctl

from kcore import pki

pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl not installed")


@pytest.fixture(params=FRONTENDS)
def tls_member(tmpdir_path, request):
    ca = pki.make_ca("test-ca")
    srv = pki.make_cert(ca, "etcd-server", hosts=("127.0.0.1", "localhost"), server=True)
    cli = pki.make_cert(ca, "etcd-client", client=True)
    other_ca = pki.make_ca("someone-else")
    stranger = pki.make_cert(other_ca, "stranger", client=True)
    d = tmpdir_path
    with open(os.path.join(d, "ca.crt"), "wb") as fh:
        fh.write(ca.cert_pem())
    srv.write(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    cli.write(os.path.join(d, "client.crt"), os.path.join(d, "client.key"))
    stranger.write(os.path.join(d, "stranger.crt"), os.path.join(d, "stranger.key"))
    m = Member(os.path.join(d, "data"), scheme="https", extra=[
        f"--frontend={request.param}",
        "--cert-file", os.path.join(d, "server.crt"), "--key-file", os.path.join(d, "server.key"),
        "--trusted-ca-file", os.path.join(d, "ca.crt"), "--client-cert-auth=true"])
    m.start()
    yield m, d
    m.stop()


def test_client_cert_auth(tls_member):
    m, d = tls_member
    good = [f"--cacert={d}/ca.crt", f"--cert={d}/client.crt", f"--key={d}/client.key"]
    assert etcdctl(m.url, "put", "secure", "yes", tls=good).stdout.strip() == "OK"
    assert etcdctl(m.url, "get", "secure", tls=good).stdout.splitlines() == ["secure", "yes"]
    out = etcdctl(m.url, "endpoint", "health", tls=good)
    assert "is healthy" in out.stdout + out.stderr
    # no client certificate, or one from another CA: refused
    for bad in ([f"--cacert={d}/ca.crt"],
                [f"--cacert={d}/ca.crt", f"--cert={d}/stranger.crt", f"--key={d}/stranger.key"]):
        p = etcdctl(m.url, "--command-timeout=3s", "get", "secure", tls=bad, check=False)
        assert p.returncode != 0
    # a client that does not trust the server's CA refuses it
    p = etcdctl(m.url, "--command-timeout=3s", "get", "secure", check=False,
                tls=[f"--cert={d}/client.crt", f"--key={d}/client.key"])
    assert p.returncode != 0
