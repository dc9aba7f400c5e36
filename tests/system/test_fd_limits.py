"""
File descriptor limits: raised at start, and survived at the limit.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT, TwistProcess, portOf, readLine, startTcpecho
from ..servers import waitForCount
from .test_metrics import scrape


def limitDescriptors(soft: int, hard: int) -> Callable[[], None]:
    def setLimit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return setLimit


class DescriptorLimitTests(SynchronousTestCase):
    """
    The server uses what the system allows and survives running out.
    """

    def start(self, soft: int, hard: int, *args: str) -> tuple[TwistProcess, int]:
        return startTcpecho(
            self, "--backlog", "256", *args, preexec_fn=limitDescriptors(soft, hard)
        )

    def test_softLimitRaisedToHardAndLogged(self) -> None:
        """
        At start the soft limit goes up to the hard limit, and both are logged.
        """
        server, _ = self.start(256, 512)
        event = server.waitFor(nofile_hard=512)
        self.assertEqual((event["nofile_soft"], event["nofile_soft_before"]), (512, 256))

    def test_atTheLimitServesOpenWaitsIdleAndResumes(self) -> None:
        """
        With 64 descriptors and 80 clients: accepting pauses at the limit
        (fd-limit), the open connections keep echoing, the process does not
        spin, and once some close the waiting clients are served.
        """
        server, port = self.start(64, 64, "--metrics", "tcp:0:interface=127.0.0.1")
        metricsPort = portOf(
            server.waitFor(description="metrics tcp:0:interface=127.0.0.1")["address"]
        )
        clients = []
        for n in range(80):
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            client.sendall(b"client %d\n" % n)
            clients.append(client)
        self.addCleanup(lambda: [c.close() for c in clients])
        paused = server.waitFor(lifecycle="accept-paused")
        self.assertTrue(paused["reason"].startswith("fd-limit"), paused["reason"])
        served = len(server.of(lifecycle="accept"))
        self.assertGreater(served, 10)
        self.assertLess(served, 64)

        # The served ones still echo.
        for n in range(served):
            self.assertEqual(readLine(clients[n]), b"client %d\n" % n)
            clients[n].sendall(b"again\n")
            self.assertEqual(readLine(clients[n]), b"again\n")

        # No busy loop while paused: a loop that spins would use the whole
        # CPU; the paused server waits in epoll and uses next to none.
        before = server.cpuSeconds()
        time.sleep(1.0)
        self.assertLess(server.cpuSeconds() - before, 0.1)

        for client in clients[:20]:
            client.close()
        for n in range(served, min(served + 20, 80)):
            self.assertEqual(readLine(clients[n]), b"client %d\n" % n)
        self.assertGreaterEqual(len(server.of(lifecycle="accept-resumed")), 1)

        # Nor a loop of failing accept() calls: it tried once when it ran
        # out, then once per retry (after 1 s, 2 s, ...).  Read once every
        # client is gone, so that the scrape has a descriptor.
        for client in clients:
            client.close()
        waitForCount(server, 80, lifecycle="close")
        exhaustions = scrape(metricsPort)[("tcplife_accept_fd_exhaustions_total", ())]
        self.assertGreaterEqual(exhaustions, 1)
        self.assertLessEqual(exhaustions, 5)
