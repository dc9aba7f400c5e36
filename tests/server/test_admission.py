"""
Admission control on the kernel's backlog: the connection cap, bursts, and
running out of file descriptors.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcplife import LifecycleServerFactory, ServerSettings, readAcceptQueue
from tcplife.internet._port import PortReactor
from tcplife.server import FaultPlan, parseFaultSpec
from tcplife.server._admission import FD_LIMIT, MAX_CONNECTIONS, AcceptGate
from tcplife.server._metrics import ServerCollector
from tcplife.testing import EventRecorder

from ..helpers import (
    WAIT,
    callInThread,
    readLine,
    recvUntilEOFOrReset,
    waitUntil,
)


class FakePort:
    """
    Just enough of a listening port for the gate: reading on or off.
    """

    connected = True
    disconnecting = False
    socket = socket.socket()

    def __init__(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 9000)


class GateTests(SynchronousTestCase):
    """
    The gate pauses and resumes ports as connections come and go.
    """

    def setUp(self) -> None:
        self.open = 0
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        self.gate = AcceptGate(
            self.recorded.log, self.clock, lambda: self.open, ServerSettings(maxConnections=2)
        )
        self.port = FakePort()
        self.gate.watch(self.port)  # type: ignore[arg-type]
        self.addCleanup(FakePort.socket.close)

    def opened(self) -> None:
        self.open += 1
        self.gate.connectionOpened()

    def closed(self) -> None:
        self.open -= 1
        self.gate.connectionClosed()

    def test_budgetIsRoomBelowTheCap(self) -> None:
        """
        The budget is the cap minus the open connections.
        """
        self.assertEqual(self.gate.acceptBudget(), 2)
        self.opened()
        self.assertEqual(self.gate.acceptBudget(), 1)

    def test_pausesAtTheCapAndSaysSo(self) -> None:
        """
        Reaching the cap stops reading the port and emits accept-paused.
        """
        self.opened()
        self.assertTrue(self.port.reading)
        self.opened()
        self.assertFalse(self.port.reading)
        self.assertEqual(self.gate.acceptBudget(), 0)
        [paused] = self.recorded.of("accept-paused")
        self.assertEqual(
            (paused["reason"], paused["open"], paused["address"]),
            (MAX_CONNECTIONS, 2, "127.0.0.1:9000"),
        )
        # Not a listening socket: the kernel's queue is not known.
        self.assertIsNone(paused["queue"])

    def test_resumesBelowTheCap(self) -> None:
        """
        A close below the cap resumes reading and emits accept-resumed with
        how long accepting was paused.
        """
        self.opened()
        self.opened()
        self.clock.advance(3)
        self.closed()
        self.assertTrue(self.port.reading)
        [resumed] = self.recorded.of("accept-resumed")
        self.assertEqual((resumed["open"], resumed["paused_s"]), (1, 3))

    def test_connectionsAwaitingTheirHeaderCountAgainstTheCap(self) -> None:
        """
        Connections still waiting for their PROXY header fill the cap as
        open connections do: accepting pauses, and says they are open.
        """
        self.gate.headerAwaited()
        self.opened()
        self.assertFalse(self.port.reading)
        self.assertEqual((self.gate.openConnections(), self.gate.acceptBudget()), (2, 0))
        [paused] = self.recorded.of("accept-paused")
        self.assertEqual(paused["open"], 2)

    def test_arrivedHeaderHandsItsSlotToTheFactory(self) -> None:
        """
        When the header arrives, the factory's new connection takes the slot
        over: the count stays, and accepting does not resume in between.
        """
        self.gate.headerAwaited()
        self.gate.headerAwaited()
        self.gate.headerArrived()
        self.opened()
        self.assertEqual((self.gate.openConnections(), self.gate.awaitingHeader), (2, 1))
        self.assertFalse(self.port.reading)
        self.assertEqual(self.recorded.of("accept-resumed"), [])

    def test_refusedHeaderFreesItsSlotAndIsCounted(self) -> None:
        """
        A connection closed without a valid header frees its slot, so
        accepting resumes, and counts as refused.
        """
        self.gate.headerAwaited()
        self.gate.headerAwaited()
        self.gate.headerRefused()
        self.assertTrue(self.port.reading)
        self.assertEqual((self.gate.openConnections(), self.gate.refusedHeader), (1, 1))
        [resumed] = self.recorded.of("accept-resumed")
        self.assertEqual(resumed["open"], 1)

    def test_refusedHeaderEndsAnExhaustionPause(self) -> None:
        """
        A connection closed without its header frees a descriptor too, so a
        pause for want of descriptors ends at once, not at the next retry.
        """
        self.gate.headerAwaited()
        self.gate.acceptsExhausted(self.port, errno.EMFILE)  # type: ignore[arg-type]
        self.gate.headerRefused()
        self.assertTrue(self.port.reading)
        self.assertIsNone(self.gate.paused)

    def test_noCapMeansNoPause(self) -> None:
        """
        Without a cap the gate never pauses for connections.
        """
        gate = AcceptGate(self.recorded.log, self.clock, lambda: 10**6, ServerSettings())
        gate.connectionOpened()
        self.assertGreater(gate.acceptBudget(), 10**6)
        self.assertIsNone(gate.paused)

    def test_exhaustionPausesThenRetriesWithBackoff(self) -> None:
        """
        EMFILE pauses accepting; the gate retries after 1 s, then 2 s, and
        counts each exhaustion.
        """
        self.gate.acceptsExhausted(self.port, errno.EMFILE)  # type: ignore[arg-type]
        self.assertFalse(self.port.reading)
        self.assertTrue(self.gate.paused and self.gate.paused.startswith(FD_LIMIT))
        self.assertIn("EMFILE", self.recorded.of("accept-paused")[0]["reason"])
        self.clock.advance(1)
        self.assertTrue(self.port.reading)
        self.gate.acceptsExhausted(self.port, errno.EMFILE)  # type: ignore[arg-type]
        self.clock.advance(1)
        self.assertFalse(self.port.reading)
        self.clock.advance(1)
        self.assertTrue(self.port.reading)
        self.assertEqual(self.gate.exhaustions, 2)

    def test_closingConnectionEndsExhaustionPause(self) -> None:
        """
        A connection closing frees a descriptor, so accepting resumes at once.
        """
        self.opened()
        self.gate.acceptsExhausted(self.port, errno.EMFILE)  # type: ignore[arg-type]
        self.closed()
        self.assertTrue(self.port.reading)
        self.assertIsNone(self.gate.paused)

    def test_stoppedPortsAreLeftAlone(self) -> None:
        """
        A port that stopped listening is not started again.
        """
        self.port.connected = False
        self.opened()
        self.opened()
        self.closed()
        self.assertTrue(self.port.reading)
        self.assertEqual(self.recorded.of("accept-resumed"), [])


def planOf(*specs: str, seed: int = 1) -> FaultPlan:
    return FaultPlan([parseFaultSpec(spec) for spec in specs], seed)


class GateFaultTests(SynchronousTestCase):
    """
    accept-delay and never-accept: the gate holds the queue on purpose.
    """

    def gate(self, plan: FaultPlan, cap: int | None = None) -> AcceptGate:
        self.open = 0
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        gate = AcceptGate(
            self.recorded.log,
            self.clock,
            lambda: self.open,
            ServerSettings(maxConnections=cap),
            plan,
        )
        self.port = FakePort()
        gate.watch(self.port)  # type: ignore[arg-type]
        self.addCleanup(FakePort.socket.close)
        return gate

    def test_acceptDelayHoldsTheQueueBeforeEachConnectionThatDrewIt(self) -> None:
        """
        With accept-delay=100, the gate accepts nothing and stops the port
        for 100 ms, then lets exactly that connection through, and holds
        again for the next.
        """
        plan = planOf("accept-delay=100")
        gate = self.gate(plan)
        self.assertEqual(gate.acceptBudget(), 0)
        self.assertFalse(self.port.reading)
        self.clock.advance(0.099)
        self.assertFalse(self.port.reading)
        self.clock.advance(0.001)
        self.assertTrue(self.port.reading)
        self.assertEqual(gate.acceptBudget(), 1)
        plan.take()
        self.assertEqual(gate.acceptBudget(), 0)
        self.assertFalse(self.port.reading)

    def test_acceptsNoFurtherThanTheNextConnectionThatWaits(self) -> None:
        """
        With accept-delay for some connections only, a burst may accept
        the connections ahead of the next one that waits, and no more.
        """
        seed = next(
            seed
            for seed in range(1000)
            if planOf("accept-delay=50,p=0.3", seed=seed).peek(0).acceptWait() is None
        )
        plan = planOf("accept-delay=50,p=0.3", seed=seed)
        ahead = next(i for i in range(64) if plan.peek(i).acceptWait() is not None)
        gate = self.gate(plan)
        self.assertEqual(gate.acceptBudget(), ahead)
        self.assertTrue(self.port.reading)

    def test_neverAcceptHoldsForGoodAndSaysSo(self) -> None:
        """
        With never-accept, the gate stops the port for good: no closing
        connection and no time resumes it; accept-paused says why, and the
        metrics' count has it once.
        """
        plan = planOf("never-accept")
        gate = self.gate(plan)
        self.assertEqual(gate.acceptBudget(), 0)
        self.open = 1
        gate.connectionClosed()
        self.clock.advance(3600)
        self.assertFalse(self.port.reading)
        self.assertEqual(gate.acceptBudget(), 0)
        [paused] = self.recorded.of("accept-paused")
        self.assertEqual(paused["reason"], "never-accept (fault)")
        self.assertEqual(plan.counts["never-accept"], 1)

    def test_theCapsResumeWaitsForTheHoldToEnd(self) -> None:
        """
        A cap pause that ends while accept-delay holds the queue leaves the
        port stopped until the hold ends too.
        """
        gate = self.gate(planOf("accept-delay=100"), cap=1)
        self.assertEqual(gate.acceptBudget(), 0)
        self.open = 1
        gate.connectionOpened()
        self.assertEqual(gate.paused, MAX_CONNECTIONS)
        self.open = 0
        gate.connectionClosed()
        self.assertIsNone(gate.paused)
        self.assertFalse(self.port.reading)
        self.clock.advance(0.1)
        self.assertTrue(self.port.reading)


class FaultsOnLoopbackTests(TestCase):
    """
    The gate's faults on real sockets: the clients wait in the kernel's queue.
    """

    def serve(self, spec: str, backlog: int, clock: Any = reactor) -> tuple[Any, int]:
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(
            clock=clock,
            events=self.recorded.log,
            settings=ServerSettings(fault=[parseFaultSpec(spec)], seed=1),
        )
        port = PortReactor(reactor, factory.gate).listenTCP(
            0, factory, backlog=backlog, interface="127.0.0.1"
        )
        self.addCleanup(lambda: port.connected and port.stopListening())
        self.factory = factory
        return port, port.getHost().port  # type: ignore[attr-defined]

    @pytest.mark.slow
    @inlineCallbacks
    def test_neverAcceptFillsTheBacklogAndLaterConnectsHang(self) -> Deferred[None]:
        """
        With never-accept and a backlog of 2, three clients (backlog + 1)
        complete their connect and wait in the kernel's queue, unserved; the
        kernel drops the next one's SYN, so its connect hangs.  Not even the
        port's close serves them: they are counted unserved.
        """
        port, number = self.serve("never-accept", backlog=2)
        queued = yield callInThread(connectAll, number, 3)
        self.addCleanup(lambda: [c.close() for c in queued])
        queue = readAcceptQueue(port.socket)
        assert queue is not None
        self.assertEqual((queue.depth, queue.backlog), (3, 2))

        def connectOneMore() -> str:
            with socket.socket() as late:
                late.settimeout(1.0)
                try:
                    late.connect(("127.0.0.1", number))
                except TimeoutError:
                    return "hangs"
                return "connected"

        outcome = yield callInThread(connectOneMore)
        self.assertEqual(outcome, "hangs")
        self.assertEqual(self.recorded.of("accept"), [])
        [paused] = self.recorded.of("accept-paused")
        self.assertEqual((paused["reason"], paused["backlog"]), ("never-accept (fault)", 2))
        yield port.stopListening()
        self.assertEqual(self.factory.gate.unserved, 3)
        self.assertEqual(self.recorded.of("accept"), [])

    @inlineCallbacks
    def test_acceptDelayLeavesTheClientInTheKernelsQueue(self) -> Deferred[None]:
        """
        With accept-delay, a client's connect completes at once and it waits
        in the kernel's queue, unserved, until the delay is over; then it is
        accepted (its accept event says so) and echoed.
        """
        clock = Clock()
        port, number = self.serve("accept-delay=300", backlog=8, clock=clock)
        [client] = yield callInThread(connectAll, number, 1)
        self.addCleanup(client.close)
        yield waitUntil(lambda: clock.getDelayedCalls() != [], "the hold of the queue")

        queue = readAcceptQueue(port.socket)
        assert queue is not None
        self.assertEqual(queue.depth, 1)
        self.assertEqual(self.recorded.of("accept"), [])
        clock.advance(0.3)
        echo = yield callInThread(readLine, client)
        self.assertEqual(echo, b"client 0\n")
        [accept] = self.recorded.of("accept")
        self.assertEqual(accept["fault"], ["accept-delay"])


def connectAll(port: int, count: int) -> list[socket.socket]:
    clients = []
    for n in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        client.sendall(b"client %d\n" % n)
        clients.append(client)
    return clients


class CapOnLoopbackTests(TestCase):
    """
    The cap holds on real sockets; waiting clients sit in the kernel's queue.
    """

    def serve(self, cap: int | None, backlog: int) -> tuple[LifecycleServerFactory, Any, int]:
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(
            clock=reactor, events=self.recorded.log, maxConnections=cap
        )
        port = PortReactor(reactor, factory.gate).listenTCP(
            0, factory, backlog=backlog, interface="127.0.0.1"
        )
        # Last: the clients a closing port takes off its queue are served,
        # and end once the test has closed them.
        self.addCleanup(factory.whenNoConnections)
        self.addCleanup(lambda: port.connected and port.stopListening())
        return factory, port, port.getHost().port  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_twoServedFiveQueuedAndEchoedLater(self) -> Deferred[None]:
        """
        With --max-connections 2 --backlog 4: two clients are served, five
        more complete the handshake and wait in the kernel's queue, and their
        bytes are echoed once the first two close.
        """
        factory, port, number = self.serve(2, 4)
        served = yield callInThread(connectAll, number, 2)
        self.addCleanup(lambda: [c.close() for c in served])
        echoes = yield callInThread(lambda: [readLine(c) for c in served])
        self.assertEqual(echoes, [b"client 0\n", b"client 1\n"])
        yield self.recorded.when(lifecycle="accept-paused")

        waiting = yield callInThread(connectAll, number, 5)
        self.addCleanup(lambda: [c.close() for c in waiting])
        queue = readAcceptQueue(port.socket)
        assert queue is not None
        self.assertEqual((queue.depth, queue.backlog), (5, 4))
        self.assertEqual(len(self.recorded.of("accept")), 2)
        self.assertEqual(len(factory.connections), 2)

        for client in served:
            client.close()
        echoes = yield callInThread(lambda: [readLine(c) for c in waiting[:2]])
        self.assertEqual(echoes, [b"client 0\n", b"client 1\n"])
        self.assertEqual(len(factory.connections), 2)
        for client in waiting[:2]:
            client.close()
        echoes = yield callInThread(lambda: [readLine(c) for c in waiting[2:4]])
        self.assertEqual(echoes, [b"client 2\n", b"client 3\n"])
        self.assertEqual(len(factory.connections), 2)
        waiting[2].close()
        last = yield callInThread(readLine, waiting[4])
        self.assertEqual(last, b"client 4\n")
        self.assertEqual(len(self.recorded.of("accept")), 7)
        self.assertGreaterEqual(len(self.recorded.of("accept-resumed")), 2)

    @inlineCallbacks
    def test_burstFindsAtMostTheCapServed(self) -> Deferred[None]:
        """
        Thirty clients arriving in one burst (accepting paused while they
        connect) find exactly three served; the rest stay queued.
        """
        factory, port, number = self.serve(3, 64)
        port.stopReading()
        clients = yield callInThread(connectAll, number, 30)
        self.addCleanup(lambda: [c.close() for c in clients])
        port.startReading()
        yield self.recorded.when(lifecycle="accept-paused")
        # Let any further wake-ups of the listening socket happen.
        for _ in range(5):
            d: Deferred[None] = Deferred()
            reactor.callLater(0.02, d.callback, None)  # type: ignore[attr-defined]
            yield d
        self.assertEqual(len(factory.connections), 3)
        self.assertEqual(len(self.recorded.of("accept")), 3)
        queue = readAcceptQueue(port.socket)
        assert queue is not None
        self.assertEqual(queue.depth, 27)


class QueueAtCloseTests(TestCase):
    """
    A listening port that closes takes its accept queue first: the kernel
    would reset every client in it, though their handshakes completed.
    """

    serve = CapOnLoopbackTests.serve

    @inlineCallbacks
    def test_busyPortServesEveryQueuedClientWhenItCloses(self) -> Deferred[None]:
        """
        Five clients queued (and their requests sent) while the port is not
        reading, as on a busy server, each get their echo after it closes.
        """
        factory, port, number = self.serve(None, 16)
        port.stopReading()
        clients = yield callInThread(connectAll, number, 5)
        self.addCleanup(lambda: [c.close() for c in clients])
        yield port.stopListening()
        echoes = yield callInThread(lambda: [readLine(c) for c in clients])
        self.assertEqual(echoes, [b"client %d\n" % n for n in range(5)])
        self.assertEqual(len(self.recorded.of("accept")), 5)
        self.assertEqual(factory.gate.unserved, 0)

    @inlineCallbacks
    def test_adoptedPortServesItsQueueWhenItCloses(self) -> Deferred[None]:
        """
        A port adopted from a socket listened on elsewhere (systemd, which
        tells it no backlog) takes its queue too when it closes.
        """
        self.recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        listening.setblocking(False)
        port = PortReactor(reactor, factory.gate).adoptStreamPort(
            listening.fileno(), socket.AF_INET, factory
        )
        self.addCleanup(factory.whenNoConnections)
        port.stopReading()  # type: ignore[attr-defined]
        clients = yield callInThread(connectAll, listening.getsockname()[1], 3)
        self.addCleanup(lambda: [c.close() for c in clients])
        yield port.stopListening()
        echoes = yield callInThread(lambda: [readLine(c) for c in clients])
        self.assertEqual(echoes, [b"client %d\n" % n for n in range(3)])

    @inlineCallbacks
    def test_queuedClientsBeyondTheCapAreServedAsSlotsFree(self) -> Deferred[None]:
        """
        With a cap of 1, three clients queued when the port closes wait for
        the open connection to close, and are then served one at a time.
        """
        factory, port, number = self.serve(1, 16)
        [first] = yield callInThread(connectAll, number, 1)
        self.addCleanup(first.close)
        yield self.recorded.when(lifecycle="accept-paused")
        queued = yield callInThread(connectAll, number, 3)
        self.addCleanup(lambda: [c.close() for c in queued])
        yield port.stopListening()
        self.assertEqual((len(factory.connections), len(factory.gate.waiting)), (1, 3))

        for client in [first, *queued]:
            echo = yield callInThread(readLine, client)
            self.assertEqual(echo[:7], b"client ")
            client.close()
        yield self.recorded.when(
            lifecycle="close", conn_id=self.recorded.of("accept")[-1]["conn_id"]
        )
        phases = [p for p in self.recorded.phases() if p in ("accept", "close")]
        self.assertEqual(phases, ["accept", "close"] * 4)
        self.assertEqual(factory.gate.waiting, deque())

    @inlineCallbacks
    def test_clientsLeftWaitingAreClosedAndCountedUnserved(self) -> Deferred[None]:
        """
        A queued client still waiting for a slot when the drain gives up is
        closed unserved, and counted as such in the gate and the metrics.
        """
        factory, port, number = self.serve(1, 16)
        [first] = yield callInThread(connectAll, number, 1)
        self.addCleanup(first.close)
        yield self.recorded.when(lifecycle="accept-paused")
        [waiting] = yield callInThread(connectAll, number, 1)
        self.addCleanup(waiting.close)
        yield port.stopListening()
        self.assertEqual(factory.gate.closeWaiting(), 1)
        self.assertEqual(factory.gate.unserved, 1)
        echo = yield callInThread(recvUntilEOFOrReset, waiting)
        self.assertEqual(echo, b"")
        refused = {
            sample.labels["reason"]: sample.value
            for family in ServerCollector(factory, lambda: []).collect()
            if family.name == "tcplife_connections_refused"
            for sample in family.samples
        }
        self.assertEqual(refused["shutdown"], 1)
