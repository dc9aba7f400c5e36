"""
The kernel's view of a TCP connection, read just before its socket closes.

Twisted's C{tcp.Connection.connectionLost} closes the socket (C{_closeSocket})
before it calls the protocol's C{connectionLost}, so the protocol (and
L{tcplife.protocols.TrackedConnection}, which builds the C{close} event) can
no longer ask the kernel anything.  The transport reads C{TCP_INFO} on its
way to C{close()} and keeps it as C{tcpInfoAtClose}, which the wrappers above
it (TLS, PROXY, the tracked connection) pass through.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp

from ._kernel import parseTcpInfo, readTcpInfoBytes

__all__ = ["KernelViewAtClose", "seeKernelAtClose", "tcpInfoNow"]


class KernelViewAtClose:
    """
    Reads C{TCP_INFO} just before the socket is closed, on every path that
    closes it (our close, the peer's FIN or reset, an abort), and parses it
    only when asked.  Mix in before a C{tcp.Connection} class.

    @cvar readsKernelAtClose: Whether it reads at all; C{False} gives
        Twisted's close (C{make bench-levers} measures what reading costs).
    """

    readsKernelAtClose = True

    _tcpInfoRaw: bytes | None = None
    _tcpInfo: dict[str, int] | None = None

    def _closeSocket(self, orderly: bool) -> None:
        # A view already there was read on the way to this close, with
        # nothing in between (see DirectServer.loseConnection).
        if self.readsKernelAtClose and self._tcpInfoRaw is None:
            self._tcpInfoRaw = readTcpInfoBytes(self.socket)  # type: ignore[attr-defined]
        super()._closeSocket(orderly)  # type: ignore[misc]

    @property
    def tcpInfoAtClose(self) -> dict[str, int] | None:
        """
        The kernel's view of the connection as it closed (see
        L{tcplife.internet.parseTcpInfo}), or C{None} before the close or
        where the kernel gave none.
        """
        info = self._tcpInfo
        if info is None and self._tcpInfoRaw is not None:
            info = self._tcpInfo = parseTcpInfo(self._tcpInfoRaw)
        return info


def _lowestTransport(transport: Any) -> tcp.Connection | None:
    # TLS, PROXY and tracked connections each keep the one below them as
    # .transport, down to the transport that owns the socket.
    for _ in range(8):
        if isinstance(transport, tcp.Connection):
            return transport
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


def seeKernelAtClose(transport: Any) -> bool:
    """
    Make C{transport} (or the TCP transport under its TLS or PROXY wrappers)
    keep C{tcpInfoAtClose}, if it is a TCP transport that tcplife did not
    make: Twisted's own C{tcp.Server} (a plain C{reactor.listenTCP}) or
    C{tcp.Client} (C{connectTCP}, the client endpoints).  tcplife's own
    transports (L{KernelViewAtClose}) need nothing.

    @return: Whether the close of C{transport} will be seen.
    """
    if isinstance(transport, KernelViewAtClose):
        return True
    lowest: Any = _lowestTransport(transport)
    if lowest is None or not isinstance(getattr(lowest, "socket", None), socket.socket):
        return False
    if isinstance(lowest, KernelViewAtClose) or "tcpInfoAtClose" in lowest.__dict__:
        return True
    closeSocket = lowest._closeSocket

    def closing(orderly: bool) -> None:
        # The instance's own attributes, gone once used: they would keep a
        # cycle through this closure.
        del lowest._closeSocket
        raw = readTcpInfoBytes(lowest.socket)
        lowest.tcpInfoAtClose = None if raw is None else parseTcpInfo(raw)
        closeSocket(orderly)

    lowest._closeSocket = closing
    lowest.tcpInfoAtClose = None
    return True


def tcpInfoNow(transport: Any) -> dict[str, int] | None:
    """
    The kernel's view of the open TCP connection under C{transport} (and
    its wrappers) now, or C{None} for a connection that is not TCP or is
    closed.
    """
    lowest: Any = _lowestTransport(transport)
    handle = getattr(lowest, "socket", None)
    if not isinstance(handle, socket.socket) or handle.fileno() < 0:
        return None
    raw = readTcpInfoBytes(handle)
    return None if raw is None else parseTcpInfo(raw)
