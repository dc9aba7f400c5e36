"""
twist's JSON log, batched: the same records as twist's own observer, with
fewer flushes.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, jsonFileLogObserver, textFileLogObserver
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife.eventlog import BatchedJSONLogObserver, batchJSONLog
from tcplife.eventlog._twistlog import FLUSH_INTERVAL


class CountingFile(io.StringIO):
    """
    A text file that counts its flushes.
    """

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class Reactor(Clock):
    """
    A clock with system event triggers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[tuple[str, str, Any]] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any, *args: Any) -> None:
        self.triggers.append((phase, event, f))


def someEvents() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    log = Logger(namespace="tcplife", observer=events.append)  # type: ignore[arg-type]
    log.info("listen on {address}", lifecycle="listen", address="127.0.0.1:9000", backlog=None)
    log.info("bytes {b!r} and a set {s}", b=b"\xff\x00", s={1})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("it broke", Failure())
    log.debug("a non-string key", odd={1: "one", "two": 2})
    return events


class RecordTests(SynchronousTestCase):
    """
    The records are twist's own, byte for byte.
    """

    def test_sameTextAsTwistsObserver(self) -> None:
        """
        For the same events (templates, bytes, an unencodable value, a
        failure, a non-string key), the batched observer writes exactly what
        twist's jsonFileLogObserver writes.
        """
        theirs, ours = io.StringIO(), io.StringIO()
        twists = jsonFileLogObserver(theirs)
        batched = BatchedJSONLogObserver(ours, Reactor())  # type: ignore[arg-type]
        for event in someEvents():
            twists(dict(event))
            batched(dict(event))
        self.assertEqual(ours.getvalue(), theirs.getvalue())
        self.assertEqual(ours.getvalue().count("\x1e"), 4)


class FlushTests(SynchronousTestCase):
    """
    One flush per batch, not per event.
    """

    def setUp(self) -> None:
        # As the reactor does when it starts (this is the thread it runs in).
        threadable.registerAsIOThread()
        self.file = CountingFile()
        self.reactor = Reactor()
        self.observe = BatchedJSONLogObserver(self.file, self.reactor)  # type: ignore[arg-type]
        self.log = Logger(namespace="tcplife", observer=self.observe)

    def test_infoEventsAreFlushedTogetherWithinTheInterval(self) -> None:
        """
        Many info events cost one flush, within L{FLUSH_INTERVAL}.
        """
        for n in range(100):
            self.log.info("accept {n}", n=n)
        self.assertEqual(self.file.flushes, 0)
        self.reactor.advance(FLUSH_INTERVAL)
        self.assertEqual(self.file.flushes, 1)
        self.assertEqual(self.file.getvalue().count("\x1e"), 100)

    def test_aWarningIsFlushedAtOnce(self) -> None:
        """
        A warning (or worse) is written out at once, with what came before.
        """
        self.log.info("before")
        self.log.warn("something is wrong")
        self.assertEqual(self.file.flushes, 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_shutdownFlushes(self) -> None:
        """
        What is still kept is flushed after the reactor shuts down.
        """
        self.log.info("last words")
        [(phase, event, flush)] = self.reactor.triggers
        self.assertEqual((phase, event), ("after", "shutdown"))
        flush()
        self.assertEqual(self.file.flushes, 1)


class ChoiceTests(SynchronousTestCase):
    """
    Only twist's JSON format is replaced.
    """

    def test_jsonFactoryIsReplaced(self) -> None:
        """
        twist's options naming its JSON observer get the batched one.
        """
        options = {"fileLogObserverFactory": jsonFileLogObserver}
        self.assertTrue(batchJSONLog(options, Reactor()))  # type: ignore[arg-type]
        observer = options["fileLogObserverFactory"](io.StringIO())
        self.assertIsInstance(observer, BatchedJSONLogObserver)

    def test_textAndNoOptionsAreLeftAlone(self) -> None:
        """
        The text format, and a plugin run without twist, are left alone.
        """
        options = {"fileLogObserverFactory": textFileLogObserver}
        self.assertFalse(batchJSONLog(options, Reactor()))  # type: ignore[arg-type]
        self.assertIs(options["fileLogObserverFactory"], textFileLogObserver)
        self.assertFalse(batchJSONLog(None, Reactor()))  # type: ignore[arg-type]
