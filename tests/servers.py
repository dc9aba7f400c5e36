"""
Servers for client tests: a plain asyncio echo server, misbehaving Twisted
servers, and running C{twist tcpclient} as a user does.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from .helpers import BIN, WAIT, TwistProcess


class AsyncioEchoServer:
    """
    An RFC 862 echo server in plain asyncio, on its own loop in a thread:
    a server tcplife had no hand in.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.connections = 0
        #: The address of each client, as it connected.
        self.peers: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(WAIT):
            raise AssertionError("the asyncio echo server did not start")

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[0])
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._echo, self.host, self.port)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)


@implementer(IHalfCloseableProtocol)
class Corrupting(Protocol):
    """
    Echoes, with the byte at offset C{at} of the stream changed.
    """

    at = 5

    def connectionMade(self) -> None:
        self.offset = 0

    def dataReceived(self, data: bytes) -> None:
        start, self.offset = self.offset, self.offset + len(data)
        if start <= self.at < self.offset:
            i = self.at - start
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        assert self.transport is not None
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class ClosingEarly(Protocol):
    """
    Reads everything up to the client's FIN, echoes only the first C{keep}
    bytes, and closes cleanly (FIN, not RST: it has read all there was).
    """

    keep = 3

    def connectionMade(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.write(self.received[: self.keep])
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class Resetting(Protocol):
    """
    Echoes the first C{keep} bytes it reads, then aborts: RST mid-stream.
    """

    keep = 3

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data[: self.keep])
        self.transport.abortConnection()  # type: ignore[attr-defined]


@implementer(IHalfCloseableProtocol)
class Silent(Protocol):
    """
    Accepts and reads, and never answers, not even to the client's FIN.
    """

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass


class Echo(Protocol):
    """
    A bare echo (no half-close support), for load runs in process.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def temporaryDirectory(test: SynchronousTestCase) -> Path:
    """
    A new directory, removed when the test ends (outside the source tree,
    unlike trial's C{mktemp} under pytest).
    """
    path = Path(tempfile.mkdtemp(prefix="tcplife-test-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


def listen(test: TestCase, protocol: type[Protocol]) -> int:
    """
    Serve C{protocol} on 127.0.0.1, port 0, until the test ends.
    """
    port: IListeningPort = reactor.listenTCP(  # type: ignore[attr-defined]
        0, Factory.forProtocol(protocol), interface="127.0.0.1"
    )
    test.addCleanup(port.stopListening)
    number: int = port.getHost().port  # type: ignore[attr-defined]
    return number


def runClient(
    *args: str,
    input: bytes | None = None,
    timeout: float = WAIT,
    env: Any = None,
    within: tuple[str, ...] = (),
    stdout: Any = subprocess.PIPE,
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """
    Run C{twist --log-file=+ tcpclient ARGS} to completion, as docs/client.md
    shows it: the echo or the report alone on standard output, twist's log
    and the verdict on standard error.  Returns the process and how long it
    took.

    @param within: A command that runs the client (C{unshare -n}, say).
    @param stdout: Where standard output goes (a file, a descriptor);
        captured by default.
    """
    started = time.monotonic()
    done = subprocess.run(
        [*within, str(BIN / "twist"), "--log-file=+", "--log-format=json", "tcpclient", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=timeout,
        env=env,
    )
    return done, time.monotonic() - started


def verdict(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    """
    The plain lines on standard error (the log's records start with 0x1e
    or '{'): the one-line verdicts.
    """
    lines = done.stderr.decode("utf-8", "replace").splitlines()
    return [line for line in lines if line and not line.lstrip("\x1e").startswith("{")]


def waitForCount(process: TwistProcess, count: int, timeout: float = WAIT, **match: Any) -> None:
    """
    Wait until C{count} of C{process}'s events match C{match}.
    """
    deadline = time.monotonic() + timeout
    while len(process.of(**match)) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.process.poll() is not None:
            raise AssertionError(f"fewer than {count} events matching {match} in {timeout} s")
        process.poll(min(remaining, 0.5))


def interruptible() -> None:
    """
    For C{preexec_fn}: SIGINT as a terminal delivers it.  A shell starts
    background jobs (such as a test run) with SIGINT ignored, children
    inherit that, and Twisted leaves an ignored SIGINT alone.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
