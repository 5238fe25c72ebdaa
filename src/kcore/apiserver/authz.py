"""Authorization on the secure port: kube's authorizer chain and ABAC.

`--authorization-mode` is a comma list evaluated in order (`Chain`): the first
member that allows or denies decides; NoOpinion passes to the next; nobody
allowing is 403 with the members' reasons. As in kube-apiserver, members of
`system:masters` are always allowed (the privileged-group authorizer leads).

ABAC (`--authorization-policy-file`) reads one Policy per line, in
`abac.authorization.kubernetes.io/v1beta1` form or kube's unversioned v0 form
(converted the way kube converts it); blank lines and `#` comments skipped.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from kcore.apiserver.auth import (
    ALL_RULES,
    ALLOW,
    AUTHENTICATED,
    DENY,
    MASTERS,
    NO_OPINION,
    AlwaysAllow,
    AlwaysDeny,
    DecidingAuthorizer,
    RequestInfo,
    Rules,
    User,
)

log = logging.getLogger(__name__)

ABAC_VERSION = "abac.authorization.kubernetes.io/v1beta1"
READ_VERBS = ("get", "list", "watch")
MODES = ("AlwaysAllow", "AlwaysDeny", "ABAC", "RBAC", "Node")


class PrivilegedGroups(DecidingAuthorizer):
    def __init__(self, groups: tuple[str, ...] = (MASTERS,)):
        self.groups = set(groups)

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        if self.groups.intersection(user.groups):
            return ALLOW, ""
        return NO_OPINION, ""


class Chain(DecidingAuthorizer):
    def __init__(self, members: list[DecidingAuthorizer], privileged: bool = True):
        self.members = ([PrivilegedGroups()] if privileged else []) + list(members)

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        reasons = []
        for m in self.members:
            d, reason = await m.decide(user, info)
            if d in (ALLOW, DENY):
                return d, reason
            if reason:
                reasons.append(reason)
        return NO_OPINION, "\n".join(reasons)

    async def rules_for(self, user: User, namespace: str) -> Rules:
        res: list = []
        non: list = []
        incomplete = False
        errors = []
        for m in self.members:
            if isinstance(m, PrivilegedGroups):
                continue
            r = await m.rules_for(user, namespace)
            res += r.resource
            non += r.non_resource
            incomplete = incomplete or r.incomplete
            if r.error:
                errors.append(r.error)
        return Rules(tuple(res), tuple(non), incomplete, ", ".join(errors))

    def member(self, cls) -> DecidingAuthorizer | None:
        return next((m for m in self.members if isinstance(m, cls)), None)


class NoOpinion(DecidingAuthorizer):
    """Modes kcore accepts but does not implement (Node): never decides."""

    def __init__(self, mode: str):
        self.mode = mode

    async def rules_for(self, user: User, namespace: str) -> Rules:
        return Rules(incomplete=False)


# --------------------------------------------------------------------------- ABAC --
@dataclass(frozen=True)
class Policy:
    """One ABAC policy's spec (abac.authorization.kubernetes.io/v1beta1)."""
    user: str = ""
    group: str = ""
    readonly: bool = False
    api_group: str = ""
    resource: str = ""
    namespace: str = ""
    non_resource_path: str = ""

    def subject_matches(self, user: User) -> bool:
        matched = False
        if self.user:
            if self.user == "*":
                matched = True
            elif self.user != user.name:
                return False
            else:
                matched = True
        if self.group:
            if self.group == "*":
                matched = True
            elif self.group not in user.groups:
                return False
            else:
                matched = True
        return matched

    def verb_matches(self, info: RequestInfo) -> bool:
        return info.verb in READ_VERBS or not self.readonly

    def resource_matches(self, info: RequestInfo) -> bool:
        return (info.is_resource and self.namespace in ("*", info.namespace)
                and self.resource in ("*", info.resource)
                and self.api_group in ("*", info.group))

    def non_resource_matches(self, info: RequestInfo) -> bool:
        if info.is_resource or not self.non_resource_path:
            return False
        p = self.non_resource_path
        return p == "*" or p == info.path or (p.endswith("*") and
                                              info.path.startswith(p.rstrip("*")))

    def matches(self, user: User, info: RequestInfo) -> bool:
        return (self.subject_matches(user) and self.verb_matches(info)
                and (self.resource_matches(info) or self.non_resource_matches(info)))


