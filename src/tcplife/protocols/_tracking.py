"""
The wrapper that makes any protocol's connection lifecycle visible.

L{TrackedConnection} sits between a transport and the protocol a factory
built, the way C{twisted.protocols.policies.ProtocolWrapper} does: to the
transport it is the protocol, to the protocol it is the transport.  From that
seat it sees every byte, every close and who asked for it, without the
protocol calling any special hook.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    ILoggingContext,
    IProducer,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementedBy, implementer, providedBy

from ..events import ABORT, CLOSE, FIN, LOCAL, PEER, RESET, TIMEOUT, LifecycleLog, describeAddress
from ._halfclose import passReadConnectionLost, passWriteConnectionLost
from ._tls import loseWriteConnection

if TYPE_CHECKING:
    from typing import Protocol as _TypingProtocol

    class ConnectionOwner(_TypingProtocol):
        """
        What a L{TrackedConnection} needs from the factory that made it.
        """

        events: LifecycleLog
        clock: IReactorTime
        lastLocalAddress: tuple[object, str]

        def connectionOpened(self, connection: TrackedConnection) -> None: ...

        def connectionClosed(self, connection: TrackedConnection) -> None: ...


# Connection ids are unique per process, across every factory, so that events
# from several listeners (or a server and a client in one process) never clash.
_connectionIds = itertools.count(1)


def numberConnections(first: int, step: int = 1) -> None:
    """
    Number the connections made from now on C{first}, C{first + step},
    C{first + 2 * step}, ...: several processes whose events go to one log
    each take a different C{first} below a common C{step}, and their
    C{conn_id}s never clash (what C{twist tcpecho --workers} does).
    """
    global _connectionIds
    if first < 1 or step < 1:
        raise ValueError(f"connection ids start at 1 and grow; not {first} by {step}")
    _connectionIds = itertools.count(first, step)


@implementer(IPushProducer)
class _OutputBackpressure:
    """
    The producer a L{TrackedConnection} registers with its transport.

    The transport pauses it when its write buffer passes the high-water mark
    (C{bufferSize}) and resumes it once the buffer drains; the connection stops
    reading meanwhile, so TCP flow control pushes back on a peer that sends
    but does not read, and the buffer stays bounded.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: TrackedConnection) -> None:
        self._connection: TrackedConnection | None = connection

    def pauseProducing(self) -> None:
        if self._connection is not None:
            self._connection._setOutputBlocked(True)

    def resumeProducing(self) -> None:
        if self._connection is not None:
            self._connection._setOutputBlocked(False)

    def detach(self) -> None:
        """
        The connection is gone.  A transport need not unregister its producer
        when it closes (Twisted's TLS transport keeps it), and this reference
        back to the connection would make a cycle.
        """
        self._connection = None

    def stopProducing(self) -> None:
        # The transport is going away; connectionLost follows and says how.
        pass


_RESET_BY_PEER = os.strerror(errno.ECONNRESET)

# What a TrackedConnection provides, by what its transport provides.
_providesFor: dict[Any, Any] = {}


