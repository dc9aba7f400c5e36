"""
A load run against fake endpoints on a clock, with helpers that echo like
a server: shared by the load tests.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tcplife import LoadReport, LoadRun, LoadSettings, TrackedConnection
from tcplife.client import IntervalReport
from tcplife.testing import EventRecorder

SERVER = IPv4Address("TCP", "127.0.0.1", 9000)


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    Connects at once to a StringTransport, or refuses while C{refusing}, or
    fails with C{failure} while it is set.
    """

    def __init__(self) -> None:
        self.refusing = False
        self.failure: Exception | None = None
        self.connections: list[tuple[TrackedConnection, StringTransport]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[Protocol]:
        if self.refusing:
            return fail(ConnectionRefusedError())
        if self.failure is not None:
            return fail(self.failure)
        connection = factory.buildProtocol(SERVER)
        assert isinstance(connection, TrackedConnection)
        port = 40000 + len(self.connections)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", port), peerAddress=SERVER
        )
        connection.makeConnection(transport)
        self.connections.append((connection, transport))
        return succeed(connection)  # type: ignore[arg-type]


class Run:
    """
    A load run against the fake endpoint, with helpers that echo like a
    server.
    """

    def __init__(
        self, targets: int = 1, interval: float = 1.0, firstSlot: int = 0, **settings: Any
    ) -> None:
        self.clock = MemoryReactorClock()
        self.endpoints = {f"server{n}": FakeEndpoint() for n in range(1, targets + 1)}
        self.endpoint = self.endpoints["server1"]
        self.recorded = EventRecorder()
        self.progress = StringIO()
        self.cpu = 0.0
        self.run = LoadRun(
            LoadSettings(target="127.0.0.1:9000", **settings),
            self.endpoint if targets == 1 else self.endpoints,
            self.clock,
            events=self.recorded.log,
            progress=self.progress,
            interval=interval,
            cpuSeconds=lambda: self.cpu,
            firstSlot=firstSlot,
        )
        self.reports: list[LoadReport] = []
        self.run.finished.addCallback(self._reported)
        self.intervals: list[IntervalReport] = []
        self.run.intervalObservers.append(self.intervals.append)

    def _reported(self, report: LoadReport) -> LoadReport:
        # Passed on, for whatever else waits on the run (a LoadService).
        self.reports.append(report)
        return report

    @property
    def connections(self) -> list[tuple[TrackedConnection, StringTransport]]:
        return [each for endpoint in self.endpoints.values() for each in endpoint.connections]

    def open(self) -> list[tuple[TrackedConnection, StringTransport]]:
        return [(c, t) for c, t in self.connections if c.connected]

    def echo(self, connection: TrackedConnection, transport: StringTransport) -> int:
        """
        Echo whatever the connection has sent; returns how many bytes.
        """
        data = transport.value()
        transport.clear()
        if data:
            connection.dataReceived(data)
        return len(data)

    def echoAll(self) -> int:
        return sum(self.echo(c, t) for c, t in self.open())

    def closeLost(self) -> None:
        """
        Deliver connectionLost to every connection whose transport was
        closed, as the reactor would.
        """
        for connection, transport in self.connections:
            if connection.connected and transport.disconnecting:
                connection.connectionLost(Failure(ConnectionDone()))

    def report(self) -> LoadReport:
        [report] = self.reports
        return report


def assertMicroseconds(test: SynchronousTestCase, value: int, seconds: float) -> None:
    """
    C{value} microseconds are C{seconds}, as closely as an HDR histogram of 3
    significant digits tells.
    """
    test.assertLessEqual(abs(value - seconds * 1e6), seconds * 1e6 / 1000, (value, seconds))
