"""Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes
strategic merge patch, driven by the served kinds' schemas.

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch: maps merge
recursively and `null` deletes; lists whose field has patch strategy "merge"
merge by their merge key (or as a set for primitives), others are replaced;
directives `$patch: replace|delete|merge`, `$retainKeys`,
`$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are honoured.
All functions are pure: inputs are not modified.
"""
from __future__ import annotations

import copy

from kcore.api.schema import DEFS, Definition, FieldSpec, sub_definition


class PatchError(ValueError):
    """The patch cannot be applied (kube answers 422 or 400)."""


# ------------------------------------------------------------------ merge patch --
def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ------------------------------------------------------------------- JSON patch --
def _unescape(tok: str) -> str:
    return tok.replace("~1", "/").replace("~0", "~")


def _parse_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _resolve(doc, toks: list[str]):
    cur = doc
    for t in toks:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"doc is missing path: \"/{'/'.join(toks)}\"")
            cur = cur[t]
        elif isinstance(cur, list):
            i = _index(t, len(cur), False)
            cur = cur[i]
        else:
            raise PatchError(f"doc is missing path: \"/{'/'.join(toks)}\"")
    return cur


def _index(t: str, n: int, allow_end: bool) -> int:
    if t == "-" and allow_end:
        return n
    if not t.isdigit() or (len(t) > 1 and t[0] == "0"):
        raise PatchError(f"invalid array index {t!r}")
    i = int(t)
    if i > n or (i == n and not allow_end):
        raise PatchError(f"array index out of bounds: {i}")
    return i


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError("missing 'op' in JSON patch operation")
        kind = op["op"]
        if "path" not in op or not isinstance(op["path"], str):
            raise PatchError(f"missing 'path' in JSON patch operation {kind!r}")
        toks = _parse_pointer(op["path"])
        if kind == "test":
            if _resolve(doc, toks) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
            continue
        if kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(f"missing value for {kind} operation")
            val = copy.deepcopy(op["value"])
        elif kind in ("copy", "move"):
            if not isinstance(op.get("from"), str):
                raise PatchError(f"missing 'from' for {kind} operation")
            ftoks = _parse_pointer(op["from"])
            val = copy.deepcopy(_resolve(doc, ftoks))
            if kind == "move":
                doc = _remove(doc, ftoks)
            kind = "add"
        elif kind == "remove":
            doc = _remove(doc, toks)
            continue
        else:
            raise PatchError(f"unexpected operation {kind!r}")
        if not toks:
            doc = val
            continue
        parent = _resolve(doc, toks[:-1])
        last = toks[-1]
        if isinstance(parent, dict):
            if kind == "replace" and last not in parent:
                raise PatchError(f"replace operation does not apply: doc is missing key: "
                                 f"{op['path']}")
            parent[last] = val
        elif isinstance(parent, list):
            if kind == "replace":
                parent[_index(last, len(parent), False)] = val
            else:
                parent.insert(_index(last, len(parent), True), val)
        else:
            raise PatchError(f"doc is missing path: {op['path']}")
    return doc


def _remove(doc, toks):
    if not toks:
        raise PatchError("cannot remove the document root")
    parent = _resolve(doc, toks[:-1])
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing path: "
                             f"\"/{'/'.join(toks)}\"")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), False)]
    else:
        raise PatchError("doc is missing path")
    return doc


# ------------------------------------------------------- strategic merge patch --
DIRECTIVE = "$patch"
RETAIN = "$retainKeys"
SEO = "$setElementOrder/"
DFPL = "$deleteFromPrimitiveList/"


