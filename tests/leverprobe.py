"""
What a real C{tcpecho} service does with one speed lever on, then off.

    python -m tests.leverprobe LEVER

runs the service C{twist tcpecho --port 0 --interface 127.0.0.1} builds, in
this process on its reactor, and echoes through it from a client thread: once
as it ships, then again after switching LEVER off (see
L{tcplife.bench._levers}).  Prints a JSON list of two dictionaries, what was
observed each time.  A process of its own, because switching a lever off
changes tcplife's classes for good.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from tcplife.bench._levers import LEVERS
from tcplife.internet._transport import DirectServer
from tcplife.tap.echo import Options, makeService

PAYLOAD = bytes(1000)


class Observer:
    """
    Counts what the server's connections do, through wrappers that keep
    whatever they wrap (tcplife's or, once a lever is off, Twisted's) working.
    """

    def __init__(self) -> None:
        self.transports: list[DirectServer] = []
        self.startWriting = 0
        self.socketAccepts = 0
        self.recvSizes: list[int] = []
        self.noDelay: list[int] = []
        self.shutdowns = 0
        self.closeFormats: list[str] = []
        self.closeViews: list[bool] = []
        self.listening: Deferred[int] = Deferred()
        self.closed = threading.Semaphore(0)
        self._install()

    def _install(self) -> None:
        observer = self
        serverSockets: set[socket.socket] = set()

        initialise = DirectServer.__init__

        def initialised(transport: DirectServer, sock: socket.socket, *args: Any) -> None:
            serverSockets.add(sock)
            initialise(transport, sock, *args)
            observer.transports.append(transport)
            observer.noDelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        startWriting = DirectServer.startWriting

        def counted(transport: DirectServer) -> None:
            observer.startWriting += 1
            startWriting(transport)

        accept = socket.socket.accept

        def accepted(listener: socket.socket) -> Any:
            observer.socketAccepts += 1
            return accept(listener)

        recv = socket.socket.recv

        def received(sock: socket.socket, size: int, *flags: int) -> bytes:
            if sock in serverSockets:
                observer.recvSizes.append(size)
            return recv(sock, size, *flags)

        shutdown = socket.socket.shutdown

        def shutDown(sock: socket.socket, how: int) -> None:
            if sock in serverSockets:
                observer.shutdowns += 1
            shutdown(sock, how)

        DirectServer.__init__ = initialised  # type: ignore[method-assign]
        DirectServer.startWriting = counted  # type: ignore[method-assign]
        socket.socket.accept = accepted  # type: ignore[method-assign]
        socket.socket.recv = received  # type: ignore[method-assign]
        socket.socket.shutdown = shutDown  # type: ignore[method-assign]
        globalLogPublisher.addObserver(self._event)

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("lifecycle") == "listen" and not self.listening.called:
            self.listening.callback(int(event["address"].rsplit(":", 1)[1]))
        elif event.get("lifecycle") == "close":
            self.closeFormats.append(event["log_format"])
            self.closeViews.append("tcp" in event)
            self.closed.release()

    def echoOnce(self, port: int) -> dict[str, Any]:
        """
        One connection: send, read the echo, half-close, read to EOF, and wait
        for the server's close.  Blocking: runs in a thread.
        """
        writesBefore, shutdownsBefore = self.startWriting, self.shutdowns
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(PAYLOAD)
            echoed = b""
            while len(echoed) < len(PAYLOAD):
                echoed += client.recv(len(PAYLOAD))
            # The server has written the echo: any wait for a writable event
            # that the write needed has happened.
            whileEchoing = self.startWriting - writesBefore
            client.shutdown(socket.SHUT_WR)
            rest = client.recv(1)
        if not self.closed.acquire(timeout=10):
            raise AssertionError("the server logged no close")
        return {
            "echoed": echoed == PAYLOAD and rest == b"",
            "waits for writable to echo": whileEchoing > 0,
            "waits for writable to close": self.startWriting - writesBefore - whileEchoing > 0,
            "shuts down before close": self.shutdowns > shutdownsBefore,
            "TCP_NODELAY": bool(self.noDelay[-1]),
            "registers with": type(self.transports[-1]._poller).__name__,
            "socket.accept calls": self.socketAccepts,
            "recv size": self.recvSizes[-1],
            "close event format": "template"
            if "{conn_id}" in self.closeFormats[-1]
            else "rendered",
            "kernel's view in the close event": self.closeViews[-1],
        }


def observe(lever: str) -> list[dict[str, Any]]:
    options = Options()
    options.parseOptions(["--port", "0", "--interface", "127.0.0.1"])
    observer = Observer()
    service = makeService(options, reactor)
    observations: list[dict[str, Any]] = []

    @inlineCallbacks
    def run() -> Any:
        try:
            service.startService()
            port = yield observer.listening
            observations.append((yield deferToThread(observer.echoOnce, port)))
            LEVERS[lever].switchOff()
            observer.socketAccepts = 0
            observations.append((yield deferToThread(observer.echoOnce, port)))
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run(installSignalHandlers=False)
    return observations


if __name__ == "__main__":
    print(json.dumps(observe(sys.argv[1])))
