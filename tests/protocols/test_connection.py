"""
The tracked connection and the echo protocol, on StringTransport and a clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvidedBy, implementer

from tcplife import EchoProtocol, LifecycleServerFactory, TrackedConnection
from tcplife.protocols import _tracking, numberConnections
from tcplife.testing import LOCAL, PEER, EventRecorder, ServedConnection


class Upper(LineReceiver):
    """
    A user's own line protocol that knows nothing of tcplife.
    """

    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


class Quiet(Protocol):
    """
    Reads and says nothing (no half-close support).
    """


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """
    A StringTransport that claims to be TCP, with one TCP-only method.
    """

    def getTcpNoDelay(self) -> bool:
        return True


class Harness(ServedConnection):
    """
    tcplife.testing's served connection, under the names these tests use.
    """

    def __init__(
        self,
        protocol: type[Protocol] = EchoProtocol,
        *,
        trace: bool = False,
        transport: StringTransport | None = None,
    ) -> None:
        super().__init__(protocol, trace=trace, transport=transport)
        self.recorded = self.events

    def close(self) -> dict[str, Any]:
        [event] = self.recorded.of("close")
        return event


class LifecycleEventTests(SynchronousTestCase):
    """
    Each step of a connection's life is one event with the documented fields.
    """

    def test_acceptEventNamesConnectionPeerAndLocalAddress(self) -> None:
        """
        An accepted connection emits C{accept} with its id and both ends.
        """
        h = Harness()
        [accept] = h.recorded.of("accept")
        self.assertEqual(accept["conn_id"], h.connection.connId)
        self.assertEqual(accept["peer"], "192.0.2.7:40000")
        self.assertEqual(accept["local"], "127.0.0.1:9000")
        self.assertEqual(accept["role"], "server")

    def test_ipv6AddressesAreBracketed(self) -> None:
        """
        IPv6 addresses appear as C{[host]:port}, so the port splits off cleanly.
        """
        transport = StringTransport(
            hostAddress=IPv6Address("TCP", "::1", 9000),
            peerAddress=IPv6Address("TCP", "::1", 50000),
        )
        h = Harness(transport=transport)
        [accept] = h.recorded.of("accept")
        self.assertEqual((accept["peer"], accept["local"]), ("[::1]:50000", "[::1]:9000"))

    def test_connectionIdsAreUniqueAcrossFactories(self) -> None:
        """
        Two factories never hand out the same connection id.
        """
        ids = {Harness().connection.connId for _ in range(5)}
        self.assertEqual(len(ids), 5)

    def test_numberedConnectionsTakeTheirIdsByStride(self) -> None:
        """
        After C{numberConnections(3, 4)} (worker 3 of 4), connections are
        numbered 3, 7, 11: no id another worker's stride would give.
        """
        self.addCleanup(setattr, _tracking, "_connectionIds", _tracking._connectionIds)
        numberConnections(3, 4)
        ids = [Harness().connection.connId for _ in range(3)]
        self.assertEqual(ids, [3, 7, 11])

    def test_numberingMustStartAtOneOrMore(self) -> None:
        """
        Ids below 1, or a stride below 1, are refused.
        """
        self.assertRaises(ValueError, numberConnections, 0, 2)
        self.assertRaises(ValueError, numberConnections, 1, 0)

    def test_echoesAndCountsBytesBothWays(self) -> None:
        """
        Echoed bytes go back unchanged and the close event counts them.
        """
        h = Harness()
        h.connection.dataReceived(b"hello")
        h.connection.dataReceived(b" world")
        self.assertEqual(h.transport.value(), b"hello world")
        h.clock.advance(2.5)
        h.connection.connectionLost(Failure(ConnectionDone()))
        close = h.close()
        self.assertEqual((close["bytes_in"], close["bytes_out"]), (11, 11))
        self.assertEqual(close["duration_s"], 2.5)
        self.assertEqual(close["conn_id"], h.connection.connId)

    def test_peerFinIsPeerInitiatedFin(self) -> None:
        """
        A peer that closes cleanly gives C{initiator=peer}, C{how=fin}.
        """
        h = Harness()
        h.connection.connectionLost(Failure(ConnectionDone()))
        close = h.close()
        self.assertEqual((close["initiator"], close["how"]), ("peer", "fin"))

    def test_localLoseConnectionIsLocalFin(self) -> None:
        """
        A protocol that closes first gives C{initiator=local}, C{how=fin}.
        """
        h = Harness()
        h.connection.wrappedProtocol.transport.loseConnection()  # type: ignore[attr-defined]
        self.assertTrue(h.transport.disconnecting)
        h.connection.connectionLost(Failure(ConnectionDone()))
        close = h.close()
        self.assertEqual((close["initiator"], close["how"]), ("local", "fin"))

    def test_abortIsLocalAbort(self) -> None:
        """
        C{abortConnection} reaches the transport and gives C{how=abort}.
        """
        h = Harness()
        h.connection.wrappedProtocol.transport.abortConnection()  # type: ignore[attr-defined]
        self.assertTrue(h.transport.disconnected)  # set by abortConnection only
        h.connection.connectionLost(Failure(ConnectionAborted()))
        close = h.close()
        self.assertEqual((close["initiator"], close["how"]), ("local", "abort"))

    def test_peerResetIsPeerReset(self) -> None:
        """
        A connection lost without a FIN (an RST) gives C{how=reset}.
        """
        h = Harness()
        h.connection.connectionLost(Failure(ConnectionLost()))
        close = h.close()
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))

    def test_halfCloseIsReportedAndEchoClosesAfterwards(self) -> None:
        """
        The peer's FIN emits C{half-close}; the echo then closes gracefully,
        and the close is the peer's doing.
        """
        h = Harness()
        h.connection.dataReceived(b"last words")
        h.connection.readConnectionLost()
        [half] = h.recorded.of("half-close")
        self.assertEqual((half["conn_id"], half["initiator"]), (h.connection.connId, "peer"))
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.transport.value(), b"last words")
        h.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(h.close()["initiator"], "peer")
        self.assertEqual(h.recorded.phases(h.connection.connId), ["accept", "half-close", "close"])

    def test_protocolWithoutHalfCloseStillGetsItsOutputDelivered(self) -> None:
        """
        A protocol without IHalfCloseableProtocol is not cut off at the
        peer's FIN: the transport flushes, then the protocol hears of the
        close.
        """
        lost: list[Failure] = []

        class Remembers(Quiet):
            def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
                lost.append(reason)

        h = Harness(Remembers)
        self.assertFalse(IHalfCloseableProtocol.providedBy(h.connection.wrappedProtocol))
        h.connection.readConnectionLost()
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(lost, [])
        h.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(lost), 1)
        self.assertTrue(lost[0].check(ConnectionDone))

    def test_usersLineReceiverGetsLifecycleWithoutHooks(self) -> None:
        """
        A plain LineReceiver served by the factory is echoed through the
        tracked transport and gets every event.
        """
        h = Harness(Upper)
        h.connection.dataReceived(b"abc\ndef\n")
        self.assertEqual(h.transport.value(), b"ABC\nDEF\n")
        h.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(h.recorded.phases(), ["accept", "close"])
        self.assertEqual(h.close()["bytes_out"], 8)

    def test_protocolSeesItsFactory(self) -> None:
        """
        The wrapped protocol's C{factory} is the lifecycle factory, as usual.
        """
        h = Harness()
        self.assertIs(h.connection.wrappedProtocol.factory, h.factory)  # type: ignore[attr-defined]

    def test_factoryTracksOpenConnections(self) -> None:
        """
        The factory's registry holds a connection from accept to close.
        """
        h = Harness()
        self.assertEqual(list(h.factory.connections), [h.connection.connId])
        h.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(h.factory.connections, {})


class Bookkeeper(Protocol):
    """
    Reads its transport's books when the connection is lost, as a user's
    protocol may.
    """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        assert self.transport is not None
        tracked: Any = self.transport
        self.books = (tracked.connId, tracked.bytesIn, tracked.bytesOut, tracked.how)


class AfterCloseTests(SynchronousTestCase):
    """
    Once closed, the tracked connection lets go of its protocol (a cycle,
    through the protocol's transport), and the protocol keeps its transport.
    """

    def test_protocolReadsItsTransportInAndAfterConnectionLost(self) -> None:
        """
        In connectionLost and afterwards, the protocol's transport is still
        the tracked connection with its id and byte counts; the tracked
        connection no longer holds the protocol.
        """
        h = Harness(Bookkeeper)
        protocol = h.connection.wrappedProtocol
        h.connection.dataReceived(b"abc")
        h.connection.connectionLost(Failure(ConnectionDone()))
        assert isinstance(protocol, Bookkeeper)
        self.assertEqual(protocol.books, (h.connection.connId, 3, 0, "fin"))
        self.assertIs(protocol.transport, h.connection)
        self.assertEqual(protocol.transport.getPeer(), PEER)
        self.assertIsNone(h.connection.wrappedProtocol)
        self.assertIn("closed", repr(h.connection))
        self.assertEqual(h.connection.logPrefix(), "TrackedConnection")


class LosingAtOnce(LifecycleServerFactory):
    """
    A factory whose books end the connection as it opens (as the reactor's
    shutdown may, from an observer of the accept event).
    """

    def connectionOpened(self, connection: TrackedConnection) -> None:
        super().connectionOpened(connection)
        connection.connectionLost(Failure(ConnectionLost()))


class LostWhileOpeningTests(SynchronousTestCase):
    """
    A connection lost before its protocol was connected.
    """

    def test_protocolIsNotConnectedAfterTheFact(self) -> None:
        """
        The connection is reported closed and gone from the books, and its
        protocol is not connected afterwards (nor does anything raise).
        """
        recorded = EventRecorder()
        factory = LosingAtOnce.forProtocol(
            EchoProtocol, clock=MemoryReactorClock(), events=recorded.log
        )
        connection = factory.buildProtocol(PEER)
        assert isinstance(connection, TrackedConnection)
        protocol = connection.wrappedProtocol
        assert isinstance(protocol, EchoProtocol)
        connection.makeConnection(StringTransport(hostAddress=LOCAL, peerAddress=PEER))
        self.assertEqual(recorded.phases(), ["accept", "close"])
        self.assertEqual(factory.connections, {})
        self.assertFalse(protocol.connected)


class TraceTests(SynchronousTestCase):
    """
    Per-read and per-write events exist only with tracing on.
    """

    def test_traceOffEmitsNoReadOrWrite(self) -> None:
        """
        Without tracing, data moves but no read or write event appears.
        """
        h = Harness()
        h.connection.dataReceived(b"abc")
        self.assertEqual(h.recorded.phases(), ["accept"])

    def test_traceOnEmitsByteCounts(self) -> None:
        """
        With tracing, each read and each write is an event with its size.
        """
        h = Harness(trace=True)
        h.connection.dataReceived(b"abcd")
        h.connection.writeSequence([b"xy", b"z"])
        self.assertEqual(
            [(e["lifecycle"], e["bytes"]) for e in h.recorded.events[1:]],
            [("read", 4), ("write", 4), ("write", 3)],
        )


class TransportPassThroughTests(SynchronousTestCase):
    """
    To the wrapped protocol the tracked connection is the transport.
    """

    def test_providesTheTransportsInterfaces(self) -> None:
        """
        Interfaces of the real transport are visible on the wrapper.
        """
        h = Harness(transport=TCPStringTransport(hostAddress=LOCAL, peerAddress=PEER))
        self.assertTrue(ITCPTransport.providedBy(h.connection))
        self.assertTrue(h.connection.getTcpNoDelay())

    def test_beforeConnectingItProvidesItsOwnInterfacesOnly(self) -> None:
        """
        Built but not yet connected, a tracked connection provides what its
        class declares (as a protocol) and nothing directly; once connected,
        its transport's interfaces too.
        """
        factory = LifecycleServerFactory(clock=MemoryReactorClock(), events=EventRecorder().log)
        factory.protocol = EchoProtocol
        connection = factory.buildProtocol(PEER)
        assert connection is not None
        self.assertTrue(IHalfCloseableProtocol.providedBy(connection))
        self.assertFalse(ITCPTransport.providedBy(connection))
        self.assertEqual(list(directlyProvidedBy(connection)), [])
        connection.makeConnection(TCPStringTransport(hostAddress=LOCAL, peerAddress=PEER))
        self.assertTrue(ITCPTransport.providedBy(connection))
        self.assertTrue(IHalfCloseableProtocol.providedBy(connection))

    def test_addressesPassThrough(self) -> None:
        """
        C{getPeer} and C{getHost} are the real transport's.
        """
        h = Harness()
        self.assertEqual((h.connection.getPeer(), h.connection.getHost()), (PEER, LOCAL))


class BackpressureTests(SynchronousTestCase):
    """
    Reading stops while the transport's output buffer is over its mark.
    """

    def test_registersAStreamingProducer(self) -> None:
        """
        Each connection registers a streaming producer with its transport.
        """
        h = Harness()
        self.assertTrue(IPushProducer.providedBy(h.transport.producer))
        self.assertTrue(h.transport.streaming)

    def test_fullOutputPausesReadingUntilDrained(self) -> None:
        """
        When the transport pauses the producer, the connection stops reading;
        when it resumes it, reading resumes.
        """
        h = Harness()
        h.transport.producer.pauseProducing()
        self.assertEqual(h.transport.producerState, "paused")
        h.transport.producer.resumeProducing()
        self.assertEqual(h.transport.producerState, "producing")

    def test_protocolPauseOutlastsDrain(self) -> None:
        """
        A pause asked for by the protocol holds even when the buffer drains.
        """
        h = Harness()
        h.connection.pauseProducing()
        h.transport.producer.pauseProducing()
        h.transport.producer.resumeProducing()
        self.assertEqual(h.transport.producerState, "paused")
        h.connection.resumeProducing()
        self.assertEqual(h.transport.producerState, "producing")

    def test_loseConnectionUnregistersProducer(self) -> None:
        """
        Closing unregisters the producer first, so a paused producer cannot
        keep the transport from finishing its close.
        """
        h = Harness()
        h.transport.producer.pauseProducing()
        h.connection.loseConnection()
        self.assertIsNone(h.transport.producer)
        self.assertTrue(h.transport.disconnecting)

    def test_protocolsOwnProducerTakesOver(self) -> None:
        """
        A protocol that registers its own producer replaces the built-in one,
        and gets it back when it unregisters.
        """
        h = Harness()

        @implementer(IPushProducer)
        class Source:
            def pauseProducing(self) -> None: ...
            def resumeProducing(self) -> None: ...
            def stopProducing(self) -> None: ...

        source = Source()
        h.connection.registerProducer(source, True)
        self.assertIs(h.transport.producer, source)
        h.connection.unregisterProducer()
        self.assertTrue(IPushProducer.providedBy(h.transport.producer))
        self.assertIsNot(h.transport.producer, source)
