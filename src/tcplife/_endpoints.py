"""
Endpoint descriptions, as Twisted parses them, with tcplife's PROXY protocol.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint

from ._proxy import ProxyServerEndpoint


def serverFromString(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    L{twisted.internet.endpoints.serverFromString}, except that
    C{haproxy:DESCRIPTION} reads the PROXY header with tcplife's
    L{ProxyServerEndpoint} instead of Twisted's wrapper, so that the protocol
    is connected with the client's address and half-close passes through.
    """
    prefix, colon, inner = description.partition(":")
    if colon and prefix.strip().lower() == "haproxy":
        clock: IReactorTime = reactor
        return ProxyServerEndpoint(endpoints.serverFromString(reactor, inner), clock)
    endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, description)
    return endpoint
