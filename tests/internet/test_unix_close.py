"""
How a UNIX-socket connection's end is reported, on real UNIX sockets.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcplife import LifecycleServerFactory
from tcplife.internet._port import PortReactor
from tcplife.internet._unixserver import LifecycleUNIXServer
from tcplife.testing import EventRecorder

from ..helpers import WAIT, callInThread, recvExactly
from ..servers import temporaryDirectory

#: One-shot exchanges per test run: without the fix, every one of them is
#: logged as a reset.
EXCHANGES = 20


def oneShots(path: str, count: int) -> None:
    """
    C{count} exchanges as C{twist tcpclient --connect unix:...} makes them:
    send, read the whole echo, close, without waiting for the server's EOF.
    """
    for n in range(count):
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(WAIT)
            client.connect(path)
            message = b"hi %d\n" % n
            client.sendall(message)
            assert recvExactly(client, len(message)) == message


class OneShotTests(TestCase):
    """
    A client that closes once it has its echo ends the connection cleanly.
    """

    @inlineCallbacks
    def test_cleanExchangesAreLoggedAsFin(self) -> Deferred[None]:
        """
        Each of twenty one-shot exchanges over a UNIX socket is logged
        C{how=fin}, though the client's close comes while the server, having
        read its EOF, waits to finish its own graceful close.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        path = str(temporaryDirectory(self) / "echo.sock")
        port = PortReactor(reactor, factory.gate).listenUNIX(path, factory)
        self.addCleanup(port.stopListening)
        yield callInThread(oneShots, path, EXCHANGES)
        # Every client had its echo, so every connection has been accepted.
        accepted = recorded.of("accept")
        self.assertEqual(len(accepted), EXCHANGES)
        hows = []
        for accept in accepted:
            close = yield recorded.when(lifecycle="close", conn_id=accept["conn_id"])
            hows.append(close["how"])
        self.assertEqual(hows, ["fin"] * EXCHANGES)


class _ListeningPort:
    _realPortNumber = "echo.sock"


class Loss(Protocol):
    """
    Remembers why the connection ended.
    """

    reason: Failure | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


class HangUpTests(SynchronousTestCase):
    """
    A hang-up while closing gracefully is a clean end unless the peer left
    our output unread, which is a UNIX socket's reset.
    """

    def closing(self, sent: bool = True) -> tuple[LifecycleUNIXServer, socket.socket, Loss]:
        """
        A server connection on one end of a socketpair that has written
        C{b"echo"} to the other (and sent it, if C{sent}) and is closing
        gracefully, waiting to be writable, as after the peer's EOF.
        """
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(peer.close)
        ours.setblocking(False)
        protocol = Loss()
        transport = LifecycleUNIXServer(ours, protocol, "", _ListeningPort, 0, MemoryReactor())
        protocol.makeConnection(transport)
        transport.write(b"echo")
        if sent:
            transport.doWrite()
        transport.loseConnection()
        return transport, peer, protocol

    def hangUp(self, transport: LifecycleUNIXServer, protocol: Loss) -> Any:
        # What the reactor does on EPOLLHUP without EPOLLIN while not reading.
        transport.connectionLost(Failure(ConnectionLost()))
        assert protocol.reason is not None
        return protocol.reason.value

    def test_peerThatReadEverythingAndClosedEndsItAsDone(self) -> None:
        """
        The peer read our output and closed: the hang-up ends the connection
        as done.
        """
        transport, peer, protocol = self.closing()
        self.assertEqual(recvExactly(peer, 4), b"echo")
        peer.close()
        self.assertIsInstance(self.hangUp(transport, protocol), ConnectionDone)

    def test_peerThatLeftOurOutputUnreadResetIt(self) -> None:
        """
        The peer closed with our output unread (ECONNRESET is then pending on
        our socket): the hang-up stays a lost connection.
        """
        transport, peer, protocol = self.closing()
        peer.close()
        reason = self.hangUp(transport, protocol)
        self.assertEqual(type(reason), ConnectionLost)

    def test_outputStillUnsentMakesItLost(self) -> None:
        """
        A hang-up while some of our output still waits to be sent loses it:
        the connection is lost, not done.
        """
        transport, peer, protocol = self.closing(sent=False)
        peer.close()
        self.assertEqual(type(self.hangUp(transport, protocol)), ConnectionLost)
