"""Write a volume's files so a reader never sees a half-updated set (kube's
AtomicWriter): the files go into a fresh hidden directory, `..data` is
switched to it by one rename of a symlink, and each top-level name is a
symlink through `..data`. The volume directory itself stays the same inode,
so a bind mount of it shows every update."""
from __future__ import annotations

import os
import shutil
import time

DATA = "..data"


def write_files(target: str, files: dict[str, bytes], mode: int = 0o644) -> None:
    os.makedirs(target, exist_ok=True)
    ts = os.path.join(target, f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}."
                              f"{time.monotonic_ns() % 10**9}")
    os.makedirs(ts)
    for rel, data in files.items():
        path = os.path.join(ts, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        os.chmod(path, mode)
    os.chmod(ts, 0o755)
    tmp = os.path.join(target, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(ts), tmp)
    os.rename(tmp, os.path.join(target, DATA))
    top = {rel.split("/", 1)[0] for rel in files}
    for name in top:
        link = os.path.join(target, name)
        if not os.path.islink(link):
            os.symlink(os.path.join(DATA, name), link)
    for name in os.listdir(target):
        path = os.path.join(target, name)
        if name.startswith(".."):
            if name not in (DATA, os.path.basename(ts)):
                shutil.rmtree(path, ignore_errors=True)
        elif name not in top and os.path.islink(path):
            os.unlink(path)
