"""
A real HAProxy, configured as docs/haproxy.md shows, in front of two
C{twist tcpecho --listen haproxy:tcp:0} processes.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..certs import SelfSigned
from ..helpers import WAIT, TwistProcess, pattern, portOf
from ..servers import runClient, temporaryDirectory, verdict
from .test_docs import checks, exampleCode

#: Clients sent through the balancer in each test.
CLIENTS = 6


def haproxyBinary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        raise SkipTest("haproxy is not installed (.ci/run installs it)")
    return found


def localConfig(config: str, frontendFD: int, backends: list[int], sendProxy: str) -> str:
    """
    C{config} with its frontend on an inherited socket, its servers on
    loopback ports, and each server's PROXY option set to C{sendProxy}.
    """
    config, binds = re.subn(r"(?m)^(\s*bind\s+)\S+", rf"\g<1>fd@{frontendFD}", config)
    assert binds == 1, config
    servers = iter(backends)
    lines = []
    for line in config.splitlines():
        found = re.match(r"(\s*server\s+\S+\s+)\S+(.*)", line)
        if found:
            options = found.group(2).split()
            assert "send-proxy-v2" in options, line
            options = [sendProxy if o == "send-proxy-v2" else o for o in options]
            line = f"{found.group(1)}127.0.0.1:{next(servers)} {' '.join(options)}"
        lines.append(line)
    assert next(servers, None) is None, "the docs' config has fewer servers than backends"
    return "\n".join(lines) + "\n"


def echoThrough(port: int, payload: bytes) -> tuple[int, bytes]:
    """
    Send C{payload} and half-close, reading while sending; return this
    client's own port and what came back.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        return client.getsockname()[1], echoOver(client, payload)


def echoOver(client: socket.socket, payload: bytes) -> bytes:
    """
    Send C{payload} on C{client} and half-close, reading while sending;
    return what came back before EOF.
    """
    received: list[bytes] = []

    def receive() -> None:
        while chunk := client.recv(1 << 16):
            received.append(chunk)

    reader = threading.Thread(target=receive)
    reader.start()
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    reader.join(WAIT)
    assert not reader.is_alive(), "no EOF through the balancer"
    return b"".join(received)


#: HAProxy with its frontend on an inherited UNIX socket (fd@), one backend
#: server, and PROXY protocol v1: a UNIX client has no address that v1 can
#: name, so HAProxy sends the bare "PROXY UNKNOWN\r\n".
UNIX_FRONTEND_CONFIG = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m

frontend echo
    bind fd@{fd}
    default_backend tcpecho

backend tcpecho
    server echo1 127.0.0.1:{port} send-proxy
