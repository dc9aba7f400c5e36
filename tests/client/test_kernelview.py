"""
The load report's kernel section: TCP's own round-trip times and
retransmissions, from real loopback connections.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from tcplife import LifecycleServerFactory, LoadReport, LoadRun, LoadSettings
from tcplife.internet import ClientReactor, PortReactor
from tcplife.testing import EventRecorder


class KernelSectionTests(TestCase):
    """
    A load run against a loopback server reports the kernel's view beside
    its own latencies.
    """

    def serve(self) -> int:
        factory = LifecycleServerFactory(clock=reactor, events=EventRecorder().log)
        port = PortReactor(reactor).listenTCP(0, factory, 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    #: What the client connects through: Twisted's own tcp.Client here.
    clientReactor: Any = reactor

    @inlineCallbacks
    def runLoad(self, **settings: Any) -> Generator[Deferred[Any], Any, LoadReport]:
        port = self.serve()
        run = LoadRun(
            LoadSettings(target=f"127.0.0.1:{port}", **settings),
            TCP4ClientEndpoint(self.clientReactor, "127.0.0.1", port),
            reactor,  # type: ignore[arg-type]
        )
        run.start()
        report: LoadReport = yield run.finished
        yield run.closed
        return report

    @inlineCallbacks
    def test_connectChurnHasOneRoundTripPerConnection(self) -> Generator[Deferred[Any], Any, None]:
        """
        In connect churn every connection's close adds its RTT: at least as
        many as were opened before the report, all under a millisecond on
        loopback, and nothing retransmitted.
        """
        report = yield self.runLoad(pattern="connect", connections=2, count=20)
        assert report.kernel is not None
        self.assertGreaterEqual(report.kernel.rtt.count, 18)
        self.assertLess(report.kernel.rtt.p99, 1000)
        self.assertEqual(report.kernel.retransmits, 0)

    @inlineCallbacks
    def test_longLivedConnectionsAreSampled(self) -> Generator[Deferred[Any], Any, None]:
        """
        rr connections still open when the run ends count too: sampled on
        the timer and at the report.
        """
        report = yield self.runLoad(pattern="rr", connections=3, duration=1.1)
        assert report.kernel is not None
        # One sample at 1 s and one at the report, for each connection.
        self.assertGreaterEqual(report.kernel.rtt.count, 6)
        self.assertLess(report.kernel.rtt.p50, 1000)

    @inlineCallbacks
    def test_reportsShowTheKernelSection(self) -> Generator[Deferred[Any], Any, None]:
        """
        The text report has the tcp rtt and retransmits rows; the JSON one a
        kernel object with rtt_us percentiles and retransmits.
        """
        report = yield self.runLoad(pattern="connect", connections=1, count=3)
        rows = [line.split()[0:2] for line in report.render().splitlines()]
        self.assertIn(["tcp", "rtt"], rows)
        self.assertIn(["retransmits", "0"], rows)
        document = json.loads(json.dumps(report.toJSON()))
        self.assertEqual(
            set(document["kernel"]["rtt_us"]), {"count", "p50", "p90", "p99", "p99.9", "max"}
        )
        self.assertEqual(document["kernel"]["retransmits"], 0)

    @inlineCallbacks
    def test_retransmitsRowCountsInWords(self) -> Generator[Deferred[Any], Any, None]:
        """
        The retransmits row says C{1 segment}, and C{segments} for any
        other count.
        """
        report = yield self.runLoad(pattern="connect", connections=1, count=1)
        assert report.kernel is not None
        for count, words in ((1, "1 segment"), (1189, "1,189 segments"), (0, "0 segments")):
            kernel = attrs.evolve(report.kernel, retransmits=count)
            rows = [
                line.split() for line in attrs.evolve(report, kernel=kernel).render().splitlines()
            ]
            self.assertIn(["retransmits", *words.split()], rows)


class KernelSectionOverDirectClientTests(KernelSectionTests):
    """
    The same, with tcplife's own client transport, as C{twist tcpclient}
    connects (L{ClientReactor}).
    """

    clientReactor = ClientReactor(reactor)
