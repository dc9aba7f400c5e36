"""
How a load worker starts: C{python -c LAUNCH TWIST-ARGUMENTS...} is C{twist
TWIST-ARGUMENTS...} in a process group of its own.

Ctrl-C at a terminal signals the terminal's whole process group.  A worker
in its own group hears of it only from its parent, on its standard input
(C{stop}), once: never while it is still starting up (where Python would end
it with a traceback), and never twice.  The group is its own before
anything is imported (C{-c}, not C{-m}, which would import the package, and
Twisted with it, first).
"""

from __future__ import annotations

#: The program a worker runs, before twist's arguments.
LAUNCH = "import os, sys; os.setpgid(0, 0); from tcplife.tap._worker import run; run(sys.argv[1:])"


def run(argv: list[str]) -> None:
    """
    Run twist with C{argv}, as the C{twist} command does.
    """
    from twisted.application.twist._twist import Twist

    Twist.main(["twist", *argv])
