"""
Admission in a running twist tcpecho: connections waiting for their PROXY header hold slots.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import (
    WAIT,
    TwistProcess,
    portOf,
    readLine,
)
from ..protocols.test_proxy import v1Header
from ..system.test_metrics import scrape


class ProxyHeaderCapTests(SynchronousTestCase):
    """
    Behind C{haproxy:}, silent connections that never send their PROXY
    header are held to C{--max-connections} as any others.
    """

    def test_silentConnectionsFillTheCapAndMetricsCountThem(self) -> None:
        """
        With --max-connections 3, three connections that send no header fill
        the cap, a fourth waits in the kernel's queue, and the metrics say 3
        open; when one sends junk instead, it is refused and warned of in
        tcplife.proxy, and the waiting client takes its slot and is echoed.
        """
        endpoint = "haproxy:tcp:0:interface=127.0.0.1"
        server = TwistProcess(
            "tcpecho",
            "--listen",
            endpoint,
            "--max-connections",
            "3",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        self.addCleanup(server.kill)
        port = portOf(server.waitFor(lifecycle="listen", endpoint=endpoint)["address"])
        metricsPort = portOf(
            server.waitFor(description="metrics tcp:0:interface=127.0.0.1")["address"]
        )

        silent = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(3)]
        self.addCleanup(lambda: [c.close() for c in silent])
        self.assertEqual(server.waitFor(lifecycle="accept-paused")["open"], 3)
        late = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(late.close)
        late.sendall(v1Header("203.0.113.9", 51234) + b"late\n")

        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_open", ())], 3)
        self.assertEqual(samples[("tcplife_connections_awaiting_header", ())], 3)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 1)
        listener = (("listener", f"127.0.0.1:{port}"),)
        self.assertEqual(samples[("tcplife_accept_queue_depth", listener)], 1)
        self.assertEqual(server.of(lifecycle="accept"), [])

        silent[0].sendall(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(readLine(late), b"late\n")
        warning = server.waitFor(log_namespace="tcplife.proxy")
        self.assertEqual(warning["reason"], "not a PROXY protocol header")
        self.assertEqual(server.waitFor(lifecycle="accept")["peer"], "203.0.113.9:51234")
        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_open", ())], 3)
        self.assertEqual(samples[("tcplife_connections_awaiting_header", ())], 2)
        self.assertEqual(
            samples[("tcplife_connections_refused_total", (("reason", "proxy-header"),))], 1
        )
