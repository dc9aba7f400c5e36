"""
C{twist tcpecho --fault}, as a user runs it: each fault against C{twist
tcpclient} (its verdict and exit status name the fault's kind of failure)
and against plain sockets (what the kernel shows a client).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tcplife.server import FaultPlan, parseFaultSpec

from ..helpers import (
    WAIT,
    echoWithHalfClose,
    pattern,
    readUntilReset,
    recvExactly,
    recvUntilEOF,
    recvUntilEOFOrReset,
    runTwist,
    startTcpecho,
)
from ..servers import runClient, temporaryDirectory, verdict, waitForCount
from .test_events import eventLines


def serve(test: SynchronousTestCase, *specs: str, extra: tuple[str, ...] = ()) -> tuple[Any, int]:
    """
    C{twist tcpecho} with a C{--fault} for each of C{specs}.
    """
    return startTcpecho(test, *(a for spec in specs for a in ("--fault", spec)), *extra)


def oneShot(port: int, *args: str) -> tuple[int, bytes, list[str]]:
    """
    C{twist tcpclient} once: its status, its standard output, its verdicts.
    """
    done, _ = runClient("--port", str(port), *args)
    return done.returncode, done.stdout, verdict(done)


class DelayTests(SynchronousTestCase):
    """
    delay=MS: each echo comes late.
    """

    def test_tcpclientTimesOutOnlyWhenTheDelayExceedsItsTimeout(self) -> None:
        """
        With delay=1500, tcpclient --timeout 1 fails as a timeout (75) with
        nothing back; --timeout 5 gets the whole echo (0).
        """
        _, port = serve(self, "delay=1500")
        self.assertEqual(
            oneShot(port, "-m", "hello", "--timeout", "1"),
            (os.EX_TEMPFAIL, b"", ["tcpclient: no reply for 1 s: 0 of 6 bytes came back"]),
        )
        self.assertEqual(oneShot(port, "-m", "hello", "--timeout", "5"), (0, b"hello\n", []))

    def test_aSocketGetsItsEchoOnlyAfterTheDelay(self) -> None:
        """
        A plain client gets nothing in the first half second of a 1 s delay,
        then its echo; the accept event names the fault.
        """
        server, port = serve(self, "delay=1000")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"ping")
            client.settimeout(0.5)
            with self.assertRaises(TimeoutError):
                client.recv(10)
            client.settimeout(WAIT)
            self.assertEqual(recvExactly(client, 4), b"ping")
        self.assertEqual(server.waitFor(lifecycle="accept")["fault"], ["delay"])


class ThrottleTests(SynchronousTestCase):
    """
    throttle=BYTES: the echo leaves at that rate.
    """

    def test_tcpclientGetsTheWholeEchoAtTheRate(self) -> None:
        """
        With throttle=40000, tcpclient's 40,000-byte file comes back whole
        (0), and no sooner than the rate allows (the server's close says how
        long it took).
        """
        server, port = serve(self, "throttle=40000")
        payload = pattern(40_000)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(payload)
        status, echoed, said = oneShot(port, "--file", path)
        self.assertEqual((status, said), (0, []))
        self.assertTrue(echoed == payload, "the echo differs")
        close = server.waitFor(lifecycle="close")
        # Two slices (a fiftieth of the rate each) may leave at once.
        self.assertGreaterEqual(close["duration_s"], (40_000 - 2 * 800) / 40_000)

    def test_aFastSenderIsHeldBackAndGetsEveryByte(self) -> None:
        """
        A plain client that sends 300,000 bytes as fast as it can against
        throttle=200000 gets every byte back, in order, at the rate.
        """
        server, port = serve(self, "throttle=200000")
        payload = pattern(300_000)
        self.assertTrue(echoWithHalfClose(port, payload) == payload, "the echo differs")
        close = server.waitFor(lifecycle="close")
        self.assertGreaterEqual(close["duration_s"], (300_000 - 2 * 4000) / 200_000)
        self.assertEqual((close["how"], close["bytes_out"]), ("fin", 300_000))


class StopReadingTests(SynchronousTestCase):
    """
    stop-reading-after=BYTES: the server reads no more, the client backs up.
    """

    def test_tcpclientTimesOutWithTheBytesReadEchoed(self) -> None:
        """
        With stop-reading-after=100, tcpclient sending 1 MiB gets 100 bytes
        back and then nothing: a timeout (75) that says how far it got.
        """
        _, port = serve(self, "stop-reading-after=100")
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(pattern(1 << 20))
        status, echoed, said = oneShot(port, "--file", path, "--timeout", "1")
        self.assertEqual(
            (status, echoed, said),
            (
                os.EX_TEMPFAIL,
                pattern(100),
                ["tcpclient: no reply for 1 s: 100 of 1048576 bytes came back"],
            ),
        )

    def test_plainSendsBlockOnceTheKernelsBuffersAreFull(self) -> None:
        """
        A plain client gets the first 100 bytes echoed, and its non-blocking
        sends soon fail with EAGAIN: the server reads nothing more, so TCP's
        flow control pushes back.
        """
        _, port = serve(self, "stop-reading-after=100")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(pattern(100))
            self.assertEqual(recvExactly(client, 100), pattern(100))
            client.setblocking(False)
            sent, blocked = 0, False
            chunk = bytes(1 << 16)
            while sent < 256 << 20:
                try:
                    sent += client.send(chunk)
                except BlockingIOError:
                    blocked = True
                    break
            self.assertTrue(blocked, f"{sent} bytes went out without the sends blocking")


class DropInputTests(SynchronousTestCase):
    """
    drop-input: read, never echoed.
    """

    def test_tcpclientSeesTheServerCloseEarly(self) -> None:
        """
        tcpclient's request is read and dropped; at its FIN the server
        closes: closed early (76), nothing back.
        """
        _, port = serve(self, "drop-input")
        self.assertEqual(
            oneShot(port, "-m", "hello"),
            (
                os.EX_PROTOCOL,
                b"",
                ["tcpclient: server closed the connection early: 0 of 6 bytes came back"],
            ),
        )

    def test_aSocketGetsNothingBackAndAFin(self) -> None:
        """
        A plain client's 100,000 bytes are all read, none echoed, and the
        connection ends with FIN; the close says what was read.
        """
        server, port = serve(self, "drop-input")
        self.assertEqual(echoWithHalfClose(port, pattern(100_000)), b"")
        close = server.waitFor(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_in"], close["bytes_out"]), ("fin", 100_000, 0))


class CloseAfterTests(SynchronousTestCase):
    """
    close-after=BYTES: the echo is cut short by a FIN.
    """

    def test_tcpclientSeesTheServerCloseEarly(self) -> None:
        """
        With close-after=5, tcpclient gets "hello" of its 12 bytes, then FIN:
        closed early (76).
        """
        _, port = serve(self, "close-after=5")
        self.assertEqual(
            oneShot(port, "-m", "hello", "-m", "world"),
            (
                os.EX_PROTOCOL,
                b"hello",
                ["tcpclient: server closed the connection early: 5 of 12 bytes came back"],
            ),
        )

    def test_aSocketStillSendingGetsFinNotReset(self) -> None:
        """
        A plain client still sending a megabyte when the server has sent its
        1000 bytes gets exactly those and a FIN, never a reset: the server
        reads on until the client's own FIN.
        """
        server, port = serve(self, "close-after=1000")
        payload = pattern(1 << 20)
        self.assertTrue(echoWithHalfClose(port, payload) == payload[:1000], "not the first 1000")
        close = server.waitFor(lifecycle="close")
        self.assertEqual(
            {k: close[k] for k in ("initiator", "how", "fault", "bytes_in", "bytes_out")},
            {
                "initiator": "local",
                "how": "fin",
                "fault": "close-after",
                "bytes_in": 1 << 20,
                "bytes_out": 1000,
            },
        )


class ResetAfterTests(SynchronousTestCase):
    """
    reset-after=BYTES: the echo is cut short by a RST.
    """

    def test_tcpclientSeesAReset(self) -> None:
        """
        With reset-after=3, tcpclient gets 3 bytes and a reset (76).
        """
        _, port = serve(self, "reset-after=3")
        self.assertEqual(
            oneShot(port, "-m", "hello", "-m", "world"),
            (
                os.EX_PROTOCOL,
                b"hel",
                ["tcpclient: connection reset by the server: 3 of 12 bytes came back"],
            ),
        )

    def test_aSocketGetsTheBytesThenConnectionReset(self) -> None:
        """
        A plain client reads the 3 bytes and then ECONNRESET; the server's
        close says how=reset, initiator=local, fault=reset-after.
        """
        server, port = serve(self, "reset-after=3")
        self.assertEqual(readUntilReset(port, b"hello"), (3, True))
        close = server.waitFor(lifecycle="close")
        self.assertEqual(
            {k: close[k] for k in ("initiator", "how", "fault", "bytes_out")},
            {"initiator": "local", "how": "reset", "fault": "reset-after", "bytes_out": 3},
        )

    def test_theEventsFileHasTheFaultFields(self) -> None:
        """
        With --events, the file's accept names the faults drawn and its
        close the one that reset the connection, as twist's log does.
        """
        path = temporaryDirectory(self) / "events.jsonl"
        server, port = serve(self, "reset-after=3,delay=1", extra=("--events", str(path)))
        self.assertEqual(readUntilReset(port, b"hello"), (3, True))
        self.assertEqual(server.signal(), -signal.SIGTERM)
        byPhase = {event["lifecycle"]: event for event in eventLines(path)}
        self.assertEqual(byPhase["accept"]["fault"], ["delay", "reset-after"])
        self.assertEqual(
            {k: byPhase["close"][k] for k in ("initiator", "how", "fault")},
            {"initiator": "local", "how": "reset", "fault": "reset-after"},
        )


class HalfCloseFirstTests(SynchronousTestCase):
    """
    half-close-first: the server's FIN comes first, and it keeps reading.
    """

    def test_tcpclientSeesTheServerCloseEarly(self) -> None:
        """
        tcpclient gets the server's FIN before any echo: closed early (76).
        """
        _, port = serve(self, "half-close-first")
        self.assertEqual(
            oneShot(port, "-m", "hello"),
            (
                os.EX_PROTOCOL,
                b"",
                ["tcpclient: server closed the connection early: 0 of 6 bytes came back"],
            ),
        )

    def test_aSocketReadsEofAtOnceAndMaySendOn(self) -> None:
        """
        A plain client reads EOF before sending anything; what it sends
        afterwards is still read by the server (no reset), and its own FIN
        ends the connection.
        """
        server, port = serve(self, "half-close-first")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            self.assertEqual(client.recv(10), b"")
            client.sendall(b"still here")
            client.shutdown(socket.SHUT_WR)
            self.assertEqual(recvUntilEOF(client), b"")
        half = server.waitFor(lifecycle="half-close")
        self.assertEqual(half["initiator"], "local")
        close = server.waitFor(lifecycle="close")
        self.assertEqual(
            {k: close[k] for k in ("initiator", "how", "fault", "bytes_in")},
            {"initiator": "local", "how": "fin", "fault": "half-close-first", "bytes_in": 10},
        )


class AcceptDelayTests(SynchronousTestCase):
    """
    accept-delay=MS: connections wait in the kernel's queue.
    """

    def test_tcpclientConnectsAtOnceAndTimesOutWaitingForItsEcho(self) -> None:
        """
        With accept-delay=3000, tcpclient --timeout 1 connects (the kernel
        completes the handshake) but gets no echo in time: a timeout (75)
        on the reply, not on the connect.
        """
        _, port = serve(self, "accept-delay=3000")
        self.assertEqual(
            oneShot(port, "-m", "hello", "--timeout", "1"),
            (os.EX_TEMPFAIL, b"", ["tcpclient: no reply for 1 s: 0 of 6 bytes came back"]),
        )

    def test_aSocketIsServedOnlyAfterTheDelay(self) -> None:
        """
        A plain client connects, sends, and gets nothing in the first half
        second of a 1 s accept delay; then it is accepted (fault
        accept-delay) and echoed.
        """
        server, port = serve(self, "accept-delay=1000")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"queued")
            client.settimeout(0.5)
            with self.assertRaises(TimeoutError):
                client.recv(10)
            self.assertEqual(server.of(lifecycle="accept"), [])
            client.settimeout(WAIT)
            self.assertEqual(recvExactly(client, 6), b"queued")
        self.assertEqual(server.waitFor(lifecycle="accept")["fault"], ["accept-delay"])


class NeverAcceptTests(SynchronousTestCase):
    """
    never-accept: the backlog fills, then connects hang.
    """

    def fillQueue(self, port: int, count: int) -> None:
        for _ in range(count):
            queued = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            self.addCleanup(queued.close)

    def test_tcpclientTimesOutOnTheReplyThenOnTheConnect(self) -> None:
        """
        With --backlog 1: while there is room in the queue, tcpclient
        connects and times out waiting for the echo (its connection stays in
        the queue, reset); once the queue is full (backlog + 1), its connect
        itself times out.  Both are 75.
        """
        server, port = serve(self, "never-accept", extra=("--backlog", "1"))
        self.assertEqual(
            oneShot(port, "-m", "hello", "--timeout", "1"),
            (os.EX_TEMPFAIL, b"", ["tcpclient: no reply for 1 s: 0 of 6 bytes came back"]),
        )
        self.fillQueue(port, 1)
        self.assertEqual(
            oneShot(port, "-m", "hello", "--timeout", "1"),
            (
                os.EX_TEMPFAIL,
                b"",
                [
                    f"tcpclient: cannot connect to 127.0.0.1:{port}: no connection within 1 s "
                    "(nothing answered; is the host up, or a firewall dropping packets?)"
                ],
            ),
        )
        self.assertEqual(server.of(lifecycle="accept"), [])

    def test_backlogPlusOneSocketsConnectAndTheNextHangs(self) -> None:
        """
        With --backlog 2, three plain clients connect and wait unserved; the
        kernel drops the fourth one's SYN; accept-paused says why.
        """
        server, port = serve(self, "never-accept", extra=("--backlog", "2"))
        self.fillQueue(port, 3)
        with socket.socket() as late:
            late.settimeout(1.0)
            with self.assertRaises(TimeoutError):
                late.connect(("127.0.0.1", port))
        paused = server.waitFor(lifecycle="accept-paused")
        self.assertEqual((paused["reason"], paused["backlog"]), ("never-accept (fault)", 2))
        self.assertEqual(server.of(lifecycle="accept"), [])


class ShareAndSeedTests(SynchronousTestCase):
    """
    p= picks a share of connections, the same ones again with --seed.
    """

    def faultedInOrder(self, seed: str, count: int = 12) -> list[tuple[str, ...]]:
        server, port = serve(self, "reset-after=0,p=0.5", extra=("--seed", seed))
        for _ in range(count):
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            except ConnectionResetError:
                # The server's reset came before connect() had its answer
                # (a busy machine): the fault, seen early.
                continue
            with client:
                try:
                    client.sendall(b"x")
                    client.shutdown(socket.SHUT_WR)
                except (ConnectionResetError, BrokenPipeError):
                    pass
                recvUntilEOFOrReset(client)
        waitForCount(server, count, lifecycle="close")
        accepts = sorted(server.of(lifecycle="accept"), key=lambda e: e["conn_id"])
        return [tuple(accept.get("fault", ())) for accept in accepts]

    def test_theSeedPicksTheSameConnectionsInAcceptOrder(self) -> None:
        """
        Twelve connections one after another against --seed 7: the ones
        reset are those FaultPlan draws from seed 7, in accept order, both
        times the server is run; some are, some are not.
        """
        plan = FaultPlan([parseFaultSpec("reset-after=0,p=0.5")], 7)
        expected = [plan.take().kinds for _ in range(12)]
        self.assertTrue(0 < expected.count(()) < 12)
        self.assertEqual(self.faultedInOrder("7"), expected)
        self.assertEqual(self.faultedInOrder("7"), expected)

    def test_loadModeCountsTheResetsAsResets(self) -> None:
        """
        A load run of a connection per message, against reset-after=0 for
        half the connections, counts those as reset errors, completes its
        messages on the others, and exits 1.
        """
        spec = "reset-after=0,p=0.5"
        # A seed whose first two connections are served: a run none of whose
        # first connections could be made would end there (as refused would).
        seed = next(
            seed
            for seed in range(100)
            if not any(FaultPlan([parseFaultSpec(spec)], seed).peek(i).kinds for i in (0, 1))
        )
        _, port = serve(self, spec, extra=("--seed", str(seed)))
        done, _ = runClient(
            "--port",
            str(port),
            *("--pattern", "connect", "-c", "2", "--count", "50", "--timeout", "2", "--json", "-"),
        )
        report = json.loads(done.stdout)
        self.assertEqual(done.returncode, 1, verdict(done))
        self.assertEqual(report["messages"], 50)
        self.assertGreater(report["errors"]["reset"], 0)
        self.assertEqual(
            sum(report["errors"].values()), report["errors"]["reset"], report["errors"]
        )


class UsageTests(SynchronousTestCase):
    """
    A bad spec is one line and status 64; --help describes every fault.
    """

    def test_aBadSpecIsOneLineAndStatus64(self) -> None:
        """
        twist tcpecho --fault dealy=5 prints one Error line naming the spec
        and exits 64, listening on nothing.
        """
        done = runTwist("tcpecho", "--port", "0", "--fault", "dealy=5")
        self.assertEqual(done.returncode, 64)
        [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        self.assertTrue(
            error.startswith("Error: --fault 'dealy=5' is not usable: 'dealy' is no fault"), error
        )

    def test_helpListsEveryFault(self) -> None:
        """
        twist tcpecho --help names each fault.
        """
        from tcplife.server import KINDS

        done = runTwist("tcpecho", "--help")
        text = " ".join(done.stdout.split())
        for kind in KINDS:
            self.assertIn(kind, text.replace("- ", "-"))
