"""`kcore status`: the components `kcore up` started, and whether they are healthy."""
from kcore.cli.up import run_status as run  # noqa: F401
