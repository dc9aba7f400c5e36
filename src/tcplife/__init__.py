"""
tcplife: TCP servers and clients on Twisted whose whole lifecycle is visible.

Serve any protocol with L{LifecycleServerFactory} and every connection emits
structured C{twisted.logger} events (C{accept}, C{half-close}, C{close}, ...),
each with a C{lifecycle} field naming the step of the TCP call sequence.
Connect with L{LifecycleClientFactory} (and L{EchoClient}, or any protocol)
for the client's side of the same story (C{connect}, C{connected}, ...).
"""

from ._client import EchoClient, EchoOutcome, LifecycleClientFactory
from ._connection import TrackedConnection
from ._echo import EchoProtocol
from ._endpoints import EndpointError, serverFromString
from ._events import LifecycleLog
from ._failures import ConnectFailedError
from ._listening import Listener, ListenFailed
from ._load import LoadRun, LoadSettings
from ._proxy import ProxyServerEndpoint
from ._report import Latency, LoadReport
from ._server import LifecycleServerFactory
from ._tcpinfo import AcceptQueue, readAcceptQueue
from ._tls import HalfCloseableTLSFactory

__all__ = [
    "AcceptQueue",
    "ConnectFailedError",
    "EchoClient",
    "EchoOutcome",
    "EchoProtocol",
    "EndpointError",
    "HalfCloseableTLSFactory",
    "Latency",
    "LifecycleClientFactory",
    "LifecycleLog",
    "LifecycleServerFactory",
    "ListenFailed",
    "Listener",
    "LoadReport",
    "LoadRun",
    "LoadSettings",
    "ProxyServerEndpoint",
    "TrackedConnection",
    "readAcceptQueue",
    "serverFromString",
]
