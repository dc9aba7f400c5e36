"""
DirectClient, through ClientReactor and Twisted's client endpoints, keeps
Twisted's transport and connector contracts, on real loopback sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    NoRouteError,
)
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tcplife import EchoProtocol, LifecycleServerFactory
from tcplife.internet import ClientReactor, DirectClient
from tcplife.internet._port import PortReactor
from tcplife.testing import EventRecorder

from ..helpers import closeWithReset, freePort, pattern, pollerOf, waitUntilClosedByKernel


@implementer(IHalfCloseableProtocol)
class Recording(Protocol):
    """
    Records what arrives and how the connection ends; sends C{request} once
    connected, and half-closes after it with C{halfClose}.
    """

    request = b""
    halfClose = False

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.readEnded = False
        self.bufferedAfterWrite: int | None = None
        self.writingAfterWrite: bool | None = None

    def connectionMade(self) -> None:
        if self.request:
            transport: Any = self.transport
            transport.write(self.request)
            self.bufferedAfterWrite = len(transport.dataBuffer) + transport._tempDataLen
            self.writingAfterWrite = transport in pollerOf(transport).getWriters()
            if self.halfClose:
                transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.readEnded = True
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


class Plain(Protocol):
    """
    No half-close: an end of input is the end of the connection.
    """

    def __init__(self) -> None:
        self.ended: Deferred[Failure] = Deferred()

    def connectionLost(self, reason: Failure) -> None:
        # A list, so that the Deferred's result is not the failure itself.
        self.ended.callback([reason])  # type: ignore[arg-type]


class RecordingSocket:
    """
    A socket's stand-in that records the size of each C{recv} asked for.
    """

    def __init__(self, real: socket.socket) -> None:
        self._real = real
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        return self._real.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class ClientTestCase(TestCase):
    """
    A tcplife echo server on 127.0.0.1, and clients through L{ClientReactor}.
    """

    def listen(self) -> int:
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        factory.protocol = EchoProtocol
        port = PortReactor(reactor).listenTCP(0, factory, 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number

    @inlineCallbacks
    def connect(
        self, port: int, protocol: Recording, bindAddress: str | None = None
    ) -> Generator[Deferred[Any], Any, Recording]:
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor, bindAddress), "127.0.0.1", port)
        connected = yield connectProtocol(endpoint, protocol)
        self.addCleanup(self.closeAndWait, connected)
        return connected  # type: ignore[no-any-return]

    def closeAndWait(self, protocol: Recording) -> Deferred[None] | None:
        if protocol.ended.called:
            return None
        assert protocol.transport is not None
        protocol.transport.abortConnection()  # type: ignore[attr-defined]
        return protocol.ended


class ConnectTests(ClientTestCase):
    """
    Connections are DirectClients, connected as Twisted's endpoints expect.
    """

    @inlineCallbacks
    def test_endpointConnectionsAreDirectClientsWithNoDelay(self) -> Generator[Any, Any, None]:
        """
        A TCP endpoint on the client reactor connects with a DirectClient,
        Nagle's algorithm off, its events from the batched poller (or
        tcplife's own reactor).
        """
        port = self.listen()
        protocol = yield self.connect(port, Recording())
        transport = protocol.transport
        self.assertIsInstance(transport, DirectClient)
        assert isinstance(transport, DirectClient)
        self.assertTrue(transport.getTcpNoDelay())
        self.assertTrue(transport.readsSocketErrors)
        self.assertIn(transport, reactor.getReaders())  # type: ignore[attr-defined]
        self.assertEqual(transport.getPeer().port, port)

    @inlineCallbacks
    def test_theEndpointsWrapperStepsAsideOnceConnected(self) -> Generator[Any, Any, None]:
        """
        Once connected, the transport's protocol is the one the factory
        built: the endpoint's pass-through wrapper is out of every later
        call (here, the echo), and the Deferred fired with that protocol all
        the same.
        """
        port = self.listen()
        protocol = yield self.connect(port, Recording())
        transport: Any = protocol.transport
        echoed: Deferred[object] = Deferred()
        protocol.dataReceived = lambda data: echoed.callback(transport.protocol)  # type: ignore[method-assign]
        transport.write(b"ping")
        receiving = yield echoed
        self.assertIs(receiving, protocol)

    @inlineCallbacks
    def test_theWrapperWhileConnectingProvidesWhatItsProtocolDoes(
        self,
    ) -> Generator[Any, Any, None]:
        """
        While its protocol connects, the endpoint's pass-through declares
        half-close for a protocol that provides it and not for one that
        does not, for the first connection of each kind and the next.
        """
        port = self.listen()
        seen: list[tuple[str, bool]] = []

        def watching(protocol: Protocol) -> Protocol:
            def connectionMade() -> None:
                wrapper = protocol.transport.protocol  # type: ignore[union-attr]
                seen.append((type(protocol).__name__, IHalfCloseableProtocol.providedBy(wrapper)))

            protocol.connectionMade = connectionMade  # type: ignore[method-assign]
            return protocol

        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), "127.0.0.1", port)
        for protocol in [Recording(), Plain(), Recording(), Plain()]:
            connected = yield connectProtocol(endpoint, watching(protocol))
            connected.transport.abortConnection()
            yield connected.ended
        self.assertEqual(
            seen, [("Recording", True), ("Plain", False), ("Recording", True), ("Plain", False)]
        )

    @inlineCallbacks
    def test_refusedIsRefused(self) -> Generator[Any, Any, None]:
        """
        Nothing listening: the connect fails with ConnectionRefusedError,
        read from the socket's error after its error event.
        """
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), "127.0.0.1", freePort())
        failure = yield self.assertFailure(
            connectProtocol(endpoint, Recording()), ConnectionRefusedError
        )
        self.assertIsInstance(failure, ConnectionRefusedError)

    @inlineCallbacks
    def test_failingAtOnceIsReportedLater(self) -> Generator[Any, Any, None]:
        """
        A connect the kernel fails at once (to the broadcast address: no
        route) fails the endpoint's Deferred on a later pass, not inside
        connectTCP, with the kernel's error.
        """
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), "255.255.255.255", 9)
        connecting = connectProtocol(endpoint, Recording())
        self.assertFalse(connecting.called)
        yield self.assertFailure(connecting, NoRouteError)

    @inlineCallbacks
    def test_cancellingWhileConnectingLeavesNothingBehind(self) -> Generator[Any, Any, None]:
        """
        A connect cancelled before it completes fails with
        ConnectingCancelledError, and its socket is no longer watched.
        """
        # A listener that never accepts, with a full queue: the SYN waits.
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = socket.create_connection(listener.getsockname())
        self.addCleanup(queued.close)
        readers = set(reactor.getReaders())  # type: ignore[attr-defined]
        writers = set(reactor.getWriters())  # type: ignore[attr-defined]
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), *listener.getsockname())
        connecting = connectProtocol(endpoint, Recording())
        connecting.cancel()
        yield self.assertFailure(connecting, ConnectingCancelledError)
        self.assertEqual(set(reactor.getReaders()), readers)  # type: ignore[attr-defined]
        self.assertEqual(set(reactor.getWriters()), writers)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_bindAddressWithoutAPortOfItsOwn(self) -> Generator[Any, Any, None]:
        """
        From a bound local address, the kernel picks the port at connect()
        (IP_BIND_ADDRESS_NO_PORT), and the server sees that address.
        """
        port = self.listen()
        accepted = self.recorded.when(lifecycle="accept")
        protocol = yield self.connect(port, Recording(), bindAddress="127.0.0.2")
        transport: Any = protocol.transport
        self.assertEqual(transport.getHost().host, "127.0.0.2")
        handle = transport.getHandle()
        self.assertEqual(handle.getsockopt(socket.IPPROTO_IP, 24), 1)  # IP_BIND_ADDRESS_NO_PORT
        event = yield accepted
        self.assertTrue(event["peer"].startswith("127.0.0.2:"), event)


class TransportTests(ClientTestCase):
    """
    The client transport writes at once, reads large, half-closes and
    closes as Twisted's does.
    """

    @inlineCallbacks
    def test_writeWithEmptyBufferIsSentBeforeReturning(self) -> Generator[Any, Any, None]:
        """
        A write with nothing buffered leaves nothing in Twisted's buffer and
        does not wait for a writable event; the echo comes back.
        """
        port = self.listen()
        protocol = Recording()
        protocol.request = b"hello"
        protocol.halfClose = True
        yield self.connect(port, protocol)
        yield protocol.ended
        self.assertEqual((protocol.bufferedAfterWrite, protocol.writingAfterWrite), (0, False))
        self.assertEqual(b"".join(protocol.received), b"hello")

    @inlineCallbacks
    def test_halfCloseGetsTheWholeEchoThenEOF(self) -> Generator[Any, Any, None]:
        """
        4 MiB, then a half-close: the whole echo comes back, in order, then
        the server's FIN, and the connection closes cleanly.
        """
        port = self.listen()
        protocol = Recording()
        protocol.request = pattern(4 << 20)
        protocol.halfClose = True
        yield self.connect(port, protocol)
        yield protocol.ended
        self.assertTrue(b"".join(protocol.received) == protocol.request, "the echo differs")
        self.assertTrue(protocol.readEnded)
        assert protocol.reason is not None
        self.assertTrue(protocol.reason.check(ConnectionDone), protocol.reason)

    @inlineCallbacks
    def test_readsAskForLargeChunks(self) -> Generator[Any, Any, None]:
        """
        Each read asks the kernel for 256 KiB, where Twisted asks for 64.
        """
        port = self.listen()
        protocol = yield self.connect(port, Recording())
        transport: Any = protocol.transport
        recording = transport.socket = RecordingSocket(transport.socket)
        arrived: Deferred[None] = Deferred()
        protocol.dataReceived = lambda data: arrived.called or arrived.callback(None)  # type: ignore[method-assign]
        transport.write(b"x" * 1000)
        yield arrived
        self.assertEqual(set(recording.asked), {256 * 1024})

    @inlineCallbacks
    def test_resetMetByAWriteIsStillALostConnection(self) -> Generator[Any, Any, None]:
        """
        The server's RST, met first by a write (whose send takes the socket's
        error, so that the next read finds only an end of input), still ends
        the connection as lost, not as a clean close.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), *listener.getsockname())
        protocol = yield connectProtocol(endpoint, Plain())
        transport: Any = protocol.transport
        transport.stopReading()
        accepted, _ = listener.accept()
        closeWithReset(accepted)
        yield waitUntilClosedByKernel(transport.socket)
        transport.write(b"too late")
        transport.startReading()
        [reason] = yield protocol.ended
        self.assertTrue(reason.check(ConnectionLost), reason)

    @inlineCallbacks
    def test_pullProducerAfterAWriteIsAskedForMore(self) -> Generator[Any, Any, None]:
        """
        A pull producer registered after a write the kernel took at once is
        asked for more once the socket is writable, as it would have been
        once Twisted's buffer had sent that write.
        """
        port = self.listen()
        protocol = yield self.connect(port, Recording())
        transport: Any = protocol.transport
        resumed: list[bool] = []
        asked: Deferred[None] = Deferred()

        @implementer(IPullProducer)
        class Producer:
            def resumeProducing(self) -> None:
                resumed.append(True)
                if len(resumed) == 2:
                    asked.callback(None)

            def stopProducing(self) -> None:
                pass

        transport.write(b"hello")
        transport.registerProducer(Producer(), False)
        self.assertEqual(resumed, [True])
        yield asked
        transport.unregisterProducer()

    @inlineCallbacks
    def test_writeLargerThanTheBufferPausesAStreamingProducer(
        self,
    ) -> Generator[Any, Any, None]:
        """
        A write larger than bufferSize pauses a streaming producer, and the
        next writable event resumes it, as in Twisted's buffer, though the
        kernel took the bytes at once.
        """
        port = self.listen()
        protocol = yield self.connect(port, Recording())
        transport: Any = protocol.transport
        actions: list[str] = []
        resumed: Deferred[None] = Deferred()

        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self) -> None:
                actions.append("pause")

            def resumeProducing(self) -> None:
                actions.append("resume")
                resumed.callback(None)

            def stopProducing(self) -> None:
                pass

        transport.registerProducer(Producer(), True)
        transport.write(b"x" * 100)
        self.assertEqual(actions, [])
        transport.write(b"x" * (transport.bufferSize + 1))
        self.assertEqual(actions, ["pause"])
        yield resumed
        self.assertEqual(actions, ["pause", "resume"])
        transport.unregisterProducer()
