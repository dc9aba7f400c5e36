"""
Idle timeouts and the graceful drain, on a clock.
"""

from __future__ import annotations

import socket
from collections import deque

from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory, ServerSettings, TrackedConnection
from tcplife.server._drain import Drainer
from tcplife.testing import LOCAL, PEER, EventRecorder


class Server:
    """
    A factory on a clock, and connections made on StringTransports.
    """

    def __init__(self, **settings: float) -> None:
        self.clock = MemoryReactorClock()
        self.recorded = EventRecorder()
        self.factory = LifecycleServerFactory(
            settings=ServerSettings(**settings),  # type: ignore[arg-type]
            clock=self.clock,
            events=self.recorded.log,
        )

    def tick(self, seconds: float) -> None:
        """
        Let C{seconds} pass in small steps, as a running reactor would.
        """
        steps = round(seconds / 0.1)
        self.clock.pump([0.1] * steps)

    def connect(self) -> tuple[TrackedConnection, StringTransport]:
        connection = self.factory.buildProtocol(PEER)
        assert connection is not None
        transport = StringTransport(hostAddress=LOCAL, peerAddress=PEER)
        connection.makeConnection(transport)
        return connection, transport

    def closeOf(self, connection: TrackedConnection) -> dict[str, object]:
        [event] = [e for e in self.recorded.of("close") if e["conn_id"] == connection.connId]
        return event


def finish(connection: TrackedConnection, transport: StringTransport) -> None:
    """
    What the reactor does once a closing transport is done.
    """
    reason = ConnectionAborted() if transport.disconnected else ConnectionDone()
    connection.connectionLost(Failure(reason))


