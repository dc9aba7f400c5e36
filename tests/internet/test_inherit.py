"""
Listening sockets one process binds and holds (L{HoldingPorts}) and others
inherit and accept on (L{InheritedPorts}), with one accept queue for all.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory
from tcplife.internet import (
    HoldingPorts,
    InheritedPorts,
    LifecyclePort,
    inheritedServerFromString,
    serverFromString,
)
from tcplife.testing import EventRecorder

from ..helpers import WAIT, callInThread, echoWithHalfClose, recvUntilEOFOrReset, unixEcho
from ..servers import temporaryDirectory


def inheritedCopy(port: Any) -> int:
    """
    A descriptor of C{port}'s socket, as a child process inherits it.
    """
    fd = os.dup(port.socket.fileno())
    os.set_blocking(fd, False)
    return fd


def closedDescriptor(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


class HoldingPortsTests(TestCase):
    """
    A holding port listens and leaves accepting to whoever inherits it.
    """

    def setUp(self) -> None:
        self.holding = HoldingPorts(reactor)

    def test_holdingPortListensAndNeverAccepts(self) -> None:
        """
        The port's socket listens (clients complete their handshake and
        wait in its queue) but the reactor never reads it.
        """
        port = self.holding.listenTCP(0, ServerFactory(), 8, "127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
        self.addCleanup(client.close)
        self.assertNotIn(port, reactor.getReaders())
        self.assertEqual(self.holding.ports, [port])

    @inlineCallbacks
    def test_closingAHoldingPortLeavesTheQueueToTheOtherHolders(self) -> Deferred[None]:
        """
        A client queued on the shared socket when the holding port closes is
        still there for a process that inherited the socket: Twisted's own
        port would shut the socket down, resetting it.
        """
        port = self.holding.listenTCP(0, ServerFactory(), 8, "127.0.0.1")
        inherited = socket.socket(fileno=inheritedCopy(port))
        self.addCleanup(inherited.close)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
        self.addCleanup(client.close)
        client.sendall(b"queued")
        yield port.stopListening()
        accepted, _ = inherited.accept()
        with accepted:
            accepted.settimeout(WAIT)
            self.assertEqual(accepted.recv(100), b"queued")
            accepted.sendall(b"served")
            accepted.shutdown(socket.SHUT_WR)
            client.shutdown(socket.SHUT_WR)
            self.assertEqual(recvUntilEOFOrReset(client), b"served")


class InheritedPortsTests(TestCase):
    """
    An inherited listening socket serves as the endpoint description says.
    """

    def setUp(self) -> None:
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(
            clock=reactor, events=self.recorded.log, maxConnections=5
        )
        self.holding = HoldingPorts(reactor)

    def hold(self, description: str) -> Any:
        listening = serverFromString(self.holding, description).listen(ServerFactory())
        port = self.successResultOf(listening)
        self.addCleanup(port.stopListening)
        return port

    @inlineCallbacks
    def adopt(self, endpoint: Any) -> Deferred[Any]:
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        return port

    @inlineCallbacks
    def test_tcpListenAdoptsTheInheritedSocket(self) -> Deferred[None]:
        """
        A TCP endpoint on L{InheritedPorts} makes no socket: it serves on the
        inherited one, under the factory's admission gate, and closes the
        inherited descriptor (the port has its own).
        """
        held = self.hold("tcp:0:interface=127.0.0.1")
        fd = inheritedCopy(held)
        inherited = InheritedPorts(reactor, fd)
        port = yield self.adopt(TCP4ServerEndpoint(inherited, 0, 5, "127.0.0.1"))
        self.assertIsInstance(port, LifecyclePort)
        self.assertIs(port.acceptPolicy, self.factory.gate)
        self.assertEqual(port.getHost(), held.getHost())
        self.assertTrue(closedDescriptor(fd))
        echoed = yield callInThread(echoWithHalfClose, held.getHost().port, b"inherited")
        self.assertEqual(echoed, b"inherited")

    @inlineCallbacks
    def test_systemdDescriptionServesTheInheritedSocket(self) -> Deferred[None]:
        """
        C{systemd:domain=INET:index=0}, in a process systemd did not start
        (nothing in C{LISTEN_FDS}), serves on the inherited socket, and
        C{haproxy:} in front of it still reads the PROXY header first.
        """
        held = self.hold("tcp:0:interface=127.0.0.1")
        inherited = InheritedPorts(reactor, inheritedCopy(held))
        endpoint = inheritedServerFromString(inherited, "haproxy:systemd:domain=INET:index=0")
        yield self.adopt(endpoint)
        header = b"PROXY TCP4 192.0.2.7 127.0.0.1 4321 80\r\n"
        echoed = yield callInThread(echoWithHalfClose, held.getHost().port, header + b"proxied")
        self.assertEqual(echoed, b"proxied")
        accept = yield self.recorded.when(lifecycle="accept")
        self.assertEqual(accept["peer"], "192.0.2.7:4321")

    @inlineCallbacks
    def test_unixAdoptionKeepsThePathItsModeAndTheOtherHolders(self) -> Deferred[None]:
        """
        A UNIX socket bound with C{mode=600} keeps that mode when a worker
        adopts it, and when the adopted port closes the path stays and the
        socket still takes new clients for the other holders: Twisted's port
        would chmod it to 0666, unlink it and shut it down.
        """
        path = str(temporaryDirectory(self) / "echo.sock")
        held = self.hold(f"unix:{path}:mode=600")
        other = socket.socket(fileno=inheritedCopy(held))
        self.addCleanup(other.close)
        inherited = InheritedPorts(reactor, inheritedCopy(held))
        port = yield self.adopt(inheritedServerFromString(inherited, f"unix:{path}:mode=600"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        echoed = yield callInThread(unixEcho, path, b"adopted")
        self.assertEqual(echoed, b"adopted")

        yield port.stopListening()
        self.assertTrue(os.path.exists(path))
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(WAIT)
            client.connect(path)
            accepted, _ = other.accept()
            accepted.close()

    def test_aSecondListenCallIsABug(self) -> None:
        """
        One inherited socket is adopted once: a second listening call raises.
        """
        held = self.hold("tcp:0:interface=127.0.0.1")
        inherited = InheritedPorts(reactor, inheritedCopy(held))
        port = inherited.listenTCP(0, self.factory)
        self.addCleanup(port.stopListening)
        self.assertRaises(RuntimeError, inherited.listenTCP, 0, self.factory)
