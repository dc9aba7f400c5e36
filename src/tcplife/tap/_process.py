"""
What belongs to the process, not to the library: raising its descriptor
limit, and ending a C{twist} process with a status of our choosing.

C{twist} always exits 0 after a normal reactor stop (and re-raises the signal
after SIGINT or SIGTERM), so a plugin that must report failure through its
exit status ends the process itself, once the reactor has shut down.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from contextlib import suppress

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from ..server import ListenError

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")

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


def sayOnStandardError(line: str) -> None:
    """
    Write C{line} to the process's real standard error: once twist's log
    has begun, C{sys.stderr} is a file that writes into the log.
    """
    stream = sys.__stderr__
    if stream is not None:
        with suppress(OSError, ValueError):
            print(line, file=stream, flush=True)


def stopAndExit(reactor: IReactorCore, status: int, grace: float | None = SHUTDOWN_GRACE) -> None:
    """
    Stop the reactor and, once it has shut down, exit with C{status}.

    Shutting down joins the reactor's thread pool, so a thread still stuck
    in a name lookup (a DNS server that never answers is retried for many
    seconds by the C library) would hold the exit up for as long; after
    C{grace} seconds the process exits regardless (C{None}: the shutdown
    takes as long as it takes, a drain for instance).
    """
    reactor.addSystemEventTrigger("after", "shutdown", exitNow, status)
    if grace is not None:
        watchdog = threading.Timer(grace, exitNow, (status,))
        watchdog.daemon = True
        watchdog.start()
    reactor.stop()


def raiseDescriptorLimit() -> tuple[int, int, int]:
    """
    Raise the soft RLIMIT_NOFILE to the hard limit.

    @return: The soft limit before, the soft limit now, and the hard limit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        # "Unlimited" is not a value setrlimit accepts for the soft limit on
        # Linux; the kernel's own ceiling is.
        target = _kernelDescriptorCeiling(soft)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    return soft, max(soft, target), hard


def _kernelDescriptorCeiling(fallback: int) -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return max(fallback, os.sysconf("SC_OPEN_MAX"))


class ServerProcess(Service):
    """
    The service C{twist} runs for a server: it raises the descriptor limit,
    starts the server, and ends the process with one line and status 1 when
    listening fails, now or later, so that no process stays alive listening
    on nothing.
    """

    def __init__(
        self,
        server: IService,
        reactor: IReactorCore,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        self.server = server
        self._reactor = reactor
        self._prepare = prepare

    def startService(self) -> None:
        Service.startService(self)
        if self._prepare is not None:
            self._prepare()
        before, soft, hard = raiseDescriptorLimit()
        _log.info(
            "file descriptors: soft limit {nofile_soft} (was {nofile_soft_before}), "
            "hard limit {nofile_hard}",
            nofile_soft=soft,
            nofile_soft_before=before,
            nofile_hard=hard,
        )
        try:
            self.server.startService()
        except ListenError as e:
            # Under twist, before the reactor runs: the line, status 1.
            raise SystemExit(f"tcplife: {e}") from None

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        stopped: Deferred[None] | None = self.server.stopService()
        return stopped

    def stopWithFailure(self, message: str) -> None:
        """
        Something the server cannot go on without has failed (its workers
        keep dying): say so on standard error, stop (draining what is
        left), and exit 1.
        """
        sayOnStandardError(f"tcplife: {message}")
        stopAndExit(self._reactor, 1, grace=None)

    def listenFailedLater(self, message: str) -> None:
        """
        A listener failed once the reactor was running (an endpoint that
        listens asynchronously): say so on standard error and exit 1.
        """
        sayOnStandardError(f"tcplife: {message}")
        stopAndExit(self._reactor, 1)
