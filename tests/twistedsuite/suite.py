"""
What C{make twisted-suite} runs, and how it judges the outcomes: which
reactors and modules, the expected deviations, and the comparison of each
tcplife reactor's outcomes with the stock reactor's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The reactors, by the names the deviations file uses.  C{stock} is the
#: reference the others are compared with.
REACTORS = {
    "stock": "twisted.internet.epollreactor.EPollReactor",
    "direct": "tcplife.internet.directreactor.DirectEPollReactor",
    "ports": "tests.twistedsuite.portreactor.PortEPollReactor",
    "direct-ports": "tests.twistedsuite.portreactor.DirectPortReactor",
}
STOCK = "stock"
TCPLIFE_REACTORS = ("direct", "ports", "direct-ports")

#: Modules whose tests are made per reactor by C{ReactorBuilder}.
BUILDER_MODULES = (
    "twisted.internet.test.test_tcp",
    "twisted.internet.test.test_tls",
    "twisted.internet.test.test_unix",
    "twisted.internet.test.test_fdset",
    "twisted.internet.test.test_socket",
)
#: Modules that test the global reactor, run with each reactor installed.
GLOBAL_MODULES = (
    "twisted.test.test_tcp",
    "twisted.test.test_ssl",
)
MODULES = BUILDER_MODULES + GLOBAL_MODULES

#: Seconds one test may take (trial's default is 120): stock's slowest test
#: takes well under a second, and a hang should cost little.
PER_TEST_TIMEOUT = 30.0

#: Seconds one module may take on one reactor, hangs included, before the
#: C{timeout} wrapper ends it (the longest takes about 30 s, a timeout).
PER_RUN_TIMEOUT = 240

#: Seconds the whole suite may take: runs still waiting then are not started,
#: and count as not run.  CI (lint, tests, this) must stay within 30 minutes.
SUITE_TIMEOUT = 900

DEVIATIONS = Path(__file__).with_name("deviations.txt")

#: Outcomes, best first.  C{hung}: started, never finished (the run was
#: killed); C{missing}: never started.
OUTCOMES = ("pass", "skip", "fail", "hung", "missing")


def isBuilderModule(module: str) -> bool:
    return module in BUILDER_MODULES


def neutralId(testId: str, reactorClassName: str) -> str:
    """
    C{testId} without the reactor's part, the same on every reactor:
    C{ReactorBuilder} names its classes C{<Builder>_<ReactorClass>Tests}.
    """
    return testId.replace(f"_{reactorClassName}Tests.", ".")


@dataclass(frozen=True)
class Deviation:
    """
    A test expected to fail on one tcplife reactor, and why.
    """

    reactor: str
    testId: str
    reason: str


def parseDeviations(text: str) -> dict[tuple[str, str], Deviation]:
    """
    Parse the deviations file: C{REACTOR[,REACTOR] TEST-ID: REASON} a line,
    C{#} comments and blank lines ignored.  Raises C{ValueError} naming the
    line for anything else, so a typo cannot silently excuse nothing.
    """
    deviations: dict[tuple[str, str], Deviation] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, separator, reason = line.partition(": ")
        parts = head.split()
        if not separator or not reason.strip() or len(parts) != 2:
            raise ValueError(f"line {number}: expected 'REACTOR TEST-ID: REASON', got {line!r}")
        reactors, testId = parts
        for reactor in reactors.split(","):
            if reactor not in TCPLIFE_REACTORS:
                raise ValueError(
                    f"line {number}: unknown reactor {reactor!r} "
                    f"(one of {', '.join(TCPLIFE_REACTORS)})"
                )
            if (reactor, testId) in deviations:
                raise ValueError(f"line {number}: {reactor} {testId} is listed twice")
            deviations[reactor, testId] = Deviation(reactor, testId, reason.strip())
    return deviations


@dataclass
class RunResult:
    """
    The outcomes of one module on one reactor.

    @ivar outcomes: test id to its worst outcome (see L{OUTCOMES}).
    @ivar details: test id to the traceback or skip reason of that outcome.
    @ivar completed: whether the run reached its end (not killed).
    """

    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    completed: bool = True

    def count(self, outcome: str) -> int:
        return sum(1 for each in self.outcomes.values() if each == outcome)


def readResults(lines: Iterable[str], completed: bool) -> RunResult:
    """
    A L{RunResult} from a child's C{results.jsonl}.  A test can report more
    than one outcome (an error in its clean-up after a failure, a dirty
    reactor after a pass): the worst counts.
    """
    result = RunResult(completed=completed)
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        testId, event = record["id"], record["event"]
        if event == "start":
            result.outcomes.setdefault(testId, "hung")
            continue
        previous = result.outcomes.get(testId, "hung")
        if previous == "hung" or OUTCOMES.index(event) > OUTCOMES.index(previous):
            result.outcomes[testId] = event
            result.details[testId] = record.get("detail", "")
        # Each outcome's seconds count from the test's start.
        result.seconds[testId] = max(result.seconds.get(testId, 0.0), record.get("seconds", 0.0))
    return result


def failed(outcome: str) -> bool:
    return outcome in ("fail", "hung", "missing")


@dataclass
class Verdict:
    """
    One tcplife reactor's outcomes judged against stock's and the deviations.

    @ivar unexpected: tests that did not pass here but did (or were skipped)
        on stock, and are not listed: each fails the target.
    @ivar expected: listed deviations that did fail here.
    @ivar stale: listed deviations that passed here (or do not exist): each
        fails the target, so the list stays true.
    @ivar alsoOnStock: tests that failed here and on stock alike.
    """

    unexpected: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    alsoOnStock: list[str] = field(default_factory=list)


def judge(
    reactor: str,
    stock: Mapping[str, str],
    ours: Mapping[str, str],
    deviations: Mapping[tuple[str, str], Deviation],
) -> Verdict:
    """
    Compare C{ours} (test id to outcome, on C{reactor}) with C{stock}.  A
    test stock ran but this reactor did not is C{missing}, a failure.  A
    skip here where stock ran the test is unexpected too: it did not run.
    """
    verdict = Verdict()
    for testId in sorted(set(stock) | set(ours)):
        outcome = ours.get(testId, "missing")
        reference = stock.get(testId, "missing")
        listed = (reactor, testId) in deviations
        notRun = outcome == "skip" and reference == "pass"
        if failed(outcome) or notRun:
            if listed:
                verdict.expected.append(testId)
            elif failed(reference):
                verdict.alsoOnStock.append(testId)
            else:
                verdict.unexpected.append(testId)
        elif listed:
            verdict.stale.append(testId)
    return verdict


def staleUnknown(
    reactor: str, modules: Iterable[str], seen: set[str], deviations: Iterable[Deviation]
) -> list[str]:
    """
    Deviations for C{reactor}, in one of C{modules}, naming a test that no
    run reported: a typo or a test Twisted removed.
    """
    prefixes = tuple(f"{module}." for module in modules)
    return [
        each.testId
        for each in deviations
        if each.reactor == reactor and each.testId.startswith(prefixes) and each.testId not in seen
    ]
