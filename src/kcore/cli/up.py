"""`kcore up`: the whole control plane on one machine (for now: the store)."""
from __future__ import annotations


def run(argv: list[str]) -> int:
    from kcore.cli import etcd
    return etcd.run(argv)
