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
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tcplife.tap.echo import Options, makeService

from ..helpers import (
    WAIT,
    TwistProcess,
    echoWithHalfClose,
    freePort,
    portOf,
    readLine,
    recvUntilEOF,
)
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

    def test_faultCommandsParseAndTheFullBacklogIsAsSaid(self) -> None:
        """
        Every command of the README's fault examples is accepted by tcpecho's
        options; the never-accept one, run (on a free port), lets five
        clients connect (backlog 4, plus one) and the sixth hang.
        """
        commands = shellCommands("fault-commands")
        for words in commands:
            self.assertEqual(words[0], "twist", words)
            Options().parseOptions(words[words.index("tcpecho") + 1 :])
        [full] = [words for words in commands if "never-accept" in words]
        args = full[full.index("tcpecho") + 1 :]
        args[args.index("--port") + 1] = "0"
        server = TwistProcess("tcpecho", *args, "--interface", "127.0.0.1")
        self.addCleanup(server.kill)
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        for _ in range(5):
            queued = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            self.addCleanup(queued.close)
        with socket.socket() as sixth:
            sixth.settimeout(1.0)
            with self.assertRaises(TimeoutError):
                sixth.connect(("127.0.0.1", port))

    def test_reflectLineIsAsShown(self) -> None:
        """
        The README's --reflect session: the JSON line with the name and both
        addresses, then the echo.
        """
        server = TwistProcess(
            "tcpecho", "--port", "0", "--interface", "127.0.0.1", "--reflect", "--name", "web-1"
        )
        self.addCleanup(server.kill)
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"hello\n")
            client.shutdown(socket.SHUT_WR)
            line, echo = recvUntilEOF(client).split(b"\n", 1)
            own = client.getsockname()
        self.assertEqual(
            line.decode(),
            f'{{"server": "web-1", "client": "127.0.0.1:{own[1]}", "local": "127.0.0.1:{port}"}}',
        )
        self.assertEqual(echo, b"hello\n")

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
