"""
Idle timeouts, checked by one sweep over all connections rather than a timer
per connection: the read and write paths only count bytes, as they do anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ..events import TIMEOUT
from ..protocols import TrackedConnection


class IdleSweeper:
    """
    Closes connections that moved no byte in either direction for C{timeout}
    seconds: gracefully, with C{how=timeout}, and aborts those whose output
    has not drained within C{closeTimeout} seconds after that.

    A connection is closed between C{timeout} and C{timeout} plus one sweep
    interval (a quarter of C{timeout}, at most one second) after its last
    byte.
    """

    def __init__(
        self,
        connections: Mapping[int, TrackedConnection],
        clock: IReactorTime,
        timeout: float,
        closeTimeout: float | None,
    ) -> None:
        self.connections = connections
        self.clock = clock
        self.timeout = timeout
        self.closeTimeout = closeTimeout
        self.interval = min(timeout / 4, 1.0)
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock

    @property
    def running(self) -> bool:
        return bool(self._loop.running)

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> None:
        """
        Look at every open connection once; close those quiet for too long.
        """
        now = self.clock.seconds()
        quiet: list[TrackedConnection] = []
        for connection in self.connections.values():
            moved = connection.bytesIn + connection.bytesOut
            if moved != connection.lastMoved:
                connection.lastMoved = moved
                connection.quietSince = now
            elif now - connection.quietSince >= self.timeout and not connection.disconnecting:
                quiet.append(connection)
        # Closing may end a connection at once and change the mapping.
        for connection in quiet:
            connection.closeGracefully(self.closeTimeout, TIMEOUT)
