"""
The README's examples run as written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tcplife.tap.echo import Options, makeService

from ..helpers import WAIT, TwistProcess, echoWithHalfClose, freePort, portOf, readLine
from ..servers import temporaryDirectory

README = Path(__file__).parent.parent.parent / "README.md"


def exampleCode(name: str, language: str = "python") -> str:
    """
    The fenced block (of C{language}) that follows C{<!-- example: name -->}.
    """
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\s*```{language}\n(.*?)```", text, re.DOTALL
    )
    assert match is not None, f"README has no example named {name}"
    return match.group(1)


def shellCommands(name: str) -> list[list[str]]:
    """
    The commands of the README's shell example C{name}, split into words as
    a shell splits them (quotes and backslashes, comments dropped).
    """
    return [shlex.split(line, comments=True) for line in exampleCode(name, "sh").splitlines()]


class UpperEchoExampleTests(SynchronousTestCase):
    """
    The README's subclass example serves as documented.
    """

    def test_upperEchoServedByTwistWithLifecycleEvents(self) -> None:
        """
        The README's C{UpperEcho}, saved as C{upper_echo.py} and served with
        C{twist tcpecho --protocol upper_echo.UpperEcho}, shouts the echo back
        and still logs accept, half-close and close.
        """
        code = exampleCode("upper_echo.py")
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "upper_echo.py").write_text(code, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(directory))
        server = TwistProcess(
            "tcpecho",
            "--protocol",
            "upper_echo.UpperEcho",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            env=env,
        )
        self.addCleanup(server.kill)
        port = int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])
        self.assertEqual(echoWithHalfClose(port, b"quiet please\n"), b"QUIET PLEASE\n")
        close = server.waitFor(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_out"]), ("fin", 13))
        accepted = server.waitFor(lifecycle="accept")
        self.assertEqual(accepted["conn_id"], close["conn_id"])
        server.waitFor(lifecycle="half-close", conn_id=close["conn_id"])


class ProgramLog:
    """
    A Python program in a subprocess, its text log read line by line as it
    comes, by a thread.
    """

    def __init__(self, test: SynchronousTestCase, program: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(program)],
            cwd=program.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        test.addCleanup(self.stop)
        self.lines: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._arrived:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self._arrived.notify_all()

    def waitFor(self, text: str) -> int:
        """
        The index of the first line (already read or still to come) that
        holds C{text}; fails after L{WAIT} seconds.
        """
        deadline = time.monotonic() + WAIT
        with self._arrived:
            while True:
                for index, line in enumerate(self.lines):
                    if text in line:
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no line with {text!r} in {self.lines}")
                self._arrived.wait(remaining)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(WAIT)
        self._reader.join(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()


class ServeInYourProgramTests(SynchronousTestCase):
    """
    The README's program that serves a subclass holds the cap it sets.
    """

    def test_programLogsAndHoldsItsCap(self) -> None:
        """
        The README's C{serve_upper.py}, run as written (on a free port of
        127.0.0.1), logs C{listen}, shouts each echo back, and with its 100
        connections open leaves the 101st client waiting until one closes.
        """
        code = exampleCode("serve_upper.py")
        self.assertIn('"tcp:9000:backlog=128"', code)
        self.assertIn("maxConnections=100", code)
        directory = temporaryDirectory(self)
        (directory / "upper_echo.py").write_text(exampleCode("upper_echo.py"), encoding="utf-8")
        program = directory / "serve_upper.py"
        program.write_text(code.replace("tcp:9000:", "tcp:0:interface=127.0.0.1:"))
        log = ProgramLog(self, program)
        listen = log.lines[log.waitFor("listen on 127.0.0.1:")]
        port = portOf(listen.rsplit(" (backlog 128)", 1)[0])

        clients = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(100)]
        self.addCleanup(lambda: [client.close() for client in clients])
        for client in clients:
            client.sendall(b"quiet\n")
            self.assertEqual(readLine(client), b"QUIET\n")
        paused = log.lines[log.waitFor("accept-paused")]
        self.assertIn("(max-connections): 100 open", paused)
        late = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(late.close)
        late.sendall(b"late\n")
        clients[0].close()
        self.assertEqual(readLine(late), b"LATE\n")
        self.assertLess(log.waitFor("close #1 "), log.waitFor("accept #101 "))


class ShellExampleTests(SynchronousTestCase):
    """
    The README's shell examples mean, to a shell, what the README says.
    """

    def test_tcpechoCommandsParseAsAShellPassesThem(self) -> None:
        """
        Every command of the README's C{twist tcpecho} examples, split as a
        shell splits it, is accepted by tcpecho's options; the tcp6 one
        listens on IPv6's every address (C{::}), the unix one on its path.
        """
        directory = temporaryDirectory(self)
        (directory / "upper_echo.py").write_text(exampleCode("upper_echo.py"), encoding="utf-8")
        sys.path.insert(0, str(directory))
        self.addCleanup(sys.path.remove, str(directory))
        self.addCleanup(sys.modules.pop, "upper_echo", None)
        for words in shellCommands("tcpecho-commands"):
            self.assertEqual(words[0], "twist", words)
            options = Options()
            options.parseOptions(words[words.index("tcpecho") + 1 :])
            if options["listen"]:
                reactor = MemoryReactorClock()
                makeService(options, reactor).startService()
                [(port, _, _, interface)] = reactor.tcpServers
                self.assertEqual((port, interface), (9000, "::"))
                self.assertEqual([s[0] for s in reactor.unixServers], ["/run/echo.sock"])

    def test_tlsCommandsServeTheCertificateTheyMake(self) -> None:
        """
        The README's TLS example, run in an empty folder: its openssl command
        makes a key and a certificate that C{twist tcpecho --listen ssl:...}
        serves (on a free port here) to a client that verifies it for
        localhost with that certificate as its only trust root.
        """
        makeCertificate, serve, _ = shellCommands("tls-commands")
        if not shutil.which(makeCertificate[0]):
            raise SkipTest("openssl is not installed")
        directory = temporaryDirectory(self)
        subprocess.run(
            makeCertificate, cwd=directory, check=True, capture_output=True, timeout=WAIT
        )
        port = freePort()
        listen = serve[serve.index("--listen") + 1].replace(
            "ssl:9443:", f"ssl:{port}:interface=127.0.0.1:"
        )
        server = TwistProcess("tcpecho", "--listen", listen, cwd=str(directory))
        self.addCleanup(server.kill)
        self.assertEqual(portOf(server.waitFor(lifecycle="listen")["address"]), port)
        context = ssl.create_default_context(cafile=str(directory / "cert.pem"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="localhost") as client:
            client.sendall(b"over TLS\n")
            self.assertEqual(readLine(client), b"over TLS\n")
