"""
BatchedPoller: tcplife's connections in one epoll set per reactor, on real
loopback sockets.
"""

from __future__ import annotations

import gc
import select
import socket
import weakref
from typing import Any

from twisted.internet import main, reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer

from tcplife.internet._dispatch import ErrorAwareDispatch
from tcplife.internet._poller import BatchedPoller, pollerFor
from tcplife.internet.directreactor import DirectEPollReactor

from ..helpers import (
    WAIT,
    callInThread,
    closeWithReset,
    echoWithHalfClose,
    pattern,
    pollerOf,
    waitUntilClosedByKernel,
)
from .test_transport import DirectTestCase


def skipUnlessBatched() -> BatchedPoller:
    """
    The global reactor's poller, or skip: tcplife's own reactor has none.
    """
    poller = pollerFor(reactor)
    if not isinstance(poller, BatchedPoller):
        raise SkipTest(f"{type(reactor).__name__} dispatches directly; no poller to test")
    return poller


def reactorsOwnReaders() -> list[Any]:
    """
    The global reactor's readers as its own books have them: the poller, not
    the connections that C{getReaders} shows through it.
    """
    readers: list[Any] = type(reactor).getReaders(reactor)  # type: ignore[attr-defined]
    return readers


class PollerChoiceTests(SynchronousTestCase):
    """
    Which reactors get a poller.
    """

    def test_stockEPollReactorGetsOneBatchedPoller(self) -> None:
        """
        Twisted's epoll reactor dispatches through callWithLogger: its
        connections share one L{BatchedPoller}, the same every time.
        """
        from twisted.internet.epollreactor import EPollReactor

        stock = EPollReactor()  # type: ignore[no-untyped-call]
        self.addCleanup(stock._poller.close)
        poller = pollerFor(stock)
        self.assertIsInstance(poller, BatchedPoller)
        self.addCleanup(poller._epoll.close)
        self.assertIs(pollerFor(stock), poller)

    def test_directReactorIsItsOwnPoller(self) -> None:
        """
        tcplife's own reactor dispatches directly: connections register with
        it, not with a second epoll set.
        """
        direct = DirectEPollReactor()  # type: ignore[no-untyped-call]
        self.addCleanup(direct._poller.close)
        self.assertIs(pollerFor(direct), direct)


def collectedWithTheirReactor() -> tuple[weakref.ref[Any], weakref.ref[Any]]:
    """
    Weak references to a stock epoll reactor that was given a poller, and to
    that poller, once nothing else refers to the reactor.
    """
    from twisted.internet.epollreactor import EPollReactor

    stock = EPollReactor()  # type: ignore[no-untyped-call]
    poller = pollerFor(stock)
    references = weakref.ref(stock), weakref.ref(poller)
    del stock, poller
    gc.collect()
    return references


class PollerLifetimeTests(SynchronousTestCase):
    """
    A poller lives as long as its reactor, no longer and no shorter.
    """

    def test_reactorAndPollerAreCollectedTogether(self) -> None:
        """
        Once a reactor is dropped, it and its poller are garbage: asking for
        a poller leaks neither (nor an epoll descriptor).
        """
        reactorReference, pollerReference = collectedWithTheirReactor()
        self.assertIsNone(reactorReference())
        self.assertIsNone(pollerReference())

    def test_eachReactorHasItsOwnPoller(self) -> None:
        """
        Two reactors, two pollers, each asked for again gives the same one.
        """
        from twisted.internet.epollreactor import EPollReactor

        first = EPollReactor()  # type: ignore[no-untyped-call]
        second = EPollReactor()  # type: ignore[no-untyped-call]
        pollers = pollerFor(first), pollerFor(second)
        for each in (first, second):
            self.addCleanup(each._poller.close)
            self.addCleanup(each._tcplifePoller._epoll.close)
        self.assertIsNot(pollers[0], pollers[1])
        self.assertEqual((pollerFor(first), pollerFor(second)), pollers)
        self.assertEqual([poller.reactor for poller in pollers], [first, second])


