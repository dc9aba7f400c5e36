"""
C{--events}: the event stream of C{twist tcpecho} and C{twist tcpclient},
as a user runs them: its lines against twist's JSON log, rotation with
SIGUSR1, and a disk that fills up.
"""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT, echoWithHalfClose, portOf, startTcpecho
from ..servers import runClient, temporaryDirectory

#: Fields whose values differ between two servers serving the same client.
_PER_PROCESS = {"conn_id", "peer", "local", "duration_s", "opened_at", "tcp", "time", "level"}


def eventLines(path: Path) -> list[dict[str, Any]]:
    """
    Every line of an events file, each parsed as one JSON object.
    """
    raw = path.read_bytes()
    assert b"\x1e" not in raw, "an events file has no record separators"
    return [json.loads(line) for line in raw.splitlines()]


def ownFields(event: dict[str, Any]) -> dict[str, Any]:
    """
    An event of twist's log without Twisted's C{log_*} fields.
    """
    return {k: v for k, v in event.items() if not k.startswith("log_")}


def closeWithReset(port: int) -> None:
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    client.sendall(b"abc")
    client.recv(16)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()


def exercise(port: int) -> None:
    """
    The same few connections for every server: two echoes and a reset.
    """
    assert echoWithHalfClose(port, b"hello") == b"hello"
    assert echoWithHalfClose(port, b"x" * 100_000) == b"x" * 100_000
    closeWithReset(port)


class BothOutputsTests(SynchronousTestCase):
    """
    The events file and twist's JSON log tell the same story in the same
    fields.
    """

    def test_bothOutputsAgreeFieldByField(self) -> None:
        """
        One client run against two servers, one logging through twist's
        JSON log and one with --events: per-connection events have the same
        fields with the same values (but for each process's own: ids,
        ports, times, the kernel's figures, which have the same names), and
        the --events server's listen and drained events are in both its
        outputs field for field.
        """
        logged, loggedPort = startTcpecho(self)
        path = temporaryDirectory(self) / "events.jsonl"
        streamed, streamedPort = startTcpecho(self, "--events", str(path))
        for port in (loggedPort, streamedPort):
            exercise(port)
        logged.waitFor(lifecycle="close", how="reset")
        self.assertEqual(logged.signal(), -signal.SIGTERM)
        self.assertEqual(streamed.signal(), -signal.SIGTERM)

        fromLog = [ownFields(e) for e in logged.events if "lifecycle" in e]
        fromFile = eventLines(path)
        self.assertEqual([e["lifecycle"] for e in fromFile], [e["lifecycle"] for e in fromLog])
        for inLog, inFile in zip(fromLog, fromFile, strict=True):
            self.assertEqual(list(inFile)[:2], ["time", "level"])
            self.assertEqual(set(inFile) - {"time", "level"}, set(inLog))
            if "tcp" in inLog:
                self.assertEqual(set(inFile["tcp"]), set(inLog["tcp"]))
            if inLog["lifecycle"] in ("listen", "stop-listening"):
                continue  # their addresses name each process's own port
            for name, value in inLog.items():
                if name not in _PER_PROCESS:
                    self.assertEqual((name, inFile[name]), (name, value), inLog["lifecycle"])

        # twist's log of the --events server keeps the occasional events,
        # the very same, and no per-connection one.
        occasional = [ownFields(e) for e in streamed.events if "lifecycle" in e]
        self.assertEqual(
            [e["lifecycle"] for e in occasional], ["listen", "stop-listening", "drain", "drained"]
        )
        inFile = {e["lifecycle"]: e for e in fromFile}
        for event in occasional:
            line = dict(inFile[event["lifecycle"]])
            del line["time"], line["level"]
            self.assertEqual(line, event)
        self.assertEqual(fromFile[-1]["lifecycle"], "drained")

    def test_eventsOnlyCloseIsOneLinePerConnection(self) -> None:
        """
        --events-only close: one line per connection, each with the
        kernel's view, and nothing else.
        """
        path = temporaryDirectory(self) / "events.jsonl"
        server, port = startTcpecho(self, "--events", str(path), "--events-only", "close")
        exercise(port)
        self.assertEqual(server.signal(), -signal.SIGTERM)
        lines = eventLines(path)
        self.assertEqual([e["lifecycle"] for e in lines], ["close"] * 3)
        self.assertEqual([e["how"] for e in lines], ["fin", "fin", "reset"])
        for line in lines:
            self.assertEqual(line["local"], f"127.0.0.1:{port}")
            self.assertIn("rtt_us", line["tcp"])

    def test_clientEventsGoToTheFile(self) -> None:
        """
        The one-shot client's --events file has its connect, connected,
        half-close and close, the close with the kernel's view; its log on
        standard error has none of them.
        """
        _server, port = startTcpecho(self)
        path = temporaryDirectory(self) / "client.jsonl"
        done, _ = runClient("--port", str(port), "--message", "hi", "--events", str(path))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, b"hi\n")
        lines = eventLines(path)
        self.assertEqual(
            [e["lifecycle"] for e in lines], ["connect", "connected", "half-close", "close"]
        )
        self.assertLess(lines[-1]["tcp"]["rtt_us"], 1000)
        self.assertNotIn(b'"lifecycle"', done.stderr)


