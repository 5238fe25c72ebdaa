"""The reference scheduler: dicts and loops over the same plugins, obviously correct.

It keeps nodes and pods in plain dicts, recomputes every node's usage from
its pods each cycle, runs each plugin's per-node ``filter``/``score`` and
``normalize`` in profile order, and breaks ties as ``tiebreak`` describes.
The fast scheduler (``core.Scheduler``) must make exactly the same decisions;
the tests drive both with the same events and compare.
"""
from __future__ import annotations

from .config import SchedulerConfig, load_config
from .decision import Decision
from .diagnosis import NO_NODES, format_fit_error
from .framework import Code, NodeInfo, num_feasible_nodes_to_find
from .nodeinfo import NodeSpec, node_spec
from .podinfo import PodInfo, pod_info, pod_key
from .tiebreak import MASK64, draw

__all__ = ["ReferenceScheduler"]


class ReferenceScheduler:
    def __init__(self, config: SchedulerConfig | dict | str | None = None, *, seed: int = 0):
        self.config = config if isinstance(config, SchedulerConfig) else load_config(config)
        self.seed = seed & MASK64
        self.draws = 0
        self.next_start = 0
        self.nodes: dict[str, NodeSpec] = {}
        self.pods: dict[str, tuple[str, PodInfo, bool]] = {}   # key -> (node, info, assumed)

    # ---- events ----
    def add_node(self, node: dict) -> None:
        spec = node_spec(node)
        self.nodes[spec.name] = spec

    update_node = add_node

    def delete_node(self, node: dict | str) -> None:
        name = node if isinstance(node, str) else node["metadata"]["name"]
        self.nodes.pop(name, None)

    def add_pod(self, pod: dict) -> None:
        key = pod_key(pod)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.pods.pop(key, None)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            rec = self.pods.get(key)
            if rec is not None and not rec[2]:
                del self.pods[key]
            return
        self.pods[key] = (node, pod_info(pod.get("spec") or {}), False)

    def update_pod(self, old: dict | None, new: dict) -> None:
        self.add_pod(new)

    def delete_pod(self, pod: dict | str) -> None:
        self.pods.pop(pod if isinstance(pod, str) else pod_key(pod), None)

    def forget(self, pod: dict | str) -> None:
        key = pod if isinstance(pod, str) else pod_key(pod)
        rec = self.pods.get(key)
        if rec is not None and rec[2]:
            del self.pods[key]

    # ---- cycle ----
    def node_infos(self) -> dict[str, NodeInfo]:
        """Every node with the pods charged to it, recomputed from scratch."""
        infos = {name: NodeInfo(spec) for name, spec in self.nodes.items()}
        for node, info, _assumed in self.pods.values():
            ni = infos.get(node)
            if ni is None:
                continue
            for r, v in info.requests:
                ni.requested[r] = ni.requested.get(r, 0) + v
            ni.nonzero_cpu += info.nonzero_cpu
            ni.nonzero_memory += info.nonzero_memory
            ni.pod_count += 1
            for hp in info.host_ports:
                k = (hp.ip, hp.protocol, hp.port)
                ni.used_ports[k] = ni.used_ports.get(k, 0) + 1
        return infos

    def schedule(self, pod: dict) -> Decision:
        key = pod_key(pod)
        self.pods.pop(key, None)        # a pod being scheduled is charged nowhere
        info = pod_info(pod.get("spec") or {})
        profile = self.config.profile(info.scheduler_name)
        if profile is None:
            return Decision(key, None, f"no profile for schedulerName {info.scheduler_name!r}")
        names = sorted(self.nodes)
        n = len(names)
        if n == 0:
            return Decision(key, None, NO_NODES)
        infos = self.node_infos()
        want = num_feasible_nodes_to_find(profile.percentage_of_nodes_to_score, n)
        order = names if want >= n else [names[(self.next_start + i) % n] for i in range(n)]
        feasible, failed = [], {}
        examined = 0
        for name in order:
            examined += 1
            for f in profile.filters:
                st = f.filter(info, infos[name])
                if st is not None:
                    failed[name] = st
                    break
            else:
                feasible.append(name)
                if len(feasible) == want and want < n:
                    break
        if want < n:
            self.next_start = (self.next_start + examined) % n
        if not feasible:
            counts: dict[str, int] = {}
            unresolvable = resolvable = 0
            for st in failed.values():
                for reason in st.reasons:
                    counts[reason] = counts.get(reason, 0) + 1
                if st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                    unresolvable += 1
                else:
                    resolvable += 1
            return Decision(key, None, format_fit_error(n, counts, unresolvable, resolvable,
                                                        info.preemption_policy))
        feasible.sort()
        totals = dict.fromkeys(feasible, 0)
        for plugin, weight in profile.scores:
            if getattr(plugin, "skipped", None) is not None and plugin.skipped(info):
                continue
            scores = [plugin.score(info, infos[name]) for name in feasible]
            if hasattr(plugin, "normalize"):
                scores = plugin.normalize(info, scores)
            for name, s in zip(feasible, scores):
                totals[name] += weight * s
        best = max(totals.values())
        tied = [name for name in feasible if totals[name] == best]
        j = 0
        if len(tied) > 1:
            j = draw(self.seed, self.draws, len(tied))
            self.draws += 1
        chosen = tied[j]
        self.pods[key] = (chosen, info, True)
        return Decision(key, chosen, None)

    def scores(self, pod: dict) -> dict[str, int]:
        """Totals of every feasible node (no state change): for tests and explain checks."""
        info = pod_info(pod.get("spec") or {})
        profile = self.config.profile(info.scheduler_name)
        names = sorted(self.nodes)
        infos = self.node_infos()
        feasible = [nm for nm in names
                    if all(f.filter(info, infos[nm]) is None for f in profile.filters)]
        totals = dict.fromkeys(feasible, 0)
        for plugin, weight in profile.scores:
            if getattr(plugin, "skipped", None) is not None and plugin.skipped(info):
                continue
            s = [plugin.score(info, infos[nm]) for nm in feasible]
            if hasattr(plugin, "normalize"):
                s = plugin.normalize(info, s)
            for nm, v in zip(feasible, s):
                totals[nm] += weight * v
        return totals
