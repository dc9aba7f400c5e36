"""
Server policy on top of the engine: the settings (L{ServerSettings}), the
factory every connection is served by, admission on the kernel's backlog,
idle timeouts, the graceful drain, metrics, faults on purpose (L{FaultPlan}),
listening (as a service, or L{listen}), the whole server built from its
settings (L{serverService}), a supervisor of worker processes sharing its
listening sockets (L{supervisorService}, L{workerService}), and the speed
levers (L{LEVERS}).

Imports L{tcplife.internet}, L{tcplife.protocols} and L{tcplife.events};
only the C{twist} glue (L{tcplife.tap}) and the package's face import it.
"""

from ._admission import AcceptGate, GovernedPort
from ._control import WorkerControl
from ._drain import Drainer, drainOnHangup
from ._factory import LifecycleServerFactory
from ._faults import (
    KINDS,
    LARGEST_SEED,
    Draw,
    Fault,
    FaultPlan,
    FaultSpec,
    FaultSpecError,
    faultPlan,
    parseFaultSpec,
)
from ._idle import IdleSweeper
from ._levers import LEVERS, LEVERS_OFF_VARIABLE, unknownLevers
from ._listening import Listener, ListenError, describeListenFailure, listen, listeningSocket
from ._metrics import ServerCollector, metricsSite
from ._service import ServerService, Supervisor, serverService, supervisorService, workerService
from ._settings import ServerSettings
from ._workermetrics import WorkersCollector
from ._workers import FIRST_INHERITED, Worker, WorkerPool, connectionNumbering

__all__ = [
    "FIRST_INHERITED",
    "KINDS",
    "LARGEST_SEED",
    "LEVERS",
    "LEVERS_OFF_VARIABLE",
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
    "ServerSettings",
    "Supervisor",
    "Worker",
    "WorkerControl",
    "WorkerPool",
    "WorkersCollector",
    "connectionNumbering",
    "describeListenFailure",
    "drainOnHangup",
    "faultPlan",
    "listen",
    "listeningSocket",
    "metricsSite",
    "parseFaultSpec",
    "serverService",
    "supervisorService",
    "unknownLevers",
    "workerService",
]
