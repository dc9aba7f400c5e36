"""
C{twist tcpclient} run as a user runs it: a subprocess, judged by its exit
status, its standard output and its one-line verdicts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from ..certs import SelfSigned, TLSMistakes, atMostTLS12
from ..helpers import (
    BIN,
    WAIT,
    TwistProcess,
    callInThread,
    freePort,
    parseJSONRecords,
    pattern,
    portOf,
    startTcpecho,
)
from ..servers import (
    AsyncioEchoServer,
    ClosingEarly,
    Corrupting,
    Resetting,
    Silent,
    interruptible,
    listen,
    runClient,
    temporaryDirectory,
    verdict,
    waitForCount,
)


def events(done: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """
    The lifecycle events of the client's JSON log (on standard error).
    """
    records = [
        line
        for line in done.stderr.splitlines()
        if line.startswith(b"\x1e") or line.startswith(b"{")
    ]
    return [e for e in parseJSONRecords(b"\n".join(records)) if "lifecycle" in e]


def startEcho(test: SynchronousTestCase, *args: str) -> tuple[TwistProcess, int]:
    """
    C{twist tcpecho} on 127.0.0.1, port 0; returns it and its port.
    """
    return startTcpecho(test, *args)


class OneShotTests(SynchronousTestCase):
    """
    One exchange: the echo on standard output, status 0 when it is exact.
    """

    def test_messagesEchoedByTcpecho(self) -> None:
        """
        Against the project's own server, each --message comes back as one
        line on standard output, the status is 0, and both sides log the
        same connection: the client's local port is the server's peer.
        """
        server, port = startEcho(self)
        done, _ = runClient("--port", str(port), "--message", "hello", "-m", "world")
        self.assertEqual((done.returncode, done.stdout), (0, b"hello\nworld\n"))
        self.assertEqual(verdict(done), [])
        client = events(done)
        self.assertEqual(
            [e["lifecycle"] for e in client], ["connect", "connected", "half-close", "close"]
        )
        connect, connected, half, close = client
        self.assertEqual(connect["target"], f"127.0.0.1:{port}")
        self.assertEqual(connected["peer"], f"127.0.0.1:{port}")
        self.assertEqual(half["initiator"], "local")
        self.assertEqual(
            {k: close[k] for k in ("role", "initiator", "how", "bytes_in", "bytes_out")},
            {"role": "client", "initiator": "local", "how": "fin", "bytes_in": 12, "bytes_out": 12},
        )
        accept = server.waitFor(lifecycle="accept")
        self.assertEqual(accept["peer"], connected["local"])

    def test_ipv6Loopback(self) -> None:
        """
        --host ::1 connects over IPv6; the events bracket the addresses.
        """
        server = TwistProcess("tcpecho", "--port", "0", "--interface", "::1")
        self.addCleanup(server.kill)
        port = int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])
        done, _ = runClient("--host", "::1", "--port", str(port), "-m", "six")
        self.assertEqual((done.returncode, done.stdout), (0, b"six\n"), verdict(done))
        [connected] = [e for e in events(done) if e["lifecycle"] == "connected"]
        self.assertEqual(connected["peer"], f"[::1]:{port}")
        self.assertTrue(connected["local"].startswith("[::1]:"))

    def test_fileFromStandardInput(self) -> None:
        """
        --file - sends standard input (here 1 MiB of binary) and writes
        exactly what came back.
        """
        _, port = startEcho(self)
        payload = pattern(1 << 20)
        done, _ = runClient("--port", str(port), "--file", "-", input=payload)
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertTrue(done.stdout == payload, "the echo differs from standard input")

    def test_anyEndpointString(self) -> None:
        """
        --connect takes endpoint strings: tcp: and unix: both work.
        """
        socketPath = temporaryDirectory(self) / "echo.sock"
        _, port = startEcho(self, "--listen", f"unix:{socketPath}")
        for description in (f"tcp:127.0.0.1:{port}", f"unix:{socketPath}"):
            done, _ = runClient("--connect", description, "-m", "via " + description[:4])
            self.assertEqual(done.returncode, 0, verdict(done))
            self.assertEqual(done.stdout, ("via " + description[:4] + "\n").encode())

    def test_plainAsyncioEchoServer(self) -> None:
        """
        Against an echo server in plain asyncio, the echo is exact and the
        status 0.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        done, _ = runClient("--port", str(server.port), "-m", "from asyncio")
        self.assertEqual((done.returncode, done.stdout), (0, b"from asyncio\n"))

    def test_echoThatCannotBeWrittenIsStatus74(self) -> None:
        """
        Standard output that refuses the echo (/dev/full, as a full disk
        does): one line naming the error and status 74 (EX_IOERR), not 0.
        """
        _, port = startEcho(self)
        with open("/dev/full", "wb") as full:
            done, _ = runClient("--port", str(port), "-m", "hello", stdout=full)
        self.assertEqual(
            verdict(done),
            ["tcpclient: cannot write the echo to standard output: No space left on device"],
        )
        self.assertEqual(done.returncode, 74)

    def test_endlessFileIsRefused(self) -> None:
        """
        --file /dev/zero is refused at once with twist's one-line error,
        naming the bound and load mode, and status 64: not read until the
        memory runs out.
        """
        done, _ = runClient("--file", "/dev/zero")
        self.assertEqual(done.returncode, 64)
        self.assertTrue(
            done.stderr.startswith(
                b"Error: --file '/dev/zero' holds more than 64 MiB, the most one-shot mode "
                b"keeps in memory to check the echo; for volume, use load mode "
                b"(--connections N --size BYTES).\n"
            ),
            done.stderr[:300],
        )
        self.assertNotIn(b"Traceback", done.stderr)

    def test_badOptionIsTwistsUsageError(self) -> None:
        """
        A bad value: twist's one-line C{Error: ...}, the usage, status 64,
        and no traceback.
        """
        done, _ = runClient("--port", "99999", "-m", "x")
        self.assertEqual(done.returncode, 64)
        stderr = done.stderr.decode()
        self.assertTrue(stderr.startswith("Error: --port must be a whole number from 1 to 65535"))
        self.assertIn("Usage: twist", stderr)
        self.assertNotIn("Traceback", stderr + done.stdout.decode())

    def test_badValuesThatFailedLateAreUsageErrors(self) -> None:
        """
        Descriptions that used to fail only when connecting (or with
        OpenSSL's traceback), and a --json path that failed only once the
        run was over, get twist's 'Error: ...' line and status 64 at once.
        """
        withKey = TLSMistakes(temporaryDirectory(self)).trustRootsWithKey
        for argv, problem in [
            (["--connect", "tcp:127.0.0.1:0", "-m", "x"], "--connect 'tcp:127.0.0.1:0' is not"),
            (["--connect", "unix:", "-m", "x"], "path must name a socket path, not ''"),
            (
                ["--connect", f"tls:localhost:1:trustRoots={withKey}", "-m", "x"],
                f"trustRoots folder '{withKey}' holds 'key.pem', which is no certificate",
            ),
            (["-c", "1", "-n", "5", "--json", ""], "--json needs a file name"),
        ]:
            done, _ = runClient(*argv)
            stderr = done.stderr.decode()
            self.assertEqual(done.returncode, 64, (argv, stderr))
            self.assertTrue(stderr.startswith("Error: "), stderr[:200])
            self.assertIn(problem, stderr.splitlines()[0])
            self.assertNotIn("Traceback", stderr + done.stdout.decode())


