"""
What a real C{tcpecho} service does with its speed levers on, or some off.

L{LeverProbe.observe} builds the service C{twist tcpecho --port 0
--interface 127.0.0.1} builds, with C{TCPLIFE_LEVERS_OFF} as given, on the
running reactor of this process, echoes once through it from a client
thread, stops it, and says what it saw.  The levers are flags of the objects
each service makes, so services with different levers off run one after
another in one process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import globalLogPublisher

from tcplife import DirectServer
from tcplife.tap.echo import Options, makeService

from .helpers import WAIT, callInThread

PAYLOAD = bytes(1000)

#: How a test replaces an attribute until it ends (trial's C{TestCase.patch}).
Patch = Callable[[Any, str, Any], None]


class LeverProbe:
    """
    Counts what the servers' connections do, through wrappers (installed
    with C{patch}, so they go when the test does) that keep whatever they
    wrap working.
    """

    def __init__(self, patch: Patch) -> None:
        self.transports: list[DirectServer] = []
        self.startWriting = 0
        self.socketAccepts = 0
        self.recvSizes: list[int] = []
        self.noDelay: list[int] = []
        self.shutdowns = 0
        self.closeFormats: list[str] = []
        self.closeViews: list[bool] = []
        self._serverSockets: set[socket.socket] = set()
        self._install(patch)

    def _install(self, patch: Patch) -> None:
        probe = self
        serverSockets = self._serverSockets

        initialise = DirectServer.__init__

        def initialised(transport: DirectServer, sock: socket.socket, *args: Any) -> None:
            serverSockets.add(sock)
            initialise(transport, sock, *args)
            probe.transports.append(transport)
            probe.noDelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        startWriting = DirectServer.startWriting

        def counted(transport: DirectServer) -> None:
            probe.startWriting += 1
            startWriting(transport)

        accept = socket.socket.accept

        def accepted(listener: socket.socket) -> Any:
            probe.socketAccepts += 1
            return accept(listener)

        recv = socket.socket.recv

        def received(sock: socket.socket, size: int, *flags: int) -> bytes:
            if sock in serverSockets:
                probe.recvSizes.append(size)
            return recv(sock, size, *flags)

        shutdown = socket.socket.shutdown

        def shutDown(sock: socket.socket, how: int) -> None:
            if sock in serverSockets:
                probe.shutdowns += 1
            shutdown(sock, how)

        patch(DirectServer, "__init__", initialised)
        patch(DirectServer, "startWriting", counted)
        patch(socket.socket, "accept", accepted)
        patch(socket.socket, "recv", received)
        patch(socket.socket, "shutdown", shutDown)

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("lifecycle") == "close":
            self.closeFormats.append(event["log_format"])
            self.closeViews.append("tcp" in event)

    @inlineCallbacks
    def observe(self, leversOff: str = "") -> Generator[Deferred[Any], Any, dict[str, Any]]:
        """
        One echo through a tcpecho service with C{leversOff} off (their
        names, separated by commas, as C{TCPLIFE_LEVERS_OFF} gives them).
        """
        options = Options()
        options.environ = {"TCPLIFE_LEVERS_OFF": leversOff}
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1"])
        service = makeService(options, reactor)
        self.socketAccepts = 0
        closes = len(self.closeFormats)
        globalLogPublisher.addObserver(self._event)
        try:
            service.startService()
            [listener] = service.server.listeners  # type: ignore[attr-defined]
            observed = yield callInThread(self.echoOnce, listener.port.getHost().port)
            yield service.server.factory.whenNoConnections()  # type: ignore[attr-defined]
        finally:
            yield service.stopService()
            globalLogPublisher.removeObserver(self._event)
        if len(self.closeFormats) != closes + 1:
            raise AssertionError("the server logged no close")
        observed["close event format"] = (
            "template" if "{conn_id}" in self.closeFormats[-1] else "rendered"
        )
        observed["kernel's view in the close event"] = self.closeViews[-1]
        return observed

    def echoOnce(self, port: int) -> dict[str, Any]:
        """
        One connection: send, read the echo, half-close, read to EOF.
        Blocking: runs in a thread.
        """
        writesBefore, shutdownsBefore = self.startWriting, self.shutdowns
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(PAYLOAD)
            echoed = b""
            while len(echoed) < len(PAYLOAD):
                echoed += client.recv(len(PAYLOAD))
            # The server has written the echo: any wait for a writable event
            # that the write needed has happened.
            whileEchoing = self.startWriting - writesBefore
            client.shutdown(socket.SHUT_WR)
            rest = client.recv(1)
        return {
            "echoed": echoed == PAYLOAD and rest == b"",
            "waits for writable to echo": whileEchoing > 0,
            "waits for writable to close": self.startWriting - writesBefore - whileEchoing > 0,
            "shuts down before close": self.shutdowns > shutdownsBefore,
            "TCP_NODELAY": bool(self.noDelay[-1]),
            "registers with": type(self.transports[-1]._poller).__name__,
            "accepts with socket.accept": self.socketAccepts > 0,
            "recv size": self.recvSizes[-1],
        }
