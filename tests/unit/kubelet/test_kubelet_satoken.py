"""Service-account token volumes, the parts without a cluster: what the admission
plugin adds, how the kubelet renders and renews a projected volume, the atomic
writes, the in-cluster env, the mount-namespace wrapper (run for real as root)
and the root CA ConfigMap."""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess

import pytest

from kcore.apiserver.admission import (
    SA_MOUNT_PATH,
    add_api_access_volume,
    api_access_volume,
    automount,
)
from kcore.client.errors import NotFound
from kcore.controllers import rootca
from kcore.kubelet import projected as P
from kcore.kubelet.agent import api_env_from
from kcore.kubelet.atomicwriter import write_files
from kcore.kubelet.runtime import mounts as M
from kcore.kubelet.runtime.base import Mount
from kcore.kubelet.volumes import PodVolumes, volume_dir

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def pod(**spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "team", "uid": "u-1"},
            "spec": {"serviceAccountName": "robot", "containers": [{"name": "c"}], **spec}}


# -- admission ----------------------------------------------------------------------------
def test_automount_pod_overrides_account_default_true():
    assert automount({}, {}) is True
    assert automount({}, {"automountServiceAccountToken": False}) is False
    assert automount({"automountServiceAccountToken": True},
                     {"automountServiceAccountToken": False}) is True
    assert automount({"automountServiceAccountToken": False}, {}) is False


