"""
What users need to test their own protocols under tcplife, without sockets,
as C{treq.testing} is for treq: a recorder of lifecycle events, and one
served connection on a C{StringTransport} and a clock::

    from tcplife.testing import ServedConnection

    served = ServedConnection(UpperEcho)
    served.receive(b"hi\\n")
    assert served.sent() == b"HI\\n"
    served.peerHalfCloses()
    assert served.events.phases() == ["accept", "half-close", "close"]
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from .events import LifecycleLog
from .protocols import TrackedConnection
from .server import LifecycleServerFactory

#: The addresses a L{ServedConnection} has unless told otherwise.
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
LOCAL = IPv4Address("TCP", "127.0.0.1", 9000)


class EventRecorder:
    """
    A L{LifecycleLog} whose events are kept in a list, with Deferreds that
    fire when a matching event arrives.

    @ivar log: Give it to a factory (C{events=recorder.log}).
    @ivar events: Every event so far, in order.
    """

    def __init__(self, *, trace: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiting: list[tuple[dict[str, Any], Deferred[dict[str, Any]]]] = []
        observer = cast(ILogObserver, self._observe)
        self.log = LifecycleLog(Logger(namespace="tcplife", observer=observer), trace=trace)

    def _observe(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for entry in list(self._waiting):
            match, waiter = entry
            if _matches(event, match):
                self._waiting.remove(entry)
                waiter.callback(event)

    def of(self, phase: str) -> list[dict[str, Any]]:
        """
        The events of one phase (a C{lifecycle} value), in order.
        """
        return [event for event in self.events if event.get("lifecycle") == phase]

    def phases(self, connId: int | None = None) -> list[str]:
        """
        The phases seen, in order (of one connection, if given).
        """
        return [
            event["lifecycle"]
            for event in self.events
            if connId is None or event.get("conn_id") == connId
        ]

    def when(self, **match: Any) -> Deferred[dict[str, Any]]:
        """
        A Deferred that fires with the first event (past or future) whose
        fields include C{match}.
        """
        for event in self.events:
            if _matches(event, match):
                return succeed(event)
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append((match, waiter))
        return waiter


def _matches(event: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(event.get(key) == value for key, value in match.items())


class ServedConnection:
    """
    One connection served by a L{LifecycleServerFactory} (or a subclass),
    on a C{StringTransport} and a C{MemoryReactorClock}: the factory's
    lifecycle events, limits and timeouts apply as on a real socket, and
    time moves only with C{clock.advance}.

    @ivar clock: The factory's clock.
    @ivar events: What the factory emitted.
    @ivar factory: The factory that served the connection, made with
        C{factoryClass(clock=..., events=..., **settings)}.
    @ivar connection: The L{TrackedConnection} between transport and protocol.
    @ivar protocol: The protocol the factory built (the user's).
    @ivar transport: The C{StringTransport} standing in for the socket.
    """

    def __init__(
        self,
        protocol: type[Protocol] | None = None,
        *,
        factoryClass: type[LifecycleServerFactory] = LifecycleServerFactory,
        clock: MemoryReactorClock | None = None,
        trace: bool = False,
        peer: IAddress = PEER,
        local: IAddress = LOCAL,
        transport: StringTransport | None = None,
        **settings: Any,
    ) -> None:
        """
        @param protocol: What the factory serves; C{None}: the factory
            class's own C{protocol} (L{EchoProtocol} for tcplife's).
        @param settings: The factory's keyword arguments
            (C{maxConnections}, C{idleTimeout}, C{closeTimeout}, ...).
        """
        self.clock = clock if clock is not None else MemoryReactorClock()
        self.events = EventRecorder(trace=trace)
        factory = factoryClass(clock=self.clock, events=self.events.log, **settings)
        if protocol is not None:
            factory.protocol = protocol
        self.factory = factory
        connection = factory.buildProtocol(peer)
        if not isinstance(connection, TrackedConnection):
            raise TypeError(f"{factory!r} did not build a tracked connection")
        self.connection = connection
        self.protocol: IProtocol = connection.wrappedProtocol
        self.transport = transport or StringTransport(hostAddress=local, peerAddress=peer)
        connection.makeConnection(self.transport)

    def receive(self, data: bytes) -> None:
        """
        The peer sent C{data}.
        """
        self.connection.dataReceived(data)

    def sent(self) -> bytes:
        """
        Everything written to the peer so far, taken off the transport.
        """
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def peerHalfCloses(self) -> None:
        """
        The peer sent FIN (C{shutdown(SHUT_WR)}): it sends nothing more but
        still reads; a close the protocol asks for in answer completes.
        """
        self.connection.readConnectionLost()
        self.finishClose()

    def peerResets(self) -> None:
        """
        The peer reset the connection (RST).
        """
        self.connection.connectionLost(Failure(ConnectionLost()))

    def finishClose(self) -> bool:
        """
        If the connection asked its transport to close, let the close happen
        (a socket would, once its output was sent); whether it did.
        """
        if not self.transport.disconnecting or not self.connection.connected:
            return False
        self.connection.connectionLost(Failure(ConnectionDone()))
        return True

    @property
    def closeEvent(self) -> dict[str, Any] | None:
        """
        The connection's C{close} event, once it has one.
        """
        closes = self.events.of("close")
        return closes[-1] if closes else None


__all__ = ["LOCAL", "PEER", "EventRecorder", "ServedConnection"]