class ReactorFDSetTests(SynchronousTestCase):
    """
    The reactor's C{IReactorFDSet} queries see the connections a poller
    holds as the reactor's own readers and writers, as Twisted's callers
    expect of a stock reactor.
    """

    def setUp(self) -> None:
        from twisted.internet.epollreactor import EPollReactor

        self.reactor = EPollReactor()  # type: ignore[no-untyped-call]
        self.addCleanup(self.reactor._poller.close)
        self.poller = pollerFor(self.reactor)
        self.addCleanup(self.poller._epoll.close)

    def descriptor(self) -> RecordingDescriptor:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        return RecordingDescriptor(ours.fileno())

    def test_heldConnectionsAreTheReactorsReadersAndWriters(self) -> None:
        """
        A connection reading through the poller is among the reactor's
        readers, one writing among its writers; the poller itself is neither.
        """
        reading, writing = self.descriptor(), self.descriptor()
        self.poller.addReader(reading)
        self.poller.addWriter(writing)
        readers, writers = self.reactor.getReaders(), self.reactor.getWriters()
        self.assertIn(reading, readers)
        self.assertNotIn(writing, readers)
        self.assertEqual(writers, [writing])
        self.assertNotIn(self.poller, readers)

    def test_readInsteadOfWritingIsOneChangeOfTheEpollSet(self) -> None:
        """
        A writer made a reader in one step (a client whose connect is done)
        is among the readers and not the writers, its epoll entry now waits
        for input, and the poller stays registered with the reactor: on the
        batched poller and on tcplife's reactor alike.
        """
        from tcplife.internet.directreactor import DirectEPollReactor

        direct = DirectEPollReactor()  # type: ignore[no-untyped-call]
        self.addCleanup(direct._poller.close)
        for poller in (self.poller, direct):
            connecting = self.descriptor()
            poller.addWriter(connecting)
            poller.readInsteadOfWriting(connecting)
            self.assertIn(connecting, poller.getReaders())
            self.assertNotIn(connecting, poller.getWriters())
            # A socket pair's end is writable at once, never readable here.
            self.assertEqual(poller._epollSet().poll(0), [])
        self.assertIn(self.poller, self.reactor._selectables.values())

    def test_theReactorsRemoveReaderAndRemoveWriterReachHeldConnections(self) -> None:
        """
        C{reactor.removeReader} and C{reactor.removeWriter} of a held
        connection stop the poller watching it (as before an
        C{adoptStreamConnection} of its descriptor); of one the poller does
        not hold, they are the reactor's own.
        """
        held, own = self.descriptor(), self.descriptor()
        self.poller.addReader(held)
        self.poller.addWriter(held)
        self.reactor.addReader(own)
        self.reactor.removeReader(held)
        self.assertEqual((self.poller.getReaders(), self.poller.getWriters()), ([], [held]))
        self.reactor.removeWriter(held)
        self.assertEqual(self.poller.getWriters(), [])
        self.assertNotIn(held, self.reactor.getReaders() + self.reactor.getWriters())
        self.assertIn(own, self.reactor.getReaders())
        self.reactor.removeReader(own)
        self.assertNotIn(own, self.reactor.getReaders())

    def test_removeAllRemovesAndReturnsHeldConnections(self) -> None:
        """
        C{reactor.removeAll()} returns the held connections (not the poller)
        and stops watching them: neither the poller nor the reactor has them
        afterwards, and the poller has left the reactor.
        """
        reading, writing = self.descriptor(), self.descriptor()
        self.poller.addReader(reading)
        self.poller.addWriter(writing)
        removed = self.reactor.removeAll()
        self.assertEqual(sorted(removed, key=id), sorted([reading, writing], key=id))
        self.assertEqual((self.poller.getReaders(), self.poller.getWriters()), ([], []))
        self.assertEqual(self.reactor.getWriters(), [])
        for gone in (reading, writing, self.poller):
            self.assertNotIn(gone, self.reactor.getReaders())
        self.assertEqual(self.reactor.removeAll(), [])

    def test_theFirstConnectionAfterRemoveAllPutsThePollerBack(self) -> None:
        """
        The poller joins the reactor with its first connection, stays for
        the next ones, and once C{reactor.removeAll()} (trial's janitor) has
        taken it away, the next connection puts it back.
        """
        from twisted.internet.epollreactor import EPollReactor

        def pollerJoined() -> bool:
            # The reactor's own readers, as its class gives them.
            readers = EPollReactor.getReaders(self.reactor)  # type: ignore[no-untyped-call]
            return self.poller in readers

        first, second = self.descriptor(), self.descriptor()
        self.poller.addReader(first)
        self.poller.addReader(second)
        self.assertTrue(pollerJoined())
        self.reactor.removeAll()
        self.assertFalse(pollerJoined())
        self.poller.addReader(self.descriptor())
        self.assertTrue(pollerJoined())

    def test_disconnectAllReachesHeldConnections(self) -> None:
        """
        C{reactor.disconnectAll()}, what a reactor does at shutdown, loses
        every held connection once.
        """
        both = self.descriptor()
        self.poller.addReader(both)
        self.poller.addWriter(both)
        self.reactor.disconnectAll()
        self.assertEqual(both.calls, ["connectionLost ConnectionLost"])


