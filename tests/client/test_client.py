"""
The client factory and the echo client, on StringTransport and a clock.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from io import BytesIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.error import (
    ConnectBindError,
    ConnectError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    NoRouteError,
)
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IResolutionReceiver,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from tcplife import (
    ConnectFailedError,
    EchoClient,
    EchoOutcome,
    LifecycleClientFactory,
    TrackedConnection,
)
from tcplife.client._failures import connectFailure, connectFailureKind
from tcplife.testing import EventRecorder

from ..helpers import HalfClosingTransport, pattern

LOCAL = IPv4Address("TCP", "127.0.0.1", 40001)
SERVER = IPv4Address("TCP", "127.0.0.1", 9000)


class Exchange:
    """
    One EchoClient connection on a StringTransport; the test plays the
    server.
    """

    def __init__(
        self,
        request: bytes,
        protocol: type[EchoClient] = EchoClient,
        *,
        timeout: float | None = 10.0,
        output: Any = None,
        transport: StringTransport | None = None,
        reflect: bool = False,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        self.factory = LifecycleClientFactory.forProtocol(
            protocol,
            request,
            timeout=timeout,
            output=output,
            clock=self.clock,
            events=self.recorded.log,
            reflect=reflect,
        )
        connection = self.factory.buildProtocol(SERVER)
        assert isinstance(connection, TrackedConnection)
        self.connection = connection
        self.transport = transport or HalfClosingTransport(hostAddress=LOCAL, peerAddress=SERVER)
        connection.makeConnection(self.transport)
        client = connection.wrappedProtocol
        assert isinstance(client, EchoClient)
        self.client = client
        self.outcomes: list[EchoOutcome] = []
        client.finished.addCallback(self.outcomes.append)

    def pump(self) -> bytes:
        """
        Let the request's producer run until the request is all written, as
        the reactor does while the transport drains; returns what was sent.
        """
        for _ in range(10_000):
            producer = self.transport.producer
            if producer is None or producer is not self.client._sender:
                break
            producer.resumeProducing()
        sent = self.transport.value()
        self.transport.clear()
        return sent

    def serverCloses(self, reason: Failure) -> None:
        self.connection.connectionLost(reason)

    def outcome(self) -> EchoOutcome:
        [outcome] = self.outcomes
        return outcome


class EchoClientTests(SynchronousTestCase):
    """
    The echo client sends, half-closes, and checks every byte of the reply.
    """

    def test_sendsRequestThenHalfCloses(self) -> None:
        """
        The whole request goes out, then the client half-closes (FIN) and
        keeps reading; the event says the client started the close.
        """
        x = Exchange(b"hello\n")
        self.assertFalse(x.transport.writeClosed)
        self.assertEqual(x.pump(), b"hello\n")
        self.assertTrue(x.transport.writeClosed)
        [half] = x.recorded.of("half-close")
        self.assertEqual(half["initiator"], "local")

    def test_overTLSTheRequestWaitsForTheHandshake(self) -> None:
        """
        Over TLS nothing is sent until the handshake is done (Twisted's TLS
        would abort a close_notify asked for sooner); then the request and
        the half-close follow.
        """
        transport = HalfClosingTransport(hostAddress=LOCAL, peerAddress=SERVER)
        directlyProvides(transport, ISSLTransport)
        x = Exchange(b"hello\n", transport=transport)
        self.assertEqual((x.pump(), x.transport.writeClosed), (b"", False))
        x.connection.handshakeCompleted()
        self.assertEqual((x.pump(), x.transport.writeClosed), (b"hello\n", True))

    def test_identicalEchoSucceedsAndClosesCleanly(self) -> None:
        """
        Once every byte is back identical the client closes, the outcome is
        ok, and the close event counts the bytes both ways.
        """
        x = Exchange(b"hello\n")
        x.pump()
        x.connection.dataReceived(b"hel")
        self.assertFalse(x.transport.disconnecting)
        x.connection.dataReceived(b"lo\n")
        self.assertTrue(x.transport.disconnecting)
        x.serverCloses(Failure(ConnectionDone()))
        outcome = x.outcome()
        self.assertTrue(outcome.ok)
        self.assertEqual((outcome.expected, outcome.received), (6, 6))
        self.assertEqual(outcome.describe(), "all 6 bytes came back identical")
        [close] = x.recorded.of("close")
        self.assertEqual(
            {k: close[k] for k in ("role", "initiator", "how", "bytes_in", "bytes_out")},
            {"role": "client", "initiator": "local", "how": "fin", "bytes_in": 6, "bytes_out": 6},
        )

    def test_serverFinAfterWholeEchoIsSuccess(self) -> None:
        """
        A server that half-closes once the echo is complete: the client
        closes too, and the outcome is ok.
        """
        x = Exchange(b"abc")
        x.pump()
        x.connection.dataReceived(b"abc")
        x.connection.readConnectionLost()
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)

    def test_mismatchReportsFirstDifferingOffset(self) -> None:
        """
        A wrong byte ends the exchange at once (abort), and the outcome says
        at which offset, what was expected and what came.
        """
        x = Exchange(b"hello world\n")
        x.pump()
        x.connection.dataReceived(b"hello")
        x.connection.dataReceived(b"_wor")
        self.assertTrue(x.transport.disconnecting)
        x.serverCloses(Failure(ConnectionLost()))
        outcome = x.outcome()
        self.assertEqual(
            (outcome.problem, outcome.offset, outcome.expectedByte, outcome.receivedByte),
            ("mismatch", 5, ord(" "), ord("_")),
        )
        self.assertEqual(
            outcome.describe(), "echo differs at offset 5: expected 0x20 ' ', got 0x5f '_'"
        )

    def test_mismatchDeepInALargeReplyIsLocatedExactly(self) -> None:
        """
        In a 1 MiB reply, a single changed byte is found at its exact offset.
        """
        payload = pattern(1 << 20)
        x = Exchange(payload)
        x.pump()
        corrupt = bytearray(payload)
        corrupt[777_777] ^= 0x01
        for i in range(0, len(corrupt), 1 << 16):
            x.connection.dataReceived(bytes(corrupt[i : i + (1 << 16)]))
            if x.transport.disconnecting:
                break
        x.serverCloses(Failure(ConnectionLost()))
        self.assertEqual(x.outcome().offset, 777_777)

    def test_extraBytesAreAMismatch(self) -> None:
        """
        A server that sends more than was sent fails, at the first extra
        offset.
        """
        x = Exchange(b"ab")
        x.pump()
        x.connection.dataReceived(b"abc")
        x.serverCloses(Failure(ConnectionLost()))
        outcome = x.outcome()
        self.assertEqual((outcome.problem, outcome.offset), ("mismatch", 2))
        self.assertIsNone(outcome.expectedByte)
        self.assertIn("longer than what was sent", outcome.describe())

    def test_serverClosingEarlyIsReported(self) -> None:
        """
        A FIN before the whole echo: closed early, at the first missing
        offset.
        """
        x = Exchange(b"hello\n")
        x.pump()
        x.connection.dataReceived(b"hel")
        x.connection.readConnectionLost()
        x.serverCloses(Failure(ConnectionDone()))
        outcome = x.outcome()
        self.assertEqual((outcome.problem, outcome.offset), ("closed-early", 3))
        self.assertEqual(
            outcome.describe(), "server closed the connection early: 3 of 6 bytes came back"
        )
        # The client's FIN went first: it started the end of the connection.
        [close] = x.recorded.of("close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "fin"))

    def test_resetIsReported(self) -> None:
        """
        A connection lost uncleanly before the whole echo is a reset.
        """
        x = Exchange(b"hello\n")
        x.pump()
        x.serverCloses(Failure(ConnectionLost()))
        outcome = x.outcome()
        self.assertEqual((outcome.problem, outcome.received), ("reset", 0))
        self.assertEqual(
            outcome.describe(), "connection reset by the server: 0 of 6 bytes came back"
        )

    def test_silenceTimesOutAndAborts(self) -> None:
        """
        No reply for the timeout: the client aborts, the close event says
        timeout, and so does the outcome.
        """
        x = Exchange(b"hello\n", timeout=2.0)
        x.pump()
        x.clock.advance(1.9)
        self.assertFalse(x.transport.disconnecting)
        x.clock.advance(0.2)
        self.assertTrue(x.transport.disconnecting)
        x.serverCloses(Failure(ConnectionLost()))
        outcome = x.outcome()
        self.assertEqual((outcome.problem, outcome.timeout), ("timeout", 2.0))
        self.assertEqual(outcome.describe(), "no reply for 2 s: 0 of 6 bytes came back")
        [close] = x.recorded.of("close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "timeout"))

    def test_eachReadRestartsTheTimeout(self) -> None:
        """
        The timeout bounds each wait for more of the reply, not the whole
        exchange.
        """
        x = Exchange(b"hello\n", timeout=2.0)
        x.pump()
        for byte in b"hello":
            x.clock.advance(1.5)
            x.connection.dataReceived(bytes([byte]))
        self.assertFalse(x.transport.disconnecting)
        x.connection.dataReceived(b"\n")
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)
        self.assertEqual(x.clock.getDelayedCalls(), [])

    def test_replyIsCopiedToOutputAsItArrives(self) -> None:
        """
        Every chunk of the reply, wrong bytes included, is copied to the
        factory's output.
        """
        output = BytesIO()
        x = Exchange(b"hello\n", output=output)
        x.pump()
        x.connection.dataReceived(b"he")
        self.assertEqual(output.getvalue(), b"he")
        x.connection.dataReceived(b"LLo\n")
        self.assertEqual(output.getvalue(), b"heLLo\n")

    def test_readsWhileALargeRequestIsStillGoingOut(self) -> None:
        """
        The request is written by a pull producer, so the client never stops
        reading while it writes (which would deadlock against an echo
        server); echo arriving mid-request is checked as it comes.
        """
        payload = pattern(200_000)
        x = Exchange(payload)
        producer = x.transport.producer
        self.assertIsNotNone(producer)
        self.assertFalse(x.transport.streaming)
        producer.resumeProducing()
        firstChunk = x.transport.value()
        x.connection.dataReceived(firstChunk)
        self.assertEqual(x.transport.producerState, "producing")
        self.assertEqual(x.client.received, len(firstChunk))
        x.transport.clear()
        rest = x.pump()
        self.assertEqual(firstChunk + rest, payload)
        x.connection.dataReceived(rest)
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)

    def test_transportThatCannotHalfCloseStillWorks(self) -> None:
        """
        Over a transport without half-close (Twisted's TLS), the request
        goes out, no half-close is claimed, and the complete echo ends the
        exchange.
        """
        x = Exchange(b"hello\n", transport=StringTransport(hostAddress=LOCAL, peerAddress=SERVER))
        self.assertEqual(x.pump(), b"hello\n")
        self.assertEqual(x.recorded.of("half-close"), [])
        x.connection.dataReceived(b"hello\n")
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)

    def test_emptyRequestSucceedsAtOnce(self) -> None:
        """
        Nothing to send: the client half-closes, nothing is due back, and it
        closes.
        """
        x = Exchange(b"")
        x.pump()
        self.assertTrue(x.transport.writeClosed)
        self.assertTrue(x.transport.disconnecting)
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)

    def test_subclassChangesTheExpectedReply(self) -> None:
        """
        Overriding C{expectedReply} is all a client of a transforming server
        needs; the checks and events stay.
        """

        class Upper(EchoClient):
            def expectedReply(self, request: bytes) -> bytes:
                return request.upper()

        x = Exchange(b"quiet\n", Upper)
        x.pump()
        x.connection.dataReceived(b"QUIET\n")
        x.serverCloses(Failure(ConnectionDone()))
        self.assertTrue(x.outcome().ok)
        self.assertEqual(x.recorded.phases(), ["connected", "half-close", "close"])


class ConnectTests(SynchronousTestCase):
    """
    The factory's C{connect} emits connect, connected and connect-failed.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        self.factory = LifecycleClientFactory(
            b"x", timeout=3.0, clock=self.clock, events=self.recorded.log
        )
        self.endpoint = TCP4ClientEndpoint(self.clock, "127.0.0.1", 9000)
        self.results: list[Any] = []
        d = self.factory.connect(self.endpoint, "127.0.0.1:9000")
        d.addBoth(self.results.append)
        [(_host, _port, self.wrapping, _, _)] = self.clock.tcpClients

    def test_connectAndConnectedEvents(self) -> None:
        """
        C{connect} names the target; C{connected} names the local address
        the kernel assigned and the peer; the Deferred fires with the user's
        protocol, not the wrapper.
        """
        [connect] = self.recorded.of("connect")
        self.assertEqual((connect["target"], connect["role"]), ("127.0.0.1:9000", "client"))
        protocol = self.wrapping.buildProtocol(SERVER)
        protocol.makeConnection(StringTransport(hostAddress=LOCAL, peerAddress=SERVER))
        [connected] = self.recorded.of("connected")
        self.assertEqual(
            (connected["local"], connected["peer"], connected["role"]),
            ("127.0.0.1:40001", "127.0.0.1:9000", "client"),
        )
        [client] = self.results
        self.assertIsInstance(client, EchoClient)
        self.assertEqual(self.factory.opened, 1)
        self.assertEqual(list(self.factory.connections), [connected["conn_id"]])

    def assertConnectFailed(self, kind: str, reason: str) -> None:
        [failure] = self.results
        self.assertIsInstance(failure, Failure)
        error = failure.value
        self.assertIsInstance(error, ConnectFailedError)
        self.assertEqual((error.kind, error.reason), (kind, reason))
        [event] = self.recorded.of("connect-failed")
        self.assertEqual((event["target"], event["reason"]), ("127.0.0.1:9000", reason))
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_refusedConnectFails(self) -> None:
        """
        A refused connect fails with kind C{refused}, one line with a hint,
        and a C{connect-failed} warning.
        """
        self.wrapping.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertConnectFailed("refused", "connection refused")
        self.assertEqual(
            str(self.results[0].value),
            "cannot connect to 127.0.0.1:9000: connection refused (is a server listening there?)",
        )

    def test_connectTimesOut(self) -> None:
        """
        No connection within the timeout: the attempt is cancelled and fails
        with kind C{timeout}.
        """
        self.clock.advance(2.9)
        self.assertEqual(self.results, [])
        self.clock.advance(0.2)
        self.assertConnectFailed("timeout", "no connection within 3 s")
        [connector] = self.clock.connectors
        self.assertTrue(connector.stoppedConnecting)


