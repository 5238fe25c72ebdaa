"""Patches: strategic merge (incl. kubectl's real apply patches), merge, JSON patch."""
from __future__ import annotations

import pytest

from kcore.api import kinds
from kcore.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge

kinds.load()
POD = "io.k8s.api.core.v1.Pod"
DEPLOY = "io.k8s.api.apps.v1.Deployment"


def live_pod():
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"},
                                                           {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "side:1"}],
                "tolerations": [{"key": "k", "operator": "Exists"}]}}


def test_merge_key_lists_merge_by_name():
    out = strategic_merge(live_pod(), {"spec": {"containers": [
        {"name": "side", "image": "side:2"}]}}, POD)
    cs = out["spec"]["containers"]
    assert [c["name"] for c in cs] == ["app", "side"]
    assert cs[1]["image"] == "side:2" and cs[0]["image"] == "app:1"


def test_kubectl_apply_patch_with_set_element_order_and_delete():
    # what kubectl apply sends after removing container "side", env A, adding env C
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
             "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"},
                     {"$patch": "delete", "name": "A"}],
             "name": "app"},
            {"$patch": "delete", "name": "side"}]}}
    out = strategic_merge(live_pod(), patch, POD)
    cs = out["spec"]["containers"]
    assert [c["name"] for c in cs] == ["app"]
    assert cs[0]["env"] == [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert cs[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_set_element_order_reorders():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}}
    out = strategic_merge(live_pod(), patch, POD)
    assert [c["name"] for c in out["spec"]["containers"]] == ["side", "app"]


def test_null_deletes_and_label_map_merge():
    out = strategic_merge(live_pod(), {"metadata": {"labels": {"a": None, "c": "3"}}}, POD)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}


def test_non_merge_list_is_replaced():
    out = strategic_merge(live_pod(), {"spec": {"tolerations": [{"key": "z"}]}}, POD)
    assert out["spec"]["tolerations"] == [{"key": "z"}]


def test_patch_replace_directives():
    out = strategic_merge(live_pod(), {"metadata": {"labels": {"$patch": "replace",
                                                               "only": "x"}}}, POD)
    assert out["metadata"]["labels"] == {"only": "x"}
    out = strategic_merge(live_pod(), {"spec": {"containers": [
        {"name": "new", "image": "n"}, {"$patch": "replace"}]}}, POD)
    assert out["spec"]["containers"] == [{"name": "new", "image": "n"}]


def test_primitive_set_merge_and_delete_from_primitive_list():
    out = strategic_merge(live_pod(), {"metadata": {"finalizers": ["y"]}}, POD)
    assert out["metadata"]["finalizers"] == ["x", "y"]
    out = strategic_merge(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
                          POD)
    assert out["metadata"]["finalizers"] == ["y"]


def test_retain_keys_strategy():
    live = {"spec": {"strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%"}}}}
    out = strategic_merge(live, {"spec": {"strategy": {"$retainKeys": ["type"],
                                                       "type": "Recreate"}}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_missing_merge_key_is_an_error():
    with pytest.raises(PatchError):
        strategic_merge(live_pod(), {"spec": {"containers": [{"image": "x"}]}}, POD)


def test_inputs_not_modified():
    live = live_pod()
    before = repr(live)
    strategic_merge(live, {"spec": {"containers": [{"name": "app", "image": "z"}]}}, POD)
    assert repr(live) == before


def test_merge_patch():
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3},
                                                          "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}


def test_json_patch():
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3},
                           {"op": "replace", "path": "/b/c", "value": 2},
                           {"op": "test", "path": "/b/c", "value": 2},
                           {"op": "move", "from": "/b/c", "path": "/d"},
                           {"op": "remove", "path": "/a/0"}])
    assert out == {"a": [2, 3], "b": {}, "d": 2}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/b/c", "value": 9}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])
    with pytest.raises(PatchError):
        json_patch(doc, {"op": "add"})
