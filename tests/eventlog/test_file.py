"""
The event file: JSON Lines written in batches, reopened for rotation, and a
failed write costing events (counted), never the caller.
"""

from __future__ import annotations

import json
import os
import select
import signal
from pathlib import Path
from typing import Any
from unittest.mock import patch

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tcplife import EventFile


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


class EventFileTestCase(SynchronousTestCase):
    def open(self, name: str = "events.jsonl") -> tuple[EventFile, Path, Clock]:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        clock = Clock()
        events = EventFile(str(path), clock)
        self.addCleanup(events.close)
        return events, path, clock

    def warnings(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.warn:
                seen.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return seen


class LineTests(EventFileTestCase):
    """
    Each event is one JSON object on its own line: time, level, then its
    own fields, and nothing of Twisted's.
    """

    def test_lineIsTimeLevelThenTheEventsFields(self) -> None:
        """
        A line has C{time} and C{level} first, then the fields in order,
        with no record separator.
        """
        events, path, _clock = self.open()
        events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": 7, "peer": "a:1"})
        events.flush()
        raw = path.read_bytes()
        self.assertFalse(raw.startswith(b"\x1e"))
        self.assertTrue(raw.endswith(b"\n"))
        [line] = lines(path)
        self.assertEqual(list(line), ["time", "level", "lifecycle", "conn_id", "peer"])
        self.assertEqual((line["level"], line["lifecycle"], line["conn_id"]), ("info", "accept", 7))

    def test_nestedObjectsStayObjects(self) -> None:
        """
        A close event's C{tcp} object is a JSON object in the line.
        """
        events, path, _clock = self.open()
        events.event(LogLevel.debug, {"lifecycle": "close", "tcp": {"rtt_us": 31}})
        events.flush()
        [line] = lines(path)
        self.assertEqual((line["level"], line["tcp"]), ("debug", {"rtt_us": 31}))

    def test_aFieldJSONCannotEncodeIsWrittenAsText(self) -> None:
        """
        A field of a type JSON has no form for is written as its text rather
        than the event lost.
        """
        events, path, _clock = self.open()
        events.event(LogLevel.info, {"lifecycle": "close", "odd": Path("/x")})
        events.flush()
        [line] = lines(path)
        self.assertEqual(line["odd"], "/x")


class BatchTests(EventFileTestCase):
    """
    Lines are kept and written in batches, never one system call per event.
    """

    def test_nothingIsWrittenUntilTheIntervalPasses(self) -> None:
        """
        Events wait in memory; L{EventFile.flushInterval} after the first,
        every one of them is written.
        """
        events, path, clock = self.open()
        for n in range(5):
            events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": n})
        self.assertEqual(path.read_bytes(), b"")
        clock.advance(EventFile.flushInterval)
        self.assertEqual([line["conn_id"] for line in lines(path)], [0, 1, 2, 3, 4])
        self.assertEqual(events.written, 5)

    def test_aFullBatchIsWrittenAtOnce(self) -> None:
        """
        Once L{EventFile.flushBytes} have gathered, they are written without
        waiting for the timer.
        """
        events, path, _clock = self.open()
        filler = "x" * 1000
        count = EventFile.flushBytes // 1000
        for n in range(count):
            events.event(LogLevel.info, {"lifecycle": "read", "conn_id": n, "pad": filler})
        written = lines(path)
        self.assertGreater(len(written), 0)
        self.assertGreaterEqual(path.stat().st_size, EventFile.flushBytes)

    def test_closeWritesWhatIsKeptAndLaterEventsAreCountedDropped(self) -> None:
        """
        Closing writes the kept lines; an event after it is not written,
        and is counted.
        """
        events, path, _clock = self.open()
        events.event(LogLevel.info, {"lifecycle": "drained"})
        events.close()
        events.event(LogLevel.info, {"lifecycle": "close"})
        self.assertEqual([line["lifecycle"] for line in lines(path)], ["drained"])
        self.assertEqual((events.written, events.dropped), (1, 1))


class RotationTests(EventFileTestCase):
    """
    Rename, then reopen: the old file keeps what was written to it, the new
    one gets the rest.
    """

    def test_reopenAfterRenameLosesNoLine(self) -> None:
        """
        Lines given before the reopen (even after the rename) are in the old
        file; lines after it are in a new file at the same path.
        """
        events, path, _clock = self.open()
        events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": 1})
        events.flush()
        rotated = path.with_suffix(".1")
        path.rename(rotated)
        events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": 2})
        events.reopen()
        events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": 3})
        events.flush()
        self.assertEqual([line["conn_id"] for line in lines(rotated)], [1, 2])
        self.assertEqual([line["conn_id"] for line in lines(path)], [3])

    def test_sigusr1ReopensInTheReactorsThreadUntilClosed(self) -> None:
        """
        Once asked to, SIGUSR1 hands a reopen to the reactor's thread; after
        the close, the signal's previous handler is back.
        """
        before = signal.getsignal(signal.SIGUSR1)
        events, _path, _clock = self.open()
        handed: list[Any] = []
        events.reopenOnSignal(handed.append)
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler)
        handler(signal.SIGUSR1, None)
        self.assertEqual(handed, [events.reopen])
        events.close()
        self.assertEqual(signal.getsignal(signal.SIGUSR1), before)

    def test_aPathThatCannotBeReopenedKeepsTheOldFile(self) -> None:
        """
        If the path cannot be opened again (its directory is gone), events
        go on to the old file, with one warning.
        """
        warnings = self.warnings()
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "events.jsonl"
        events = EventFile(str(path), Clock())
        self.addCleanup(events.close)
        kept = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, kept)
        path.unlink()
        directory.rmdir()
        events.reopen()
        events.event(LogLevel.info, {"lifecycle": "close"})
        events.flush()
        self.assertEqual(json.loads(os.read(kept, 4096))["lifecycle"], "close")
        self.assertEqual(len(warnings), 1)


