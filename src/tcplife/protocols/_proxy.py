"""
HAProxy's PROXY protocol (v1 and v2), with the real client known from the start.

Behind a load balancer every TCP connection comes from the balancer; the
PROXY header it sends first names the real client.  Twisted's
C{haproxy:} endpoint (L{twisted.protocols.haproxy}) connects the wrapped
protocol before that header has arrived, so C{connectionMade} (and tcplife's
C{accept} event) sees the balancer's address (Twisted issue 12501); its
wrapper also does not pass half-close through, so a client's FIN loses the
echo still buffered; and it drops a connection whose first read is shorter
than the signature.

L{ProxyHeaderProtocol} connects the wrapped protocol only once the header is
parsed, passes half-close through, and waits for a header split across reads.
It reads v2 headers with Twisted's own parser, and v1 headers with
L{tcplife.protocols._proxyv1}, which follows the spec where Twisted's parser does not.
"""

from __future__ import annotations

import ipaddress
import struct
import typing
from typing import Final, Literal

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from ..events import describeAddress
from ._halfclose import passReadConnectionLost, passWriteConnectionLost
from ._proxyv1 import SIGNATURE as _V1_SIGNATURE
from ._proxyv1 import V1HeaderParser

# A v2 header is recognised by its 12-byte signature and needs 16 bytes before
# its length is known; a v1 header starts with "PROXY ".
_V2_SIGNATURE = V2Parser.PREFIX
_V2_FIXED = 16

_Parser = V1HeaderParser | V2Parser
_TOO_SHORT: Final = "too short"


def _startParser(received: bytes) -> _Parser | Literal["too short"] | None:
    """
    The parser for a header that starts with C{received}: L{_TOO_SHORT} if
    it is too short to tell yet, C{None} if it is no PROXY header at all.
    """
    for signature, needed, parser in (
        (_V2_SIGNATURE, _V2_FIXED, V2Parser),
        (_V1_SIGNATURE, len(_V1_SIGNATURE), V1HeaderParser),
    ):
        shared = min(len(received), len(signature))
        if received[:shared] == signature[:shared]:
            if len(received) < needed:
                return _TOO_SHORT
            return parser()
    return None


def _checkedAddress(address: IAddress | None) -> IAddress | None:
    """
    An IP address from a header in its canonical text form (v2 headers spell
    C{::1} as C{0:0:0:0:0:0:0:1}), or L{ValueError} if it is no IP address.
    """
    if not isinstance(address, IPv4Address | IPv6Address):
        return address
    ip = ipaddress.ip_address(address.host)
    if not 0 <= address.port <= 65535:
        raise ValueError(f"port {address.port} out of range")
    if ip.version == 4:
        return IPv4Address("TCP", ip.compressed, address.port)
    return IPv6Address("TCP", ip.compressed, address.port)


class HeaderAdmission(typing.Protocol):
    """
    Counts connections against a cap while they wait for their PROXY header,
    before the factory behind the wrapper knows of them
    (L{tcplife.server.AcceptGate} is one).
    """

    def headerAwaited(self) -> None:
        """
        A connection was accepted and waits for its header; it holds a slot
        from now on.
        """

    def headerArrived(self) -> None:
        """
        Its header arrived: the factory's connection, made next, takes over
        its slot.
        """

    def headerRefused(self) -> None:
        """
        It closed without a valid header: its slot is free again.
        """