class BatchedPollerTests(DirectTestCase):
    """
    Connections on the global reactor, through its poller.
    """

    @inlineCallbacks
    def test_registeredWithTheReactorOnlyWhileItHoldsConnections(self) -> Deferred[None]:
        """
        The poller is one of the reactor's readers while a connection is open,
        and leaves once the last one closes, so an idle server (or a clean
        test) holds no reader for it.
        """
        poller = skipUnlessBatched()
        port = self.listen()
        client, _ = yield self.connectClient(port)
        self.assertIn(poller, reactorsOwnReaders())
        self.assertIs(pollerOf(self.transportOf()), poller)

        client.close()
        yield self.recorded.when(lifecycle="close")
        self.assertNotIn(poller, reactorsOwnReaders())

    @inlineCallbacks
    def test_manyConnectionsEchoThroughOneSet(self) -> Deferred[None]:
        """
        Twenty connections at once, each echoed whole, all through the poller.
        """
        skipUnlessBatched()
        port = self.listen()
        payloads = [pattern(100_000 + n) for n in range(20)]
        results = yield gatherResults(
            [callInThread(echoWithHalfClose, port, payload) for payload in payloads],
            consumeErrors=True,
        )
        self.assertEqual(results, payloads)

    @inlineCallbacks
    def test_errorWithoutInputIsALostConnection(self) -> Deferred[None]:
        """
        An event with HUP and ERR but not IN, as Linux may report a RST for a
        moment, is read, and the connection is lost (C{how=reset}), not
        half-closed.
        """
        poller = skipUnlessBatched()
        port = self.listen()
        client, _ = yield self.connectClient(port)
        transport: Any = self.transportOf()
        fd = transport.fileno()
        # Not reading while the RST arrives, so the poller does not handle
        # it on its own; reading again only for the event handed over below.
        transport.stopReading()
        closeWithReset(client)
        yield waitUntilClosedByKernel(transport.socket)

        # Twisted's reactors would call readConnectionLost here.
        halfClosed: list[object] = []
        transport.readConnectionLost = halfClosed.append
        transport.startReading()
        poller._doReadOrWrite(transport, fd, select.EPOLLHUP | select.EPOLLERR)
        self.assertEqual(halfClosed, [])

        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual((close["initiator"], close["how"]), ("peer", "reset"))
        self.assertEqual(self.recorded.of("half-close"), [])

    @inlineCallbacks
    def test_reactorShutdownDisconnectsItsConnections(self) -> Deferred[None]:
        """
        When the reactor disconnects its readers at shutdown, the poller
        passes that on to each connection it holds.
        """
        poller = skipUnlessBatched()
        port = self.listen()
        client, _ = yield self.connectClient(port)

        poller.connectionLost(Failure(main.CONNECTION_LOST))

        close = yield self.recorded.when(lifecycle="close")
        self.assertEqual(close["how"], "reset")
        self.assertEqual(poller.getReaders(), [])
        self.assertNotIn(poller, reactorsOwnReaders())
        self.assertEqual(client.recv(10), b"")


