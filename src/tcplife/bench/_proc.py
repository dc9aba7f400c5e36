"""
A process's CPU time and memory, as Linux reports them in C{/proc}.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU time of every thread of C{pid}, in seconds.

    C{schedstat} counts nanoseconds; C{stat}'s clock ticks (10 ms) are the
    fallback where the kernel has no scheduler statistics.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime 14, stime 15.
        return (int(fields[11]) + int(fields[12])) / _TICKS


def descendants(pid: int) -> list[int]:
    """
    The processes under C{pid} (its children, theirs, ...), as the kernel
    lists each task's children.
    """
    found: list[int] = []
    waiting = [pid]
    while waiting:
        parent = waiting.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            waiting.extend(children)
    return found


def treeCpuSeconds(pid: int) -> float:
    """
    The CPU time of C{pid} and of every process under it (a supervisor and
    its workers), as L{cpuSeconds} counts it; a process gone meanwhile
    counts nothing.
    """
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with suppress(OSError, ValueError, IndexError):
            total += cpuSeconds(each)
    return total


def busySeconds() -> list[float]:
    """
    The CPU time every process together has used so far on each core
    (C{/proc/stat}, all but idle and iowait): with a window's wall time, how
    busy each core was, other work included.
    """
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name != "cpu":
            # user nice system idle iowait irq softirq steal (guest is in user)
            counts = [int(t) for t in ticks[:8]]
            cores.append((sum(counts) - counts[3] - counts[4]) / _TICKS)
    return cores


def rssBytes(pid: int) -> int:
    """
    The resident set size of C{pid}, in bytes.
    """
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
