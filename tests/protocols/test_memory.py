"""
A closed connection is freed at once, by reference counting: no reference
cycle keeps it, its transport and its unsent output waiting for the cyclic
garbage collector.
"""

from __future__ import annotations

import gc
import socket
import ssl
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory, TrackedConnection, serverFromString
from tcplife.internet._port import PortReactor
from tcplife.testing import EventRecorder

from ..certs import SelfSigned
from ..helpers import WAIT, callInThread
from ..servers import temporaryDirectory

#: The PROXY v1 header a balancer would send first.
PROXY_HEADER = b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n"


class WatchedFactory(LifecycleServerFactory):
    """
    Keeps a weak reference to each connection's tracked connection, every
    transport beneath it, and its protocol.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watched: list[weakref.ref[Any]] = []

    def connectionOpened(self, connection: TrackedConnection) -> None:
        layers: list[Any] = [connection, connection.wrappedProtocol]
        transport = connection.transport
        while transport is not None:
            layers.append(transport)
            transport = getattr(transport, "transport", None)
        self.watched += [weakref.ref(layer) for layer in layers]
        super().connectionOpened(connection)

    def alive(self) -> list[str]:
        return [type(layer).__name__ for ref in self.watched if (layer := ref()) is not None]


def flood(connect: Callable[[], socket.socket]) -> None:
    """
    Push without reading until the server stops reading, then close: what
    a hostile client (or a broken one) does.
    """
    client = connect()
    client.settimeout(0.5)
    try:
        while True:
            client.sendall(b"f" * 65536)
    except (TimeoutError, ssl.SSLError, OSError):
        pass
    client.close()


def echoOnce(connect: Callable[[], socket.socket]) -> None:
    """
    Send a line, read its echo, close.
    """
    with connect() as client:
        client.sendall(b"hello\n")
        received = b""
        while len(received) < 6:
            received += client.recv(6)


class ClosedConnectionsAreFreedTests(TestCase):
    """
    With the cyclic garbage collector off, every layer of a closed
    connection is gone as soon as the close has returned.
    """

    def setUp(self) -> None:
        self.certificate = SelfSigned(temporaryDirectory(self))
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)

    def connector(self, port: int, tls: bool, proxy: bool) -> Callable[[], socket.socket]:
        def connect() -> socket.socket:
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            if proxy:
                client.sendall(PROXY_HEADER)
            if not tls:
                return client
            context = ssl.create_default_context(cafile=str(self.certificate.cert))
            return context.wrap_socket(client, server_hostname="localhost")

        return connect

    @inlineCallbacks
    def assertFreedAfter(
        self, client: Callable[[Callable[[], socket.socket]], None], prefix: str, tls: bool
    ) -> Deferred[None]:
        recorded = EventRecorder()
        factory = WatchedFactory(clock=reactor, events=recorded.log)
        description = self.certificate.endpoint() if tls else "tcp:0:interface=127.0.0.1"
        port = yield serverFromString(
            PortReactor(reactor, factory.gate), prefix + description
        ).listen(factory)
        self.addCleanup(port.stopListening)
        closed = recorded.when(lifecycle="close")
        yield callInThread(client, self.connector(port.getHost().port, tls, bool(prefix)))
        yield closed
        # The close event is emitted inside the close; let it return.
        yield deferLater(reactor, 0, lambda: None)
        # The tracked connection, its protocol, and each transport below it.
        self.assertEqual(len(factory.watched), 3 + tls + bool(prefix))
        self.assertEqual(factory.alive(), [])

    def test_tcpConnectionIsFreed(self) -> Deferred[None]:
        """
        A TCP connection that echoed and closed leaves nothing behind.
        """
        return self.assertFreedAfter(echoOnce, "", tls=False)

    @pytest.mark.slow
    def test_floodingTcpConnectionIsFreedWithItsBuffers(self) -> Deferred[None]:
        """
        A client that pushes without reading and closes leaves nothing
        behind, not even the output the server could never send it.
        """
        return self.assertFreedAfter(flood, "", tls=False)

    def test_tlsConnectionIsFreed(self) -> Deferred[None]:
        """
        Through the TLS wrapper (whose producer outlives the close), a
        flooding connection leaves nothing behind.
        """
        return self.assertFreedAfter(flood, "", tls=True)

    def test_proxyConnectionIsFreed(self) -> Deferred[None]:
        """
        Through the PROXY header wrapper, a flooding connection leaves
        nothing behind.
        """
        return self.assertFreedAfter(flood, "haproxy:", tls=False)

    def test_proxyTlsConnectionIsFreed(self) -> Deferred[None]:
        """
        Through both wrappers (PROXY below TLS), a connection that echoed
        leaves nothing behind.
        """
        return self.assertFreedAfter(echoOnce, "haproxy:", tls=True)
