"""
A process's CPU time and memory, as Linux reports them in C{/proc}.
"""

from __future__ import annotations

import os
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


def rssBytes(pid: int) -> int:
    """
    The resident set size of C{pid}, in bytes.
    """
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
