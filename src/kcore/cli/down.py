"""`kcore down`: stop the components `kcore up` started (cleanly; nothing lost)."""
from kcore.cli.up import run_down as run  # noqa: F401
