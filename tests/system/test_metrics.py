"""
Prometheus metrics, scraped over HTTP from C{twist tcpecho --metrics}.
"""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT, echoWithHalfClose, portOf, startTcpecho


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("tcplife_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class MetricsTests(SynchronousTestCase):
    """
    Every series is named tcplife_... and tells the truth.
    """

    def test_countsConnectionsBytesQueueAndPause(self) -> None:
        """
        After two echoes, with one client served (cap 1) and two waiting in
        a backlog-1 queue, and a fourth dropped by the kernel, the metrics
        say so.
        """
        server, port = startTcpecho(
            self,
            "--backlog",
            "1",
            "--max-connections",
            "1",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        metricsAt = server.waitFor(description="metrics tcp:0:interface=127.0.0.1")
        metricsPort = portOf(metricsAt["address"])
        listener = f"127.0.0.1:{port}"

        for payload in (b"12345", b"678"):
            self.assertEqual(echoWithHalfClose(port, payload), payload)
        server.waitFor(lifecycle="close", bytes_in=3)
        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_accepted_total", ())], 2)
        self.assertEqual(samples[("tcplife_connections_closed_total", (("how", "fin"),))], 2)
        self.assertEqual(samples[("tcplife_connections_closed_total", (("how", "reset"),))], 0)
        self.assertEqual(samples[("tcplife_received_bytes_total", ())], 8)
        self.assertEqual(samples[("tcplife_sent_bytes_total", ())], 8)
        self.assertEqual(samples[("tcplife_connections_open", ())], 0)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 0)
        self.assertEqual(samples[("tcplife_accept_queue_backlog", (("listener", listener),))], 1)

        served = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(served.close)
        server.waitFor(lifecycle="accept-paused")
        waiting = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
        self.addCleanup(lambda: [c.close() for c in waiting])
        dropped = socket.socket()
        dropped.settimeout(1.0)
        with self.assertRaises(TimeoutError):
            dropped.connect(("127.0.0.1", port))
        dropped.close()

        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_open", ())], 1)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 1)
        self.assertEqual(samples[("tcplife_accept_queue_depth", (("listener", listener),))], 2)
        refusedByKernel = samples[
            ("tcplife_connections_refused_total", (("reason", "backlog-full"),))
        ]
        self.assertGreaterEqual(refusedByKernel, 1)
        self.assertEqual(
            samples[("tcplife_connections_refused_total", (("reason", "factory"),))], 0
        )
