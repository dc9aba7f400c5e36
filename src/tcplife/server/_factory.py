"""
The server factory: shared state of every connection it serves.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory

from ..events import ACCEPT, CLOSE, LifecycleLog
from ..internet import seeKernelAtClose
from ..protocols import ConnectionTracking, EchoProtocol, Reflect, TrackedConnection
from ._admission import AcceptGate
from ._closestats import CloseStats
from ._faults import faultPlan, misbehave
from ._idle import IdleSweeper
from ._settings import ServerSettings

_DEFAULTS = ServerSettings()


def serverName() -> str:
    """
    What a server calls itself in its reflection line when not told:
    C{HOSTNAME:PID}.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


class LifecycleServerFactory(ConnectionTracking, ServerFactory):
    """
    Serves C{protocol} and makes each connection's lifecycle visible.

    Any protocol works, not only L{EchoProtocol}: each one is wrapped in a
    L{TrackedConnection} that emits C{accept}, C{half-close} and C{close}
    events, counts bytes and applies backpressure, so the protocol needs no
    special hooks.  The protocol's C{factory} attribute is this factory, as
    usual.  Subclasses may override L{connectionOpened} and
    L{connectionClosed} (call up) to keep their own books.

    Its settings are a L{ServerSettings}, L{settings}, read by every part of
    the server.  Where they come from, each overriding the one before:

      1. L{ServerSettings}' defaults;
      2. the class attributes below, a subclass's own defaults
         (L{defaultSettings} is L{ServerSettings} with them);
      3. C{settings=}, if given, which replaces both: start it from
         C{MyFactory.defaultSettings()} to keep a subclass's (C{twist tcpecho
         --factory} does, and then sets what the options give);
      4. the keyword arguments C{maxConnections}, C{idleTimeout},
         C{closeTimeout} and C{trace}, each one field.

    Serve it on tcplife's ports (L{tcplife.listen},
    C{tcplife.serverFromString}, or a L{tcplife.PortReactor}), which never
    accept beyond C{maxConnections}: the clients beyond it wait in the
    kernel's accept queue.  On a port tcplife did not make (a plain
    C{reactor.listenTCP}), the cap holds too: the factory governs that port
    from its first connection on, stops it reading at the cap, and resets
    the connections a burst of accepts takes beyond it (see L{buildProtocol}).

    @cvar maxConnections: A subclass's default for
        L{ServerSettings.maxConnections}.
    @cvar idleTimeout: A subclass's default for L{ServerSettings.idleTimeout}.
    @cvar closeTimeout: A subclass's default for
        L{ServerSettings.closeTimeout}.

    @ivar settings: The settings this factory serves with.
    @ivar faults: Which connections misbehave on purpose, and how (the
        settings' C{fault} and C{seed}); C{None}: none.
    @ivar reflectAs: The name each connection's reflection line gives the
        server (the settings' C{reflect} and C{name}); C{None}: no line.
    @ivar connections: The open connections, by connection id.
    @ivar events: Where lifecycle events go.
    @ivar clock: Times connections and timeouts.
    @ivar gate: Admission control: when to accept.
    @ivar accepted: Connections accepted so far.
    @ivar closed: Connections closed so far, by C{how}.
    @ivar bytesInClosed: Bytes received on connections now closed.
    @ivar bytesOutClosed: Bytes sent on connections now closed.
    @ivar closeStats: Histograms of the closed connections' durations and
        round-trip times, and their retransmissions, once
        L{keepCloseStats} has been called (the metrics do).
    """

    protocol: type[Protocol] = EchoProtocol
    noisy = False
    maxConnections: int | None = _DEFAULTS.maxConnections
    idleTimeout: float | None = _DEFAULTS.idleTimeout
    closeTimeout: float = _DEFAULTS.closeTimeout

    @classmethod
    def defaultSettings(cls) -> ServerSettings:
        """
        L{ServerSettings} with this class's own defaults (its class
        attributes) in place of the general ones.
        """
        return _DEFAULTS.evolve(
            maxConnections=cls.maxConnections,
            idleTimeout=cls.idleTimeout,
            closeTimeout=cls.closeTimeout,
        )

    def __init__(
        self,
        *,
        settings: ServerSettings | None = None,
        trace: bool = False,
        clock: IReactorTime | None = None,
        events: LifecycleLog | None = None,
        maxConnections: int | None = None,
        idleTimeout: float | None = None,
        closeTimeout: float | None = None,
    ) -> None:
        given: dict[str, Any] = {
            name: value
            for name, value in (
                ("maxConnections", maxConnections),
                ("idleTimeout", idleTimeout),
                ("closeTimeout", closeTimeout),
            )
            if value is not None
        }
        if trace:
            given["trace"] = True
        base = settings if settings is not None else self.defaultSettings()
        self.settings = base.evolve(**given) if given else base
        self.startTracking(clock, events, self.settings.trace)
        if self.settings.protocol is not None:
            self.protocol = self.settings.protocol
        # What the class attributes say for this instance, for whoever reads
        # them; the parts read the settings.
        self.maxConnections = self.settings.maxConnections
        self.idleTimeout = self.settings.idleTimeout
        self.closeTimeout = self.settings.closeTimeout
        # Drawn in accept order, from the settings' seed (or a random one,
        # logged): the faults on purpose, if any.
        self.faults = faultPlan(self.settings.fault, self.settings.seed)
        self.reflectAs = (self.settings.name or serverName()) if self.settings.reflect else None
        self._whenEmpty: list[Deferred[None]] = []
        self.accepted = 0
        self.closed: Counter[str] = Counter()
        self.bytesInClosed = 0
        self.bytesOutClosed = 0
        self.closeStats: CloseStats | None = None
        self.gate = AcceptGate(
            self.events, self.clock, self.connections.__len__, self.settings, self.faults
        )
        self.sweeper: IdleSweeper | None = None
        if self.settings.idleTimeout is not None:
            self.sweeper = IdleSweeper(self.connections, self.clock, self.settings)

    @property
    def acceptPolicy(self) -> AcceptGate:
        """
        The admission gate, as the accept policy tcplife's ports apply to
        the factory they serve (see L{tcplife.PortReactor}).
        """
        return self.gate

    def buildProtocol(self, addr: IAddress | None) -> Protocol | TrackedConnection | None:  # type: ignore[override]
        """
        A L{TrackedConnection} around a new C{protocol} (and, around that
        protocol, the faults the connection drew and the reflection line,
        if the settings ask for them); or, with C{maxConnections} open
        already, a protocol that resets the connection at once (counted in
        the gate's C{refusedOverCap}).

        tcplife's ports never ask beyond the cap; a port tcplife did not
        make can, within one burst of accepts (C{tcp.Port} takes up to 100
        and more per wake-up, whatever the factory says in between).  Not
        C{None}: Twisted's TLS and PROXY wrappers would wrap it as a
        protocol.
        """
        cap = self.settings.maxConnections
        # The gate's openConnections(), spelled out: this runs per accept.
        if cap is not None and len(self.connections) + self.gate.awaitingHeader >= cap:
            self.gate.refusedOverCap += 1
            return _OverCap()
        # ConnectionTracking's, less a call.
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
        events = self.events
        # peer and local cost a system call each: only for a built event
        # (and with none built at all, not even the questions).
        if events.enabled:
            if events.wants(ACCEPT):
                events.accept(
                    connection.connId, connection.peer, connection.local, connection.faults
                )
            elif events.wants(CLOSE):
                # The close event has it, and a closed socket no longer knows it.
                connection.local  # noqa: B018
        # A transport of Twisted's (a plain listenTCP) is taught to keep
        # the kernel's view at close; tcplife's own keep it already.
        seeKernelAtClose(connection.transport)
        if self.settings.maxConnections is not None:
            # Through whatever wraps it (TLS, PROXY), the transport's port; one
            # that accepts under the gate is the gate's already.
            port = getattr(connection.transport, "server", None)
            if getattr(port, "acceptPolicy", None) is not self.gate:
                self.gate.noticePort(port)
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
        if self.closeStats is not None:
            self.closeStats.closed(connection, self.clock.seconds() - connection.openedAt)
        self.gate.connectionClosed()
        if not self.connections:
            if self.sweeper is not None:
                self.sweeper.stop()
            waiting, self._whenEmpty = self._whenEmpty, []
            for waiter in waiting:
                waiter.callback(None)

    def keepCloseStats(self) -> CloseStats:
        """
        From now on, keep L{closeStats} (a C{bisect} and the kernel's view
        parsed, per close).
        """
        if self.closeStats is None:
            self.closeStats = CloseStats()
        return self.closeStats

    def whenNoConnections(self) -> Deferred[None]:
        """
        A Deferred that fires once no connection is open (at once if none is).
        """
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._whenEmpty.append(waiter)
        return waiter


class _OverCap(Protocol):
    """
    A connection accepted beyond the cap: reset at once, unserved.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()
