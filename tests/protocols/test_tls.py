"""
TLS: the half-closeable TLS server connection on memory transports, and
C{twist tcpecho --listen ssl:...} with real TLS clients (Python's C{ssl} and
C{openssl s_client}).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import DefaultOpenSSLContextFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tcplife import EchoClient, LifecycleClientFactory, LifecycleServerFactory, serverFromString
from tcplife.internet._port import PortReactor
from tcplife.protocols._tls import HalfCloseableTLSFactory
from tcplife.testing import EventRecorder

from ..certs import SelfSigned
from ..helpers import (
    WAIT,
    callInThread,
    pattern,
    recvUntilEOF,
    socketUnder,
)


@implementer(IHalfCloseableProtocol)
class LateAnswer(Protocol):
    """
    Counts what it reads and, a second after the peer has finished sending,
    answers with the count and closes: a protocol that writes after the
    half-close.
    """

    received = 0

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def readConnectionLost(self) -> None:
        self.factory.clock.callLater(1, self.answer)  # type: ignore[attr-defined]

    def answer(self) -> None:
        assert self.transport is not None
        self.transport.write(b"%d" % (self.received,))
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IPushProducer)
class ClosesWhileProducing(Protocol):
    """
    On its first read becomes its transport's producer, writes, and asks to
    close; L{finish} writes the rest and unregisters, which lets the close
    go ahead.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.transport.write(b"early ")
        self.transport.loseConnection()

    def finish(self) -> None:
        assert self.transport is not None
        self.transport.write(b"late")
        self.transport.unregisterProducer()  # type: ignore[attr-defined]

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class MemoryTLS:
    """
    A tcplife TLS server connection on a StringTransport and a pyOpenSSL
    client talking to it through memory, moved along by hand.
    """

    def __init__(
        self,
        certificate: SelfSigned,
        protocol: type[Protocol] | None = None,
        *,
        maximumVersion: int | None = None,
        tlsFactory: type[TLSMemoryBIOFactory] = HalfCloseableTLSFactory,
    ) -> None:
        self.clock = Clock()
        self.recorded = EventRecorder()
        server = LifecycleServerFactory(clock=self.clock, events=self.recorded.log)
        if protocol is not None:
            server.protocol = protocol  # type: ignore[assignment]
        options = DefaultOpenSSLContextFactory(str(certificate.key), str(certificate.cert))
        factory = tlsFactory(options, False, server, self.clock)
        self.server = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)

        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if maximumVersion is not None:
            context.set_max_proto_version(maximumVersion)
        self.client = SSL.Connection(context, None)
        self.client.set_connect_state()
        self.received = b""
        self.closeNotify = False
        self.alert: str | None = None
        for _ in range(10):
            try:
                self.client.do_handshake()
                break
            except SSL.WantReadError:
                self.toServer()
                self.fromServer()
        else:
            raise AssertionError("no TLS handshake")
        # The client's Finished, and the server's tickets back.
        self.toServer()
        self.fromServer()

    def toServer(self) -> None:
        """
        Everything the client has sent so far arrives in one read.
        """
        chunks = []
        while True:
            try:
                chunks.append(self.client.bio_read(1 << 16))
            except SSL.WantReadError:
                break
        if chunks:
            self.server.dataReceived(b"".join(chunks))

    def fromServer(self) -> None:
        data = self.transport.value()
        self.transport.clear()
        if data:
            self.client.bio_write(data)
        while not (self.closeNotify or self.alert):
            try:
                self.received += self.client.recv(1 << 16)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.closeNotify = True
            except SSL.Error as e:
                self.alert = str(e)
                break

    def send(self, data: bytes, *, closeNotify: bool = False) -> None:
        """
        The client sends C{data}, then perhaps its close_notify; both reach
        the server in a single read.
        """
        self.client.sendall(data)
        if closeNotify:
            self.client.shutdown()
        self.toServer()
        self.fromServer()

    def closed(self) -> None:
        """
        The server's TCP connection is gone, as after its own close.
        """
        self.server.connectionLost(Failure(ConnectionDone()))

    def close(self) -> dict[str, Any]:
        [close] = self.recorded.of("close")
        return close


