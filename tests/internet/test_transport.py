"""
DirectServer keeps Twisted's transport contract, on real loopback sockets.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from tcplife import EchoProtocol, LifecycleServerFactory
from tcplife.internet._port import PortReactor
from tcplife.internet._transport import IOV_MAX, DirectServer
from tcplife.testing import EventRecorder

from ..certs import SelfSigned
from ..helpers import (
    WAIT,
    callInThread,
    closeWithReset,
    echoWithHalfClose,
    pattern,
    pollerOf,
    readToEndOrReset,
)


def receiveAll(port: int, send: bytes = b"go") -> bytes:
    """
    Connect, send C{send}, and read until EOF.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        client.sendall(send)
        chunks = []
        while chunk := client.recv(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)


class DirectTestCase(TestCase):
    """
    A LifecycleServerFactory on a tcplife port (so a DirectServer per
    connection) on 127.0.0.1, its events recorded.
    """

    def listen(self, protocol: type[Protocol] = EchoProtocol) -> int:
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        self.factory.protocol = protocol
        self.port = PortReactor(reactor).listenTCP(0, self.factory, 50, "127.0.0.1")
        self.addCleanup(self.port.stopListening)
        port: int = self.port.getHost().port  # type: ignore[attr-defined]
        return port

    @inlineCallbacks
    def connectClient(
        self, port: int
    ) -> Generator[Deferred[Any], Any, tuple[socket.socket, dict[str, Any]]]:
        """
        Connect a plain socket to C{port} (closed when the test ends), and
        wait for the server's C{accept}: the socket and the event.
        """
        accepted = self.recorded.when(lifecycle="accept")
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(client.close)
        event = yield accepted
        return client, event

    def transportOf(self, connId: int | None = None) -> DirectServer:
        [connection] = (
            list(self.factory.connections.values())
            if connId is None
            else [self.factory.connections[connId]]
        )
        transport = connection.transport
        assert isinstance(transport, DirectServer)
        return transport


class WriteAtOnce(Protocol):
    """
    Writes a reply and records how much of it Twisted still buffers after
    the call returns.
    """

    buffered: list[int] = []
    writing: list[bool] = []

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(b"reply:" + data)
        inner = transport.transport
        WriteAtOnce.buffered.append(len(inner.dataBuffer) + inner._tempDataLen)
        WriteAtOnce.writing.append(inner in pollerOf(inner).getWriters())
        transport.loseConnection()


