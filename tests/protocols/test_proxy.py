"""
The PROXY protocol wrapper on StringTransport and a clock: v1 and v2 headers,
the real client in the accept event, half-close, and what is rejected.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory
from tcplife.internet._endpoints import serverFromString
from tcplife.protocols._proxy import (
    REJECTION_WARNING_INTERVAL,
    ProxyHeaderFactory,
    ProxyHeaderProtocol,
    ProxyServerEndpoint,
)
from tcplife.server._admission import AcceptGate
from tcplife.tap.echo import Options, makeService
from tcplife.testing import EventRecorder

BALANCER = IPv4Address("TCP", "10.0.0.2", 33000)
BACKEND = IPv4Address("TCP", "10.0.0.3", 9000)


def v1Header(source: str, sport: int, dest: str = "192.0.2.1", dport: int = 443) -> bytes:
    family = b"TCP6" if ":" in source else b"TCP4"
    return b"PROXY %s %s %s %d %d\r\n" % (
        family,
        source.encode(),
        dest.encode(),
        sport,
        dport,
    )


def v2Header(
    source: str,
    sport: int,
    dest: str = "192.0.2.1",
    dport: int = 443,
    tlvs: bytes = b"",
) -> bytes:
    """
    A v2 PROXY command for a TCP connection, as HAProxy's send-proxy-v2 sends.
    """
    if ":" in source:
        family, addresses = (
            0x21,
            socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, dest),
        )
    else:
        family, addresses = 0x11, socket.inet_aton(source) + socket.inet_aton(dest)
    body = addresses + struct.pack("!HH", sport, dport) + tlvs
    return V2Parser.PREFIX + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


#: The longest IPv6 address in text, as in the spec's worst case.
LONGEST_IPV6 = ":".join(["ffff"] * 8)

#: v1 headers the spec allows, with the accept event's peer and local.
V1_VALID = [
    # HAProxy's form for a client it cannot name (one on a UNIX socket):
    # the connection's own addresses stand.
    (b"PROXY UNKNOWN\r\n", "10.0.0.2:33000", "10.0.0.3:9000"),
    (b"PROXY UNKNOWN whatever comes before CRLF\r\n", "10.0.0.2:33000", "10.0.0.3:9000"),
    # The spec's worst case: exactly 107 bytes with the CRLF.
    (
        b"PROXY UNKNOWN %s %s 65535 65535\r\n" % (LONGEST_IPV6.encode(), LONGEST_IPV6.encode()),
        "10.0.0.2:33000",
        "10.0.0.3:9000",
    ),
    (
        b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n",
        "255.255.255.255:65535",
        "0.0.0.0:0",
    ),
    (
        b"PROXY TCP6 2001:DB8::7 %s 40002 443\r\n" % LONGEST_IPV6.encode(),
        "[2001:db8::7]:40002",
        f"[{LONGEST_IPV6}]:443",
    ),
]

#: v1 headers the spec rules out, with what the rejection says.
V1_INVALID = [
    (
        b"PROXY UNKNOWN %s %s 65535 655350\r\n" % (LONGEST_IPV6.encode(), LONGEST_IPV6.encode()),
        "no CRLF within 107 bytes",
    ),
    (b"PROXY " + b"x" * 120, "no CRLF within 107 bytes"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 1 443\n", "LF without CR"),
    (b"PROXY TCP4 ::1 ::1 1 443\r\n", "TCP4 needs IPv4 addresses"),
    (b"PROXY TCP4 example.com 192.0.2.1 1 443\r\n", "TCP4 needs IPv4 addresses"),
    (b"PROXY TCP4 203.0.113.09 192.0.2.1 1 443\r\n", "TCP4 needs IPv4 addresses"),
    (b"PROXY TCP4 203.0.113.256 192.0.2.1 1 443\r\n", "TCP4 needs IPv4 addresses"),
    (b"PROXY TCP6 127.0.0.1 127.0.0.1 1 443\r\n", "TCP6 needs IPv6 addresses"),
    (b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 443\r\n", "TCP6 needs IPv6 addresses"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 443\r\n", "TCP6 needs IPv6 addresses"),
    (b"PROXY TCP6 2001:db8::1::2 ::1 1 443\r\n", "TCP6 needs IPv6 addresses"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 http 443\r\n", "a port is not a number from 0 to 65535"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 70000 443\r\n", "a port is not a number from 0 to 65535"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 1 0443\r\n", "a port is not a number from 0 to 65535"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 1 443 x\r\n", "TCP4 needs two addresses and two ports"),
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 1\r\n", "TCP4 needs two addresses and two ports"),
    (b"PROXY  TCP4 203.0.113.9 192.0.2.1 1 443\r\n", "protocol is not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY tcp4 203.0.113.9 192.0.2.1 1 443\r\n", "protocol is not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY UNKNOWNX\r\n", "protocol is not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY \r\n", "protocol is not TCP4, TCP6 or UNKNOWN"),
]

#: A v2 LOCAL command: what a balancer's own health check sends.
V2_LOCAL = V2Parser.PREFIX + bytes([0x20, 0x00]) + struct.pack("!H", 0)


class Harness:
    """
    One connection from the balancer to a tcplife echo server behind the
    PROXY wrapper, on a StringTransport.
    """

    def __init__(self, wrapped: Factory | None = None, *, admitted: bool = False) -> None:
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        self.warnings: list[dict[str, Any]] = []
        self.gate: AcceptGate | None = None
        if wrapped is None:
            wrapped = LifecycleServerFactory(clock=self.clock, events=self.recorded.log)
        self.factory = ProxyHeaderFactory(
            wrapped, self.clock, log=Logger(observer=self.warnings.append)
        )
        if admitted:
            # What a listening tcplife port does: the server factory's own
            # gate counts the connections waiting for their header.
            assert isinstance(wrapped, LifecycleServerFactory)
            self.gate = self.factory.admission = wrapped.gate
        self.protocol, self.transport = connectThrough(self.factory)

    def accepted(self) -> dict[str, Any]:
        [accept] = self.recorded.of("accept")
        return accept


def connectThrough(
    factory: ProxyHeaderFactory, balancer: IPv4Address = BALANCER
) -> tuple[ProxyHeaderProtocol, StringTransport]:
    """
    A new connection from C{balancer} to C{factory}, on a StringTransport.
    """
    protocol = factory.buildProtocol(balancer)
    assert protocol is not None
    transport = StringTransport(hostAddress=BACKEND, peerAddress=balancer)
    protocol.makeConnection(transport)
    return protocol, transport


class PeerAtConnectionMade(Protocol):
    """
    Remembers what getPeer() and getHost() said when the connection was made.
    """

    seen: list[tuple[IAddress, IAddress]]

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.seen.append((self.transport.getPeer(), self.transport.getHost()))


class NotHalfCloseable(Protocol):
    """
    Echoes, but knows nothing of half-close.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class HeaderTests(SynchronousTestCase):
    """
    v1 and v2 headers name the client, and the accept event shows it.
    """

    def test_v1HeaderGivesAcceptTheClientAddress(self) -> None:
        """
        After a v1 header, accept shows the client as peer and the address it
        connected to as local, and the bytes after the header are echoed.
        """
        h = Harness()
        h.protocol.dataReceived(v1Header("203.0.113.9", 51234) + b"hello")
        accept = h.accepted()
        self.assertEqual((accept["peer"], accept["local"]), ("203.0.113.9:51234", "192.0.2.1:443"))
        self.assertEqual(h.transport.value(), b"hello")

    def test_v2HeaderGivesAcceptTheClientAddress(self) -> None:
        """
        After a v2 header (as HAProxy's send-proxy-v2 sends, with a TLV),
        accept shows the client and the echo follows.
        """
        h = Harness()
        h.protocol.dataReceived(v2Header("198.51.100.4", 40001, tlvs=b"\x04\x00\x02xx") + b"hi")
        self.assertEqual(h.accepted()["peer"], "198.51.100.4:40001")
        self.assertEqual(h.transport.value(), b"hi")

    def test_v2IPv6ClientIsShownInCanonicalForm(self) -> None:
        """
        A v2 IPv6 client appears bracketed and compressed, as every other IPv6
        address in the events does.
        """
        h = Harness()
        h.protocol.dataReceived(v2Header("2001:db8::7", 40002, dest="2001:db8::1"))
        accept = h.accepted()
        self.assertEqual(
            (accept["peer"], accept["local"]), ("[2001:db8::7]:40002", "[2001:db8::1]:443")
        )

    def test_noAcceptUntilTheWholeHeaderHasArrived(self) -> None:
        """
        A header that arrives a byte at a time (v1 and v2) connects the
        protocol only once complete, and then with the client's address.
        """
        for header in (v1Header("203.0.113.9", 1), v2Header("203.0.113.9", 2)):
            h = Harness()
            for i in range(len(header)):
                self.assertEqual(h.recorded.of("accept"), [])
                h.protocol.dataReceived(header[i : i + 1])
            self.assertTrue(h.accepted()["peer"].startswith("203.0.113.9:"))
            self.assertFalse(h.transport.disconnecting)

    def test_connectionMadeSeesTheClientNotTheBalancer(self) -> None:
        """
        The wrapped protocol's connectionMade already sees the client's and
        the frontend's addresses (Twisted issue 12501 shows the balancer).
        """
        seen: list[tuple[IAddress, IAddress]] = []
        protocol = type("P", (PeerAtConnectionMade,), {"seen": seen})
        h = Harness(Factory.forProtocol(protocol))
        self.assertEqual(seen, [])
        h.protocol.dataReceived(v2Header("203.0.113.9", 5555))
        self.assertEqual(
            seen,
            [
                (
                    IPv4Address("TCP", "203.0.113.9", 5555),
                    IPv4Address("TCP", "192.0.2.1", 443),
                )
            ],
        )

    def test_v1HeaderTheSpecAllowsIsAccepted(self) -> None:
        """
        Every v1 header form that section 2.1 of the spec allows, among them
        the bare C{PROXY UNKNOWN} and a line of exactly 107 bytes, connects
        the protocol with the addresses it names (the connection's own for
        UNKNOWN), whole or a byte at a time.
        """
        for header, peer, local in V1_VALID:
            for pieces in ([header], [header[i : i + 1] for i in range(len(header))]):
                h = Harness()
                for piece in pieces:
                    h.protocol.dataReceived(piece)
                h.protocol.dataReceived(b"echo")
                accept = h.accepted()
                self.assertEqual((accept["peer"], accept["local"]), (peer, local), header)
                self.assertEqual(h.transport.value(), b"echo")
                self.assertFalse(h.transport.disconnecting)

    def test_localCommandKeepsTheConnectionsOwnAddresses(self) -> None:
        """
        A v2 LOCAL command (a balancer's health check) names nobody: the
        accept event shows the balancer itself.
        """
        h = Harness()
        h.protocol.dataReceived(V2_LOCAL)
        accept = h.accepted()
        self.assertEqual((accept["peer"], accept["local"]), ("10.0.0.2:33000", "10.0.0.3:9000"))

    def test_closeCountsOnlyTheBytesAfterTheHeader(self) -> None:
        """
        The close event's byte counts are the client's payload, not the
        header, and the close comes after the accept of the same connection.
        """
        h = Harness()
        h.protocol.dataReceived(v1Header("203.0.113.9", 51234) + b"12345")
        h.protocol.connectionLost(Failure(ConnectionDone()))
        [close] = h.recorded.of("close")
        self.assertEqual((close["bytes_in"], close["bytes_out"]), (5, 5))
        self.assertEqual(close["conn_id"], h.accepted()["conn_id"])


