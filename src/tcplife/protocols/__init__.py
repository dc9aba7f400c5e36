"""
Between a transport and the user's protocol: the wrappers that see a
connection's whole lifecycle and keep its half-closes.

  - L{TrackedConnection} and L{ConnectionTracking}: the lifecycle events,
    byte counts and backpressure of any protocol a factory builds (their
    ids: L{numberConnections});
  - L{EchoProtocol}: RFC 862;
  - L{ProxyHeaderFactory} and L{ProxyServerEndpoint}: the PROXY protocol
    header, read before the protocol is connected;
  - L{HalfCloseableTLSFactory}: TLS that keeps the echo a C{close_notify}
    would lose;
  - L{ConnectionWrapper} and the pieces built on it: faults on purpose
    (L{DelayInput}, L{Throttle}, L{StopReadingAfter}, L{DropInput},
    L{CloseAfter}, L{HalfCloseFirst}, L{ResetAfter}) and L{Reflect}'s
    first line.

This room imports only L{tcplife.events}; the engine and the server and
client rooms import it.
"""

from ._echo import EchoProtocol
from ._faults import (
    CLOSE_AFTER,
    DELAY,
    DROP_INPUT,
    HALF_CLOSE_FIRST,
    HELD_AT_MOST,
    RESET_AFTER,
    STOP_READING_AFTER,
    THROTTLE,
    CloseAfter,
    DelayInput,
    DropInput,
    HalfCloseFirst,
    ResetAfter,
    StopReadingAfter,
    Throttle,
)
from ._halfclose import passReadConnectionLost, passWriteConnectionLost
from ._proxy import HeaderAdmission, ProxyHeaderFactory, ProxyHeaderProtocol, ProxyServerEndpoint
from ._reflect import Reflect, reflectionLine
from ._tls import HalfCloseableTLS, HalfCloseableTLSFactory
from ._tracking import ConnectionTracking, TrackedConnection, numberConnections
from ._wrapper import ConnectionWrapper

__all__ = [
    "CLOSE_AFTER",
    "DELAY",
    "DROP_INPUT",
    "HALF_CLOSE_FIRST",
    "HELD_AT_MOST",
    "RESET_AFTER",
    "STOP_READING_AFTER",
    "THROTTLE",
    "CloseAfter",
    "ConnectionTracking",
    "ConnectionWrapper",
    "DelayInput",
    "DropInput",
    "EchoProtocol",
    "HalfCloseFirst",
    "HalfCloseableTLS",
    "HalfCloseableTLSFactory",
    "HeaderAdmission",
    "ProxyHeaderFactory",
    "ProxyHeaderProtocol",
    "ProxyServerEndpoint",
    "Reflect",
    "ResetAfter",
    "StopReadingAfter",
    "Throttle",
    "TrackedConnection",
    "numberConnections",
    "passReadConnectionLost",
    "passWriteConnectionLost",
    "reflectionLine",
]
