"""
The kernel's view of every connection (C{TCP_INFO}) in its C{close} event,
read just before the socket closes, on real loopback sockets.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcplife import LifecycleClientFactory, LifecycleServerFactory, serverFromString
from tcplife.internet import (
    TCP_INFO_FIELDS,
    ClientReactor,
    DirectClient,
    PortReactor,
    clientFromString,
    parseTcpInfo,
    readTcpInfo,
)
from tcplife.server import Drainer, ServerSettings
from tcplife.testing import EventRecorder

from ..certs import SelfSigned
from ..helpers import (
    WAIT,
    callInThread,
    closeWithReset,
    echoWithHalfClose,
    unixEcho,
)

#: Every field of the C{tcp} object, in its order.
FIELDS = [name for name, _, _ in TCP_INFO_FIELDS]


def synthetic(length: int) -> tuple[bytes, dict[str, int]]:
    """
    A C{struct tcp_info} of C{length} bytes whose every field holds a
    value of its own, and the fields that fit with their values.
    """
    raw = bytearray(length)
    expected = {}
    for index, (name, offset, code) in enumerate(TCP_INFO_FIELDS):
        value = 1000 + index
        if offset + struct.calcsize(code) <= length:
            struct.pack_into("=" + code, raw, offset, value)
            expected[name] = value
    return bytes(raw), expected


class ParseTests(SynchronousTestCase):
    """
    C{struct tcp_info} is read field by field at its offsets, as much of it
    as the running kernel returned.
    """

    def test_everyFieldIsReadFromItsOffset(self) -> None:
        """
        A struct as long as kernel 6.x returns gives every field, each from
        its own offset, in the contract's order.
        """
        raw, expected = synthetic(232)
        parsed = parseTcpInfo(raw)
        self.assertEqual(parsed, expected)
        self.assertEqual(list(parsed), FIELDS)

    def test_everyLengthThatHoldsEveryFieldGivesEveryField(self) -> None:
        """
        From the shortest struct that holds every field (4.19's) to one
        longer than any kernel's today, every field is read from its own
        offset, in the contract's order, and one byte less leaves the last
        field out.
        """
        whole = max(offset + struct.calcsize(code) for _, offset, code in TCP_INFO_FIELDS)
        for length in (whole, 280, 512):
            raw, expected = synthetic(length)
            parsed = parseTcpInfo(raw)
            self.assertEqual(parsed, expected)
            self.assertEqual(list(parsed), FIELDS)
        raw, expected = synthetic(whole - 1)
        self.assertEqual(parseTcpInfo(raw), expected)
        self.assertEqual(len(expected), len(FIELDS) - 1)

    def test_fieldsPastTheReturnedLengthAreLeftOutNeverZero(self) -> None:
        """
        An older kernel's shorter struct (ending after tcpi_total_retrans,
        as 3.x did) leaves out the fields it lacks instead of giving zero.
        """
        raw, expected = synthetic(104)
        parsed = parseTcpInfo(raw)
        self.assertEqual(parsed, expected)
        self.assertIn("retransmits", parsed)
        for missing in ("min_rtt_us", "bytes_acked", "delivery_rate", "busy_us"):
            self.assertNotIn(missing, parsed)

    def test_aLengthCutInsideAFieldLeavesThatFieldOut(self) -> None:
        """
        A field only partly inside the returned bytes is left out.
        """
        raw, _ = synthetic(123)
        self.assertNotIn("bytes_acked", parseTcpInfo(raw))

    def test_aLiveConnectionReportsItsBytes(self) -> None:
        """
        On a real loopback connection the kernel counts what was sent and
        acknowledged: bytes_acked includes the SYN's sequence number.
        """
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname(), timeout=WAIT)
            self.addCleanup(client.close)
            accepted, _ = listener.accept()
            self.addCleanup(accepted.close)
            client.sendall(b"x" * 1000)
            self.assertEqual(len(accepted.recv(2000)), 1000)
            info = readTcpInfo(client)
        assert info is not None
        self.assertEqual(info["segs_out"] >= 2, True)
        self.assertEqual(info["retransmits"], 0)

    def test_aUnixSocketHasNoView(self) -> None:
        """
        A UNIX socket has no TCP_INFO: no view, not an empty one.
        """
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertIsNone(readTcpInfo(left))


class Closer(Protocol):
    """
    Closes its connection as soon as it is made, before reading anything.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class Aborter(Protocol):
    """
    Aborts its connection at the first bytes.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class Silent(Protocol):
    """
    Reads and never answers.
    """


def readUntilEOF(port: int) -> bytes:
    """
    Connect and read until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        chunks = []
        while chunk := client.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def sendThenReset(port: int) -> None:
    """
    Connect, send, wait for the echo, then reset the connection.
    """
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    client.sendall(b"hello")
    client.recv(16)
    closeWithReset(client)