@implementer(IHalfCloseableProtocol, ITransport)
class ProxyHeaderProtocol(ProtocolWrapper):
    """
    Reads a PROXY protocol header, then connects the wrapped protocol, whose
    transport's C{getPeer} and C{getHost} are the addresses the header names.

    A connection that sends anything but a valid header, closes first, or
    sends no header within L{headerTimeout} seconds is closed without its
    protocol ever being connected, and the factory's L{RejectionWarnings}
    hear of it.

    @cvar headerTimeout: Seconds to wait for the header.  A balancer sends it
        at once; a client that connects here directly and waits for the
        server to speak would otherwise hold the connection forever.
    @ivar proxyInfo: The parsed header, once it has arrived.
    """

    headerTimeout = 10.0

    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory, wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self.proxyInfo: ProxyInfo | None = None
        self._source: IAddress | None = None
        self._destination: IAddress | None = None
        self._received = b""
        self._parser: _Parser | None = None
        self._timeout: IDelayedCall | None = None
        self._rejected = False
        self._admission: HeaderAdmission | None = None

    def makeConnection(self, transport: ITransport) -> None:
        # ProtocolWrapper.makeConnection would connect the wrapped protocol
        # now, while getPeer() is still the balancer (Twisted issue 12501).
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]
        # Open from accept on, header or not: silent connections must not
        # hold descriptors beyond the cap.
        self._admission = self.factory.admission
        if self._admission is not None:
            self._admission.headerAwaited()
        self._timeout = self.factory.clock.callLater(self.headerTimeout, self._headerTimedOut)

    def dataReceived(self, data: bytes) -> None:
        if self.proxyInfo is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._rejected:
            return
        parser = self._parser
        if parser is None:
            self._received += data
            started = _startParser(self._received)
            if started == _TOO_SHORT:
                return
            if started is None:
                self._reject("not a PROXY protocol header")
                return
            parser = self._parser = started
            data, self._received = self._received, b""
        try:
            info, remaining = parser.feed(data)
            if info is None:
                return
            source = _checkedAddress(info.source)
            destination = _checkedAddress(info.destination)
        except InvalidProxyHeader as e:
            # Ours (v1) says what is wrong; Twisted's (v2) says nothing.
            self._reject(f"invalid PROXY header ({e})" if str(e) else "invalid PROXY header")
            return
        except (ValueError, KeyError, struct.error):
            # Twisted's v2 parser lets a few malformed headers through as
            # KeyError (a family and protocol pair it has no format for) or
            # struct.error.
            self._reject("invalid PROXY header")
            return
        self._headerParsed(info, source, destination, remaining or b"")

    def _headerParsed(
        self,
        info: ProxyInfo,
        source: IAddress | None,
        destination: IAddress | None,
        remaining: bytes,
    ) -> None:
        self._cancelTimeout()
        self.proxyInfo = info
        # A v2 LOCAL command (a balancer's health check) or an UNKNOWN v1
        # header names no addresses: the connection's own ones stand.
        self._source = source
        self._destination = destination
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.headerArrived()
        self.wrappedProtocol.makeConnection(self)
        if remaining and self.connected:
            self.wrappedProtocol.dataReceived(remaining)

    def getPeer(self) -> IAddress:
        if self._source is not None:
            return self._source
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        if self._destination is not None:
            return self._destination
        assert self.transport is not None
        return self.transport.getHost()

    def readConnectionLost(self) -> None:
        """
        The peer sent FIN: pass it on, so a client's half-close still gets
        its whole echo (Twisted's wrapper turns it into a full close).
        """
        if self.proxyInfo is None:
            self._reject("closed before the PROXY header")
            return
        passReadConnectionLost(self.wrappedProtocol, self.loseConnection)

    def writeConnectionLost(self) -> None:
        if self.proxyInfo is not None:
            passWriteConnectionLost(self.wrappedProtocol)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelTimeout()
        if self.proxyInfo is not None:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
            return
        # The wrapped protocol never saw this connection, so it is not told
        # that it went away.
        self.connected = False
        self.factory.unregisterProtocol(self)  # type: ignore[no-untyped-call]
        if not self._rejected:
            self._reject("closed before the PROXY header")
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.headerRefused()

    def _headerTimedOut(self) -> None:
        self._timeout = None
        self._reject(f"no PROXY header within {self.headerTimeout:g} s")

    def _cancelTimeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def _reject(self, reason: str) -> None:
        if self._rejected:
            return
        self._rejected = True
        self._cancelTimeout()
        assert self.transport is not None
        self.factory.rejections.rejected(reason, describeAddress(self.transport.getPeer()))
        if self.connected:
            self.transport.loseConnection()


#: Seconds between two warnings about connections closed for want of a
#: valid PROXY header; those in between are counted into the next one.
REJECTION_WARNING_INTERVAL: Final = 10.0