class IdleTimeoutTests(SynchronousTestCase):
    """
    A connection quiet in both directions for the idle timeout is closed.
    """

    def test_quietConnectionClosedGracefullyWithHowTimeout(self) -> None:
        """
        No bytes for 10 s: a graceful close that the event calls a timeout.
        """
        server = Server(idleTimeout=10)
        connection, transport = server.connect()
        server.tick(9.9)
        self.assertFalse(transport.disconnecting)
        server.tick(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        finish(connection, transport)
        close = server.closeOf(connection)
        self.assertEqual((close["how"], close["initiator"]), ("timeout", "local"))

    def test_trafficPostponesTheTimeout(self) -> None:
        """
        Bytes in either direction restart the quiet period.
        """
        server = Server(idleTimeout=10)
        connection, transport = server.connect()
        for _ in range(5):
            server.tick(6)
            connection.dataReceived(b"still here")
        self.assertFalse(transport.disconnecting)
        server.tick(6)
        connection.write(b"and me")
        server.tick(9)
        self.assertFalse(transport.disconnecting)
        server.tick(2)
        self.assertTrue(transport.disconnecting)

    def test_undrainedCloseIsAbortedAfterCloseTimeout(self) -> None:
        """
        If the graceful close has not finished within --close-timeout, the
        connection is aborted; the event still says timeout.
        """
        server = Server(idleTimeout=2, closeTimeout=5)
        connection, transport = server.connect()
        server.clock.advance(2.5)
        self.assertTrue(transport.disconnecting)
        server.clock.advance(4.9)
        self.assertFalse(transport.disconnected)
        server.clock.advance(0.2)
        self.assertTrue(transport.disconnected)  # abortConnection
        finish(connection, transport)
        self.assertEqual(server.closeOf(connection)["how"], "timeout")

    def test_closedConnectionCancelsItsAbort(self) -> None:
        """
        A graceful close that finishes in time leaves no timer behind.
        """
        server = Server(idleTimeout=2, closeTimeout=5)
        connection, transport = server.connect()
        server.clock.advance(2.5)
        finish(connection, transport)
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_noTimeoutByDefault(self) -> None:
        """
        Without --idle-timeout a quiet connection stays open.
        """
        server = Server()
        _, transport = server.connect()
        server.clock.advance(10**6)
        self.assertFalse(transport.disconnecting)


class DrainTests(SynchronousTestCase):
    """
    On shutdown, open connections get time to finish, then are closed.
    """

    def server(self) -> Server:
        """
        A server whose drain waits 10 s, then gives closes 3 s more.
        """
        return Server(shutdownTimeout=10, closeTimeout=3)

    def drainer(self, server: Server) -> Drainer:
        return Drainer(server.factory, server.clock)

    def test_nothingOpenDrainsAtOnce(self) -> None:
        """
        With no connection open the drain is over at once, with zero counts.
        """
        server = self.server()
        done = self.drainer(server).drain()
        self.assertIsNone(self.successResultOf(done))
        [drained] = server.recorded.of("drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (0, 0, 0),
        )

    def test_peersThatFinishBeforeTheDeadline(self) -> None:
        """
        Connections whose peers finish in time count as ended by the peer.
        """
        server = self.server()
        a, ta = server.connect()
        b, _ = server.connect()
        done = self.drainer(server).drain()
        self.assertEqual(server.recorded.of("drain")[0]["open"], 2)
        server.clock.advance(4)
        a.readConnectionLost()
        finish(a, ta)
        self.assertNoResult(done)
        b.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(done)
        [drained] = server.recorded.of("drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (2, 0, 0),
        )
        self.assertEqual(drained["duration_s"], 4)
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_deadlineClosesThenGraceAborts(self) -> None:
        """
        At the deadline the rest are closed gracefully; those still open after
        the grace are aborted; the final event counts each kind.
        """
        server = self.server()
        early, _ = server.connect()
        polite, tPolite = server.connect()
        stuck, tStuck = server.connect()
        done = self.drainer(server).drain()
        early.connectionLost(Failure(ConnectionDone()))
        server.clock.advance(10)
        self.assertTrue(tPolite.disconnecting and tStuck.disconnecting)
        [deadline] = server.recorded.of("drain-deadline")
        self.assertEqual((deadline["open"], deadline["grace_s"]), (2, 3))
        finish(polite, tPolite)
        server.clock.advance(3)
        self.assertTrue(tStuck.disconnected)
        [abort] = server.recorded.of("drain-abort")
        self.assertEqual(abort["open"], 1)
        finish(stuck, tStuck)
        self.successResultOf(done)
        [drained] = server.recorded.of("drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (1, 1, 1),
        )
        self.assertEqual(server.closeOf(stuck)["how"], "abort")
        self.assertEqual(server.closeOf(polite)["initiator"], "local")

    def test_endNowBeforeTheDrainAbortsAsSoonAsItBegins(self) -> None:
        """
        A second signal while listening is still being stopped makes the drain
        abort everything the moment it starts.
        """
        server = self.server()
        connection, transport = server.connect()
        drainer = self.drainer(server)
        drainer.endNow("second SIGTERM")
        self.assertFalse(transport.disconnected)
        done = drainer.drain()
        self.assertTrue(transport.disconnected)
        finish(connection, transport)
        self.successResultOf(done)
        [abort] = server.recorded.of("drain-abort")
        self.assertEqual(abort["reason"], "second SIGTERM")
        self.assertEqual(server.recorded.of("drained")[0]["aborted"], 1)

    def test_clientsStillWaitingWhenTheDrainEndsAreClosedAndCounted(self) -> None:
        """
        A client taken off a closing port's queue that is still waiting when
        no connection is left (its slot held by one awaiting a PROXY header,
        which the drain does not wait for) is closed and counted unserved,
        not left for the process exit to reset uncounted.
        """
        server = self.server()
        waiting, client = socket.socketpair()
        self.addCleanup(client.close)
        server.factory.gate.waiting.append((None, waiting, None))  # type: ignore[arg-type]
        done = self.drainer(server).drain()
        self.successResultOf(done)
        self.assertEqual(server.recorded.of("drained")[0]["unserved"], 1)
        self.assertEqual(server.factory.gate.waiting, deque())
        self.assertEqual(client.recv(1), b"")
