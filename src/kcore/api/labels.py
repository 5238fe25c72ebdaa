"""Label and field selectors: parsing kube's text syntax and matching.

`parse_label_selector("app=web,tier in (a,b),!canary")` gives requirements;
`from_label_selector(obj["spec"]["selector"])` converts a metav1.LabelSelector;
`matches(reqs, labels)` tests a map. Field selectors reuse the same grammar
restricted to `=`, `==` and `!=`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                 # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        op = self.op
        if op == "=":
            return has and v == self.values[0]
        if op == "!=":
            return not has or v != self.values[0]
        if op == "in":
            return has and v in self.values
        if op == "notin":
            return not has or v not in self.values
        if op == "exists":
            return has
        if op == "!":
            return not has
        if op in ("gt", "lt"):
            try:
                a, b = int(v), int(self.values[0])
            except (TypeError, ValueError):
                return False
            return a > b if op == "gt" else a < b
        return False


_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|[^\s,()=!]+)")


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break
        if m.group(1):
            out.append(m.group(1))
        pos = m.end()
        if pos < len(text) and text[pos:].strip() == "":
            break
    return out


def parse_label_selector(text: str) -> list[Requirement]:
    """kube's labels.Parse; raises SelectorError with a kube-like message."""
    text = text or ""
    if not text.strip():
        return []
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise SelectorError(f"unable to parse requirement: {msg}")

    while i < len(toks):
        t = toks[i]
        if t == "!":
            need(i + 1 < len(toks), "found '', expected: identifier")
            reqs.append(Requirement(toks[i + 1], "!"))
            i += 2
        else:
            key = t
            need(key not in (",", "(", ")", "=", "==", "!="),
                 f"found '{key}', expected: !, identifier, or 'end of string'")
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = toks[i]
                i += 1
                if op in ("=", "==", "!="):
                    val = ""
                    if i < len(toks) and toks[i] not in (",",):
                        val = toks[i]
                        i += 1
                    reqs.append(Requirement(key, "!=" if op == "!=" else "=", (val,)))
                elif op in ("in", "notin"):
                    need(i < len(toks) and toks[i] == "(", f"found '{toks[i] if i < len(toks) else ''}', expected: '('")
                    i += 1
                    vals = []
                    while i < len(toks) and toks[i] != ")":
                        if toks[i] != ",":
                            vals.append(toks[i])
                        i += 1
                    need(i < len(toks), "found '', expected: ')'")
                    i += 1
                    reqs.append(Requirement(key, op, tuple(vals)))
                elif op in ("gt", "lt"):
                    need(i < len(toks), "found '', expected: integer")
                    reqs.append(Requirement(key, op, (toks[i],)))
                    i += 1
                else:
                    raise SelectorError(
                        f"unable to parse requirement: found '{op}', expected: "
                        f"in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            need(toks[i] == ",", f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    for r in reqs:
        if r.op in ("=", "!=", "in", "notin"):
            for v in r.values:
                if len(v) > 63:
                    raise SelectorError(f"invalid label value: \"{v}\": must be no more than "
                                        "63 characters")
    return reqs


def parse_field_selector(text: str) -> list[Requirement]:
    text = text or ""
    reqs = []
    for part in _split_unescaped(text):
        part = part.strip()
        if not part:
            continue
        for op, name in (("!=", "!="), ("==", "="), ("=", "=")):
            if op in part:
                k, _, v = part.partition(op)
                reqs.append(Requirement(k.strip(), name, (_unescape(v.strip()),)))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
    return reqs


def _split_unescaped(text: str) -> list[str]:
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def from_label_selector(sel: dict | None) -> list[Requirement] | None:
    """metav1.LabelSelector → requirements; None selects nothing, {} everything."""
    if sel is None:
        return None
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        op = ops.get(e.get("operator"))
        if op is None:
            raise SelectorError(f"{e.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(e.get("key", ""), op, tuple(e.get("values") or ())))
    return reqs


def from_map(sel: dict | None) -> list[Requirement]:
    return [Requirement(k, "=", (v,)) for k, v in sorted((sel or {}).items())]


def matches(reqs: list[Requirement] | None, labels: dict | None) -> bool:
    if reqs is None:
        return False
    lab = labels or {}
    for r in reqs:
        if not r.matches(lab):
            return False
    return True


def format_selector(reqs: list[Requirement]) -> str:
    parts = []
    for r in reqs:
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op == "!=":
            parts.append(f"{r.key}!={r.values[0]}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
        elif r.op == "exists":
            parts.append(r.key)
        elif r.op == "!":
            parts.append(f"!{r.key}")
        else:
            parts.append(f"{r.key} {r.op} {r.values[0]}")
    return ",".join(parts)
