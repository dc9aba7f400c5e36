"""
Close semantics and the kernel's accept queue, on real loopback sockets.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory, ProxyServerEndpoint, readAcceptQueue
from tcplife.testing import EventRecorder

from ..helpers import (
    TCP_CLOSE_WAIT,
    WAIT,
    callInThread,
    closeWithReset,
    echoWithHalfClose,
    pattern,
    readUntilReset,
    recvExactly,
    tcpState,
    waitUntil,
    waitUntilClosedByKernel,
)


class Aborter(Protocol):
    """
    Answers the first bytes with a write, then aborts at once.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"x" * 1_000_000)
        self.transport.abortConnection()  # type: ignore[attr-defined]


class LossRecorder(Protocol):
    """
    Keeps the reason its connection was lost.
    """

    reason: Failure | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


class LoopbackTestCase(TestCase):
    """
    A tcplife server on 127.0.0.1, port 0, with its events recorded.
    """

    protocol: type[Protocol] | None = None
    backlog = 50

    def listen(self, protocol: type[Protocol] | None = None) -> int:
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        if protocol is not None:
            self.factory.protocol = protocol
        self.port: IListeningPort = reactor.listenTCP(  # type: ignore[attr-defined]
            0, self.factory, backlog=self.backlog, interface="127.0.0.1"
        )
        self.addCleanup(self.port.stopListening)
        port: int = self.port.getHost().port  # type: ignore[attr-defined]
        return port


class EchoTests(LoopbackTestCase):
    """
    Echo with half-close delivers every byte before the FIN.
    """

    @inlineCallbacks
    def assertEchoes(self, size: int) -> Deferred[None]:
        port = self.listen()
        payload = pattern(size)
        echoed = yield callInThread(echoWithHalfClose, port, payload)
        self.assertEqual(len(echoed), size)
        self.assertTrue(echoed == payload, "echo differs from what was sent")
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "fin"))
        self.assertEqual((close["bytes_in"], close["bytes_out"]), (size, size))
        self.assertEqual(self.recorded.phases(close["conn_id"]), ["accept", "half-close", "close"])

    def test_oneByte(self) -> None:
        """
        One byte sent with a half-close comes back, then EOF.
        """
        return self.assertEchoes(1)  # type: ignore[return-value]

    def test_oneMebibyte(self) -> None:
        """
        1 MiB sent with a half-close comes back whole, then EOF.
        """
        return self.assertEchoes(1 << 20)  # type: ignore[return-value]

    @pytest.mark.slow
    def test_sixtyFourMebibytes(self) -> None:
        """
        64 MiB sent with a half-close comes back byte for byte, then EOF,
        though far more than any socket buffer holds.
        """
        return self.assertEchoes(64 << 20)  # type: ignore[return-value]


class AbortAndResetTests(LoopbackTestCase):
    """
    An abort sends RST; a peer's RST is reported as a reset.
    """

    @inlineCallbacks
    def test_abortSendsResetAndDiscardsOutput(self) -> Deferred[None]:
        """
        A protocol that aborts right after writing 1 MB: the client gets a
        connection reset, not the megabyte, and the event says abort.
        """
        port = self.listen(Aborter)

        received, reset = yield callInThread(readUntilReset, port)
        self.assertTrue(reset, "the client saw an orderly EOF, not a reset")
        self.assertLess(received, 1_000_000)
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("local", "abort"))

    @inlineCallbacks
    def test_peerResetIsReported(self) -> Deferred[None]:
        """
        A client that closes with SO_LINGER 0 (an RST) gives C{how=reset},
        C{initiator=peer}.
        """
        port = self.listen()
        accepted = self.recorded.when(lifecycle="accept")
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        yield accepted
        closeWithReset(client)
        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))

    @inlineCallbacks
    def test_resetReportedAsEndOfInputIsStillAReset(self) -> Deferred[None]:
        """
        A RST the reactor took for an end of input is reported as a reset.

        Twisted's epoll reactor calls C{readConnectionLost} when a poll
        returns HUP without IN while it reads, and Linux can report a RST
        that way for a moment.  The test makes that moment last: the server
        stops reading, the client resets, and the test hands the transport
        what the reactor would.  The error still pending on the socket
        decides: C{how=reset}, no half-close, and the protocol is told the
        connection was lost, not done.
        """
        port = self.listen(LossRecorder)
        accepted = self.recorded.when(lifecycle="accept")
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        yield accepted
        [tracked] = self.factory.connections.values()
        protocol = tracked.wrappedProtocol
        transport: Any = tracked.transport
        transport.stopReading()
        closeWithReset(client)
        yield waitUntilClosedByKernel(transport.getHandle())

        transport.readConnectionLost(Failure(ConnectionDone()))

        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))
        self.assertEqual(self.recorded.of("half-close"), [])
        # The close event comes just before the protocol's connectionLost.
        yield deferLater(reactor, 0, lambda: None)
        reason = protocol.reason  # type: ignore[attr-defined]
        self.assertIsInstance(reason.value, ConnectionLost)
        self.assertIn("reset", str(reason.value))


