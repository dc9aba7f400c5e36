"""
Shared test helpers: recording lifecycle events, blocking loopback clients,
and running C{twist} as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.testing import StringTransport

from tcplife.testing import _matches

#: Seconds any single wait in a test may take before the test fails.
WAIT = 20.0

#: The console scripts installed next to this interpreter: what a user runs.
BIN = Path(sys.executable).parent


class HalfClosingTransport(StringTransport):
    """
    A StringTransport that records a half-close, as TCP's transport does.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def pattern(size: int) -> bytes:
    """
    C{size} bytes that are not all alike, so a reordering or a shift shows.
    """
    block = bytes(range(251))  # a prime length: no alignment with buffer sizes
    return (block * (size // len(block) + 1))[:size]


def echoWithHalfClose(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    """
    Send C{payload}, half-close, and read until EOF, reading while sending as
    C{nc -N} does; returns what came back.  Blocking: run it in a thread.
    """
    with socket.create_connection((host, port), timeout=WAIT) as client:
        received: list[bytes] = []

        def receive() -> None:
            while True:
                chunk = client.recv(1 << 20)
                if not chunk:
                    return
                received.append(chunk)

        reader = threading.Thread(target=receive)
        reader.start()
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        reader.join(WAIT * 3)
        assert not reader.is_alive(), "echo did not end within the time limit"
        return b"".join(received)


def unixEcho(path: str, payload: bytes) -> bytes:
    """
    Send C{payload} over the UNIX socket at C{path}, half-close, and read
    until EOF; returns what came back.  Blocking: run it in a thread.
    """
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(WAIT)
        client.connect(path)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return recvUntilEOF(client)


def portOf(address: str) -> int:
    """
    The port of an event's C{host:port} address (IPv6 hosts bracketed).
    """
    return int(address.rsplit(":", 1)[1])


def readLine(client: socket.socket) -> bytes:
    """
    Read up to and including the next newline, or until EOF.
    """
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(100)
        if not chunk:
            break
        data += chunk
    return data


def recvExactly(client: socket.socket, size: int) -> bytes:
    """
    Read C{size} bytes, or fewer if EOF comes first.
    """
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recvUntilEOF(client: socket.socket) -> bytes:
    """
    Read everything until the peer's FIN.
    """
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def recvUntilEOFOrReset(client: socket.socket) -> bytes:
    """
    Read everything until the peer's FIN or its reset.
    """
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def closeWithReset(client: socket.socket) -> None:
    """
    Close with SO_LINGER 0: the kernel sends RST instead of FIN.
    """
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def parseJSONRecords(raw: bytes) -> Iterator[dict[str, Any]]:
    """
    Parse twist's JSON log: RFC 7464 text sequences, each record led by an
    RS byte (0x1e) and ended by a newline.
    """
    for record in raw.split(b"\x1e"):
        record = record.strip()
        if record:
            yield json.loads(record)


class TwistProcess:
    """
    C{twist --log-format json ...} in a subprocess, its events read as they
    come by a thread (so a chatty server never blocks on a full pipe).
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | None = subprocess.DEVNULL,
        twist: Path = BIN / "twist",
        preexec_fn: Callable[[], None] | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        self.args = [*launcher, str(twist), "--log-format", "json", *args]
        self.process = subprocess.Popen(
            self.args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            preexec_fn=preexec_fn,
        )
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._arrived = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parsed = list(parseJSONRecords(line))
            with self._arrived:
                self.events.extend(parsed)
                self._arrived.notify_all()
        with self._arrived:
            self._eof = True
            self._arrived.notify_all()

    def poll(self, seconds: float) -> None:
        """
        Wait up to C{seconds} for the process to log more (to watch several).
        """
        with self._arrived:
            self._arrived.wait(seconds)

    def waitFor(self, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """
        The first event (already read or still to come) whose fields include
        C{match}; fails after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for event in self.events:
                    if _matches(event, match):
                        return event
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._arrived.wait(remaining)
        raise AssertionError(
            f"no event matching {match} within {timeout} s; "
            f"exit status {self.process.poll()}, stderr {self.stderr_text()!r}, "
            f"events {[e.get('lifecycle') or e.get('log_format') for e in self.events]}"
        )

    def of(self, **match: Any) -> list[dict[str, Any]]:
        """
        Every event read so far whose fields include C{match}.
        """
        with self._arrived:
            return [event for event in self.events if _matches(event, match)]

    def stderr_text(self) -> str:
        if self.process.poll() is not None and self.process.stderr is not None:
            self.stderr += self.process.stderr.read()
        return self.stderr.decode("utf-8", "replace")

    def signal(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """
        Send C{signum}, read every event until the process exits, and return
        its exit status.
        """
        self.process.send_signal(signum)
        return self.finish(timeout)

    def finish(self, timeout: float = WAIT) -> int:
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        self.stderr_text()
        return status

    def cpuSeconds(self) -> float:
        """
        CPU time (user and system) the process has used so far.
        """
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rssBytes(self) -> int:
        """
        The process's resident set size now.
        """
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        self._reader.join(WAIT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def startTcpecho(test: Any, *args: str, **kwargs: Any) -> tuple[TwistProcess, int]:
    """
    C{twist tcpecho} on 127.0.0.1, port 0, with C{args}; killed when C{test}
    ends.  Returns the process and the port its C{listen} event names.
    """
    server = TwistProcess("tcpecho", "--port", "0", "--interface", "127.0.0.1", *args, **kwargs)
    test.addCleanup(server.kill)
    return server, portOf(server.waitFor(lifecycle="listen")["address"])


def readUntilReset(port: int, request: bytes = b"go") -> tuple[int, bool]:
    """
    Send C{request} and read until EOF or a reset; how many bytes came, and
    whether it ended in a reset.  Blocking: run it in a thread.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        client.sendall(request)
        return readToEndOrReset(client)


def readToEndOrReset(client: socket.socket) -> tuple[int, bool]:
    """
    Read C{client} until EOF or a reset; how many bytes came, and whether
    it ended in a reset.  Blocking: run it in a thread.
    """
    received = 0
    try:
        while chunk := client.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        return received, True
    return received, False


def assertRejected(
    test: Any, parse: Callable[..., object], argv: list[str], *fragments: str
) -> None:
    """
    C{parse(*argv)} raises a UsageError whose message is one line holding
    every one of C{fragments}.
    """
    from twisted.python.usage import UsageError

    error = test.assertRaises(UsageError, parse, *argv)
    message = str(error)
    test.assertNotIn("\n", message)
    for fragment in fragments:
        test.assertIn(fragment, message)


def runTwist(
    *args: str, timeout: float = WAIT, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twist} to completion (for commands that should exit by themselves).
    """
    return subprocess.run(
        [str(BIN / "twist"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def socketUnder(transport: Any) -> socket.socket:
    """
    The kernel socket under a stack of wrappers (L{TrackedConnection}, TLS,
    PROXY): each wrapper is a protocol to the transport below it.
    """
    while hasattr(transport, "wrappedProtocol"):
        transport = transport.transport
    handle = transport.getHandle()
    assert isinstance(handle, socket.socket), handle
    return handle


def callInThread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Run a blocking client in a thread; the reactor keeps serving meanwhile.
    """
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)  # type: ignore[attr-defined]


def pollerOf(transport: Any) -> Any:
    """
    What C{transport} registers its reads and writes with: a tcplife
    transport's batched poller (see C{tcplife.internet._poller}), else the reactor.
    """
    from twisted.internet import reactor

    return getattr(transport, "_poller", reactor)


# tcp_info's first byte is the connection's state; 7 is TCP_CLOSE.
TCP_CLOSE = 7


def tcpState(connected: socket.socket) -> int:
    """
    The kernel's TCP state of C{connected} (C{TCP_INFO}'s first byte).
    """
    state: int = connected.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return state


#: tcp_info's states (include/net/tcp_states.h).
TCP_CLOSE_WAIT = 8


@inlineCallbacks
def waitUntil(
    condition: Callable[[], bool], what: str, timeout: float = 2.0
) -> Generator[Deferred[Any], Any, None]:
    """
    Let the reactor run until C{condition()} holds, checking every 10 ms
    for at most C{timeout} seconds; fail, naming C{what}, if it never does.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(int(timeout * 100)):
        if condition():
            return
        yield deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def waitUntilClosedByKernel(connected: socket.socket) -> Deferred[None]:
    """
    Let the reactor run until the kernel has closed C{connected} (a RST
    arrived), for at most 2 s; fail if it never does.
    """
    return waitUntil(
        lambda: tcpState(connected) == TCP_CLOSE, "the kernel's close of the socket (a RST)"
    )
