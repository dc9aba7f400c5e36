"""
TLS server connections that keep the echo when the client stops sending.

Twisted's L{BufferingTLSTransport} treats the peer's TLS C{close_notify} as
the end of the whole connection: it answers with its own C{close_notify} and
closes TCP at once.  Two things are lost that way:

  - Its writes are gathered and sent on the next reactor pass, so output the
    protocol wrote for data that came in the same read as the
    C{close_notify} is dropped (measured: a client that sends and then
    C{SSL_shutdown()}s over TLS 1.3 gets none of its echo back).
  - TLS 1.3 (RFC 8446 6.1) made C{close_notify} a half-close: "This does not
    have any effect on its read side of the connection."  A client that has
    finished sending may still read its answer, as after a TCP FIN.

L{HalfCloseableTLS} sends what was written before anything else, and under
TLS 1.3 passes C{close_notify} to the protocol as C{readConnectionLost} (the
C{half-close} event); our own C{close_notify} follows when the protocol
closes.  Under TLS 1.2 and older, RFC 5246 7.2.1 asks for an immediate reply
and close, which stays as Twisted does it (after the flush).  When we closed
first (the protocol, an idle timeout, a drain), the peer's C{close_notify}
answers ours and closes TCP, under either version.

A TCP FIN without C{close_notify} may be a truncation attack, so the protocol
still learns of it as a lost connection (C{ConnectionLost}, the C{close}
event's C{how=reset}), but what it had written is sent before the close
instead of being dropped.

Our own half-close over TLS is a C{close_notify} too: L{loseWriteConnection}.
"""

from __future__ import annotations

from OpenSSL.SSL import TLS1_3_VERSION, Error, WantReadError, ZeroReturnError
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, ITransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ._halfclose import passReadConnectionLost, passWriteConnectionLost


class _ClosedWrites:
    """
    Where a closed connection's writes go: nowhere (Twisted 26.10's own
    C{_NullAggregator}).
    """

    def write(self, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


_CLOSED_WRITES = _ClosedWrites()


@implementer(IHalfCloseableProtocol)
class HalfCloseableTLS(BufferingTLSTransport):
    """
    A TLS connection on which the peer's C{close_notify} (TLS 1.3) or FIN
    ends its input without discarding our output.
    """

    #: The peer's close_notify has arrived: it sends nothing more, and
    #: anything that follows is ignored (RFC 8446 6.1).
    _peerClosedTLS = False

    def dataReceived(self, data: bytes) -> None:
        if self._peerClosedTLS:
            return
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def _flushReceiveBIO(self) -> None:
        # TLSMemoryBIOProtocol's loop, except for what a close_notify does.
        while not (self._lostTLSConnection or self._peerClosedTLS):
            try:
                data = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                self._closeNotifyReceived()
            except Error:
                self._tlsShutdownFinished(Failure())  # type: ignore[no-untyped-call]
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)
        self._flushSendBIO()  # type: ignore[no-untyped-call]

    def _closeNotifyReceived(self) -> None:
        self._peerClosedTLS = True
        # What the protocol wrote in answer to the data before the
        # close_notify goes out before anything that ends the connection.
        self._aggregator.flush()
        halfClose = self._tlsConnection.get_protocol_version() >= TLS1_3_VERSION
        if self.disconnecting:
            # We closed first, and this answers our close_notify; the
            # protocol's loseConnection, already called, would do nothing now.
            if halfClose and self._producer is not None:
                # Ours waits for the protocol's producer: unregisterProducer
                # sends it and, the peer's being in, closes TCP.
                return
            self._closeBothWays()
        elif halfClose:
            passReadConnectionLost(self.wrappedProtocol, self.loseConnection)
        else:
            # RFC 5246 7.2.1: answer at once, and close.
            self._closeBothWays()

    def _closeBothWays(self) -> None:
        # Our close_notify (if not sent yet) and then TCP's FIN.
        self._shutdownTLS()  # type: ignore[no-untyped-call]
        self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]

    def readConnectionLost(self) -> None:
        """
        TCP FIN.  After a close_notify it only confirms it; without one, the
        connection is lost as Twisted reports it, after our output is sent.
        """
        if self._peerClosedTLS or self._lostTLSConnection:
            return
        self._aggregator.flush()
        self._tlsConnection.bio_shutdown()
        # OpenSSL now reports the unexpected EOF, which ends TLS with
        # ConnectionLost and closes TCP once our output is written.
        self._flushReceiveBIO()
        if not (self._lostTLSConnection or self._peerClosedTLS):
            self._tlsShutdownFinished(Failure(ConnectionLost()))  # type: ignore[no-untyped-call]

    def unregisterProducer(self) -> None:
        # After loseConnection, unregistering sends our close_notify at once:
        # writes gathered for the next reactor pass must go before it.
        self._aggregator.flush()
        super().unregisterProducer()  # type: ignore[no-untyped-call]

    def writeConnectionLost(self) -> None:
        passWriteConnectionLost(self.wrappedProtocol)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        # Twisted 26.4 keeps the cycle BufferingTLSTransport makes (our write
        # is its aggregator's, whose own write is ours), leaving every closed
        # connection to the cyclic collector; 26.10 breaks it here itself.
        self._aggregator = _CLOSED_WRITES  # type: ignore[assignment]
        self.write = _CLOSED_WRITES.write  # type: ignore[method-assign]


class HalfCloseableTLSFactory(TLSMemoryBIOFactory):
    """
    Wraps each connection in L{HalfCloseableTLS}.
    """

    protocol = HalfCloseableTLS

    def buildProtocol(self, addr: IAddress | None) -> HalfCloseableTLS | None:  # type: ignore[override]
        # A factory that refuses the connection (returns None) refuses it
        # here too, instead of TLS wrapping nothing.
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return HalfCloseableTLS(self, wrapped)


def loseWriteConnection(transport: ITransport) -> None:
    """
    End our sending, after everything written so far, and keep reading: a
    TCP FIN, or over TLS a C{close_notify} (RFC 8446 6.1).

    Twisted's TLS transports (client and server) have no C{loseWriteConnection}
    of their own: the call passes through to TCP, whose FIN goes out before
    TLS data still waiting (for the handshake, say) and reads as a truncation.
    Their C{loseConnection} is the TLS half-close: C{close_notify} once the
    writes and any producer are done, reading until the peer's C{close_notify},
    and only then TCP's close.
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport.loseConnection()
    else:
        transport.loseWriteConnection()  # type: ignore[attr-defined]