@implementer(IHostnameResolver)
class UnansweredLookups:
    """
    A name resolver whose lookups never get an answer (a DNS server that
    does not reply).
    """

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IResolutionReceiver:
        return resolutionReceiver


class LookupTimeoutTests(SynchronousTestCase):
    """
    The time runs out while the host name is still being looked up.
    """

    def test_unansweredLookupIsNamedInTheTimeout(self) -> None:
        """
        A lookup that never gets an answer fails the connect with kind
        C{timeout}, and the line names the lookup and the DNS, not a host
        that did not answer.
        """
        clock = MemoryReactorClock()
        clock.installNameResolver(UnansweredLookups())
        recorded = EventRecorder()
        factory = LifecycleClientFactory(b"x", timeout=3.0, clock=clock, events=recorded.log)
        endpoint = HostnameEndpoint(clock, "dns.stuck.invalid", 9000)
        results: list[Any] = []
        factory.connect(endpoint, "dns.stuck.invalid:9000").addBoth(results.append)
        clock.advance(3)
        [failure] = results
        error = failure.value
        self.assertIsInstance(error, ConnectFailedError)
        self.assertEqual(
            (error.kind, str(error)),
            (
                "timeout",
                "cannot connect to dns.stuck.invalid:9000: no answer to the host name lookup "
                "within 3 s (is a DNS server answering? see /etc/resolv.conf)",
            ),
        )
        [event] = recorded.of("connect-failed")
        self.assertEqual(event["reason"], "no answer to the host name lookup within 3 s")


