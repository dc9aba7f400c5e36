"""
Passing half-close through a protocol wrapper.

Twisted's own wrappers (C{ProtocolWrapper}, the PROXY and TLS wrappers) do
not pass half-close on, so a peer's FIN becomes a full close and whatever the
wrapped protocol still had to send is lost.  tcplife's wrappers pass it on.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocol


def passReadConnectionLost(wrapped: IProtocol, loseConnection: Callable[[], None]) -> None:
    """
    The peer has finished sending: tell C{wrapped} if it understands
    half-close; otherwise close gracefully, so what it wrote is delivered
    first (Twisted would call connectionLost at once and drop it).
    """
    halfCloseable = IHalfCloseableProtocol(wrapped, None)
    if halfCloseable is not None:
        halfCloseable.readConnectionLost()
    else:
        loseConnection()


def passWriteConnectionLost(wrapped: IProtocol) -> None:
    """
    Our FIN has gone out: tell C{wrapped} if it understands half-close.
    """
    halfCloseable = IHalfCloseableProtocol(wrapped, None)
    if halfCloseable is not None:
        halfCloseable.writeConnectionLost()
