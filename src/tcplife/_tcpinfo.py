"""
The kernel's accept queue of a listening socket, read with C{TCP_INFO}.
"""

from __future__ import annotations

import socket
import struct

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
    Read the accept queue of a listening TCP socket, or L{None} where the
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
