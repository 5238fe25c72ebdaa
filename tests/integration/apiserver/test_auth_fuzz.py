"""schemathesis against the served OpenAPI v3 documents: every operation of every
group-version gets a bounded number of generated requests (valid and invalid
bodies, paths, query parameters). The server must never answer 5xx nor die.

The documents are fetched from a running `kcore apiserver` and merged into one;
only long-polling knobs (watch, follow) are pinned off so requests end at once.
Requests go to the secure port as a bearer-token user in system:masters (the
auth path is exercised on every request); a second, smaller pass sends the
same operations anonymously under RBAC, which must answer 401/403 or the
discovery-allowed results, never 5xx.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from .apiserver_harness import _stop, _tail, free_port, wait_http  # noqa: E402

EXAMPLES = int(os.environ.get("KCORE_FUZZ_EXAMPLES", "3"))
TOKEN = "fuzz-admin-token"


@pytest.fixture(scope="module")
def fuzz_server():
    root = tempfile.mkdtemp(prefix="kcore-fuzz-")
    port, sport = free_port(), free_port()
    with open(os.path.join(root, "tokens.csv"), "w") as fh:
        fh.write(f'{TOKEN},fuzzer,1,"system:masters"\n')
    log = os.path.join(root, "log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kcore.cli.main", "apiserver", f"--insecure-port={port}",
             f"--secure-port={sport}", "--bind-address=127.0.0.1",
             f"--data-dir={root}/data", f"--token-auth-file={root}/tokens.csv",
             "--authorization-mode=RBAC", "--min-request-timeout=1"],
            stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
        yield {"proc": proc, "insecure": f"http://127.0.0.1:{port}",
               "secure": f"https://127.0.0.1:{sport}", "log": log}
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def merged_document(base: str) -> dict:
    """All /openapi/v3 documents as one, with watch/follow parameters removed."""
    index = _get(base + "/openapi/v3")
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
           "paths": {}, "components": {"schemas": {}}}
    for ref in index["paths"].values():
        d = _get(base + ref["serverRelativeURL"])
        doc["paths"].update(d["paths"])
        doc["components"]["schemas"].update(d["components"]["schemas"])
    for item in doc["paths"].values():
        for op in item.values():
            op["parameters"] = [p for p in op.get("parameters", [])
                                if p["name"] not in ("watch", "follow")]
    return doc


@pytest.fixture(scope="module")
def operations(fuzz_server):
    schema = schemathesis.openapi.from_dict(merged_document(fuzz_server["insecure"]))
    return [r.ok() for r in schema.get_all_operations()]


def _fuzz(fuzz_server, operations, examples: int, headers: dict, check) -> int:
    """Run every operation's strategy; returns the number of requests sent."""
    sent = [0]
    failures = []
    for op in operations:
        @given(op.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def one(case):
            response = case.call(base_url=fuzz_server["secure"], verify=False, timeout=15,
                                 headers=headers)
            sent[0] += 1
            assert fuzz_server["proc"].poll() is None, _tail(fuzz_server["log"])
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:400]}")
            check(case, response)
        try:
            one()
        except AssertionError as e:
            failures.append(f"{op.method.upper()} {op.path}: {e}")
        if fuzz_server["proc"].poll() is not None:
            break
    assert not failures, "\n".join(failures[:20]) + \
        f"\n--- log ---\n{_tail(fuzz_server['log'])[-3000:]}"
    return sent[0]


def test_openapi_fuzz_as_admin(fuzz_server, operations):
    """Every operation, a few generated requests each, as a system:masters token user."""
    def check(case, response):
        refused = response.status_code == 401 or (
            response.status_code == 403 and 'User "fuzzer" cannot' in response.text)
        assert not refused, f"the admin token was refused: {response.text[:300]}"
    assert len(operations) > 150
    assert _fuzz(fuzz_server, operations, EXAMPLES, {"Authorization": f"Bearer {TOKEN}"},
                 check) >= len(operations)
    with urllib.request.urlopen(fuzz_server["insecure"] + "/readyz", timeout=10) as r:
        assert r.status == 200


def test_openapi_fuzz_anonymous(fuzz_server, operations):
    """Anonymous under RBAC: every resource operation is a 403 Status, never a 5xx."""
    def check(case, response):
        assert response.status_code in (401, 403), (
            f"anonymous {case.method} {case.formatted_path} -> {response.status_code}")
        body = response.json()
        assert body["kind"] == "Status" and body["code"] == response.status_code
        assert 'User "system:anonymous" cannot' in body["message"]
    _fuzz(fuzz_server, operations, 1, {}, check)
