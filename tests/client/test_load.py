"""
The load generator on StringTransports and a clock; the test plays the
server.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionLost,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LoadReport
from tcplife.client import IntervalReport
from tcplife.client._load import Messages

from .loadrun import Run, assertMicroseconds


class MessagesTests(SynchronousTestCase):
    """
    The generated stream is checked byte for byte at any offset.
    """

    def test_matchesTheStreamAtAnyOffset(self) -> None:
        """
        Any slice of the sent stream matches at its offset and not at
        another.
        """
        messages = Messages(100)
        stream = b"".join(messages.variants) * 5
        for start, end in [(0, 100), (37, 251), (150, 450), (299, 1499)]:
            self.assertTrue(messages.matches(stream[start:end], start))
            self.assertFalse(messages.matches(stream[start:end], start + 1))

    def test_detectsOneChangedByte(self) -> None:
        """
        One flipped byte in a long chunk is a mismatch.
        """
        messages = Messages(64)
        stream = bytearray(b"".join(messages.variants) * 2000)
        self.assertTrue(messages.matches(bytes(stream), 0))
        stream[100_000] ^= 1
        self.assertFalse(messages.matches(bytes(stream), 0))

    def test_largeMessagesNeedOnlyAFewCopies(self) -> None:
        """
        The check ring is one period of the stream plus one longest check,
        and chunks longer than that are checked piecewise.
        """
        messages = Messages(1 << 20)
        self.assertEqual(len(messages.ring), 3 * (1 << 20) + (1 << 16))
        stream = b"".join(messages.variants)
        self.assertTrue(messages.matches(stream[5:], 5))
        self.assertTrue(messages.matches(stream[-1000:] + stream[:300_000], len(stream) - 1000))

    def test_consecutiveMessagesDiffer(self) -> None:
        """
        A server that replays the previous message is caught.
        """
        messages = Messages(64)
        self.assertFalse(messages.matches(messages.variants[0], 64))


class RequestResponseTests(SynchronousTestCase):
    """
    rr: one message in flight per connection, the next after its echo.
    """

    def test_oneMessageInFlightPerConnection(self) -> None:
        """
        Each connection sends one message and waits; its echo releases the
        next; every message counts once, with its round trip.
        """
        r = Run(connections=3, size=10, count=9)
        r.run.start()
        self.assertEqual(len(r.open()), 3)
        self.assertEqual([len(t.value()) for _, t in r.open()], [10, 10, 10])
        r.clock.advance(0.002)
        self.assertEqual(r.echoAll(), 30)
        self.assertEqual(r.run.done, 3)
        self.assertEqual(r.echoAll(), 30)
        self.assertEqual(r.echoAll(), 30)
        report = r.report()
        self.assertEqual((report.messages, report.bytes, report.errorCount), (9, 90, 0))
        self.assertEqual(report.connectionsOpened, 3)
        self.assertEqual(report.latency.count, 9)
        self.assertEqual(report.latency.max, 2000)
        r.closeLost()
        self.assertTrue(r.run.closed.called)

    def test_echoInPiecesIsReassembled(self) -> None:
        """
        An echo that comes back a byte at a time completes the message once.
        """
        r = Run(connections=1, size=5, count=2)
        r.run.start()
        [(connection, transport)] = r.open()
        sent = transport.value()
        transport.clear()
        for byte in sent:
            connection.dataReceived(bytes([byte]))
        self.assertEqual(r.run.done, 1)
        self.assertEqual(len(transport.value()), 5)

    def test_mismatchIsCountedAndTheConnectionReplaced(self) -> None:
        """
        A wrong byte aborts the connection, counts a mismatch, and a new
        connection takes its place after a short pause.
        """
        r = Run(connections=1, size=8, duration=10.0)
        r.run.start()
        [(connection, transport)] = r.open()
        data = bytearray(transport.value())
        data[3] ^= 0xFF
        connection.dataReceived(bytes(data))
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(r.run.errors["mismatch"], 1)
        self.assertEqual(r.run.done, 0)
        [warning] = [e for e in r.recorded.events if "lifecycle" not in e]
        self.assertEqual((warning["conn_id"], warning["offset"]), (connection.connId, 0))
        r.clock.advance(0.05)
        self.assertEqual(len(r.open()), 1)
        r.echoAll()
        self.assertEqual(r.run.done, 1)

    def test_silentServerTimesOut(self) -> None:
        """
        No echo within the timeout: the connection is aborted and counted
        as a timeout.
        """
        r = Run(connections=2, size=8, duration=30.0, timeout=2.0)
        r.run.start()
        [(quiet, quietTransport), (busy, busyTransport)] = r.open()
        for _ in range(5):
            r.clock.advance(0.5)
            r.echo(busy, busyTransport)
        self.assertTrue(quietTransport.disconnecting)
        self.assertFalse(busyTransport.disconnecting)
        quiet.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(r.run.errors["timeout"], 1)
        [close] = [e for e in r.recorded.of("close") if e["conn_id"] == quiet.connId]
        self.assertEqual(close["how"], "timeout")

    def test_serverClosingIsClosedEarly(self) -> None:
        """
        A server that closes a connection mid-run: counted as closed early.
        """
        r = Run(connections=1, size=8, duration=30.0)
        r.run.start()
        [(connection, _)] = r.open()
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(dict(r.run.errors), {"closed-early": 1})

    def test_durationEndsTheRunAndClosesConnections(self) -> None:
        """
        At the deadline, sending stops, every connection is closed, and the
        report covers exactly the duration.
        """
        r = Run(connections=2, size=8, duration=1.0)
        r.run.start()
        for _ in range(8):
            r.clock.advance(0.125)
            r.echoAll()
        report = r.report()
        self.assertEqual(report.duration, 1.0)
        self.assertEqual(report.messages, 14)
        self.assertFalse(report.interrupted)
        self.assertTrue(all(t.disconnecting for _, t in r.endpoint.connections))
        self.assertFalse(r.run.closed.called)
        r.closeLost()
        self.assertTrue(r.run.closed.called)
        self.assertEqual(r.clock.getDelayedCalls(), [])

    def test_stopWhileRunningIsAnInterruptedReport(self) -> None:
        """
        Stopping early (Ctrl-C) still reports what was done.
        """
        r = Run(connections=1, size=8, duration=60.0)
        r.run.start()
        r.echoAll()
        r.run.stop(interrupted=True)
        report = r.report()
        self.assertTrue(report.interrupted)
        self.assertEqual(report.messages, 1)

    def test_closingConnectionsAreAbortedAfterAGrace(self) -> None:
        """
        A connection that does not finish closing within a second of the
        end is aborted.
        """
        r = Run(connections=1, size=8, count=1)
        r.run.start()
        r.echoAll()
        [(_connection, transport)] = r.endpoint.connections
        self.assertTrue(transport.disconnecting)
        r.clock.advance(1.0)
        self.assertTrue(transport.disconnected)

    def test_rateCapsMessagesPerSecond(self) -> None:
        """
        With --rate 50, an instant echo still yields about 50 messages in a
        second, spread over the connections.
        """
        r = Run(connections=4, size=8, duration=1.0, rate=50.0)
        r.run.start()
        for _ in range(100):
            r.echoAll()
            r.clock.advance(0.01)
        report = r.report()
        self.assertGreaterEqual(report.messages, 48)
        self.assertLessEqual(report.messages, 52)


class StreamTests(SynchronousTestCase):
    """
    stream: a window of bytes in flight per connection.
    """

    def test_keepsTheWindowFull(self) -> None:
        """
        A connection sends up to the window, and more as echo comes back.
        """
        r = Run(connections=1, size=10, window=45, pattern="stream", duration=10.0)
        r.run.start()
        [(connection, transport)] = r.open()
        self.assertEqual(len(transport.value()), 40)
        data = transport.value()
        transport.clear()
        connection.dataReceived(data[:15])
        self.assertEqual(r.run.done, 1)
        # 25 bytes were still in flight: two more messages fill the window.
        self.assertEqual(len(transport.value()), 20)

    def test_writeBufferFullPausesSendingNotReading(self) -> None:
        """
        When the transport's buffer is full it pauses sending; echo is
        still read and checked.
        """
        r = Run(connections=1, size=10, window=100, pattern="stream", duration=10.0)
        r.run.start()
        [(connection, transport)] = r.open()
        sent = transport.value()
        transport.clear()
        transport.producer.pauseProducing()
        connection.dataReceived(sent[:50])
        self.assertEqual(r.run.done, 5)
        self.assertEqual(transport.value(), b"")
        transport.producer.resumeProducing()
        self.assertEqual(len(transport.value()), 50)


class ConnectPatternTests(SynchronousTestCase):
    """
    connect: connect, one message, close, again.
    """

    def test_eachMessageIsAConnection(self) -> None:
        """
        After each echo the connection closes and a new one opens, until
        the count; each connection's events come in lifecycle order.
        """
        r = Run(connections=2, size=6, count=5, pattern="connect")
        r.run.start()
        for _ in range(10):
            r.echoAll()
            r.closeLost()
        report = r.report()
        self.assertEqual((report.messages, report.connectionsOpened), (5, 5))
        self.assertEqual(report.errorCount, 0)
        first = r.endpoint.connections[0][0].connId
        self.assertEqual(r.recorded.phases(first), ["connected", "close"])
        [close] = [e for e in r.recorded.of("close") if e["conn_id"] == first]
        self.assertEqual((close["initiator"], close["bytes_in"]), ("local", 6))

    def test_rateCapsConnectionsPerSecond(self) -> None:
        """
        With --rate 20, connect churn opens about 20 connections a second:
        workers wait for the rate before connecting.
        """
        r = Run(connections=5, size=6, duration=1.0, pattern="connect", rate=20.0)
        r.run.start()
        for _ in range(100):
            r.echoAll()
            r.closeLost()
            r.clock.advance(0.01)
        report = r.report()
        self.assertGreaterEqual(report.connectionsOpened, 19)
        self.assertLessEqual(report.connectionsOpened, 22)
        self.assertEqual(report.errorCount, 0)


class FailureToStartTests(SynchronousTestCase):
    """
    A target that refuses from the start ends the run at once.
    """

    def test_refusedFromTheStartIsFatal(self) -> None:
        """
        The first connect refused, before any connection was made: the run
        stops with that failure instead of retrying for its whole duration.
        """
        r = Run(connections=3, size=8, duration=10.0)
        r.endpoint.refusing = True
        r.run.start()
        assert r.run.fatal is not None
        self.assertEqual(r.run.fatal.kind, "refused")
        self.assertEqual(dict(r.report().errors)["refused"], 1)
        self.assertTrue(r.run.closed.called)
        self.assertEqual(r.clock.getDelayedCalls(), [])

    def test_refusedLaterIsCountedAndRetried(self) -> None:
        """
        After connections have worked, a refused reconnect is counted and
        retried with a growing pause.
        """
        r = Run(connections=1, size=8, duration=10.0)
        r.run.start()
        [(connection, _)] = r.open()
        r.endpoint.refusing = True
        connection.connectionLost(Failure(ConnectionLost()))
        for _ in range(5):
            r.clock.advance(0.5)
        self.assertGreaterEqual(r.run.errors["refused"], 3)
        r.endpoint.refusing = False
        r.clock.advance(1.0)
        self.assertEqual(len(r.open()), 1)

    def test_resetConnectIsCountedAsReset(self) -> None:
        """
        A connect that fails with ECONNRESET is a C{reset} in the report (and
        the run's fatal failure), not an C{other}.
        """
        r = Run(connections=3, size=8, duration=10.0)
        r.endpoint.failure = ConnectError(errno.ECONNRESET, "Connection reset by peer")
        r.run.start()
        assert r.run.fatal is not None
        self.assertEqual(
            (r.run.fatal.kind, r.run.fatal.reason), ("reset", "connection reset by peer")
        )
        errors = dict(r.report().errors)
        self.assertEqual(errors["reset"], 1)
        self.assertNotIn("other", errors)

    def test_countRunThatMakesNoProgressStops(self) -> None:
        """
        A --count run whose every connection fails stops once nothing has
        completed for the timeout, instead of retrying for ever.
        """
        r = Run(connections=1, size=8, count=10, timeout=2.0)
        r.run.start()
        r.echoAll()
        [(connection, _)] = r.open()
        r.endpoint.refusing = True
        connection.connectionLost(Failure(ConnectionLost()))
        r.clock.pump([0.5] * 8)
        self.assertTrue(r.run.stalled)
        self.assertEqual(r.report().messages, 1)


class ProgressTests(SynchronousTestCase):
    """
    A progress line, rewritten in place, once a second.
    """

    def test_progressLineEverySecondThenCleared(self) -> None:
        """
        Each second the line shows the rate of the last second; at the end
        it is erased so the report starts on a clean line.
        """
        r = Run(connections=1, size=1000, duration=3.0)
        r.run.start()
        for _ in range(8):
            r.echoAll()
            r.clock.advance(0.125)
        lines = [line for line in r.progress.getvalue().split("\r") if line]
        self.assertEqual(len(lines), 1)
        self.assertTrue(r.progress.getvalue().endswith("\x1b[K\r"))
        self.assertIn(" 8 msg/s", lines[0])
        self.assertIn("0.008 MB/s", lines[0])
        self.assertIn("p99   125.055 ms", lines[0])
        r.clock.advance(2.0)
        self.assertTrue(r.progress.getvalue().endswith("\r\x1b[K"))


class ReportTests(SynchronousTestCase):
    """
    The report, as text and as JSON.
    """

    def report(self) -> LoadReport:
        r = Run(connections=2, size=100, count=4, pattern="stream", window=200)
        r.run.start()
        r.clock.advance(0.5)
        r.echoAll()
        return r.report()

    def test_jsonHasEveryFigure(self) -> None:
        """
        The JSON report carries rates, counts, every error kind and the
        latency percentiles in microseconds.
        """
        document = json.loads(json.dumps(self.report().toJSON()))
        self.assertEqual(document["messages"], 4)
        self.assertEqual(document["bytes"], 400)
        self.assertEqual(document["messages_per_s"], 8.0)
        self.assertEqual(document["mb_per_s"], 0.0008)
        self.assertEqual(document["window"], 200)
        self.assertEqual(
            document["errors"], {"refused": 0, "reset": 0, "timeout": 0, "mismatch": 0}
        )
        self.assertEqual(
            set(document["latency_us"]), {"count", "p50", "p90", "p99", "p99.9", "max"}
        )
        # 500 ms, as an HDR histogram with 3 significant digits reports it.
        self.assertEqual(document["latency_us"]["p99.9"], 500_223)

    def test_textReport(self) -> None:
        """
        The text report states the setup and each figure on its own line.
        """
        text = self.report().render()
        self.assertEqual(
            text.splitlines(),
            [
                "tcpclient stream to 127.0.0.1:9000: 2 connections, 100-byte messages, "
                "window 200 bytes, 0.50 s",
                "  messages     4 (8.0/s), every byte verified",
                "  throughput   0.001 MB/s echoed",
                "  connections  2 opened",
                "  errors       refused 0, reset 0, timeout 0, mismatch 0",
                "  latency ms   p50 500.223  p90 500.223  p99 500.223  p99.9 500.223  max 500.223"
                "  (closed loop: from each send)",
            ],
        )

    def test_closedLoopSaysSoAndServiceTimeIsTheLatency(self) -> None:
        """
        Without a rate the JSON says the loop is closed, the service time is
        the latency itself, and nothing can be late.
        """
        document = self.report().toJSON()
        self.assertEqual(document["loop"], "closed")
        self.assertEqual(document["service_time_us"], document["latency_us"])
        self.assertIsNone(document["late"])


class OpenLoopTests(SynchronousTestCase):
    """
    With a rate, messages follow a timetable and round trips run from the
    time each message was due (coordinated omission corrected).
    """

    def test_messagesLeaveAtTheirTimeNotBefore(self) -> None:
        """
        At 8 msg/s an instantly echoed connection still sends one message
        each eighth of a second, when it is due, and none is late.
        """
        r = Run(connections=1, size=8, duration=10.0, rate=8.0)
        r.run.start()
        [(connection, transport)] = r.open()
        sentAt = []
        # Steps of 1/64 s add up exactly, as tenths would not.
        for step in range(64):
            # What the connection wrote by now (the timetable's call fires
            # as the clock reaches it), echoed at once.
            if r.echo(connection, transport):
                sentAt.append(step / 64)
            r.clock.advance(1 / 64)
        self.assertEqual(sentAt, [k / 8 for k in range(8)])
        r.run.stop()
        self.assertEqual(r.report().late, 0)

    def stalledRun(self, **settings: Any) -> LoadReport:
        """
        One connection at 10 msg/s whose second echo the server holds back
        for half a second (from 0.1 s to 0.6 s), every other echoed at once.
        """
        r = Run(connections=1, size=8, count=8, rate=10.0, **settings)
        r.run.start()
        [(connection, transport)] = r.open()
        r.echo(connection, transport)
        r.clock.advance(0.1)
        self.assertEqual(len(transport.value()), 8)  # message 1, due at 0.1
        r.clock.advance(0.5)
        # Messages 2 to 6 fell due meanwhile: each leaves as soon as the
        # echo before it is back, then message 7 at its time.
        for _ in range(3):
            while r.echo(connection, transport):
                pass
            r.clock.advance(0.1)
        return r.report()

    def test_aStallShowsInTheLatencyNotInTheServiceTime(self) -> None:
        """
        A server that stalls for half a second: the messages due meanwhile
        went out late, their latency runs from their due time (up to the
        stall's 500 ms), their service time from their late send (0 ms); and
        the late messages are counted.
        """
        report = self.stalledRun()
        self.assertEqual((report.messages, report.late), (8, 4))
        # Message 1 waited 0.5 s for its echo; 2 to 6 were due 0.1 s apart
        # until 0.6 s, when they left (6 on time) and came back at once: of
        # the eight round trips, 0.5, 0.4, 0.3, 0.2 and 0.1 s, and three 0.
        assertMicroseconds(self, report.latency.max, 0.5)
        assertMicroseconds(self, report.latency.p50, 0.1)
        self.assertEqual(report.serviceTime.p50, 0)
        assertMicroseconds(self, report.serviceTime.max, 0.5)

    def test_openLoopReportNamesBothTimes(self) -> None:
        """
        The report of an open loop shows latency and service time, and the
        late messages; the JSON has latency_us, service_time_us and late.
        """
        report = self.stalledRun()
        rows = report.render().splitlines()
        self.assertIn("10 msg/s on a timetable", rows[0])
        self.assertTrue(rows[5].startswith("  latency ms   p50 100.0"), rows[5])
        self.assertTrue(rows[5].endswith("(from the intended send time)"), rows[5])
        self.assertTrue(rows[6].startswith("  service ms   p50 0.000"), rows[6])
        self.assertTrue(rows[6].endswith("(from the actual send)"), rows[6])
        self.assertEqual(rows[7], "  late         4 of 8 messages sent over 1 ms after their time")
        document = json.loads(json.dumps(report.toJSON()))
        self.assertEqual((document["loop"], document["late"]), ("open", 4))
        self.assertEqual(document["latency_us"]["count"], 8)
        self.assertEqual(document["service_time_us"]["p50"], 0)
        self.assertGreater(document["latency_us"]["p50"], 99_000)

    def test_connectionsAreMessagesOnTheTimetable(self) -> None:
        """
        connect at 10 msg/s with one connection at a time, against a server
        that takes 0.25 s to echo: each connection opens as soon as the one
        before it is gone, late, and its latency runs from when it was due.
        """
        r = Run(connections=1, size=6, count=3, pattern="connect", rate=10.0)
        r.run.start()
        for _ in range(3):
            r.clock.advance(0.25)
            r.echoAll()
            r.closeLost()
        report = r.report()
        self.assertEqual((report.messages, report.connectionsOpened, report.late), (3, 3, 2))
        # Due at 0, 0.1 and 0.2; connected at 0, 0.25 and 0.5; echoed 0.25 s
        # after each connect.
        assertMicroseconds(self, report.latency.max, 0.55)
        assertMicroseconds(self, report.serviceTime.max, 0.25)


class IntervalTests(SynchronousTestCase):
    """
    Every --interval, what the run did in that interval alone.
    """

    def test_eachIntervalHasItsOwnFigures(self) -> None:
        """
        Each interval reports its own messages, rate, errors, latency
        percentiles, open connections and CPU time, not the run's so far;
        the rest of the last interval is reported when the run stops.
        """
        r = Run(connections=2, size=10, duration=1.25, interval=0.5)
        r.run.start()
        # First interval: 2 messages echoed after 0.1 s, then 8 at once.
        r.clock.advance(0.1)
        r.echoAll()
        for _ in range(4):
            r.echoAll()
        r.cpu = 0.3
        r.clock.advance(0.4)
        # Second: one connection resets, the other echoes the message it
        # sent at 0.1 s, at 0.7 s.
        [(lost, _), (kept, keptTransport)] = r.open()
        lost.connectionLost(Failure(ConnectionLost()))
        r.clock.advance(0.2)
        r.echo(kept, keptTransport)
        r.cpu = 0.4
        r.clock.advance(0.3)
        # Third: the rest of the run, to its end at 1.25 s.
        r.clock.advance(0.25)
        first, second, last = r.intervals
        self.assertEqual([i.index for i in r.intervals], [1, 2, 3])
        spans = [(i.start, i.end) for i in r.intervals]
        self.assertEqual(spans, [(0, 0.5), (0.5, 1.0), (1.0, 1.25)])
        self.assertEqual((first.messages, first.errorCount, first.open), (10, 0, 2))
        self.assertEqual(first.messagesPerSecond, 20.0)
        assertMicroseconds(self, first.latency.max, 0.1)
        self.assertEqual(first.latency.p50, 0)
        self.assertAlmostEqual(first.cpu, 0.3)
        self.assertEqual(dict(second.errors)["reset"], 1)
        self.assertEqual(second.messages, 1)
        assertMicroseconds(self, second.latency.p50, 0.6)
        self.assertAlmostEqual(second.cpu, 0.1)
        self.assertEqual((last.messages, last.errorCount), (0, 0))
        self.assertIsNone(first.late)

    def test_intervalAsJSON(self) -> None:
        """
        An interval's JSON object has its event type, its span, rate, errors,
        late messages, open connections, CPU time and latency percentiles.
        """
        r = Run(connections=1, size=10, count=4, rate=10.0, interval=0.5)
        r.run.start()
        for _ in range(4):
            r.echoAll()
            r.clock.advance(0.1)
        [interval] = r.intervals
        document = json.loads(json.dumps(interval.toJSON()))
        self.assertEqual(
            set(document),
            {
                "event",
                "interval",
                "start_s",
                "end_s",
                "messages",
                "messages_per_s",
                "mb_per_s",
                "errors",
                "late",
                "open",
                "cpu_s",
                "latency_us",
            },
        )
        self.assertEqual((document["event"], document["interval"]), ("interval", 1))
        self.assertEqual((document["messages"], document["late"]), (4, 0))
        self.assertEqual(document["errors"]["mismatch"], 0)
        self.assertEqual(document["latency_us"]["count"], 4)

    def test_mergedIntervalsAddUp(self) -> None:
        """
        The same interval of several workers, merged: counts summed,
        latencies of all of them in one histogram.
        """
        parts = []
        for delay in (0.1, 0.3):
            r = Run(connections=1, size=10, count=1, interval=0.5)
            r.run.start()
            r.clock.advance(delay)
            r.echoAll()
            parts.extend(r.intervals)
        merged = IntervalReport.merged(parts)
        self.assertEqual((merged.messages, merged.latency.count), (2, 2))
        assertMicroseconds(self, merged.latency.max, 0.3)
        self.assertEqual((merged.start, merged.end), (0.0, 0.3))


class SeveralTargetsTests(SynchronousTestCase):
    """
    Several targets: connections spread over them in turn, a report per
    target.
    """

    def test_connectionsAreSpreadInTurnAndStayWithTheirTarget(self) -> None:
        """
        rr with 5 connections over 2 targets: 3 and 2; a connection that
        fails is replaced by one to the same target.
        """
        r = Run(targets=2, connections=5, size=8, duration=10.0)
        r.run.start()
        self.assertEqual([len(e.connections) for e in r.endpoints.values()], [3, 2])
        [(lost, _), *_] = r.endpoints["server2"].connections
        lost.connectionLost(Failure(ConnectionLost()))
        r.clock.advance(0.05)
        self.assertEqual([len(e.connections) for e in r.endpoints.values()], [3, 3])

    def test_reportPerTarget(self) -> None:
        """
        Each target's messages, connections, errors and latency, beside the
        totals.
        """
        r = Run(targets=2, connections=2, size=8, duration=10.0)
        r.run.start()
        [(one, oneTransport)] = r.endpoints["server1"].connections
        [(two, _)] = r.endpoints["server2"].connections
        r.clock.advance(0.25)
        r.echo(one, oneTransport)
        r.echo(one, oneTransport)
        two.connectionLost(Failure(ConnectionLost()))
        r.run.stop()
        report = r.report()
        first, second = report.targets
        self.assertEqual((first.target, first.messages, first.errorCount), ("server1", 2, 0))
        self.assertEqual((second.target, second.messages, second.errorCount), ("server2", 0, 1))
        assertMicroseconds(self, first.latency.max, 0.25)
        self.assertEqual(second.latency.count, 0)
        self.assertEqual((report.messages, report.errorCount), (2, 1))
        rows = report.render().splitlines()
        self.assertEqual(
            rows[-2:],
            [
                "  per target   server1  2 messages, 1 opened, 0 errors, p99 250.111 ms",
                "               server2  0 messages, 1 opened, 1 errors, p99 0.000 ms",
            ],
        )
        document = report.toJSON()
        self.assertEqual([t["target"] for t in document["targets"]], ["server1", "server2"])
        self.assertEqual(document["targets"][1]["errors"]["reset"], 1)

    def test_churnGoesToEachTargetInTurn(self) -> None:
        """
        connect: each new connection goes to the next target.
        """
        r = Run(targets=3, connections=1, size=6, count=6, pattern="connect")
        r.run.start()
        for _ in range(6):
            r.echoAll()
            r.closeLost()
        self.assertEqual([len(e.connections) for e in r.endpoints.values()], [2, 2, 2])
        self.assertEqual([t.messages for t in r.report().targets], [2, 2, 2])

    def test_aTargetThatNeverConnectsIsFatal(self) -> None:
        """
        One target refusing from the start ends the run with its failure,
        even while another works: a wrong target is said at once.
        """
        r = Run(targets=2, connections=2, size=8, duration=10.0)
        r.endpoints["server2"].refusing = True
        r.run.start()
        assert r.run.fatal is not None
        self.assertEqual((r.run.fatal.target, r.run.fatal.kind), ("server2", "refused"))
