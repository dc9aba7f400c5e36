"""
The server factory: shared state of every connection it serves.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory

from ..events import LifecycleLog
from ..protocols import ConnectionTracking, EchoProtocol, Reflect, TrackedConnection
from ._admission import AcceptGate
from ._faults import FaultPlan, misbehave
from ._idle import IdleSweeper


class LifecycleServerFactory(ConnectionTracking, ServerFactory):
    """
    Serves C{protocol} and makes each connection's lifecycle visible.

    Any protocol works, not only L{EchoProtocol}: each one is wrapped in a
    L{TrackedConnection} that emits C{accept}, C{half-close} and C{close}
    events, counts bytes and applies backpressure, so the protocol needs no
    special hooks.  The protocol's C{factory} attribute is this factory, as
    usual.

    Settings are class attributes (a subclass may change them) and keyword
    arguments.  Subclasses may override L{connectionOpened} and
    L{connectionClosed} (call up) to keep their own books.

    @cvar maxConnections: Stop accepting while this many are open (new
        clients wait in the kernel's accept queue); C{None}: no cap.
    @cvar idleTimeout: Close connections that moved no byte for this many
        seconds (C{how=timeout}); C{None}: never.
    @cvar closeTimeout: Abort a connection whose graceful close has not
        finished within this many seconds.
    @cvar faults: Faults on purpose (C{--fault}): which connections get
        which, drawn connection by connection; C{None}: none.
    @cvar reflectAs: Start each connection with a line that names the
        server so, and the addresses it saw (C{--reflect}); C{None}: no line.

    @ivar connections: The open connections, by connection id.
    @ivar events: Where lifecycle events go.
    @ivar clock: Times connections and timeouts.
    @ivar gate: Admission control: when to accept.
    @ivar accepted: Connections accepted so far.
    @ivar closed: Connections closed so far, by C{how}.
    @ivar bytesInClosed: Bytes received on connections now closed.
    @ivar bytesOutClosed: Bytes sent on connections now closed.
    """

    protocol: type[Protocol] = EchoProtocol
    noisy = False
    maxConnections: int | None = None
    idleTimeout: float | None = None
    closeTimeout: float = 5.0
    faults: FaultPlan | None = None
    reflectAs: str | None = None

    def __init__(
        self,
        *,
        trace: bool = False,
        clock: IReactorTime | None = None,
        events: LifecycleLog | None = None,
        maxConnections: int | None = None,
        idleTimeout: float | None = None,
        closeTimeout: float | None = None,
        faults: FaultPlan | None = None,
        reflectAs: str | None = None,
    ) -> None:
        self.startTracking(clock, events, trace)
        if faults is not None:
            self.faults = faults
        if reflectAs is not None:
            self.reflectAs = reflectAs
        if maxConnections is not None:
            self.maxConnections = maxConnections
        if idleTimeout is not None:
            self.idleTimeout = idleTimeout
        if closeTimeout is not None:
            self.closeTimeout = closeTimeout
        self._whenEmpty: list[Deferred[None]] = []
        self.accepted = 0
        self.closed: Counter[str] = Counter()
        self.bytesInClosed = 0
        self.bytesOutClosed = 0
        self.gate = AcceptGate(
            self.events, self.clock, self.connections.__len__, self.maxConnections, self.faults
        )
        self.sweeper: IdleSweeper | None = None
        if self.idleTimeout is not None:
            self.sweeper = IdleSweeper(
                self.connections, self.clock, self.idleTimeout, self.closeTimeout
            )

    def buildProtocol(self, addr: IAddress | None) -> TrackedConnection | None:
        """
        A L{TrackedConnection} around a new C{protocol}, and around that
        protocol the faults it drew and the reflection line, if asked.
        """
        # ConnectionTracking's, less a call: this runs for every accept.
        protocol: IProtocol | None = ServerFactory.buildProtocol(self, addr)
        if protocol is None:
            return None
        if self.faults is None and self.reflectAs is None:
            return TrackedConnection(self, protocol, self.role)
        # Inside the tracking: the reflection line is the protocol's first
        # output, and faults apply to it as to the rest.
        if self.reflectAs is not None:
            protocol = Reflect(protocol, self.reflectAs)
        kinds: tuple[str, ...] = ()
        if self.faults is not None:
            draw = self.faults.take()
            if draw.faults:
                kinds = draw.kinds
                protocol = misbehave(protocol, draw, self.clock)
        connection = TrackedConnection(self, protocol, self.role)
        connection.faults = kinds
        return connection

    def connectionOpened(self, connection: TrackedConnection) -> None:
        """
        A connection was accepted; called before its protocol's
        C{connectionMade}.
        """
        self.connections[connection.connId] = connection
        self.accepted += 1
        if self.events.enabled:
            # peer and local cost a system call each: only for a built event.
            self.events.accept(
                connection.connId, connection.peer, connection.local, connection.faults
            )
        self.gate.connectionOpened()
        if self.sweeper is not None:
            self.sweeper.start()

    def connectionClosed(self, connection: TrackedConnection) -> None:
        """
        A connection is gone; called after its C{close} event and before its
        protocol's C{connectionLost}.
        """
        del self.connections[connection.connId]
        self.closed[connection.how or "fin"] += 1
        self.bytesInClosed += connection.bytesIn
        self.bytesOutClosed += connection.bytesOut
        self.gate.connectionClosed()
        if not self.connections:
            if self.sweeper is not None:
                self.sweeper.stop()
            waiting, self._whenEmpty = self._whenEmpty, []
            for waiter in waiting:
                waiter.callback(None)

    def whenNoConnections(self) -> Deferred[None]:
        """
        A Deferred that fires once no connection is open (at once if none is).
        """
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._whenEmpty.append(waiter)
        return waiter
