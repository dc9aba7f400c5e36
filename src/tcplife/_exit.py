"""
Ending a C{twist} process with a status of our choosing.

C{twist} always exits 0 after a normal reactor stop (and re-raises the signal
after SIGINT or SIGTERM), so a plugin that must report failure through its
exit status ends the process itself, once the reactor has shut down.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import suppress

from twisted.internet.interfaces import IReactorCore

#: Seconds a shutdown may take before the process exits regardless.
SHUTDOWN_GRACE = 1.0


def exitNow(status: int) -> None:
    """
    Flush what we printed and end the process with C{status}, skipping
    interpreter teardown: after the reactor has shut down there is nothing
    left to clean up, and C{twist} would otherwise exit 0.
    """
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        # A closed pipe or file: nothing more can reach it anyway.
        if stream is not None:
            with suppress(OSError, ValueError):
                stream.flush()
    os._exit(status)


def stopAndExit(reactor: IReactorCore, status: int, grace: float = SHUTDOWN_GRACE) -> None:
    """
    Stop the reactor and, once it has shut down, exit with C{status}.

    Shutting down joins the reactor's thread pool, so a thread still stuck
    in a name lookup (a DNS server that never answers is retried for many
    seconds by the C library) would hold the exit up for as long; after
    C{grace} seconds the process exits regardless.
    """
    reactor.addSystemEventTrigger("after", "shutdown", exitNow, status)
    watchdog = threading.Timer(grace, exitNow, (status,))
    watchdog.daemon = True
    watchdog.start()
    reactor.stop()
