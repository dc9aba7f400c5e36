"""
Backpressure on real sockets: a peer that sends and never reads is slowed by
TCP flow control, not buffered without bound.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory
from tcplife.testing import EventRecorder

from ..helpers import WAIT, pattern, pollerOf

CHUNK = pattern(1 << 16)


def pendingOutput(transport: object) -> int:
    # abstract.FileDescriptor keeps unsent output in two buffers.
    buffered = len(transport.dataBuffer) - transport.offset  # type: ignore[attr-defined]
    return buffered + transport._tempDataLen  # type: ignore[attr-defined,no-any-return]


class BackpressureTests(TestCase):
    """
    The server stops reading from a peer whose echo it cannot deliver.
    """

    @inlineCallbacks
    def test_peerThatNeverReadsIsThrottledAndLosesNothing(self) -> Deferred[None]:
        """
        A client that only sends fills the buffers and stalls; the server has
        stopped reading from it with at most ~128 KiB of echo pending; once
        the client reads, every byte comes back.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)
        self.addCleanup(client.close)
        client.setblocking(False)
        yield recorded.when(lifecycle="accept")
        [connection] = factory.connections.values()

        sent = 0
        stalledTurns = 0
        for _ in range(2000):
            try:
                sent += client.send(CHUNK)
                stalledTurns = 0
            except BlockingIOError:
                stalledTurns += 1
                if stalledTurns == 50:
                    break
            yield deferLater(reactor, 0.002, lambda: None)
        self.assertEqual(stalledTurns, 50, "the client never stalled")

        transport = connection.transport
        self.assertNotIn(transport, pollerOf(transport).getReaders())
        self.assertLessEqual(pendingOutput(transport), 3 << 16)
        self.assertLess(connection.bytesIn, sent)

        received = 0
        for _ in range(20_000):
            if received == sent:
                break
            try:
                received += len(client.recv(1 << 20))
            except BlockingIOError:
                yield deferLater(reactor, 0.001, lambda: None)
        self.assertEqual(received, sent)
        self.assertEqual(connection.bytesIn, sent)