@implementer(IHalfCloseableDescriptor)
class RecordingDescriptor:
    """
    Records which of its handlers an event reaches.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.calls: list[str] = []

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "RecordingDescriptor"

    def doRead(self) -> None:
        self.calls.append("doRead")

    def doWrite(self) -> None:
        self.calls.append("doWrite")

    def readConnectionLost(self, reason: Failure) -> None:
        self.calls.append("readConnectionLost")

    def connectionLost(self, reason: Failure) -> None:
        self.calls.append(f"connectionLost {reason.type.__name__}")


class DispatchTests(SynchronousTestCase):
    """
    ErrorAwareDispatch sends each kind of epoll event where Twisted's
    reactors do, but for ERR without IN while reading.
    """

    def dispatch(self, event: int, reading: bool) -> list[str]:
        poller = BatchedPoller(MemoryReactor())
        self.addCleanup(poller._epoll.close)
        # A descriptor number nothing uses: the books alone say "reading".
        descriptor = RecordingDescriptor(10_000)
        poller._selectables[descriptor.fd] = descriptor
        if reading:
            poller._reads.add(descriptor.fd)
        poller._doReadOrWrite(descriptor, descriptor.fd, event)
        return descriptor.calls

    def test_inputIsRead(self) -> None:
        """
        IN on a descriptor being read: doRead.
        """
        self.assertEqual(self.dispatch(select.EPOLLIN, reading=True), ["doRead"])

    def test_inputIsReadEvenWhenNotReading(self) -> None:
        """
        As in Twisted: a connecting client is not reading, and its doRead is
        the doConnect that reads SO_ERROR (a refused connection reports
        IN|HUP|ERR).
        """
        event = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
        self.assertEqual(self.dispatch(event, reading=False), ["doRead"])

    def test_errorWithoutInputWhileReadingIsRead(self) -> None:
        """
        The one difference from Twisted: HUP|ERR without IN, while reading,
        is read (Twisted would report a clean end of input).
        """
        event = select.EPOLLHUP | select.EPOLLERR
        self.assertEqual(self.dispatch(event, reading=True), ["doRead"])

    def test_hangUpWithoutInputWhileReadingIsEndOfInput(self) -> None:
        """
        HUP alone while reading: the peer's FIN, passed on as a half-close.
        """
        self.assertEqual(self.dispatch(select.EPOLLHUP, reading=True), ["readConnectionLost"])

    def test_errorWhileNotReadingIsALostConnection(self) -> None:
        """
        HUP|ERR on a descriptor not being read: the connection is lost.
        """
        event = select.EPOLLHUP | select.EPOLLERR
        self.assertEqual(self.dispatch(event, reading=False), ["connectionLost ConnectionLost"])

    def test_outputIsWritten(self) -> None:
        """
        OUT: doWrite.
        """
        self.assertEqual(self.dispatch(select.EPOLLOUT, reading=False), ["doWrite"])

    def test_keyboardInterruptIsNotSwallowed(self) -> None:
        """
        As with callWithLogger: a KeyboardInterrupt from a handler reaches
        the reactor's caller.
        """
        poller = BatchedPoller(MemoryReactor())
        self.addCleanup(poller._epoll.close)
        descriptor = RecordingDescriptor(10_000)

        def interrupted(reason: Failure) -> None:
            raise KeyboardInterrupt()

        descriptor.connectionLost = interrupted  # type: ignore[method-assign]
        poller._selectables[descriptor.fd] = descriptor
        event = select.EPOLLHUP | select.EPOLLERR
        self.assertRaises(
            KeyboardInterrupt,
            poller._dispatchAll,
            [(descriptor.fd, event)],
            poller._selectables,
        )


class DescriptorGoneTests(SynchronousTestCase):
    """
    Input for a descriptor whose C{fileno()} is -1 (it went away) is not
    read: the descriptor is disconnected, as Twisted's C{_doReadOrWrite} does,
    on the batch fast path too.
    """

    def dispatchInputToGone(self, dispatcher: Any, selectables: dict[int, Any]) -> list[str]:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        fd = ours.fileno()
        descriptor = RecordingDescriptor(fd)
        dispatcher.addReader(descriptor)
        descriptor.fd = -1
        dispatcher._dispatchAll([(fd, select.EPOLLIN)], selectables)
        self.assertNotIn(descriptor, dispatcher.getReaders())
        return descriptor.calls

    def test_batchedPollerDisconnectsAGoneDescriptor(self) -> None:
        """
        Through a L{BatchedPoller}: no doRead, a ConnectionFdescWentAway.
        """
        poller = BatchedPoller(MemoryReactor())
        self.addCleanup(poller._epoll.close)
        calls = self.dispatchInputToGone(poller, poller._selectables)
        self.assertEqual(calls, ["connectionLost ConnectionFdescWentAway"])

    def test_directReactorDisconnectsAGoneDescriptor(self) -> None:
        """
        Through tcplife's own reactor: no doRead, a ConnectionFdescWentAway.
        """
        direct = DirectEPollReactor()  # type: ignore[no-untyped-call]
        self.addCleanup(direct._poller.close)
        calls = self.dispatchInputToGone(direct, direct._selectables)
        self.assertEqual(calls, ["connectionLost ConnectionFdescWentAway"])


class RaisesDone(Protocol):
    """
    Raises ConnectionDone from dataReceived: a bug, not an end of input.
    """

    def dataReceived(self, data: bytes) -> None:
        raise ConnectionDone("raised by the protocol")


class FastPathTests(DirectTestCase):
    """
    The batch fast path for plain input, on whichever reactor runs the suite.
    """

    @inlineCallbacks
    def test_exceptionFromDataReceivedIsNotAHalfClose(self) -> Deferred[None]:
        """
        What doRead raises closes the connection as the reason it is, even a
        ConnectionDone: no half-close, as with Twisted's own dispatch.
        """
        port = self.listen(RaisesDone)
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(client.close)
        client.sendall(b"x")
        yield self.recorded.when(lifecycle="close")
        self.assertEqual(self.recorded.of("half-close"), [])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionDone)), 1)

    @inlineCallbacks
    def test_reprNamesTheConnectionsHeld(self) -> Deferred[None]:
        """
        trial's dirty-reactor report shows the poller: its repr names the
        connections it holds.
        """
        poller = skipUnlessBatched()
        port = self.listen()
        yield self.connectClient(port)
        self.assertIn(repr(self.transportOf()), repr(poller))
        self.assertIn("holding 1", repr(poller))


class ClosingDescriptor(RecordingDescriptor):
    """
    Asks its poller, when read, to close it once the batch is done; records
    into a log shared with the other descriptors of the batch.
    """

    def __init__(self, fd: int, poller: BatchedPoller, log: list[str], closes: bool) -> None:
        super().__init__(fd)
        self.poller = poller
        self.log = log
        self.closes = closes

    def doRead(self) -> None:
        self.log.append(f"{self.fd} read")
        if self.closes:
            self.log.append(f"{self.fd} close asked: {self.poller.closeAfterDispatch(self)}")

    def _closeFlushed(self) -> None:
        self.log.append(f"{self.fd} closed")


class CloseAfterDispatchTests(SynchronousTestCase):
    """
    A close asked for while a batch is dispatched happens once the batch is
    done: after its caller returned, before the reactor's next pass, with no
    delayed call.
    """

    def batch(self, *closes: bool) -> tuple[BatchedPoller, list[ClosingDescriptor], list[str]]:
        poller = BatchedPoller(MemoryReactor())
        self.addCleanup(poller._epoll.close)
        log: list[str] = []
        descriptors = [
            ClosingDescriptor(10_000 + n, poller, log, close) for n, close in enumerate(closes)
        ]
        for descriptor in descriptors:
            poller._selectables[descriptor.fd] = descriptor
            poller._reads.add(descriptor.fd)
        return poller, descriptors, log

    def test_closedOnceTheBatchIsDone(self) -> None:
        """
        The first descriptor of a batch asks to be closed; the second is
        still read before the first is closed, once.
        """
        poller, descriptors, log = self.batch(True, False)
        poller._dispatchAll([(d.fd, select.EPOLLIN) for d in descriptors], poller._selectables)
        self.assertEqual(
            log, ["10000 read", "10000 close asked: True", "10001 read", "10000 closed"]
        )

    def test_outsideABatchTheCallerMustScheduleIt(self) -> None:
        """
        Asked outside a batch (from a timer, say), the poller declines and
        closes nothing; DirectServer then falls back to callLater.
        """
        poller, descriptors, log = self.batch(False)
        self.assertFalse(poller.closeAfterDispatch(descriptors[0]))
        poller._dispatchAll([], poller._selectables)
        self.assertEqual(log, [])

    def test_anErrorClosingOneIsLoggedAndTheOthersClose(self) -> None:
        """
        A close that raises is logged; the rest of the batch's closes run.
        """
        poller, descriptors, log = self.batch(True, True)

        def broken() -> None:
            raise ValueError("broken close")

        descriptors[0]._closeFlushed = broken  # type: ignore[method-assign]
        poller._dispatchAll([(d.fd, select.EPOLLIN) for d in descriptors], poller._selectables)
        self.assertEqual(log[-1], "10001 closed")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_aKeyboardInterruptClosingOneStillClosesTheOthers(self) -> None:
        """
        A KeyboardInterrupt from one close reaches the reactor's caller, once
        the other closes of the batch have run: none is left open.
        """
        poller, descriptors, log = self.batch(True, True)

        def interrupted() -> None:
            raise KeyboardInterrupt()

        descriptors[0]._closeFlushed = interrupted  # type: ignore[method-assign]
        self.assertRaises(
            KeyboardInterrupt,
            poller._dispatchAll,
            [(d.fd, select.EPOLLIN) for d in descriptors],
            poller._selectables,
        )
        self.assertEqual(log[-1], "10001 closed")

    def test_aBatchDispatchedInsideABatchKeepsTheOuterOnesCloses(self) -> None:
        """
        A handler that dispatches a batch of its own (iterating the reactor)
        does not end the outer batch: a close asked for after it still waits
        for the outer batch to be done.
        """
        poller, descriptors, log = self.batch(False, True)
        outer = descriptors[0]

        def readAndNest() -> None:
            log.append("10000 read")
            poller._dispatchAll([], poller._selectables)

        outer.doRead = readAndNest  # type: ignore[method-assign]
        poller._dispatchAll([(d.fd, select.EPOLLIN) for d in descriptors], poller._selectables)
        self.assertEqual(
            log, ["10000 read", "10001 read", "10001 close asked: True", "10001 closed"]
        )


class CloseWithoutDelayedCallTests(DirectTestCase):
    """
    On loopback, on whichever reactor runs the suite: an echo ended by the
    peer's FIN closes from the dispatch batch, not through callLater.
    """

    @inlineCallbacks
    def test_endOfInputClosesWithoutADelayedCall(self) -> Deferred[None]:
        """
        The echo comes back whole, the close is a FIN, queued with the
        dispatch batch, and no C{_closeFlushed} went through C{callLater}.
        """
        scheduled: list[Any] = []
        callLater = reactor.callLater  # type: ignore[attr-defined]

        def recordingCallLater(delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
            scheduled.append(f)
            return callLater(delay, f, *args, **kwargs)

        self.patch(reactor, "callLater", recordingCallLater)
        queued: list[bool] = []
        closeAfterDispatch = ErrorAwareDispatch.closeAfterDispatch

        def recordingCloseAfterDispatch(poller: ErrorAwareDispatch, connection: Any) -> bool:
            queued.append(closeAfterDispatch(poller, connection))
            return queued[-1]

        self.patch(ErrorAwareDispatch, "closeAfterDispatch", recordingCloseAfterDispatch)
        port = self.listen()
        echoed = yield callInThread(echoWithHalfClose, port, b"ping")
        yield self.recorded.when(lifecycle="close")
        self.assertEqual(echoed, b"ping")
        self.assertEqual(self.recorded.of("close")[0]["how"], "fin")
        closes = [f for f in scheduled if getattr(f, "__name__", "") == "_closeFlushed"]
        self.assertEqual((queued, closes), ([True], []))