def strategic_merge(original, patch, defname: str | None):
    """Apply a strategic merge patch to `original` for the type `defname`
    (None or an unknown type: merge-patch semantics for lists)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    d = DEFS.get(defname) if defname else None
    return _merge_map(original if isinstance(original, dict) else {}, patch, d)


def _merge_map(orig: dict, patch: dict, d: Definition | None) -> dict:
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return {k: _strip(v) for k, v in patch.items() if k != DIRECTIVE}
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}. Valid values are replace, delete, "
                         f"merge")
    out = dict(orig)
    retain = patch.get(RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list")
        keep = set(retain)
        out = {k: v for k, v in out.items() if k in keep}
    orders: dict[str, list] = {}
    for k, v in patch.items():
        if k.startswith(SEO):
            orders[k[len(SEO):]] = v
    for k, v in patch.items():
        if k in (DIRECTIVE, RETAIN) or k.startswith(SEO):
            continue
        if k.startswith(DFPL):
            field = k[len(DFPL):]
            cur = out.get(field)
            if isinstance(cur, list) and isinstance(v, list):
                out[field] = [x for x in cur if x not in v]
            continue
        if v is None:
            out.pop(k, None)
            continue
        fs = d.fields.get(k) if d is not None else None
        cur = out.get(k)
        if isinstance(v, dict):
            sub = _sub(fs)
            if fs is not None and fs.kind == "map" and v.get(DIRECTIVE) is None and \
                    sub is None:
                out[k] = _merge_plain_map(cur if isinstance(cur, dict) else {}, v)
            else:
                out[k] = _merge_map(cur if isinstance(cur, dict) else {}, v, sub)
                if not out[k] and v.get(DIRECTIVE) == "delete":
                    out.pop(k, None)
        elif isinstance(v, list):
            out[k] = _merge_list(cur if isinstance(cur, list) else [], v, fs)
        else:
            out[k] = v
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            fs = d.fields.get(field) if d is not None else None
            out[field] = _apply_order(out[field], order, fs.merge_key if fs else "")
    return out


def _merge_plain_map(cur: dict, patch: dict) -> dict:
    out = dict(cur)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _sub(fs: FieldSpec | None) -> Definition | None:
    return sub_definition(fs)


def _strip(v):
    """Drop directives from a value that replaces (no merge below it)."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items()
                if k not in (DIRECTIVE, RETAIN) and not k.startswith(SEO)
                and not k.startswith(DFPL) and x is not None}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _merge_list(cur: list, patch: list, fs: FieldSpec | None) -> list:
    strategy = fs.strategy if fs is not None else ""
    if not strategy.startswith("merge"):
        return [_strip(x) for x in patch if not (isinstance(x, dict) and x.get(DIRECTIVE))]
    for x in patch:
        if isinstance(x, dict) and x.get(DIRECTIVE) == "replace" and len(x) == 1:
            return [_strip(y) for y in patch if y is not x]
    key = fs.merge_key
    item_def = sub_definition(fs)
    if not key:
        # set of primitives: union, keeping order; {"$patch":"delete"}-free here
        out = list(cur)
        for x in patch:
            if isinstance(x, dict):
                continue
            if x not in out:
                out.append(x)
        return out
    out = list(cur)
    for x in patch:
        if not isinstance(x, dict):
            raise PatchError(f"unable to find api field in struct for a merging list: "
                             f"element {x!r} has no merge key {key!r}")
        direc = x.get(DIRECTIVE)
        if key not in x:
            if direc == "delete":
                continue
            raise PatchError(f"map: {x} does not contain declared merge key: {key}")
        kv = x[key]
        idx = next((i for i, y in enumerate(out) if isinstance(y, dict) and y.get(key) == kv),
                   None)
        if direc == "delete":
            out = [y for y in out if not (isinstance(y, dict) and y.get(key) == kv)]
            continue
        if direc == "replace":
            new = _strip({k: v for k, v in x.items() if k != DIRECTIVE})
        elif idx is not None:
            new = _merge_map(out[idx], x, item_def)
        else:
            new = _merge_map({}, x, item_def)
        if idx is None:
            out.append(new)
        else:
            out[idx] = new
    return out


def _apply_order(items: list, order, key: str) -> list:
    """$setElementOrder: items named in order come first in that order; the rest
    keep their relative order after them (the server-side items kube keeps)."""
    if not isinstance(order, list):
        return items

    def ident(x):
        if key and isinstance(x, dict):
            return ("k", repr(x.get(key)))
        return ("v", repr(x))

    wanted = [ident({key: o[key]} if key and isinstance(o, dict) and key in o else o)
              for o in order]
    pos = {w: i for i, w in enumerate(wanted)}
    ranked = [(pos.get(ident(x), len(wanted) + i), i, x) for i, x in enumerate(items)]
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [x for _, _, x in ranked]


def apply_patch(ctype: str, original: dict, patch, defname: str | None) -> dict:
    """Dispatch on the patch Content-Type (without parameters)."""
    if ctype == "application/json-patch+json":
        return json_patch(original, patch)
    if ctype == "application/merge-patch+json":
        if not isinstance(patch, dict):
            raise PatchError("merge patch must be a JSON object")
        return merge_patch(original, patch)
    if ctype == "application/strategic-merge-patch+json":
        return strategic_merge(original, patch, defname)
    raise PatchError(f"unknown patch type {ctype}")
