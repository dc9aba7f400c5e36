"""
Fifteen thousand concurrent connections, each still echoing correctly.
"""

from __future__ import annotations

import resource
import socket

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..helpers import WAIT, portOf, startTcpecho
from .test_metrics import scrape

CONNECTIONS = 15_000
# Each process needs a descriptor per connection and a few of its own.
NEEDED = CONNECTIONS + 500


def allowDescriptors() -> None:
    """
    Raise the soft descriptor limit to the hard one (raising the hard limit
    needs CAP_SYS_RESOURCE, which containers often lack).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ManyConnectionsTests(SynchronousTestCase):
    """
    The server holds tens of thousands of idle connections at once.
    """

    def setUp(self) -> None:
        previous = resource.getrlimit(resource.RLIMIT_NOFILE)
        if previous[1] != resource.RLIM_INFINITY and previous[1] < NEEDED:
            raise SkipTest(f"the hard RLIMIT_NOFILE is {previous[1]}; this test needs {NEEDED}")
        # This test's own client needs a descriptor per connection too.
        allowDescriptors()
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, previous)

    def test_fifteenThousandConnectionsAllEcho(self) -> None:
        """
        15,000 clients connect and stay connected; then each sends its own
        number and gets exactly that back, and the server counts them open.
        """
        server, port = startTcpecho(
            self,
            "--backlog",
            "4096",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            preexec_fn=allowDescriptors,
        )
        metricsPort = portOf(
            server.waitFor(description="metrics tcp:0:interface=127.0.0.1")["address"]
        )
        clients: list[socket.socket] = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
        for n, client in enumerate(clients):
            client.sendall(b"%08d" % n)
        for n, client in enumerate(clients):
            data = b""
            while len(data) < 8:
                chunk = client.recv(8 - len(data))
                if not chunk:
                    break
                data += chunk
            self.assertEqual(data, b"%08d" % n)
        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_open", ())], CONNECTIONS)
        self.assertEqual(samples[("tcplife_received_bytes_total", ())], 8 * CONNECTIONS)