class WriteTests(DirectTestCase):
    """
    Writes go out at once when nothing is buffered, and in order when the
    kernel cannot take them.
    """

    def test_tcpPortsBuildDirectServers(self) -> None:
        """
        A tcplife TCP port builds a DirectServer for each connection.
        """
        self.listen()
        self.assertIs(self.port.transport, DirectServer)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_writeWithEmptyBufferIsSentBeforeReturning(self) -> Deferred[None]:
        """
        A write with nothing buffered leaves nothing in Twisted's buffer and
        does not wait for a writable event.
        """
        WriteAtOnce.buffered, WriteAtOnce.writing = [], []
        port = self.listen(WriteAtOnce)
        received = yield callInThread(receiveAll, port, b"hello")
        self.assertEqual(received, b"reply:hello")
        self.assertEqual((WriteAtOnce.buffered, WriteAtOnce.writing), ([0], [False]))

    @inlineCallbacks
    def test_tcpNoDelayIsOn(self) -> Deferred[None]:
        """
        Accepted connections have Nagle's algorithm off.
        """
        port = self.listen()
        _, event = yield self.connectClient(port)
        self.assertTrue(self.transportOf(event["conn_id"]).getTcpNoDelay())

    @inlineCallbacks
    def test_logstrNamesProtocolSessionAndPeerBeforeAnyLogging(self) -> Deferred[None]:
        """
        C{transport.logstr} reads as C{tcp.Server}'s does from the start, even
        before anything asked for the log prefix.
        """
        port = self.listen()
        yield self.connectClient(port)
        transport = self.transportOf()
        self.assertEqual(transport.logstr, f"EchoProtocol,{transport.sessionno},127.0.0.1")
        self.assertEqual(transport.logPrefix(), transport.logstr)

    @inlineCallbacks
    def test_echoLargerThanSocketBuffersArrivesInOrder(self) -> Deferred[None]:
        """
        32 MiB echoed with a half-close comes back byte for byte, though
        most of it passes through Twisted's buffer behind partial sends.
        """
        port = self.listen()
        payload = pattern(32 << 20)
        echoed = yield callInThread(echoWithHalfClose, port, payload)
        self.assertEqual(len(echoed), len(payload))
        self.assertTrue(echoed == payload, "echo differs from what was sent")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_out"]), ("fin", len(payload)))

    @inlineCallbacks
    def test_writeSequenceSendsEveryChunkInOrder(self) -> Deferred[None]:
        """
        writeSequence with a few chunks, and with more chunks than one
        sendmsg takes, delivers their concatenation.
        """
        few = [b"a" * 10, b"", b"b" * 70_000, b"c"]
        many = [bytes([n % 251]) * 3 for n in range(IOV_MAX * 2 + 5)]

        class Sequences(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.writeSequence(few)
                self.transport.writeSequence(many)
                self.transport.loseConnection()

        port = self.listen(Sequences)
        received = yield callInThread(receiveAll, port)
        self.assertTrue(received == b"".join(few + many), "writeSequence output differs")

    @inlineCallbacks
    def test_writeOfNonBytesRaisesTypeError(self) -> Deferred[None]:
        """
        As with every Twisted transport, write() refuses str.
        """
        raised: list[type[BaseException]] = []

        class WritesText(Protocol):
            def dataReceived(self, data: bytes) -> None:
                transport: Any = self.transport
                try:
                    transport.transport.write("text")
                except TypeError as e:
                    raised.append(type(e))
                transport.loseConnection()

        port = self.listen(WritesText)
        received = yield callInThread(receiveAll, port)
        self.assertEqual((received, raised), (b"", [TypeError]))


class Flood(Protocol):
    """
    Answers any input with C{size} bytes and then closes (or aborts).
    """

    size = 16 << 20
    abort = False

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(pattern(self.size))
        if self.abort:
            transport.abortConnection()
        else:
            transport.loseConnection()


class Abort(Flood):
    abort = True
    size = 64 << 20


class CloseTests(DirectTestCase):
    """
    loseConnection flushes first; abortConnection discards and resets.
    """

    @inlineCallbacks
    def test_loseConnectionFlushesEverythingFirst(self) -> Deferred[None]:
        """
        16 MiB written right before loseConnection all reach the client
        before the EOF.
        """
        port = self.listen(Flood)
        received = yield callInThread(receiveAll, port)
        self.assertTrue(received == pattern(Flood.size), "not everything arrived before EOF")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "fin"))

    @inlineCallbacks
    def test_loseConnectionWithNothingBufferedClosesAndWriteAfterItIsDelivered(
        self,
    ) -> Deferred[None]:
        """
        With nothing buffered, loseConnection closes on the next pass; a
        write made after it (and before that pass) is still delivered.
        """

        class LateWrite(Protocol):
            def dataReceived(self, data: bytes) -> None:
                transport: Any = self.transport
                transport.loseConnection()
                transport.write(b"after")

        port = self.listen(LateWrite)
        received = yield callInThread(receiveAll, port)
        self.assertEqual(received, b"after")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "fin"))

    @inlineCallbacks
    def test_abortDiscardsBufferedOutputAndResets(self) -> Deferred[None]:
        """
        Abort right after a 64 MiB write: the client sees a reset and not
        all of it, and the event says abort.
        """
        port = self.listen(Abort)
        client, _ = yield self.connectClient(port)
        # The client reads only once the abort is done, so most of the 64 MiB
        # is still in the server's buffer when it is discarded (a client
        # reading all along could have drained a single send of all of it).
        client.sendall(b"go")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "abort"))

        received, reset = yield callInThread(readToEndOrReset, client)
        self.assertTrue(reset, "the client saw an orderly EOF, not a reset")
        self.assertLess(received, Abort.size)

    @inlineCallbacks
    def test_peerResetIsReported(self) -> Deferred[None]:
        """
        A client's RST ends the connection with how=reset.
        """
        port = self.listen()
        client, _ = yield self.connectClient(port)
        closeWithReset(client)
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))