class TLSTests(SynchronousTestCase):
    """
    One exchange over TLS with C{twist tcpecho --listen ssl:...}: the request
    goes out after the handshake, the half-close is a close_notify, and the
    whole echo comes back, under TLS 1.3 and 1.2.
    """

    def startServer(self, *, tls12: bool = False) -> None:
        directory = temporaryDirectory(self)
        self.certificate = SelfSigned(directory / "certificate")
        self.trustRoots = directory / "roots"
        self.trustRoots.mkdir()
        (self.trustRoots / "cert.pem").write_bytes(self.certificate.certPEM)
        env = atMostTLS12(directory / "openssl") if tls12 else None
        self.server = TwistProcess("tcpecho", "--listen", self.certificate.endpoint(), env=env)
        self.addCleanup(self.server.kill)
        self.port = portOf(self.server.waitFor(lifecycle="listen")["address"])

    def negotiatedVersion(self) -> str | None:
        """
        The TLS version the server negotiates with a client that offers all.
        """
        context = ssl.create_default_context(cafile=str(self.certificate.cert))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="localhost") as client:
            return client.version()

    def assertEchoed(self, connect: str, *, tls13: bool) -> None:
        """
        A line, then 1 MiB, each through C{--connect}, come back whole.
        """
        for payload in (b"hello\n", pattern(1 << 20)):
            self.assertEchoedOnce(connect, payload, tls13=tls13)

    def assertEchoedOnce(self, connect: str, payload: bytes, *, tls13: bool) -> None:
        done, _ = runClient("--connect", connect, "--file", "-", input=payload)
        self.assertEqual(done.returncode, 0, verdict(done))
        self.assertTrue(done.stdout == payload, "the echo differs from what was sent")
        client = events(done)
        self.assertEqual(
            [e["lifecycle"] for e in client], ["connect", "connected", "half-close", "close"]
        )
        close = client[-1]
        self.assertEqual(
            (close["initiator"], close["how"], close["bytes_in"], close["bytes_out"]),
            ("local", "fin", len(payload), len(payload)),
        )
        accept = self.server.waitFor(lifecycle="accept", peer=client[1]["local"])
        served = self.server.waitFor(lifecycle="close", conn_id=accept["conn_id"])
        self.assertEqual(
            (served["initiator"], served["how"], served["bytes_in"], served["bytes_out"]),
            ("peer", "fin", len(payload), len(payload)),
        )
        # Under TLS 1.3 our close_notify is a half-close (RFC 8446 6.1); under
        # 1.2 the server answers it and closes at once, after the echo.
        halfClosed = self.server.of(lifecycle="half-close", conn_id=accept["conn_id"])
        self.assertEqual(len(halfClosed), 1 if tls13 else 0)

    def test_sslEndpointUnderTLS13(self) -> None:
        """
        --connect ssl:HOST:PORT against a TLS 1.3 server gets the whole
        echo, status 0, and both sides log a clean close.
        """
        self.startServer()
        self.assertEqual(self.negotiatedVersion(), "TLSv1.3")
        self.assertEchoed(f"ssl:127.0.0.1:{self.port}", tls13=True)

    def test_sslEndpointUnderTLS12(self) -> None:
        """
        --connect ssl:HOST:PORT against a server held to TLS 1.2 gets the
        whole echo, status 0, and both sides log a clean close.
        """
        self.startServer(tls12=True)
        self.assertEqual(self.negotiatedVersion(), "TLSv1.2")
        self.assertEchoed(f"ssl:127.0.0.1:{self.port}", tls13=False)

    def test_verifyingTlsEndpointUnderTLS13(self) -> None:
        """
        --connect tls:localhost:PORT:trustRoots=DIR verifies the server's
        certificate and gets the whole echo, under TLS 1.3.
        """
        self.startServer()
        self.assertEchoed(f"tls:localhost:{self.port}:trustRoots={self.trustRoots}", tls13=True)

    def test_verifyingTlsEndpointUnderTLS12(self) -> None:
        """
        --connect tls:localhost:PORT:trustRoots=DIR verifies the server's
        certificate and gets the whole echo, under TLS 1.2.
        """
        self.startServer(tls12=True)
        self.assertEchoed(f"tls:localhost:{self.port}:trustRoots={self.trustRoots}", tls13=False)


