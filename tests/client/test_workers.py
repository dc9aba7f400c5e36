"""
A load run over several worker processes: the shares, what a worker tells
its parent, and how the parent adds the workers up; on fake processes and
a clock.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LoadSettings
from tcplife.client import WORKER_VARIABLE, WorkerPool, WorkerService, _wire, workerShare
from tcplife.client._kernelview import KernelTally
from tcplife.testing import EventRecorder

from .loadrun import Run, assertMicroseconds
from .test_tally import Closed


class ShareTests(SynchronousTestCase):
    """
    Each worker gets its share of the connections, the count and the rate.
    """

    def test_connectionsCountAndRateAreSplit(self) -> None:
        """
        5 connections, 11 messages and 100 msg/s over 2 workers: 3 and 2
        connections, 6 and 5 messages, 50 msg/s each; the second worker's
        connections follow the first's in the turn of the targets.
        """
        settings = LoadSettings(target="t", connections=5, count=11, rate=100.0)
        first, firstSlot = workerShare(settings, 0, 2)
        second, secondSlot = workerShare(settings, 1, 2)
        self.assertEqual((first.connections, first.count, first.rate), (3, 6, 50.0))
        self.assertEqual((second.connections, second.count, second.rate), (2, 5, 50.0))
        self.assertEqual((firstSlot, secondSlot), (0, 3))

    def test_aWorkersConnectionsContinueTheTurnOfTheTargets(self) -> None:
        """
        The second of two workers, each with one connection over two
        targets, connects to the second target.
        """
        r = Run(targets=2, connections=1, size=8, duration=10.0, firstSlot=1)
        r.run.start()
        self.assertEqual([len(e.connections) for e in r.endpoints.values()], [0, 1])


class FakeProcess:
    """
    The transport of a spawned worker: what the parent wrote to it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written: list[bytes] = []

    def writeToChild(self, fd: int, data: bytes) -> None:
        assert fd == 0
        self.written.append(data)


class Pool:
    """
    A L{WorkerPool} of fake processes, with helpers that speak for them.
    """

    def __init__(self, count: int = 2, **settings: Any) -> None:
        self.spawned: list[tuple[Any, list[str], dict[str, str]]] = []
        self.progress = StringIO()
        self.pool = WorkerPool(
            LoadSettings(target="t", **settings),
            count,
            lambda index: ["python", "worker", str(index)],
            self.spawn,
            events=EventRecorder().log,
            progress=self.progress,
        )
        self.intervals: list[Any] = []
        self.pool.intervalObservers.append(self.intervals.append)
        self.reports: list[Any] = []
        self.pool.finished.addCallback(self.reports.append)
        self.pool.start()

    def spawn(self, protocol: Any, executable: str, argv: list[str], **kwargs: Any) -> None:
        self.spawned.append((protocol, argv, kwargs["env"]))
        protocol.makeConnection(FakeProcess(1000 + len(self.spawned)))

    def worker(self, index: int) -> Any:
        return self.spawned[index][0]

    def say(self, index: int, line: bytes) -> None:
        # In two pieces: lines may arrive split anywhere.
        self.worker(index).childDataReceived(3, line[:5])
        self.worker(index).childDataReceived(3, line[5:])

    def written(self, index: int) -> list[bytes]:
        written: list[bytes] = self.worker(index).transport.written
        return written

    def end(self, index: int, reason: Exception | None = None) -> None:
        self.worker(index).processEnded(Failure(reason or ProcessDone(0)))


def workerRun(delays: list[float], **settings: Any) -> Run:
    """
    A worker's run of one connection whose echoes each come after the
    delay given, to its end.
    """
    r = Run(connections=1, size=8, count=len(delays), interval=10.0, **settings)
    r.run.start()
    for delay in delays:
        r.clock.advance(delay)
        r.echoAll()
    return r


