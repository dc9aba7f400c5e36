"""
A load run over several processes (C{--workers}): each worker is a process
with its own reactor, running its share of the connections, the rate and
the count; the parent adds up their intervals and their reports.

A worker reads C{go} and C{stop} lines from its standard input, and writes
what it did to descriptor 3 (L{tcplife.client._wire}).  An end of its
standard input means the parent is gone: it stops.  The parent sends
C{go} once every worker is ready, so that their runs start together, and
C{stop} when it is stopped itself (SIGTERM); Ctrl-C at a terminal reaches
every process of the group at once, and each stops on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import stdio
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ..events import LifecycleLog
from . import _wire
from ._failures import ConnectFailedError
from ._intervals import IntervalReport, ProgressLine
from ._load import LoadRun, LoadSettings
from ._report import Latency, LoadReport, TargetReport, WorkerReport, countErrors
from ._sinks import TextSink
from ._tally import added

#: The environment variable that makes C{twist tcpclient} a worker:
#: C{INDEX/COUNT}, INDEX from 0.
WORKER_VARIABLE = "TCPLIFE_WORKER"

#: The descriptor a worker writes its reports to.
RESULTS_FD = 3

_GO = b"go"
_STOP = b"stop"


def _split(total: int, index: int, count: int) -> int:
    return total // count + (1 if index < total % count else 0)


def workerShare(settings: LoadSettings, index: int, count: int) -> tuple[LoadSettings, int]:
    """
    The settings of worker C{index} of C{count}: its share of the
    connections, of the count and of the rate; and where its first
    connection falls among all workers' (for the turn of the targets).
    """
    connections = _split(settings.connections, index, count)
    firstSlot = sum(_split(settings.connections, i, count) for i in range(index))
    share = attrs.evolve(
        settings,
        connections=connections,
        count=None if settings.count is None else _split(settings.count, index, count),
        rate=None if settings.rate is None else settings.rate / count,
    )
    return share, firstSlot


# -- the worker -------------------------------------------------------------


class _Control(LineOnlyReceiver):
    """
    The worker's end of the parent's pipe: C{go}, C{stop}, or its end.
    """

    delimiter = b"\n"

    def __init__(self, service: WorkerService) -> None:
        self.service = service

    def connectionMade(self) -> None:
        self.service.controlReady(self)

    def lineReceived(self, line: bytes) -> None:
        if line == _GO:
            self.service.go()
        elif line == _STOP:
            self.service.stopRun()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.service.controlLost()


class WorkerService(Service):
    """
    One worker: runs its L{LoadRun} when the parent says C{go}, and writes
    every interval and then its report for the parent.

    @param control: Makes the connection to the parent (standard input for
        its lines, descriptor 3 for ours) for the protocol given.
    @param done: Ends the process with a status, once the report is out.
    """

    def __init__(
        self,
        run: LoadRun,
        reactor: Any,
        *,
        done: Callable[[int], None],
        control: Callable[[_Control], object] | None = None,
    ) -> None:
        self.run = run
        self._reactor = reactor
        self._done = done
        self._control = control if control is not None else self._standardIO
        self._transport: Any = None
        self._started = False
        self._reportWritten = False
        self._signalled = False
        self._finished: Deferred[None] = Deferred()

    def _standardIO(self, protocol: _Control) -> object:
        # POSIX's StandardIO (mypy reads Windows' signature).
        return stdio.StandardIO(  # type: ignore[call-arg]
            protocol, stdin=0, stdout=RESULTS_FD, reactor=self._reactor
        )

    def startService(self) -> None:
        Service.startService(self)
        self.run.intervalObservers.append(self._interval)
        self.run.finished.addCallback(self._report)
        self._reactor.callWhenRunning(self._control, _Control(self))

    def stopService(self) -> Deferred[None]:
        """
        Stopped by a signal (Ctrl-C reaches the whole process group): stop
        the run, and let the reactor stop once the report is out; twist
        then exits as after that signal.
        """
        Service.stopService(self)
        self._signalled = True
        self.stopRun()
        # And once every connection is gone, so that their close events are
        # out (--events) before the process ends.
        both = gatherResults([self._finished, self.run.closed])
        return both.addCallback(lambda _: None)

    def controlReady(self, protocol: _Control) -> None:
        self._transport = protocol.transport
        self._write(_wire.readyLine())

    def go(self) -> None:
        if not self._started:
            self._started = True
            self.run.start()

    def stopRun(self) -> None:
        if not self._started:
            # Stopped before it began: an empty report, at once.
            self._started = True
            self.run.start()
        self.run.stop(interrupted=True)

    def controlLost(self) -> None:
        """
        The pipes are closed: by us once the report is out, or by the
        parent's end (it is gone: stop, with nobody to tell).
        """
        self._transport = None
        if self._reportWritten:
            self._finish()
        else:
            self.stopRun()

    def _interval(self, interval: IntervalReport) -> None:
        self._write(_wire.intervalLine(interval))

    def _report(self, report: LoadReport) -> None:
        run = self.run
        problem: dict[str, Any] | None = None
        if run.fatal is not None:
            problem = {
                "fatal": {
                    "target": run.fatal.target,
                    "kind": run.fatal.kind,
                    "reason": run.fatal.reason,
                    "hint": run.fatal.hint,
                }
            }
        elif run.stalled:
            problem = {"stalled": True}
        self._write(_wire.reportLine(report, problem, run.kernel))
        self._reportWritten = True
        transport = self._transport
        if transport is None:
            self._finish()
        else:
            # The writer flushes before it closes; controlLost follows.
            transport.loseConnection()

    def _finish(self) -> None:
        if self._finished.called:
            return
        self._finished.callback(None)
        if not self._signalled:
            self._done(0)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)


# -- the parent ---------------------------------------------------------------


class _Worker(ProcessProtocol):
    """
    The parent's side of one worker process.
    """

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.pid: int | None = None
        self.ready = False
        self.ended = False
        self.report: dict[str, Any] | None = None
        self.problem: str | None = None
        self.messages = 0
        self._buffer = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid
        self.pool.events.logger.info(
            "tcpclient worker {worker} started (pid {pid})", worker=self.index + 1, pid=self.pid
        )

    def send(self, line: bytes) -> None:
        if not self.ended and self.transport is not None:
            self.transport.writeToChild(0, line + b"\n")

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != RESULTS_FD:
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line:
                self.pool.heard(self, json.loads(line))

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        if self.report is None:
            self.problem = "died before its report: " + _howItEnded(reason)
        self.pool.workerEnded(self)


def _howItEnded(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        return f"killed by signal {value.signal}"
    if isinstance(value, (ProcessDone, ProcessTerminated)):
        return f"exit status {value.exitCode}"
    return str(value)


class WorkerPool:
    """
    A load run as C{count} worker processes: started together, stopped
    together, their intervals and reports added up into one.

    It is the run a L{tcplife.client.LoadService} runs.

    @param command: The command line of worker C{index}.
    @param spawn: Starts a process (C{IReactorProcess.spawnProcess}).
    @ivar problems: What went wrong with workers, one line each.
    """

    def __init__(
        self,
        settings: LoadSettings,
        count: int,
        command: Callable[[int], list[str]],
        spawn: Callable[..., object],
        *,
        events: LifecycleLog,
        progress: TextSink | None = None,
    ) -> None:
        self.settings = settings
        self.count = count
        self.events = events
        self.finished: Deferred[LoadReport] = Deferred()
        #: Fires once every worker has ended, and so closed its connections.
        self.closed: Deferred[None] = Deferred()
        self.fatal: ConnectFailedError | None = None
        self.stalled = False
        self.stopping = False
        self.problems: list[str] = []
        self.intervalObservers: list[Callable[[IntervalReport], object]] = []
        self._progress = ProgressLine(progress) if progress is not None else None
        if self._progress is not None:
            self.intervalObservers.append(self._progress.show)
        self._command = command
        self._spawn = spawn
        self._workers = [_Worker(self, index) for index in range(count)]
        self._intervals: dict[int, dict[int, IntervalReport]] = {}
        self._interrupted = False

    def start(self) -> None:
        for worker in self._workers:
            argv = self._command(worker.index)
            env = {**os.environ, WORKER_VARIABLE: f"{worker.index}/{self.count}"}
            self._spawn(
                worker,
                argv[0],
                argv,
                env=env,
                childFDs={0: "w", 1: 1, 2: 2, RESULTS_FD: "r"},
            )

    def stop(self, interrupted: bool = False) -> None:
        """
        Stop every worker; L{finished} fires once each has reported, or
        ended.
        """
        self._interrupted = self._interrupted or interrupted
        if self.stopping:
            return
        self.stopping = True
        for worker in self._workers:
            worker.send(_STOP)

    # -- what the workers say -----------------------------------------------

    def heard(self, worker: _Worker, document: dict[str, Any]) -> None:
        kind = document["kind"]
        if kind == _wire.READY:
            worker.ready = True
            self._goIfAllReady()
        elif kind == _wire.INTERVAL:
            interval = _wire.intervalFrom(document)
            worker.messages += interval.messages
            self._intervals.setdefault(interval.index, {})[worker.index] = interval
            self._emitIntervals()
        elif kind == _wire.REPORT:
            worker.report = document
            self._problemOf(document.get("problem"))

    def _goIfAllReady(self) -> None:
        alive = [w for w in self._workers if not w.ended]
        if self.stopping:
            for worker in alive:
                worker.send(_STOP)
        elif alive and all(w.ready for w in alive):
            for worker in alive:
                worker.send(_GO)

    def _problemOf(self, problem: dict[str, Any] | None) -> None:
        if not problem:
            return
        if "fatal" in problem and self.fatal is None:
            fatal = problem["fatal"]
            self.fatal = ConnectFailedError(
                fatal["target"], fatal["kind"], fatal["reason"], fatal["hint"]
            )
            # A target nobody can reach: the others stop too.
            self.stop()
        if problem.get("stalled"):
            self.stalled = True

    def _emitIntervals(self, final: bool = False) -> None:
        """
        Every interval each live worker has reported, added up, in order.
        """
        while self._intervals:
            index = min(self._intervals)
            parts = self._intervals[index]
            waiting = [w for w in self._workers if not w.ended and w.index not in parts]
            if waiting and not final:
                return
            del self._intervals[index]
            merged = IntervalReport.merged(list(parts.values()))
            for observer in self.intervalObservers:
                observer(merged)

    def workerEnded(self, worker: _Worker) -> None:
        if worker.problem is not None:
            self.problems.append(
                f"worker {worker.index + 1} (pid {worker.pid}) {worker.problem}"
                f" after {worker.messages:,} messages"
            )
            self._goIfAllReady()
        self._emitIntervals()
        if all(w.ended for w in self._workers) and not self.finished.called:
            self._emitIntervals(final=True)
            if self._progress is not None:
                self._progress.clear()
            self.finished.callback(self.report())
            self.closed.callback(None)

    def report(self) -> LoadReport:
        reported = [w for w in self._workers if w.report is not None]
        targets = _wire.addedTargets(
            [_wire.targetsFrom(w.report) for w in reported if w.report is not None]
        )
        duration = max((w.report["duration"] for w in reported if w.report), default=0.0)
        return LoadReport.fromTargets(
            targets,
            **self.settings.reportSetup(),
            duration=duration,
            interrupted=self._interrupted,
            workers=tuple(self._workerReport(w) for w in self._workers),
            kernel=_wire.addedKernel([w.report for w in reported if w.report is not None]),
            reflections=_wire.addedReflections([w.report for w in reported if w.report]),
        )

    def _workerReport(self, worker: _Worker) -> WorkerReport:
        if worker.report is None:
            return WorkerReport(
                index=worker.index + 1,
                pid=worker.pid,
                messages=worker.messages,
                duration=0.0,
                errors=countErrors({}),
                latency=None,
                problem=worker.problem,
            )
        targets: tuple[TargetReport, ...] = _wire.targetsFrom(worker.report)
        errors: dict[str, int] = {}
        for target in targets:
            for kind, count in target.errors:
                errors[kind] = errors.get(kind, 0) + count
        return WorkerReport(
            index=worker.index + 1,
            pid=worker.pid,
            messages=sum(t.messages for t in targets),
            duration=worker.report["duration"],
            errors=countErrors(errors),
            latency=Latency.fromHistogram(added([t.histograms[0] for t in targets]))
            if targets
            else None,
        )