@implementer(IHalfCloseableProtocol)
class AnswerThenHalfClose(Protocol):
    """
    Answers the first bytes, half-closes its side, and counts what the
    peer still sends afterwards.
    """

    def __init__(self) -> None:
        self.after = b""
        self.finished = False

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        if not self.finished:
            self.finished = True
            transport.write(b"answer")
            transport.loseWriteConnection()
        else:
            self.after += data

    def readConnectionLost(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class HalfCloseTests(DirectTestCase):
    """
    Half-close both ways: the peer's FIN, and loseWriteConnection.
    """

    @inlineCallbacks
    def test_peerHalfCloseStillGetsTheWholeEcho(self) -> Deferred[None]:
        """
        A client that half-closes after 1 MiB reads the whole echo, then EOF.
        """
        port = self.listen()
        payload = pattern(1 << 20)
        echoed = yield callInThread(echoWithHalfClose, port, payload)
        self.assertTrue(echoed == payload, "echo differs from what was sent")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual(self.recorded.phases(close["conn_id"]), ["accept", "half-close", "close"])

    @inlineCallbacks
    def test_loseWriteConnectionSendsFinAndKeepsReading(self) -> Deferred[None]:
        """
        After loseWriteConnection the client reads the answer then EOF, and
        what it sends afterwards still reaches the protocol.
        """
        built: list[AnswerThenHalfClose] = []

        class Recording(AnswerThenHalfClose):
            def __init__(self) -> None:
                super().__init__()
                built.append(self)

        port = self.listen(Recording)

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
                s.sendall(b"question")
                received = b""
                while chunk := s.recv(1024):
                    received += chunk
                s.sendall(b"more")
                s.shutdown(socket.SHUT_WR)
                s.recv(1024)
                return received

        received = yield callInThread(client)
        self.assertEqual(received, b"answer")
        yield self.recorded.when(lifecycle="close")
        self.assertEqual(built[0].after, b"more")
        halves = [(e["initiator"]) for e in self.recorded.of("half-close")]
        self.assertEqual(halves, ["local", "peer"])


class ProducerTests(DirectTestCase):
    """
    Streaming backpressure and pull producers work with direct writes.
    """

    @inlineCallbacks
    def test_peerThatDoesNotReadPausesReadingUntilItReads(self) -> Deferred[None]:
        """
        A client that sends 8 MiB without reading fills Twisted's buffer
        past bufferSize: the server stops reading; once the client reads,
        everything is echoed.
        """
        port = self.listen()
        client, event = yield self.connectClient(port)
        transport = self.transportOf(event["conn_id"])
        payload = pattern(8 << 20)
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        self.addCleanup(sender.join, WAIT)
        for _ in range(400):
            if transport not in pollerOf(transport).getReaders():
                break
            d: Deferred[None] = Deferred()
            reactor.callLater(0.01, d.callback, None)  # type: ignore[attr-defined]
            yield d
        self.assertNotIn(transport, pollerOf(transport).getReaders())
        self.assertGreater(len(transport.dataBuffer) + transport._tempDataLen, 0)

        def readBack() -> bytes:
            chunks, total = [], 0
            while total < len(payload):
                chunk = client.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            return b"".join(chunks)

        echoed = yield callInThread(readBack)
        self.assertTrue(echoed == payload, "echo differs after backpressure")

    @inlineCallbacks
    def test_pullProducerIsDrivenToTheEnd(self) -> Deferred[None]:
        """
        A FileSender (a pull producer) sends a 4 MiB file whole: the
        transport keeps asking it for more though writes go out at once.
        """
        content = pattern(4 << 20)

        class SendFile(Protocol):
            def dataReceived(self, data: bytes) -> None:
                transport: Any = self.transport
                done = FileSender().beginFileTransfer(io.BytesIO(content), transport)
                done.addCallback(lambda _: transport.loseConnection())

        port = self.listen(SendFile)
        received = yield callInThread(receiveAll, port)
        self.assertTrue(received == content, "the file arrived incomplete or altered")


class TLSTests(TestCase):
    """
    The ssl: endpoint runs TLS in memory over a tcplife port's DirectServer.
    """

    @inlineCallbacks
    def test_tlsEchoOverDirectServer(self) -> Deferred[None]:
        """
        A TLS client gets its 1 MiB echoed through an ssl: endpoint.
        """
        certificate = SelfSigned(Path(self.mktemp()))
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        ports = PortReactor(reactor)
        port = yield serverFromString(
            ports,
            f"ssl:0:interface=127.0.0.1:privateKey={certificate.key}:certKey={certificate.cert}",
        ).listen(factory)
        self.addCleanup(port.stopListening)
        self.assertIs(port.transport, DirectServer)
        payload = pattern(1 << 20)

        def client() -> bytes:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                # One SSL object must not read and write from two threads at
                # once: send a piece, read its echo, and so on.
                received = bytearray()
                for start in range(0, len(payload), 1 << 16):
                    s.sendall(payload[start : start + (1 << 16)])
                    while len(received) < min(start + (1 << 16), len(payload)):
                        chunk = s.recv(1 << 16)
                        if not chunk:
                            return bytes(received)
                        received += chunk
                return bytes(received)

        echoed = yield callInThread(client)
        self.assertTrue(echoed == payload, "TLS echo differs from what was sent")
        close = yield recorded.when(lifecycle="close")
        self.assertEqual(close["bytes_in"], len(payload))


class RefusingFactory(LifecycleServerFactory):
    """
    Refuses the first connection (buildProtocol returns None), raises on
    the second, and serves the rest.
    """

    built = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.built += 1
        if self.built == 1:
            return None
        if self.built == 2:
            raise RuntimeError("buildProtocol is broken")
        return super().buildProtocol(addr)


class RefusingFactoryWithoutPolicy(RefusingFactory):
    """
    The same, bringing no accept policy to the ports it listens on.
    """

    acceptPolicy = None


class AcceptTests(TestCase):
    """
    The flat accept loop keeps tcp.Port's behaviour.
    """

    def test_refusedAndBrokenConnectionsDoNotStopThePort(self) -> Deferred[None]:
        """
        A connection the factory refuses is closed, one whose factory raises
        is logged and dropped, and the next one is served.
        """
        return self.refusedAndBroken(withPolicy=False)

    def test_refusedAndBrokenConnectionsUnderAnAcceptPolicy(self) -> Deferred[None]:
        """
        The same holds for a port under admission control (as twist tcpecho
        runs), and the gate counts the refusal.
        """
        return self.refusedAndBroken(withPolicy=True)

    @inlineCallbacks
    def refusedAndBroken(self, withPolicy: bool) -> Deferred[None]:
        recorded = EventRecorder()
        factoryClass = RefusingFactory if withPolicy else RefusingFactoryWithoutPolicy
        factory = factoryClass(clock=reactor, events=recorded.log)
        port = PortReactor(reactor).listenTCP(0, factory, 50, "127.0.0.1")
        self.assertIs(port.acceptPolicy, factory.gate if withPolicy else None)
        self.addCleanup(port.stopListening)
        number = port.getHost().port  # type: ignore[attr-defined]
        # Nothing sent: closing a socket with unread input would be a reset.
        refused = yield callInThread(receiveAll, number, b"")
        self.assertEqual(refused, b"")
        broken = yield callInThread(receiveAll, number, b"")
        self.assertEqual(broken, b"")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        served = yield callInThread(echoWithHalfClose, number, b"third")
        self.assertEqual(served, b"third")
        self.assertEqual(len(recorded.of("accept")), 1)
        self.assertEqual(factory.gate.refusedByFactory, 1 if withPolicy else 0)

    @inlineCallbacks
    def test_peerOfATransportThatOverridesGetPeerIsItsOwn(self) -> Deferred[None]:
        """
        A DirectServer subclass whose getPeer names another address has that
        address, not the socket's, as the peer of its connections' events.
        """

        class Relayed(DirectServer):
            def getPeer(self) -> IPv4Address:
                return IPv4Address("TCP", "192.0.2.7", 4242)

        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        port = PortReactor(reactor, transport=Relayed).listenTCP(0, factory, 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port  # type: ignore[attr-defined]
        echoed = yield callInThread(echoWithHalfClose, number, b"seven")
        self.assertEqual(echoed, b"seven")
        close = yield recorded.when(lifecycle="close")
        self.assertEqual(close["peer"], "192.0.2.7:4242")
        self.assertEqual(recorded.of("accept")[0]["peer"], "192.0.2.7:4242")

    @inlineCallbacks
    def test_ipv6PeerIsReportedWithBrackets(self) -> Deferred[None]:
        """
        On ::1 the accepted connection's events carry [::1]:port addresses.
        """
        if not socket.has_ipv6:
            raise SkipTest("no IPv6")
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        try:
            port = PortReactor(reactor).listenTCP(0, factory, 50, "::1")
        except CannotListenError as e:
            raise SkipTest(f"::1 is not usable here: {e}") from None
        self.addCleanup(port.stopListening)
        number = port.getHost().port  # type: ignore[attr-defined]
        echoed = yield callInThread(echoWithHalfClose, number, b"six", "::1")
        self.assertEqual(echoed, b"six")
        accept = yield recorded.when(lifecycle="accept")
        self.assertEqual(accept["local"], f"[::1]:{number}")
        self.assertTrue(accept["peer"].startswith("[::1]:"))


class KernelQueueTests(DirectTestCase):
    """
    loseConnection closes at once only when the kernel has nothing unsent.
    """

    @inlineCallbacks
    def test_unsentBytesAreSeenWhileThePeerDoesNotRead(self) -> Deferred[None]:
        """
        With a peer that does not read, the kernel holds unsent bytes once
        its window is full, and loseConnection then waits for a writable
        event as Twisted's does instead of closing at once.
        """
        port = self.listen()
        _, event = yield self.connectClient(port)
        transport = self.transportOf(event["conn_id"])
        self.assertEqual(transport._kernelUnsent(), 0)
        # Written straight to the transport: the peer's window fills, the
        # rest waits in Twisted's buffer, and both hold unsent bytes.
        transport.write(pattern(32 << 20))
        self.assertGreater(transport._kernelUnsent(), 0)
        transport.dataBuffer, transport._tempDataBuffer, transport._tempDataLen = b"", [], 0
        transport.loseConnection()
        self.assertIn(transport, pollerOf(transport).getWriters())
        transport.abortConnection()
        yield self.recorded.when(lifecycle="close")