@implementer(
    IProtocol, IHalfCloseableProtocol, IHandshakeListener, ITransport, IConsumer, IPushProducer
)
class TrackedConnection:
    """
    One connection, observed from accept (or connect) to close.

    @ivar connId: Unique within the process; every event of this connection
        carries it as C{conn_id}.
    @ivar bytesIn: Bytes received from the peer so far.
    @ivar bytesOut: Bytes the protocol has written so far.
    @ivar openedAt: When the connection was made, on the owner's clock.
    @ivar initiator: C{"local"} or C{"peer"}: who started to end it, once
        somebody has.
    @ivar how: Set before the close when the reason is known locally
        (C{"abort"}, C{"timeout"}); otherwise derived from the transport's
        reason at close.
    @ivar wrappedProtocol: The protocol; C{None} once its C{connectionLost}
        has returned, as with C{twisted.protocols.policies.ProtocolWrapper}.
    @ivar faults: The kinds of fault the server applies to this connection
        on purpose (C{--fault}), in the order the C{accept} event lists them;
        empty for most.
    @ivar fault: The kind of fault that ended this connection on purpose
        (C{"reset-after"}, ...), which its C{close} event names; C{None}
        when none did.
    """

    # Slots: a server may hold tens of thousands of these at once.  Every slot
    # is set in __init__, so __getattr__ (the pass-through to the transport)
    # never stands in for one of them.
    __slots__ = (
        "__provides__",
        "__weakref__",
        "_abortLater",
        "_backpressure",
        "_backpressureOnDemand",
        "_local",
        "_outputBlocked",
        "_pausedByProtocol",
        "_tracing",
        "bytesIn",
        "bytesOut",
        "connId",
        "connected",
        "disconnecting",
        "fault",
        "faults",
        "how",
        "initiator",
        "lastMoved",
        "openedAt",
        "owner",
        "peerFinished",
        "quietSince",
        "role",
        "transport",
        "wrappedProtocol",
    )

    def __init__(self, owner: ConnectionOwner, wrapped: IProtocol, role: str) -> None:
        # What zope finds for an instance without a declaration of its own
        # (the class's), set: with the slot empty, every providedBy before
        # the connection is made (Twisted's endpoints ask three times per
        # connect) would raise AttributeError twice, once in the slot and
        # once in __getattr__'s pass-through.
        self.__provides__ = _trackedInterfaces
        self.owner = owner
        self.wrappedProtocol = wrapped
        self.role = role
        self.connId = next(_connectionIds)
        self.transport: ITransport | None = None
        self.connected = False
        self.disconnecting = False
        self.openedAt = 0.0
        self.bytesIn = 0
        self.bytesOut = 0
        self.initiator: str | None = None
        self.how: str | None = None
        self.faults: tuple[str, ...] = ()
        self.fault: str | None = None
        self.peerFinished = False
        self._tracing: LifecycleLog | None = owner.events if owner.events.trace else None
        self._backpressure: _OutputBackpressure | None = None
        self._backpressureOnDemand = False
        self._outputBlocked = False
        self._pausedByProtocol = False
        self._abortLater: IDelayedCall | None = None
        self._local: str | None = None
        # Kept by the idle sweeper: bytes moved when it last looked, and
        # since when that figure has not changed.
        self.lastMoved = 0
        self.quietSince = 0.0

    @property
    def peer(self) -> str:
        """
        The peer's address, in the form of L{describeAddress}.  TCP and UNIX
        transports know it after the close too, so it is not kept: an idle
        connection holds no copy of it.
        """
        transport = self.transport
        if transport is None:
            return describeAddress(None)
        # Looked up on the class: a wrapper's __getattr__ (PROXY, TLS) would
        # hand out the socket's peer where its own getPeer says another.
        describePeer = getattr(type(transport), "describePeer", None)
        try:
            if describePeer is not None:
                return describePeer(transport)  # type: ignore[no-any-return]
            return describeAddress(transport.getPeer())
        except (AttributeError, OSError):
            return describeAddress(None)

    @property
    def local(self) -> str:
        """
        The local address, in the form of L{describeAddress}; read once and
        kept.  Read it while the connection is open: a closed socket no
        longer knows it (C{"unknown"}).
        """
        local = self._local
        if local is None:
            local = self._local = self._hostAddress()
        return local

    def _hostAddress(self) -> str:
        # Connections accepted on one listener share one local address, and
        # tcplife's transports give the very same object for it: its text is
        # made once and shared (the owner keeps the last one), not kept anew
        # by every idle connection.
        transport = self.transport
        try:
            address = transport.getHost() if transport is not None else None
        except (AttributeError, OSError):
            address = None
        owner = self.owner
        known, text = owner.lastLocalAddress
        if address is not known or address is None:
            text = describeAddress(address)
            if address is not None:
                owner.lastLocalAddress = (address, text)
        return text

    @property
    def tcp(self) -> dict[str, int] | None:
        """
        The kernel's view of this TCP connection as it closed (round-trip
        time, retransmissions, ...: the C{close} event's C{tcp} object), from
        the TCP transport under any TLS or PROXY wrapper; C{None} while open,
        and for a transport that has none (UNIX, pipes, a test's).
        """
        return getattr(self.transport, "tcpInfoAtClose", None)

    def __repr__(self) -> str:
        protocol = "closed" if self.wrappedProtocol is None else repr(self.wrappedProtocol)
        return f"<TrackedConnection #{self.connId} {self.peer} {protocol}>"

    # -- IProtocol, towards the transport ---------------------------------

    def makeConnection(self, transport: ITransport) -> None:
        # Whatever the transport is (TCP, TLS, UNIX), the wrapped protocol sees
        # the same interfaces through us, as with policies.ProtocolWrapper.
        spec = providedBy(transport)
        provides = _providesFor.get(spec)
        if provides is None:
            directlyProvides(self, spec)
            _providesFor[spec] = self.__provides__
        else:
            # What directlyProvides would build: zope caches its
            # declarations too, but normalising the arguments to find the
            # cached one is a good part of the cost of an accept.
            self.__provides__ = provides
        self.transport = transport
        self.connected = True
        self.openedAt = self.quietSince = self.owner.clock.seconds()
        if IConsumer.providedBy(transport):
            if getattr(transport, "asksForBackpressure", False) and (
                getattr(transport, "protocol", None) is self
            ):
                # The transport calls backpressureProducer once its output
                # waits in a buffer: most connections never buffer a byte,
                # and a producer registered and unregistered for nothing
                # costs several calls per connection.
                self._backpressureOnDemand = True
            else:
                self._backpressure = _OutputBackpressure(self)
                transport.registerProducer(self._backpressure, True)
        protocol = self.wrappedProtocol
        self.owner.connectionOpened(self)
        # Whatever runs in connectionOpened (a subclass's books, an observer
        # of the accept event) may have ended the connection already.
        if self.connected:
            protocol.makeConnection(self)

    def connectionMade(self) -> None:
        """
        Nothing to do: L{makeConnection} does the work and calls the wrapped
        protocol's C{makeConnection}.
        """

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self._tracing is not None:
            self._tracing.read(self.connId, len(data))
        self.wrappedProtocol.dataReceived(data)

    def readConnectionLost(self) -> None:
        """
        The peer sent FIN: it will send nothing more, but may still read.

        Unless the socket holds an error: then the peer reset the connection
        and the reactor took it for an end of input (see L{_resetTakenForEOF}).
        """
        if self._resetTakenForEOF():
            return
        self.peerFinished = True
        if self.initiator is None:
            self.initiator = PEER
        self.owner.events.halfClose(self.connId, PEER)
        # No more input to pace, and resuming a reader after EOF would only
        # report the EOF a second time.
        self._dropBackpressure()
        passReadConnectionLost(self.wrappedProtocol, self.loseConnection)

    def _resetTakenForEOF(self) -> bool:
        # Twisted's poll reactors take an EPOLLHUP that comes without EPOLLIN,
        # while reading, for a clean end of input.  A RST can be reported
        # that way: Linux marks the socket closed a moment before it marks
        # both directions shut down, and a poll in between sees HUP and ERR
        # but not IN.  The error is still pending on the socket then, since
        # no recv consumed it; SO_ERROR reads (and clears) it.
        transport: Any = self.transport
        if getattr(transport, "readsSocketErrors", False):
            # Its poller reads EPOLLERR: an end of input is one.
            return False
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if not isinstance(handle, socket.socket) or handle.fileno() < 0:
            return False
        try:
            error = handle.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            return False
        if not error:
            return False
        # Close through the transport's own abort, which reaches the socket
        # below any wrapper (PROXY, TLS) and sends nothing more: the peer has
        # reset already.  how=reset tells connectionLost to report it as that.
        self.how = RESET
        transport.abortConnection()
        return True

    def writeConnectionLost(self) -> None:
        passWriteConnectionLost(self.wrappedProtocol)

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake below us is done: tell the wrapped protocol, if it
        listens (C{IHandshakeListener}).
        """
        listener = IHandshakeListener(self.wrappedProtocol, None)
        if listener is not None:
            listener.handshakeCompleted()

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        if self._abortLater is not None and self._abortLater.active():
            self._abortLater.cancel()
        self._abortLater = None
        if self.how is None:
            # isinstance, not Failure.check: the same answer for these
            # classes, without formatting their qualified names per close.
            if isinstance(reason.value, ConnectionDone):
                self.how = FIN
            elif isinstance(reason.value, ConnectionAborted):
                self.how = ABORT
            else:
                self.how = RESET
        elif (
            self.how == RESET and self.fault is None and isinstance(reason.value, ConnectionAborted)
        ):
            # Aborted by _resetTakenForEOF: the protocol learns what happened.
            # (A fault's reset is ours: the abort it was.)
            reason = Failure(ConnectionLost(_RESET_BY_PEER))
        if self.initiator is None:
            self.initiator = LOCAL if self.how == ABORT else PEER
        if self._backpressure is not None:
            self._backpressure.detach()
            self._backpressure = None
        owner = self.owner
        events = owner.events
        if events.enabled and events.wants(CLOSE):
            events.close(
                self.connId,
                self.role,
                self.initiator,
                self.how,
                self.bytesIn,
                self.bytesOut,
                owner.clock.seconds() - self.openedAt,
                self.peer,
                self.local,
                self.tcp,
                self.fault,
            )
        owner.connectionClosed(self)
        try:
            self.wrappedProtocol.connectionLost(reason)
        finally:
            # As ProtocolWrapper does.  The protocol's transport is us, so
            # this reference made a cycle: every closed connection, with its
            # transport and whatever output it never sent, waited for the
            # cyclic garbage collector.  The protocol keeps us (connId, the
            # byte counts, the addresses) for as long as it lives.
            self.wrappedProtocol = None  # type: ignore[assignment]

    def logPrefix(self) -> str:
        if self.wrappedProtocol is None:
            return "TrackedConnection"
        context = ILoggingContext(self.wrappedProtocol, None)
        if context is not None:
            return str(context.logPrefix())
        return self.wrappedProtocol.__class__.__name__

    # -- ITransport, towards the wrapped protocol ---------------------------

    def write(self, data: bytes) -> None:
        self.bytesOut += len(data)
        if self._tracing is not None:
            self._tracing.write(self.connId, len(data))
        assert self.transport is not None
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        chunks = list(data)
        nbytes = sum(len(chunk) for chunk in chunks)
        self.bytesOut += nbytes
        if self._tracing is not None:
            self._tracing.write(self.connId, nbytes)
        assert self.transport is not None
        self.transport.writeSequence(chunks)

    def loseConnection(self) -> None:
        """
        Close gracefully: everything written so far is sent before the FIN.
        """
        if self.initiator is None:
            self.initiator = LOCAL
        self.disconnecting = True
        # A paused producer keeps a transport from ever finishing
        # loseConnection (see TWISTED-NOTES.md); nothing more will be read.
        self._dropBackpressure()
        assert self.transport is not None
        self.transport.loseConnection()

    def closeGracefully(self, timeout: float | None, how: str | None = None) -> None:
        """
        Close gracefully, and abort if the output has not drained (and the
        connection closed) within C{timeout} seconds.

        @param how: What the C{close} event will say, if not C{fin} (for
            instance C{"timeout"}); it stays so even if the close ends in an
            abort.
        """
        if how is not None and self.how is None:
            self.how = how
        self.loseConnection()
        if timeout is not None and self.connected and self._abortLater is None:
            self._abortLater = self.owner.clock.callLater(timeout, self._abortIfStillOpen)

    def _abortIfStillOpen(self) -> None:
        self._abortLater = None
        if self.connected:
            self.abortConnection()

    def abortConnection(self) -> None:
        """
        Close at once: unsent output is discarded and the peer gets a RST.
        """
        if self.initiator is None:
            self.initiator = LOCAL
        if self.how is None:
            self.how = ABORT
        self.disconnecting = True
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def loseWriteConnection(self) -> None:
        """
        Send FIN (over TLS, close_notify) after what is written so far, and
        keep reading.

        Whoever half-closes first started the end of the connection, even if
        the peer's FIN is what finally closes it.  A transport that cannot
        half-close raises C{AttributeError} and no event is emitted.
        """
        assert self.transport is not None
        # Nothing more will be written, so no output to pace reading by; and
        # TLS holds its close_notify back while a producer is registered.
        self._dropBackpressure()
        loseWriteConnection(self.transport)
        if self.initiator is None:
            self.initiator = LOCAL
        self.owner.events.halfClose(self.connId, LOCAL)

    def timedOut(self) -> None:
        """
        Abort because the peer was silent for too long; the close event says
        C{how=timeout}.
        """
        if self.how is None:
            self.how = TIMEOUT
        self.abortConnection()

    def getPeer(self) -> IAddress:
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        assert self.transport is not None
        return self.transport.getHost()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        The wrapped protocol brings its own producer, and with it takes over
        flow control of its output from the built-in backpressure.
        """
        self._dropBackpressure()
        assert self.transport is not None
        self.transport.registerProducer(producer, streaming)  # type: ignore[attr-defined]

    def unregisterProducer(self) -> None:
        assert self.transport is not None
        self.transport.unregisterProducer()  # type: ignore[attr-defined]
        if self.connected and not self.disconnecting and not self.peerFinished:
            self._backpressure = _OutputBackpressure(self)
            self.transport.registerProducer(self._backpressure, True)  # type: ignore[attr-defined]

    def pauseProducing(self) -> None:
        """
        The wrapped protocol asks to stop reading from the peer.
        """
        self._pausedByProtocol = True
        self._updateReading()

    def resumeProducing(self) -> None:
        self._pausedByProtocol = False
        self._updateReading()

    def stopProducing(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # type: ignore[attr-defined]

    # zope.interface looks this up on every adaptation (the transport adapts
    # us to IHalfCloseableProtocol at each FIN); without it the lookup would
    # fall through __getattr__ and raise AttributeError from the transport.
    __conform__ = None

    def __getattr__(self, name: str) -> Any:
        # Everything else a transport offers (getHandle, setTcpNoDelay, TLS
        # methods, ...) passes straight through, as with ProtocolWrapper.
        if name == "transport":
            raise AttributeError(name)
        return getattr(self.transport, name)

    # -- flow control -------------------------------------------------------

    def _setOutputBlocked(self, blocked: bool) -> None:
        self._outputBlocked = blocked
        self._updateReading()

    def _updateReading(self) -> None:
        transport = self.transport
        if transport is None or not self.connected:
            return
        if self._outputBlocked or self._pausedByProtocol:
            transport.pauseProducing()  # type: ignore[attr-defined]
        elif not (self.peerFinished or self.disconnecting):
            transport.resumeProducing()  # type: ignore[attr-defined]

    def backpressureProducer(self) -> IPushProducer | None:
        """
        The producer to register with a transport that registers one only
        once its output starts to wait in its buffer (one with
        C{asksForBackpressure}), or C{None} if this connection no longer
        paces its reading by its output (the peer has finished, the
        connection is closing, or the wrapped protocol brought its own
        producer).
        """
        if not self._backpressureOnDemand:
            return None
        self._backpressureOnDemand = False
        self._backpressure = _OutputBackpressure(self)
        return self._backpressure

    def _dropBackpressure(self) -> None:
        self._backpressureOnDemand = False
        if self._backpressure is None:
            return
        self._backpressure = None
        assert self.transport is not None
        self.transport.unregisterProducer()  # type: ignore[attr-defined]
        if self._outputBlocked:
            self._outputBlocked = False
            self._updateReading()


#: What a TrackedConnection provides before it is connected.
_trackedInterfaces = implementedBy(TrackedConnection)


class ConnectionTracking:
    """
    What tcplife's server and client factories share: a clock, the events,
    the registry of open connections, and a L{TrackedConnection} around every
    protocol they build.  Mix in before a Twisted C{Factory} class.

    @cvar role: C{"server"} or C{"client"}, as the events say.
    """

    role = "server"

    clock: IReactorTime
    events: LifecycleLog
    connections: dict[int, TrackedConnection]
    #: The last local address a connection described, and its text.
    lastLocalAddress: tuple[object, str] = (None, "")

    def startTracking(
        self, clock: IReactorTime | None, events: LifecycleLog | None, trace: bool
    ) -> None:
        """
        Set the clock (default: the global reactor), the events (default: a
        new L{LifecycleLog}) and an empty registry.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        assert clock is not None
        self.clock = clock
        self.events = events if events is not None else LifecycleLog(trace=trace)
        if trace:
            self.events.trace = True
        self.connections = {}

    def connectionOpened(self, connection: TrackedConnection) -> None:
        """
        A connection was made; subclasses add their event and books.
        """
        self.connections[connection.connId] = connection

    def connectionClosed(self, connection: TrackedConnection) -> None:
        """
        A connection is gone (after its C{close} event).
        """
        del self.connections[connection.connId]

    def buildProtocol(self, addr: IAddress | None) -> TrackedConnection | None:
        wrapped: IProtocol | None = super().buildProtocol(addr)  # type: ignore[misc]
        if wrapped is None:
            return None
        return TrackedConnection(self, wrapped, role=self.role)

    def logPrefix(self) -> str:
        return str(self.protocol.__name__)  # type: ignore[attr-defined]
