"""
Graceful drain on shutdown: let open connections finish before exiting.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.logger import Logger

from ._factory import LifecycleServerFactory

SignalHandler = Callable[[int, FrameType | None], Any] | int | None

#: The signals that end a drain at once when they come again.
_INSISTING_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_log = Logger(namespace="tcplife")


def drainOnHangup(reactor: IReactorCore) -> None:
    """
    Once C{reactor} runs and handles SIGTERM, make SIGHUP (the terminal that
    runs the server went away) stop it the same way: listening stops, the
    open connections drain, and C{twist} then dies of the signal, status
    128+1, which systemd counts as a clean stop.  Python's default for
    SIGHUP would end the process at once, without any of that.  A SIGHUP
    ignored from the start (C{nohup}) stays ignored.

    Only the first SIGHUP counts: a terminal that closes sends more than one
    (the shell forwards its own to the job, and the kernel sends one to the
    foreground process group), and a second would otherwise abort the drain
    the first began.
    """
    reactor.addSystemEventTrigger("after", "startup", _installHangupHandler, reactor)


def _installHangupHandler(reactor: Any) -> None:
    # Only where the reactor installed its own handlers (twist does; a
    # reactor run with installSignalHandlers=False did not).
    if signal.getsignal(signal.SIGTERM) != reactor.sigTerm:
        return
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL:
        return

    def hangup(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _log.info("Received SIGHUP, shutting down.")
        # What the reactor's own SIGTERM handler does (twist re-raises the
        # signal it records once the reactor has stopped), but a turn later:
        # a SIGTERM that comes with this one (systemd's SendSIGHUP= sends
        # both) has its handler run after this, as Python runs pending
        # handlers in signal order, and its stop must find the reactor
        # running.  Its status stands.
        reactor.callFromThread(reactor.callLater, 0, _stopUnlessStopping, reactor)
        if reactor._exitSignal is None:
            reactor._exitSignal = signum

    signal.signal(signal.SIGHUP, hangup)


def _stopUnlessStopping(reactor: IReactorCore) -> None:
    with suppress(ReactorNotRunning):
        reactor.stop()


class Drainer:
    """
    Waits for a factory's open connections to end, within limits.

    Listening has already stopped when L{drain} is called, and the clients
    that were in the kernel's accept queue then were taken off it: they are
    served as connections close (see L{AcceptGate.closing}).  Each connection
    runs on until its peer closes or half-closes and has its echo in full.
    At the factory's C{shutdownTimeout} seconds (see L{ServerSettings
    <tcplife.server.ServerSettings>}), those left are closed gracefully;
    those still open its C{closeTimeout} seconds later are aborted.  A second
    SIGINT or SIGTERM during the drain aborts everything at once; a SIGHUP
    (the terminal went away, see L{drainOnHangup}) does not.

    @ivar endedByPeer: Connections that ended before the deadline.
    @ivar closedAtDeadline: Connections closed gracefully at the deadline.
    @ivar aborted: Connections aborted (after the grace, or on a second
        signal).
    @ivar unserved: Clients whose handshake had completed but who were
        never served: still waiting for a slot at the deadline, or left in
        the kernel's queue when listening stopped.
    """

    def __init__(
        self,
        factory: LifecycleServerFactory,
        clock: IReactorTime,
        *,
        handleSignals: bool = False,
        callFromThread: Callable[..., Any] | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.endedByPeer = 0
        self.closedAtDeadline = 0
        self.aborted = 0
        self.unserved = 0
        self._handleSignals = handleSignals
        self._callFromThread = callFromThread
        self._startedAt = 0.0
        self._closedBefore = 0
        self._done: Deferred[None] | None = None
        self._timers: list[IDelayedCall] = []
        self._closedAtDeadline: set[int] = set()
        self._aborted: set[int] = set()
        self._previousHandlers: dict[int, SignalHandler] = {}
        self._endAtOnce: str | None = None

    def drain(self) -> Deferred[None]:
        """
        Start draining; the Deferred fires once no connection is open.
        """
        self._startedAt = self.clock.seconds()
        self._closedBefore = sum(self.factory.closed.values())
        self._done = Deferred()
        self.trapSecondSignal()
        events = self.factory.events
        timeout = self.factory.settings.shutdownTimeout
        events.drain(len(self.factory.connections), len(self.factory.gate.waiting), timeout)
        self._timers = [self.clock.callLater(timeout, self._deadline)]
        if self._endAtOnce is not None:
            self._abortAll(self._endAtOnce)
        self.factory.whenNoConnections().addCallback(self._finished)
        return self._done

    def _deadline(self) -> None:
        # Before closing any connection, whose close would serve one of them.
        self.factory.gate.closeWaiting()
        left = list(self.factory.connections.values())
        grace = self.factory.settings.closeTimeout
        self.factory.events.drainDeadline(len(left), grace)
        for connection in left:
            self._closedAtDeadline.add(connection.connId)
            connection.loseConnection()
        self._timers.append(self.clock.callLater(grace, self._abortAll, "not drained"))

    def _abortAll(self, reason: str) -> None:
        self.factory.gate.closeWaiting()
        left = list(self.factory.connections.values())
        if not left:
            return
        self.factory.events.drainAbort(len(left), reason)
        for connection in left:
            self._aborted.add(connection.connId)
            connection.abortConnection()

    def _finished(self, _: object) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._restoreSignals()
        self.aborted = len(self._aborted)
        self.closedAtDeadline = len(self._closedAtDeadline - self._aborted)
        closedBy = self.aborted + self.closedAtDeadline
        self.endedByPeer = self._countClosedSinceStart() - closedBy
        # Left waiting only when the slots they wait for are held by
        # connections the drain does not wait for (awaiting a PROXY header).
        self.factory.gate.closeWaiting()
        self.unserved = self.factory.gate.unserved
        self.factory.events.drained(
            self.endedByPeer,
            self.closedAtDeadline,
            self.aborted,
            self.unserved,
            self.clock.seconds() - self._startedAt,
        )
        assert self._done is not None
        self._done.callback(None)

    def _countClosedSinceStart(self) -> int:
        return sum(self.factory.closed.values()) - self._closedBefore

    # -- a second signal ends at once ---------------------------------------

    def trapSecondSignal(self) -> None:
        """
        From now on SIGINT and SIGTERM abort the drain instead of reaching
        the handlers that began it, which would only log
        C{ReactorNotRunning}, and SIGHUP is ignored: a closed terminal says
        nothing about how long to wait.  Call it as soon as shutdown begins;
        L{drain} calls it too.
        """
        if not self._handleSignals or self._previousHandlers:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _INSISTING_SIGNALS:
            self._previousHandlers[signum] = signal.signal(signum, self._secondSignal)
        self._previousHandlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _secondSignal(self, signum: int, frame: FrameType | None) -> None:
        # Signal handlers run between bytecodes; hand the work to the reactor.
        reason = f"second {signal.Signals(signum).name}"
        if self._callFromThread is not None:
            self._callFromThread(self.endNow, reason)
        else:
            self.endNow(reason)

    def endNow(self, reason: str) -> None:
        """
        Abort every open connection now (what a second signal does); before
        the drain has begun, make it end at once.
        """
        if self._done is None:
            # Listening is still being stopped; the drain will end at once.
            self._endAtOnce = reason
        else:
            self._abortAll(reason)

    def _restoreSignals(self) -> None:
        for signum, handler in self._previousHandlers.items():
            signal.signal(signum, handler)
        self._previousHandlers.clear()
