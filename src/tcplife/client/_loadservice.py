"""
A load run, as a service: start it once the reactor runs, stream its
intervals, report at the end (also after Ctrl-C), and end the process with a
status that says how it went.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorCore

from ._failures import EXIT_STATUS, HINTS, NO_LOCAL_PORT, ConnectFailedError
from ._intervals import IntervalReport
from ._report import LoadReport
from ._sinks import TextSink
from ._thresholds import Thresholds


class Run(Protocol):
    """
    What L{LoadService} runs: a L{tcplife.client.LoadRun}, or the parent of
    several workers.
    """

    settings: Any
    finished: Deferred[LoadReport]
    closed: Deferred[None]
    fatal: ConnectFailedError | None
    stalled: bool
    intervalObservers: list[Callable[[IntervalReport], object]]

    def start(self) -> None: ...

    def stop(self, interrupted: bool = False) -> None: ...


class JSONLines:
    """
    One JSON object per line, flushed at once; the first write error is
    kept and ends the writing.
    """

    def __init__(self, sink: TextSink, close: Callable[[], object] | None = None) -> None:
        self._sink: TextSink | None = sink
        self._close = close
        self.failed: OSError | None = None

    def write(self, document: dict[str, Any]) -> None:
        if self._sink is None:
            return
        try:
            self._sink.write(json.dumps(document) + "\n")
            self._sink.flush()
        except OSError as e:
            self.failed = e
            self.close()

    def close(self) -> None:
        self._sink = None
        if self._close is not None:
            close, self._close = self._close, None
            try:
                close()
            except OSError as e:
                self.failed = self.failed or e


class LoadService(Service):
    """
    Runs one load run and prints its report.

    @ivar json: Where the JSON report goes: a path, C{"-"} for standard
        output (the text report then goes to standard error), or C{None}.
    @ivar stream: Where the JSON object of every interval goes, and of the
        report at the end (C{--json-stream}): as C{json}.
    @ivar thresholds: What the run must achieve to exit 0.
    @ivar status: The exit status, once decided.
    """

    def __init__(
        self,
        run: Run,
        reactor: IReactorCore,
        *,
        output: TextSink,
        errors: TextSink,
        json: str | None,
        done: Callable[[int], None],
        stream: str | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.run = run
        self.json = json
        self.stream = stream
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.status: int | None = None
        self._reactor = reactor
        self._output = output
        self._errors = errors
        self._done = done
        self._lines: JSONLines | None = None
        self._reported: Deferred[None] = Deferred()

    def startService(self) -> None:
        Service.startService(self)
        if self.stream is not None:
            self._lines = self._openStream(self.stream)
            self.run.intervalObservers.append(self._interval)
        self.run.finished.addCallback(self._report)
        self._reactor.callWhenRunning(self.run.start)

    def _openStream(self, path: str) -> JSONLines:
        if path == "-":
            return JSONLines(self._output)
        try:
            f = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by JSONLines)
        except OSError as e:
            # Under twist, before the reactor runs: the line, and status 1.
            raise SystemExit(
                f"tcpclient: cannot write --json-stream {path!r}: {e.strerror}"
            ) from None
        return JSONLines(f, f.close)

    def _interval(self, interval: IntervalReport) -> None:
        assert self._lines is not None
        self._lines.write(interval.toJSON())

    def stopService(self) -> Deferred[None]:
        """
        Stopped from outside (Ctrl-C, SIGTERM): end the run early and report
        what was done; twist then exits as it does after that signal.

        @return: Fires once the report is out (workers report later) and
            every connection is gone, so that their C{close} events are out
            (C{--events}) before the process ends.
        """
        Service.stopService(self)
        self.run.stop(interrupted=True)
        both = gatherResults([self._reported, self.run.closed])
        return both.addCallback(lambda _: None)

    def _report(self, report: LoadReport) -> None:
        status = self._write(report)
        run = self.run
        if run.fatal is not None:
            self._say(str(run.fatal))
            status = EXIT_STATUS[run.fatal.kind]
        else:
            status = self._judge(report, status)
        self.status = status
        self._reported.callback(None)
        if not report.interrupted:
            self._done(status)

    def _judge(self, report: LoadReport, status: int) -> int:
        """
        The status of a run that connected: hints for what it met, and the
        thresholds it breached, named on the last line.
        """
        if self.run.stalled:
            self._say(
                f"stopped: no message completed for {self.run.settings.timeout:g} s "
                f"({report.errorCount:,} errors)"
            )
        noPort = dict(report.errors).get(NO_LOCAL_PORT, 0)
        if noPort:
            self._say(f"{noPort:,} connects found no local port: {HINTS[NO_LOCAL_PORT]}")
        workerProblems: list[str] = getattr(self.run, "problems", [])
        for problem in workerProblems:
            self._say(problem)
        breaches = self.thresholds.breaches(report)
        if breaches:
            self._say("failed: " + "; ".join(breaches))
        if status == 0 and (workerProblems or self.thresholds.fails(report)):
            status = 1
        return status

    def _write(self, report: LoadReport) -> int:
        """
        The text report, and the JSON ones; 0, or EX_IOERR when a JSON one
        could not be written.
        """
        toStandardOutput = "-" in (self.json, self.stream)
        text = self._errors if toStandardOutput else self._output
        text.write(report.render())
        text.flush()
        status = 0
        if self._lines is not None:
            self._lines.write({"event": "end", **report.toJSON()})
            self._lines.close()
            if self._lines.failed is not None:
                self._say(
                    f"cannot write --json-stream {self.stream!r}: {self._lines.failed.strerror}"
                )
                status = os.EX_IOERR
        if self.json is not None and not self._writeJSON(report):
            status = os.EX_IOERR
        return status

    def _writeJSON(self, report: LoadReport) -> bool:
        document = json.dumps(report.toJSON(), indent=2) + "\n"
        if self.json == "-":
            self._output.write(document)
            self._output.flush()
            return True
        assert self.json is not None
        try:
            with open(self.json, "w", encoding="utf-8") as f:
                f.write(document)
        except OSError as e:
            self._say(f"cannot write the JSON report to {self.json!r}: {e.strerror}")
            return False
        return True

    def _say(self, line: str) -> None:
        self._errors.write(f"tcpclient: {line}\n")
        self._errors.flush()
