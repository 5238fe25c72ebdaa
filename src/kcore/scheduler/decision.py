"""What a scheduling cycle returns to its driver."""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Decision"]


class Decision(NamedTuple):
    """``node`` is the chosen node (the pod is now assumed there), or ``None``
    with kube's FailedScheduling ``message``."""
    pod: str                 # pod key: metadata.uid, else namespace/name
    node: str | None
    message: str | None = None

    @property
    def scheduled(self) -> bool:
        return self.node is not None
