"""
twist tcpecho --listen ssl:... against real TLS clients (Python ssl, openssl s_client).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer

from ..certs import SelfSigned
from ..helpers import (
    WAIT,
    TwistProcess,
    pattern,
    portOf,
)


@implementer(IHalfCloseableProtocol)
class TwistTLSTests(SynchronousTestCase):
    """
    C{twist tcpecho --listen ssl:...} serves real TLS clients.
    """

    def setUp(self) -> None:
        self.certificate = SelfSigned(Path(self.mktemp()))
        self.server = TwistProcess("tcpecho", "--listen", self.certificate.endpoint())
        self.addCleanup(self.server.kill)
        listen = self.server.waitFor(lifecycle="listen")
        self.port = portOf(listen["address"])
        self.context = ssl.create_default_context(cafile=str(self.certificate.cert))

    def assertLifecycle(self, clientPort: int, nbytes: int) -> None:
        accept = self.server.waitFor(lifecycle="accept", peer=f"127.0.0.1:{clientPort}")
        self.assertEqual(accept["local"], f"127.0.0.1:{self.port}")
        connId = accept["conn_id"]
        half = self.server.waitFor(lifecycle="half-close", conn_id=connId)
        self.assertEqual(half["initiator"], "peer")
        close = self.server.waitFor(lifecycle="close", conn_id=connId)
        self.assertEqual(
            {k: close[k] for k in ("role", "initiator", "how", "bytes_in", "bytes_out")},
            {
                "role": "server",
                "initiator": "peer",
                "how": "fin",
                "bytes_in": nbytes,
                "bytes_out": nbytes,
            },
        )

    def test_pythonSslClientEchoesAndClosesCleanly(self) -> None:
        """
        A verifying Python ssl client gets its echo, and its unwrap() (our
        close_notify answered by the server's) shows as accept, half-close
        and close by the peer with FIN and the byte counts.
        """
        payload = pattern(100_000)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        with self.context.wrap_socket(raw, server_hostname="localhost") as client:
            clientPort = client.getsockname()[1]
            client.sendall(payload)
            received = b""
            while len(received) < len(payload):
                chunk = client.recv(1 << 16)
                self.assertTrue(chunk, "EOF before the whole echo")
                received += chunk
            self.assertTrue(received == payload)
            client.unwrap()
        self.assertLifecycle(clientPort, len(payload))

    def test_pythonSslClientReadsAfterItsCloseNotify(self) -> None:
        """
        A Python ssl client that sends its close_notify right behind its data
        (a TLS 1.3 half-close) still reads the whole echo, then the server's
        close_notify.
        """
        payload = pattern(300_000)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self.addCleanup(raw.close)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = self.context.wrap_bio(incoming, outgoing, server_hostname="localhost")

        def receive() -> bool:
            data = raw.recv(1 << 16)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
            return bool(data)

        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                receive()
        raw.sendall(outgoing.read())
        self.assertEqual(client.version(), "TLSv1.3")
        client.write(payload)
        with self.assertRaises(ssl.SSLWantReadError):
            client.unwrap()  # sends close_notify, then would wait for the server's
        # Send while reading, or a large echo fills both ways and stalls.
        sender = threading.Thread(target=raw.sendall, args=(outgoing.read(),))
        sender.start()
        self.addCleanup(sender.join, WAIT)
        received = bytearray()
        with self.assertRaises(ssl.SSLZeroReturnError):
            while True:
                try:
                    received += client.read(1 << 16)
                except ssl.SSLWantReadError:
                    self.assertTrue(receive(), "TCP EOF before the server's close_notify")
        self.assertTrue(received == payload)
        self.assertLifecycle(raw.getsockname()[1], len(payload))

    def test_opensslSClientEchoesAndClosesCleanly(self) -> None:
        """
        openssl s_client verifies the certificate, gets its line back, and
        on end of input (close_notify, then FIN) the server logs half-close
        and a clean close.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SkipTest("openssl is not installed")
        client = subprocess.Popen(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{self.port}",
                "-CAfile",
                str(self.certificate.cert),
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-servername",
                "localhost",
                "-nocommands",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(client.wait, WAIT)
        self.addCleanup(client.kill)
        assert client.stdin is not None and client.stdout is not None
        line = b"hello through openssl\n"
        client.stdin.write(line)
        client.stdin.flush()
        output = b""
        deadline = time.monotonic() + WAIT
        # s_client echoes our line only when the server sends it back; end
        # its input only then, or it closes before the echo arrives.
        while output.count(line) < 1:
            remaining = deadline - time.monotonic()
            self.assertGreater(remaining, 0, f"no echo from s_client: {output!r}")
            ready, _, _ = select.select([client.stdout], [], [], remaining)
            if ready:
                chunk = os.read(client.stdout.fileno(), 1 << 16)
                self.assertTrue(chunk, f"s_client ended: {output!r}")
                output += chunk
        self.assertIn(b"Verify return code: 0 (ok)", output)
        client.stdin.close()
        self.assertEqual(client.wait(WAIT), 0)
        accept = self.server.waitFor(lifecycle="accept")
        self.assertLifecycle(portOf(accept["peer"]), len(line))
