"""
What one speed lever does, observed before and after it is switched off.

    python -m tests.leverprobe LEVER

prints a JSON list: the observation with the lever on, then with it off (see
L{tcplife.bench._levers}).  A process of its own, because switching a lever
off changes tcplife's classes for good.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import termios
import time
from collections.abc import Callable
from fcntl import ioctl
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

_FIONREAD = termios.FIONREAD


class Recorder(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


def tcpPair(receiveBuffer: int | None = None) -> tuple[socket.socket, socket.socket]:
    """
    An accepted socket and its client, connected over loopback.
    """
    with socket.socket() as listener:
        if receiveBuffer is not None:
            # Accepted sockets inherit it from the listener.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


def directServer(
    reactor: Any, receiveBuffer: int | None = None
) -> tuple[Any, Recorder, socket.socket]:
    from tcplife._transport import DirectServer

    server, client = tcpPair(receiveBuffer)
    protocol = Recorder()
    transport = DirectServer(server, protocol, client.getsockname(), None, 0, reactor)
    protocol.makeConnection(transport)
    return transport, protocol, client


def writeAtOnce() -> str:
    transport, _, client = directServer(MemoryReactorClock())
    transport.write(b"ping")
    readable, _, _ = select.select([client], [], [], 0.5)
    return "sent at once" if readable else "buffered"


def readSize() -> str:
    transport, protocol, client = directServer(MemoryReactorClock(), receiveBuffer=1 << 20)
    client.sendall(bytes(100_000))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        waiting = int.from_bytes(ioctl(transport.socket.fileno(), _FIONREAD, bytes(4)), "little")
        if waiting >= 100_000:
            break
        time.sleep(0.01)
    transport.doRead()
    return f"read {len(protocol.chunks[0])}"


def noDelay() -> str:
    transport, _, _ = directServer(MemoryReactorClock())
    on = transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return "TCP_NODELAY on" if on else "TCP_NODELAY off"


def batchedPoller() -> str:
    transport, _, _ = directServer(EPollReactor())
    return type(transport._poller).__name__


def closeAtOnce() -> str:
    reactor = MemoryReactorClock()
    transport, _, _ = directServer(reactor)
    transport.loseConnection()
    if transport in reactor.getWriters():
        return "waits for a writable event"
    if reactor.getDelayedCalls():
        return "closes on the next pass"
    return "neither"


def flatAccept() -> str:
    from tcplife import _port

    calls = []
    accept = socket.socket.accept

    def counted(self: socket.socket) -> Any:
        calls.append(self)
        return accept(self)

    socket.socket.accept = counted  # type: ignore[method-assign]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()):
            accepted, _ = _port.acceptSocket(listener, socket.AF_INET)
            accepted.close()
    return "socket.accept called" if calls else "socket.accept not called"


def renderedEvents() -> str:
    from tcplife._events import LifecycleLog

    events: list[dict[str, Any]] = []
    LifecycleLog(Logger(observer=events.append)).close(7, "server", "peer", "fin", 1, 2, 0.5)
    return str(events[0]["log_format"])


PROBES: dict[str, Callable[[], str]] = {
    "write-at-once": writeAtOnce,
    "256k-reads": readSize,
    "nodelay": noDelay,
    "batched-poller": batchedPoller,
    "close-at-once": closeAtOnce,
    "flat-accept": flatAccept,
    "rendered-events": renderedEvents,
}


def main(lever: str) -> None:
    from tcplife.bench._levers import LEVERS

    probe = PROBES[lever]
    before = probe()
    LEVERS[lever].switchOff()
    print(json.dumps([before, probe()]))


if __name__ == "__main__":
    main(sys.argv[1])
