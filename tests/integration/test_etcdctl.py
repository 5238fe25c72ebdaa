"""The real etcdctl (Debian etcd-client 3.4), unmodified, against `kcore etcd`."""
from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from store_harness import ETCDCTL, Member, etcdctl

pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl not installed")


def test_put_get_del(member):
    ep = member.endpoint
    assert etcdctl(ep, "put", "/foo", "bar").stdout.strip() == "OK"
    assert etcdctl(ep, "get", "/foo").stdout.splitlines() == ["/foo", "bar"]
    out = etcdctl(ep, "put", "/foo", "baz", "--prev-kv").stdout.splitlines()
    assert out == ["OK", "/foo", "bar"]
    assert etcdctl(ep, "del", "/foo").stdout.strip() == "1"
    assert etcdctl(ep, "del", "/foo").stdout.strip() == "0"
    assert etcdctl(ep, "get", "/foo").stdout == ""


def test_prefix_keys_only_and_rev(member):
    ep = member.endpoint
    for k in ["/registry/a", "/registry/b", "/other/c"]:
        etcdctl(ep, "put", k, "v-" + k)
    out = etcdctl(ep, "get", "/", "--prefix", "--keys-only").stdout
    assert out.split("\n") == ["/other/c", "", "/registry/a", "", "/registry/b", "", ""]
    out = etcdctl(ep, "get", "/registry/", "--prefix", "-w", "json").stdout
    assert '"count":2' in out
    # revisions: the value of a key at an older revision
    etcdctl(ep, "put", "k", "v1")
    rev1 = int(re.search(r'"revision":(\d+)', etcdctl(ep, "get", "k", "-w", "json").stdout)[1])
    etcdctl(ep, "put", "k", "v2")
    assert etcdctl(ep, "get", "k", f"--rev={rev1}").stdout.splitlines() == ["k", "v1"]
    assert etcdctl(ep, "get", "k").stdout.splitlines() == ["k", "v2"]
    assert etcdctl(ep, "get", "/registry/", "--prefix", "--limit=1").stdout.splitlines() == [
        "/registry/a", "v-/registry/a"]
    out = etcdctl(ep, "get", "/registry/", "--prefix", "--sort-by=KEY", "--order=DESCEND")
    assert out.stdout.splitlines()[0] == "/registry/b"
    assert etcdctl(ep, "get", "", "--from-key", "--keys-only").stdout.split() == [
        "/other/c", "/registry/a", "/registry/b", "k"]


