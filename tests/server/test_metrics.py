"""
The metrics of closed connections: durations, round-trip times at close and
retransmissions, from real loopback connections.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory
from tcplife.internet import PortReactor
from tcplife.server import ServerCollector
from tcplife.testing import EventRecorder

from ..helpers import callInThread, echoWithHalfClose


def samples(collector: ServerCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in collector.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class CloseMetricsTests(TestCase):
    """
    Each closed connection adds to the duration and RTT histograms, and its
    retransmissions to their counter.
    """

    @inlineCallbacks
    def test_loopbackEchoesFillTheHistograms(self) -> Generator[Deferred[Any], Any, None]:
        """
        Two loopback echoes: two durations and two RTTs observed, every RTT
        in a bucket under a millisecond, nothing retransmitted.
        """
        recorded = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        collector = ServerCollector(factory, lambda: [])
        port = PortReactor(reactor).listenTCP(0, factory, 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        for payload in (b"hello", b"again"):
            # The server's close comes before the client's read of its FIN
            # is reported back in the reactor's thread.
            yield callInThread(echoWithHalfClose, port.getHost().port, payload)
        self.assertEqual(len(recorded.of("close")), 2)
        found = samples(collector)
        self.assertEqual(found[("tcplife_connection_duration_seconds_count", ())], 2)
        self.assertEqual(found[("tcplife_connection_rtt_seconds_count", ())], 2)
        self.assertEqual(found[("tcplife_connection_rtt_seconds_bucket", (("le", "0.001"),))], 2)
        self.assertEqual(found[("tcplife_retransmitted_segments_total", ())], 0)
        self.assertLess(found[("tcplife_connection_duration_seconds_sum", ())], 5)