class CloseNotifyTests(SynchronousTestCase):
    """
    The peer's close_notify, under TLS 1.3 and 1.2, and a FIN without one.
    """

    def setUp(self) -> None:
        self.certificate = SelfSigned(Path(self.mktemp()))

    def test_tls13CloseNotifyIsAHalfCloseAndTheEchoArrivesFirst(self) -> None:
        """
        Data and a TLS 1.3 close_notify in one read: the echo goes out (with
        no reactor pass in between), the half-close event is logged, and
        then the server's own close_notify follows.
        """
        tls = MemoryTLS(self.certificate)
        self.assertEqual(tls.client.get_protocol_version_name(), "TLSv1.3")
        payload = pattern(50_000)
        tls.send(payload, closeNotify=True)
        self.assertTrue(tls.received == payload)
        self.assertTrue(tls.closeNotify)
        self.assertTrue(tls.transport.disconnecting)
        [half] = tls.recorded.of("half-close")
        self.assertEqual(half["initiator"], "peer")
        tls.closed()
        close = tls.close()
        self.assertEqual(
            (close["initiator"], close["how"], close["bytes_in"], close["bytes_out"]),
            ("peer", "fin", 50_000, 50_000),
        )

    def test_tls13PeerStillReadsAfterItsCloseNotify(self) -> None:
        """
        A protocol that answers a second after the TLS 1.3 close_notify still
        reaches the client, before the server's close_notify.
        """
        tls = MemoryTLS(self.certificate, LateAnswer)
        tls.send(b"x" * 1234, closeNotify=True)
        self.assertEqual((tls.received, tls.closeNotify), (b"", False))
        self.assertFalse(tls.transport.disconnecting)
        tls.clock.advance(1)
        tls.fromServer()
        self.assertEqual((tls.received, tls.closeNotify), (b"1234", True))
        self.assertTrue(tls.transport.disconnecting)

    def test_tls12CloseNotifyEndsTheConnectionAfterTheEcho(self) -> None:
        """
        Under TLS 1.2 a close_notify ends the connection at once (RFC 5246
        7.2.1): what was written for the data before it still arrives, there
        is no half-close, and a protocol that would answer later is cut off.
        """
        tls = MemoryTLS(self.certificate, maximumVersion=SSL.TLS1_2_VERSION)
        self.assertEqual(tls.client.get_protocol_version_name(), "TLSv1.2")
        tls.send(b"echo me", closeNotify=True)
        self.assertEqual((tls.received, tls.closeNotify), (b"echo me", True))
        self.assertTrue(tls.transport.disconnecting)
        self.assertEqual(tls.recorded.of("half-close"), [])
        tls.closed()
        self.assertEqual(tls.close()["how"], "fin")

        late = MemoryTLS(self.certificate, LateAnswer, maximumVersion=SSL.TLS1_2_VERSION)
        late.send(b"x" * 10, closeNotify=True)
        self.assertTrue(late.transport.disconnecting)
        late.closed()
        late.clock.advance(1)
        late.fromServer()
        self.assertEqual((late.received, late.closeNotify), (b"", True))

    def test_finWithoutCloseNotifyIsALostConnectionThatKeepsTheEcho(self) -> None:
        """
        A TCP FIN with no close_notify (a possible truncation) is reported as
        a lost connection (how=reset), but the echo already written is sent
        before OpenSSL's alert and the server's close.
        """
        tls = MemoryTLS(self.certificate)
        tls.send(b"cut short")
        self.assertEqual(tls.received, b"")
        tls.server.readConnectionLost()
        self.assertTrue(tls.transport.disconnecting)
        tls.fromServer()
        self.assertEqual(tls.received, b"cut short")
        self.assertIn("alert", tls.alert or "")
        tls.closed()
        close = tls.close()
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))
        self.assertEqual(tls.recorded.of("half-close"), [])

    def test_writesBeforeUnregisteringGoBeforeOurCloseNotify(self) -> None:
        """
        A protocol that asked to close while its producer was registered
        loses nothing it writes before unregistering: the write gathered
        for the next reactor pass goes out before the close_notify that
        unregistering sends.
        """
        tls = MemoryTLS(self.certificate, ClosesWhileProducing)
        tls.send(b"go")
        tls.server.wrappedProtocol.wrappedProtocol.finish()
        tls.fromServer()
        self.assertEqual((tls.received, tls.closeNotify), (b"early late", True))

    def test_tls13CloseNotifyAfterOursWaitsForTheProtocolsProducer(self) -> None:
        """
        TLS 1.3: when the peer's close_notify answers a close that still
        waits for the protocol's producer, what the producer writes next
        still arrives, and our close_notify and the TCP close follow its
        unregistering.
        """
        tls = MemoryTLS(self.certificate, ClosesWhileProducing)
        tls.send(b"go")
        self.assertEqual((tls.received, tls.closeNotify), (b"early ", False))
        tls.client.shutdown()
        tls.toServer()
        self.assertFalse(tls.transport.disconnecting)
        producing = tls.server.wrappedProtocol.wrappedProtocol
        producing.finish()
        tls.fromServer()
        self.assertEqual((tls.received, tls.closeNotify), (b"early late", True))
        self.assertTrue(tls.transport.disconnecting)
        self.assertEqual(tls.recorded.of("half-close"), [])

    def test_twistedsOwnTLSDropsTheEchoBeforeCloseNotify(self) -> None:
        """
        Why tcplife has its own TLS protocol: Twisted's drops output written
        for data that came in the same read as a close_notify.  When this
        fails, Twisted has fixed it.
        """
        tls = MemoryTLS(self.certificate, tlsFactory=TLSMemoryBIOFactory)
        tls.send(b"lost", closeNotify=True)
        tls.clock.advance(1)
        tls.fromServer()
        self.assertEqual((tls.received, tls.closeNotify), (b"", True))


