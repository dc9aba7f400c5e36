"""
C{twist tcpecho} run as a user runs it: a subprocess, read through its log.
"""

from __future__ import annotations

import io
import shutil
import signal
import socket
import subprocess

from twisted.logger import eventsFromJSONLogFile
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..certs import SelfSigned
from ..helpers import (
    BIN,
    WAIT,
    TwistProcess,
    echoWithHalfClose,
    freePort,
    parseJSONRecords,
    pattern,
    portOf,
    runTwist,
)
from ..servers import temporaryDirectory


class TcpechoProcessTests(SynchronousTestCase):
    """
    The installed C{twist} serves echo and reports each step as JSON.
    """

    def start(self, *args: str) -> TwistProcess:
        process = TwistProcess("tcpecho", *args)
        self.addCleanup(process.kill)
        return process

    def test_jsonLifecycleFromListenToStopListening(self) -> None:
        """
        The server reports where it listens, echoes a client, logs accept,
        half-close and close with their fields, and on SIGTERM reports
        stop-listening and exits as twist does after a signal.
        """
        server = self.start("--port", "0", "--interface", "127.0.0.1", "--backlog", "9")
        listen = server.waitFor(lifecycle="listen")
        self.assertEqual(listen["backlog"], 9)
        port = portOf(listen["address"])
        self.assertNotEqual(port, 0)

        payload = pattern(100_000)
        self.assertTrue(echoWithHalfClose(port, payload) == payload)

        accept = server.waitFor(lifecycle="accept")
        self.assertEqual(accept["local"], f"127.0.0.1:{port}")
        self.assertTrue(accept["peer"].startswith("127.0.0.1:"))
        half = server.waitFor(lifecycle="half-close", conn_id=accept["conn_id"])
        self.assertEqual(half["initiator"], "peer")
        close = server.waitFor(lifecycle="close", conn_id=accept["conn_id"])
        self.assertEqual(
            {k: close[k] for k in ("initiator", "how", "bytes_in", "bytes_out")},
            {"initiator": "peer", "how": "fin", "bytes_in": 100_000, "bytes_out": 100_000},
        )
        self.assertGreaterEqual(close["duration_s"], 0)

        status = server.signal(signal.SIGTERM)
        stopped = server.waitFor(lifecycle="stop-listening")
        self.assertEqual(stopped["address"], listen["address"])
        # twist re-raises the signal after a clean stop: 128+15 to a shell.
        self.assertIn(status, (-signal.SIGTERM, 128 + signal.SIGTERM))
        self.assertNotIn("Traceback", server.stderr_text())

    def test_jsonLogIsRecordSeparatedAndReadableByTwisted(self) -> None:
        """
        twist's JSON log is RFC 7464 (each record led by 0x1e), and Twisted's
        own reader gets the lifecycle events back from it.
        """
        process = subprocess.Popen(
            [
                str(TwistProcess("x").args[0]),
                "--log-format",
                "json",
                "tcpecho",
                "--port",
                "0",
                "--interface",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        head = b""
        while b'"lifecycle": "listen"' not in head:
            line = process.stdout.readline()
            self.assertTrue(line, "twist exited before listening")
            self.assertTrue(line.startswith(b"\x1e{"), line[:20])
            head += line
        [listen] = [
            e for e in eventsFromJSONLogFile(io.StringIO(head.decode())) if "lifecycle" in e
        ]
        # An echo proves the reactor runs (and handles SIGTERM) before we signal.
        echoWithHalfClose(portOf(listen["address"]), b"x")
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=WAIT)
        events = list(eventsFromJSONLogFile(io.StringIO((head + rest).decode())))
        phases = [e["lifecycle"] for e in events if "lifecycle" in e]
        self.assertEqual(
            phases,
            ["listen", "accept", "half-close", "close", "stop-listening", "drain", "drained"],
        )

    def test_textFormatIsOneShortLinePerEvent(self) -> None:
        """
        With text logging, each lifecycle event is one human-readable line.
        """
        process = subprocess.Popen(
            [
                str(TwistProcess("x").args[0]),
                "--log-format",
                "text",
                "tcpecho",
                "--port",
                "0",
                "--interface",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        line = ""
        for _ in range(20):
            line = process.stdout.readline()
            if "listen on" in line:
                break
        self.assertIn("[tcplife#info] listen on 127.0.0.1:", line)
        port = portOf(line.split("listen on ")[1].split()[0])
        echoWithHalfClose(port, b"hi")
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=WAIT)
        lines = [line for line in rest.splitlines() if "[tcplife#" in line]
        self.assertRegex(lines[0], r"accept #\d+ from 127\.0\.0\.1:\d+ on 127\.0\.0\.1:\d+$")
        self.assertRegex(lines[1], r"half-close #\d+ by peer$")
        self.assertRegex(
            lines[2],
            r"close #\d+ by peer \(fin\): 2 bytes in, 2 bytes out, \d+\.\d{3} s, "
            r"rtt \d+\.\d{3} ms, \d+ retransmitted$",
        )
        self.assertRegex(lines[3], r"stop-listening on 127\.0\.0\.1:\d+$")

    def test_stdioEndpointIsNamedStdio(self) -> None:
        """
        With --listen stdio:, the echo goes to standard output and the
        events name the address C{stdio}, not an object's repr.
        """
        process = subprocess.Popen(
            [str(BIN / "twist"), "--log-file=+", "--log-format=json", "tcpecho", "--listen=stdio:"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdin and process.stdout and process.stderr
        process.stdin.write(b"hello\n")
        process.stdin.close()
        self.assertEqual(process.stdout.read(6), b"hello\n")
        process.send_signal(signal.SIGTERM)
        process.wait(WAIT)
        log = process.stderr.read()
        events = {e["lifecycle"]: e for e in parseJSONRecords(log) if "lifecycle" in e}
        self.assertEqual(
            (events["listen"]["address"], events["accept"]["peer"], events["accept"]["local"]),
            ("stdio", "stdio", "stdio"),
        )
        self.assertNotIn(b"object at 0x", log)

    def test_backlogReachesListen(self) -> None:
        """
        The --backlog value is what the kernel applies: ss shows it as the
        listening socket's Send-Q.
        """
        ss = shutil.which("ss")
        if ss is None:
            raise SkipTest("ss (iproute2) is not installed")
        server = self.start("--port", "0", "--interface", "127.0.0.1", "--backlog", "37")
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        out = subprocess.run(
            [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        # State Recv-Q Send-Q Local Peer
        self.assertEqual(out[:3], ["LISTEN", "0", "37"])

    def test_endpointTypeInAnyCase(self) -> None:
        """
        C{--listen TCP:...} listens as C{tcp:...} does.
        """
        server = self.start("--listen", "TCP:0:interface=127.0.0.1")
        port = portOf(server.waitFor(lifecycle="listen")["address"])
        self.assertEqual(echoWithHalfClose(port, b"upper case"), b"upper case")


class TcpechoFailureTests(SynchronousTestCase):
    """
    Bad input ends the process with one clear line and a non-zero status.
    """

    def assertOneLineFailure(
        self, result: subprocess.CompletedProcess[str], *fragments: str
    ) -> None:
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        for fragment in fragments:
            self.assertIn(fragment, result.stderr)

    def test_portInUse(self) -> None:
        """
        A port already bound: one line naming it, and the process ends.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            result = runTwist("tcpecho", "--port", str(port), "--interface", "127.0.0.1")
        self.assertOneLineFailure(result, f"127.0.0.1:{port}", "Address already in use")
        self.assertEqual(result.stderr.strip().count("\n"), 0, result.stderr)

    def test_noSuchInterface(self) -> None:
        """
        An address no interface has (TEST-NET-1): one line, the process ends.
        """
        result = runTwist("tcpecho", "--port", "0", "--interface", "192.0.2.1")
        self.assertOneLineFailure(result, "192.0.2.1", "no interface of this machine")

    def test_unknownInterfaceName(self) -> None:
        """
        An interface that is not an address or a known name: one line.
        """
        result = runTwist("tcpecho", "--port", "0", "--interface", "no-such-host.invalid")
        self.assertOneLineFailure(result, "no-such-host.invalid")

    def test_badOptionValuesExitWithUsageStatus(self) -> None:
        """
        Bad option values get twist's 'Error: ...' line and status 64.
        """
        for argv, fragment in [
            (["--port", "70000"], "--port must be a whole number from 0 to 65535, not '70000'"),
            (["--port", "abc"], "not 'abc'"),
            (["--backlog", "0"], "--backlog must be"),
            (["--backlog", "-3"], "not '-3'"),
            (["--listen", "nonsense:1"], "unknown endpoint type 'nonsense'"),
            (["--listen", "tcp:0", "--interface", "127.0.0.1"], "--interface applies to --port"),
        ]:
            result = runTwist("tcpecho", *argv)
            self.assertEqual(result.returncode, 64, (argv, result.stderr))
            output = result.stdout + result.stderr
            self.assertTrue(output.startswith("Error: "), output[:80])
            self.assertIn(fragment, output.splitlines()[0])
            self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_badEndpointDescriptionsExitWithUsageStatus(self) -> None:
        """
        Endpoint descriptions that used to fail only when listening (status
        1), to listen with a backlog of 0, or to end in OpenSSL's traceback
        get twist's 'Error: ...' line naming the problem, and status 64.
        """
        key = SelfSigned(temporaryDirectory(self)).key
        for argv, problem in [
            (["--listen", "tcp:70000"], "port must be a whole number from 0 to 65535"),
            (["--listen", "unix:"], "address must name a socket path, not ''"),
            (["--listen", "tcp:0:backlog=-5"], "backlog must be a whole number from 1 to 65535"),
            (["--metrics", "tcp:9100:bogus=1"], "unknown parameter 'bogus'"),
            (["--listen", f"ssl:0:privateKey={key}"], f"privateKey file '{key}' holds no cert"),
        ]:
            result = runTwist("tcpecho", *argv)
            self.assertEqual(result.returncode, 64, (argv, result.stderr))
            first = (result.stdout + result.stderr).splitlines()[0]
            self.assertTrue(
                first.startswith(f"Error: {argv[0]} '{argv[1]}' is not usable: "), first
            )
            self.assertIn(problem, first)
            self.assertNotIn("Traceback", result.stdout + result.stderr)


class ReusePortTests(SynchronousTestCase):
    """
    With --reuse-port, several tcpecho processes share one port.
    """

    def test_twoProcessesOnOnePortBothServe(self) -> None:
        """
        Two twist tcpecho --reuse-port on the same port both listen, and
        the kernel gives each of them some of 64 connections.
        """
        port = str(freePort())
        servers = []
        for _ in range(2):
            server = TwistProcess(
                "tcpecho", "--reuse-port", "--port", port, "--interface", "127.0.0.1"
            )
            self.addCleanup(server.kill)
            server.waitFor(lifecycle="listen")
            servers.append(server)
        for n in range(64):
            message = b"client %d" % n
            self.assertEqual(echoWithHalfClose(int(port), message), message)
        # Each process served at least one of them (the chance that the
        # kernel's hash sends all 64 to one is 2**-63).
        for server in servers:
            server.waitFor(lifecycle="close")

    def test_withoutReusePortTheSecondProcessCannotListen(self) -> None:
        """
        Without the option, a second tcpecho on the same port exits with
        the usual one-line error.
        """
        port = str(freePort())
        first = TwistProcess("tcpecho", "--reuse-port", "--port", port, "--interface", "127.0.0.1")
        self.addCleanup(first.kill)
        first.waitFor(lifecycle="listen")
        second = runTwist("tcpecho", "--port", port, "--interface", "127.0.0.1")
        self.assertNotEqual(second.returncode, 0)
        self.assertIn("Address already in use", second.stderr)

    def test_reusePortWithoutPortIsAnOptionError(self) -> None:
        """
        --reuse-port with only --listen endpoints is refused with status 64.
        """
        result = runTwist("tcpecho", "--reuse-port", "--listen", "tcp:0")
        self.assertEqual(result.returncode, 64)
        self.assertIn("--reuse-port applies to --port", result.stderr + result.stdout)
