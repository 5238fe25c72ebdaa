"""Durability on a POSIX file system: what a rename or a new file needs to survive
a power cut (the directory entry itself must be fsynced)."""
from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
