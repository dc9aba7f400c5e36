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
    would lose.

This room imports only L{tcplife.events}; the engine and the server and
client rooms import it.
"""

from ._echo import EchoProtocol
from ._halfclose import passReadConnectionLost, passWriteConnectionLost
from ._proxy import HeaderAdmission, ProxyHeaderFactory, ProxyHeaderProtocol, ProxyServerEndpoint
from ._tls import HalfCloseableTLS, HalfCloseableTLSFactory
from ._tracking import ConnectionTracking, TrackedConnection, numberConnections

__all__ = [
    "ConnectionTracking",
    "EchoProtocol",
    "HalfCloseableTLS",
    "HalfCloseableTLSFactory",
    "HeaderAdmission",
    "ProxyHeaderFactory",
    "ProxyHeaderProtocol",
    "ProxyServerEndpoint",
    "TrackedConnection",
    "numberConnections",
    "passReadConnectionLost",
    "passWriteConnectionLost",
]
