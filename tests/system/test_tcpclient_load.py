"""
C{twist tcpclient}'s load mode as a user runs it, against C{twist tcpecho}
and against servers written here: the open loop, the interval stream, the
thresholds, several targets, the local address, and several workers.
(Speed is not asserted: C{make bench} measures it.)
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import BIN, WAIT, startTcpecho
from ..servers import AsyncioEchoServer, runClient, verdict

#: How long the stalling servers stop answering, once, in seconds.
STALL = 1.0


class StallingEchoServer(AsyncioEchoServer):
    """
    An echo server that, once it has echoed C{before} bytes, stops for
    L{STALL} seconds (reading nothing, echoing nothing), then carries on.
    """

    def __init__(self, before: int) -> None:
        self.before = before
        self.stalled = False
        super().__init__()

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echoed = 0
        try:
            while data := await reader.read(1 << 16):
                if not self.stalled and echoed >= self.before:
                    self.stalled = True
                    await asyncio.sleep(STALL)
                writer.write(data)
                echoed += len(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def loadReport(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """
    The JSON report a run with C{--json -} wrote on standard output.
    """
    report: dict[str, Any] = json.loads(done.stdout)
    return report


#: One connection at 200 msg/s for five seconds: a thousand messages, two
#: hundred of them due during the stall.
STALLED_RUN = ("-c", "1", "--rate", "200", "--duration", "5", "--json", "-")


class OpenLoopTests(SynchronousTestCase):
    """
    With --rate, a server that stalls for a second shows in the latency
    (from each message's intended time), not in the service time (from its
    actual send), and the messages that went out late are counted.
    """

    def assertStallShown(self, report: dict[str, Any]) -> None:
        self.assertEqual(report["loop"], "open")
        self.assertEqual(report["errors"], {"refused": 0, "reset": 0, "timeout": 0, "mismatch": 0})
        # About 200 messages fell due during the stall and left after it.
        self.assertGreater(report["late"], 100)
        # The latest of them waited the whole second: the top 1% (ten
        # messages) waited hundreds of milliseconds.
        self.assertGreater(report["latency_us"]["p99"], 500_000)
        # Only the one message in flight when the stall began took long
        # from its send; the 1% slowest sends are far from the stall.
        self.assertLess(report["service_time_us"]["p99"], report["latency_us"]["p99"] / 5)
        self.assertGreater(report["service_time_us"]["max"], 500_000)

    def test_stallingServerWrittenHere(self) -> None:
        """
        Against an echo server written here that stalls once for a second,
        after its first 200 messages.
        """
        server = StallingEchoServer(before=200 * 64)
        self.addCleanup(server.stop)
        done, _ = runClient("--port", str(server.port), *STALLED_RUN, timeout=WAIT)
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertTrue(server.stalled)
        self.assertStallShown(loadReport(done))

    def test_tcpechoStoppedForASecond(self) -> None:
        """
        Against C{twist tcpecho}, stopped (SIGSTOP) for a second while the
        run goes on, then continued.
        """
        server, port = startTcpecho(self)
        client = subprocess.Popen(
            [str(BIN / "twist"), "--log-file=+", "tcpclient", "--port", str(port), *STALLED_RUN],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: client.poll() is None and client.kill())
        server.waitFor(lifecycle="accept")
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(STALL)  # the stall itself, not a wait for anything
        finally:
            server.process.send_signal(signal.SIGCONT)
        stdout, stderr = client.communicate(timeout=WAIT)
        self.assertEqual(client.returncode, 0, stderr.decode(errors="replace"))
        self.assertStallShown(json.loads(stdout))

    def test_closedLoopSaysSo(self) -> None:
        """
        Without --rate the loop is closed, and the report says so: latency
        from each send, the same as the service time, nothing late.
        """
        _, port = startTcpecho(self)
        done, _ = runClient("--port", str(port), "-c", "2", "-n", "300", "--json", "-")
        self.assertEqual(done.returncode, 0, verdict(done))
        report = loadReport(done)
        self.assertEqual((report["loop"], report["late"]), ("closed", None))
        self.assertEqual(report["service_time_us"], report["latency_us"])
        self.assertIn(b"(closed loop: from each send)", done.stderr)