def test_api_access_volume_goes_to_every_container_without_a_mount_there():
    spec = {"initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
                {"name": "mine", "mountPath": SA_MOUNT_PATH}]}]}
    assert add_api_access_volume(spec, "x2z4q")
    assert spec["volumes"] == [api_access_volume("kube-api-access-x2z4q")]
    want = {"name": "kube-api-access-x2z4q", "readOnly": True, "mountPath": SA_MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [want]
    assert spec["containers"][0]["volumeMounts"] == [want]
    assert len(spec["containers"][1]["volumeMounts"]) == 1
    assert not add_api_access_volume({"containers": spec["containers"][1:]}, "zzzzz")


# -- rendering ----------------------------------------------------------------------------
def test_kube_api_access_volume_renders_token_ca_and_namespace():
    p = pod()
    vol = api_access_volume("kube-api-access-abcde")["projected"]
    cm = {"data": {"ca.crt": CA}}
    files = P.render(vol, p, {"token": "jwt"}, {("configmaps", "kube-root-ca.crt"): cm})
    assert files == {"token": b"jwt", "ca.crt": CA.encode(), "namespace": b"team"}
    with pytest.raises(P.VolumeError, match='configmap "kube-root-ca.crt" not found'):
        P.render(vol, p, {"token": "jwt"}, {("configmaps", "kube-root-ca.crt"): None})


def test_secret_items_optional_sources_and_bad_paths():
    sec = {"data": {"k": base64.b64encode(b"\x00v").decode()}}
    vol = {"sources": [{"secret": {"name": "s"}},
                       {"configMap": {"name": "gone", "optional": True}},
                       {"configMap": {"name": "cm", "items": [
                           {"key": "a", "path": "dir/a"}, {"key": "nope", "path": "x"}],
                           "optional": True}}]}
    files = P.render(vol, pod(), {}, {("secrets", "s"): sec, ("configmaps", "gone"): None,
                                       ("configmaps", "cm"): {"data": {"a": "1"}}})
    assert files == {"k": b"\x00v", "dir/a": b"1"}
    with pytest.raises(P.VolumeError, match="non-existent config key: nope"):
        P.render({"sources": [{"configMap": {"name": "cm", "items": [{"key": "nope"}]}}]},
                 pod(), {}, {("configmaps", "cm"): {"data": {}}})
    with pytest.raises(P.VolumeError, match="invalid path"):
        P.render({"sources": [{"serviceAccountToken": {"path": "../escape"}}]}, pod(),
                 {"../escape": "t"}, {})


def test_token_request_is_bound_to_the_pod():
    body = P.token_request(pod(), {"expirationSeconds": 3607, "path": "token"})
    assert body["spec"] == {"expirationSeconds": 3607, "audiences": [], "boundObjectRef": {
        "kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"}}
    assert P.token_request(pod(), {"audience": "vault"})["spec"]["audiences"] == ["vault"]


def test_refresh_at_eighty_percent_or_a_day():
    assert P.refresh_at(1000.0, 1000.0 + 3607) == pytest.approx(1000 + 0.8 * 3607)
    assert P.refresh_at(0.0, 7 * 86400) == 86400


# -- writing and renewing -----------------------------------------------------------------
def test_atomic_writes_swap_all_files_at_once(tmp_path):
    d = str(tmp_path / "vol")
    write_files(d, {"token": b"one", "sub/x": b"1"})
    write_files(d, {"token": b"two", "ca.crt": b"c"})
    assert open(os.path.join(d, "token")).read() == "two"
    assert open(os.path.join(d, "ca.crt")).read() == "c"
    assert not os.path.lexists(os.path.join(d, "sub"))
    hidden = [n for n in os.listdir(d) if n.startswith("..")]
    assert len(hidden) == 2 and "..data" in hidden     # ..data and the one it points to


class FakeClient:
    def __init__(self):
        self.calls = []
        self.fail = None

    async def request_json(self, method, path, body=None, **kw):
        self.calls.append((method, path, body))
        if self.fail:
            raise self.fail
        return {"status": {"token": f"token-{len(self.calls)}",
                           "expirationTimestamp": "1970-01-01T01:00:07Z"}}


def test_pod_volume_is_written_then_renewed_at_eighty_percent(tmp_path):
    now = [0.0]
    client = FakeClient()
    p = pod(volumes=[api_access_volume("kube-api-access-q")])
    p["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "kube-api-access-q", "mountPath": SA_MOUNT_PATH, "readOnly": True}]

    async def lookup(kind, ns, name):
        return {"data": {"ca.crt": CA}} if (kind, ns, name) == (
            "configmaps", "team", "kube-root-ca.crt") else None

    vols = PodVolumes(client, p, str(tmp_path), lookup, lambda: now[0])
    assert vols.mounts(p["spec"]["containers"][0]) == []      # not written yet

    async def go():
        left = await vols.sync()
        assert left == pytest.approx(0.8 * 3607)
        assert await vols.sync() == pytest.approx(0.8 * 3607)        # nothing due
        assert len(client.calls) == 1
        method, path, body = client.calls[0]
        assert (method, path) == ("POST", "/api/v1/namespaces/team/serviceaccounts/robot/token")
        assert body["spec"]["boundObjectRef"]["uid"] == "u-1"
        d = volume_dir(str(tmp_path), "kube-api-access-q")
        assert open(os.path.join(d, "token")).read() == "token-1"
        now[0] = 0.8 * 3607 + 1
        await vols.sync()
        assert open(os.path.join(d, "token")).read() == "token-2"
        assert open(os.path.join(d, "namespace")).read() == "team"
        client.fail = NotFound("nope")
        now[0] = 10_000.0
        with pytest.raises(P.VolumeError, match="failed to fetch token"):
            await vols.sync()
        assert open(os.path.join(d, "token")).read() == "token-2"     # kept
        return d

    d = asyncio.run(go())
    assert vols.mounts(p["spec"]["containers"][0]) == [Mount(d, SA_MOUNT_PATH, True)]


# -- in-cluster env -----------------------------------------------------------------------
def test_api_env_from_endpoints_else_service():
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.5"}],
                       "ports": [{"name": "https", "port": 6443}]}]}
    assert api_env_from(ep, None) == {
        "KUBERNETES_SERVICE_HOST": "10.0.0.5", "KUBERNETES_SERVICE_PORT": "6443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "6443", "KUBERNETES_PORT": "tcp://10.0.0.5:6443"}
    svc = {"spec": {"clusterIP": "fd00::1"}}
    assert api_env_from({"subsets": []}, svc)["KUBERNETES_PORT"] == "tcp://[fd00::1]:443"
    assert api_env_from(None, None) == {}


# -- the mount namespace ------------------------------------------------------------------
def test_wrap_argv_shape():
    assert M.wrap_argv(["sleep", "1"], []) == ["sleep", "1"]
    argv = M.wrap_argv(["cat", "x"], [Mount("/h", "/c", True), Mount("/h2", "/c2", False)])
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[-9:] == ["/h", "/c", "ro", "/h2", "/c2", "rw", "--", "cat", "x"]


@pytest.mark.skipif(not M.can_use_mount_namespaces(), reason="needs root and unshare")
def test_bind_mount_is_private_to_the_container(tmp_path):
    src, target = tmp_path / "vol", tmp_path / "mnt"
    src.mkdir()
    target.mkdir()
    (src / "token").write_text("secret")
    argv = M.wrap_argv(["sh", "-c", f"cat {target}/token; echo x > {target}/w"],
                       [Mount(str(src), str(target), True)])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert p.stdout.startswith("secret"), p
    assert "Read-only" in p.stderr
    assert os.listdir(target) == []           # the host sees nothing there


def test_pod_root_links_without_mount_namespaces(tmp_path):
    root = tmp_path / "root"
    M.link_pod_root(str(root), [Mount(str(tmp_path), SA_MOUNT_PATH, True)])
    assert os.readlink(root / SA_MOUNT_PATH.lstrip("/")) == str(tmp_path)


# -- kube-root-ca.crt ---------------------------------------------------------------------
def test_root_ca_config_map_desired_and_repaired():
    cm = rootca.desired("team", CA)
    assert cm["metadata"]["name"] == "kube-root-ca.crt" and cm["data"] == {"ca.crt": CA}
    assert rootca.repaired(cm, CA) is None
    edited = {**cm, "data": {"ca.crt": "x", "other": "y"}}
    fixed = rootca.repaired(edited, CA)
    assert fixed["data"] == {"ca.crt": CA} and edited["data"]["other"] == "y"


def test_root_ca_publisher_is_a_default_controller():
    from kcore.controllers.context import Options
    from kcore.controllers.manager import select_controllers
    assert "root-ca-certificate-publisher-controller" in select_controllers(["*"], Options())
    assert select_controllers(["root-ca-cert-publisher"], Options()) == [
        "root-ca-certificate-publisher-controller"]


@pytest.mark.skipif(not M.can_use_mount_namespaces(), reason="needs root and unshare")
def test_process_runtime_container_and_exec_see_the_volume(tmp_path):
    from kcore.kubelet.runtime.base import PodRef, Sandbox
    from kcore.kubelet.runtime.process import ProcessRuntime
    vol, target = tmp_path / "vol", tmp_path / "mnt" / "sa"
    vol.mkdir()
    (vol / "token").write_text("t1")
    sb = Sandbox(PodRef("ns", "p", "uid-1"), "127.0.0.1")
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"}}

    async def go():
        rt = ProcessRuntime(str(tmp_path / "root"))
        c = await rt.start_container(pod, {"name": "c", "command": ["sleep", "30"]}, sb, 0,
                                     {"PATH": os.environ["PATH"]},
                                     (Mount(str(vol), str(target), True),))
        try:
            for _ in range(50):             # the bind happens just before the exec
                code, out = await rt.exec(c, ["cat", f"{target}/token"], 5)
                if code == 0:
                    break
                await asyncio.sleep(0.05)
            assert (code, out) == (0, "t1")
            (vol / "token").write_text("t2")       # updates show through the bind
            assert await rt.exec(c, ["cat", f"{target}/token"], 5) == (0, "t2")
        finally:
            await rt.close()

    asyncio.run(go())
    assert os.listdir(target) == []
