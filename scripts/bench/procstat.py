"""CPU time and memory of a process tree, read from /proc (Linux only).

CPU is utime+stime in clock ticks (usually 10 ms each), summed over the process and its
descendants, so a gateway that forks workers (LiteLLM) is charged for all of them. Memory is
VmRSS (now) and VmHWM (the peak since start) of the same tree, in KiB.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name sits in parentheses and may hold spaces: split after the last ')'
    return raw[raw.rfind(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """pid and every process below it (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of the tree, in seconds."""
    ticks = 0
    for p in descendants(pid):
        f = _stat_fields(p)
        if f is not None:
            ticks += int(f[11]) + int(f[12])  # fields 14 and 15 of stat(5), after pid and comm
    return ticks / CLK_TCK


def self_and_children_seconds() -> float:
    """CPU of this process plus its children that have exited and been reaped (load drivers)."""
    f = _stat_fields(os.getpid())
    return sum(int(x) for x in f[11:15]) / CLK_TCK if f else 0.0


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    return sum(_status_kib(p, "VmRSS") for p in descendants(pid))


def hwm_kib(pid: int) -> int:
    return sum(_status_kib(p, "VmHWM") for p in descendants(pid))


def core_jiffies() -> dict[int, tuple[int, int]]:
    """core -> (busy, total) jiffies since boot, from /proc/stat (idle and iowait are not busy)."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in vals[:8]]
            total = sum(v)
            out[int(name[3:])] = (total - v[3] - v[4], total)
    return out


def machine_busy_seconds(j: dict[int, tuple[int, int]]) -> float:
    return sum(busy for busy, _ in j.values()) / CLK_TCK


def busy_pct(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], core: int) -> float | None:
    if core not in before or core not in after:
        return None
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return 100.0 * busy / total if total else None
