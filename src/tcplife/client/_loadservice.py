"""
A load run, as a service: start it once the reactor runs, report at the end
(also after Ctrl-C), and end the process with a status that says how it went.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore

from ._failures import EXIT_STATUS
from ._load import LoadRun
from ._report import LoadReport
from ._sinks import TextSink


class LoadService(Service):
    """
    Runs one L{LoadRun} and prints its report.

    @ivar json: Where the JSON report goes: a path, C{"-"} for standard
        output (the text report then goes to standard error), or C{None}.
    @ivar status: The exit status, once decided.
    """

    def __init__(
        self,
        run: LoadRun,
        reactor: IReactorCore,
        *,
        output: TextSink,
        errors: TextSink,
        json: str | None,
        done: Callable[[int], None],
    ) -> None:
        self.run = run
        self.json = json
        self.status: int | None = None
        self._reactor = reactor
        self._output = output
        self._errors = errors
        self._done = done

    def startService(self) -> None:
        Service.startService(self)
        self.run.finished.addCallback(self._report)
        self._reactor.callWhenRunning(self.run.start)

    def stopService(self) -> Deferred[None]:
        """
        Stopped from outside (Ctrl-C, SIGTERM): end the run early and report
        what was done; twist then exits as it does after that signal.

        @return: Fires once every connection is gone, so that their C{close}
            events are out (C{--events}) before the process ends.
        """
        Service.stopService(self)
        self.run.stop(interrupted=True)
        return self.run.closed

    def _report(self, report: LoadReport) -> None:
        status = self._write(report)
        run = self.run
        if run.fatal is not None:
            self._say(str(run.fatal))
            status = EXIT_STATUS[run.fatal.kind]
        elif run.stalled:
            self._say(
                f"stopped: no message completed for {run.settings.timeout:g} s "
                f"({report.errorCount:,} errors)"
            )
        if status == 0 and report.errorCount:
            status = 1
        self.status = status
        if not report.interrupted:
            self._done(status)

    def _write(self, report: LoadReport) -> int:
        text = self._errors if self.json == "-" else self._output
        text.write(report.render())
        text.flush()
        if self.json is None:
            return 0
        document = json.dumps(report.toJSON(), indent=2) + "\n"
        if self.json == "-":
            self._output.write(document)
            self._output.flush()
            return 0
        try:
            with open(self.json, "w", encoding="utf-8") as f:
                f.write(document)
        except OSError as e:
            self._say(f"cannot write the JSON report to {self.json!r}: {e.strerror}")
            return os.EX_IOERR
        return 0

    def _say(self, line: str) -> None:
        self._errors.write(f"tcpclient: {line}\n")
        self._errors.flush()