def sendThenWaitForEOF(port: int) -> None:
    """
    Connect, send a little, and wait for the server to close (the client
    never closes first).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        client.sendall(b"hello")
        try:
            while client.recv(1 << 16):
                pass
        except ConnectionResetError:
            pass


class CloseEventTestCase(TestCase):
    """
    A server on 127.0.0.1, port 0, its events recorded.
    """

    def listen(
        self,
        protocol: type[Protocol] | None = None,
        *,
        tcplifePorts: bool = True,
        **settings: Any,
    ) -> int:
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log, **settings)
        if protocol is not None:
            self.factory.protocol = protocol
        listener: Any = PortReactor(reactor) if tcplifePorts else reactor
        self.port = listener.listenTCP(0, self.factory, 50, "127.0.0.1")
        self.addCleanup(self.port.stopListening)
        port: int = self.port.getHost().port
        return port

    @inlineCallbacks
    def closeOf(self, role: str = "server") -> Generator[Deferred[Any], Any, dict[str, Any]]:
        close: dict[str, Any] = yield self.recorded.when(lifecycle="close", role=role)
        return close

    def assertLoopbackView(self, close: dict[str, Any]) -> None:
        """
        C{close} has the kernel's view of a loopback connection: every
        field, a round trip under a millisecond, nothing retransmitted.
        (The smallest round trip measured: the smoothed one also holds the
        time a busy machine took to answer.)
        """
        tcp = close["tcp"]
        self.assertEqual(list(tcp), FIELDS)
        self.assertLess(tcp["min_rtt_us"], 1000)
        self.assertGreater(tcp["rtt_us"], 0)
        self.assertEqual((tcp["retransmits"], tcp["bytes_retrans"], tcp["lost"]), (0, 0, 0))


class ServerCloseTests(CloseEventTestCase):
    """
    The server's C{close} event carries C{tcp} however the connection
    ended, and with it C{peer}, C{local} and C{opened_at}.
    """

    @inlineCallbacks
    def test_peerFinAfterItsEcho(self) -> Generator[Deferred[Any], Any, None]:
        """
        A client that half-closes after its payload: the close (by peer,
        fin) has the kernel's view, whose byte counts include the payload.
        """
        port = self.listen()
        payload = b"x" * 100_000
        echoed = yield callInThread(echoWithHalfClose, port, payload)
        self.assertEqual(len(echoed), len(payload))
        close = yield self.closeOf()
        self.assertEqual((close["initiator"], close["how"]), ("peer", "fin"))
        self.assertLoopbackView(close)
        # Every byte of the payload was read before the close (the FIN after
        # it, too); what the peer has acknowledged of the echo depends on
        # timing.
        self.assertGreaterEqual(close["tcp"]["bytes_received"], len(payload))

    @inlineCallbacks
    def test_closeCarriesAddressesAndWhenItOpened(self) -> Generator[Deferred[Any], Any, None]:
        """
        The close event alone is a complete record: the peer's and our own
        address, and the wall-clock time the connection opened.
        """
        port = self.listen()
        before = reactor.seconds()  # type: ignore[attr-defined]
        yield callInThread(echoWithHalfClose, port, b"hello")
        close = yield self.closeOf()
        [accept] = self.recorded.of("accept")
        self.assertEqual((close["peer"], close["local"]), (accept["peer"], accept["local"]))
        self.assertEqual(close["local"], f"127.0.0.1:{port}")
        self.assertGreaterEqual(close["opened_at"], before - 0.01)
        self.assertLess(abs(close["opened_at"] + close["duration_s"] - close["log_time"]), 0.01)

    @inlineCallbacks
    def test_localAddressOnAWildcardListener(self) -> Generator[Deferred[Any], Any, None]:
        """
        A listener bound to every address reports the address the client
        reached (the kernel's), not 0.0.0.0; one bound to an address, that
        address.
        """
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        port = PortReactor(reactor).listenTCP(0, factory, 50, "0.0.0.0")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        yield callInThread(echoWithHalfClose, number, b"hello")
        close = yield self.closeOf()
        self.assertEqual(close["local"], f"127.0.0.1:{number}")

    @inlineCallbacks
    def test_ourOwnClose(self) -> Generator[Deferred[Any], Any, None]:
        """
        A protocol that closes first: the close (by local) has the view.
        """
        port = self.listen(Closer)
        yield callInThread(readUntilEOF, port)
        close = yield self.closeOf()
        self.assertEqual(close["initiator"], "local")
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_abort(self) -> Generator[Deferred[Any], Any, None]:
        """
        An aborted connection (RST at once) has the view too.
        """
        port = self.listen(Aborter)
        yield callInThread(sendThenWaitForEOF, port)
        close = yield self.closeOf()
        self.assertEqual(close["how"], "abort")
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_peerReset(self) -> Generator[Deferred[Any], Any, None]:
        """
        A peer's reset: the close (how=reset) has whatever the kernel still
        reports of the connection.
        """
        port = self.listen()
        yield callInThread(sendThenReset, port)
        close = yield self.closeOf()
        self.assertEqual(close["how"], "reset")
        self.assertGreaterEqual(close["tcp"]["bytes_received"], 5)

    @inlineCallbacks
    def test_idleTimeout(self) -> Generator[Deferred[Any], Any, None]:
        """
        A connection closed for being idle has the view.
        """
        port = self.listen(Silent, idleTimeout=0.2)
        yield callInThread(sendThenWaitForEOF, port)
        close = yield self.closeOf()
        self.assertEqual(close["how"], "timeout")
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_drainDeadline(self) -> Generator[Deferred[Any], Any, None]:
        """
        A connection the drain closes at its deadline has the view.
        """
        port = self.listen(Silent, settings=ServerSettings(shutdownTimeout=0.1))
        accepted = self.recorded.when(lifecycle="accept")
        client = callInThread(sendThenWaitForEOF, port)
        yield accepted
        yield Drainer(self.factory, reactor).drain()  # type: ignore[arg-type]
        yield client
        close = yield self.closeOf()
        self.assertEqual(close["initiator"], "local")
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_twistedsOwnTransport(self) -> Generator[Deferred[Any], Any, None]:
        """
        Served through a plain C{reactor.listenTCP} (Twisted's C{tcp.Server},
        not tcplife's), the close event has the view as well.
        """
        port = self.listen(tcplifePorts=False)
        yield callInThread(echoWithHalfClose, port, b"hello")
        close = yield self.closeOf()
        self.assertEqual(close["how"], "fin")
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_overTLS(self) -> Generator[Deferred[Any], Any, None]:
        """
        Over TLS the view is the TCP connection's under it.
        """
        certificate = SelfSigned(Path(self.mktemp()))
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        port = yield serverFromString(PortReactor(reactor), certificate.endpoint()).listen(factory)
        self.addCleanup(port.stopListening)

        def client() -> None:
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"hello")
                s.recv(16)

        yield callInThread(client)
        close = yield self.closeOf()
        self.assertLoopbackView(close)
        # The TLS handshake's bytes are the kernel's too.
        self.assertGreater(close["tcp"]["bytes_received"], close["bytes_in"])

    @inlineCallbacks
    def test_behindAProxyHeader(self) -> Generator[Deferred[Any], Any, None]:
        """
        Behind a PROXY header the event names the header's client as the
        peer, and the view is of the balancer's TCP connection.
        """
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        port = yield serverFromString(
            PortReactor(reactor), "haproxy:tcp:0:interface=127.0.0.1"
        ).listen(factory)
        self.addCleanup(port.stopListening)
        header = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 80\r\n"
        echoed = yield callInThread(echoWithHalfClose, port.getHost().port, header + b"hello")
        self.assertEqual(echoed, b"hello")
        close = yield self.closeOf()
        self.assertEqual((close["peer"], close["local"]), ("192.0.2.1:40000", "192.0.2.2:80"))
        self.assertLoopbackView(close)

    @inlineCallbacks
    def test_unixSocketsHaveNoTcpObject(self) -> Generator[Deferred[Any], Any, None]:
        """
        A UNIX-socket connection's close event has no C{tcp} object.
        """
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        path = self.mktemp()
        port = yield UNIXServerEndpoint(PortReactor(reactor), path).listen(factory)
        self.addCleanup(port.stopListening)
        yield callInThread(unixEcho, path, b"hello")
        close = yield self.closeOf()
        self.assertNotIn("tcp", close)
        self.assertIn("bytes_in", close)


class ClientCloseTests(CloseEventTestCase):
    """
    A client connection made through tcplife's client factory has the
    view in its close event too.
    """

    @inlineCallbacks
    def test_clientCloseHasTheView(self) -> Generator[Deferred[Any], Any, None]:
        """
        An echo client's close (through Twisted's C{tcp.Client}, as the
        endpoints make it) carries C{tcp}, C{peer} and C{local}.
        """
        port = self.listen()
        clientEvents = EventRecorder()
        factory = LifecycleClientFactory(b"hello\n", clock=reactor, events=clientEvents.log)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        protocol = yield factory.connect(endpoint, f"127.0.0.1:{port}")
        outcome = yield protocol.finished  # type: ignore[attr-defined]
        self.assertTrue(outcome.ok)
        close = yield clientEvents.when(lifecycle="close")
        self.assertEqual(close["peer"], f"127.0.0.1:{port}")
        [connected] = clientEvents.of("connected")
        self.assertEqual(close["local"], connected["local"])
        self.assertLoopbackView(close)
        self.assertGreaterEqual(close["tcp"]["bytes_received"], len(b"hello\n"))

    @inlineCallbacks
    def test_directClientCloseHasTheView(self) -> Generator[Deferred[Any], Any, None]:
        """
        Through tcplife's own client transport (L{ClientReactor}'s
        L{DirectClient}, as C{twist tcpclient} connects), the close carries
        the view too, read by the transport itself.
        """
        port = self.listen()
        clientEvents = EventRecorder()
        factory = LifecycleClientFactory(b"hello\n", clock=reactor, events=clientEvents.log)
        endpoint = TCP4ClientEndpoint(ClientReactor(reactor), "127.0.0.1", port)
        protocol = yield factory.connect(endpoint, f"127.0.0.1:{port}")
        self.assertIsInstance(protocol.transport.transport, DirectClient)
        outcome = yield protocol.finished  # type: ignore[attr-defined]
        self.assertTrue(outcome.ok)
        close = yield clientEvents.when(lifecycle="close")
        self.assertEqual(close["peer"], f"127.0.0.1:{port}")
        self.assertLoopbackView(close)
        self.assertGreaterEqual(close["tcp"]["bytes_received"], len(b"hello\n"))

    @inlineCallbacks
    def test_clientOverTLSHasTheView(self) -> Generator[Deferred[Any], Any, None]:
        """
        Over TLS (Twisted's ssl: client endpoint), the client's close has
        the view of the TCP connection under the TLS.
        """
        certificate = SelfSigned(Path(self.mktemp()))
        self.recorded = EventRecorder()
        server = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        port = yield serverFromString(PortReactor(reactor), certificate.endpoint()).listen(server)
        self.addCleanup(port.stopListening)
        clientEvents = EventRecorder()
        factory = LifecycleClientFactory(b"hello\n", clock=reactor, events=clientEvents.log)
        target = f"ssl:127.0.0.1:{port.getHost().port}"
        protocol = yield factory.connect(clientFromString(reactor, target), target)
        outcome = yield protocol.finished  # type: ignore[attr-defined]
        self.assertTrue(outcome.ok)
        close = yield clientEvents.when(lifecycle="close")
        self.assertLoopbackView(close)
        self.assertGreater(close["tcp"]["bytes_received"], close["bytes_in"])
