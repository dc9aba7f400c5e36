"""
tcplife: TCP servers and clients on Twisted whose whole lifecycle is visible.

Serve any protocol with L{LifecycleServerFactory} and every connection emits
structured C{twisted.logger} events (C{accept}, C{half-close}, C{close}, ...),
each with a C{lifecycle} field naming the step of the TCP call sequence.
"""

from ._connection import TrackedConnection
from ._echo import EchoProtocol
from ._endpoints import serverFromString
from ._events import LifecycleLog
from ._listening import Listener, ListenFailed
from ._proxy import ProxyServerEndpoint
from ._server import LifecycleServerFactory
from ._tcpinfo import AcceptQueue, readAcceptQueue
from ._tls import HalfCloseableTLSFactory

__all__ = [
    "AcceptQueue",
    "EchoProtocol",
    "HalfCloseableTLSFactory",
    "LifecycleLog",
    "LifecycleServerFactory",
    "ListenFailed",
    "Listener",
    "ProxyServerEndpoint",
    "TrackedConnection",
    "readAcceptQueue",
    "serverFromString",
]
