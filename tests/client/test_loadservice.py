"""
The load run as a service: its JSON stream, its thresholds, its hints and
the exit status they make.
"""

from __future__ import annotations

import errno
import json
from io import StringIO
from typing import Any

from twisted.internet.error import ConnectError, ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife.client import LoadService, Thresholds

from ..servers import temporaryDirectory
from .loadrun import Run


class Served:
    """
    A L{Run} under a L{LoadService}, started as twist would start it.
    """

    def __init__(self, thresholds: Thresholds | None = None, **options: Any) -> None:
        service = {k: options.pop(k) for k in ("json", "stream") if k in options}
        self.r = Run(**options)
        self.output = StringIO()
        self.errors = StringIO()
        self.statuses: list[int] = []
        self.service = LoadService(
            self.r.run,
            self.r.clock,
            output=self.output,
            errors=self.errors,
            json=service.get("json"),
            stream=service.get("stream"),
            thresholds=thresholds,
            done=self.statuses.append,
        )
        self.service.startService()
        # MemoryReactor.run runs what was given to callWhenRunning.
        self.r.clock.run()

    def lines(self) -> list[str]:
        return self.errors.getvalue().splitlines()


class ThresholdTests(SynchronousTestCase):
    """
    --max-p99, --max-errors and --min-rate: a breached one exits 1 and the
    last line names it.
    """

    def runWith(self, thresholds: Thresholds, *, reset: bool = False) -> Served:
        """
        Ten messages with a round trip of 0.25 s each, in 2.5 s (4 msg/s),
        and with C{reset}, one connection reset.
        """
        served = Served(thresholds, connections=1, size=8, count=10)
        r = served.r
        [(connection, _)] = r.open()
        if reset:
            connection.connectionLost(Failure(ConnectionLost()))
            r.clock.advance(0.01)
        for _ in range(10):
            r.clock.advance(0.25)
            r.echoAll()
        return served

    def test_withinEveryThresholdIsStatus0(self) -> None:
        """
        A run within its thresholds exits 0, with no line of its own.
        """
        served = self.runWith(Thresholds(maxP99=300.0, maxErrors=0, minRate=3.0))
        self.assertEqual(served.statuses, [0])
        self.assertFalse([line for line in served.lines() if line.startswith("tcpclient:")])

    def test_eachBreachIsNamedOnTheLastLine(self) -> None:
        """
        Every breached threshold is named, with its figure, on the last line,
        and the status is 1.
        """
        served = self.runWith(Thresholds(maxP99=100.0, maxErrors=0, minRate=5.0), reset=True)
        self.assertEqual(served.statuses, [1])
        self.assertEqual(
            served.lines()[-1],
            "tcpclient: failed: p99 latency 250.111 ms is over --max-p99 100; "
            "1 errors are over --max-errors 0; 4.0 msg/s is under --min-rate 5",
        )

    def test_maxErrorsAllowsSomeErrors(self) -> None:
        """
        Without --max-errors any error fails the run (the report counts it);
        --max-errors N lets up to N pass.
        """
        self.assertEqual(self.runWith(Thresholds(), reset=True).statuses, [1])
        self.assertEqual(self.runWith(Thresholds(maxErrors=1), reset=True).statuses, [0])


class JSONStreamTests(SynchronousTestCase):
    """
    --json-stream: one JSON object per interval, then the report.
    """

    def test_oneObjectPerIntervalThenTheReport(self) -> None:
        """
        The file holds one interval object per line, as they end, then the
        report as an C{end} object.
        """
        path = temporaryDirectory(self) / "stream.jsonl"
        served = Served(stream=str(path), connections=1, size=8, duration=2.0, interval=0.5)
        r = served.r
        for _ in range(8):
            r.clock.advance(0.25)
            r.echoAll()
        documents = [json.loads(line) for line in path.read_text().splitlines()]
        self.assertEqual([d["event"] for d in documents], ["interval"] * 4 + ["end"])
        self.assertEqual([d["interval"] for d in documents[:4]], [1, 2, 3, 4])
        self.assertEqual(sum(d["messages"] for d in documents[:4]), documents[-1]["messages"])
        # Seven echoes came before the end, at 2 s.
        self.assertEqual(documents[-1]["messages"], 7)
        self.assertEqual(served.statuses, [0])
        # The text report still goes to standard output.
        self.assertIn("every byte verified", served.output.getvalue())

    def test_toStandardOutput(self) -> None:
        """
        --json-stream -: the objects on standard output, the text report on
        standard error.
        """
        served = Served(stream="-", connections=1, size=8, count=2, interval=0.5)
        served.r.echoAll()
        served.r.echoAll()
        documents = [json.loads(line) for line in served.output.getvalue().splitlines()]
        self.assertEqual([d["event"] for d in documents], ["interval", "end"])
        self.assertIn("every byte verified", served.errors.getvalue())


class HintTests(SynchronousTestCase):
    """
    Errors a user can do something about come with what to do.
    """

    def test_noLocalPortSaysWhatToDo(self) -> None:
        """
        Connects that found no local port (EADDRNOTAVAIL) after the first
        one worked: counted as no-local-port, and a line says why and what
        to do.
        """
        served = Served(connections=1, size=8, duration=1.0, pattern="connect")
        r = served.r
        r.echoAll()
        r.endpoint.failure = ConnectError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        r.closeLost()
        r.clock.advance(1.0)
        self.assertEqual(served.statuses, [1])
        [hint] = [line for line in served.lines() if "no local port" in line]
        failed = dict(served.r.report().errors)["no-local-port"]
        self.assertGreater(failed, 0)
        self.assertTrue(hint.startswith(f"tcpclient: {failed} connects found no local port: "))
        self.assertIn("TIME_WAIT", hint)
        self.assertIn(f"no-local-port {failed}", served.output.getvalue())
