"""Owner references: who controls an object, and adopting or releasing it.

Adoption and release are strategic merge patches on `metadata.ownerReferences`
(merge key: uid) that also carry the object's uid, so they fail rather than
touch a different object that reuses the name.
"""
from __future__ import annotations

from kcore.client.resources import Resource


def controller_ref(obj: dict) -> dict | None:
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def owner_ref_for(owner: dict, controller: bool = True, block: bool = True) -> dict:
    md = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "name": md["name"], "uid": md["uid"], "controller": controller,
            "blockOwnerDeletion": block}


async def adopt(client, res: Resource, obj: dict, owner: dict) -> dict:
    md = obj["metadata"]
    return await client.patch(res, md["name"], {"metadata": {
        "ownerReferences": [owner_ref_for(owner)], "uid": md["uid"]}}, md.get("namespace"),
        patch_type="strategic")


async def release(client, res: Resource, obj: dict, owner_uid: str) -> dict:
    md = obj["metadata"]
    return await client.patch(res, md["name"], {"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": md["uid"]}},
        md.get("namespace"), patch_type="strategic")
