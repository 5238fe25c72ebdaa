"""How a process container sees its volumes at their mount paths.

As root, the container runs in its own mount namespace (`unshare --mount`,
private propagation) in which each volume directory is bind-mounted at its
`mountPath` (read-only when asked) before the command is exec'd; other
processes on the host see nothing there. The mount point itself must exist, so
the kubelet creates the (empty) directory on the host, as a runtime creates
mount points in an image's rootfs. Without root there is no mount namespace:
the volumes appear under a per-pod directory (`$KCORE_POD_ROOT/<mountPath>`,
symlinks to the volume directories) and the command has to look there.
"""
from __future__ import annotations

import os
import shutil

from kcore.kubelet.runtime.base import Mount

POD_ROOT_ENV = "KCORE_POD_ROOT"

# argv after the script: (source, target, ro|rw) triples, "--", the command
_SCRIPT = ('while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 125; '
           'if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 125; fi; '
           'shift 3; done; shift; exec "$@"')


def can_use_mount_namespaces() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("mount"))


def wrap_argv(argv: list[str], mounts: list[Mount] | tuple[Mount, ...]) -> list[str]:
    """argv that binds the mounts in a new mount namespace, then execs `argv` (same pid:
    unshare and sh both exec)."""
    if not mounts:
        return list(argv)
    out = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _SCRIPT,
           "kcore-mounts"]
    for m in mounts:
        out += [m.host_path, m.path, "ro" if m.read_only else "rw"]
    return out + ["--", *argv]


def exec_argv(pid: int, cmd: list[str]) -> list[str]:
    """A command run inside a container's mount namespace."""
    return ["nsenter", "-t", str(pid), "-m", "--", *cmd]


def link_pod_root(pod_root: str, mounts) -> None:
    """The non-root fallback: <pod_root>/<mountPath> → the volume directory."""
    for m in mounts:
        link = os.path.join(pod_root, m.path.lstrip("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link) and os.readlink(link) == m.host_path:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(m.host_path, link)
