"""
Graceful drain on SIGTERM, SIGINT and SIGHUP, with C{twist tcpecho} as a user runs it.
"""

from __future__ import annotations

import signal
import socket

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import (
    WAIT,
    TwistProcess,
    echoWithHalfClose,
    recvExactly,
    recvUntilEOF,
    recvUntilEOFOrReset,
    startTcpecho,
)


def hangupAsATerminalDelivers() -> None:
    """
    For C{preexec_fn}: SIGHUP at its default, as under a terminal (a test run
    started with C{nohup} would pass it on ignored).
    """
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def hangupIgnored() -> None:
    """
    For C{preexec_fn}: SIGHUP ignored, as C{nohup} starts a command.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class DrainTests(SynchronousTestCase):
    """
    A signal stops listening at once and lets open connections finish.
    """

    def start(self, *args: str) -> tuple[TwistProcess, int]:
        return startTcpecho(self, *args, preexec_fn=hangupAsATerminalDelivers)

    def connect(self, port: int) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(client.close)
        return client

    def test_openConnectionFinishesAfterSigterm(self) -> None:
        """
        After SIGTERM new clients are refused, an open client still gets its
        echo in full when it half-closes, and the process then exits as twist
        does after a signal, counting it as ended by its peer.
        """
        server, port = self.start()
        client = self.connect(port)
        client.sendall(b"before ")
        self.assertEqual(recvExactly(client, 7), b"before ")

        server.process.send_signal(signal.SIGTERM)
        server.waitFor(lifecycle="stop-listening")
        self.assertEqual(server.waitFor(lifecycle="drain")["open"], 1)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()

        client.sendall(b"after" * 10_000)
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"after" * 10_000)
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (1, 0, 0),
        )
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_sigintDrainsToo(self) -> None:
        """
        SIGINT (Ctrl-C) drains like SIGTERM.
        """
        server, port = self.start()
        client = self.connect(port)
        client.sendall(b"x")
        recvExactly(client, 1)
        server.process.send_signal(signal.SIGINT)
        server.waitFor(lifecycle="drain")
        client.close()
        server.waitFor(lifecycle="drained")
        self.assertIn(server.finish(), (-signal.SIGINT, 128 + signal.SIGINT))

    def connectQueued(self, port: int, request: bytes) -> socket.socket:
        """
        A client that sends C{request} and half-closes while it waits in the
        kernel's accept queue.
        """
        client = self.connect(port)
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        return client

    def test_clientsQueuedAtSigtermAreServedWithinTheCap(self) -> None:
        """
        With --max-connections 1, three clients waiting in the kernel's queue
        with their requests sent when SIGTERM comes are not reset: each gets
        its whole echo once the one before it closes, one at a time.
        """
        server, port = self.start("--max-connections", "1")
        first = self.connect(port)
        first.sendall(b"first ")
        self.assertEqual(recvExactly(first, 6), b"first ")
        server.waitFor(lifecycle="accept-paused")
        queued = [self.connectQueued(port, b"queued %d" % n * 1000) for n in range(3)]

        server.process.send_signal(signal.SIGTERM)
        drain = server.waitFor(lifecycle="drain")
        first.sendall(b"last")
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(first), b"last")
        for n, client in enumerate(queued):
            self.assertEqual(recvUntilEOF(client), b"queued %d" % n * 1000)
        self.assertEqual((drain["open"], drain["queued"]), (1, 3))
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["unserved"]),
            (4, 0, 0),
        )
        phases = [
            e["lifecycle"] for e in server.events if e.get("lifecycle") in ("accept", "close")
        ]
        self.assertEqual(phases, ["accept", "close"] * 4)
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_queuedClientsStillWaitingAtTheDeadlineAreCounted(self) -> None:
        """
        A queued client whose turn has not come by --shutdown-timeout is
        closed unserved, and the drained event counts it.
        """
        server, port = self.start(
            "--max-connections", "1", "--shutdown-timeout", "0.5", "--close-timeout", "0.5"
        )
        first = self.connect(port)
        first.sendall(b"x")
        recvExactly(first, 1)
        server.waitFor(lifecycle="accept-paused")
        waiting = self.connectQueued(port, b"never served")

        server.process.send_signal(signal.SIGTERM)
        self.assertEqual(server.waitFor(lifecycle="drain")["queued"], 1)
        self.assertEqual(recvUntilEOF(first), b"")
        # Its request was never read, so the close is a RST, or a FIN if
        # the RST is still on its way.
        self.assertEqual(recvUntilEOFOrReset(waiting), b"")
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["unserved"]),
            (0, 1, 1),
        )
        self.assertEqual(len(server.of(lifecycle="accept")), 1)
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_sighupDrainsLikeSigterm(self) -> None:
        """
        SIGHUP (the terminal running the server closed) stops listening and
        drains: an open client still gets its echo in full, and the process
        then dies of the signal, as twist does after SIGTERM.
        """
        server, port = self.start()
        client = self.connect(port)
        client.sendall(b"before ")
        self.assertEqual(recvExactly(client, 7), b"before ")

        server.process.send_signal(signal.SIGHUP)
        self.assertEqual(server.waitFor(lifecycle="drain")["open"], 1)
        client.sendall(b"after")
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"after")
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (1, 0, 0),
        )
        server.waitFor(lifecycle="close", initiator="peer", how="fin")
        self.assertIn(server.finish(), (-signal.SIGHUP, 128 + signal.SIGHUP))
        self.assertNotIn("Traceback", server.stderr_text())

    def test_sighupIgnoredByNohupStaysIgnored(self) -> None:
        """
        Started with SIGHUP ignored (nohup), the server goes on serving after
        a SIGHUP.
        """
        server, port = startTcpecho(self, preexec_fn=hangupIgnored)
        server.process.send_signal(signal.SIGHUP)
        self.assertEqual(echoWithHalfClose(port, b"still here"), b"still here")
        self.assertEqual(server.of(lifecycle="drain"), [])
        self.assertIn(server.signal(signal.SIGTERM), (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_deadlineClosesIdlePeersAndAbortsUndrained(self) -> None:
        """
        At --shutdown-timeout, a quiet client is closed gracefully (it reads
        EOF) and one that never reads its echo is aborted after the grace.
        """
        server, port = self.start("--shutdown-timeout", "0.5", "--close-timeout", "0.5")
        quiet = self.connect(port)
        hog = self.connect(port)
        hog.setblocking(False)
        sent = 0
        # Fill every buffer on the way back: the server cannot flush to hog.
        for _ in range(10_000):
            try:
                sent += hog.send(b"z" * 65536)
            except BlockingIOError:
                break
        server.waitFor(
            lifecycle="accept", conn_id=server.waitFor(lifecycle="accept")["conn_id"] + 1
        )

        server.process.send_signal(signal.SIGTERM)
        self.assertEqual(server.waitFor(lifecycle="drain")["open"], 2)
        self.assertEqual(server.waitFor(lifecycle="drain-deadline")["open"], 2)
        self.assertEqual(recvUntilEOF(quiet), b"")
        self.assertEqual(server.waitFor(lifecycle="drain-abort")["open"], 1)
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual(
            (drained["ended_by_peer"], drained["closed_at_deadline"], drained["aborted"]),
            (0, 1, 1),
        )
        hows = sorted(event["how"] for event in server.of(lifecycle="close"))
        self.assertEqual(hows, ["abort", "fin"])
        self.assertGreater(sent, 0)
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_secondSignalEndsAtOnce(self) -> None:
        """
        A second SIGTERM during a long drain aborts what is open and exits
        without waiting for the deadline.
        """
        server, port = self.start("--shutdown-timeout", "600")
        client = self.connect(port)
        client.sendall(b"x")
        recvExactly(client, 1)
        server.process.send_signal(signal.SIGTERM)
        server.waitFor(lifecycle="drain")
        server.process.send_signal(signal.SIGTERM)
        abort = server.waitFor(lifecycle="drain-abort")
        self.assertEqual((abort["open"], abort["reason"]), (1, "second SIGTERM"))
        self.assertEqual(server.waitFor(lifecycle="drained")["aborted"], 1)
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))
        self.assertEqual([e for e in server.events if "log_failure" in e], [])
        self.assertNotIn("ReactorNotRunning", server.stderr_text())

    def test_hangupsAfterTheFirstDoNotAbortTheDrain(self) -> None:
        """
        A closing terminal sends SIGHUP more than once (the shell forwards
        its own, the kernel sends one to the foreground group): the drain the
        first began goes on, and the open client still gets its echo.
        """
        server, port = self.start()
        client = self.connect(port)
        client.sendall(b"x")
        recvExactly(client, 1)
        server.process.send_signal(signal.SIGHUP)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(lifecycle="drain")
        server.process.send_signal(signal.SIGHUP)
        client.sendall(b"still served")
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"still served")
        drained = server.waitFor(lifecycle="drained")
        self.assertEqual((drained["ended_by_peer"], drained["aborted"]), (1, 0))
        self.assertIn(server.finish(), (-signal.SIGHUP, 128 + signal.SIGHUP))
        self.assertEqual(server.of(lifecycle="drain-abort"), [])
        self.assertEqual([e for e in server.events if "log_failure" in e], [])
        self.assertNotIn("ReactorNotRunning", server.stderr_text())

    def test_hangupJustAfterSigtermKeepsItsStatus(self) -> None:
        """
        A SIGHUP on the heels of a SIGTERM (a terminal closing as the server
        is told to stop) neither stops the reactor twice nor changes the
        exit status from SIGTERM's.
        """
        server, port = self.start()
        # Serving: the reactor runs and its signal handlers are in place (the
        # listen event comes before the reactor starts).
        self.assertEqual(echoWithHalfClose(port, b"up"), b"up")
        server.process.send_signal(signal.SIGTERM)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(lifecycle="drained")
        self.assertIn(server.finish(), (-signal.SIGTERM, 128 + signal.SIGTERM))
        self.assertEqual([e for e in server.events if "log_failure" in e], [])
