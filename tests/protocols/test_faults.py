"""
Faults on purpose, one connection at a time, on StringTransport and a
clock: what each does to the bytes, the reading and the close, and what
the events say of it.
"""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tcplife.protocols import HELD_AT_MOST, ConnectionWrapper, Throttle
from tcplife.server import ServerSettings, parseFaultSpec
from tcplife.testing import ServedConnection

from ..helpers import HalfClosingTransport, pattern


def served(*specs: str, protocol: type[Protocol] | None = None, **settings: Any) -> Faulty:
    """
    One echo connection served with C{--fault} for each of C{specs}.
    """
    return Faulty(specs, protocol, **settings)


class Faulty(ServedConnection):
    """
    A served connection whose transport half-closes, with the faults of
    C{specs} (every connection draws them: no C{p=} below 1 here).
    """

    def __init__(
        self, specs: tuple[str, ...], protocol: type[Protocol] | None, **settings: Any
    ) -> None:
        given = ServerSettings(fault=[parseFaultSpec(spec) for spec in specs], seed=1, **settings)
        super().__init__(protocol, transport=HalfClosingTransport(), settings=given)
        self.transport: HalfClosingTransport

    @property
    def reading(self) -> bool:
        return bool(self.transport.producerState == "producing")

    def advance(self, seconds: float, steps: int = 1) -> None:
        for _ in range(steps):
            self.clock.advance(seconds / steps)


class DelayTests(SynchronousTestCase):
    """
    C{delay}: each read reaches the protocol late, in order.
    """

    def test_eachReadWaitsItsDelayBeforeTheProtocolSeesIt(self) -> None:
        """
        With delay=50, a read is echoed 50 ms after it arrived, not before.
        """
        h = served("delay=50")
        h.receive(b"hello")
        h.clock.advance(0.049)
        self.assertEqual(h.sent(), b"")
        h.clock.advance(0.001)
        self.assertEqual(h.sent(), b"hello")

    def test_noReadOvertakesAnEarlierOneWhateverTheirDelays(self) -> None:
        """
        With delays drawn from a range, reads still reach the protocol in the
        order they came, and none before the shortest delay.
        """
        h = served("delay=10-200")
        chunks = [bytes([65 + i]) * 3 for i in range(20)]
        h.receive(chunks[0])
        h.clock.advance(0.0099)
        self.assertEqual(h.sent(), b"")
        echoed = b""
        for chunk in chunks[1:]:
            h.receive(chunk)
            h.clock.advance(0.005)
            echoed += h.sent()
        h.advance(1.0, steps=100)
        self.assertEqual(echoed + h.sent(), b"".join(chunks))

    def test_thePeersFinWaitsBehindTheHeldInput(self) -> None:
        """
        A FIN that arrives while input is held is passed on after it: the
        echo is complete before the close.
        """
        h = served("delay=100")
        h.receive(b"last words")
        h.peerHalfCloses()
        self.assertIsNone(h.closeEvent)
        h.clock.advance(0.1)
        self.assertEqual(h.sent(), b"last words")
        self.assertTrue(h.finishClose())
        assert h.closeEvent is not None
        self.assertEqual(
            (h.closeEvent["how"], h.closeEvent["bytes_out"]), ("fin", len(b"last words"))
        )

    def test_holdingTooMuchStopsReadingUntilItIsDelivered(self) -> None:
        """
        A fast sender is not buffered without bound: once HELD_AT_MOST bytes
        wait out their delay, the server stops reading until they are given
        to the protocol.
        """
        h = served("delay=100")
        h.receive(pattern(HELD_AT_MOST - 1))
        self.assertTrue(h.reading)
        h.receive(b"x")
        self.assertFalse(h.reading)
        h.clock.advance(0.1)
        self.assertTrue(h.reading)
        self.assertEqual(len(h.sent()), HELD_AT_MOST)

    def test_acceptEventListsTheFault(self) -> None:
        """
        The accept event of a delayed connection has fault ["delay"].
        """
        [accept] = served("delay=5").events.of("accept")
        self.assertEqual(accept["fault"], ["delay"])

    def test_connectionWithoutFaultsHasNoFaultField(self) -> None:
        """
        A connection no fault touched has no fault field in its events.
        """
        h = served()
        h.peerHalfCloses()
        [accept] = h.events.of("accept")
        self.assertNotIn("fault", accept)
        assert h.closeEvent is not None
        self.assertNotIn("fault", h.closeEvent)


