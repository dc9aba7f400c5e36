"""
The RFC 862 echo protocol.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class EchoProtocol(Protocol):
    """
    Send back every byte received (RFC 862), and close once the peer has
    finished sending and has had all of its echo.

    Override L{dataReceived} to serve a variation (an upper-casing echo, a
    line protocol); the factory still tracks every connection.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        The peer half-closed (C{shutdown(SHUT_WR)}, C{nc -N}): it still reads,
        so close only after the echo written so far has gone out.
        """
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Our side's FIN has gone out; nothing more to do until the peer closes.
        """