class RejectionWarnings:
    """
    Warns of connections closed for want of a valid PROXY header without
    letting a flood of them flood the log: the first at once, then at most
    one line per L{interval}, which counts those closed since the last line
    and names the latest.

    Every line has the fields C{reason} and C{balancer} (of the latest) and
    C{rejected} (how many it stands for).
    """

    def __init__(
        self, log: Logger, clock: IReactorTime, interval: float = REJECTION_WARNING_INTERVAL
    ) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        self._lastWarning: float | None = None
        self._held = 0
        self._latest = ("", "")
        self._flush: IDelayedCall | None = None

    def rejected(self, reason: str, balancer: str) -> None:
        """
        One more connection from C{balancer} was closed, for C{reason}.
        """
        now = self._clock.seconds()
        last = self._lastWarning
        if self._flush is None and (last is None or now - last >= self.interval):
            self._warn(1, reason, balancer)
            return
        self._held += 1
        self._latest = (reason, balancer)
        if self._flush is None:
            assert last is not None
            self._flush = self._clock.callLater(last + self.interval - now, self._warnHeld)

    def stop(self) -> None:
        """
        Warn now of those held back (the listener is stopping).
        """
        if self._flush is not None:
            self._flush.cancel()
            self._warnHeld()

    def _warnHeld(self) -> None:
        self._flush = None
        held, self._held = self._held, 0
        self._warn(held, *self._latest)

    def _warn(self, rejected: int, reason: str, balancer: str) -> None:
        now = self._clock.seconds()
        if rejected == 1:
            self.log.warn(
                "PROXY header: {reason}; closing the connection from {balancer}",
                reason=reason,
                balancer=balancer,
                rejected=rejected,
            )
        else:
            assert self._lastWarning is not None
            self.log.warn(
                "PROXY header: {rejected} connections closed in {seconds:.3g} s; "
                "the latest: {reason}, from {balancer}",
                reason=reason,
                balancer=balancer,
                rejected=rejected,
                seconds=now - self._lastWarning,
            )
        self._lastWarning = now


class ProxyHeaderFactory(WrappingFactory[ProxyHeaderProtocol]):
    """
    Wraps each protocol of C{wrappedFactory} in a L{ProxyHeaderProtocol}.

    @ivar clock: Times the wait for each header.
    @ivar rejections: Warns of connections closed without a valid header,
        in the log namespace C{tcplife.proxy} unless C{log} says otherwise.
    @ivar admission: Counts each connection from accept until its header
        arrives (or it closes without one), if set; the admission gate of the
        port that listens with this factory sets itself here.
    """

    protocol = ProxyHeaderProtocol

    def __init__(
        self, wrappedFactory: IProtocolFactory, clock: IReactorTime, log: Logger | None = None
    ) -> None:
        super().__init__(wrappedFactory)  # type: ignore[no-untyped-call]
        self.clock = clock
        if log is None:
            # An instance's own Logger: as a class attribute, Logger would
            # name its namespace after the class instead.
            log = Logger(namespace="tcplife.proxy")
        self.rejections = RejectionWarnings(log, clock)
        self.admission: HeaderAdmission | None = None

    def stopFactory(self) -> None:
        self.rejections.stop()

    def buildProtocol(self, addr: IAddress | None) -> ProxyHeaderProtocol | None:  # type: ignore[override]
        # A factory that refuses the connection (returns None) refuses it
        # here too, instead of leaving a wrapper around nothing.
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        inner = prefix() if callable(prefix) else type(self.wrappedFactory).__name__
        return f"{inner} (PROXY)"


@implementer(IStreamServerEndpoint)
class ProxyServerEndpoint:
    """
    Listens on another endpoint; every connection starts with a PROXY header.
    """

    def __init__(self, wrapped: IStreamServerEndpoint, clock: IReactorTime) -> None:
        self._wrapped = wrapped
        self._clock = clock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self._wrapped.listen(ProxyHeaderFactory(protocolFactory, self._clock))

    def __repr__(self) -> str:
        return f"<ProxyServerEndpoint around {self._wrapped!r}>"