class HalfCloseTests(SynchronousTestCase):
    """
    A client's FIN through the balancer ends its input, not the connection.
    """

    def test_peerFinIsPassedOnAsHalfClose(self) -> None:
        """
        After the header, the peer's FIN reaches the echo as a half-close:
        the half-close event is logged and the echo is closed gracefully,
        after its output.
        """
        h = Harness()
        h.protocol.dataReceived(v2Header("203.0.113.9", 51234) + b"payload")
        h.protocol.readConnectionLost()
        [half] = h.recorded.of("half-close")
        self.assertEqual(half["initiator"], "peer")
        self.assertEqual(h.transport.value(), b"payload")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.recorded.of("close"), [])

    def test_protocolWithoutHalfCloseIsClosedAfterItsOutput(self) -> None:
        """
        A wrapped protocol that knows nothing of half-close has its output
        flushed and the connection closed, instead of losing it.
        """
        h = Harness(Factory.forProtocol(NotHalfCloseable))
        h.protocol.dataReceived(v1Header("203.0.113.9", 1) + b"abc")
        h.protocol.readConnectionLost()
        self.assertEqual(h.transport.value(), b"abc")
        self.assertTrue(h.transport.disconnecting)

    def test_ourFinIsPassedOn(self) -> None:
        """
        writeConnectionLost (our FIN has gone out) reaches the wrapped
        protocol.
        """
        h = Harness()
        h.protocol.dataReceived(v1Header("203.0.113.9", 1))
        calls: list[str] = []
        # Through the tracked connection to the echo protocol inside it.
        echo = h.protocol.wrappedProtocol.wrappedProtocol  # type: ignore[attr-defined]
        echo.writeConnectionLost = lambda: calls.append("w")
        h.protocol.writeConnectionLost()
        self.assertEqual(calls, ["w"])


