"""
tcplife: TCP servers and clients on Twisted whose whole lifecycle is visible.

Serve any protocol with L{LifecycleServerFactory} and every connection emits
structured C{twisted.logger} events (C{accept}, C{half-close}, C{close}, ...),
each with a C{lifecycle} field naming the step of the TCP call sequence.
Listen with L{listen} (or an endpoint from L{serverFromString}, or a
L{PortReactor} around the reactor): tcplife's own ports, on which the
factory's L{ServerSettings} hold, its connection cap included.  Connect with
L{LifecycleClientFactory} (and L{EchoClient}, or any protocol) for the
client's side of the same story (C{connect}, C{connected}, ...).  The
settings' C{fault} (of L{parseFaultSpec}'s specs) make a server's connections
misbehave on purpose.
"""

from .client import (
    ConnectFailedError,
    EchoClient,
    EchoOutcome,
    Latency,
    LifecycleClientFactory,
    LoadReport,
    LoadRun,
    LoadSettings,
)
from .eventlog import EventFile
from .events import LifecycleLog
from .internet import (
    AcceptQueue,
    DirectServer,
    EndpointError,
    PortReactor,
    readAcceptQueue,
    serverFromString,
)
from .protocols import EchoProtocol, HalfCloseableTLSFactory, ProxyServerEndpoint, TrackedConnection
from .server import (
    FaultPlan,
    LifecycleServerFactory,
    Listener,
    ListenError,
    ServerSettings,
    listen,
    parseFaultSpec,
)

__all__ = [
    "AcceptQueue",
    "ConnectFailedError",
    "DirectServer",
    "EchoClient",
    "EchoOutcome",
    "EchoProtocol",
    "EndpointError",
    "EventFile",
    "FaultPlan",
    "HalfCloseableTLSFactory",
    "Latency",
    "LifecycleClientFactory",
    "LifecycleLog",
    "LifecycleServerFactory",
    "ListenError",
    "Listener",
    "LoadReport",
    "LoadRun",
    "LoadSettings",
    "PortReactor",
    "ProxyServerEndpoint",
    "ServerSettings",
    "TrackedConnection",
    "listen",
    "parseFaultSpec",
    "readAcceptQueue",
    "serverFromString",
]
