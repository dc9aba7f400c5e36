"""
How C{make twisted-suite} judges Twisted's tests on tcplife's reactors: the
deviations file, the recorded outcomes and the comparison with stock.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ..twistedsuite.suite import (
    DEVIATIONS,
    MODULES,
    Deviation,
    judge,
    neutralId,
    parseDeviations,
    readResults,
    staleUnknown,
)

TCP = "twisted.internet.test.test_tcp.TCP4ClientTestsBuilder"


def record(testId: str, event: str, **fields: object) -> str:
    return json.dumps({"id": testId, "event": event, **fields})


class DeviationsFileTests(SynchronousTestCase):
    """
    The deviations file names each expected failure with its reason, and
    refuses what it cannot read rather than excuse nothing.
    """

    def test_entryForTwoReactorsListsTheTestForEach(self) -> None:
        """
        C{direct,ports ID: REASON} is one deviation per reactor, same reason.
        """
        parsed = parseDeviations(f"# comment\n\ndirect,ports {TCP}.test_x: why not\n")
        self.assertEqual(
            parsed,
            {
                ("direct", f"{TCP}.test_x"): Deviation("direct", f"{TCP}.test_x", "why not"),
                ("ports", f"{TCP}.test_x"): Deviation("ports", f"{TCP}.test_x", "why not"),
            },
        )

    def test_entryWithoutAReasonIsRefusedWithItsLine(self) -> None:
        """
        A deviation must say why: one without a reason is an error naming
        its line.
        """
        error = self.assertRaises(ValueError, parseDeviations, f"\ndirect {TCP}.test_x\n")
        self.assertIn("line 2", str(error))

    def test_unknownReactorIsRefused(self) -> None:
        """
        Only tcplife's reactors can deviate; C{stock} is the reference.
        """
        error = self.assertRaises(ValueError, parseDeviations, f"stock {TCP}.test_x: no\n")
        self.assertIn("unknown reactor 'stock'", str(error))

    def test_entryListedTwiceIsRefused(self) -> None:
        """
        The same test on the same reactor twice is an error, not two reasons.
        """
        text = f"direct {TCP}.test_x: one\ndirect,ports {TCP}.test_x: two\n"
        error = self.assertRaises(ValueError, parseDeviations, text)
        self.assertIn("line 2", str(error))

    def test_shippedFileParsesAndNamesOnlyModulesTheSuiteRuns(self) -> None:
        """
        Every entry of the project's deviations file is in a module that
        C{make twisted-suite} runs, and has a reason.
        """
        deviations = parseDeviations(DEVIATIONS.read_text(encoding="utf-8"))
        self.assertTrue(deviations)
        for deviation in deviations.values():
            self.assertTrue(deviation.testId.startswith(tuple(f"{m}." for m in MODULES)))
            self.assertTrue(deviation.reason)


class ResultsTests(SynchronousTestCase):
    """
    A child's recorded outcomes, read back.
    """

    def test_reactorPartOfABuilderClassNameIsDropped(self) -> None:
        """
        C{ReactorBuilder}'s per-reactor class names compare across reactors.
        """
        testId = f"{TCP}_DirectEPollReactorTests.test_x"
        self.assertEqual(neutralId(testId, "DirectEPollReactor"), f"{TCP}.test_x")
        self.assertEqual(neutralId(testId, "EPollReactor"), testId)

    def test_worstOutcomeOfATestCounts(self) -> None:
        """
        A pass followed by an error (a dirty reactor found afterwards) is a
        failure; its traceback is kept.
        """
        lines = [
            record("t.a", "start"),
            record("t.a", "pass", seconds=0.5),
            record("t.a", "fail", detail="dirty", seconds=0.6),
        ]
        result = readResults(lines, completed=True)
        self.assertEqual((result.outcomes, result.details), ({"t.a": "fail"}, {"t.a": "dirty"}))
        self.assertEqual(result.seconds, {"t.a": 0.6})

    def test_testStartedButNeverFinishedHung(self) -> None:
        """
        The test running when the time limit ended the run is C{hung}.
        """
        lines = [record("t.a", "start"), record("t.a", "pass"), record("t.b", "start")]
        result = readResults(lines, completed=False)
        self.assertEqual(result.outcomes, {"t.a": "pass", "t.b": "hung"})
        self.assertFalse(result.completed)


class JudgeTests(SynchronousTestCase):
    """
    A tcplife reactor's outcomes against stock's and the deviations.
    """

    deviations = parseDeviations("ports t.listed: on purpose\nports t.fixed: was broken\n")

    def test_failureOnlyHereAndUnlistedIsUnexpected(self) -> None:
        """
        Failing, hanging or not running here while stock passes fails the
        target; so does a skip here of a test stock ran.
        """
        stock = {"t.fail": "pass", "t.hung": "pass", "t.missing": "pass", "t.skip": "pass"}
        ours = {"t.fail": "fail", "t.hung": "hung", "t.skip": "skip"}
        verdict = judge("ports", stock, ours, self.deviations)
        self.assertEqual(verdict.unexpected, ["t.fail", "t.hung", "t.missing", "t.skip"])

    def test_listedFailureIsExpectedAndListedPassIsStale(self) -> None:
        """
        A listed test that fails is expected; one that passes is stale.
        """
        stock = {"t.listed": "pass", "t.fixed": "pass"}
        ours = {"t.listed": "fail", "t.fixed": "pass"}
        verdict = judge("ports", stock, ours, self.deviations)
        self.assertEqual((verdict.expected, verdict.stale), (["t.listed"], ["t.fixed"]))
        self.assertEqual(verdict.unexpected, [])

    def test_deviationIsPerReactor(self) -> None:
        """
        A test listed for C{ports} is unexpected when it fails on C{direct}.
        """
        verdict = judge("direct", {"t.listed": "pass"}, {"t.listed": "fail"}, self.deviations)
        self.assertEqual(verdict.unexpected, ["t.listed"])

    def test_failureOnStockTooIsNotCounted(self) -> None:
        """
        What fails on stock as well is not tcplife's deviation.
        """
        verdict = judge("ports", {"t.a": "fail"}, {"t.a": "fail"}, self.deviations)
        self.assertEqual((verdict.unexpected, verdict.alsoOnStock), ([], ["t.a"]))

    def test_skippedOnStockButFailingHereIsUnexpected(self) -> None:
        """
        Stock skipping a test does not excuse its failure here.
        """
        verdict = judge("ports", {"t.a": "skip"}, {"t.a": "fail"}, self.deviations)
        self.assertEqual(verdict.unexpected, ["t.a"])

    def test_listedTestThatNoRunReportedIsStale(self) -> None:
        """
        A deviation naming a test that does not exist (a typo, a test
        Twisted removed) is reported, for the modules that ran.
        """
        deviations = parseDeviations(
            f"ports {TCP}.test_gone: typo\nports twisted.test.test_ssl.X.test_y: elsewhere\n"
        )
        unknown = staleUnknown(
            "ports", ["twisted.internet.test.test_tcp"], {f"{TCP}.test_x"}, deviations.values()
        )
        self.assertEqual(unknown, [f"{TCP}.test_gone"])