class FailureTests(TestCase):
    """
    Every way an exchange fails, against a real loopback server: one line,
    its own exit status, no traceback.
    """

    @inlineCallbacks
    def assertFails(
        self, port: int, status: int, line: str | re.Pattern[str], *extra: str, **kw: Any
    ) -> Deferred[Any]:
        args = ["--port", str(port), *extra] if port else list(extra)
        if not any(a in ("-m", "--message", "--file") for a in args):
            args += ["-m", "hello world"]
        done, elapsed = yield callInThread(lambda: runClient(*args, **kw))
        [said] = verdict(done)
        if isinstance(line, str):
            self.assertEqual(said, f"tcpclient: {line}")
        else:
            self.assertRegex(said, line)
        self.assertEqual(done.returncode, status)
        self.assertNotIn(b"Traceback", done.stderr + done.stdout)
        return done, elapsed

    @inlineCallbacks
    def test_closedPipeStopsTheCopyNotTheCheck(self) -> Deferred[None]:
        """
        A reader that went away (C{| head}) stops the copy, and the exit
        status still says whether the echo came back: 0 for an exact one,
        65 for a corrupted one.
        """
        _, echo = startEcho(self)
        corrupting = listen(self, Corrupting)
        for port, status in ((echo, 0), (corrupting, 65)):
            reading, writing = os.pipe()
            os.close(reading)
            self.addCleanup(os.close, writing)
            run = partial(
                runClient,
                "--port",
                str(port),
                "--file",
                "-",
                input=pattern(1 << 20),
                stdout=writing,
            )
            done, _ = yield callInThread(run)
            self.assertEqual(done.returncode, status, verdict(done))
            self.assertNotIn(b"Traceback", done.stderr)

    def test_refused(self) -> None:
        """
        Nothing listening: connection refused, status 69 (EX_UNAVAILABLE).
        """
        port = freePort()
        return self.assertFails(  # type: ignore[return-value]
            port,
            69,
            f"cannot connect to 127.0.0.1:{port}: connection refused "
            "(is a server listening there?)",
        )

    def test_unreachableInANetworkOfItsOwn(self) -> None:
        """
        In a network namespace of its own (C{unshare -n}), where not even
        loopback is up, 127.0.0.1 is unreachable: status 69 (EX_UNAVAILABLE)
        and the kernel's reason.
        """
        unshare = shutil.which("unshare")
        if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
            raise SkipTest("creating a network namespace needs unshare and CAP_SYS_ADMIN")
        return self.assertFails(  # type: ignore[return-value]
            9,
            69,
            "cannot connect to 127.0.0.1:9: network is unreachable "
            "(check the address and the route to it)",
            within=(unshare, "-n"),
        )

    def test_resetMidStream(self) -> None:
        """
        A server that resets mid-stream: status 76 (EX_PROTOCOL).
        """
        port = listen(self, Resetting)
        # The kernel may discard the 3 echoed bytes still unread when the
        # RST lands, so either count is right.
        return self.assertFails(  # type: ignore[return-value]
            port,
            76,
            re.compile(r"tcpclient: connection reset by the server: [03] of 12 bytes came back"),
        )

    def test_corruptedByte(self) -> None:
        """
        A server that changes one byte: the offset, both bytes, status 65
        (EX_DATAERR).
        """
        port = listen(self, Corrupting)
        return self.assertFails(  # type: ignore[return-value]
            port, 65, "echo differs at offset 5: expected 0x20 ' ', got 0xdf"
        )

    def test_closesEarly(self) -> None:
        """
        A server that closes cleanly before the whole echo: status 76.
        """
        port = listen(self, ClosingEarly)
        return self.assertFails(  # type: ignore[return-value]
            port, 76, "server closed the connection early: 3 of 12 bytes came back"
        )

    @inlineCallbacks
    def test_silentServerTimesOut(self) -> Deferred[None]:
        """
        A server that accepts and never answers: a timeout after --timeout
        seconds, status 75 (EX_TEMPFAIL).
        """
        port = listen(self, Silent)
        yield self.assertFails(
            port, 75, "no reply for 1 s: 0 of 12 bytes came back", "--timeout", "1"
        )

    @inlineCallbacks
    def test_fullAcceptQueueTimesOutConnecting(self) -> Deferred[None]:
        """
        A listener whose accept queue is full drops new SYNs: the connect
        times out after --timeout seconds, status 75.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for _ in range(2):  # the queue holds backlog + 1
            queued = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.addCleanup(queued.close)
        yield self.assertFails(
            port,
            75,
            f"cannot connect to 127.0.0.1:{port}: no connection within 1 s "
            "(nothing answered; is the host up, or a firewall dropping packets?)",
            "--timeout",
            "1",
        )

    def test_unknownHost(self) -> None:
        """
        A name that does not resolve: status 68 (EX_NOHOST).
        """
        return self.assertFails(  # type: ignore[return-value]
            0,
            68,
            "cannot connect to nowhere.invalid:9000: host name not found (check the host name)",
            "--host",
            "nowhere.invalid",
        )

    @inlineCallbacks
    def test_stuckNameLookupStillExitsInTime(self) -> Deferred[None]:
        """
        A DNS server that never answers (simulated: getaddrinfo blocks for a
        minute) still ends the client after its timeout, long before the
        lookup would, though the lookup's thread is still stuck, and the
        line names the lookup.
        """
        directory = temporaryDirectory(self)
        (directory / "sitecustomize.py").write_text(
            "import socket, time\n"
            "_real = socket.getaddrinfo\n"
            "def getaddrinfo(host, *args, **kwargs):\n"
            "    if str(host).endswith('.stuck.invalid'):\n"
            "        time.sleep(60)\n"
            "    return _real(host, *args, **kwargs)\n"
            "socket.getaddrinfo = getaddrinfo\n"
        )
        env = dict(os.environ, PYTHONPATH=str(directory))
        yield self.assertFails(
            0,
            75,
            "cannot connect to dns.stuck.invalid:9000: no answer to the host name lookup "
            "within 1 s (is a DNS server answering? see /etc/resolv.conf)",
            "--host",
            "dns.stuck.invalid",
            "--timeout",
            "1",
            env=env,
        )


#: A run that only Ctrl-C ends in time.
LONG_RUN = ("--duration", "60", "--json", "-")


class LoadTests(SynchronousTestCase):
    """
    Load mode against C{twist tcpecho}: every pattern, short runs, counts
    and zero errors (speed is not asserted).
    """

    def runLoad(self, *args: str) -> dict[str, Any]:
        _, port = startEcho(self)
        done, _ = runClient("--port", str(port), "--json", "-", *args)
        self.assertEqual(done.returncode, 0, verdict(done))
        report: dict[str, Any] = json.loads(done.stdout)
        self.assertEqual(report["errors"], {"refused": 0, "reset": 0, "timeout": 0, "mismatch": 0})
        self.assertGreater(report["messages"], 0)
        self.assertEqual(report["bytes"], report["messages"] * report["size"])
        self.assertEqual(report["latency_us"]["count"], report["messages"])
        self.assertLessEqual(report["latency_us"]["p50"], report["latency_us"]["max"])
        # With --json -, the text report goes to standard error.
        self.assertIn(b"every byte verified", done.stderr)
        return report

    def test_requestResponse(self) -> None:
        """
        rr: the connections stay open all run long.
        """
        report = self.runLoad("--connections", "4", "--duration", "1", "--pattern", "rr")
        self.assertEqual((report["pattern"], report["connections_opened"]), ("rr", 4))
        self.assertGreaterEqual(report["duration_s"], 1.0)

    def test_stream(self) -> None:
        """
        stream: a window of bytes in flight on each of the connections.
        """
        report = self.runLoad(
            "-c", "2", "-d", "1", "--pattern", "stream", "--size", "1000", "--window", "20000"
        )
        self.assertEqual((report["window"], report["connections_opened"]), (20000, 2))

    def test_connectChurn(self) -> None:
        """
        connect: one connection per message.
        """
        report = self.runLoad("-c", "3", "-d", "1", "--pattern", "connect")
        self.assertGreaterEqual(report["connections_opened"], report["messages"])

    def test_connectionEventsAreDebugLevelInLoadMode(self) -> None:
        """
        In load mode each connection's events are logged at debug level:
        there with twist --log-level debug, not built at the default level.
        """
        _, port = startEcho(self)

        def connectedEvents(*twistArgs: str) -> list[dict[str, Any]]:
            done = subprocess.run(
                [
                    str(BIN / "twist"),
                    "--log-file=+",
                    "--log-format=json",
                    *twistArgs,
                    "tcpclient",
                    *("--port", str(port), "-c", "2", "-n", "20", "--pattern", "connect"),
                ],
                capture_output=True,
                timeout=WAIT,
                stdin=subprocess.DEVNULL,
            )
            self.assertEqual(done.returncode, 0, verdict(done))
            return [e for e in events(done) if e["lifecycle"] == "connected"]

        debug = connectedEvents("--log-level", "debug")
        self.assertEqual(len(debug), 20)
        self.assertEqual({e["log_level"]["name"] for e in debug}, {"debug"})
        self.assertEqual(connectedEvents(), [])

    def test_countIsExact(self) -> None:
        """
        --count M completes exactly M messages, and the report also goes to
        the --json file.
        """
        path = temporaryDirectory(self) / "report.json"
        _, port = startEcho(self)
        done, _ = runClient("--port", str(port), "-c", "3", "-n", "500", "--json", str(path))
        self.assertEqual(done.returncode, 0, verdict(done))
        text = done.stdout.decode()
        self.assertIn("  messages     500 (", text)
        self.assertEqual(json.loads(path.read_text())["messages"], 500)

    def test_plainAsyncioEchoServer(self) -> None:
        """
        A load run against plain asyncio: every byte verified, no errors.
        """
        server = AsyncioEchoServer()
        self.addCleanup(server.stop)
        done, _ = runClient("--port", str(server.port), "-c", "5", "-n", "2000", "--json", "-")
        self.assertEqual(done.returncode, 0, verdict(done))
        report = json.loads(done.stdout)
        self.assertEqual((report["messages"], report["connections_opened"]), (2000, 5))

    def test_refusedFromTheStart(self) -> None:
        """
        Nothing listening: one line, status 69, and the report still says
        what happened.
        """
        port = freePort()
        done, _ = runClient("--port", str(port), "-c", "5", "-d", "5")
        self.assertEqual(done.returncode, 69)
        self.assertEqual(
            verdict(done),
            [
                f"tcpclient: cannot connect to 127.0.0.1:{port}: connection refused "
                "(is a server listening there?)"
            ],
        )
        self.assertIn(b"errors       refused 1,", done.stdout)

    def test_ctrlCStopsEarlyAndStillReports(self) -> None:
        """
        SIGINT ends a long run early; the report covers what was done and
        twist exits as after SIGINT.
        """
        server, port = startEcho(self, "--trace")
        client = subprocess.Popen(
            [str(BIN / "twist"), "--log-file=+", "tcpclient", "--port", str(port), *LONG_RUN],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=interruptible,
        )
        self.addCleanup(lambda: client.poll() is None and client.kill())
        # The server has read a third message: the client saw two echoes.
        waitForCount(server, 3, lifecycle="read")
        client.send_signal(signal.SIGINT)
        # Far less than the run's 60 s: only the interruption ends it.
        stdout, stderr = client.communicate(timeout=WAIT)
        self.assertIn(client.returncode, (-signal.SIGINT, 128 + signal.SIGINT))
        report = json.loads(stdout)
        self.assertTrue(report["interrupted"])
        self.assertGreaterEqual(report["messages"], 2)
        self.assertIn(b"(interrupted)", stderr)
        self.assertNotIn(b"Traceback", stderr)
