"""
C{twist tcpecho --listen unix:PATH}: another server's socket is never
harmed, a failed start leaves no lock file behind, and failures say what to
do.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife.server._listening import describeListenFailure

from ..helpers import WAIT, TwistProcess, runTwist, unixEcho
from ..servers import temporaryDirectory


def deadPid() -> int:
    """
    The pid of a process that has just exited.
    """
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(WAIT)
    return process.pid


class UnixSocketOwnershipTests(SynchronousTestCase):
    """
    Two tcpecho processes and one UNIX path: the one listening keeps it.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.path = self.directory / "echo.sock"
        self.lock = Path(f"{self.path}.lock")

    def serve(self, description: str) -> TwistProcess:
        server = TwistProcess("tcpecho", "--listen", description)
        self.addCleanup(server.kill)
        server.waitFor(lifecycle="listen")
        return server

    def assertFailsInOneLine(self, *fragments: str) -> None:
        result = runTwist("tcpecho", "--listen", f"unix:{self.path}")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        [line] = result.stderr.strip().splitlines()
        for fragment in fragments:
            self.assertIn(fragment, line)

    def assertStillServing(self, server: TwistProcess) -> None:
        self.assertEqual(unixEcho(str(self.path), b"still mine"), b"still mine")
        server.waitFor(lifecycle="close", bytes_in=len(b"still mine"), bytes_out=len(b"still mine"))

    def test_failedStartsLeaveTheListeningServerAlone(self) -> None:
        """
        While one tcpecho listens on a path (without a lock file), a start on
        the same path fails with one line and leaves no lock file, and so
        does the next start: the first server keeps serving.
        """
        first = self.serve(f"unix:{self.path}:lockfile=0")
        for _ in range(2):
            self.assertFailsInOneLine(
                f"cannot listen on unix:{self.path}", "a server is listening on this socket"
            )
            self.assertFalse(os.path.lexists(self.lock), "a lock file was left behind")
        self.assertStillServing(first)

    def test_staleLockDoesNotUnlinkALiveSocket(self) -> None:
        """
        A lock file naming a dead process, beside a socket that another
        server listens on, is no leave to unlink that socket: the start
        fails with one line and the server keeps serving.
        """
        first = self.serve(f"unix:{self.path}:lockfile=0")
        os.symlink(str(deadPid()), self.lock)
        self.assertFailsInOneLine("a server is listening on this socket")
        self.assertStillServing(first)

    def test_secondServerOnALockedPathSaysSo(self) -> None:
        """
        A second tcpecho on the path a first one listens on (with its lock
        file) fails with one line; the first keeps its socket and its lock.
        """
        first = self.serve(f"unix:{self.path}")
        self.assertEqual(os.readlink(self.lock), str(first.process.pid))
        self.assertFailsInOneLine("a server is listening on this socket")
        self.assertEqual(os.readlink(self.lock), str(first.process.pid))
        self.assertStillServing(first)

    def test_socketAndLockOfAKilledServerAreReplaced(self) -> None:
        """
        A server killed with SIGKILL leaves its socket and lock file; nobody
        listens there, so the next start takes the path over and serves.
        """
        killed = self.serve(f"unix:{self.path}")
        killed.process.send_signal(signal.SIGKILL)
        killed.finish()
        self.assertTrue(os.path.lexists(self.lock) and self.path.exists())
        second = self.serve(f"unix:{self.path}")
        self.assertStillServing(second)

    def test_anotherListenerFailingRemovesTheSocketAndLock(self) -> None:
        """
        When a later --listen cannot listen, the UNIX socket already made
        and its lock file are removed before the process exits.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            busy = taken.getsockname()[1]
            result = runTwist(
                "tcpecho",
                "--listen",
                f"unix:{self.path}",
                "--listen",
                f"tcp:{busy}:interface=127.0.0.1",
            )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("Address already in use", result.stderr)
        self.assertFalse(os.path.lexists(self.path), "the socket was left behind")
        self.assertFalse(os.path.lexists(self.lock), "the lock file was left behind")

    def test_listenEventNamesTheBacklog(self) -> None:
        """
        The C{listen} event of a UNIX socket carries the backlog it listens
        with, as it does for TCP.
        """
        server = TwistProcess("tcpecho", "--listen", f"unix:{self.path}:backlog=7")
        self.addCleanup(server.kill)
        listen = server.waitFor(lifecycle="listen")
        self.assertEqual((listen["address"], listen["backlog"]), (f"unix:{self.path}", 7))

    def test_missingDirectoryIsNamed(self) -> None:
        """
        A path in a directory that does not exist: one line that says so.
        """
        self.path = self.directory / "no-such-directory" / "echo.sock"
        self.assertFailsInOneLine("that directory does not exist")


class UnixHintTests(SynchronousTestCase):
    """
    Failure lines for UNIX paths speak of files and directories, not ports.
    """

    def describe(self, cause: object) -> str:
        error = CannotListenError(None, b"/run/echo/echo.sock", cause)
        return describeListenFailure("unix:/run/echo/echo.sock", Failure(error))

    def test_permissionDeniedIsAboutTheDirectory(self) -> None:
        """
        EACCES on a UNIX path blames the directory's permissions, not
        privileged ports.
        """
        line = self.describe(OSError(errno.EACCES, os.strerror(errno.EACCES)))
        self.assertIn("no permission to create a file in that directory", line)
        self.assertNotIn("1024", line)

    def test_pathInTheWayWithNobodyListening(self) -> None:
        """
        EADDRINUSE where no server listens: the path is in the way and may
        be removed.
        """
        line = self.describe(OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)))
        self.assertIn("nobody listens on it; remove it", line)
        self.assertNotIn("port", line)
