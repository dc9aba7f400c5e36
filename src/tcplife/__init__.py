"""
tcplife: TCP servers and clients on Twisted whose whole lifecycle is visible.

Serve any protocol with L{LifecycleServerFactory} and every connection emits
structured C{twisted.logger} events (C{accept}, C{half-close}, C{close}, ...),
each with a C{lifecycle} field naming the step of the TCP call sequence.
Connect with L{LifecycleClientFactory} (and L{EchoClient}, or any protocol)
for the client's side of the same story (C{connect}, C{connected}, ...).
Give the server factory a L{FaultPlan} (of L{parseFaultSpec}'s specs) to make
its connections misbehave on purpose.
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
from .events import LifecycleLog
from .internet import AcceptQueue, EndpointError, readAcceptQueue, serverFromString
from .protocols import EchoProtocol, HalfCloseableTLSFactory, ProxyServerEndpoint, TrackedConnection
from .server import FaultPlan, LifecycleServerFactory, Listener, ListenError, parseFaultSpec

__all__ = [
    "AcceptQueue",
    "ConnectFailedError",
    "EchoClient",
    "EchoOutcome",
    "EchoProtocol",
    "EndpointError",
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
    "ProxyServerEndpoint",
    "TrackedConnection",
    "parseFaultSpec",
    "readAcceptQueue",
    "serverFromString",
]
