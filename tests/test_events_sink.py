"""
Where a LifecycleLog sends its events: the logger, a sink (C{--events}), and
which phases (C{--events-only}).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleLog


class Sink:
    """
    Keeps what a LifecycleLog sends it.
    """

    def __init__(self) -> None:
        self.events: list[tuple[LogLevel, dict[str, Any]]] = []

    def event(self, level: LogLevel, fields: dict[str, Any]) -> None:
        self.events.append((level, fields))

    def phases(self) -> list[str]:
        return [fields["lifecycle"] for _, fields in self.events]


class SinkTests(SynchronousTestCase):
    def log(self, **kwargs: Any) -> tuple[LifecycleLog, list[dict[str, Any]], Sink]:
        logged: list[dict[str, Any]] = []
        sink = Sink()
        observer = cast(ILogObserver, logged.append)
        events = LifecycleLog(Logger(namespace="tcplife", observer=observer), sink=sink, **kwargs)
        return events, logged, sink

    def everyKind(self, events: LifecycleLog) -> None:
        events.listen("127.0.0.1:9000", 50, "tcp:9000")
        events.accept(1, "127.0.0.1:40000", "127.0.0.1:9000")
        events.halfClose(1, "peer")
        events.close(1, "server", "peer", "fin", 5, 5, 0.01, "127.0.0.1:40000", "127.0.0.1:9000")
        events.drained(1, 0, 0, 0, 0.1)

    def test_perConnectionEventsGoOnlyToTheSink(self) -> None:
        """
        With a sink, accept, half-close and close reach only the sink; the
        listen and drained events reach both the sink and twist's log.
        """
        events, logged, sink = self.log()
        self.everyKind(events)
        self.assertEqual(sink.phases(), ["listen", "accept", "half-close", "close", "drained"])
        self.assertEqual([e["lifecycle"] for e in logged], ["listen", "drained"])

    def test_sinkFieldsAreTheLoggersFields(self) -> None:
        """
        The sink gets the event's own fields, those the logger's event has
        besides Twisted's C{log_*}, and none of Twisted's.
        """
        events, _logged, sink = self.log()
        plain: list[dict[str, Any]] = []
        alone = LifecycleLog(Logger(observer=cast(ILogObserver, plain.append)))
        self.everyKind(events)
        self.everyKind(alone)
        for (_, fields), logged_ in zip(sink.events, plain, strict=True):
            own = {k: v for k, v in logged_.items() if not k.startswith("log_")}
            own.pop("opened_at", None)
            fields = dict(fields)
            fields.pop("opened_at", None)
            self.assertEqual(fields, own)

    def test_theSinkGetsTheFaultFields(self) -> None:
        """
        A connection's faults on purpose reach the sink: the kinds applied
        on its accept, the one that ended it on its close.
        """
        events, _logged, sink = self.log()
        events.accept(1, "a", "b", ("delay", "reset-after"))
        events.close(1, "server", "local", "reset", 5, 3, 0.01, "a", "b", fault="reset-after")
        [(_, accept), (_, close)] = sink.events
        self.assertEqual(
            (accept["fault"], close["fault"]), (["delay", "reset-after"], "reset-after")
        )

    def test_aSinkTakesEveryLevel(self) -> None:
        """
        A threshold (twist's --log-level) filters twist's log, not the sink:
        debug-level events (a load run's) still reach it.
        """
        events, _logged, sink = self.log(level=LogLevel.debug, threshold=LogLevel.info)
        events.accept(1, "a", "b")
        self.assertEqual(sink.events[0][0], LogLevel.debug)

    def test_onlyTheChosenPhasesAreBuilt(self) -> None:
        """
        With phases={close}, the sink gets only close events; the listen
        and drained events still reach twist's log.
        """
        events, logged, sink = self.log(phases=frozenset({"close"}))
        self.everyKind(events)
        self.assertEqual(sink.phases(), ["close"])
        self.assertEqual([e["lifecycle"] for e in logged], ["listen", "drained"])
        self.assertFalse(events.wants("accept"))
        self.assertTrue(events.wants("close"))

    def test_closeTextAddsRoundTripAndRetransmissions(self) -> None:
        """
        Without a sink, the close event's text line ends with the RTT and
        the retransmissions the kernel reported.
        """
        logged: list[dict[str, Any]] = []
        events = LifecycleLog(Logger(observer=cast(ILogObserver, logged.append)))
        tcp = {"rtt_us": 8200, "retransmits": 1189}
        events.close(3, "client", "local", "fin", 9, 9, 1.5, "a:1", "b:2", tcp)
        self.assertEqual(
            logged[0]["log_format"],
            "close #3 by local (fin): 9 bytes in, 9 bytes out, 1.500 s, "
            "rtt 8.200 ms, 1189 retransmitted",
        )
        self.assertEqual(logged[0]["tcp"], tcp)
