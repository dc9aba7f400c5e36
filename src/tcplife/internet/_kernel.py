"""
What the kernel says about a socket, read in one place: a listening socket's
accept queue (C{TCP_INFO}) and the handshakes it dropped (C{SO_MEMINFO}), and
a connection's unsent bytes (C{SIOCOUTQ}).
"""

from __future__ import annotations

import socket
import struct
from fcntl import ioctl
from termios import TIOCOUTQ

import attrs

# struct tcp_info starts with 8 one-byte fields, then 32-bit fields rto, ato,
# snd_mss, rcv_mss, unacked, sacked.  On a *listening* socket Linux reports the
# accept queue's current length in tcpi_unacked and its limit in tcpi_sacked.
_QUEUE_FIELDS = struct.Struct("=24xII")
_TCP_INFO = getattr(socket, "TCP_INFO", None)


@attrs.frozen
class AcceptQueue:
    """
    A snapshot of a listening socket's queue of completed connections.

    @ivar depth: Connections the kernel has completed that nobody has accepted.
    @ivar backlog: The queue's limit, as the kernel applies it (C{listen()}'s
        backlog, capped at C{net.core.somaxconn}).
    """

    depth: int
    backlog: int


def readAcceptQueue(listening: socket.socket) -> AcceptQueue | None:
    """
    Read the accept queue of a listening TCP socket, or C{None} where the
    platform or the socket's family does not report it.
    """
    if _TCP_INFO is None or listening.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = listening.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(raw) < _QUEUE_FIELDS.size:
        return None
    depth, backlog = _QUEUE_FIELDS.unpack_from(raw)
    return AcceptQueue(depth=depth, backlog=backlog)


# getsockopt(SOL_SOCKET, SO_MEMINFO) gives the socket's sk_meminfo array; its
# 9th entry, sk_drops, counts on a listening socket the handshakes the kernel
# dropped because the accept queue was full (tcp_listendrop).
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_SK_MEMINFO = struct.Struct("=9I")


def listenDrops(listening: socket.socket) -> int | None:
    """
    Connection attempts the kernel dropped at this listening socket, where
    Linux reports them.
    """
    try:
        raw = listening.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _SK_MEMINFO.size)
    except OSError:
        return None
    if len(raw) < _SK_MEMINFO.size:
        return None
    drops: int = _SK_MEMINFO.unpack(raw)[8]
    return drops


# SIOCOUTQ, the socket's unsent (and unacknowledged) byte count, shares its
# number with the terminal ioctl TIOCOUTQ on Linux.
_SIOCOUTQ = TIOCOUTQ
_INT_BUFFER = bytes(4)
_unpackInt = struct.Struct("i").unpack


def unsentBytes(connected: socket.socket) -> int:
    """
    Bytes the kernel still holds to send on C{connected}, or has sent
    without the peer acknowledging them (C{SIOCOUTQ}); 1 when it cannot
    tell, so that a caller waiting for 0 keeps waiting.
    """
    try:
        return int(_unpackInt(ioctl(connected.fileno(), _SIOCOUTQ, _INT_BUFFER))[0])
    except OSError:
        return 1