def _watch(ep: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([ETCDCTL, f"--endpoints={ep}", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ETCDCTL_API": "3"})


def _read_lines(p: subprocess.Popen, n: int, timeout: float = 10) -> list[str]:
    """The next n lines of p's stdout (fewer if it stalls for `timeout`)."""
    import queue
    import threading

    q = getattr(p, "_lines", None)
    if q is None:
        q = p._lines = queue.Queue()

        def pump() -> None:
            for line in p.stdout:
                q.put(line.rstrip("\n"))
        threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n:
        try:
            lines.append(q.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    return lines


def test_watch_key_and_prefix(member):
    ep = member.endpoint
    w1 = _watch(ep, "/w/key")
    w2 = _watch(ep, "/w/", "--prefix")
    try:
        time.sleep(1.5)  # let the watches be created
        etcdctl(ep, "put", "/w/key", "v1")
        etcdctl(ep, "put", "/w/other", "v2")
        etcdctl(ep, "del", "/w/key")
        assert _read_lines(w1, 5) == ["PUT", "/w/key", "v1", "DELETE", "/w/key"]
        assert _read_lines(w2, 8) == ["PUT", "/w/key", "v1", "PUT", "/w/other", "v2",
                                      "DELETE", "/w/key"]
    finally:
        for w in (w1, w2):
            w.kill()
            w.wait()


def test_watch_from_revision_replays_history(member):
    ep = member.endpoint
    etcdctl(ep, "put", "h", "1")
    rev = int(re.search(r'"revision":(\d+)', etcdctl(ep, "get", "h", "-w", "json").stdout)[1])
    etcdctl(ep, "put", "h", "2")
    w = _watch(ep, "h", f"--rev={rev}")
    try:
        assert _read_lines(w, 6) == ["PUT", "h", "1", "PUT", "h", "2"]
    finally:
        w.kill()
        w.wait()


def test_txn_interactive(member):
    ep = member.endpoint
    etcdctl(ep, "put", "user1", "bad")
    script = 'value("user1") = "bad"\n\ndel user1\n\nput user1 good\n\n'
    out = etcdctl(ep, "txn", "-i", input=script).stdout.splitlines()
    assert out == ["compares:", "success requests (get, put, del):",
                   "failure requests (get, put, del):", "SUCCESS", "", "1"]
    out = etcdctl(ep, "txn", input=script).stdout.splitlines()
    assert out == ["FAILURE", "", "OK"]
    assert etcdctl(ep, "get", "user1").stdout.splitlines() == ["user1", "good"]
    script = 'mod("user1") > "0"\n\nget user1\n\n\n'
    out = etcdctl(ep, "txn", input=script).stdout.splitlines()
    assert out == ["SUCCESS", "", "user1", "good"]


def test_leases(member):
    ep = member.endpoint
    out = etcdctl(ep, "lease", "grant", "60").stdout.strip()
    m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\(60s\)", out)
    assert m, out
    lid = m[1]
    assert etcdctl(ep, "put", "lk", "v", f"--lease={lid}").stdout.strip() == "OK"
    out = etcdctl(ep, "lease", "timetolive", lid, "--keys").stdout.strip()
    assert re.fullmatch(
        rf"lease {lid} granted with TTL\(60s\), remaining\((59|60)s\), attached keys\(\[lk\]\)",
        out), out
    out = etcdctl(ep, "lease", "keep-alive", "--once", lid).stdout.strip()
    assert out == f"lease {lid} keepalived with TTL(60)"
    assert lid in etcdctl(ep, "lease", "list").stdout
    assert etcdctl(ep, "lease", "revoke", lid).stdout.strip() == f"lease {lid} revoked"
    assert etcdctl(ep, "get", "lk").stdout == ""
    out = etcdctl(ep, "lease", "timetolive", lid).stdout.strip()
    assert out == f"lease {lid} already expired"
    p = etcdctl(ep, "put", "x", "y", f"--lease={lid}", check=False)
    assert p.returncode != 0 and "requested lease not found" in p.stderr


def test_lease_expiry_deletes_keys(member):
    ep = member.endpoint
    lid = etcdctl(ep, "lease", "grant", "2").stdout.split()[1]
    etcdctl(ep, "put", "ephemeral", "v", f"--lease={lid}")
    assert etcdctl(ep, "get", "ephemeral").stdout
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and etcdctl(ep, "get", "ephemeral").stdout:
        time.sleep(0.3)
    assert etcdctl(ep, "get", "ephemeral").stdout == ""


def test_compaction(member):
    ep = member.endpoint
    etcdctl(ep, "put", "c", "1")
    rev = int(re.search(r'"revision":(\d+)', etcdctl(ep, "get", "c", "-w", "json").stdout)[1])
    etcdctl(ep, "put", "c", "2")
    etcdctl(ep, "put", "c", "3")
    assert etcdctl(ep, "compaction", str(rev + 1)).stdout.strip() == f"compacted revision {rev + 1}"
    p = etcdctl(ep, "get", "c", f"--rev={rev}", check=False)
    assert p.returncode != 0
    assert "etcdserver: mvcc: required revision has been compacted" in p.stderr
    assert etcdctl(ep, "get", "c", f"--rev={rev + 1}").stdout.splitlines() == ["c", "2"]
    p = etcdctl(ep, "compaction", str(rev), check=False)
    assert "required revision has been compacted" in p.stderr


def test_member_list_and_endpoints(member):
    ep = member.endpoint
    out = etcdctl(ep, "member", "list").stdout.strip()
    m = re.fullmatch(r"([0-9a-f]+), started, m1, http://127\.0\.0\.1:(\d+), "
                     r"http://127\.0\.0\.1:(\d+), false", out)
    assert m, out
    assert int(m[2]) == member.peer_port and int(m[3]) == member.client_port
    out = etcdctl(ep, "endpoint", "health").stderr.strip() + etcdctl(ep, "endpoint", "health").stdout
    assert f"{ep} is healthy: successfully committed proposal" in out
    out = etcdctl(ep, "endpoint", "health", "--cluster").stdout + \
        etcdctl(ep, "endpoint", "health", "--cluster", check=False).stderr
    assert "is healthy" in out
    out = etcdctl(ep, "endpoint", "status").stdout.strip()
    parts = [p.strip() for p in out.split(",")]
    assert parts[0] == ep and parts[1] == m[1] and parts[2] == "3.4.23"
    assert parts[4] == "true" and parts[5] == "false"
    assert int(parts[6]) >= 1 and int(parts[7]) >= 1
    out = etcdctl(ep, "endpoint", "hashkv").stdout
    assert ep in out
    assert etcdctl(ep, "alarm", "list").stdout == ""
    assert "Finished defragmenting" in etcdctl(ep, "defrag").stdout


def test_snapshot_save_restore(member, tmpdir_path):
    ep = member.endpoint
    for i in range(50):
        etcdctl(ep, "put", f"/snap/{i:03d}", f"value-{i}")
    snap = os.path.join(tmpdir_path, "snap.db")
    out = etcdctl(ep, "snapshot", "save", snap).stdout
    assert f"Snapshot saved at {snap}" in out
    restored = os.path.join(tmpdir_path, "restored")
    m2 = Member(restored, name="r1")
    p = subprocess.run(["kcore", "etcd", "snapshot", "restore", snap, "--data-dir", restored,
                        "--name", "r1",
                        "--initial-cluster", f"r1=http://127.0.0.1:{m2.peer_port}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{m2.peer_port}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    m2.start()
    try:
        keys = etcdctl(m2.endpoint, "get", "/snap/", "--prefix", "--keys-only").stdout.split()
        assert keys == [f"/snap/{i:03d}" for i in range(50)]
        assert etcdctl(m2.endpoint, "get", "/snap/007").stdout.splitlines()[1] == "value-7"
        # the restored member takes writes and keeps counting revisions
        assert etcdctl(m2.endpoint, "put", "after", "restore").stdout.strip() == "OK"
    finally:
        m2.stop()
    # a corrupted snapshot is refused
    with open(snap, "r+b") as fh:
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    p = subprocess.run(["kcore", "etcd", "snapshot", "restore", snap, "--data-dir",
                        os.path.join(tmpdir_path, "bad")], capture_output=True, text=True)
    assert p.returncode != 0 and "sha256" in p.stderr


def test_errors_as_etcd_gives_them(member):
    ep = member.endpoint
    p = etcdctl(ep, "put", "", "v", check=False)
    assert p.returncode != 0 and "key is not provided" in p.stderr
    big = "x" * (1536 * 1024 + 10)
    p = subprocess.run([ETCDCTL, f"--endpoints={ep}", "put", "big"], input=big,
                       capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"})
    assert p.returncode != 0 and "request is too large" in p.stderr
    p = etcdctl(ep, "lease", "revoke", "1234abcd", check=False)
    assert p.returncode != 0 and "requested lease not found" in p.stderr
    p = etcdctl(ep, "get", "k", "--rev=1000000", check=False)
    assert p.returncode != 0 and "required revision is a future revision" in p.stderr
    assert etcdctl(ep, "get", "big").stdout == ""  # nothing was written


@pytest.mark.slow
def test_check_perf_small(member):
    out = etcdctl(member.endpoint, "check", "perf", "--load=s", timeout=180)
    assert "PASS" in out.stdout and "FAIL" not in out.stdout, out.stdout


def test_backup_command_dated_verified_with_retention(member, tmpdir_path):
    ep = member.endpoint
    etcdctl(ep, "put", "b1", "v1")
    d = os.path.join(tmpdir_path, "backups")
    os.makedirs(d)
    for stamp in ("20260101-000000", "20260102-000000", "20260103-000000"):
        open(os.path.join(d, f"snapshot-{stamp}.db"), "wb").close()
    p = subprocess.run(["kcore", "etcd", "backup", f"--endpoints={ep}", f"--dir={d}",
                        "--keep=2", "--quiet"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    files = sorted(os.listdir(d))
    assert len(files) == 2 and files[0] == "snapshot-20260103-000000.db", files
    newest = os.path.join(d, files[-1])
    assert re.fullmatch(r"snapshot-\d{8}-\d{6}\.db", files[-1])
    restored = os.path.join(tmpdir_path, "from-backup")
    m2 = Member(restored, name="r1")
    p = subprocess.run(["kcore", "etcd", "snapshot", "restore", newest, "--data-dir", restored,
                        "--name", "r1", "--initial-cluster", f"r1=http://127.0.0.1:{m2.peer_port}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{m2.peer_port}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    m2.start()
    try:
        assert etcdctl(m2.endpoint, "get", "b1").stdout.splitlines() == ["b1", "v1"]
    finally:
        m2.stop()
