"""
One module of Twisted's tests on one reactor, each outcome recorded as it
comes: C{python -m tests.twistedsuite.child REACTOR MODULE WORKDIR}.

Started by L{tests.twistedsuite.__main__}, one process per module and
reactor, so that a hang or a crash costs that run only.  C{WORKDIR} gets
C{results.jsonl} (a line when each test starts, one per outcome), trial's
C{_trial_temp} and its C{test.log}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import twisted.trial.util
from twisted.python.failure import Failure
from twisted.python.reflect import namedAny
from twisted.trial.reporter import VerboseTextReporter
from twisted.trial.runner import TestLoader, TrialRunner

from .suite import PER_TEST_TIMEOUT, REACTORS, isBuilderModule, neutralId

_DETAIL_LIMIT = 4000


class RecordingReporter(VerboseTextReporter):
    """
    trial's verbose reporter, that also appends every start and outcome to
    a JSON-lines file, flushed at once (the run may be killed any time).
    """

    record: IO[str]
    reactorClassName: str

    def _note(self, test: Any, **fields: Any) -> None:
        fields["id"] = neutralId(test.id(), self.reactorClassName)
        self.record.write(json.dumps(fields) + "\n")
        self.record.flush()

    def startTest(self, test: Any) -> None:
        self._started = time.monotonic()
        self._note(test, event="start")
        super().startTest(test)

    def _outcome(self, test: Any, outcome: str, detail: str = "") -> None:
        seconds = round(time.monotonic() - getattr(self, "_started", time.monotonic()), 3)
        self._note(test, event=outcome, detail=detail[-_DETAIL_LIMIT:], seconds=seconds)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._outcome(test, "pass")

    def addError(self, test: Any, error: Any) -> None:
        super().addError(test, error)
        self._outcome(test, "fail", self._getFailure(error).getTraceback())

    def addFailure(self, test: Any, failure: Any) -> None:
        super().addFailure(test, failure)
        self._outcome(test, "fail", self._getFailure(failure).getTraceback())

    def addSkip(self, test: Any, reason: Any) -> None:
        super().addSkip(test, reason)
        self._outcome(test, "skip", str(reason))

    def addExpectedFailure(self, test: Any, failure: Any, todo: Any = None) -> None:
        super().addExpectedFailure(test, failure, todo)
        # A todo that fails as expected is a pass, as trial counts it.
        self._outcome(test, "pass", "expected failure")

    def addUnexpectedSuccess(self, test: Any, todo: Any = None) -> None:
        super().addUnexpectedSuccess(test, todo)
        self._outcome(test, "pass", "unexpected success")


def prepare(reactorName: str, module: str) -> str:
    """
    Make C{module}'s tests run on C{reactorName}'s reactor; returns that
    reactor's class name (trial's test ids carry it for reactor builders).
    """
    qualifiedName = REACTORS[reactorName]
    # Before reactormixins copies it at import: a test that hangs fails in
    # PER_TEST_TIMEOUT seconds instead of trial's 120.
    assert "twisted.internet.test.reactormixins" not in sys.modules
    twisted.trial.util.DEFAULT_TIMEOUT_DURATION = PER_TEST_TIMEOUT
    if isBuilderModule(module):
        # The builder classes are made when the module is imported, one per
        # entry of _reactors: patch first.
        from twisted.internet.test.reactormixins import ReactorBuilder

        ReactorBuilder._reactors = [qualifiedName]
    else:
        from twisted.internet.main import installReactor

        installReactor(namedAny(qualifiedName)())  # type: ignore[no-untyped-call]
    return qualifiedName.rsplit(".", 1)[1]


def main(reactorName: str, module: str, workdir: str) -> int:
    reactorClassName = prepare(reactorName, module)
    directory = Path(workdir)
    with (directory / "results.jsonl").open("w", encoding="utf-8") as record:

        def reporter(*args: Any) -> RecordingReporter:
            made = RecordingReporter(*args)
            made.record = record
            made.reactorClassName = reactorClassName
            return made

        suite = TestLoader().loadByName(module, recurse=True)
        runner = TrialRunner(reporter, workingDirectory=str(directory / "_trial_temp"))
        result = runner.run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    try:
        status = main(*sys.argv[1:])
    except Exception:
        # A broken run (bad arguments, an import that fails before trial
        # starts) is reported as such by the parent: it finds no outcomes.
        Failure().printTraceback()
        status = 2
    sys.exit(status)
