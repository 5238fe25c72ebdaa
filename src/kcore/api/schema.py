"""One schema per served type, written once, used four ways.

A compact spec per field (`"s"` string, `"[Container]@name"` a list merged by
`name`, `"{q}"` a map of quantities, `"ObjectMeta"` a reference, a trailing
`!` for required) gives:
- the OpenAPI v3 schemas that `kubectl explain` and `kubectl apply` read
  (`x-kubernetes-patch-merge-key` / `-strategy`, `x-kubernetes-group-version-kind`),
- typed decoding as kube-apiserver does it (wrong JSON types → 400, unknown
  fields pruned and reported; `fieldValidation=Strict` turns them into errors),
- strategic-merge-patch metadata (merge keys and strategies per field),
- a "free-form" escape (`*`) where kcore does not model a type in detail.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

PRIMS = {
    "s": ("string", None), "i": ("integer", "int32"), "l": ("integer", "int64"),
    "b": ("boolean", None), "n": ("number", "double"), "t": ("string", "date-time"),
    "mt": ("string", "date-time"), "q": ("quantity", None), "ios": ("intorstring", None),
    "*": ("free", None), "raw": ("raw", None), "bytes": ("string", "byte"),
}


@dataclass
class FieldSpec:
    kind: str                 # prim | ref | map | list
    prim: str = ""            # for prim
    ref: str = ""             # full definition name for ref
    item: FieldSpec | None = None
    required: bool = False
    merge_key: str = ""
    strategy: str = ""        # "", "merge", "retainKeys", "merge,retainKeys", "replace"
    description: str = ""


@dataclass
class Definition:
    name: str                 # io.k8s.api.core.v1.Pod
    description: str
    fields: dict[str, FieldSpec]
    gvk: tuple[str, str, str] | None = None
    required: list[str] = field(default_factory=list)

    @functools.cached_property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]


DEFS: dict[str, Definition] = {}
SHORT: dict[str, str] = {}


def _parse(spec: str, ns: str) -> FieldSpec:
    req = spec.endswith("!")
    if req:
        spec = spec[:-1]
    merge_key, strategy = "", ""
    if "@" in spec:
        spec, _, merge_key = spec.partition("@")
        strategy = "merge"
        if "+" in merge_key:
            merge_key, _, extra = merge_key.partition("+")
            strategy = "merge," + extra
    elif spec.endswith("%rk"):
        spec = spec[:-3]
        strategy = "retainKeys"
    if spec.startswith("[") and spec.endswith("]"):
        fs = FieldSpec("list", item=_parse(spec[1:-1], ns))
    elif spec.startswith("{") and spec.endswith("}"):
        fs = FieldSpec("map", item=_parse(spec[1:-1], ns))
    elif spec in PRIMS:
        fs = FieldSpec("prim", prim=spec)
    else:
        fs = FieldSpec("ref", ref=spec if "." in spec else f"{ns}.{spec}")
    fs.required, fs.merge_key, fs.strategy = req, merge_key, strategy
    return fs


def define(ns: str, short: str, description: str, fields: dict,
           gvk: tuple[str, str, str] | None = None) -> Definition:
    """Register `ns.short`. Values are specs or (spec, description)."""
    parsed: dict[str, FieldSpec] = {}
    required = []
    for k, v in fields.items():
        spec, desc = (v, "") if isinstance(v, str) else v
        fs = _parse(spec, ns)
        fs.description = desc
        parsed[k] = fs
        if fs.required:
            required.append(k)
    d = Definition(f"{ns}.{short}", description, parsed, gvk, required)
    DEFS[d.name] = d
    SHORT.setdefault(short, d.name)
    return d


def resolve(name: str) -> Definition:
    d = DEFS.get(name)
    if d is None and name.rsplit(".", 1)[-1] in SHORT:
        d = DEFS[SHORT[name.rsplit(".", 1)[-1]]]
    if d is None:
        raise KeyError(name)
    return d


def _fix_ref(fs: FieldSpec) -> FieldSpec:
    if fs.kind == "ref" and fs.ref not in DEFS:
        fs.ref = resolve(fs.ref).name
    if fs.item is not None:
        _fix_ref(fs.item)
    return fs


def finalize() -> None:
    """Resolve short references once all modules have defined their types."""
    for d in DEFS.values():
        for fs in d.fields.values():
            _fix_ref(fs)


# ------------------------------------------------------------------ OpenAPI v3 --
def _prim_schema(p: str) -> dict:
    t, fmt = PRIMS[p]
    if t == "quantity":
        return {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}
    if t == "intorstring":
        return {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
    if t == "free":
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if t == "raw":
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    s = {"type": t}
    if fmt:
        s["format"] = fmt
    return s


def _field_schema(fs: FieldSpec, refs: set[str]) -> dict:
    if fs.kind == "prim":
        s = _prim_schema(fs.prim)
        if fs.prim == "q":
            refs.add("io.k8s.apimachinery.pkg.api.resource.Quantity")
        elif fs.prim == "ios":
            refs.add("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    elif fs.kind == "ref":
        refs.add(fs.ref)
        s = {"allOf": [{"$ref": f"#/components/schemas/{fs.ref}"}]}
    elif fs.kind == "map":
        s = {"type": "object", "additionalProperties": _field_schema(fs.item, refs)}
    else:
        s = {"type": "array", "items": _field_schema(fs.item, refs)}
        if fs.merge_key:
            s["x-kubernetes-list-type"] = "map"
            s["x-kubernetes-list-map-keys"] = [fs.merge_key]
        elif fs.strategy.startswith("merge"):
            s["x-kubernetes-list-type"] = "set"
        else:
            s["x-kubernetes-list-type"] = "atomic"
    if fs.merge_key:
        s["x-kubernetes-patch-merge-key"] = fs.merge_key
    if fs.strategy:
        s["x-kubernetes-patch-strategy"] = fs.strategy
    if fs.description:
        s["description"] = fs.description
    return s


SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number, e.g. 100m, 128Mi.",
        "oneOf": [{"type": "string"}, {"type": "number"}]},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string", "format": "int-or-string"},
}


def openapi_schema(name: str, refs: set[str]) -> dict:
    if name in SPECIAL:
        return dict(SPECIAL[name])
    d = DEFS[name]
    s: dict = {"type": "object", "description": d.description,
               "properties": {k: _field_schema(fs, refs) for k, fs in d.fields.items()}}
    if d.required:
        s["required"] = list(d.required)
    if d.gvk:
        g, v, k = d.gvk
        s["x-kubernetes-group-version-kind"] = [{"group": g, "version": v, "kind": k}]
    return s


def openapi_components(roots: list[str]) -> dict:
    """All schemas reachable from roots, keyed by definition name."""
    out: dict[str, dict] = {}
    todo = list(roots)
    while todo:
        n = todo.pop()
        if n in out:
            continue
        refs: set[str] = set()
        out[n] = openapi_schema(n, refs)
        todo.extend(r for r in refs if r not in out)
    return out


# -------------------------------------------------------------- typed decoding --
class DecodeError(Exception):
    """The body cannot be decoded into the type (kube: 400 BadRequest)."""


_GO_TYPES = {"s": "string", "i": "int32", "l": "int64", "b": "bool", "n": "float64",
             "t": "v1.Time", "mt": "v1.MicroTime", "bytes": "[]uint8"}


def _json_type(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _mismatch(v, gotype: str, owner: str, path: str) -> DecodeError:
    import re
    path = re.sub(r"\[\d+\]", "", path)
    return DecodeError(f"json: cannot unmarshal {_json_type(v)} into Go struct field "
                       f"{owner}.{path} of type {gotype}")


def decode(obj: dict, defname: str, unknown: list[str]) -> dict:
    """Check JSON types against the definition and prune unknown fields in place
    (their paths go to `unknown`). Raises DecodeError on a type mismatch."""
    _decode_obj(obj, DEFS[defname], "", unknown)
    return obj


def _decode_obj(obj, d: Definition, path: str, unknown: list[str]) -> None:
    if not isinstance(obj, dict):
        raise _mismatch(obj, d.short, d.short, path.lstrip(".") or d.short)
    for k in list(obj):
        fs = d.fields.get(k)
        p = f"{path}.{k}" if path else k
        if fs is None:
            if k in ("apiVersion", "kind") and path == "":
                continue
            unknown.append(p)
            del obj[k]
            continue
        v = obj[k]
        if v is None:
            del obj[k]
            continue
        _decode_val(v, fs, p, d.short, unknown)


def _decode_val(v, fs: FieldSpec, path: str, owner: str, unknown: list[str]) -> None:
    if fs.kind == "ref":
        _decode_obj(v, DEFS[fs.ref], path, unknown)
    elif fs.kind == "list":
        if not isinstance(v, list):
            raise _mismatch(v, "[]" + _gotype(fs.item), owner, path)
        for i, x in enumerate(v):
            if x is None and fs.item.kind != "prim":
                continue
            _decode_val(x, fs.item, f"{path}[{i}]", owner, unknown)
    elif fs.kind == "map":
        if not isinstance(v, dict):
            raise _mismatch(v, "map[string]" + _gotype(fs.item), owner, path)
        for x in v.values():
            if x is None:
                continue
            _decode_val(x, fs.item, path, owner, unknown)
    else:
        p = fs.prim
        if p in ("s", "t", "mt", "bytes"):
            if not isinstance(v, str):
                raise _mismatch(v, _GO_TYPES[p], owner, path)
        elif p in ("i", "l"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                    isinstance(v, float) and not v.is_integer()):
                raise _mismatch(v, _GO_TYPES[p], owner, path)
        elif p == "n":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _mismatch(v, "float64", owner, path)
        elif p == "b":
            if not isinstance(v, bool):
                raise _mismatch(v, "bool", owner, path)
        elif p == "q":
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise DecodeError(f"quantities must match the regular expression "
                                  f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' ({path})")
        elif p == "ios":
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise _mismatch(v, "intstr.IntOrString", owner, path)
        elif p == "*":
            if not isinstance(v, dict):
                raise _mismatch(v, "map[string]interface {}", owner, path)


def _gotype(fs: FieldSpec) -> str:
    if fs.kind == "prim":
        return _GO_TYPES.get(fs.prim, "interface {}")
    if fs.kind == "ref":
        return fs.ref.rsplit(".", 1)[-1]
    if fs.kind == "list":
        return "[]" + _gotype(fs.item)
    return "map[string]" + _gotype(fs.item)


# ------------------------------------------------------ strategic merge metadata --
def field_of(d: Definition | None, key: str) -> FieldSpec | None:
    return None if d is None else d.fields.get(key)


def sub_definition(fs: FieldSpec | None) -> Definition | None:
    """The Definition of an object field, a list's items or a map's values."""
    while fs is not None and fs.kind in ("list", "map"):
        fs = fs.item
    if fs is not None and fs.kind == "ref":
        return DEFS.get(fs.ref)
    return None
