"""
The client role: the client factory and its echo protocol, the kinds of
failure a client meets, the load generator and its report, and the one-shot
and load runs as services.

Imports L{tcplife.internet}, L{tcplife.protocols} and L{tcplife.events};
only the C{twist} glue (L{tcplife.tap}) and the package's face import it.
"""

from ._factory import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    EchoClient,
    EchoOutcome,
    LifecycleClientFactory,
)
from ._failures import EXIT_STATUS, NO_LOCAL_PORT, ConnectFailedError
from ._intervals import IntervalReport
from ._load import (
    CONNECT,
    DEFAULT_DURATION,
    DEFAULT_SIZE,
    DEFAULT_WINDOW,
    PATTERNS,
    RR,
    STREAM,
    LoadRun,
    LoadSettings,
)
from ._loadservice import LoadService
from ._oneshot import OneShot
from ._report import Latency, LoadReport, TargetReport
from ._sinks import ByteSink, TextSink
from ._thresholds import Thresholds
from ._workers import WORKER_VARIABLE, WorkerPool, WorkerService, workerShare

__all__ = [
    "CONNECT",
    "DEFAULT_DURATION",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "EXIT_STATUS",
    "NO_LOCAL_PORT",
    "PATTERNS",
    "RR",
    "STREAM",
    "WORKER_VARIABLE",
    "ByteSink",
    "ConnectFailedError",
    "EchoClient",
    "EchoOutcome",
    "IntervalReport",
    "Latency",
    "LifecycleClientFactory",
    "LoadReport",
    "LoadRun",
    "LoadService",
    "LoadSettings",
    "OneShot",
    "TargetReport",
    "TextSink",
    "Thresholds",
    "WorkerPool",
    "WorkerService",
    "workerShare",
]
