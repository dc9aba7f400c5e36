"""
The speed levers: what tcplife does differently from Twisted for speed,
each a flag on the object it belongs to, and how a server is built with some
of them off (Twisted's way) to measure what each buys.

Which levers are off is a setting (L{ServerSettings.leversOff
<tcplife.server.ServerSettings>}); C{twist tcpecho} reads it, once at
start-up, from the environment variable L{LEVERS_OFF_VARIABLE}, so that a
benchmark can run the plugin as a user does with one lever off.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from twisted.internet import tcp

from ..internet import DirectServer, PortReactor

#: Each lever, by name, and what the server does with it off.
LEVERS: Final[Mapping[str, str]] = {
    "write-at-once": "every write buffered until the next writable event",
    "256k-reads": "64 KiB per recv",
    "nodelay": "Nagle's algorithm on",
    "batched-poller": "each connection registered with the reactor: callWithLogger per "
    "event, and an SO_ERROR check per end of input",
    "close-at-once": "loseConnection waits for a writable event, then shutdown() and close()",
    "accept-without-enums": "socket.accept(), with its conversions to enums, in tcplife's "
    "accept loop",
    "rendered-events": "events as format templates through Logger.emit",
    "kernel-view": "no TCP_INFO read at close (no tcp object); SIOCOUTQ for the close's check",
}

#: The environment variable C{twist tcpecho} reads the levers to switch off
#: from: their names, separated by commas.
LEVERS_OFF_VARIABLE: Final = "TCPLIFE_LEVERS_OFF"

#: The transport's flag each transport lever sets, with the lever off.
_TRANSPORT_FLAGS: Final[Mapping[str, tuple[str, Any]]] = {
    "write-at-once": ("writeAtOnce", False),
    "256k-reads": ("readSize", tcp.Server.bufferSize),
    "nodelay": ("noDelay", False),
    "batched-poller": ("batchedPoller", False),
    "close-at-once": ("closeAtOnce", False),
    "kernel-view": ("readsKernelAtClose", False),
}


def unknownLevers(names: Collection[str]) -> list[str]:
    """
    Those of C{names} that name no lever, in order.
    """
    return [name for name in names if name not in LEVERS]


def transportWithout(leversOff: Collection[str]) -> type[DirectServer]:
    """
    L{DirectServer}, or, with any of its levers off, a subclass whose flags
    say so.
    """
    flags = dict(_TRANSPORT_FLAGS[lever] for lever in leversOff if lever in _TRANSPORT_FLAGS)
    if not flags:
        return DirectServer
    return type("DirectServerLeversOff", (DirectServer,), flags)


def portsWithout(reactor: Any, leversOff: Collection[str]) -> PortReactor:
    """
    A L{PortReactor} around C{reactor} whose ports work with C{leversOff}
    off.
    """
    return PortReactor(
        reactor,
        transport=transportWithout(leversOff),
        acceptWithoutEnums="accept-without-enums" not in leversOff,
    )


def rendersEvents(leversOff: Collection[str]) -> bool:
    """
    Whether the event log renders its per-connection events.
    """
    return "rendered-events" not in leversOff