class PoolTests(SynchronousTestCase):
    """
    The parent starts its workers together, adds up their intervals and
    reports, and names the ones that died.
    """

    def test_workersAreToldWhoTheyAreAndGoTogether(self) -> None:
        """
        Each worker is started with its index and the count in its
        environment, and none is told to go until all are ready.
        """
        p = Pool(count=2, connections=2)
        self.assertEqual([env[WORKER_VARIABLE] for _, _, env in p.spawned], ["0/2", "1/2"])
        p.say(0, _wire.readyLine())
        self.assertEqual(p.written(0), [])
        p.say(1, _wire.readyLine())
        self.assertEqual((p.written(0), p.written(1)), ([b"go\n"], [b"go\n"]))

    def test_intervalsAreAddedUpOnceEveryWorkerHasSentThem(self) -> None:
        """
        Interval 1 is reported once both workers have sent theirs, with
        their messages summed and their latencies in one histogram.
        """
        p = Pool(count=2, connections=2)
        fast, slow = workerRun([0.001, 0.001]), workerRun([0.5])
        fast.run._intervalEnded()
        slow.run._intervalEnded()
        p.say(0, _wire.intervalLine(fast.intervals[0]))
        self.assertEqual(p.intervals, [])
        p.say(1, _wire.intervalLine(slow.intervals[0]))
        [merged] = p.intervals
        self.assertEqual((merged.index, merged.messages, merged.latency.count), (1, 3, 3))
        assertMicroseconds(self, merged.latency.max, 0.5)
        # The progress line covers both: 3 messages over the longer span,
        # and the slow worker's p99.
        [line] = [part for part in p.progress.getvalue().split("\r") if part]
        self.assertIn(f"{merged.messagesPerSecond:12,.0f} msg/s", line)
        self.assertIn(f"p99 {merged.latency.p99 / 1000:9.3f} ms", line)
        self.assertIn("      2 open", line)

    def test_theReportAddsUpEveryWorkersHistograms(self) -> None:
        """
        The report sums the workers' messages and connections, merges their
        HDR histograms exactly, and breaks the figures down per worker.
        """
        p = Pool(count=2, connections=2)
        one, two = workerRun([0.001] * 3), workerRun([0.25])
        for index, r in enumerate((one, two)):
            p.say(index, _wire.reportLine(r.report(), None))
            p.end(index)
        [report] = p.reports
        self.assertEqual((report.messages, report.connectionsOpened), (4, 2))
        self.assertEqual(report.latency.count, 4)
        assertMicroseconds(self, report.latency.max, 0.25)
        self.assertEqual(report.latency.p50, one.report().latency.p50)
        self.assertEqual([w.messages for w in report.workers], [3, 1])
        self.assertEqual([w.pid for w in report.workers], [1001, 1002])
        document = report.toJSON()
        self.assertEqual([w["messages"] for w in document["workers"]], [3, 1])
        self.assertEqual(document["targets"][0]["messages"], 4)

    def test_theKernelsViewIsAddedUpOverTheWorkers(self) -> None:
        """
        Each worker's kernel round-trip times and retransmissions reach the
        parent, which reports them added up; a worker without any (UNIX
        sockets) adds nothing.
        """
        p = Pool(count=3, connections=3)
        rtts = ([20, 30, 40], [5000], [])
        for index, values in enumerate(rtts):
            kernel = KernelTally()
            for value in values:
                kernel.closed(Closed({"rtt_us": value, "retransmits": 2}))  # type: ignore[arg-type]
            p.say(index, _wire.reportLine(workerRun([0.001]).report(), None, kernel))
            p.end(index)
        [report] = p.reports
        assert report.kernel is not None
        self.assertEqual((report.kernel.rtt.count, report.kernel.rtt.p50), (4, 30))
        assertMicroseconds(self, report.kernel.rtt.max, 0.005)
        self.assertEqual(report.kernel.retransmits, 8)

    def test_aWorkerThatDiesIsNamed(self) -> None:
        """
        A worker that ends without its report is named, with how it ended
        and how far it got, in the pool's problems and the report.
        """
        p = Pool(count=2, connections=2)
        r = workerRun([0.001, 0.001])
        r.run._intervalEnded()
        p.say(1, _wire.intervalLine(r.intervals[0]))
        p.say(0, _wire.reportLine(workerRun([0.001]).report(), None))
        p.end(0)
        p.end(1, ProcessTerminated(signal=9))
        self.assertEqual(
            p.pool.problems,
            ["worker 2 (pid 1002) died before its report: killed by signal 9 after 2 messages"],
        )
        [report] = p.reports
        self.assertEqual(report.messages, 1)
        self.assertEqual(
            report.workers[1].describe(),
            "worker 2 (pid 1002) died before its report: killed by signal 9",
        )

    def test_aTargetNoWorkerReachesStopsThemAll(self) -> None:
        """
        A worker whose target refused from the start: the pool's run is
        fatal with that failure, and the other workers are told to stop.
        """
        p = Pool(count=2, connections=2)
        refused = Run(connections=1, size=8, duration=10.0)
        refused.endpoint.refusing = True
        refused.run.start()
        fatal = refused.run.fatal
        assert fatal is not None
        problem = {"fatal": {"target": fatal.target, "kind": fatal.kind, "reason": fatal.reason,
                             "hint": fatal.hint}}  # fmt: skip
        p.say(0, _wire.reportLine(refused.report(), problem))
        assert p.pool.fatal is not None
        self.assertEqual((p.pool.fatal.kind, str(p.pool.fatal)), ("refused", str(fatal)))
        self.assertEqual(p.written(1), [b"stop\n"])

    def test_stopTellsEveryWorkerOnce(self) -> None:
        """
        Stopping the pool tells each worker to stop, once; the report says
        it was interrupted.
        """
        p = Pool(count=2, connections=2)
        p.pool.stop(interrupted=True)
        p.pool.stop(interrupted=True)
        self.assertEqual((p.written(0), p.written(1)), ([b"stop\n"], [b"stop\n"]))
        for index in range(2):
            p.say(index, _wire.reportLine(workerRun([0.001]).report(), None))
            p.end(index)
        self.assertTrue(p.reports[0].interrupted)


