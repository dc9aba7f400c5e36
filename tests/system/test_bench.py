"""
The benchmark's own parts: its load client checks every echoed byte, and
its report shows ratios.  (Speed itself is measured by C{make bench} only.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tcplife import EchoProtocol, LifecycleServerFactory
from tcplife.bench._clients import CLIENTS, ClientResults, ClientRun, _parsed, summarizeClient
from tcplife.bench._levers import LEVERS, launchedWithout
from tcplife.bench._load import LoadResult
from tcplife.bench._native import CompileError, compiled
from tcplife.bench._proc import cpuSeconds, treeCpuSeconds
from tcplife.bench._report import (
    asJSON,
    clientMarkdown,
    clientTable,
    limitedBy,
    markdown,
    table,
)
from tcplife.bench._run import BenchResults, Summary, summarize
from tcplife.bench.sharing import _straceCounts
from tcplife.internet import PortReactor, pollerFor
from tcplife.testing import EventRecorder

from ..helpers import (
    BIN,
    WAIT,
    callInThread,
    echoWithHalfClose,
    pattern,
    startTcpecho,
)
from ..leverprobe import LeverProbe
from ..servers import temporaryDirectory


class Corrupting(Protocol):
    """
    Echoes with one byte changed in every chunk.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(bytes([data[0] ^ 0xFF]) + data[1:])


