"""
tcplife's own listening ports, reached through endpoint strings.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import reactor, tcp
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, UnsupportedAddressFamily
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcplife import LifecycleServerFactory
from tcplife.internet._port import LifecyclePort, LifecycleUNIXPort, PolicedPort, PortReactor
from tcplife.testing import EventRecorder

from ..helpers import WAIT, callInThread, echoWithHalfClose, unixEcho
from ..servers import temporaryDirectory


class EndpointPortTests(TestCase):
    """
    Endpoint strings parsed with a PortReactor listen on tcplife ports.
    """

    def setUp(self) -> None:
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(clock=reactor, events=self.recorded.log)
        self.ports = PortReactor(reactor)

    @inlineCallbacks
    def listen(self, description: str) -> Deferred[object]:
        port = yield serverFromString(self.ports, description).listen(self.factory)
        self.addCleanup(port.stopListening)
        return port

    @inlineCallbacks
    def test_tcpEndpointUsesLifecyclePort(self) -> Deferred[None]:
        """
        C{tcp:} builds a LifecyclePort, which serves the echo.
        """
        port = yield self.listen("tcp:0:interface=127.0.0.1:backlog=7")
        self.assertIsInstance(port, LifecyclePort)
        self.assertEqual(port.backlog, 7)
        echoed = yield callInThread(echoWithHalfClose, port.getHost().port, b"tcp")
        self.assertEqual(echoed, b"tcp")
        self.assertEqual(self.ports.ports, [port])

    @inlineCallbacks
    def test_unixEndpointUsesLifecycleUNIXPort(self) -> Deferred[None]:
        """
        C{unix:} builds a LifecycleUNIXPort, and the events name the path.
        """
        # Not trial's mktemp: under _trial_temp the path can pass the 108
        # bytes a UNIX socket address holds.
        path = str(temporaryDirectory(self) / "echo.sock")
        port = yield self.listen(f"unix:{path}")
        self.assertIsInstance(port, LifecycleUNIXPort)
        echoed = yield callInThread(unixEcho, path, b"over unix")
        self.assertEqual(echoed, b"over unix")
        accept = yield self.recorded.when(lifecycle="accept")
        self.assertEqual(accept["local"], f"unix:{path}")

    @inlineCallbacks
    def test_unixAbstractNamespaceListensAndServes(self) -> Deferred[None]:
        """
        A Linux abstract-namespace name (a leading NUL: no file) listens on a
        LifecycleUNIXPort and echoes; a second listen on the name is refused
        with CannotListenError (address in use).
        """
        name = f"\0tcplife-test-{os.getpid()}-{id(self)}"
        port = self.ports.listenUNIX(name, self.factory)
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, LifecycleUNIXPort)
        self.assertEqual(port.getHost(), UNIXAddress(name))
        echoed = yield callInThread(unixEcho, name, b"abstract")
        self.assertEqual(echoed, b"abstract")
        error = self.assertRaises(CannotListenError, self.ports.listenUNIX, name, self.factory)
        self.assertEqual(error.socketError.errno, errno.EADDRINUSE)

    @inlineCallbacks
    def test_adoptedSocketUsesLifecyclePort(self) -> Deferred[None]:
        """
        A socket listened on elsewhere (systemd, SO_REUSEPORT) is adopted
        as a LifecyclePort.
        """
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(5)
        listening.setblocking(False)
        self.addCleanup(listening.close)
        port = self.ports.adoptStreamPort(listening.fileno(), socket.AF_INET, self.factory)
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, LifecyclePort)
        echoed = yield callInThread(echoWithHalfClose, listening.getsockname()[1], b"adopted")
        self.assertEqual(echoed, b"adopted")

    def test_adoptingAnUnsupportedFamilyRaisesUnsupportedAddressFamily(self) -> None:
        """
        An address family the reactor does not support is refused with
        L{UnsupportedAddressFamily}, as the reactor's own adoptStreamPort does.
        """
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        self.addCleanup(listening.close)
        unsupported = 2**16 + 7
        self.assertRaises(
            UnsupportedAddressFamily,
            self.ports.adoptStreamPort,
            listening.fileno(),
            unsupported,
            self.factory,
        )
        self.assertEqual(self.ports.ports, [])


class CappedPolicy:
    """
    An accept policy that allows C{cap} open connections and records what
    the port tells it.
    """

    def __init__(self, cap: int, factory: LifecycleServerFactory) -> None:
        self.cap = cap
        self.factory = factory
        self.watched: list[PolicedPort] = []
        self.exhausted: list[int] = []
        self.refusals = 0
        self.closing_fds: list[int] = []

    def watch(self, port: PolicedPort) -> None:
        self.watched.append(port)

    def acceptBudget(self) -> int:
        return self.cap - len(self.factory.connections)

    def acceptsExhausted(self, port: PolicedPort, error: int) -> None:
        self.exhausted.append(error)

    def refused(self, port: PolicedPort) -> None:
        self.refusals += 1

    def closing(self, port: PolicedPort) -> None:
        # The listening descriptor as the policy sees it: still open or not.
        self.closing_fds.append(port.socket.fileno())


class AcceptBudgetTests(TestCase):
    """
    The accept budget bounds each burst; the rest wait in the kernel.
    """

    @inlineCallbacks
    def test_burstAcceptsNoMoreThanTheBudget(self) -> Deferred[None]:
        """
        Five clients arrive at once with a budget of two: the port accepts
        two, stops reading, and three stay in the kernel's queue.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        ports = PortReactor(reactor, CappedPolicy(2, factory))
        port = ports.listenTCP(0, factory, backlog=10, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        port.stopReading()  # type: ignore[attr-defined]
        clients = [
            socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)  # type: ignore[attr-defined]
            for _ in range(5)
        ]
        self.addCleanup(lambda: [c.close() for c in clients])
        port.startReading()  # type: ignore[attr-defined]
        for _ in range(3):
            yield recorded.when(lifecycle="accept")
            d: Deferred[None] = Deferred()
            reactor.callLater(0.05, d.callback, None)  # type: ignore[attr-defined]
            yield d
        self.assertEqual(len(recorded.of("accept")), 2)
        self.assertNotIn(port, reactor.getReaders())  # type: ignore[attr-defined]