class FailureTests(EventFileTestCase):
    """
    A write that fails costs its events, counted, and one warning.
    """

    def test_aFullDeviceDropsAndCountsWithOneWarning(self) -> None:
        """
        On /dev/full (every write ENOSPC) the events are dropped and
        counted, the caller never sees an error, and the warning is said
        once however many writes fail.
        """
        warnings = self.warnings()
        events = EventFile("/dev/full", Clock())
        self.addCleanup(events.close)
        for n in range(3):
            events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": n})
            events.flush()
        self.assertEqual((events.written, events.dropped), (0, 3))
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["events_file"], "/dev/full")


class SharedFileTests(EventFileTestCase):
    """
    Several processes' events in one stream: each line says whose it is,
    and a pipe gets only writes it keeps whole.
    """

    def test_fieldsGoOnEveryLineAfterTimeAndLevel(self) -> None:
        """
        The file's own fields (a worker's C{worker} and C{pid}) are on every
        line, after C{time} and C{level} and before the event's fields.
        """
        path = Path(self.mktemp())
        events = EventFile(str(path), Clock(), fields={"worker": 2, "pid": 4321})
        self.addCleanup(events.close)
        events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": 8})
        events.event(LogLevel.info, {"lifecycle": "close", "conn_id": 8})
        events.flush()
        written = lines(path)
        self.assertEqual(
            [list(line) for line in written],
            [["time", "level", "worker", "pid", "lifecycle", "conn_id"]] * 2,
        )
        self.assertEqual({(line["worker"], line["pid"]) for line in written}, {(2, 4321)})

    def writesInto(self, shared: bool) -> tuple[list[bytes], bytes]:
        """
        The writes a batch of 300 lines (about 30 KB) makes into a pipe, and
        what the pipe's reader gets.
        """
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        events = EventFile(str(path), Clock(), shared=shared)
        self.addCleanup(events.close)
        for n in range(300):
            events.event(LogLevel.info, {"lifecycle": "accept", "conn_id": n, "pad": "x" * 40})
        writes: list[bytes] = []
        realWrite = os.write

        def write(fd: int, data: bytes) -> int:
            writes.append(bytes(data))
            return realWrite(fd, data)

        with patch.object(os, "write", write):
            events.flush()
        return writes, os.read(reader, 1 << 20)

    def test_aSharedPipeIsWrittenInWholeLinesWithinPipeBuf(self) -> None:
        """
        Shared, a batch goes into a pipe in writes of whole lines, none over
        C{PIPE_BUF} bytes (which the kernel keeps whole beside another
        process's), every line in order.
        """
        writes, read = self.writesInto(shared=True)
        self.assertGreater(len(writes), 1)
        self.assertEqual(
            [(len(w) <= select.PIPE_BUF, w.endswith(b"\n")) for w in writes],
            [(True, True)] * len(writes),
        )
        self.assertEqual(b"".join(writes), read)
        self.assertEqual(
            [json.loads(line)["conn_id"] for line in read.splitlines()], list(range(300))
        )

    def test_aPipeOfItsOwnTakesTheBatchInOneWrite(self) -> None:
        """
        Not shared, the batch goes into the pipe with one write.
        """
        writes, read = self.writesInto(shared=False)
        self.assertEqual((len(writes), writes[0]), (1, read))
