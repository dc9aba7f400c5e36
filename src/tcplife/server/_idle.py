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
from ._settings import ServerSettings


class IdleSweeper:
    """
    Closes connections that moved no byte in either direction for the
    settings' C{idleTimeout} seconds: gracefully, with C{how=timeout}, and
    aborts those whose output has not drained within C{closeTimeout} seconds
    after that.

    A connection is closed between C{idleTimeout} and C{idleTimeout} plus one
    sweep interval (a quarter of C{idleTimeout}, at most one second) after
    its last byte.
    """

    def __init__(
        self,
        connections: Mapping[int, TrackedConnection],
        clock: IReactorTime,
        settings: ServerSettings,
    ) -> None:
        if settings.idleTimeout is None:
            raise ValueError("an idle sweeper needs settings with an idleTimeout")
        self.connections = connections
        self.clock = clock
        self.settings = settings
        self.interval = min(settings.idleTimeout / 4, 1.0)
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
        timeout = self.settings.idleTimeout
        assert timeout is not None
        quiet: list[TrackedConnection] = []
        for connection in self.connections.values():
            moved = connection.bytesIn + connection.bytesOut
            if moved != connection.lastMoved:
                connection.lastMoved = moved
                connection.quietSince = now
            elif now - connection.quietSince >= timeout and not connection.disconnecting:
                quiet.append(connection)
        # Closing may end a connection at once and change the mapping.
        closeTimeout = self.settings.closeTimeout
        for connection in quiet:
            connection.closeGracefully(closeTimeout, TIMEOUT)