class FailureKindTests(SynchronousTestCase):
    """
    Each way a connect fails maps to one kind and one short phrase.
    """

    def kind(self, error: BaseException) -> tuple[str, str]:
        return connectFailureKind(Failure(error))

    def test_kinds(self) -> None:
        """
        Refused, DNS, unreachable (by class and by errno), TCP timeouts and
        other errors get their kinds.
        """
        self.assertEqual(self.kind(ConnectionRefusedError()), ("refused", "connection refused"))
        self.assertEqual(self.kind(DNSLookupError("x")), ("dns", "host name not found"))
        self.assertEqual(
            self.kind(NoRouteError(errno.ENETUNREACH, "x")),
            ("unreachable", "network is unreachable"),
        )
        self.assertEqual(
            self.kind(ConnectError(errno.EHOSTUNREACH, "x")), ("unreachable", "no route to host")
        )
        self.assertEqual(self.kind(ConnectError(errno.EACCES, "x")), ("other", "permission denied"))

    def test_noLocalPortIsAKindOfItsOwn(self) -> None:
        """
        EADDRNOTAVAIL from connect, and EADDRINUSE from binding to a local
        address's port 0, mean no local port was left: a kind of their own,
        whose hint names TIME_WAIT and what to do.
        """
        for e in (
            ConnectError(errno.EADDRNOTAVAIL, "x"),
            ConnectBindError(errno.EADDRINUSE, "Address already in use"),
        ):
            kind, reason = self.kind(e)
            self.assertEqual(kind, "no-local-port")
            self.assertTrue(reason.startswith("no local port left ("), reason)
        self.assertEqual(
            self.kind(ConnectError(errno.EADDRINUSE, "x")), ("other", "address already in use")
        )
        error = connectFailure("127.0.0.1:9", Failure(ConnectError(errno.EADDRNOTAVAIL, "x")))
        self.assertIn("TIME_WAIT", str(error))
        self.assertIn("--bind", str(error))