class ResetAfterFinTests(TestCase):
    """
    A peer that half-closes and then resets, both before the server reads.
    """

    @inlineCallbacks
    def test_finThenResetBehindAProxyHeaderClosesTheSocket(self) -> Deferred[None]:
        """
        The FIN makes C{recv} return end of input while the RST's error is
        still pending: the connection is reported as reset, and the socket
        under the PROXY wrapper is closed, not only the wrapper.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        endpoint = ProxyServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), reactor
        )
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
        self.addCleanup(client.close)
        client.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\nhello")
        yield recorded.when(lifecycle="accept")
        [tracked] = factory.connections.values()
        server: Any = tracked.transport
        while not isinstance(server.getHandle(), socket.socket) or hasattr(
            server, "wrappedProtocol"
        ):
            server = server.transport
        # The echo is written before the server stops reading.
        yield waitUntil(lambda: tracked.bytesOut == len(b"hello"), "the echo of hello")
        server.stopReading()
        handle = server.getHandle()
        client.shutdown(socket.SHUT_WR)
        yield waitUntil(lambda: tcpState(handle) == TCP_CLOSE_WAIT, "the FIN's arrival")
        # Unread echo in the client's buffer: its close is a RST.
        closeWithReset(client)
        yield waitUntilClosedByKernel(handle)
        server.startReading()

        close = yield recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))
        self.assertEqual(recorded.of("half-close"), [])
        yield waitUntil(lambda: not server.connected, "the close of the socket under the wrapper")
        self.assertEqual(handle.fileno(), -1)


class BacklogTests(LoopbackTestCase):
    """
    The kernel, not the server, queues connections nobody has accepted yet.
    """

    backlog = 3

    @pytest.mark.slow
    @inlineCallbacks
    def test_queueHoldsBacklogPlusOneAndDeliversTheirBytesLater(self) -> Deferred[None]:
        """
        With accepting paused and backlog 3, exactly 4 clients complete the
        handshake, a 5th gets no answer within 1 s, and what the queued
        clients wrote is echoed once accepting resumes.
        """
        port = self.listen()
        self.port.stopReading()  # type: ignore[attr-defined]

        def fill() -> tuple[list[socket.socket], bool]:
            queued = []
            for n in range(self.backlog + 1):
                s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                # Linux lets a queued client write: the bytes wait in the kernel.
                s.sendall(b"queued %d\n" % n)
                queued.append(s)
            extra = socket.socket()
            extra.settimeout(1.0)
            try:
                extra.connect(("127.0.0.1", port))
                answered = True
            except TimeoutError:
                # Its SYNs went unanswered; a refusal would have raised.
                answered = False
            finally:
                extra.close()
            return queued, answered

        queued, extraAnswered = yield callInThread(fill)
        self.addCleanup(lambda: [s.close() for s in queued])
        self.assertFalse(extraAnswered, "a 5th client completed the handshake")
        queue = readAcceptQueue(self.port.socket)  # type: ignore[attr-defined]
        assert queue is not None
        self.assertEqual((queue.depth, queue.backlog), (4, 3))
        self.assertEqual(self.recorded.of("accept"), [])

        self.port.startReading()  # type: ignore[attr-defined]

        def readEchoes() -> list[bytes]:
            return [recvExactly(s, len(b"queued 0\n")) for s in queued]

        echoes = yield callInThread(readEchoes)
        self.assertEqual(echoes, [b"queued %d\n" % n for n in range(4)])
        self.assertEqual(len(self.recorded.of("accept")), 4)
