"""
The README's client examples run as written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT, TwistProcess
from ..servers import runClient, temporaryDirectory, verdict
from .test_readme import exampleCode


class ClientExampleTests(SynchronousTestCase):
    """
    The README's client subclass and library examples work as documented.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        for name in ("upper_echo.py", "upper_client.py", "echo_once.py"):
            (self.directory / name).write_text(exampleCode(name), encoding="utf-8")
        self.env = dict(os.environ, PYTHONPATH=str(self.directory))

    def serve(self, *args: str) -> int:
        server = TwistProcess(
            "tcpecho", "--port", "0", "--interface", "127.0.0.1", *args, env=self.env
        )
        self.addCleanup(server.kill)
        return int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])

    def test_upperClientAgainstUpperEcho(self) -> None:
        """
        The README's C{UpperClient}, run with C{--protocol
        upper_client.UpperClient} against the README's C{UpperEcho} server,
        prints the shouted echo and exits 0; the plain client fails there,
        with the line the README shows.
        """
        code = exampleCode("upper_client.py")
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        port = self.serve("--protocol", "upper_echo.UpperEcho")
        done, _ = runClient(
            "--protocol",
            "upper_client.UpperClient",
            "--port",
            str(port),
            "-m",
            "quiet please",
            env=self.env,
        )
        self.assertEqual((done.returncode, done.stdout), (0, b"QUIET PLEASE\n"), verdict(done))
        plain, _ = runClient("--port", str(port), "-m", "quiet please", env=self.env)
        self.assertEqual(plain.returncode, 65)
        self.assertEqual(
            verdict(plain), ["tcpclient: echo differs at offset 0: expected 0x71 'q', got 0x51 'Q'"]
        )

    def echoOnce(self, port: int) -> subprocess.CompletedProcess[str]:
        """
        Run the README's C{echo_once.py} against the server on C{port}.
        """
        return subprocess.run(
            [sys.executable, "echo_once.py", f"tcp:127.0.0.1:{port}"],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    def test_libraryExampleEchoesOnce(self) -> None:
        """
        The README's C{echo_once.py}, given a server's endpoint, prints the
        outcome and exits 0.
        """
        done = self.echoOnce(self.serve())
        self.assertEqual((done.returncode, done.stdout), (0, "all 6 bytes came back identical\n"))

    def test_libraryExampleExitsNonZeroWhenTheEchoDiffers(self) -> None:
        """
        The README's C{echo_once.py}, against a server that changes a byte
        of the echo, prints where the echo differs and exits 1.
        """
        self.env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent.parent.parent)
        done = self.echoOnce(self.serve("--protocol", "tests.servers.Corrupting"))
        self.assertEqual(
            (done.returncode, done.stdout),
            (1, "echo differs at offset 5: expected 0x0a, got 0xf5\n"),
            done.stderr,
        )
