"""
Outgoing TCP connections of tcplife's own, and a reactor adapter that makes
client endpoints use them.

L{DirectClient} is Twisted's C{tcp.Client} with the transport of tcplife's
server connections (L{DirectConnection}: writes at once, large reads,
events in batches from the poller) and C{TCP_NODELAY}, and a shorter
connect: one C{connect()}, one C{epoll_ctl} to wait for it to complete, no
delayed call and no Deferred in between.

Client endpoints (C{tcp:}, C{ssl:}, C{tls:}, C{HostnameEndpoint}, ...) call
C{connectTCP} or C{connectSSL} on the reactor they were given;
L{ClientReactor} is that reactor: it connects with L{DirectClient} (from the
chosen local address) and passes everything else through to the real
reactor.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import endpoints, error, tcp
from twisted.internet.interfaces import IConnector, IProtocolFactory
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from ._poller import pollerFor
from ._transport import DirectConnection

_SOL_SOCKET = socket.SOL_SOCKET
_SO_ERROR = socket.SO_ERROR
_IPPROTO_TCP = socket.IPPROTO_TCP
_TCP_NODELAY = socket.TCP_NODELAY
_AF_INET = socket.AF_INET
_SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
#: Linux's IP_BIND_ADDRESS_NO_PORT (Python has the name from 3.12 only).
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: The endpoints' pass-through protocol (see L{DirectClient._connectDone}).
_WRAPPING_PROTOCOL: type[Protocol] = endpoints._WrappingProtocol
_WRAPPING_FACTORY: type[Any] = endpoints._WrappingFactory


class _PassThrough(_WRAPPING_PROTOCOL):  # type: ignore[misc, valid-type]
    """
    The endpoints' pass-through protocol, declaring what it provides once
    per kind of wrapped protocol rather than once per connection.

    Twisted's asks the wrapped protocol for three interfaces and declares
    each it finds with C{directlyProvides}, for every connection: a fifth of
    the cost of making a connection in tcplife's client, for the same
    answer each time.
    """

    #: The declaration Twisted's initialiser made, by what the wrapped
    #: protocol provided (C{None}: it declared nothing).
    _declared: dict[Any, Any] = {}

    def __init__(self, connectedDeferred: Any, wrappedProtocol: Any) -> None:
        spec = providedBy(wrappedProtocol)
        declared = self._declared.get(spec, _UNKNOWN)
        if declared is _UNKNOWN:
            super().__init__(connectedDeferred, wrappedProtocol)
            self._declared[spec] = self.__dict__.get("__provides__")
            return
        self._connectedDeferred = connectedDeferred
        self._wrappedProtocol = wrappedProtocol
        if declared is not None:
            self.__provides__ = declared


_UNKNOWN = object()


#: The pass-through protocols that step aside once connected.
_PASS_THROUGH = (_WRAPPING_PROTOCOL, _PassThrough)


class DirectClient(DirectConnection, tcp.Client):
    """
    An outgoing TCP connection that writes at once when it can (see
    L{DirectConnection}), with C{TCP_NODELAY} on.

    Differences from C{tcp.Client} in connecting, none visible through
    C{IConnector} or the protocol:

      - to an IPv4 address, C{connect()} is called at once, and the
        connection waits for one writable event (a failed connect's error
        event is read from C{SO_ERROR}); a connect that completes or fails
        at once is reported on the reactor's next pass, as Twisted's is.
        Names and IPv6 addresses connect the way Twisted does;
      - with a local address to bind to, C{IP_BIND_ADDRESS_NO_PORT} lets
        the kernel pick the port at C{connect()}, for the destination, rather
        than at C{bind()} for every destination at once: connection churn
        from one address can then use all local ports for each server;
      - once connected, the endpoints' pass-through protocol steps aside:
        every event goes to the protocol it wraps directly.

    A streaming producer is paused by a write larger than C{bufferSize}
    until the next writable event, as in Twisted's buffer, although the
    bytes went to the kernel at once (L{DirectConnection.pausesOnLargeWrites}).
    """

    pausesOnLargeWrites = True

    def __init__(
        self, host: str, port: int, bindAddress: Any, connector: tcp.Connector, reactor: Any
    ) -> None:
        self._poller = pollerFor(reactor) if self.batchedPoller else reactor
        if not self.closeAtOnce:
            self._shouldShutdown = True
        self._bindsFirst = bindAddress is not None
        tcp.Client.__init__(self, host, port, bindAddress, connector, reactor)

    def createInternetSocket(self) -> socket.socket:
        # Non-blocking from the start: no ioctl() afterwards.
        skt = socket.socket(self.addressFamily, self.socketType | _SOCK_NONBLOCK)
        try:
            skt.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, self.noDelay)
            if self._bindsFirst and self.addressFamily == _AF_INET:
                skt.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:  # pragma: no cover - Linux TCP sockets take both
            pass
        return skt

    def _finishInit(self, whenDone: Any, skt: Any, err: Any, reactor: Any) -> None:
        if whenDone is None or self._requiresResolution or self.addressFamily != _AF_INET:
            # Failed already, a name to resolve, or IPv6 (whose scope id
            # Twisted works out): Twisted's way, a pass of the reactor later.
            super()._finishInit(whenDone, skt, err, reactor)  # type: ignore[no-untyped-call]
            return
        # What Connection.__init__ sets, less the per-connection fileno.
        self.reactor = reactor
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.socket = skt
        self.protocol = None
        self.realAddress = self.addr
        try:
            result = skt.connect_ex(self.addr)
        except OSError as e:
            result = e.errno or errno.EINVAL
        if result == errno.EINPROGRESS:
            self.doWrite = self._connectCompleted  # type: ignore[method-assign]
            self.startWriting()
            return
        # Connected or failed at once (EADDRNOTAVAIL is found right here):
        # reported later, never inside connectTCP, as Twisted does.
        reactor.callLater(0, self._connectedAtOnce, result)

    def _failConnecting(self, reason: Exception | int) -> None:
        if isinstance(reason, int):
            reason = error.getConnectError((reason, os.strerror(reason)))
        self.failIfNotConnected(reason)  # type: ignore[no-untyped-call]

    def _connectedAtOnce(self, result: int) -> None:
        if result:
            self._failConnecting(result)
        elif hasattr(self, "connector"):
            self._connectDone()

    def _connectCompleted(self) -> None:
        """
        The socket is writable: the connect is done, one way or the other.
        """
        err = self.socket.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err:
            self._failConnecting(err)
            return
        del self.doWrite
        readInsteadOfWriting = getattr(self._poller, "readInsteadOfWriting", None)
        if readInsteadOfWriting is not None:
            readInsteadOfWriting(self)
        else:
            # A reactor of another kind: reading before no longer writing,
            # so that nothing finds itself empty in between.
            self.startReading()
            self.stopWriting()
        self._connectDone()

    def _connectDone(self) -> None:
        # BaseClient._connectDone, less the log prefix it formats for every
        # connection (Twisted's logstr, built here when first read).
        protocol = self.protocol = self.connector.buildProtocol(self.getPeer())  # type: ignore[no-untyped-call]
        self.connected = 1
        if protocol is None:
            # As Twisted: a protocol to satisfy the rest, and a quick end.
            self.protocol = Protocol()
            self.loseConnection()
            return
        self.startReading()
        protocol.makeConnection(self)
        if type(protocol) in _PASS_THROUGH and self.protocol is protocol and self.connected:
            # The endpoint's wrapper has connected its protocol and fired
            # its Deferred; from here on it only passes every call on.  (Not
            # when the protocol started TLS meanwhile: then TLS is in front.)
            self.protocol = protocol._wrappedProtocol

    def connectionLost(self, reason: Failure) -> None:
        if not self.connected:
            # Still connecting: an error event (the connect failed), or the
            # reactor shutting down.  The socket's error says which.
            err = self._pendingError()
            self._failConnecting(err if err else error.ConnectError(string=reason))
            return
        DirectConnection.connectionLost(self, reason)
        self.connector.connectionLost(reason)

    def _pendingError(self) -> int:
        try:
            return int(self.socket.getsockopt(_SOL_SOCKET, _SO_ERROR))
        except (AttributeError, OSError):
            return 0

    def _collectSocketDetails(self) -> None:
        # BaseClient's, for a connection that may have no fileno attribute.
        del self.socket
        self.__dict__.pop("fileno", None)

    def _makeLogstr(self) -> str | None:
        """
        C{tcp.Client}'s log prefix, C{"Protocol,client"}, once connected
        (C{"Uninitialized"} until then).
        """
        protocol = getattr(self, "protocol", None)
        if protocol is None:
            return None
        return f"{self._getLogPrefix(protocol)},client"


class DirectConnector(tcp.Connector):
    """
    C{tcp.Connector}, connecting with L{DirectClient}.
    """

    def _makeTransport(self) -> DirectClient:
        return DirectClient(self.host, self.port, self.bindAddress, self, self.reactor)


class ClientReactor:
    """
    A reactor whose TCP connections are L{DirectClient}s, from
    C{bindAddress} (when the endpoint names none of its own); every other
    attribute is the real reactor's, and it provides the same interfaces
    (C{HostnameEndpoint} asks for its name resolver by interface).

    On a reactor without real sockets (a test's C{MemoryReactor}),
    connections pass straight through.

    @ivar bindAddress: The local IP address to connect from, or C{None} for
        the kernel's choice.
    """

    def __init__(self, reactor: Any, bindAddress: str | None = None) -> None:
        self._reactor = reactor
        self._real = isinstance(reactor, PosixReactorBase)
        self.bindAddress = bindAddress
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: IProtocolFactory,
        timeout: float = 30,
        bindAddress: Any = None,
    ) -> IConnector:
        if bindAddress is None and self.bindAddress is not None:
            bindAddress = (self.bindAddress, 0)
        if not self._real:
            passed: IConnector = self._reactor.connectTCP(host, port, factory, timeout, bindAddress)
            return passed
        if type(factory) is _WRAPPING_FACTORY:
            # An endpoint's connect: the same pass-through, declared once.
            factory.protocol = _PassThrough  # type: ignore[attr-defined]
        # As PosixReactorBase.connectTCP.
        connector = DirectConnector(
            host,
            port,
            factory,  # type: ignore[arg-type]
            timeout,
            bindAddress,
            self._reactor,
        )
        connector.connect()
        return connector

    def connectSSL(
        self,
        host: str,
        port: int,
        factory: IProtocolFactory,
        contextFactory: Any,
        timeout: float = 30,
        bindAddress: Any = None,
    ) -> IConnector:
        # As PosixReactorBase.connectSSL: TLS in memory, over this adapter's
        # own TCP connection.
        tls = TLSMemoryBIOFactory(contextFactory, True, factory)
        return self.connectTCP(host, port, tls, timeout, bindAddress)
