"""`kcore`: one entry point, one module per subcommand (kcore.cli.<name>.run)."""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "apiserver": "kcore.cli.apiserver",
    "controller-manager": "kcore.cli.controller_manager",
    "down": "kcore.cli.down",
    "bench": "kcore.cli.bench",
    "certs": "kcore.cli.certs",
    "etcd": "kcore.cli.etcd",
    "kubelet": "kcore.cli.kubelet",
    "proxy": "kcore.cli.proxy",
    "scheduler": "kcore.cli.scheduler",
    "status": "kcore.cli.status",
    "systemd": "kcore.cli.systemd",
    "up": "kcore.cli.up",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: kcore <command> [flags]\n\ncommands:\n  " + "\n  ".join(sorted(SUBCOMMANDS)))
        return 0 if argv else 2
    if argv[0] in ("version", "--version"):
        from kcore import __version__
        print(f"kcore {__version__}")
        return 0
    mod = SUBCOMMANDS.get(argv[0])
    if mod is None:
        print(f"kcore: unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    return int(importlib.import_module(mod).run(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