class QuietEventsTests(SynchronousTestCase):
    """
    A load generator's per-connection events can be quiet.
    """

    def test_levelAppliesToEveryPerConnectionEvent(self) -> None:
        """
        With level debug, connect, connected, connect-failed, half-close and
        close are all debug events.
        """
        recorded = EventRecorder()
        recorded.log.level = LogLevel.debug
        recorded.log._failureLevel = LogLevel.debug
        log = recorded.log
        log.connect("t")
        log.connected(1, "a", "b")
        log.connectFailed("t", "r")
        log.halfClose(1, "local")
        log.close(1, "client", "local", "fin", 0, 0, 0.0)
        self.assertEqual({e["log_level"] for e in recorded.events}, {LogLevel.debug})

    def test_defaultLevelWarnsOfFailedConnects(self) -> None:
        """
        At the default level, connect-failed is a warning and the rest info.
        """
        recorded = EventRecorder()
        recorded.log.connect("t")
        recorded.log.connectFailed("t", "r")
        self.assertEqual([e["log_level"] for e in recorded.events], [LogLevel.info, LogLevel.warn])


class ProtocolIsAnyProtocolTests(SynchronousTestCase):
    """
    Like the server factory, the client factory tracks any protocol.
    """

    def test_anyProtocolIsTracked(self) -> None:
        """
        A plain Protocol gets connected and close events and byte counts.
        """
        recorded = EventRecorder()
        factory = LifecycleClientFactory.forProtocol(
            Protocol, clock=MemoryReactorClock(), events=recorded.log
        )
        connection = factory.buildProtocol(SERVER)
        assert connection is not None
        transport = StringTransport(hostAddress=LOCAL, peerAddress=SERVER)
        connection.makeConnection(transport)
        connection.write(b"12345")
        connection.connectionLost(Failure(ConnectionDone()))
        [close] = recorded.of("close")
        self.assertEqual((close["bytes_out"], close["how"], close["initiator"]), (5, "fin", "peer"))
