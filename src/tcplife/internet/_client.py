"""
Outgoing connections of tcplife's own, and a reactor adapter that makes
client endpoints use them.

Client endpoints (C{tcp:}, C{ssl:}, C{tls:}, L{HostnameEndpoint}, ...) call
C{connectTCP} or C{connectSSL} on the reactor they were given;
L{ClientReactor} is that reactor: it connects from the chosen local address
and passes everything else through to the real reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IConnector, IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import directlyProvides, providedBy


class ClientReactor:
    """
    A reactor whose TCP connections start from C{bindAddress} (when the
    endpoint names none of its own); every other attribute is the real
    reactor's, and it provides the same interfaces (L{HostnameEndpoint}
    asks for its name resolver by interface).

    @ivar bindAddress: The local IP address to connect from, or C{None} for
        the kernel's choice.
    """

    def __init__(self, reactor: Any, bindAddress: str | None = None) -> None:
        self._reactor = reactor
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
        connector: IConnector = self._reactor.connectTCP(host, port, factory, timeout, bindAddress)
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
