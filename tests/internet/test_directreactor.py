"""
The tcplife-direct reactor serves as the stock epoll reactor does.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from twisted.internet import main
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory
from tcplife.internet._port import PortReactor
from tcplife.internet.directreactor import DirectEPollReactor
from tcplife.testing import EventRecorder

from ..helpers import WAIT, echoWithHalfClose, pattern


def runUntil(reactor: DirectEPollReactor, work: Any) -> Any:
    """
    Run C{reactor} in this thread while C{work} runs in another; stop when
    it returns, and return its result.
    """
    result: list[Any] = []

    def inThread() -> None:
        try:
            result.append(work())
        finally:
            reactor.callFromThread(reactor.stop)  # type: ignore[no-untyped-call]

    reactor.callWhenRunning(threading.Thread(target=inThread, daemon=True).start)  # type: ignore[no-untyped-call]
    timeout = reactor.callLater(WAIT * 3, reactor.stop)  # type: ignore[no-untyped-call]
    reactor.run(installSignalHandlers=False)  # type: ignore[no-untyped-call]
    if timeout.active():
        timeout.cancel()
    return result[0] if result else None


class BrokenReader:
    """
    A reader whose connectionLost raises: the error escapes the reactor's
    own handling of the event.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> object:
        return main.CONNECTION_DONE

    def connectionLost(self, reason: Failure) -> None:
        raise RuntimeError("connectionLost is broken")

    def logPrefix(self) -> str:
        return "BrokenReader"


class DirectReactorTests(SynchronousTestCase):
    """
    Events reach their selectables without a log context, errors are still
    logged, and tcplife serves on it.
    """

    def setUp(self) -> None:
        self.reactor = DirectEPollReactor()  # type: ignore[no-untyped-call]

    def test_echoWithLifecycleEvents(self) -> None:
        """
        A tcplife port on the direct reactor echoes 1 MiB with a half-close
        and reports accept, half-close and close.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=self.reactor, events=recorded.log)
        port = PortReactor(self.reactor).listenTCP(0, factory, 50, "127.0.0.1")
        payload = pattern(1 << 20)

        closed = threading.Event()
        recorded.when(lifecycle="close").addCallback(lambda _: closed.set())

        def client() -> bytes:
            echoed = echoWithHalfClose(port.getHost().port, payload)  # type: ignore[attr-defined]
            # The close is reported on a loop pass after the client's EOF.
            closed.wait(WAIT)
            return echoed

        echoed = runUntil(self.reactor, client)
        self.assertTrue(echoed == payload, "echo differs from what was sent")
        self.assertEqual(recorded.phases(), ["accept", "half-close", "close"])

    def test_errorEscapingAnEventIsLoggedAndTheLoopGoesOn(self) -> None:
        """
        An exception that escapes event handling is logged, and the reactor
        keeps serving other events.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        theirs.send(b"x")
        self.reactor.addReader(BrokenReader(ours))  # type: ignore[no-untyped-call]
        ran = runUntil(self.reactor, lambda: "still running")
        self.assertEqual(ran, "still running")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
