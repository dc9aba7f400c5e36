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
  - L{ReusePortEndpoint}: C{SO_REUSEPORT};
  - L{serverFromString} and L{clientFromString}: endpoint descriptions,
    checked in the user's terms (L{EndpointError});
  - what the kernel says about a socket (L{readAcceptQueue}, L{listenDrops},
    L{unsentBytes}).

Imports L{tcplife.protocols} (the TLS and PROXY wrappers a port puts under
a factory) and L{tcplife.events}; the server and client rooms import it.
"""

from ._dispatch import ErrorAwareDispatch
from ._endpointcheck import EndpointError
from ._endpoints import DEFAULT_PORT, clientFromString, serverFromString
from ._kernel import AcceptQueue, listenDrops, readAcceptQueue, unsentBytes
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
from ._transport import DirectServer
from ._unixpath import listenerAt, lockHolder

__all__ = [
    "DEFAULT_PORT",
    "AcceptPolicy",
    "AcceptQueue",
    "BatchedPoller",
    "DirectServer",
    "EndpointError",
    "ErrorAwareDispatch",
    "LifecyclePort",
    "LifecycleUNIXPort",
    "PolicedPort",
    "PortReactor",
    "ReusePortEndpoint",
    "acceptPolicyOf",
    "clientFromString",
    "listenDrops",
    "listenerAt",
    "lockHolder",
    "pollerFor",
    "readAcceptQueue",
    "serverFromString",
    "unsentBytes",
]
