"""
What the kernel says about a socket, read in one place: a listening socket's
accept queue (C{TCP_INFO}) and the handshakes it dropped (C{SO_MEMINFO}), a
connection's unsent bytes (C{SIOCOUTQ}), and a connection's own view of its
path (C{TCP_INFO}: round-trip time, retransmissions, congestion window...).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from fcntl import ioctl
from operator import itemgetter
from termios import TIOCOUTQ
from typing import Any

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


# struct tcp_info (include/uapi/linux/tcp.h): the fields of a connection's
# C{tcp} object, by the name the events give them, with their offset and C
# type.  The struct only ever grows at its end, and getsockopt returns as many
# bytes as the running kernel has: a field past that length is left out.
TCP_INFO_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("rtt_us", 68, "I"),  # tcpi_rtt
    ("rttvar_us", 72, "I"),  # tcpi_rttvar
    ("min_rtt_us", 148, "I"),  # tcpi_min_rtt (4.6)
    ("rto_us", 8, "I"),  # tcpi_rto
    ("retransmits", 100, "I"),  # tcpi_total_retrans: the connection's total
    ("bytes_retrans", 208, "Q"),  # tcpi_bytes_retrans (4.19)
    ("lost", 32, "I"),  # tcpi_lost
    ("reordering", 88, "I"),  # tcpi_reordering
    ("cwnd", 80, "I"),  # tcpi_snd_cwnd
    ("ssthresh", 76, "I"),  # tcpi_snd_ssthresh (0x7fffffff: slow start never ended)
    ("mss", 16, "I"),  # tcpi_snd_mss
    ("pmtu", 60, "I"),  # tcpi_pmtu
    ("delivery_rate", 160, "Q"),  # tcpi_delivery_rate, bytes per second (4.9)
    ("bytes_acked", 120, "Q"),  # tcpi_bytes_acked (4.1)
    ("bytes_received", 128, "Q"),  # tcpi_bytes_received (4.1)
    ("segs_out", 136, "I"),  # tcpi_segs_out (4.2)
    ("segs_in", 140, "I"),  # tcpi_segs_in (4.2)
    ("notsent_bytes", 144, "I"),  # tcpi_notsent_bytes (4.6)
    ("busy_us", 168, "Q"),  # tcpi_busy_time (4.10)
    ("rwnd_limited_us", 176, "Q"),  # tcpi_rwnd_limited (4.10)
    ("sndbuf_limited_us", 184, "Q"),  # tcpi_sndbuf_limited (4.10)
)

#: Bytes asked of the kernel: more than any struct tcp_info it has today.
TCP_INFO_ASKED = 512

_RTT = struct.Struct("=68xI")
# tcpi_unacked (segments sent and not yet acknowledged) and
# tcpi_notsent_bytes (4.6): together, whether SIOCOUTQ would be 0.
_UNACKED_AND_NOTSENT = struct.Struct("=24xI116xI")
_RETRANSMITS = struct.Struct("=100xI")

TcpInfoParser = Callable[[bytes], dict[str, int]]


def _layout(fields: list[tuple[str, int, str]]) -> str:
    """
    The C{struct} format that unpacks C{fields} (none overlapping) in the
    order of their offsets, skipping the bytes between them.
    """
    layout = ["="]
    at = 0
    for _, offset, code in sorted(fields, key=lambda field: field[1]):
        layout.append(f"{offset - at}x{code}" if offset > at else code)
        at = offset + struct.calcsize(code)
    return "".join(layout)


def _parserFor(length: int) -> TcpInfoParser:
    """
    A parser of C{struct tcp_info} as returned at C{length} bytes: one
    C{unpack_from} for every field that fits, then the values in the order
    of L{TCP_INFO_FIELDS}.
    """
    present = [
        (name, offset, code)
        for name, offset, code in TCP_INFO_FIELDS
        if offset + struct.calcsize(code) <= length
    ]
    if not present:
        return lambda raw: {}
    byOffset = sorted(range(len(present)), key=lambda index: present[index][1])
    unpack = struct.Struct(_layout(present)).unpack_from
    names = tuple(name for name, _, _ in present)
    # unpack gives the values by offset; put them back in the fields' order.
    positionOf = {fieldIndex: position for position, fieldIndex in enumerate(byOffset)}
    reorder: Callable[[tuple[int, ...]], Any] = itemgetter(
        *(positionOf[index] for index in range(len(present)))
    )
    if len(present) == 1:
        return lambda raw: {names[0]: unpack(raw)[0]}

    def parse(raw: bytes) -> dict[str, int]:
        return dict(zip(names, reorder(unpack(raw)), strict=True))

    return parse


# Every field of TCP_INFO_FIELDS, by offset: all of them are in what any
# kernel since 4.19 returns.
_WHOLE = struct.Struct(_layout(list(TCP_INFO_FIELDS)))


def _parseWhole(raw: bytes) -> dict[str, int]:
    # Every close of a connection parses its TCP_INFO: a dict display with
    # the names written out costs half of a dict built from names and
    # values (zip, a reordering), and this is the length every kernel since
    # 4.19 gives.  The order is TCP_INFO_FIELDS', as the event contract's.
    # The values come in the order of their offsets.
    (
        rto, mss, lost, pmtu, rtt, rttvar, ssthresh, cwnd, reordering, retransmits,
        bytesAcked, bytesReceived, segsOut, segsIn, notsent, minRtt,
        deliveryRate, busy, rwndLimited, sndbufLimited, bytesRetrans,
    ) = _WHOLE.unpack_from(raw)  # fmt: skip
    return {
        "rtt_us": rtt,
        "rttvar_us": rttvar,
        "min_rtt_us": minRtt,
        "rto_us": rto,
        "retransmits": retransmits,
        "bytes_retrans": bytesRetrans,
        "lost": lost,
        "reordering": reordering,
        "cwnd": cwnd,
        "ssthresh": ssthresh,
        "mss": mss,
        "pmtu": pmtu,
        "delivery_rate": deliveryRate,
        "bytes_acked": bytesAcked,
        "bytes_received": bytesReceived,
        "segs_out": segsOut,
        "segs_in": segsIn,
        "notsent_bytes": notsent,
        "busy_us": busy,
        "rwnd_limited_us": rwndLimited,
        "sndbuf_limited_us": sndbufLimited,
    }


# The running kernel returns the same length for every socket: one parser
# per length seen.
_parsers: dict[int, TcpInfoParser] = {}


def parseTcpInfo(raw: bytes) -> dict[str, int]:
    """
    The C{tcp} object of a connection's C{close} event from the bytes
    C{getsockopt(TCP_INFO)} returned: every field of L{TCP_INFO_FIELDS}
    that the running kernel returned, and none that it did not (never a
    zero for a field it lacks).
    """
    if len(raw) >= _WHOLE.size:
        return _parseWhole(raw)
    parse = _parsers.get(len(raw))
    if parse is None:
        parse = _parsers[len(raw)] = _parserFor(len(raw))
    return parse(raw)


def readTcpInfoBytes(connected: socket.socket) -> bytes | None:
    """
    C{struct tcp_info} of a TCP connection as the kernel returns it, or
    C{None} where there is none (another family, a closed socket, a
    platform without C{TCP_INFO}).
    """
    if _TCP_INFO is None:
        return None
    try:
        raw: bytes = connected.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, TCP_INFO_ASKED)
    except OSError:
        return None
    return raw or None


def readTcpInfo(connected: socket.socket) -> dict[str, int] | None:
    """
    The kernel's view of a TCP connection now (see L{parseTcpInfo}), or
    C{None} where there is none.
    """
    raw = readTcpInfoBytes(connected)
    return None if raw is None else parseTcpInfo(raw)


def rttOf(raw: bytes) -> int | None:
    """
    The smoothed round-trip time in C{raw}, in microseconds, if it is there.
    """
    return _RTT.unpack_from(raw)[0] if len(raw) >= _RTT.size else None


def retransmitsOf(raw: bytes) -> int | None:
    """
    The connection's total of retransmitted segments in C{raw}, if it is
    there.
    """
    return _RETRANSMITS.unpack_from(raw)[0] if len(raw) >= _RETRANSMITS.size else None


def heldInTcpInfo(raw: bytes) -> int | None:
    """
    Whether the kernel still holds bytes to send on the connection, or has
    sent bytes the peer has not acknowledged, as C{raw} says: 0 when
    neither (what L{unsentBytes} would say as 0), C{None} where C{raw} is
    too short to tell (before Linux 4.6).
    """
    if len(raw) < _UNACKED_AND_NOTSENT.size:
        return None
    unacked, notsent = _UNACKED_AND_NOTSENT.unpack_from(raw)
    held: int = unacked + notsent
    return held
