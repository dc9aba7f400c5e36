"""
A protocol wrapper that keeps half-close, for pieces that change one thing
about a connection (a fault, the C{--reflect} line) and pass the rest on.

Twisted's L{ProtocolWrapper} is the model: to the transport below it is the
protocol, to the protocol above it is the transport.  Three things are added:
half-close and the TLS handshake pass through (Twisted's wrapper turns a
peer's FIN into a full close); reading can be paused for several reasons at
once (the protocol's own, and a piece's), and resumes only when none holds it;
and each wrapper knows the L{TrackedConnection} below the stack, so a piece
that ends the connection on purpose can say so in its C{close} event.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from ._halfclose import passReadConnectionLost, passWriteConnectionLost
from ._tls import loseWriteConnection
from ._tracking import TrackedConnection

#: Why reading is paused: the protocol above asked (C{pauseProducing}).
PAUSED_BY_PROTOCOL = 1


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class ConnectionWrapper(ProtocolWrapper):
    """
    Passes everything between a transport and C{wrapped}; subclasses
    override what they change.

    Override points: C{connectionMade} runs before C{wrapped} is connected
    (what is written there goes first); L{protocolConnected} runs after.

    @cvar kind: What the wrapper does, as the events name it (a fault's kind).
    @ivar tracked: The L{TrackedConnection} at the bottom of the stack, if
        there is one.
    """

    kind: ClassVar[str] = ""

    # zope.interface looks this up on each adaptation (a FIN adapts us to
    # IHalfCloseableProtocol); without it __getattr__ would ask the transport.
    __conform__ = None

    def __init__(self, wrapped: IProtocol) -> None:
        # No WrappingFactory: the server factory puts these around the
        # protocol it built, and nothing keeps a registry of them.
        self.wrappedProtocol = wrapped
        self.factory = None
        self.tracked: TrackedConnection | None = None
        self._pausedFor = 0

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        if isinstance(transport, TrackedConnection):
            self.tracked = transport
        elif isinstance(transport, ConnectionWrapper):
            self.tracked = transport.tracked
        Protocol.makeConnection(self, transport)
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]
        if self.connected:
            self.protocolConnected()

    def protocolConnected(self) -> None:
        """
        The wrapped protocol is connected (its C{connectionMade} has run).
        """

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.connected = False
        try:
            if self.wrappedProtocol is not None:
                self.wrappedProtocol.connectionLost(reason)
        finally:
            # As ProtocolWrapper does: the protocol's transport is us, so
            # this reference made a cycle.
            self.wrappedProtocol = None  # type: ignore[assignment]

    def logPrefix(self) -> str:
        if self.wrappedProtocol is None:
            return type(self).__name__
        return str(super().logPrefix())  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        self.disconnecting = True
        assert self.transport is not None
        self.transport.loseConnection()

    # -- half-close and TLS, passed on ------------------------------------

    def readConnectionLost(self) -> None:
        passReadConnectionLost(self.wrappedProtocol, self.loseConnection)

    def writeConnectionLost(self) -> None:
        passWriteConnectionLost(self.wrappedProtocol)

    def loseWriteConnection(self) -> None:
        """
        Send FIN (over TLS, C{close_notify}) after what is written so far,
        and keep reading.
        """
        assert self.transport is not None
        loseWriteConnection(self.transport)

    def handshakeCompleted(self) -> None:
        listener = IHandshakeListener(self.wrappedProtocol, None)
        if listener is not None:
            listener.handshakeCompleted()

    # -- reading, paused for any of several reasons -------------------------

    def pauseProducing(self) -> None:
        """
        The protocol asks to stop reading from the peer.
        """
        self.pauseReading(PAUSED_BY_PROTOCOL)

    def resumeProducing(self) -> None:
        self.resumeReading(PAUSED_BY_PROTOCOL)

    def stopProducing(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # type: ignore[attr-defined]

    def pauseReading(self, reason: int) -> None:
        """
        Stop reading for C{reason} (a bit of its own per subclass), until
        L{resumeReading} with the same reason and no other holds it.
        """
        if not self._pausedFor and self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._pausedFor |= reason

    def resumeReading(self, reason: int) -> None:
        if not self._pausedFor & reason:
            return
        self._pausedFor &= ~reason
        if not self._pausedFor and self.connected and self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    # -- ending on purpose --------------------------------------------------

    def endedOnPurpose(self, how: str | None = None) -> None:
        """
        This wrapper is about to end the connection: its C{close} event
        names L{kind} as its C{fault} (and says C{how}, if given).
        """
        tracked = self.tracked
        if tracked is not None:
            tracked.fault = self.kind
            if how is not None and tracked.how is None:
                tracked.how = how
