"""
The kernel's view in C{close} events, on paths whose behaviour the kernel
decides: plain loopback, and a congested link in a network namespace of the
test's own (C{tbf}: 50 Mbit/s with a short queue, so a fast sender's
segments are dropped and retransmitted).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
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

#: Plain loopback, in a namespace of the test's own so that the namespace's
#: counters are this echo's alone.
LOOPBACK = 'ip link set lo up && exec "$@"'

SIZE = 8 << 20


def retransmittedSegments(pid: int) -> int:
    """
    The segments the kernel retransmitted in the network namespace of
    process C{pid}, as C{/proc/net/snmp}'s C{Tcp: RetransSegs} counts them.
    """
    snmp = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "--", "cat", "/proc/net/snmp"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    names, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Tcp:")]
    return int(values[names.index("RetransSegs")])


def requireNamespaces() -> None:
    """
    Skip a test that needs a network namespace of its own where the tools
    for one are missing.
    """
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "tc")):
        raise SkipTest("needs unshare, nsenter and tc (util-linux, iproute2)")


def closeOf(events: list[dict[str, Any]], role: str) -> dict[str, Any]:
    [close] = [e for e in events if e.get("lifecycle") == "close" and e.get("role") == role]
    return close


class KernelViewTests(SynchronousTestCase):
    """
    An 8 MiB echo's close events, server's and client's, carry what TCP
    measured on the path.
    """

    def echo(self, launcher: list[str]) -> tuple[dict[str, Any], dict[str, Any], int]:
        """
        Serve in a network namespace of the test's own (C{launcher}), echo
        8 MiB with the one-shot client, stop the server: the server's close
        event, the client's, and the segments the namespace retransmitted.
        """
        directory = temporaryDirectory(self)
        payload = directory / "payload"
        payload.write_bytes(pattern(SIZE))
        server = TwistProcess(
            "tcpecho", "--port", "0", "--interface", "127.0.0.1", launcher=launcher
        )
        self.addCleanup(server.kill)
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        nsenter = ("nsenter", "-t", str(server.process.pid), "-n", "--")
        echoed = directory / "echoed"
        with echoed.open("wb") as out:
            done, _ = runClient(
                "--port", str(port), "--file", str(payload), "--timeout", "30",
                within=nsenter, stdout=out, timeout=120,
            )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        self.assertTrue(echoed.read_bytes() == payload.read_bytes(), "the echo differs")
        serverClose = server.waitFor(lifecycle="close")
        retransmitted = retransmittedSegments(server.process.pid)
        self.assertEqual(server.signal(), -signal.SIGTERM)
        return serverClose, closeOf(list(parseJSONRecords(done.stderr)), "client"), retransmitted

    def test_loopbackIsFastAndLossless(self) -> None:
        """
        On plain loopback the round trip is under a millisecond and nothing
        is retransmitted, on either side.  (The smallest round
        trip: the smoothed one also holds the time a busy machine took to
        answer, and the queue in the socket buffers of an 8 MiB transfer.
        A machine busy enough to hold the kernel's acknowledgement past the
        tail-loss probe's few milliseconds makes loopback retransmit now and
        then, so the lossless echo is one of up to three, and no close may
        report more than the namespace's own count.)
        """
        requireNamespaces()
        launcher = ["unshare", "-n", "--", "sh", "-c", LOOPBACK, "sh"]
        counts: list[int] = []
        for _ in range(3):
            server, client, retransmitted = self.echo(launcher)
            for close in (server, client):
                self.assertLess(close["tcp"]["min_rtt_us"], 1000, close)
                self.assertGreaterEqual(close["tcp"]["bytes_received"], SIZE)
            reported = server["tcp"]["retransmits"] + client["tcp"]["retransmits"]
            self.assertLessEqual(reported, retransmitted, (server, client))
            counts.append(reported)
            if reported == 0:
                return
        self.fail(f"loopback retransmitted in each of three echoes: {counts} segments")

    def test_aCongestedPathShowsMillisecondsAndRetransmissions(self) -> None:
        """
        Through a 50 Mbit/s bottleneck with a short queue, each side's
        close shows a round trip of milliseconds (the queue's delay) and
        segments retransmitted (the ones the queue dropped), no more than
        the namespace's own count.
        """
        requireNamespaces()
        launcher = ["unshare", "-n", "--", "sh", "-c", CONGESTED, "sh"]
        server, client, retransmitted = self.echo(launcher)
        # Not equal: what is retransmitted after the close (a FIN) counts
        # in the namespace and not in the view read just before it.
        self.assertLessEqual(
            server["tcp"]["retransmits"] + client["tcp"]["retransmits"], retransmitted
        )
        for close in (server, client):
            tcp = close["tcp"]
            self.assertGreater(tcp["rtt_us"], 1000, close)
            self.assertGreater(tcp["retransmits"], 0, close)
            self.assertGreater(tcp["bytes_retrans"], 0, close)
            self.assertEqual(tcp["mss"], 1448)
