"""
The connection cap holds however a factory is served, on real loopback
sockets: on tcplife's ports (the clients beyond the cap wait in the kernel's
queue), and on ports tcplife did not make (the factory governs them from its
first connection; those a burst of accepts takes beyond the cap are reset).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase

import tcplife
from tcplife import LifecycleServerFactory, TrackedConnection, readAcceptQueue
from tcplife.events import describeAddress
from tcplife.server._metrics import ServerCollector
from tcplife.testing import EventRecorder

from ..certs import SelfSigned
from ..helpers import WAIT, callInThread, readLine, recvUntilEOFOrReset
from ..servers import temporaryDirectory


class MostOpen(LifecycleServerFactory):
    """
    Remembers the most connections it ever had open at once.
    """

    mostOpen = 0

    def connectionOpened(self, connection: TrackedConnection) -> None:
        super().connectionOpened(connection)
        self.mostOpen = max(self.mostOpen, len(self.connections))


def line(n: int) -> bytes:
    """
    What client C{n} sends.
    """
    return b"client %d\n" % n


def connectClients(address: Any, count: int, first: int, send: bool) -> list[socket.socket]:
    """
    C{count} clients of C{address} (a UNIX path, or a TCP host and port),
    each sending its line (if C{send}) as soon as the kernel has completed
    its handshake.
    """
    clients = []
    for n in range(first, first + count):
        family = socket.AF_UNIX if isinstance(address, (str, bytes)) else socket.AF_INET
        client = socket.socket(family)
        client.settimeout(WAIT)
        client.connect(address)
        if send:
            client.sendall(line(n))
        clients.append(client)
    return clients


def refusedOverCap(factory: LifecycleServerFactory) -> float:
    """
    What the metrics say of connections reset beyond the cap.
    """
    [refused] = [
        family
        for family in ServerCollector(factory, lambda: []).collect()
        if family.name == "tcplife_connections_refused"
    ]
    [count] = [s.value for s in refused.samples if s.labels["reason"] == "over-cap"]
    return count


class CapEveryWayTests(TestCase):
    """
    With C{maxConnections=1}, never more than one connection is open, by
    every way there is to serve a factory.
    """

    def setUp(self) -> None:
        self.recorded = EventRecorder()
        self.factory = MostOpen(clock=reactor, events=self.recorded.log, maxConnections=1)
        self.directory: Path | None = None
        self.tls: ssl.SSLContext | None = None
        self.secured: dict[int, ssl.SSLSocket] = {}

    def unixPath(self) -> str:
        if self.directory is None:
            self.directory = temporaryDirectory(self)
        return str(self.directory / "echo.sock")

    def listening(self, port: Any) -> None:
        self.addCleanup(lambda: port.connected and port.stopListening())
        # Last: the clients a closing tcplife port takes off its queue are
        # served, and end once the test has closed them.
        self.addCleanup(self.factory.whenNoConnections)
        self.addCleanup(lambda: [secured.close() for secured in self.secured.values()])

    def addressOf(self, port: Any) -> Any:
        address = port.getHost()
        return address.name if hasattr(address, "name") else ("127.0.0.1", address.port)

    def connect(self, address: Any, count: int, first: int = 0) -> Deferred[list[socket.socket]]:
        """
        C{count} clients, numbered from C{first}; over TLS, each sends its
        line once its TLS handshake is done (see L{echoOf}).
        """
        return callInThread(connectClients, address, count, first, self.tls is None)

    def echoOf(self, client: socket.socket, n: int) -> Deferred[bytes]:
        """
        The line of client C{n}, echoed (over TLS, if the port speaks it).
        """
        if self.tls is None:
            return callInThread(readLine, client)
        context = self.tls

        def overTLS() -> bytes:
            # The TLS socket takes the client's descriptor over: kept, or
            # the collector would close the connection.
            secured = self.secured[n] = context.wrap_socket(client, server_hostname="localhost")
            secured.sendall(line(n))
            return readLine(secured)

        return callInThread(overTLS)

    def close(self, clients: list[socket.socket], n: int) -> None:
        """
        Close client C{n} (its TLS socket, if it has one).
        """
        self.secured.get(n, clients[n]).close()

    @inlineCallbacks
    def burst(self, port: Any) -> Generator[Deferred[Any], Any, list[socket.socket]]:
        """
        Three clients queued while C{port} is not reading, then one wake-up
        of the port for all three; the first is served.
        """
        self.listening(port)
        port.stopReading()
        clients = yield self.connect(self.addressOf(port), 3)
        self.addCleanup(lambda: [c.close() for c in clients])
        port.startReading()
        yield self.recorded.when(lifecycle="accept")
        self.assertEqual((yield self.echoOf(clients[0], 0)), line(0))
        return clients

    @inlineCallbacks
    def assertQueuedBeyondTheCap(self, port: Any) -> Generator[Deferred[Any], Any, None]:
        """
        On tcplife's ports the burst finds one client served and two waiting
        in the kernel's queue, served one at a time as connections close;
        nothing is reset, and nothing warned of.
        """
        clients = yield self.burst(port)
        queue = readAcceptQueue(port.socket)
        if queue is not None:  # a UNIX socket does not say
            self.assertEqual(queue.depth, 2)
        self.assertEqual(len(self.recorded.of("accept")), 1)
        for n in (1, 2):
            self.close(clients, n - 1)
            self.assertEqual((yield self.echoOf(clients[n], n)), line(n))
        self.assertEqual((self.factory.mostOpen, len(self.recorded.of("accept"))), (1, 3))
        self.assertEqual((self.factory.gate.refusedOverCap, refusedOverCap(self.factory)), (0, 0))
        self.assertEqual([e for e in self.recorded.events if "max_connections" in e], [])

    @inlineCallbacks
    def assertGovernedFromTheFirstConnection(
        self, port: Any
    ) -> Generator[Deferred[Any], Any, None]:
        """
        On a port tcplife did not make, the burst finds one client served
        and the other two reset at once and counted; from then on the port
        stops reading at the cap, so a fourth client waits in the kernel's
        queue until the first closes; and the factory warns once, naming the
        port.
        """
        clients = yield self.burst(port)
        for refused in clients[1:]:
            self.assertEqual((yield callInThread(recvUntilEOFOrReset, refused)), b"")
        self.assertEqual((self.factory.gate.refusedOverCap, refusedOverCap(self.factory)), (2, 2))

        [fourth] = yield self.connect(self.addressOf(port), 1, 3)
        self.addCleanup(fourth.close)
        self.assertEqual(self.factory.gate.paused, "max-connections")
        self.assertNotIn(port, reactor.getReaders())  # type: ignore[attr-defined]
        queue = readAcceptQueue(port.socket)
        if queue is not None:
            self.assertEqual(queue.depth, 1)
        self.close(clients, 0)
        self.assertEqual((yield self.echoOf(fourth, 3)), line(3))
        self.assertEqual((self.factory.mostOpen, len(self.recorded.of("accept"))), (1, 2))
        [warning] = [e for e in self.recorded.events if "max_connections" in e]
        self.assertEqual(
            (warning["address"], warning["max_connections"]),
            (describeAddress(port.getHost()), 1),
        )
        self.assertIn("tcplife.listen()", warning["log_format"])

    def listenUNIX(self) -> Any:
        return reactor.listenUNIX(self.unixPath(), self.factory)  # type: ignore[attr-defined]

    def servedOverTLS(self) -> Callable[[], Any]:
        certificate = SelfSigned(temporaryDirectory(self))
        self.tls = ssl.create_default_context(cafile=str(certificate.cert))
        options = PrivateCertificate.loadPEM(certificate.keyPEM + certificate.certPEM).options()
        return lambda: reactor.listenSSL(  # type: ignore[attr-defined]
            0, self.factory, options, interface="127.0.0.1"
        )

    # -- tcplife's ports -------------------------------------------------------

    @inlineCallbacks
    def test_tcplifeServerFromString(self) -> Generator[Deferred[Any], Any, None]:
        """
        An endpoint from C{tcplife.serverFromString} listens on tcplife's
        ports under the factory's cap.
        """
        endpoint = tcplife.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        port = yield endpoint.listen(self.factory)
        yield self.assertQueuedBeyondTheCap(port)

    @inlineCallbacks
    def test_tcplifeListen(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{tcplife.listen} listens on tcplife's ports under the factory's cap,
        and says so with a C{listen} event.
        """
        port = yield tcplife.listen(reactor, "tcp:0:interface=127.0.0.1:backlog=9", self.factory)
        [listen] = self.recorded.of("listen")
        self.assertEqual(
            (listen["address"], listen["backlog"], listen["endpoint"]),
            (describeAddress(port.getHost()), 9, "tcp:0:interface=127.0.0.1:backlog=9"),
        )
        yield self.assertQueuedBeyondTheCap(port)

    @inlineCallbacks
    def test_tcplifeListenOnUNIX(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{tcplife.listen} on a C{unix:} endpoint holds the cap too.
        """
        port = yield tcplife.listen(reactor, f"unix:{self.unixPath()}", self.factory)
        yield self.assertQueuedBeyondTheCap(port)

    def test_portReactorListenTCP(self) -> Deferred[None]:
        """
        C{listenTCP} on a C{tcplife.PortReactor} around the reactor applies
        the factory's cap without being given it.
        """
        port = tcplife.PortReactor(reactor).listenTCP(0, self.factory, interface="127.0.0.1")
        return self.assertQueuedBeyondTheCap(port)

    # -- ports tcplife did not make --------------------------------------------

    def test_plainListenTCP(self) -> Deferred[None]:
        """
        The README's old way, C{reactor.listenTCP(port, factory)}.
        """
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        return self.assertGovernedFromTheFirstConnection(port)

    @inlineCallbacks
    def test_twistedTCP4ServerEndpoint(self) -> Generator[Deferred[Any], Any, None]:
        """
        Twisted's C{TCP4ServerEndpoint} on the reactor itself.
        """
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(self.factory)
        yield self.assertGovernedFromTheFirstConnection(port)

    @inlineCallbacks
    def test_twistedServerFromString(self) -> Generator[Deferred[Any], Any, None]:
        """
        Twisted's own C{endpoints.serverFromString(reactor, "tcp:...")}.
        """
        endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        port = yield endpoint.listen(self.factory)
        yield self.assertGovernedFromTheFirstConnection(port)

    def test_plainListenUNIX(self) -> Deferred[None]:
        """
        C{reactor.listenUNIX(path, factory)}.
        """
        return self.assertGovernedFromTheFirstConnection(self.listenUNIX())

    def test_plainListenSSL(self) -> Deferred[None]:
        """
        C{reactor.listenSSL(port, factory, contextFactory)}: Twisted's TLS
        wraps what the factory builds, so the connection beyond the cap is
        reset below TLS, before any handshake.
        """
        return self.assertGovernedFromTheFirstConnection(self.servedOverTLS()())