class CloseAfterFirstRead(Protocol):
    """
    Echoes the first bytes it reads, then closes: a server that ends the
    connection before the client does.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.transport.loseConnection()


def answerCloseNotify(
    port: int, context: ssl.SSLContext, request: bytes
) -> tuple[str | None, bytes, bytes]:
    """
    A TLS client that sends C{request}, reads until the server's
    close_notify, answers it with its own (as Python's ssl, Twisted and
    browsers do), then reads the bare TCP connection until the server's FIN.
    Blocking: run it in a thread.

    @return: The TLS version, the reply, and what came after the close_notify
        exchange (nothing, on a clean close).
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    with context.wrap_socket(raw, server_hostname="localhost") as client:
        if request:
            client.sendall(request)
        reply = b""
        while chunk := client.recv(1 << 16):
            reply += chunk
        version = client.version()
        plain = client.unwrap()
        try:
            after = recvUntilEOF(plain)
        except TimeoutError:
            raise AssertionError(
                f"no FIN from the server {WAIT} s after the close_notify exchange"
            ) from None
    return version, reply, after


class ServerClosesFirstTests(TestCase):
    """
    A TLS server that closes first, listening as C{twist tcpecho --listen
    ssl:...} does, finishes the close when the client answers its
    close_notify: the connection is lost, the C{close} event logged, and
    the socket closed.
    """

    def setUp(self) -> None:
        self.certificate = SelfSigned(Path(self.mktemp()))
        self.recorded = EventRecorder()

    @inlineCallbacks
    def assertCloseFinishes(
        self,
        version: ssl.TLSVersion,
        request: bytes,
        how: str,
        **settings: Any,
    ) -> Deferred[None]:
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log, **settings)
        if request:
            factory.protocol = CloseAfterFirstRead  # type: ignore[assignment]
        endpoint = serverFromString(PortReactor(reactor), self.certificate.endpoint())
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        context = ssl.create_default_context(cafile=str(self.certificate.cert))
        context.minimum_version = context.maximum_version = version
        accepted = self.recorded.when(lifecycle="accept")
        exchange = callInThread(answerCloseNotify, port.getHost().port, context, request)
        yield accepted
        [tracked] = factory.connections.values()
        tcp = socketUnder(tracked)

        negotiated, reply, after = yield exchange

        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((negotiated, reply, after), (version.name.replace("_", "."), request, b""))
        self.assertEqual((close["initiator"], close["how"]), ("local", how))
        self.assertEqual(self.recorded.of("half-close"), [])
        self.assertEqual(tcp.fileno(), -1)

    def test_tls13ProtocolThatClosesFirst(self) -> Deferred[None]:
        """
        TLS 1.3: a protocol that closes after its first read gets its
        connection closed once the client answers the close_notify.
        """
        return self.assertCloseFinishes(ssl.TLSVersion.TLSv1_3, b"first", "fin")

    def test_tls12ProtocolThatClosesFirst(self) -> Deferred[None]:
        """
        TLS 1.2: a protocol that closes after its first read gets its
        connection closed once the client answers the close_notify.
        """
        return self.assertCloseFinishes(ssl.TLSVersion.TLSv1_2, b"first", "fin")

    def test_tls13IdleTimeout(self) -> Deferred[None]:
        """
        TLS 1.3: the idle timeout's graceful close finishes when the client
        answers, long before the close timeout would abort it.
        """
        return self.assertCloseFinishes(
            ssl.TLSVersion.TLSv1_3, b"", "timeout", idleTimeout=0.2, closeTimeout=WAIT * 3
        )

    def test_tls12IdleTimeout(self) -> Deferred[None]:
        """
        TLS 1.2: the idle timeout's graceful close finishes when the client
        answers, long before the close timeout would abort it.
        """
        return self.assertCloseFinishes(
            ssl.TLSVersion.TLSv1_2, b"", "timeout", idleTimeout=0.2, closeTimeout=WAIT * 3
        )


