"""
C{twist tcpecho --workers}: its options, the command each worker runs, and
the fields that tell the processes' log lines apart.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, jsonFileLogObserver, textFileLogObserver
from twisted.python import threadable, usage
from twisted.trial.unittest import SynchronousTestCase

from tcplife.server import Supervisor, Worker
from tcplife.tap._workers import tagTwistLog, twistArguments, workerCommand
from tcplife.tap.echo import Options, makeService

from ..helpers import assertRejected
from ..servers import temporaryDirectory


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def twistOptions(**values: Any) -> usage.Options:
    """
    What twist's own options hold once parsed, as a plugin's C{parent}.
    """
    options = usage.Options()
    options.update(values)
    return options


class WorkersOptionTests(SynchronousTestCase):
    """
    --workers takes a count or 'auto', and refuses what cannot be shared.
    """

    def test_countOrOnePerCPU(self) -> None:
        """
        --workers 3 asks for three; 'auto' for one per CPU this process may
        run on; no --workers, for none (one process).
        """
        self.assertEqual(parse("--workers", "3").settings.workers, 3)
        self.assertEqual(parse("--workers", "auto").settings.workers, len(os.sched_getaffinity(0)))
        self.assertIsNone(parse().settings.workers)

    def test_badCountsAreOneLine(self) -> None:
        """
        A count that is no whole number from 1 to 1024 is refused in one
        line that names 'auto' too.
        """
        for text in ("0", "-2", "many", "2000", ""):
            assertRejected(
                self,
                parse,
                ["--workers", text],
                "--workers must be a whole number from 1 to 1024, or 'auto'",
                repr(text),
            )

    def test_reusePortAndStandardIOCannotBeShared(self) -> None:
        """
        --reuse-port (a queue per process) and a stdio: listener (no socket)
        are refused beside --workers, each in one line saying why.
        """
        assertRejected(
            self, parse, ["--workers", "2", "--reuse-port"], "--workers or --reuse-port, not both"
        )
        assertRejected(
            self,
            parse,
            ["--workers", "2", "--listen", "stdio:"],
            "--listen 'stdio:' has no listening socket to share with --workers",
        )

    def test_workerOfNamesWhichWorkerOfHowMany(self) -> None:
        """
        --worker-of INDEX/COUNT/GENERATION is parsed; anything else is
        refused in one line.
        """
        self.assertEqual(parse("--worker-of", "2/4/1").workerOf, (2, 4, 1))
        for text in ("0/2/0", "3/2/0", "1/2", "1/2/-1", "a/b/c"):
            assertRejected(self, parse, ["--worker-of", text], "INDEX/COUNT/GENERATION", text)

    def test_restartLimitsAreChecked(self) -> None:
        """
        --worker-restart-limit takes a whole number, --worker-restart-window
        seconds above 0.
        """
        assertRejected(self, parse, ["--worker-restart-limit", "0"], "--worker-restart-limit")
        assertRejected(self, parse, ["--worker-restart-window", "0"], "--worker-restart-window")


class WorkerCommandTests(SynchronousTestCase):
    """
    Each worker runs twist again, as the supervisor was run, plus
    --worker-of.
    """

    def test_workerRunsTheSupervisorsTwistOptionsAndArguments(self) -> None:
        """
        The command is this Python running twist with the supervisor's
        reactor, log level, format and file, then tcpecho with the very
        arguments it was given, then --worker-of.
        """
        path = temporaryDirectory(self) / "twist.log"
        with path.open("a") as logFile:
            parent = twistOptions(
                reactorName="tcplife-direct",
                logLevel=LogLevel.warn,
                logFormat="json",
                logFile=logFile,
            )
            arguments = ["--port", "0", "--workers", "2", "--max-connections", "5"]
            command = workerCommand(parent, arguments, 2)(Worker(2, generation=3))
        self.assertEqual(
            command,
            [
                sys.executable,
                "-m",
                "twisted",
                "--reactor=tcplife-direct",
                "--log-level=warn",
                "--log-format=json",
                f"--log-file={path}",
                "tcpecho",
                *arguments,
                "--worker-of=2/2/3",
            ],
        )

    def test_standardStreamsAreSharedNotReopened(self) -> None:
        """
        A supervisor logging to standard output or error has its workers
        log to theirs (which are the same): '-' and '+'.
        """
        self.assertEqual(twistArguments(twistOptions(logFile=sys.__stdout__))[-1], "--log-file=-")
        self.assertEqual(twistArguments(twistOptions(logFile=sys.__stderr__))[-1], "--log-file=+")

    def test_theArgumentsAsGivenAreKept(self) -> None:
        """
        The options keep the arguments they parsed, for the workers.
        """
        arguments = ["--port", "0", "--workers", "auto"]
        self.assertEqual(parse(*arguments).arguments, arguments)

    def test_workersBuildASupervisor(self) -> None:
        """
        makeService with --workers serves with a supervisor of that many.
        """
        process = makeService(parse("--workers", "3", "--port", "0"), MemoryReactorClock())
        supervisor = process.server  # type: ignore[attr-defined]
        self.assertIsInstance(supervisor, Supervisor)
        self.assertEqual([worker.index for worker in supervisor.workers.workers], [1, 2, 3])


class TaggedLogTests(SynchronousTestCase):
    """
    Every event in twist's log says which worker logged it, and which pid.
    """

    def test_eventsGetWorkerAndPidUnlessTheyHaveThem(self) -> None:
        """
        An event without them gets this process's worker and pid; an event
        about another worker (the supervisor's on a worker's start) keeps
        its own.
        """
        observed: list[dict[str, Any]] = []
        parent = twistOptions(fileLogObserverFactory=lambda outFile: observed.append)
        self.assertTrue(tagTwistLog(parent, 0, "supervisor"))
        observer = parent["fileLogObserverFactory"](None)
        observer({"log_format": "plain"})
        observer({"log_format": "about worker 2", "worker": 2, "pid": 12345})
        self.assertEqual(
            [(event["worker"], event["pid"]) for event in observed],
            [(0, os.getpid()), (2, 12345)],
        )

    def test_textLinesNameTheProcess(self) -> None:
        """
        In twist's text format, each line's system says which process wrote
        it; the JSON format is left its own fields.
        """
        lines: list[str] = []

        class Out:
            def write(self, text: str) -> None:
                lines.append(text)

            def flush(self) -> None:
                pass

        parent = twistOptions(fileLogObserverFactory=textFileLogObserver)
        tagTwistLog(parent, 3, "worker 3")
        parent["fileLogObserverFactory"](Out())(
            {"log_format": "hello", "log_level": LogLevel.info, "log_namespace": "tcplife"}
        )
        self.assertIn("[tcplife#info worker 3] hello", lines[0])

        del lines[:]
        parent = twistOptions(fileLogObserverFactory=jsonFileLogObserver)
        tagTwistLog(parent, 3, "worker 3")
        parent["fileLogObserverFactory"](Out())(
            {"log_format": "hello", "log_level": LogLevel.info, "log_namespace": "tcplife"}
        )
        record = json.loads(lines[0].lstrip("\x1e"))
        self.assertEqual((record["worker"], record["pid"]), (3, os.getpid()))
        self.assertNotIn("log_system", record)

    def test_underWorkersTwistsJSONLogIsFlushedARecordAtATime(self) -> None:
        """
        With --workers (supervisor and workers share the log file), twist's
        JSON log writes and flushes each record as it comes, so no record is
        cut between two processes' writes; one process alone batches them.
        """

        class Out:
            def __init__(self) -> None:
                self.flushes = 0

            def write(self, text: str) -> None:
                pass

            def flush(self) -> None:
                self.flushes += 1

        # The batched log puts its flush off only in the reactor's thread.
        self.patch(threadable, "ioThread", threadable.getThreadID())
        event = {"log_format": "hello", "log_level": LogLevel.info, "log_namespace": "tcplife"}
        flushed = []
        for arguments in (["--workers", "2"], []):
            options = parse("--port", "0", *arguments)
            options.parent = twistOptions(fileLogObserverFactory=jsonFileLogObserver)
            makeService(options, MemoryReactorClock())
            out = Out()
            options.parent["fileLogObserverFactory"](out)(dict(event))
            flushed.append(out.flushes)
        self.assertEqual(flushed, [1, 0])
