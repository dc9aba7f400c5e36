"""
C{twist tcpclient}'s load mode as a user runs it, against C{twist tcpecho}
and against servers written here: the open loop, the interval stream, the
thresholds, several targets, the local address, and several workers.
(Speed is not asserted: C{make bench} measures it.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..helpers import BIN, WAIT, freePort, parseJSONRecords, startTcpecho
from ..servers import AsyncioEchoServer, interruptible, runClient, verdict, waitForCount

#: The project's root, from where C{python -m tests.netns} runs.
ROOT = Path(__file__).parent.parent.parent

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


class ClosingEchoServer(AsyncioEchoServer):
    """
    An echo server that closes each connection after echoing C{keep} bytes
    on it, whatever the client sent since.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        super().__init__()

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echoed = 0
        while echoed < self.keep and (data := await reader.read(self.keep - echoed)):
            writer.write(data)
            echoed += len(data)
            await writer.drain()
        writer.close()


def twistLines(stderr: bytes) -> list[str]:
    """
    Standard error's plain lines: the text report and the verdicts, without
    twist's JSON log.
    """
    lines = stderr.decode("utf-8", "replace").splitlines()
    return [line for line in lines if line and not line.lstrip("\x1e").startswith("{")]


class IntervalStreamTests(SynchronousTestCase):
    """
    --interval S with --json-stream -: one JSON object per interval on
    standard output, then the report.
    """

    def assertStreamed(self, port: int) -> None:
        done, _ = runClient(
            "--port", str(port), "-c", "2", "-d", "1.2",
            "--interval", "0.3", "--json-stream", "-",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        documents = [json.loads(line) for line in done.stdout.splitlines()]
        intervals, end = documents[:-1], documents[-1]
        self.assertEqual(end["event"], "end")
        self.assertGreaterEqual(len(intervals), 3)
        self.assertEqual({d["event"] for d in intervals}, {"interval"})
        self.assertEqual([d["interval"] for d in intervals], list(range(1, len(intervals) + 1)))
        self.assertEqual(sum(d["messages"] for d in intervals), end["messages"])
        for interval in intervals:
            self.assertEqual(interval["latency_us"]["count"], interval["messages"])
            self.assertEqual(interval["errors"]["reset"], 0)
            self.assertLessEqual(interval["start_s"], interval["end_s"])
        self.assertIn("every byte verified", "\n".join(twistLines(done.stderr)))

    def test_againstTcpecho(self) -> None:
        """
        Against C{twist tcpecho}.
        """
        _, port = startTcpecho(self)
        self.assertStreamed(port)

    def test_againstAnEchoServerWrittenHere(self) -> None:
        """
        Against an asyncio echo server written here.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        self.assertStreamed(server.port)


class ThresholdTests(SynchronousTestCase):
    """
    --max-p99, --max-errors and --min-rate for CI: a breached one exits 1
    and the last line names it.
    """

    def test_breachedAgainstTcpecho(self) -> None:
        """
        A p99 no loopback round trip meets, and a rate no client reaches:
        status 1, and the last line names both.
        """
        _, port = startTcpecho(self)
        done, _ = runClient(
            "--port", str(port), "-c", "2", "-n", "200", "--max-p99", "0.001", "--min-rate", "1e12",
        )  # fmt: skip
        self.assertEqual(done.returncode, 1, verdict(done))
        last = twistLines(done.stderr)[-1]
        self.assertRegex(
            last,
            r"^tcpclient: failed: p99 latency [0-9.]+ ms is over --max-p99 0\.001; "
            r"[0-9.,]+ msg/s is under --min-rate 1e\+12$",
        )

    def test_metAgainstTcpecho(self) -> None:
        """
        Thresholds any run meets: status 0, and no verdict line.
        """
        _, port = startTcpecho(self)
        done, _ = runClient(
            "--port", str(port), "-c", "2", "-n", "200",
            "--max-p99", "60000", "--max-errors", "0", "--min-rate", "0.001",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertEqual(verdict(done), [])

    def test_errorsAgainstAClosingServerWrittenHere(self) -> None:
        """
        A server written here that closes every connection after ten
        messages: errors within --max-errors pass (status 0); beyond it,
        status 1 and the last line names it.
        """
        server = ClosingEchoServer(keep=10 * 64)
        self.addCleanup(server.stop)
        tolerant, _ = runClient("--port", str(server.port), "-c", "2", "-n", "100", "--json", "-",
                                "--max-errors", "100000")  # fmt: skip
        self.assertEqual(tolerant.returncode, 0, verdict(tolerant))
        # Closed early, or reset when the next message had arrived unread.
        self.assertGreater(sum(loadReport(tolerant)["errors"].values()), 0)
        strict, _ = runClient("--port", str(server.port), "-c", "2", "-n", "100", "--json", "-",
                              "--max-errors", "0")  # fmt: skip
        self.assertEqual(strict.returncode, 1)
        errors = sum(loadReport(strict)["errors"].values())
        self.assertEqual(
            twistLines(strict.stderr)[-1],
            f"tcpclient: failed: {errors} errors are over --max-errors 0",
        )


class SeveralTargetsTests(SynchronousTestCase):
    """
    --connect, repeated: connections spread over the targets in turn, and
    the report per target.
    """

    def test_tcpechoAndAnEchoServerWrittenHere(self) -> None:
        """
        Four rr connections over C{twist tcpecho} and an asyncio server
        written here: two each, both serve, each has its line and its JSON.
        """
        tcpecho, tcpechoPort = startTcpecho(self)
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        targets = [f"tcp:127.0.0.1:{tcpechoPort}", f"tcp:127.0.0.1:{server.port}"]
        done, _ = runClient(
            "--connect", targets[0], "--connect", targets[1], "-c", "4", "-n", "400", "--json", "-"
        )
        self.assertEqual(done.returncode, 0, verdict(done))
        report = loadReport(done)
        self.assertEqual(report["target"], ", ".join(targets))
        self.assertEqual([t["target"] for t in report["targets"]], targets)
        self.assertEqual([t["connections_opened"] for t in report["targets"]], [2, 2])
        self.assertEqual(sum(t["messages"] for t in report["targets"]), 400)
        self.assertTrue(all(t["messages"] > 0 for t in report["targets"]))
        self.assertEqual(server.connections, 2)
        waitForCount(tcpecho, 2, lifecycle="accept")
        self.assertEqual(len(tcpecho.of(lifecycle="accept")), 2)
        text = "\n".join(twistLines(done.stderr))
        self.assertIn(f"  per target   {targets[0]}  ", text)

    def test_churnGoesToEachInTurn(self) -> None:
        """
        connect churn over two targets: each new connection to the next one.
        """
        _, tcpechoPort = startTcpecho(self)
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        done, _ = runClient(
            "--connect", f"tcp:127.0.0.1:{tcpechoPort}",
            "--connect", f"tcp:127.0.0.1:{server.port}",
            "-c", "1", "-n", "20", "--pattern", "connect", "--json", "-",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertEqual([t["messages"] for t in loadReport(done)["targets"]], [10, 10])
        self.assertEqual(server.connections, 10)


class LocalAddressTests(SynchronousTestCase):
    """
    --bind ADDR: every connection comes from that local address.
    """

    def test_tcpechoSeesTheBoundAddress(self) -> None:
        """
        C{twist tcpecho} accepts every connection from 127.0.0.2.
        """
        server, port = startTcpecho(self)
        done, _ = runClient("--port", str(port), "-c", "3", "-n", "30", "--bind", "127.0.0.2")
        self.assertEqual(done.returncode, 0, verdict(done))
        waitForCount(server, 3, lifecycle="accept")
        peers = {accept["peer"].rsplit(":", 1)[0] for accept in server.of(lifecycle="accept")}
        self.assertEqual(peers, {"127.0.0.2"})

    def test_anEchoServerWrittenHereSeesTheBoundAddress(self) -> None:
        """
        An asyncio server written here sees 127.0.0.3, for connect churn
        too, and for one-shot mode.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        churn, _ = runClient("--port", str(server.port), "-c", "2", "-n", "10",
                             "--pattern", "connect", "--bind", "127.0.0.3")  # fmt: skip
        self.assertEqual(churn.returncode, 0, verdict(churn))
        once, _ = runClient("--port", str(server.port), "-m", "hi", "--bind", "127.0.0.3")
        self.assertEqual((once.returncode, once.stdout), (0, b"hi\n"))
        self.assertEqual(set(server.peers), {"127.0.0.3"})
        self.assertEqual(len(server.peers), 11)


class NoLocalPortTests(SynchronousTestCase):
    """
    Connection churn that runs out of local ports (TIME_WAIT): a kind of
    its own, with a hint, in a network namespace the test creates with only
    four local ports.
    """

    def churnWithFourPorts(self, server: str) -> dict[str, Any]:
        unshare = shutil.which("unshare")
        if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
            raise SkipTest("creating a network namespace needs unshare and CAP_SYS_ADMIN")
        done = subprocess.run(
            [unshare, "-n", sys.executable, "-m", "tests.netns", server, "4",
             "-c", "1", "-d", "1.5", "--pattern", "connect", "--json", "-"],
            capture_output=True, timeout=WAIT * 2, cwd=ROOT,
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        result: dict[str, Any] = json.loads(done.stdout)
        self.assertEqual(result["status"], 1, result["stderr"])
        report = json.loads(result["stdout"])
        # Four connections took the four ports, and left them in TIME_WAIT.
        self.assertEqual(report["messages"], 4)
        self.assertGreater(report["errors"]["no-local-port"], 0)
        self.assertNotIn("other", report["errors"])
        [hint] = [line for line in twistLines(result["stderr"].encode()) if "no local port" in line]
        self.assertIn("TIME_WAIT", hint)
        self.assertIn("--bind", hint)
        return report

    def test_againstTcpecho(self) -> None:
        """
        Against C{twist tcpecho}.
        """
        self.churnWithFourPorts("tcpecho")

    def test_againstAnEchoServerWrittenHere(self) -> None:
        """
        Against an asyncio echo server written here.
        """
        self.churnWithFourPorts("asyncio")


def workerPids(process: subprocess.Popen[bytes], count: int) -> list[int]:
    """
    The pids of a run's workers, from the events its JSON log (on standard
    error) gives as each starts.
    """
    assert process.stderr is not None
    pids: list[int] = []
    deadline = time.monotonic() + WAIT
    while len(pids) < count and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        for record in parseJSONRecords(line):
            if record.get("log_format", "").startswith("tcpclient worker {worker} started"):
                pids.append(record["pid"])
    if len(pids) < count:
        raise AssertionError(f"only {pids} of {count} workers started")
    return pids


def firstInterval(stream: IO[bytes]) -> dict[str, Any]:
    """
    The first interval object of a --json-stream on C{stream}: load flows.
    """
    document: dict[str, Any] = json.loads(stream.readline())
    return document


class WorkersTests(SynchronousTestCase):
    """
    --workers N: N processes, each with its own reactor and its share, one
    report with their histograms merged and a line per worker.
    """

    def assertShared(self, port: int) -> dict[str, Any]:
        done, _ = runClient("--port", str(port), "-c", "4", "-n", "1000", "--workers", "2",
                            "--json", "-")  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        report = loadReport(done)
        self.assertEqual((report["messages"], report["connections_opened"]), (1000, 4))
        self.assertEqual(report["latency_us"]["count"], 1000)
        workers = report["workers"]
        self.assertEqual([w["worker"] for w in workers], [1, 2])
        self.assertEqual([w["messages"] for w in workers], [500, 500])
        self.assertEqual(len({w["pid"] for w in workers}), 2)
        self.assertEqual(
            sum(w["latency_us"]["count"] for w in workers), report["latency_us"]["count"]
        )
        self.assertTrue(all(w["problem"] is None for w in workers))
        self.assertIn("  workers      worker 1 (pid ", "\n".join(twistLines(done.stderr)))
        return report

    def test_againstTcpecho(self) -> None:
        """
        Against C{twist tcpecho}: the count split exactly, four
        connections, two of each worker.
        """
        server, port = startTcpecho(self)
        self.assertShared(port)
        waitForCount(server, 4, lifecycle="accept")

    def test_againstAnEchoServerWrittenHere(self) -> None:
        """
        Against an asyncio echo server written here.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        self.assertShared(server.port)
        self.assertEqual(server.connections, 4)

    def test_durationEndsEveryWorkerAndIntervalsAddUp(self) -> None:
        """
        --duration ends both workers; every --json-stream interval adds up
        both, and the intervals add up to the report.
        """
        _, port = startTcpecho(self)
        done, _ = runClient("--port", str(port), "-c", "2", "-d", "1", "--workers", "2",
                            "--interval", "0.25", "--json-stream", "-")  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        documents = [json.loads(line) for line in done.stdout.splitlines()]
        intervals, end = documents[:-1], documents[-1]
        self.assertGreaterEqual(len(intervals), 3)
        self.assertEqual(sum(d["messages"] for d in intervals), end["messages"])
        self.assertEqual([d["open"] for d in intervals[:3]], [2, 2, 2])
        self.assertEqual([w["duration_s"] >= 1.0 for w in end["workers"]], [True, True])

    def test_workersLogWhereTwistLogs(self) -> None:
        """
        With twist's --log-file naming a file, the workers log there too
        (each one's start), and nothing of theirs reaches standard error.
        """
        _, port = startTcpecho(self)
        log = Path(self.mktemp())
        done = subprocess.run(
            [str(BIN / "twist"), f"--log-file={log}", "--log-format=json", "tcpclient",
             "--port", str(port), "-c", "2", "--count", "100", "--workers", "2"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT,
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertNotIn(b"Starting reactor", done.stderr)
        starts = [r for r in parseJSONRecords(log.read_bytes()) if "Starting reactor" in str(r)]
        # The parent's and each worker's.
        self.assertEqual(len(starts), 3)

    def test_ctrlCEndsEveryWorkerAndStillReports(self) -> None:
        """
        Ctrl-C (SIGINT to the terminal's process group) while the load
        flows: every worker reports, the report is marked interrupted, and
        twist exits as after SIGINT, without a traceback.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        client = subprocess.Popen(
            [str(BIN / "twist"), "--log-file=+", "tcpclient", "--port", str(server.port),
             "-c", "4", "-d", "60", "--workers", "2", "--json-stream", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=interruptible,
        )  # fmt: skip
        self.addCleanup(lambda: client.poll() is None and os.killpg(client.pid, signal.SIGKILL))
        assert client.stdout is not None
        firstInterval(client.stdout)
        os.killpg(client.pid, signal.SIGINT)
        stdout, stderr = client.communicate(timeout=WAIT)
        self.assertIn(client.returncode, (-signal.SIGINT, 128 + signal.SIGINT))
        end = json.loads(stdout.splitlines()[-1])
        self.assertTrue(end["interrupted"])
        self.assertEqual([w["problem"] for w in end["workers"]], [None, None])
        self.assertTrue(all(w["messages"] > 0 for w in end["workers"]))
        self.assertNotIn(b"Traceback", stderr)

    def test_aWorkerThatDiesIsNamedAndTheRunFails(self) -> None:
        """
        A worker killed mid-run: the other finishes, the report names the
        dead one and how it died, and the run exits 1.
        """
        _, port = startTcpecho(self)
        client = subprocess.Popen(
            [str(BIN / "twist"), "--log-file=+", "--log-format=json", "tcpclient",
             "--port", str(port), "-c", "2", "-d", "2", "--workers", "2",
             "--json-stream", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(lambda: client.poll() is None and client.kill())
        pids = workerPids(client, 2)
        assert client.stdout is not None
        firstInterval(client.stdout)
        os.kill(pids[1], signal.SIGKILL)
        stdout, stderr = client.communicate(timeout=WAIT)
        self.assertEqual(client.returncode, 1)
        end = json.loads(stdout.splitlines()[-1])
        self.assertIsNone(end["workers"][0]["problem"])
        self.assertEqual(end["workers"][1]["problem"], "died before its report: killed by signal 9")
        self.assertIn(f"tcpclient: worker 2 (pid {pids[1]}) died before its report: killed by "
                      "signal 9 after ", stderr.decode())  # fmt: skip

    def test_nothingListeningIsOneLineAsWithOneProcess(self) -> None:
        """
        Nothing listening: the one line and status of a single process.
        """
        port = freePort()
        done, _ = runClient("--port", str(port), "-c", "2", "-d", "5", "--workers", "2")
        self.assertEqual(done.returncode, 69, verdict(done))
        self.assertIn(
            f"tcpclient: cannot connect to 127.0.0.1:{port}: connection refused "
            "(is a server listening there?)",
            verdict(done),
        )

    def test_autoIsOnePerCPU(self) -> None:
        """
        --workers auto: one worker per CPU this process may use.
        """
        _, port = startTcpecho(self)
        done, _ = runClient("--port", str(port), "-c", "64", "-n", "640", "--workers", "auto",
                            "--json", "-")  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertEqual(len(loadReport(done)["workers"]), len(os.sched_getaffinity(0)))