class RejectionTests(SynchronousTestCase):
    """
    Without a valid header nothing reaches the protocol, and one warning says
    why.
    """

    def assertRejected(self, h: Harness, reason: str) -> None:
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.recorded.events, [])
        self.assertEqual(h.transport.value(), b"")
        [warning] = h.warnings
        self.assertEqual((warning["reason"], warning["balancer"]), (reason, "10.0.0.2:33000"))

    def test_plainTrafficIsRejected(self) -> None:
        """
        A client that speaks without a header (someone bypassing the
        balancer) is closed, and its bytes never reach the protocol.
        """
        h = Harness()
        h.protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertRejected(h, "not a PROXY protocol header")

    def test_shortNonHeaderIsRejectedAtItsFirstWrongByte(self) -> None:
        """
        Two bytes that neither signature starts with are enough to reject.
        """
        h = Harness()
        h.protocol.dataReceived(b"PX")
        self.assertRejected(h, "not a PROXY protocol header")

    def test_v1HeaderTheSpecForbidsIsRejected(self) -> None:
        """
        Every v1 header that section 2.1 of the spec rules out is rejected,
        with a reason that says what is wrong, rather than read leniently.
        """
        for header, detail in V1_INVALID:
            h = Harness()
            h.protocol.dataReceived(header)
            self.assertRejected(h, f"invalid PROXY header ({detail})")

    def test_malformedV2HeaderIsRejected(self) -> None:
        """
        A v2 header with an unknown version or an unknown family and
        protocol pair is rejected rather than raising.
        """
        for versionCommand, familyProtocol in ((0x31, 0x11), (0x21, 0x13)):
            h = Harness()
            h.protocol.dataReceived(
                V2Parser.PREFIX + bytes([versionCommand, familyProtocol]) + b"\x00\x0c" + b"\0" * 12
            )
            self.assertRejected(h, "invalid PROXY header")

    def test_closedBeforeTheHeaderIsLoggedOnce(self) -> None:
        """
        A connection that ends before its header (FIN, then the close) logs
        one warning and no lifecycle event.
        """
        h = Harness()
        h.protocol.dataReceived(b"PRO")
        h.protocol.readConnectionLost()
        h.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertRejected(h, "closed before the PROXY header")
        self.assertEqual(h.factory.protocols, {})

    def test_noHeaderInTimeIsRejected(self) -> None:
        """
        A connection that sends no header within headerTimeout seconds is
        closed; one that sends it in time is not.
        """
        h = Harness()
        h.clock.advance(ProxyHeaderProtocol.headerTimeout - 0.1)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(0.2)
        self.assertRejected(h, "no PROXY header within 10 s")

        h = Harness()
        h.protocol.dataReceived(v1Header("203.0.113.9", 1))
        h.clock.advance(ProxyHeaderProtocol.headerTimeout * 2)
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class AdmissionTests(SynchronousTestCase):
    """
    A connection holds a slot under the server's cap from accept on, not
    only once its header is in.
    """

    def harness(self) -> tuple[Harness, AcceptGate]:
        h = Harness(admitted=True)
        assert h.gate is not None
        return h, h.gate

    def test_slotIsHeldFromAcceptThenByTheFactorysConnection(self) -> None:
        """
        Before its header a connection is open (awaiting its header) though
        the factory has not seen it; once the header is in, the factory's
        connection holds the same single slot; when it closes, none.
        """
        h, gate = self.harness()
        self.assertEqual((gate.openConnections(), gate.awaitingHeader), (1, 1))
        self.assertEqual(h.recorded.of("accept"), [])
        h.protocol.dataReceived(v1Header("203.0.113.9", 1))
        self.assertEqual((gate.openConnections(), gate.awaitingHeader), (1, 0))
        self.assertEqual(len(h.recorded.of("accept")), 1)
        h.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((gate.openConnections(), gate.refusedHeader), (0, 0))

    def test_connectionWithoutAValidHeaderFreesItsSlotOnceClosed(self) -> None:
        """
        A connection rejected for its header, or for sending none in time,
        holds its slot (and descriptor) until it is really closed, then frees
        it and is counted as refused.
        """
        for offend in (
            lambda h: h.protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n"),
            lambda h: h.clock.advance(ProxyHeaderProtocol.headerTimeout),
        ):
            h, gate = self.harness()
            offend(h)
            self.assertTrue(h.transport.disconnecting)
            self.assertEqual((gate.openConnections(), gate.refusedHeader), (1, 0))
            h.protocol.connectionLost(Failure(ConnectionDone()))
            self.assertEqual((gate.openConnections(), gate.refusedHeader), (0, 1))
            self.assertEqual(h.recorded.events, [])