"""


class HAProxyTests(SynchronousTestCase):
    """
    Clients reach two echo servers through HAProxy, and the servers' accept
    events show the clients' own ports.
    """

    def startBackends(
        self,
        endpoint: str = "haproxy:tcp:0:interface=127.0.0.1",
        count: int = 2,
        options: Callable[[int], tuple[str, ...]] = lambda index: (),
    ) -> list[TwistProcess]:
        """
        C{count} backends listening on C{endpoint}; backend I also gets
        C{options(I)}.
        """
        backends = []
        for index in range(count):
            server = TwistProcess("tcpecho", "--listen", endpoint, *options(index))
            self.addCleanup(server.kill)
            backends.append(server)
        return backends

    def startBalancer(self, backendPorts: list[int], sendProxy: str) -> int:
        """
        Start HAProxy on a listening socket made here (port 0, so no race
        for a free port, and clients can connect before HAProxy is up).
        """
        frontend = socket.socket()
        self.addCleanup(frontend.close)
        frontend.bind(("127.0.0.1", 0))
        frontend.listen(64)
        self.runBalancer(
            localConfig(exampleCode("haproxy.cfg"), frontend.fileno(), backendPorts, sendProxy),
            frontend,
        )
        port: int = frontend.getsockname()[1]
        return port

    def runBalancer(self, configText: str, frontend: socket.socket) -> None:
        """
        Run HAProxy with C{configText}, its frontend bound to C{frontend}
        (inherited as fd@).
        """
        binary = haproxyBinary()
        config = Path(self.mktemp())
        config.write_text(configText, encoding="utf-8")
        balancer = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            pass_fds=[frontend.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(self._stop, balancer)

    def _stop(self, balancer: subprocess.Popen[bytes]) -> None:
        balancer.kill()
        balancer.wait(WAIT)
        if balancer.stderr is not None:
            balancer.stderr.close()

    def echoThroughBalancer(self, sendProxy: str, endpoint: str | None = None) -> None:
        backends = self.startBackends(endpoint) if endpoint else self.startBackends()
        ports = [int(b.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1]) for b in backends]
        frontend = self.startBalancer(ports, sendProxy)

        clients: dict[int, int] = {}
        for i in range(CLIENTS):
            payload = pattern(20_000 + i)
            clientPort, echoed = echoThrough(frontend, payload)
            self.assertTrue(echoed == payload, f"client {i} got {len(echoed)} bytes back")
            clients[clientPort] = len(payload)

        # Each client's connection, as the backend that served it logs it.
        served: dict[int, tuple[int, dict[str, Any]]] = {}
        deadline = time.monotonic() + WAIT
        while len(served) < len(clients) and time.monotonic() < deadline:
            for index, backend in enumerate(backends):
                backend.poll(0.05)
                for event in backend.events:
                    if event.get("lifecycle") != "accept":
                        continue
                    host, _, port = event["peer"].rpartition(":")
                    if int(port) in clients and host == "127.0.0.1":
                        served[int(port)] = (index, event)
        self.assertEqual(sorted(served), sorted(clients))
        self.assertEqual({index for index, _ in served.values()}, {0, 1})

        for clientPort, (index, accept) in served.items():
            self.assertEqual(accept["local"], f"127.0.0.1:{frontend}")
            backend = backends[index]
            connId = accept["conn_id"]
            half = backend.waitFor(lifecycle="half-close", conn_id=connId)
            self.assertEqual(half["initiator"], "peer")
            close = backend.waitFor(lifecycle="close", conn_id=connId)
            nbytes = clients[clientPort]
            self.assertEqual(
                (close["how"], close["bytes_in"], close["bytes_out"]), ("fin", nbytes, nbytes)
            )

    @checks("haproxy.cfg")
    def test_proxyV2ClientsAreEchoedAndAcceptShowsTheirPorts(self) -> None:
        """
        With send-proxy-v2 (the docs' configuration), every client is
        echoed through HAProxy, both backends serve, and each backend's
        accept shows the client's own port and the frontend's address, with
        half-close and a clean close for each.
        """
        self.echoThroughBalancer("send-proxy-v2")

    def test_proxyV1ClientsAreEchoedAndAcceptShowsTheirPorts(self) -> None:
        """
        The same with PROXY protocol v1 (send-proxy).
        """
        self.echoThroughBalancer("send-proxy")

    def test_unixFrontendClientIsServedUnderProxyUnknown(self) -> None:
        """
        A client of a UNIX-socket frontend, which HAProxy announces with the
        bare v1 C{PROXY UNKNOWN}, is echoed, and accept shows the
        connection's own addresses (HAProxy's, the backend's), as the spec
        says, followed by a clean close.
        """
        [backend] = self.startBackends(count=1)
        port = portOf(backend.waitFor(lifecycle="listen")["address"])
        path = temporaryDirectory(self) / "frontend.sock"
        frontend = socket.socket(socket.AF_UNIX)
        self.addCleanup(frontend.close)
        frontend.bind(str(path))
        frontend.listen(8)
        self.runBalancer(UNIX_FRONTEND_CONFIG.format(fd=frontend.fileno(), port=port), frontend)

        payload = pattern(20_000)
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(WAIT)
            client.connect(str(path))
            self.assertTrue(echoOver(client, payload) == payload, "the echo differs")
        accept = backend.waitFor(lifecycle="accept")
        self.assertEqual(accept["local"], f"127.0.0.1:{port}")
        self.assertTrue(accept["peer"].startswith("127.0.0.1:"), accept["peer"])
        close = backend.waitFor(lifecycle="close", conn_id=accept["conn_id"])
        self.assertEqual(
            (close["how"], close["bytes_in"], close["bytes_out"]),
            ("fin", len(payload), len(payload)),
        )

    def test_tlsToTheBackendsWithProxyV2(self) -> None:
        """
        HAProxy speaking TLS to the backends (C{ssl verify none}) sends the
        PROXY header in clear, before the handshake: C{haproxy:ssl:} reads it
        below TLS, and every client is echoed and named as with plain TCP.
        """
        certificate = SelfSigned(Path(self.mktemp()))
        self.echoThroughBalancer(
            "send-proxy-v2 ssl verify none",
            "haproxy:ssl:0:interface=127.0.0.1"
            f":privateKey={certificate.key}:certKey={certificate.cert}",
        )

    def test_reflectShowsBothServersAndTheClientsOwnAddress(self) -> None:
        """
        Two backends with --reflect behind HAProxy (PROXY v2): a tcpclient
        --reflect load run's report counts connections answered by each of
        them, every one seeing this client's own address and port; a
        one-shot exchange says which answered and what it saw.
        """
        names = ("backend-a", "backend-b")
        backends = self.startBackends(options=lambda i: ("--reflect", "--name", names[i]))
        ports = [portOf(b.waitFor(lifecycle="listen")["address"]) for b in backends]
        frontend = self.startBalancer(ports, "send-proxy-v2")

        done, _ = runClient(
            "--port", str(frontend), "-c", "4", "--count", "200", "--reflect", "--json", "-"
        )
        self.assertEqual(done.returncode, 0, verdict(done))
        report = json.loads(done.stdout)
        self.assertEqual(report["messages"], 200)
        reflect = report["reflect"]
        self.assertEqual(sorted(reflect["servers"]), sorted(names))
        self.assertEqual(reflect["connections"], report["connections_opened"])
        self.assertEqual(reflect["clients"], {"127.0.0.1": reflect["connections"]})
        self.assertEqual(reflect["own_address"], reflect["connections"])

        done, _ = runClient("--port", str(frontend), "-m", "who?", "--reflect")
        self.assertEqual((done.returncode, done.stdout), (0, b"who?\n"), verdict(done))
        [said] = verdict(done)
        self.assertRegex(
            said,
            r"^tcpclient: answered by backend-[ab], which saw this client as "
            rf"127\.0\.0\.1:\d+ \(this client's own address\) on 127\.0\.0\.1:{frontend}$",
        )

    def test_reflectOverWorkersAddsUpEveryWorkersConnections(self) -> None:
        """
        The same behind HAProxy with tcpclient --workers 2: the report adds
        up both workers' reflections, both servers answering and every
        connection seen with its own client's address.
        """
        names = ("backend-a", "backend-b")
        backends = self.startBackends(options=lambda i: ("--reflect", "--name", names[i]))
        ports = [portOf(b.waitFor(lifecycle="listen")["address"]) for b in backends]
        frontend = self.startBalancer(ports, "send-proxy-v2")

        done, _ = runClient(
            "--port", str(frontend), "-c", "4", "--count", "200", "--workers", "2",
            "--reflect", "--json", "-",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, verdict(done))
        report = json.loads(done.stdout)
        self.assertEqual((report["messages"], len(report["workers"])), (200, 2))
        reflect = report["reflect"]
        self.assertEqual(sorted(reflect["servers"]), sorted(names))
        self.assertEqual(reflect["connections"], report["connections_opened"])
        self.assertEqual(reflect["connections"], 4)
        self.assertEqual(reflect["own_address"], reflect["connections"])
