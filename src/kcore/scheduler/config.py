"""KubeSchedulerConfiguration-style profiles: which plugins run, with what weights and args.

Accepted (YAML or an already-parsed dict)::

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 100          # kcore default: score every feasible node
    profiles:
    - schedulerName: default-scheduler
      plugins:
        multiPoint: {enabled: [...], disabled: [...]}
        filter:     {enabled: [{name: NodeLabel}], disabled: [{name: NodePorts}]}
        score:      {enabled: [{name: LeastRequestedPriority, weight: 2}],
                     disabled: [{name: "*"}]}
      pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: LeastAllocated,
                                 resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]}}
      - name: NodeLabel
        args: {presentLabelsPreference: [zone]}

Merging follows kube: start from the default plugins of each extension point,
drop the disabled ones (``*`` drops them all), then an enabled plugin already
present keeps its place with the new weight and a new one is appended. The
seed's names (``LeastRequestedPriority``, ``BalancedResourceAllocation``,
``CalculateNodeLabelPriority``, ...) are aliases of the plugins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .plugins import REGISTRY, canonical_name

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_SCORES",
    "ConfigError",
    "Profile",
    "SchedulerConfig",
    "load_config",
]

DEFAULT_FILTERS = ("NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                   "NodePorts", "NodeResourcesFit")
DEFAULT_SCORES = (("TaintToleration", 3), ("NodeAffinity", 2), ("NodeResourcesFit", 1),
                  ("NodeResourcesBalancedAllocation", 1))
_ALIAS_ARGS = {
    "MostRequestedPriority": {"scoringStrategy": {"type": "MostAllocated"}},
    "NodeResourcesMostAllocated": {"scoringStrategy": {"type": "MostAllocated"}},
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    scheduler_name: str
    filters: tuple          # plugin instances, in the order they run
    scores: tuple           # (plugin instance, weight)
    percentage_of_nodes_to_score: int = 100

    def weight(self, name: str) -> int:
        for p, w in self.scores:
            if p.name == name:
                return w
        return 0

    def plugin(self, name: str):
        for p in self.filters:
            if p.name == name:
                return p
        for p, _w in self.scores:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class SchedulerConfig:
    profiles: tuple[Profile, ...] = field(default_factory=tuple)

    @classmethod
    def default(cls) -> SchedulerConfig:
        return load_config({})

    def profile(self, scheduler_name: str) -> Profile | None:
        for p in self.profiles:
            if p.scheduler_name == scheduler_name:
                return p
        return None


def _names(entries) -> list[tuple[str, str, int | None]]:
    out = []
    for e in entries or ():
        if isinstance(e, str):
            e = {"name": e}
        raw = str(e["name"])
        w = e.get("weight")
        out.append((raw, canonical_name(raw) if raw != "*" else "*",
                    int(w) if w is not None else None))
    return out


def _merge(defaults: list[tuple[str, int]], setcfg: dict | None,
           implements) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Apply one PluginSet ({enabled, disabled}) to an ordered [(name, weight)] list."""
    aliases: dict[str, str] = {}
    if not setcfg:
        return defaults, aliases
    disabled = {c for _r, c, _w in _names(setcfg.get("disabled"))}
    out = [] if "*" in disabled else [(n, w) for n, w in defaults if n not in disabled]
    for raw, name, w in _names(setcfg.get("enabled")):
        if name not in REGISTRY:
            raise ConfigError(f"unknown plugin {raw!r}")
        if not implements(name):
            continue
        aliases[name] = raw
        for i, (n, old) in enumerate(out):
            if n == name:
                out[i] = (n, w if w is not None else old)
                break
        else:
            out.append((name, w if w is not None and w > 0 else 1))
    return out, aliases


def _profile(doc: dict, top_percentage: int) -> Profile:
    plugins = doc.get("plugins") or {}
    filters = [(n, 0) for n in DEFAULT_FILTERS]
    scores = list(DEFAULT_SCORES)
    is_filter = lambda n: hasattr(REGISTRY[n], "filter")
    is_score = lambda n: hasattr(REGISTRY[n], "score")
    aliases: dict[str, str] = {}
    mp = plugins.get("multiPoint")
    if mp:
        filters, a1 = _merge(filters, mp, is_filter)
        scores, a2 = _merge(scores, mp, is_score)
        aliases |= a1 | a2
    filters, a1 = _merge(filters, plugins.get("filter"), is_filter)
    scores, a2 = _merge(scores, plugins.get("score"), is_score)
    aliases |= a1 | a2

    args: dict[str, dict] = {}
    for name, raw in aliases.items():
        if raw in _ALIAS_ARGS:
            args[name] = dict(_ALIAS_ARGS[raw])
    for pc in doc.get("pluginConfig") or ():
        name = canonical_name(str(pc["name"]))
        if name not in REGISTRY:
            raise ConfigError(f"pluginConfig for unknown plugin {pc['name']!r}")
        merged = dict(args.get(name) or {})
        merged.update(pc.get("args") or {})
        args[name] = merged
    instances: dict[str, object] = {}

    def inst(name: str):
        if name not in instances:
            try:
                instances[name] = REGISTRY[name](args.get(name))
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{name}: invalid args: {e}") from e
        return instances[name]

    pct = doc.get("percentageOfNodesToScore")
    pct = top_percentage if pct is None else int(pct)
    if not 0 <= pct <= 100:
        raise ConfigError("percentageOfNodesToScore must be in [0, 100]")
    return Profile(
        scheduler_name=str(doc.get("schedulerName") or "default-scheduler"),
        filters=tuple(inst(n) for n, _ in filters),
        scores=tuple((inst(n), int(w)) for n, w in scores if w),
        percentage_of_nodes_to_score=pct,
    )


def load_config(source: str | Path | dict | None) -> SchedulerConfig:
    """A config from YAML text, a file path, or a parsed dict (``None``/``{}``: defaults)."""
    if source is None:
        doc: dict = {}
    elif isinstance(source, dict):
        doc = source
    else:
        text = Path(source).read_text() if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and Path(source).exists()) else source
        doc = yaml.safe_load(text) or {}
    kind = doc.get("kind")
    if kind not in (None, "KubeSchedulerConfiguration"):
        raise ConfigError(f"expected kind KubeSchedulerConfiguration, got {kind!r}")
    top = doc.get("percentageOfNodesToScore")
    top = 100 if top is None else int(top)
    profiles = doc.get("profiles") or [{}]
    out = tuple(_profile(p or {}, top) for p in profiles)
    names = [p.scheduler_name for p in out]
    if len(set(names)) != len(names):
        raise ConfigError("duplicate schedulerName in profiles")
    return SchedulerConfig(out)
