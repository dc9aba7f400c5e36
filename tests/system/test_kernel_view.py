"""
The kernel's view in C{close} events, on paths whose behaviour the kernel
decides: plain loopback, and a congested link in a network namespace of the
test's own (C{tbf}: 50 Mbit/s with a short queue, so a fast sender's
segments are dropped and retransmitted).
"""

from __future__ import annotations

import shutil
import signal
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..helpers import TwistProcess, parseJSONRecords, pattern, portOf
from ..servers import runClient, temporaryDirectory

#: 50 Mbit/s with a 60 KB queue on the namespace's loopback, MTU 1500 as on
#: a real link (loopback's 64 KiB would hide the segmenting).
CONGESTED = (
    "ip link set lo up mtu 1500 && "
    "tc qdisc add dev lo root tbf rate 50mbit burst 32kb limit 60kb && "
    'exec "$@"'
)

SIZE = 8 << 20


def closeOf(events: list[dict[str, Any]], role: str) -> dict[str, Any]:
    [close] = [e for e in events if e.get("lifecycle") == "close" and e.get("role") == role]
    return close


class KernelViewTests(SynchronousTestCase):
    """
    An 8 MiB echo's close events, server's and client's, carry what TCP
    measured on the path.
    """

    def echo(
        self, *, within: tuple[str, ...] = (), launcher: list[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        Serve, echo 8 MiB with the one-shot client, stop the server: the
        server's close event and the client's.
        """
        directory = temporaryDirectory(self)
        payload = directory / "payload"
        payload.write_bytes(pattern(SIZE))
        server = TwistProcess(
            "tcpecho", "--port", "0", "--interface", "127.0.0.1", launcher=launcher or []
        )
        self.addCleanup(server.kill)
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        nsenter = ("nsenter", "-t", str(server.process.pid), "-n", "--") if launcher else ()
        echoed = directory / "echoed"
        with echoed.open("wb") as out:
            done, _ = runClient(
                "--port", str(port), "--file", str(payload), "--timeout", "30",
                within=nsenter, stdout=out, timeout=120,
            )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        self.assertTrue(echoed.read_bytes() == payload.read_bytes(), "the echo differs")
        serverClose = server.waitFor(lifecycle="close")
        self.assertEqual(server.signal(), -signal.SIGTERM)
        return serverClose, closeOf(list(parseJSONRecords(done.stderr)), "client")

    def test_loopbackIsFastAndLossless(self) -> None:
        """
        On plain loopback the round trip is under a millisecond and nothing
        is retransmitted, on either side.  (The smallest round trip: the
        smoothed one also holds the time a busy machine took to answer, and
        the queue in the socket buffers of an 8 MiB transfer.)
        """
        server, client = self.echo()
        for close in (server, client):
            self.assertLess(close["tcp"]["min_rtt_us"], 1000, close)
            self.assertEqual(close["tcp"]["retransmits"], 0, close)
            self.assertGreaterEqual(close["tcp"]["bytes_received"], SIZE)

    def test_aCongestedPathShowsMillisecondsAndRetransmissions(self) -> None:
        """
        Through a 50 Mbit/s bottleneck with a short queue, each side's
        close shows a round trip of milliseconds (the queue's delay) and
        segments retransmitted (the ones the queue dropped).
        """
        if shutil.which("unshare") is None or shutil.which("tc") is None:
            raise SkipTest("needs unshare and tc (iproute2)")
        launcher = ["unshare", "-n", "--", "sh", "-c", CONGESTED, "sh"]
        server, client = self.echo(launcher=launcher)
        for close in (server, client):
            tcp = close["tcp"]
            self.assertGreater(tcp["rtt_us"], 1000, close)
            self.assertGreater(tcp["retransmits"], 0, close)
            self.assertGreater(tcp["bytes_retrans"], 0, close)
            self.assertEqual(tcp["mss"], 1448)
