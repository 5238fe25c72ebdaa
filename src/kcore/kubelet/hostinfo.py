"""What the machine is: CPU count, memory, disk, kernel, OS image, boot and machine
ids, primary IP. Read once at start from /proc, /etc and os; nothing here writes."""
from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    cpus: int
    memory_bytes: int
    disk_bytes: int
    kernel_version: str
    os_image: str
    architecture: str
    machine_id: str
    boot_id: str
    system_uuid: str


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            try:
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
            except ValueError:
                pass
    return out


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return "Linux"


def disk_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
        return st.f_blocks * st.f_frsize
    except OSError:
        return 0


def host_info(root_dir: str = "/") -> HostInfo:
    mid = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    return HostInfo(
        hostname=socket.gethostname().lower(),
        cpus=os.cpu_count() or 1,
        memory_bytes=meminfo().get("MemTotal", 0),
        disk_bytes=disk_bytes(root_dir if os.path.isdir(root_dir) else "/"),
        kernel_version=platform.release(),
        os_image=os_image(),
        architecture=ARCH.get(platform.machine(), platform.machine()),
        machine_id=mid,
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid") or mid)


def primary_ip() -> str:
    """The address the default route leaves from (no packet is sent), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