class ThrottleTests(SynchronousTestCase):
    """
    C{throttle}: output leaves at a set rate, with backpressure.
    """

    def test_outputLeavesAtTheRateAtMost(self) -> None:
        """
        With throttle=1000, 5000 bytes of echo leave at 1000 bytes a second:
        by each point in time, at most two slices (a fiftieth of the rate
        each) beyond what the rate allows, at least one short of it, and all
        of it in the end.
        """
        h = served("throttle=1000")
        h.receive(pattern(5000))
        sent = len(h.sent())
        for tick in range(1, 250):
            h.clock.advance(0.01)
            sent += len(h.sent())
            allowed = 1000 * tick * 0.01
            self.assertLessEqual(sent, allowed + 40, f"at {tick * 10} ms")
            self.assertGreaterEqual(sent, min(5000, allowed - 20), f"at {tick * 10} ms")
        h.advance(3.0, steps=300)
        self.assertEqual(sent + len(h.sent()), 5000)

    def test_idleTimeBuysNoBurst(self) -> None:
        """
        After a quiet while, output still leaves at the rate: no more than
        two slices at once.
        """
        h = served("throttle=1000")
        h.receive(b"a")
        h.sent()
        h.clock.advance(10.0)
        h.receive(pattern(1000))
        self.assertLessEqual(len(h.sent()), 40)

    def test_pastTheMarkTheServerStopsReading(self) -> None:
        """
        Under a fast sender, once HELD_AT_MOST bytes wait their turn the
        server stops reading, and reads again once they have gone out.
        """
        h = served("throttle=100000")
        h.receive(pattern(HELD_AT_MOST + 100000))
        self.assertFalse(h.reading)
        h.advance(2.0, steps=200)
        self.assertTrue(h.reading)

    def test_aGracefulCloseWaitsForTheOutput(self) -> None:
        """
        The echo's close at the peer's FIN goes out only once the throttled
        echo has: every byte, then the close.
        """
        h = served("throttle=100")
        h.receive(b"x" * 30)
        h.peerHalfCloses()
        self.assertFalse(h.transport.disconnecting)
        h.advance(1.0, steps=100)
        self.assertEqual(h.sent(), b"x" * 30)
        self.assertTrue(h.finishClose())

    def test_nothingGoesIntoATransportWhoseBufferIsFull(self) -> None:
        """
        While the transport below says its buffer is full (it pauses the
        throttle's producer), nothing more is sent into it.
        """
        h = served("throttle=1000")
        h.receive(pattern(500))
        h.sent()
        producer = h.transport.producer
        assert producer is not None
        producer.pauseProducing()
        h.clock.advance(1.0)
        self.assertEqual(h.sent(), b"")
        producer.resumeProducing()
        h.advance(1.0, steps=100)
        self.assertEqual(len(h.sent()), 500 - 20)

    def test_aStreamingProducerIsPausedPastTheMark(self) -> None:
        """
        A protocol that writes through its own push producer is paused once
        HELD_AT_MOST bytes wait, and resumed once they have gone: what it
        writes stays bounded.
        """
        h = served("throttle=100000", protocol=Streaming)
        streaming = h.protocol
        while isinstance(streaming, ConnectionWrapper):
            streaming = streaming.wrappedProtocol
        assert isinstance(streaming, Streaming)
        streaming.resumeProducing()
        self.assertTrue(streaming.paused)
        self.assertLessEqual(streaming.written, HELD_AT_MOST + Streaming.chunk)
        before = streaming.written
        sent = len(h.sent())
        for _ in range(100):
            h.clock.advance(0.01)
            sent += len(h.sent())
            self.assertLessEqual(streaming.written - sent, HELD_AT_MOST + Streaming.chunk)
        self.assertGreater(streaming.written, before)


@implementer(IPushProducer)
class Streaming(Protocol):
    """
    Writes as fast as it is let, through a push producer of its own.
    """

    chunk = 4096

    def connectionMade(self) -> None:
        self.paused = True
        self.written = 0
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.paused = False
        assert self.transport is not None
        while not self.paused and self.written < 1 << 20:
            self.written += self.chunk
            self.transport.write(b"s" * self.chunk)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True


