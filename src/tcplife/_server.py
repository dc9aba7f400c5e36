"""
The server factory: shared state of every connection it serves.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from ._connection import TrackedConnection
from ._echo import EchoProtocol
from ._events import LifecycleLog


class LifecycleServerFactory(ServerFactory):
    """
    Serves C{protocol} and makes each connection's lifecycle visible.

    Any protocol works, not only L{EchoProtocol}: each one is wrapped in a
    L{TrackedConnection} that emits C{accept}, C{half-close} and C{close}
    events and counts bytes, so the protocol needs no special hooks.  The
    protocol's C{factory} attribute is this factory, as usual.

    Subclasses may override L{connectionOpened} and L{connectionClosed} (call
    up) to keep their own books.

    @ivar connections: The open connections, by connection id.
    @ivar events: Where lifecycle events go.
    @ivar clock: Times each connection's duration.
    """

    protocol = EchoProtocol
    noisy = False

    def __init__(
        self,
        *,
        trace: bool = False,
        clock: IReactorTime | None = None,
        events: LifecycleLog | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        assert clock is not None
        self.clock = clock
        self.events = events if events is not None else LifecycleLog(trace=trace)
        if trace:
            self.events.trace = True
        self.connections: dict[int, TrackedConnection] = {}

    def buildProtocol(self, addr: IAddress | None) -> TrackedConnection | None:
        wrapped = super().buildProtocol(addr)
        if wrapped is None:
            return None
        return TrackedConnection(self, wrapped, role="server")

    def connectionOpened(self, connection: TrackedConnection) -> None:
        """
        A connection was accepted; called before its protocol's
        C{connectionMade}.
        """
        self.connections[connection.connId] = connection
        self.events.accept(connection.connId, connection.peer, connection.local)

    def connectionClosed(self, connection: TrackedConnection) -> None:
        """
        A connection is gone; called after its C{close} event and before its
        protocol's C{connectionLost}.
        """
        del self.connections[connection.connId]

    def logPrefix(self) -> str:
        return self.protocol.__name__
