"""
Server policy on top of the engine: the factory every connection is served
by, admission on the kernel's backlog, idle timeouts, the graceful drain,
metrics, faults on purpose, and listening as a service.

Imports L{tcplife.internet}, L{tcplife.protocols} and L{tcplife.events};
only the C{twist} glue (L{tcplife.tap}) and the package's face import it.
"""

from ._admission import AcceptGate, GovernedPort
from ._drain import Drainer, drainOnHangup
from ._factory import LifecycleServerFactory
from ._faults import KINDS, Draw, Fault, FaultPlan, FaultSpec, FaultSpecError, parseFaultSpec
from ._idle import IdleSweeper
from ._listening import Listener, ListenError, describeListenFailure, listeningSocket
from ._metrics import ServerCollector, metricsSite
from ._service import ServerService

__all__ = [
    "KINDS",
    "AcceptGate",
    "Drainer",
    "Draw",
    "Fault",
    "FaultPlan",
    "FaultSpec",
    "FaultSpecError",
    "GovernedPort",
    "IdleSweeper",
    "LifecycleServerFactory",
    "ListenError",
    "Listener",
    "ServerCollector",
    "ServerService",
    "describeListenFailure",
    "drainOnHangup",
    "listeningSocket",
    "metricsSite",
    "parseFaultSpec",
]