class RotationTests(SynchronousTestCase):
    """
    mv, then SIGUSR1: the classic rotation loses no line.
    """

    def test_renameThenSignalLosesNoLine(self) -> None:
        """
        Connections before the rename, between the rename and the signal,
        and after it: every close is in the old file or the new one, the
        new one ends with drained, and the server ran on throughout.
        """
        directory = temporaryDirectory(self)
        path = directory / "events.jsonl"
        server, port = startTcpecho(self, "--events", str(path))
        for _ in range(5):
            echoWithHalfClose(port, b"before")
        path.rename(directory / "events.jsonl.1")
        for _ in range(5):
            echoWithHalfClose(port, b"between")
        server.process.send_signal(signal.SIGUSR1)
        server.waitFor(events_file=str(path), log_format="events file {events_file} reopened")
        for _ in range(5):
            echoWithHalfClose(port, b"after")
        self.assertEqual(server.signal(), -signal.SIGTERM)
        old = eventLines(directory / "events.jsonl.1")
        new = eventLines(path)
        closes = [e["bytes_in"] for e in old + new if e["lifecycle"] == "close"]
        self.assertEqual(closes, [6] * 5 + [7] * 5 + [5] * 5)
        self.assertEqual([e["bytes_in"] for e in new if e["lifecycle"] == "close"], [5] * 5)
        self.assertEqual(new[-1]["lifecycle"], "drained")


def scrapeDropped(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tcplife_events_dropped_total "):
                return float(line.split()[1])
    raise AssertionError("no tcplife_events_dropped_total")


class FullDiskTests(SynchronousTestCase):
    """
    A disk that fills up costs events, counted, never the service.
    """

    def test_aFullTmpfsLeavesTheServerServing(self) -> None:
        """
        On a 64 KiB tmpfs (in a mount namespace of the test's own) the file
        fills after some dozens of connections: every connection is still
        echoed, twist's log has one warning, the metrics count the dropped
        events, and every line that is in the file is whole.
        """
        directory = temporaryDirectory(self)
        mounted = directory / "small"
        mounted.mkdir()
        path = mounted / "events.jsonl"
        launcher = [
            "unshare",
            "-m",
            "--",
            "sh",
            "-c",
            'mount -t tmpfs -o size=64k tcplife-test "$0" && exec "$@"',
            str(mounted),
        ]
        server, port = startTcpecho(
            self,
            "--events",
            str(path),
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            launcher=launcher,
        )
        metrics = portOf(server.waitFor(description="metrics tcp:0:interface=127.0.0.1")["address"])
        payload = b"y" * 1000
        for _ in range(300):
            self.assertEqual(echoWithHalfClose(port, payload), payload)
        # The file, as the server's mount namespace has it.
        inside = Path(f"/proc/{server.process.pid}/root") / str(path).lstrip("/")
        server.waitFor(log_format=WARNING)
        dropped = scrapeDropped(metrics)
        lines = eventLines(inside)
        self.assertGreater(dropped, 0)
        self.assertLess(len(lines), 3 * 300)
        self.assertEqual(echoWithHalfClose(port, b"still here"), b"still here")
        self.assertEqual(server.signal(), -signal.SIGTERM)
        self.assertEqual(len(server.of(log_format=WARNING)), 1)


WARNING = (
    "events file {events_file} cannot be written ({reason}): its events are "
    "dropped, and counted, until it can; serving goes on"
)
