"""
Endpoint descriptions, checked in the user's terms, built by Twisted, with
tcplife's PROXY protocol.
"""

from __future__ import annotations

from typing import Any, Final, cast

from twisted.internet import endpoints
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint, IStreamServerEndpoint

from ..protocols import ProxyServerEndpoint
from ._endpointcheck import (
    CheckedEndpoint,
    EndpointError,
    checkClient,
    checkServer,
    inheritedSocketMissing,
)
from ._port import PortReactor

__all__ = [
    "DEFAULT_PORT",
    "EndpointError",
    "clientFromString",
    "serverEndpointKind",
    "serverFromString",
]

#: The TCP port tcplife's server listens on, and its client connects to,
#: when none is given.
DEFAULT_PORT: Final = 9000

# What Twisted's parsers raise for a bad description (a type only a plugin
# knows is checked by nobody else).
_PARSER_ERRORS = (ValueError, TypeError, LookupError, OSError)


def serverFromString(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    L{twisted.internet.endpoints.serverFromString}, except that the endpoint
    listens on tcplife's ports (through a L{PortReactor} around C{reactor},
    unless C{reactor} is one already), the type may be written in any case
    (C{TCP:9000}), a bad description raises L{EndpointError} saying what is
    wrong in one sentence, and C{haproxy:DESCRIPTION} reads the PROXY header
    with tcplife's L{ProxyServerEndpoint} instead of Twisted's wrapper, so
    that the protocol is connected with the client's address and half-close
    passes through.

    On tcplife's ports, a factory that brings an accept policy (a
    L{tcplife.LifecycleServerFactory} with C{maxConnections}) has it
    applied: a burst of clients never finds more than the cap served, and
    those beyond it wait in the kernel's accept queue.

    @raise EndpointError: if the description cannot serve.
    """
    checked = checkServer(description)
    reactor = PortReactor.around(reactor)
    try:
        endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, checked.description)
    except _PARSER_ERRORS as e:
        if checked.checked and not _inheritedSocketMissing(checked, e):
            raise  # the checks passed what Twisted refuses: their bug, to be seen
        raise _parserFailed(checked, e) from None
    if checked.proxied:
        clock: IReactorTime = reactor
        return ProxyServerEndpoint(endpoint, clock)
    return endpoint


def serverEndpointKind(description: str) -> str:
    """
    The type of the server endpoint C{description} names, in lower case,
    under any C{haproxy:} (C{tcp}, C{unix}, C{systemd}, C{stdio}, ...).

    @raise EndpointError: if the description cannot serve.
    """
    return checkServer(description).kind


def clientFromString(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    L{twisted.internet.endpoints.clientFromString}, except that a bad
    description raises L{EndpointError} saying what is wrong in one sentence.

    @raise EndpointError: if the description cannot connect.
    """
    checked = checkClient(description)
    try:
        endpoint: IStreamClientEndpoint = endpoints.clientFromString(reactor, checked.description)
    except _PARSER_ERRORS as e:
        if checked.checked:
            raise
        raise _parserFailed(checked, e) from None
    return endpoint


def _inheritedSocketMissing(checked: CheckedEndpoint, error: Exception) -> bool:
    # Twisted's systemd parser looks the socket up as it parses.
    return checked.kind == "systemd" and isinstance(error, LookupError)


def _parserFailed(checked: CheckedEndpoint, error: Exception) -> EndpointError:
    if _inheritedSocketMissing(checked, error):
        return inheritedSocketMissing(cast(LookupError, error))
    if isinstance(error, (TypeError, LookupError)):
        # The parser's own words here are Python's, about its arguments.
        return EndpointError(f"missing or unknown parameters for {checked.kind}")
    return EndpointError(str(error).rstrip(".") or type(error).__name__)