@implementer(IHalfCloseableProtocol)
class AnswerAtTheEnd(Protocol):
    """
    Echoes nothing until the peer has finished sending, then all of it at
    once, and closes: a server that needs the client's half-close.
    """

    def connectionMade(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.received))
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class EchoClientOverTLSTests(TestCase):
    """
    L{EchoClient} through Twisted's TLS client endpoint, against a tcplife
    TLS server on loopback.
    """

    @inlineCallbacks
    def test_tls13HalfCloseIsACloseNotifyTheServerCanAnswer(self) -> Deferred[None]:
        """
        Once the request is written the client sends its close_notify (TLS
        1.3's half-close) and keeps reading: a server that answers only then
        gets it, and the whole reply comes back.
        """
        certificate = SelfSigned(Path(self.mktemp()))
        server = LifecycleServerFactory(clock=reactor)
        server.protocol = AnswerAtTheEnd  # type: ignore[assignment]
        endpoint = serverFromString(PortReactor(reactor), certificate.endpoint())
        port = yield endpoint.listen(server)
        self.addCleanup(port.stopListening)
        recorded = EventRecorder()
        request = pattern(300_000)
        client = LifecycleClientFactory(request, timeout=WAIT, clock=reactor, events=recorded.log)
        target = f"ssl:127.0.0.1:{port.getHost().port}"
        protocol = yield client.connect(clientFromString(reactor, target), target)
        assert isinstance(protocol, EchoClient)
        outcome = yield protocol.finished
        self.assertTrue(outcome.ok, outcome.describe())
        self.assertEqual(recorded.phases(), ["connect", "connected", "half-close", "close"])


class RefusingFactoryTests(SynchronousTestCase):
    """
    A factory that refuses a connection is obeyed through TLS.
    """

    def test_refusedConnectionGetsNoTLSWrapper(self) -> None:
        """
        When the wrapped factory's buildProtocol returns None, so does the
        TLS factory's, and the port closes the connection.
        """

        class Refusing(Factory):
            def buildProtocol(self, addr: IAddress) -> None:
                return None

        certificate = SelfSigned(Path(self.mktemp()))
        options = DefaultOpenSSLContextFactory(str(certificate.key), str(certificate.cert))
        factory = HalfCloseableTLSFactory(options, False, Refusing(), Clock())
        self.assertIsNone(factory.buildProtocol(None))