class RejectionWarningTests(SynchronousTestCase):
    """
    A flood of connections without a valid header makes one warning per
    interval, not one per connection.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.warnings: list[dict[str, Any]] = []
        self.factory = ProxyHeaderFactory(
            LifecycleServerFactory(clock=self.clock, events=EventRecorder().log),
            self.clock,
            log=Logger(observer=self.warnings.append),
        )

    def junk(self, count: int, port: int = 33000) -> None:
        """
        C{count} connections from the balancer's C{port} that send no header.
        """
        for _ in range(count):
            protocol, _ = connectThrough(self.factory, IPv4Address("TCP", "10.0.0.2", port))
            protocol.dataReceived(b"SSH-2.0-x\r\n")

    def summary(self, warning: dict[str, Any]) -> tuple[Any, ...]:
        return (warning["rejected"], warning["reason"], warning["balancer"])

    def test_firstAtOnceThenOneLinePerIntervalWithACount(self) -> None:
        """
        The first rejection is warned of at once; the next ones within the
        interval make a single line when it ends, which counts them and
        names the latest; a steady flood makes one line per interval.
        """
        self.junk(1)
        [first] = self.warnings
        self.assertEqual(self.summary(first), (1, "not a PROXY protocol header", "10.0.0.2:33000"))
        self.junk(49)
        self.clock.advance(REJECTION_WARNING_INTERVAL / 2)
        self.junk(50)
        self.junk(1, port=33999)
        self.clock.advance(REJECTION_WARNING_INTERVAL / 2 - 0.25)
        self.assertEqual(len(self.warnings), 1)
        self.clock.advance(0.25)
        [_, held] = self.warnings
        self.assertEqual(self.summary(held), (100, "not a PROXY protocol header", "10.0.0.2:33999"))
        self.assertIn("100 connections closed in 10 s", formatEvent(held))
        for _ in range(10):
            self.junk(10)
            self.clock.advance(REJECTION_WARNING_INTERVAL / 10)
        self.assertEqual([w["rejected"] for w in self.warnings], [1, 100, 100])

    def test_afterAQuietIntervalTheNextIsWarnedAtOnce(self) -> None:
        """
        Once a whole interval has passed without a rejection, the next one
        is warned of at once, as the first was.
        """
        self.junk(1)
        self.clock.advance(REJECTION_WARNING_INTERVAL)
        self.junk(1)
        self.assertEqual([w["rejected"] for w in self.warnings], [1, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stoppingWarnsOfTheHeldRejectionsAtOnce(self) -> None:
        """
        When the listener stops, the rejections held back are warned of at
        once, and no delayed call is left behind.
        """
        self.junk(3)
        self.clock.advance(2)
        self.factory.doStart()
        self.factory.doStop()
        self.assertEqual([w["rejected"] for w in self.warnings], [1, 2])
        self.assertIn("2 connections closed in 2 s", formatEvent(self.warnings[1]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_warningsAreInTheTcplifeProxyNamespace(self) -> None:
        """
        By default the warning goes to the global log in the namespace
        C{tcplife.proxy}, as docs/haproxy.md says.
        """
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        factory = ProxyHeaderFactory(Factory.forProtocol(Protocol), self.clock)
        protocol, _ = connectThrough(factory)
        protocol.dataReceived(b"junk")
        [warning] = [event for event in seen if event.get("rejected")]
        self.assertEqual(warning["log_namespace"], "tcplife.proxy")


class EndpointTests(SynchronousTestCase):
    """
    C{haproxy:} descriptions get tcplife's wrapper, everything else Twisted's
    endpoints.
    """

    def test_haproxyDescriptionListensThroughTheWrapper(self) -> None:
        """
        C{haproxy:tcp:PORT} listens on TCP with a ProxyHeaderFactory around
        the server's factory.
        """
        reactor = MemoryReactorClock()
        endpoint = serverFromString(reactor, "haproxy:tcp:8080:interface=127.0.0.1")
        self.assertIsInstance(endpoint, ProxyServerEndpoint)
        factory = LifecycleServerFactory(clock=reactor)
        endpoint.listen(factory)
        [(port, listening, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        self.assertIsInstance(listening, ProxyHeaderFactory)
        self.assertIs(listening.wrappedFactory, factory)

    def test_otherDescriptionsAreTwisted(self) -> None:
        """
        A description without the haproxy prefix is Twisted's own endpoint.
        """
        endpoint = serverFromString(MemoryReactorClock(), "tcp:8080")
        self.assertNotIsInstance(endpoint, ProxyServerEndpoint)

    def test_tcpechoListenOptionUsesTheWrapper(self) -> None:
        """
        C{twist tcpecho --listen haproxy:tcp:PORT} serves its factory behind
        the PROXY wrapper.
        """
        reactor = MemoryReactorClock()
        options = Options()
        options.parseOptions(["--listen", "haproxy:tcp:8081"])
        makeService(options, reactor).startService()
        [(port, listening, _, _)] = reactor.tcpServers
        self.assertEqual(port, 8081)
        self.assertIsInstance(listening, ProxyHeaderFactory)
        self.assertIsInstance(listening.wrappedFactory, LifecycleServerFactory)


class TwistedWrapperTests(SynchronousTestCase):
    """
    Why tcplife has its own wrapper; when these fail, Twisted has fixed it.
    """

    def test_twistedWrapperConnectsBeforeTheHeaderAndDropsHalfClose(self) -> None:
        """
        Twisted's HAProxyProtocolWrapper connects the protocol while getPeer()
        is the balancer (Twisted issue 12501), and is not half-closeable, so
        a FIN closes the connection at once.
        """
        seen: list[tuple[IAddress, IAddress]] = []
        protocol = type("P", (PeerAtConnectionMade,), {"seen": seen})
        wrapper = HAProxyWrappingFactory(Factory.forProtocol(protocol)).buildProtocol(BALANCER)
        wrapper.makeConnection(StringTransport(hostAddress=BACKEND, peerAddress=BALANCER))
        self.assertEqual(seen, [(BALANCER, BACKEND)])
        self.assertIsNone(IHalfCloseableProtocol(wrapper, None))


class RefusingFactoryTests(SynchronousTestCase):
    """
    A factory that refuses a connection is obeyed through the wrapper.
    """

    def test_refusedConnectionGetsNoWrapper(self) -> None:
        """
        When the wrapped factory's buildProtocol returns None, so does the
        PROXY factory's, and the port closes the connection.
        """

        class Refusing(Factory):
            def buildProtocol(self, addr: IAddress) -> None:
                return None

        self.assertIsNone(
            ProxyHeaderFactory(Refusing(), MemoryReactorClock()).buildProtocol(BALANCER)
        )