class InputFaultTests(SynchronousTestCase):
    """
    C{stop-reading-after} and C{drop-input}.
    """

    def test_stopReadingAfterGivesTheProtocolExactlyTheLimit(self) -> None:
        """
        With stop-reading-after=5, the protocol gets the first 5 bytes (so
        they are echoed) and the server then stops reading for good, even
        when the protocol asks to resume.
        """
        h = served("stop-reading-after=5")
        h.receive(b"abc")
        self.assertTrue(h.reading)
        h.receive(b"defgh")
        self.assertEqual(h.sent(), b"abcde")
        self.assertFalse(h.reading)
        h.connection.wrappedProtocol.resumeProducing()
        self.assertFalse(h.reading)

    def test_stopReadingAfterZeroNeverReads(self) -> None:
        """
        With stop-reading-after=0, the server never reads the connection.
        """
        self.assertFalse(served("stop-reading-after=0").reading)

    def test_dropInputReadsButNeverEchoes(self) -> None:
        """
        With drop-input, what the peer sends is read and counted but never
        echoed; its FIN still ends the connection cleanly.
        """
        h = served("drop-input")
        h.receive(b"into the void")
        self.assertEqual(h.sent(), b"")
        h.peerHalfCloses()
        assert h.closeEvent is not None
        self.assertEqual(
            {k: h.closeEvent[k] for k in ("how", "bytes_in", "bytes_out")},
            {"how": "fin", "bytes_in": 13, "bytes_out": 0},
        )


class EndingFaultTests(SynchronousTestCase):
    """
    C{close-after}, C{half-close-first} and C{reset-after}: the server ends
    the connection on purpose, and its close event says which fault did.
    """

    def test_closeAfterSendsTheLimitThenFinAndKeepsReading(self) -> None:
        """
        With close-after=4, the peer gets exactly 4 bytes and then FIN (a
        half-close by local); what it sends later still reaches the
        protocol, and the close, at its FIN, names the fault.
        """
        h = served("close-after=4")
        h.receive(b"hello")
        self.assertEqual(h.sent(), b"hell")
        self.assertTrue(h.transport.writeClosed)
        [half] = h.events.of("half-close")
        self.assertEqual(half["initiator"], "local")
        h.receive(b" world")
        self.assertEqual(h.sent(), b"")
        h.peerHalfCloses()
        assert h.closeEvent is not None
        self.assertEqual(
            {k: h.closeEvent[k] for k in ("initiator", "how", "fault", "bytes_in", "bytes_out")},
            {
                "initiator": "local",
                "how": "fin",
                "fault": "close-after",
                "bytes_in": 11,
                "bytes_out": 4,
            },
        )

    def test_halfCloseFirstSendsFinBeforeAnything(self) -> None:
        """
        With half-close-first, FIN goes out as soon as the connection is
        served; the server keeps reading, and sends nothing.
        """
        h = served("half-close-first")
        self.assertTrue(h.transport.writeClosed)
        h.receive(b"anyone there?")
        self.assertEqual(h.sent(), b"")
        h.peerHalfCloses()
        assert h.closeEvent is not None
        self.assertEqual(
            {k: h.closeEvent[k] for k in ("initiator", "how", "fault", "bytes_in", "bytes_out")},
            {
                "initiator": "local",
                "how": "fin",
                "fault": "half-close-first",
                "bytes_in": 13,
                "bytes_out": 0,
            },
        )

    def test_resetAfterSendsTheLimitThenResets(self) -> None:
        """
        With reset-after=3, the peer gets 3 bytes and then a reset: the close
        says how=reset, initiator=local, fault=reset-after.
        """
        h = served("reset-after=3")
        h.receive(b"hello")
        self.assertEqual(h.sent(), b"hel")
        self.assertTrue(h.transport.disconnected)
        self.assertTrue(h.finishClose())
        assert h.closeEvent is not None
        self.assertEqual(
            {k: h.closeEvent[k] for k in ("initiator", "how", "fault", "bytes_out")},
            {"initiator": "local", "how": "reset", "fault": "reset-after", "bytes_out": 3},
        )

    def test_theProtocolLearnsOfTheAbortNotOfAPeersReset(self) -> None:
        """
        The protocol of a connection a fault reset is told of the abort it
        was, not of a reset by its peer.
        """
        h = served("reset-after=1", protocol=Recording)
        protocol: Any = h.protocol
        while isinstance(protocol, ConnectionWrapper):
            protocol = protocol.wrappedProtocol
        h.receive(b"ab")
        h.connection.connectionLost(Failure(ConnectionAborted()))
        self.assertIsInstance(protocol.reason.value, ConnectionAborted)

    def test_resetAfterZeroResetsAsSoonAsServed(self) -> None:
        """
        With reset-after=0, the connection is reset as soon as it is served.
        """
        self.assertTrue(served("reset-after=0").transport.disconnected)

    def test_endingFaultsNeedNotEndTheConnection(self) -> None:
        """
        A connection whose output never reaches the limit ends as usual, and
        its close names no fault (its accept still does).
        """
        h = served("reset-after=100")
        h.receive(b"short")
        h.peerHalfCloses()
        assert h.closeEvent is not None
        self.assertEqual(h.closeEvent["how"], "fin")
        self.assertNotIn("fault", h.closeEvent)
        self.assertEqual(h.events.of("accept")[0]["fault"], ["reset-after"])


