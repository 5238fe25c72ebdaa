"""``explain(pod)``: the filter verdict of every node and the per-plugin
scores of the best ones — what kube users ask for and kube-scheduler does not give."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Explanation", "NodeScore", "PluginScore"]


@dataclass(frozen=True)
class PluginScore:
    plugin: str
    raw: int          # the plugin's Score
    score: int        # after NormalizeScore
    weight: int

    @property
    def weighted(self) -> int:
        return self.score * self.weight


@dataclass(frozen=True)
class NodeScore:
    node: str
    total: int
    plugins: tuple[PluginScore, ...]


@dataclass(frozen=True)
class Explanation:
    pod: str
    nodes: int
    feasible: int
    best: int | None                         # top total score
    tied: int                                # nodes sharing it (one is drawn)
    filtered: dict[str, int]                 # reason -> nodes (kube's histogram)
    verdicts: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    top: tuple[NodeScore, ...] = ()          # best first, ties in node-name order
    message: str | None = None               # FailedScheduling message when nothing fits

    def format(self) -> str:
        lines = [f"pod {self.pod}: {self.feasible}/{self.nodes} nodes feasible"]
        if self.filtered:
            lines.append("filtered out:")
            for reason, count in sorted(self.filtered.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {count:>6}  {reason}")
            shown = sorted(self.verdicts.items())[:10]
            for node, (plugin, reasons) in shown:
                lines.append(f"  {node}: {plugin}: {'; '.join(reasons)}")
            if len(self.verdicts) > len(shown):
                lines.append(f"  ... and {len(self.verdicts) - len(shown)} more node(s)")
        if self.message:
            lines.append(self.message)
        if self.top:
            lines.append(f"best score {self.best} shared by {self.tied} node(s); top nodes:")
            names = [p.plugin for p in self.top[0].plugins]
            head = "  " + "node".ljust(24) + "total".rjust(7) + "".join(
                n[:22].rjust(24) for n in names)
            lines.append(head)
            for ns in self.top:
                cells = "".join(f"{p.score}x{p.weight} (raw {p.raw})".rjust(24)
                                for p in ns.plugins)
                lines.append("  " + ns.node[:24].ljust(24) + str(ns.total).rjust(7) + cells)
        return "\n".join(lines)
