"""
systemd socket activation: C{twist tcpecho --listen systemd:...} under
C{systemd-socket-activate}, and the units in C{contrib/}.
"""

from __future__ import annotations

import configparser
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..helpers import BIN, WAIT, TwistProcess, echoWithHalfClose, freePort

CONTRIB = Path(__file__).parent.parent.parent / "contrib"
UNITS = ("tcpecho.socket", "tcpecho.service")


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin")
    if found is None:
        raise SkipTest(f"{name} is not installed (.ci/run installs systemd)")
    return found


def launcherListening(server: TwistProcess) -> None:
    """
    Wait until systemd-socket-activate reports (on stderr) that it listens;
    only then can a client connect.
    """
    stderr = server.process.stderr
    assert stderr is not None
    ready, _, _ = select.select([stderr], [], [], WAIT)
    assert ready, "systemd-socket-activate did not start listening"
    line = stderr.readline()
    assert b"Listening on" in line, line


def readUnit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(CONTRIB / name, encoding="utf-8")
    return unit


class ActivationTests(SynchronousTestCase):
    """
    tcpecho adopts the listening socket that a socket-activating launcher
    passes it.
    """

    def activated(self, fdname: str | None, *args: str) -> tuple[TwistProcess, int]:
        """
        C{twist tcpecho ARGS} behind systemd-socket-activate on a loopback
        port; it starts on the first connection.
        """
        port = freePort()
        launcher = [tool("systemd-socket-activate"), "-l", f"127.0.0.1:{port}"]
        if fdname is not None:
            launcher.append(f"--fdname={fdname}")
        server = TwistProcess("tcpecho", *args, launcher=launcher)
        self.addCleanup(server.kill)
        launcherListening(server)
        return server, port

    def test_adoptsTheInheritedSocketByIndex(self) -> None:
        """
        With C{--listen systemd:domain=INET:index=0}, the first client (which
        starts the process) and a second one are echoed, listen reports the
        inherited address, accept shows it as local, and SIGTERM stops
        cleanly.
        """
        server, port = self.activated("tcpecho", "--listen", "systemd:domain=INET:index=0")
        self.assertEqual(echoWithHalfClose(port, b"first, queued"), b"first, queued")
        listen = server.waitFor(lifecycle="listen")
        self.assertEqual(
            (listen["address"], listen["endpoint"]),
            (f"127.0.0.1:{port}", "systemd:domain=INET:index=0"),
        )
        self.assertEqual(echoWithHalfClose(port, b"second"), b"second")
        accepts = [server.waitFor(lifecycle="accept", conn_id=n) for n in (1, 2)]
        self.assertEqual({a["local"] for a in accepts}, {f"127.0.0.1:{port}"})
        close = server.waitFor(lifecycle="close", conn_id=2)
        self.assertEqual((close["how"], close["bytes_in"]), ("fin", 6))
        status = server.signal(signal.SIGTERM)
        server.waitFor(lifecycle="stop-listening")
        self.assertIn(status, (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_unnamedSocketIsIgnoredWithAClearError(self) -> None:
        """
        Without C{--fdname} the launcher sets no LISTEN_FDNAMES, Twisted
        ignores the socket, and tcpecho ends with one clear error (64).
        """
        server, port = self.activated(None, "--listen", "systemd:domain=INET:index=0")
        # Connecting starts the process, which dies with the socket unused.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT):
            self.assertEqual(server.finish(), 64)
        self.assertIn(
            "Error: --listen 'systemd:domain=INET:index=0' is not usable: no such "
            "inherited socket (is the process socket-activated?).",
            server.stderr_text(),
        )


class ContribUnitTests(SynchronousTestCase):
    """
    C{contrib/tcpecho.socket} and C{contrib/tcpecho.service} work together.
    """

    def test_serviceCommandServesTheSocketUnitsSocketWithAWorkerPerCPU(self) -> None:
        """
        The service's ExecStart (with this venv's twist), given the socket
        named as the socket unit names it, runs a worker per CPU on that one
        socket, each listening at its address; clients are echoed, and
        SIGTERM to the supervisor alone (the unit's KillMode=mixed) drains
        every worker and stops as twist does.
        """
        socketUnit = readUnit("tcpecho.socket")["Socket"]
        listenStream = socketUnit["ListenStream"]
        fdname = socketUnit["FileDescriptorName"]
        service = readUnit("tcpecho.service")["Service"]
        command = shlex.split(service["ExecStart"])
        self.assertEqual(command[0], "/opt/tcplife/bin/twist")
        # TwistProcess asks for JSON itself, to read the events.
        self.assertEqual(command[1:3], ["--log-format", "text"])
        args = command[3:]
        self.assertIn(f"systemd:domain=INET:name={fdname}", args)
        self.assertEqual(args[args.index("--workers") + 1], "auto")
        self.assertEqual(service["KillMode"], "mixed")
        host, _, _ = listenStream.rpartition(":")
        self.assertEqual(host, "0.0.0.0", "domain=INET needs an IPv4 ListenStream")

        port = freePort()
        launcher = [
            tool("systemd-socket-activate"),
            f"--fdname={fdname}",
            "-l",
            f"127.0.0.1:{port}",
        ]
        server = TwistProcess(*args, launcher=launcher)
        self.addCleanup(server.kill)
        launcherListening(server)
        self.assertEqual(echoWithHalfClose(port, b"from the unit"), b"from the unit")
        cpus = len(os.sched_getaffinity(0))
        for worker in range(cpus + 1):
            listen = server.waitFor(lifecycle="listen", worker=worker)
            self.assertEqual(listen["address"], f"127.0.0.1:{port}")
        for n in range(4):
            self.assertEqual(echoWithHalfClose(port, b"%d" % n), b"%d" % n)
        status = server.signal(signal.SIGTERM)
        self.assertEqual(
            sorted(e["worker"] for e in server.of(lifecycle="drained")), list(range(1, cpus + 1))
        )
        self.assertIn(status, (-signal.SIGTERM, 128 + signal.SIGTERM))

    def test_unitsPassSystemdAnalyzeVerify(self) -> None:
        """
        systemd-analyze verify finds nothing to say about the units (with
        ExecStart pointing at a twist that exists here).
        """
        analyze = tool("systemd-analyze")
        directory = Path(self.mktemp())
        directory.mkdir()
        for name in UNITS:
            text = (CONTRIB / name).read_text(encoding="utf-8")
            (directory / name).write_text(
                text.replace("/opt/tcplife/bin/twist", str(BIN / "twist")), encoding="utf-8"
            )
        result = subprocess.run(
            [analyze, "verify", *UNITS],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        mentions = [
            line for line in (result.stdout + result.stderr).splitlines() if "tcpecho" in line
        ]
        self.assertEqual((result.returncode, mentions), (0, []))