def runLoad(port: int, scenario: str, *options: str) -> tuple[int, dict[str, Any]]:
    """
    Run the load client as make bench does, against this process.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcplife.bench._load",
            scenario,
            str(port),
            str(os.getpid()),
            *options,
        ],
        capture_output=True,
        timeout=WAIT * 3,
    )
    return done.returncode, json.loads(done.stdout)


class LoadClientTests(TestCase):
    """
    Each scenario of the load client runs against a tcplife server and
    notices an echo that differs.
    """

    def listen(self, protocol: type[Protocol] | None = None) -> int:
        factory = LifecycleServerFactory(clock=reactor, events=EventRecorder().log)
        if protocol is not None:
            factory.protocol = protocol
        port = PortReactor(reactor).listenTCP(0, factory, 128, "127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number

    @inlineCallbacks
    def assertScenarioRuns(self, scenario: str, *options: str) -> Deferred[dict[str, Any]]:
        status, result = yield callInThread(runLoad, self.listen(), scenario, *options)
        self.assertEqual((status, result["errors"]), (0, []))
        return result

    @inlineCallbacks
    def test_requestResponseCountsVerifiedMessages(self) -> Deferred[None]:
        """
        rr completes messages, all verified, and reads the server's CPU time.
        """
        result = yield self.assertScenarioRuns(
            "rr", "--duration", "0.3", "--connections", "4", "--size", "1024"
        )
        self.assertGreater(result["messages"], 0)
        self.assertEqual(result["bytes"], result["messages"] * 1024)
        self.assertGreater(result["cpuSeconds"], 0)
        self.assertGreaterEqual(result["p99"], result["p50"])

    @inlineCallbacks
    def test_streamKeepsItsWindow(self) -> Deferred[None]:
        """
        stream completes 64 KiB messages through one connection.
        """
        result = yield self.assertScenarioRuns(
            "stream", "--duration", "0.3", "--size", "65536", "--in-flight", "262144"
        )
        self.assertGreater(result["messages"], 0)
        self.assertEqual(result["connections"], 1)

    @inlineCallbacks
    def test_connectOpensAConnectionPerMessage(self) -> Deferred[None]:
        """
        connect opens at least as many connections as it completed messages.
        """
        result = yield self.assertScenarioRuns(
            "connect", "--duration", "0.3", "--connections", "4", "--size", "64"
        )
        self.assertGreater(result["messages"], 0)
        self.assertGreaterEqual(result["connections"], result["messages"])

    @inlineCallbacks
    def test_idleMeasuresMemoryPerConnection(self) -> Deferred[None]:
        """
        idle holds its connections, each echoed once, and reports RSS per
        connection.
        """
        result = yield self.assertScenarioRuns("idle", "--connections", "50")
        self.assertIsInstance(result["rssPerConnection"], float)

    @inlineCallbacks
    def test_alteredEchoIsAnError(self) -> Deferred[None]:
        """
        A server that changes a byte makes the client fail with a reason.
        """
        port = self.listen(Corrupting)
        status, result = yield callInThread(
            runLoad, port, "rr", "--duration", "0.3", "--connections", "2"
        )
        self.assertEqual(status, 1)
        self.assertIn("echo differs", result["errors"][0])


class NativeClientTests(TestCase):
    """
    The client section's reference C client, compiled at bench time, counts
    verified messages in its window and fails a server that alters a byte.
    """

    def setUp(self) -> None:
        self.workdir = temporaryDirectory(self)
        try:
            self.program = compiled("epoll_client", self.workdir)
        except CompileError as e:
            raise SkipTest(str(e)) from None

    def listen(self, protocol: type[Protocol]) -> int:
        factory = LifecycleServerFactory(clock=reactor, events=EventRecorder().log)
        factory.protocol = protocol
        port = PortReactor(reactor).listenTCP(0, factory, 128, "127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number

    def runC(self, port: int, mode: str) -> Deferred[dict[str, Any]]:
        def run() -> dict[str, Any]:
            done = subprocess.run(
                [str(self.program), mode, str(port), "4", "1024", "0.3", "0.1"],
                capture_output=True,
                timeout=WAIT,
            )
            self.assertEqual(done.returncode, 0, done.stderr)
            result: dict[str, Any] = json.loads(done.stdout)
            return result

        return callInThread(run)

    @inlineCallbacks
    def test_requestResponseAndChurnCountVerifiedMessages(self) -> Generator[Any, Any, None]:
        """
        rr and connect complete messages against an exact echo, with no
        error, and report their window and their own CPU time.
        """
        port = self.listen(EchoProtocol)
        for mode in ("rr", "connect"):
            result = yield self.runC(port, mode)
            self.assertGreater(result["messages"], 0, mode)
            self.assertEqual(result["errors"], 0, mode)
            self.assertGreater(result["cpu_s"], 0, mode)
            self.assertGreater(result["seconds"], 0.25, mode)

    @inlineCallbacks
    def test_alteredEchoIsAnError(self) -> Generator[Any, Any, None]:
        """
        A server that changes a byte of every chunk: nothing counts as
        done, every exchange is an error.
        """
        result = yield self.runC(self.listen(Corrupting), "rr")
        self.assertEqual(result["messages"], 0)
        self.assertGreater(result["errors"], 0)


class ClientSectionTests(SynchronousTestCase):
    """
    The client section reads each client's own window, and shows ratios to
    the C client and to uvloop.
    """

    def test_tcpclientIsMeasuredFromItsIntervalsAfterTheWarmUp(self) -> None:
        """
        twist tcpclient's JSON stream: only intervals that start after the
        warm-up count, with their messages, length and CPU time.
        """
        stream = "\n".join(
            json.dumps(d)
            for d in [
                {"event": "interval", "start_s": 0.0, "end_s": 0.2, "messages": 999, "cpu_s": 9},
                {"event": "interval", "start_s": 0.4, "end_s": 0.5, "messages": 10, "cpu_s": 0.1},
                {"event": "interval", "start_s": 0.5, "end_s": 0.7, "messages": 30, "cpu_s": 0.2},
                {"event": "end", "errors": {"refused": 0, "reset": 2}},
            ]
        )
        run = _parsed(CLIENTS[2], "rr", stream)
        self.assertEqual((run.messages, run.cpuSeconds), (40, 0.1 + 0.2))
        self.assertAlmostEqual(run.seconds, 0.3)
        self.assertEqual(run.errors, ["errors: {'reset': 2}"])

    def test_tableShowsRatiosToTheReferences(self) -> None:
        """
        A client that does half the C client's messages per CPU second shows
        0.50x of it per core, in the table and the Markdown.
        """
        c = summarizeClient([ClientRun("C epoll", "rr", 1000, 1.0, 0.5)])
        uv = summarizeClient([ClientRun("uvloop", "rr", 800, 1.0, 0.5)])
        mine = summarizeClient([ClientRun("tcplife", "rr", 500, 1.0, 0.5)])
        for summary in (c, uv, mine):
            for name, reference in (("C epoll", c), ("uvloop", uv)):
                summary.rateRatios[name] = summary.messagesPerSecond / reference.messagesPerSecond
                summary.perCoreRatios[name] = summary.perCore / reference.perCore
        results = ClientResults(summaries={"rr": {"C epoll": c, "uvloop": uv, "tcplife": mine}})
        row = next(line for line in clientTable(results).splitlines() if "tcplife" in line)
        self.assertIn("0.50x", row)
        self.assertIn("0.62x", row)
        self.assertIn("| rr | tcplife | 500 | 1000.00 | 1,000 | 0.50x | 0.50x | 0.62x | 0.62x |",
                      clientMarkdown(results))  # fmt: skip


class ReportTests(SynchronousTestCase):
    """
    Medians, ratios to each peer, and the three output forms.
    """

    def results(self) -> BenchResults:
        def run(messages: int, cpu: float) -> LoadResult:
            return LoadResult("rr", messages, messages * 1024, 2.0, cpu, 100.0, 200.0, 100)

        results = BenchResults(settings={})
        summaries = {
            "uvloop": summarize([run(100_000, 0.7), run(100_000, 0.8), run(100_000, 0.9)]),
            "tcplife": summarize([run(100_000, 0.8), run(100_000, 0.9), run(100_000, 5.0)]),
        }
        for summary in summaries.values():
            summary.ratios["uvloop"] = summary.cpuPerMessage / summaries["uvloop"].cpuPerMessage
        results.summaries["rr"] = summaries
        results.idle = {"uvloop": 1300.0, "tcplife": 1400.0}
        return results

    def test_medianIgnoresOneOutlier(self) -> None:
        """
        One slow run among three does not move the median.
        """
        summary = self.results().summaries["rr"]["tcplife"]
        self.assertAlmostEqual(summary.cpuPerMessage, 9.0)
        self.assertAlmostEqual(summary.ratios["uvloop"], 9.0 / 8.0)

    def test_everyFormShowsTheRatio(self) -> None:
        """
        The text table, the Markdown table and the JSON all carry the ratio
        to uvloop.
        """
        results = self.results()
        self.assertIn("1.12x", table(results))
        self.assertIn("1.12x", markdown(results))
        self.assertAlmostEqual(
            asJSON(results)["summaries"]["rr"]["tcplife"]["ratios"]["uvloop"], 1.125
        )
        self.assertIn("1.37 KiB/conn", markdown(results))

    def test_workersRowsCompareWithOneProcessAndSayWhatLimitsThem(self) -> None:
        """
        The workers table gives each number of workers' rate relative to
        the one process, and names what held it down: the client when it
        was busy all the time, the server's processes when they were, the
        cores when everything together was, a core when one was.
        """

        def run(messages: int, cpu: float, client: float, busy: float) -> LoadResult:
            return LoadResult(
                "rr",
                messages,
                messages,
                1.0,
                cpu,
                100.0,
                200.0,
                100,
                clientCpuSeconds=client,
                busySeconds=busy,
            )

        results = BenchResults(settings={"cores": 2})
        results.summaries["rr"] = {
            "tcplife": summarize([run(30_000, 0.4, 0.95, 1.4)]),
            "tcplife 2 workers": summarize([run(45_000, 1.0, 0.5, 2.0)]),
        }
        text = table(results)
        self.assertIn("1.50x", text)
        self.assertIn("the load client", text.splitlines()[-2])
        self.assertIn("the machine's 2 cores (other work took 0.5", text.splitlines()[-1])
        self.assertIn("| rr | tcplife 2 workers | 45,000 | 1.50x |", markdown(results))
        server = Summary(1, 1.0, 1.0, 1.0, 1.0, 1.0, serverCores=1.9, clientCores=0.1)
        self.assertEqual(limitedBy(server, 2, 4), "the server (its cores all busy)")
        pinned = Summary(1, 1.0, 1.0, 1.0, 1.0, 1.0, serverCores=0.4, busiestCore=0.95)
        self.assertEqual(limitedBy(pinned, None, 2), "a core all busy (its process and other work)")

    def test_serverTreeCpuCountsItsChildren(self) -> None:
        """
        The CPU time of a server and its workers counts a child's CPU time,
        which the server's own does not.
        """
        burn = (
            "import sys, time\n"
            "t = time.process_time()\n"
            "while time.process_time() - t < 0.3: pass\n"
            "print('burnt', flush=True)\n"
            "sys.stdin.read()\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert child.stdin is not None and child.stdout is not None
        self.addCleanup(child.wait, WAIT)
        self.addCleanup(child.stdin.close)
        self.assertEqual(child.stdout.readline(), b"burnt\n")
        self.assertGreaterEqual(treeCpuSeconds(os.getpid()) - cpuSeconds(os.getpid()), 0.3)


#: What tests/leverprobe.py sees a tcpecho service do as it ships (where
#: its connections register, POLLER, depends on the reactor).
AS_SHIPPED = {
    "echoed": True,
    "waits for writable to echo": False,
    "waits for writable to close": False,
    "shuts down before close": False,
    "TCP_NODELAY": True,
    "registers with": "POLLER",
    "accepts with socket.accept": False,
    "recv size": 256 * 1024,
    "close event format": "rendered",
    "kernel's view in the close event": True,
}

#: What changes, and only that, once each lever is switched off (REACTOR:
#: the reactor's own class).
SWITCHED_OFF = {
    "write-at-once": {"waits for writable to echo": True},
    "256k-reads": {"recv size": 64 * 1024},
    "nodelay": {"TCP_NODELAY": False},
    "batched-poller": {"registers with": "REACTOR"},
    "close-at-once": {"waits for writable to close": True, "shuts down before close": True},
    "accept-without-enums": {"accepts with socket.accept": True},
    "rendered-events": {"close event format": "template"},
    "kernel-view": {"kernel's view in the close event": False},
}


def onThisReactor(observed: dict[str, Any]) -> dict[str, Any]:
    """
    An expected observation, for this reactor: the stock one has a batched
    poller, tcplife-direct (make trial) none, so there its connections
    register with the reactor whether the lever is on or off.
    """
    names = {"POLLER": type(pollerFor(reactor)).__name__, "REACTOR": type(reactor).__name__}
    return {**observed, "registers with": names[observed["registers with"]]}


class LeverTests(TestCase):
    """
    python -m tcplife.bench.levers measures what it says: each lever, once
    switched off, makes a real tcpecho service behave as plain Twisted does
    in that one respect, and the server it runs in still echoes every byte.
    """

    @inlineCallbacks
    def test_eachLeverSwitchesOffWhatItNamesAndNothingElse(self) -> Deferred[None]:
        """
        In this process, a tcpecho service echoes once as it ships, then one
        with each lever off in turn, then one as it ships again: only what
        the lever names differs, and nothing of it stays behind.
        """
        self.assertEqual(set(SWITCHED_OFF), set(LEVERS))
        probe = LeverProbe(self.patch)
        shipped = yield probe.observe()
        self.assertEqual(shipped, onThisReactor(AS_SHIPPED))
        observed = {}
        for lever in LEVERS:
            observed[lever] = yield probe.observe(lever)
        self.assertEqual(
            observed,
            {lever: onThisReactor({**AS_SHIPPED, **off}) for lever, off in SWITCHED_OFF.items()},
        )
        again = yield probe.observe()
        self.assertEqual(again, onThisReactor(AS_SHIPPED))

    @inlineCallbacks
    def test_everyLeverServerEchoes(self) -> Deferred[None]:
        """
        twist tcpecho run as the lever benchmark runs it, each lever off,
        warns which lever is off, echoes a payload larger than one read byte
        for byte, and logs the connection.
        """
        servers = {
            lever: startTcpecho(self, launcher=launchedWithout(lever, ())) for lever in LEVERS
        }
        payload = pattern(300_000)
        for lever, (server, port) in servers.items():
            warning = server.waitFor(variable="TCPLIFE_LEVERS_OFF")
            self.assertEqual(warning["levers_off"], [lever])
            echoed = yield callInThread(echoWithHalfClose, port, payload)
            self.assertTrue(echoed == payload, f"{lever}: echo differs")
            close = server.waitFor(lifecycle="close")
            self.assertEqual((close["bytes_in"], close["bytes_out"]), (300_000, 300_000))

    def test_unknownLeverIsAUsageError(self) -> None:
        """
        twist tcpecho with a lever that does not exist in TCPLIFE_LEVERS_OFF
        ends with twist's usage status, 64, and the list of those that do.
        """
        done = subprocess.run(
            [str(BIN / "twist"), "tcpecho", "--port", "0"],
            capture_output=True,
            timeout=WAIT,
            env=dict(os.environ, TCPLIFE_LEVERS_OFF="turbo"),
        )
        self.assertEqual(done.returncode, 64)
        self.assertIn(b"Error: TCPLIFE_LEVERS_OFF names 'turbo'", done.stdout + done.stderr)
        self.assertIn(b"write-at-once", done.stdout + done.stderr)


class EncoderBenchTests(TestCase):
    """
    python -m tcplife.bench.encoders measures every candidate on both
    records and prints each one's ratio to the fastest.
    """

    def test_everyCandidateIsMeasuredOnBothRecords(self) -> None:
        """
        orjson, msgspec (where the bench extra installed it) and the
        standard library (both ways) are timed on a close and an accept
        record, each a positive time; the output names them with their
        ratios, the fastest at 1.00x.
        """
        from importlib.util import find_spec

        from tcplife.bench import encoders

        results = encoders.measure(repeats=1, number=50)
        expected = {"orjson", "json, one encoder kept", "json, an encoder per event"}
        if find_spec("msgspec") is not None:
            expected.add("msgspec")
        self.assertEqual({event: set(times) for event, times in results.items()},
                         {"close": expected, "accept": expected})  # fmt: skip
        self.assertTrue(all(t > 0 for times in results.values() for t in times.values()))
        printed = subprocess.run(
            [sys.executable, "-m", "tcplife.bench.encoders", "--repeats", "1"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        self.assertEqual(printed.count("1.00x"), 2)
        self.assertEqual(len(printed.splitlines()), 2 * len(expected))


class MetricsCostTests(SynchronousTestCase):
    """
    python -m tcplife.bench.metricscost measures both ways of one /metrics
    for many workers.
    """

    def test_bothWaysAreMeasuredAndOnlyMultiprocessModeCostsPerConnection(self) -> None:
        """
        It prints a row for prometheus-client's multiprocess mode, with a
        cost per connection, and one for tcplife's merge, with none; both
        with a cost per scrape.
        """
        command = ["-m", "tcplife.bench.metricscost", "--connections", "2000", "--scrapes", "5"]
        done = subprocess.run(
            [sys.executable, *command],
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            check=True,
        )
        rows = {line[:34].strip(): line[34:].split() for line in done.stdout.splitlines()[1:]}
        multiprocess = [float(f) for f in rows["prometheus-client multiprocess"]]
        merged = [float(f) for f in rows["tcplife (supervisor merges)"]]
        self.assertGreater(multiprocess[0], 0)
        self.assertEqual(merged[0], 0)
        self.assertGreater(min(multiprocess[1], merged[1]), 0)


class SharingTests(SynchronousTestCase):
    """
    python -m tcplife.bench.sharing reads the wake-ups out of strace -c.
    """

    def test_acceptAndEpollCallsAndTheirErrorsAreRead(self) -> None:
        """
        From strace -c's summary, accept4's calls and errors (EAGAIN) and
        epoll_wait's calls (a row without errors) are read; other rows are
        not.
        """
        summary = (
            "% time     seconds  usecs/call     calls    errors syscall\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            " 61.20    0.012000           4      2412      1201 accept4\n"
            " 38.80    0.007600           1      6310           epoll_wait\n"
            "  0.00    0.000000           0        12           close\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            "100.00    0.019600           2      8734      1201 total\n"
        )
        self.assertEqual(_straceCounts(summary), {"accept4": (2412, 1201), "epoll_wait": (6310, 0)})


class InstructionCountTests(TestCase):
    """
    python -m tcplife.bench.instructions drives whole connections through a
    server and reads callgrind's total.
    """

    @inlineCallbacks
    def test_everyConnectionIsEchoedToItsEnd(self) -> Deferred[None]:
        """
        Connections made several at a time are each accepted, echoed and
        closed, and the server sees every one of them close.
        """
        from tcplife.bench.instructions import connectMany

        recorder = EventRecorder()
        factory = LifecycleServerFactory(clock=reactor, events=recorder.log)
        port = PortReactor(reactor).listenTCP(0, factory, 128, "127.0.0.1")
        self.addCleanup(port.stopListening)
        yield callInThread(connectMany, port.getHost().port, 12, 5)  # type: ignore[attr-defined]
        self.assertEqual(factory.accepted, 12)
        self.assertEqual(factory.bytesInClosed, 12 * 64)
        self.assertEqual(sum(factory.closed.values()), 12)

    def test_aConnectionThatEndsBeforeItsEchoIsAnError(self) -> None:
        """
        A server that closes without echoing everything makes the run fail
        rather than count a connection that did not happen.
        """
        import socket
        import threading

        from tcplife.bench.instructions import connectOnce

        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        def closeAtOnce() -> None:
            accepted, _ = listener.accept()
            accepted.recv(1)
            accepted.close()

        thread = threading.Thread(target=closeAtOnce)
        thread.start()
        self.addCleanup(thread.join)
        with self.assertRaises((RuntimeError, ConnectionResetError)):
            connectOnce(listener.getsockname()[1])

    def test_theTotalIsReadFromTheOutputsHeader(self) -> None:
        """
        The count is callgrind's totals line (summary in older versions),
        and an output without one is an error, not a zero.
        """
        from tcplife.bench.instructions import totalInstructions

        output = b"version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1234\ntotals: 1234\n"
        self.assertEqual(totalInstructions(output), 1234)
        self.assertEqual(totalInstructions(b"events: Ir\nsummary: 99\n"), 99)
        with self.assertRaises(ValueError):
            totalInstructions(b"events: Ir\n")
