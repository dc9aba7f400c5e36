"""
Listening with C{SO_REUSEPORT}, so that several processes share one port.

Twisted has no option for it: the socket is created, bound and listened on
here and handed to the reactor's C{adoptStreamPort}.  Given a
L{PortReactor}, the adopted port is a tcplife port like any other.  The
kernel then spreads incoming connections over every process listening on
the port with the option set (by a hash of the connection's addresses).
"""

from __future__ import annotations

import socket

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from ._port import PortReactor


def reusePortSocket(port: int, backlog: int, interface: str = "") -> socket.socket:
    """
    A non-blocking TCP socket with C{SO_REUSEADDR} and C{SO_REUSEPORT},
    bound to C{interface} (IPv6 if it is an IPv6 address) and listening.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface or "0.0.0.0", port) if family == socket.AF_INET else (interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A TCP server endpoint whose socket has C{SO_REUSEPORT} set.

    Errors are those of C{TCP4ServerEndpoint}: a C{CannotListenError}
    carrying the C{OSError}.
    """

    def __init__(
        self, reactor: PortReactor, port: int, backlog: int = 50, interface: str = ""
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        try:
            sock = reusePortSocket(self._port, self._backlog, self._interface)
        except OSError as e:
            return fail(CannotListenError(self._interface, self._port, e))
        try:
            # adoptStreamPort duplicates the descriptor; ours is closed here.
            listening = self._reactor.adoptStreamPort(sock.fileno(), sock.family, protocolFactory)
        finally:
            sock.close()
        return succeed(listening)