class FailingPolicy(CappedPolicy):
    """
    A policy with a bug where the port tells it that it closes.
    """

    def closing(self, port: PolicedPort) -> None:
        raise RuntimeError("policy bug")


class ClosingTests(TestCase):
    """
    A policed port tells its policy it is closing while its listening socket
    is still open, and closes whatever the policy does.
    """

    def listen(self, policyClass: type[CappedPolicy]) -> tuple[Any, CappedPolicy]:
        factory = LifecycleServerFactory(clock=reactor)
        policy = policyClass(2, factory)
        port = PortReactor(reactor, policy).listenTCP(0, factory, interface="127.0.0.1")
        return port, policy

    @inlineCallbacks
    def test_policyHearsOfTheCloseWhileTheSocketIsOpen(self) -> Deferred[None]:
        """
        The policy's C{closing} runs once, before the listening socket is
        closed, so it can still take the accept queue.
        """
        port, policy = self.listen(CappedPolicy)
        listening = port.fileno()
        yield port.stopListening()
        self.assertEqual(policy.closing_fds, [listening])
        self.assertFalse(port.connected)

    @inlineCallbacks
    def test_failingPolicyDoesNotKeepThePortOpen(self) -> Deferred[None]:
        """
        A policy that raises in C{closing} is logged, and the port still
        closes: new clients are refused.
        """
        port, _ = self.listen(FailingPolicy)
        number = port.getHost().port
        yield port.stopListening()
        self.assertFalse(port.connected)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", number), timeout=WAIT).close()


class LogPrefixTests(TestCase):
    """
    A port's log prefix is its factory's class, as Twisted's port gives it.
    """

    def test_theLogPrefixNamesTheFactorysClassEvenAfterItChanges(self) -> None:
        """
        The prefix is the qualified name of the factory's class, the same as
        C{tcp.Port}'s, and it follows a factory replaced on the port.
        """
        factory = LifecycleServerFactory(clock=reactor)
        port: Any = PortReactor(reactor).listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        expected = "tcplife.server._factory.LifecycleServerFactory"
        self.assertEqual(port.logPrefix(), expected)
        self.assertEqual(port.logPrefix(), tcp.Port.logPrefix(port))

        class Other(LifecycleServerFactory):
            pass

        port.factory = Other(clock=reactor)
        self.assertEqual(port.logPrefix(), f"{__name__}.Other")


class PassThroughTests(SynchronousTestCase):
    """
    On a reactor without sockets, listening passes through untouched.
    """

    def test_memoryReactorSeesListenTCP(self) -> None:
        """
        A MemoryReactor records the listenTCP call as made.
        """
        memory = MemoryReactorClock()
        factory = LifecycleServerFactory(clock=memory)
        PortReactor(memory).listenTCP(9000, factory, 12, "::1")
        self.assertEqual(memory.tcpServers, [(9000, factory, 12, "::1")])

    def test_otherAttributesAreTheReactors(self) -> None:
        """
        Clock and other reactor methods are the real reactor's.
        """
        memory = MemoryReactorClock()
        adapter = PortReactor(memory)
        adapter.callLater(5, lambda: None)
        self.assertEqual(len(memory.getDelayedCalls()), 1)