class CompositionTests(SynchronousTestCase):
    """
    Faults stack, whatever the protocol.
    """

    def test_throttledOutputIsCutAtTheLimit(self) -> None:
        """
        throttle=100 with close-after=10: exactly 10 bytes, paced, then FIN.
        """
        h = served("throttle=100,close-after=10")
        h.receive(b"y" * 50)
        self.assertEqual(h.sent(), b"y" * 2)
        self.assertFalse(h.transport.writeClosed)
        h.advance(1.0, steps=100)
        self.assertEqual(h.sent(), b"y" * 8)
        self.assertTrue(h.transport.writeClosed)
        self.assertEqual(h.events.of("accept")[0]["fault"], ["throttle", "close-after"])

    def test_faultsFromSeveralSpecsApplyTogether(self) -> None:
        """
        Two --fault specs that both apply (p=1) both act on the connection.
        """
        h = served("delay=20", "close-after=2")
        h.receive(b"abc")
        self.assertEqual(h.sent(), b"")
        h.clock.advance(0.02)
        self.assertEqual(h.sent(), b"ab")
        self.assertEqual(h.events.of("accept")[0]["fault"], ["delay", "close-after"])

    def test_aLineProtocolIsDelayedToo(self) -> None:
        """
        A protocol that is not an echo (a line protocol) gets the same fault:
        its answer to a delayed line comes late.
        """
        h = served("delay=30", protocol=Upper)
        h.receive(b"shout\n")
        self.assertEqual(h.sent(), b"")
        h.clock.advance(0.03)
        self.assertEqual(h.sent(), b"SHOUT\n")

    def test_aClosedFaultyConnectionIsFreedAtOnce(self) -> None:
        """
        Once closed, a connection's fault wrappers go with it by reference
        counting: no cycle keeps them for the garbage collector.
        """
        h = served("delay=10,throttle=1000,stop-reading-after=100,close-after=50")
        layers = []
        layer: Any = h.connection.wrappedProtocol
        while layer is not None:
            layers.append(weakref.ref(layer))
            layer = getattr(layer, "wrappedProtocol", None)
        self.assertGreater(len(layers), 4)
        h.receive(b"z" * 10)
        h.peerResets()
        gc.disable()
        self.addCleanup(gc.enable)
        del h, layer
        self.assertEqual([ref() for ref in layers if ref() is not None], [])


class Recording(Protocol):
    """
    Echoes, and keeps the reason its connection was lost.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


class Upper(Protocol):
    """
    Answers each line in capitals.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data.upper())


class ReflectTests(SynchronousTestCase):
    """
    C{--reflect}: the first line names the server and what it saw.
    """

    def test_firstLineNamesTheServerAndBothAddressesThenTheEcho(self) -> None:
        """
        The server writes one JSON line with its name and the connection's
        two addresses, then echoes as usual.
        """
        h = ServedConnection(settings=ServerSettings(reflect=True, name="web-1:4242"))
        h.receive(b"ping\n")
        line, echo = h.sent().split(b"\n", 1)
        self.assertEqual(
            json.loads(line),
            {"server": "web-1:4242", "client": "192.0.2.7:40000", "local": "127.0.0.1:9000"},
        )
        self.assertEqual(echo, b"ping\n")

    def test_faultsApplyToTheLineToo(self) -> None:
        """
        The line is the server's first output: close-after counts it.
        """
        h = Faulty(("close-after=5",), None, reflect=True, name="x")
        self.assertEqual(h.sent(), b'{"ser')
        self.assertIsInstance(h.connection.wrappedProtocol, ConnectionWrapper)
        self.assertNotIsInstance(h.connection.wrappedProtocol, Throttle)