class ControlTransport(StringTransport):
    """
    The worker's pipes to its parent, in memory: what it wrote, and its end.
    """

    def loseConnection(self) -> None:
        super().loseConnection()
        self.protocol.connectionLost(Failure(ProcessDone(0)))


class WorkerServiceTests(SynchronousTestCase):
    """
    A worker says it is ready, runs on C{go}, writes each interval and then
    its report, and exits once that is out.
    """

    def serve(self, **settings: Any) -> tuple[Run, ControlTransport, list[int], Any]:
        r = Run(interval=0.5, **settings)
        statuses: list[int] = []
        transport = ControlTransport()
        protocols = []

        def control(protocol: Any) -> None:
            protocols.append(protocol)
            transport.protocol = protocol
            protocol.makeConnection(transport)

        reactor = MemoryReactorClock()
        service = WorkerService(r.run, reactor, done=statuses.append, control=control)
        service.startService()
        reactor.run()
        return r, transport, statuses, protocols[0]

    def lines(self, transport: StringTransport) -> list[dict[str, Any]]:
        return [json.loads(line) for line in transport.value().splitlines()]

    def test_readyThenGoThenIntervalsThenTheReport(self) -> None:
        """
        Ready at once; nothing runs before C{go}; then an interval line per
        interval and the report, after which the pipes close and the worker
        exits 0.
        """
        r, transport, statuses, protocol = self.serve(connections=1, size=8, count=4)
        self.assertEqual([d["kind"] for d in self.lines(transport)], ["ready"])
        self.assertEqual(r.open(), [])
        protocol.dataReceived(b"go\n")
        for _ in range(4):
            r.clock.advance(0.25)
            r.echoAll()
        kinds = [d["kind"] for d in self.lines(transport)]
        # Intervals to 0.5 s and 1 s, and the rest (the last echo, at 1 s).
        self.assertEqual(kinds, ["ready", "interval", "interval", "interval", "report"])
        [report] = [d for d in self.lines(transport) if d["kind"] == "report"]
        self.assertEqual(_wire.targetsFrom(report)[0].messages, 4)
        self.assertEqual(statuses, [0])

    def test_stopEndsTheRunAndReportsIt(self) -> None:
        """
        C{stop} ends the run early; the report says interrupted.
        """
        r, transport, statuses, protocol = self.serve(connections=1, size=8, duration=60.0)
        protocol.dataReceived(b"go\n")
        r.echoAll()
        protocol.dataReceived(b"stop\n")
        [report] = [d for d in self.lines(transport) if d["kind"] == "report"]
        self.assertTrue(report["interrupted"])
        self.assertEqual(statuses, [0])

    def test_aParentThatIsGoneStopsTheWorker(self) -> None:
        """
        The end of its standard input (its parent is gone): the worker stops
        its run and exits, with nobody to write to.
        """
        r, _, statuses, protocol = self.serve(connections=1, size=8, duration=60.0)
        protocol.dataReceived(b"go\n")
        protocol.connectionLost(Failure(ProcessDone(0)))
        self.assertTrue(r.run.stopping)
        self.assertEqual(statuses, [0])


class WireTests(SynchronousTestCase):
    """
    What a worker writes, read back, is what it had.
    """

    def test_reportRoundTripKeepsEveryCount(self) -> None:
        """
        A report's targets, through the wire: the same messages, errors,
        and histogram counts, in an open loop with both histograms.
        """
        r = workerRun([0.001, 0.002, 0.3], rate=1000.0)
        report = r.report()
        [target] = _wire.targetsFrom(json.loads(_wire.reportLine(report, None)))
        [original] = report.targets
        self.assertEqual((target.messages, target.errors), (original.messages, original.errors))
        for read, written in zip(target.histograms, original.histograms, strict=True):
            self.assertEqual(read.get_total_count(), written.get_total_count())
            self.assertEqual(read.get_max_value(), written.get_max_value())
        self.assertIsNot(target.histograms[0], target.histograms[1])