class PolicyError(ValueError):
    pass


def parse_policy_line(line: str) -> Policy:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise PolicyError(f"invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise PolicyError("a policy must be a JSON object")
    if "apiVersion" not in raw and "kind" not in raw:
        return _from_v0(raw)
    if raw.get("apiVersion") != ABAC_VERSION or raw.get("kind") != "Policy":
        raise PolicyError(f"unrecognized policy {raw.get('apiVersion')!r}/{raw.get('kind')!r}; "
                          f"expected apiVersion {ABAC_VERSION!r}, kind 'Policy'")
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise PolicyError("policy has no spec")
    return Policy(user=_s(spec, "user"), group=_s(spec, "group"),
                  readonly=bool(spec.get("readonly", False)), api_group=_s(spec, "apiGroup"),
                  resource=_s(spec, "resource"), namespace=_s(spec, "namespace"),
                  non_resource_path=_s(spec, "nonResourcePath"))


def _s(d: dict, k: str) -> str:
    v = d.get(k, "")
    if not isinstance(v, str):
        raise PolicyError(f"{k} must be a string")
    return v


def _from_v0(raw: dict) -> Policy:
    user, group = _s(raw, "user"), _s(raw, "group")
    ns, res = _s(raw, "namespace"), _s(raw, "resource")
    if (not user and not group) or user == "*" or group == "*":
        user, group = ("" if user == "*" or group == "*" else user), AUTHENTICATED
    return Policy(user=user, group=group, readonly=bool(raw.get("readonly", False)),
                  api_group="*", resource=res or "*", namespace=ns or "*",
                  non_resource_path="*" if not ns and not res else "")


def load_policy_file(path: str) -> list[Policy]:
    out = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            t = line.strip()
            if not t or t.startswith("#"):
                continue
            try:
                out.append(parse_policy_line(t))
            except PolicyError as e:
                raise PolicyError(f"{path}:{lineno}: {e}") from None
    return out


class ABAC(DecidingAuthorizer):
    def __init__(self, policies: list[Policy]):
        self.policies = policies

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        for p in self.policies:
            if p.matches(user, info):
                return ALLOW, ""
        return NO_OPINION, "No policy matched."

    async def rules_for(self, user: User, namespace: str) -> Rules:
        res, non = [], []
        for p in self.policies:
            if not p.subject_matches(user):
                continue
            verbs = list(READ_VERBS) if p.readonly else ["*"]
            if p.resource and p.namespace in ("*", namespace):
                res.append({"verbs": verbs, "apiGroups": [p.api_group],
                            "resources": [p.resource]})
            if p.non_resource_path:
                non.append({"verbs": verbs, "nonResourceURLs": [p.non_resource_path]})
        return Rules(tuple(res), tuple(non))


# ------------------------------------------------------------------------ building --
class ModeError(ValueError):
    pass


def build_chain(modes: list[str], policy_file: str = "", rbac=None) -> Chain:
    """The chain for --authorization-mode; `rbac` is the RBAC authorizer (built by
    the server, which owns the registries it reads)."""
    members: list[DecidingAuthorizer] = []
    seen = set()
    for m in modes:
        if m in seen:
            raise ModeError(f"authorization-mode {m!r} specified more than once")
        seen.add(m)
        if m == "AlwaysAllow":
            members.append(AlwaysAllow())
        elif m == "AlwaysDeny":
            members.append(AlwaysDeny())
        elif m == "ABAC":
            if not policy_file:
                raise ModeError("authorization-mode ABAC requires --authorization-policy-file")
            members.append(ABAC(load_policy_file(policy_file)))
        elif m == "RBAC":
            if rbac is None:
                raise ModeError("RBAC authorizer not available")
            members.append(rbac)
        elif m == "Node":
            log.warning("authorization mode Node is accepted but not implemented (no opinion)")
            members.append(NoOpinion("Node"))
        else:
            raise ModeError(f"unknown authorization mode {m!r} (supported: {', '.join(MODES)})")
    if policy_file and "ABAC" not in seen:
        raise ModeError("cannot specify --authorization-policy-file without mode ABAC")
    return Chain(members)


__all__ = ["ABAC", "ALL_RULES", "Chain", "Policy", "PrivilegedGroups", "build_chain",
           "load_policy_file"]
