"""
The engine: tcplife's transport, listening ports and dispatch, below any
policy.

  - L{DirectServer}: Twisted's C{tcp.Server} with a direct write path;
  - L{PolicedPort}, L{LifecyclePort}, L{LifecycleUNIXPort} and L{PortReactor}:
    listening ports that accept under an L{AcceptPolicy} (their own, or the
    one their factory brings: L{acceptPolicyOf}), and the reactor adapter
    through which endpoints build them;
  - L{BatchedPoller} and L{tcplife.internet.directreactor}: events dispatched
    in batches, with C{EPOLLERR} read;
  - L{DirectClient} and L{ClientReactor}: outgoing connections with the
    same transport, and the reactor adapter through which client endpoints
    make them (from a chosen local address);
  - L{ReusePortEndpoint}: C{SO_REUSEPORT};
  - L{HoldingPorts} and L{InheritedPorts} (with
    L{inheritedServerFromString}): listening sockets one process binds and
    others accept on, with one accept queue for all;
  - L{serverFromString} and L{clientFromString}: endpoint descriptions,
    checked in the user's terms (L{EndpointError});
  - what the kernel says about a socket (L{readAcceptQueue}, L{listenDrops},
    L{unsentBytes}, L{readTcpInfo}), and about a connection as it closes
    (L{KernelViewAtClose}, L{seeKernelAtClose}).

Imports L{tcplife.protocols} (the TLS and PROXY wrappers a port puts under
a factory) and L{tcplife.events}; the server and client rooms import it.
"""

from ._client import ClientReactor, DirectClient
from ._closeview import KernelViewAtClose, seeKernelAtClose, tcpInfoNow
from ._dispatch import ErrorAwareDispatch
from ._endpointcheck import EndpointError
from ._endpoints import DEFAULT_PORT, clientFromString, serverEndpointKind, serverFromString
from ._inherit import HoldingPorts, InheritedPorts, inheritedServerFromString
from ._kernel import (
    TCP_INFO_FIELDS,
    AcceptQueue,
    listenDrops,
    parseTcpInfo,
    readAcceptQueue,
    readTcpInfo,
    readTcpInfoBytes,
    unsentBytes,
)
from ._poller import BatchedPoller, pollerFor
from ._port import (
    AcceptPolicy,
    LifecyclePort,
    LifecycleUNIXPort,
    PolicedPort,
    PortReactor,
    acceptPolicyOf,
)
from ._reuseport import ReusePortEndpoint
from ._transport import DirectConnection, DirectServer
from ._unixpath import listenerAt, lockHolder

__all__ = [
    "DEFAULT_PORT",
    "TCP_INFO_FIELDS",
    "AcceptPolicy",
    "AcceptQueue",
    "BatchedPoller",
    "ClientReactor",
    "DirectClient",
    "DirectConnection",
    "DirectServer",
    "EndpointError",
    "ErrorAwareDispatch",
    "HoldingPorts",
    "InheritedPorts",
    "KernelViewAtClose",
    "LifecyclePort",
    "LifecycleUNIXPort",
    "PolicedPort",
    "PortReactor",
    "ReusePortEndpoint",
    "acceptPolicyOf",
    "clientFromString",
    "inheritedServerFromString",
    "listenDrops",
    "listenerAt",
    "lockHolder",
    "parseTcpInfo",
    "pollerFor",
    "readAcceptQueue",
    "readTcpInfo",
    "readTcpInfoBytes",
    "seeKernelAtClose",
    "serverEndpointKind",
    "serverFromString",
    "tcpInfoNow",
    "unsentBytes",
]
