"""
The one-shot service: the exit status and the one line for each outcome.
"""

from __future__ import annotations

from io import StringIO

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tcplife import LifecycleClientFactory
from tcplife.client._oneshot import OneShot
from tcplife.testing import EventRecorder

from .loadrun import FakeEndpoint


@implementer(IStreamClientEndpoint)
class PendingEndpoint:
    """
    A connect that never completes (until cancelled).
    """

    def connect(self, factory: IProtocolFactory) -> Deferred[Protocol]:
        return Deferred()


class OneShotTests(SynchronousTestCase):
    """
    Each outcome ends the process with its status, or leaves a signal's
    exit to twist.
    """

    def start(
        self, endpoint: IStreamClientEndpoint, request: bytes = b"hi\n", reflect: bool = False
    ) -> OneShot:
        self.reactor = MemoryReactorClock()
        self.errors = StringIO()
        self.statuses: list[int] = []
        factory = LifecycleClientFactory(
            request, timeout=5.0, clock=self.reactor, events=EventRecorder().log, reflect=reflect
        )
        service = OneShot(
            factory,
            endpoint,
            "127.0.0.1:9000",
            self.reactor,
            errors=self.errors,
            done=self.statuses.append,
        )
        service.startService()
        self.reactor.run()  # MemoryReactor runs the callWhenRunning calls
        return service

    def test_exactEchoIsStatusZeroAndSilent(self) -> None:
        """
        Every byte back: status 0, nothing said.
        """
        endpoint = FakeEndpoint()
        self.start(endpoint)
        [(connection, transport)] = endpoint.connections
        transport.producer.resumeProducing()
        transport.producer.resumeProducing()
        connection.dataReceived(transport.value())
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((self.statuses, self.errors.getvalue()), ([0], ""))

    def test_mismatchIsStatus65WithTheOffset(self) -> None:
        """
        A wrong byte: status 65 and the line naming the offset.
        """
        endpoint = FakeEndpoint()
        self.start(endpoint)
        [(connection, _)] = endpoint.connections
        connection.dataReceived(b"hI")
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.statuses, [65])
        self.assertEqual(
            self.errors.getvalue(),
            "tcpclient: echo differs at offset 1: expected 0x69 'i', got 0x49 'I'\n",
        )

    def test_connectTimeoutIsStatus75(self) -> None:
        """
        No connection within the timeout: status 75 and one line.
        """
        self.start(PendingEndpoint())
        self.reactor.advance(5.0)
        self.assertEqual(self.statuses, [75])
        self.assertIn("no connection within 5 s", self.errors.getvalue())

    def test_interruptedWhileConnecting(self) -> None:
        """
        Stopped from outside while connecting: the attempt is cancelled,
        one line says so, and the exit is left to twist (the signal's).
        """
        service = self.start(PendingEndpoint())
        service.stopService()
        self.assertEqual(self.statuses, [])
        self.assertEqual(
            self.errors.getvalue(), "tcpclient: interrupted while connecting to 127.0.0.1:9000\n"
        )
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_interruptedMidEcho(self) -> None:
        """
        Stopped from outside mid-echo: the connection is aborted and the
        line says how far the echo got.
        """
        endpoint = FakeEndpoint()
        service = self.start(endpoint, b"hello\n")
        [(connection, transport)] = endpoint.connections
        connection.dataReceived(b"hel")
        service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.errors.getvalue(), "tcpclient: interrupted: 3 of 6 bytes came back\n")
        self.assertEqual(self.statuses, [])
