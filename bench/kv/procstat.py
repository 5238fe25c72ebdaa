"""CPU accounting from /proc: per process tree, per machine, and who else ran.

The server's cost is the CPU of each member's process tree; the machine's
busy time minus the server and the generator is "other" CPU, and the
processes behind it are named so a noisy window can be told apart from a
slow server.
"""
from __future__ import annotations

import os

_TCK = os.sysconf("SC_CLK_TCK")

# pid -> (ppid, own CPU seconds, comm, CPU seconds of its exited, waited-for children)
ProcessTable = dict[int, tuple[int, float, str, float]]


def _read_stat(pid: int) -> tuple[int, float, str, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()   # f[0] is field 3 (state)
    # fields 14-17: utime, stime, cutime, cstime
    return (int(f[1]), (int(f[11]) + int(f[12])) / _TCK, comm,
            (int(f[13]) + int(f[14])) / _TCK)


def tree_cpu_s(pids: list[int], table: ProcessTable) -> float:
    """CPU seconds of every process under ``pids``, with children they reaped."""
    return sum(table[p][1] + table[p][3] for pid in pids for p in descendants(pid, table))


def process_table() -> ProcessTable:
    """Every live process (kernel threads included) with its CPU seconds so far."""
    out: ProcessTable = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            row = _read_stat(int(entry))
            if row is not None:
                out[int(entry)] = row
    return out


def descendants(pid: int, table: ProcessTable) -> list[int]:
    """``pid`` and every process below it in ``table``."""
    children: dict[int, list[int]] = {}
    for p, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
        todo.extend(children.get(p, ()))
    return out


def top_consumers(before: ProcessTable, after: ProcessTable, exclude: set[int],
                  n: int = 5) -> list[dict]:
    """The ``n`` processes outside ``exclude`` that used the most CPU in between (pure).

    Own CPU only: a shell that reaps a long job would otherwise look busy.
    """
    used = []
    for pid, (_, cpu, comm, _) in after.items():
        if pid in exclude:
            continue
        prev = before.get(pid)
        delta = cpu - (prev[1] if prev and prev[2] == comm else 0.0)
        if delta > 0:
            used.append({"pid": pid, "comm": comm, "cpu_s": round(delta, 3)})
    used.sort(key=lambda u: -u["cpu_s"])
    return used[:n]


def machine_cpu_s() -> dict[str, float]:
    """Busy and steal CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / _TCK, "steal_s": steal / _TCK}


def fs_type(path: str) -> str:
    """Filesystem type holding ``path`` (from /proc/mounts, longest mount prefix)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, parts[2]
    return kind
