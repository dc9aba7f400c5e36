"""
C{twist tcpecho}: the RFC 862 echo server, every lifecycle step logged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel
from twisted.python import usage

from ..eventlog import batchJSONLog
from ..internet import serverEndpointKind
from ..protocols import numberConnections
from ..server import (
    FIRST_INHERITED,
    LARGEST_SEED,
    LEVERS,
    LEVERS_OFF_VARIABLE,
    FaultSpecError,
    LifecycleServerFactory,
    ServerService,
    ServerSettings,
    connectionNumbering,
    parseFaultSpec,
    serverService,
    supervisorService,
    unknownLevers,
    workerService,
)
from ._options import (
    EVENTS_OPTIONS,
    checkEvents,
    globalReactor,
    loadClass,
    seconds,
    serverEndpoint,
    twistLogLevel,
    wholeNumber,
)
from ._process import ServerProcess
from ._workers import (
    adoptControl,
    ignoreRotationUntilReady,
    leaveTheSupervisorsGroup,
    parseWorkerOf,
    tagTwistLog,
    workerCommand,
    workerCount,
)

#: Where each option's default is: the settings it sets.
_DEFAULTS = ServerSettings()


def _fieldOf(option: str) -> str:
    """
    The L{ServerSettings} field an option sets: its name in camelCase
    (C{--max-connections}: C{maxConnections}).
    """
    first, *rest = option.split("-")
    return first + "".join(word.capitalize() for word in rest)


class Options(usage.Options):
    synopsis = "[--port N | --listen ENDPOINT ...] [options]"
    longdesc = (
        "An RFC 862 echo server that logs each step of every connection "
        "(listen, accept, half-close, close) as structured twisted.logger "
        "events with a 'lifecycle' field.  Use 'twist --log-format json "
        "tcpecho' for one JSON object per event."
    )
    optFlags = [
        ["trace", None, "Also log every read and write (bytes per call)."],
        [
            "reuse-port",
            None,
            "Set SO_REUSEPORT on --port's socket, so several tcpecho processes "
            "share the port and the kernel spreads connections over them.",
        ],
        [
            "reflect",
            None,
            'Start each connection with one JSON line, {"server": NAME, "client": '
            '"HOST:PORT", "local": "HOST:PORT"} (the addresses as the server sees '
            "them, behind a PROXY header the client's own), then echo.",
        ],
    ]
    optParameters = [
        [
            "port",
            "p",
            None,
            f"TCP port to listen on (default {_DEFAULTS.port}, none with --listen; 0: any free).",
        ],
        [
            "interface",
            None,
            None,
            "Local address for --port to bind (default: every IPv4 interface).",
        ],
        [
            "backlog",
            None,
            None,
            "Length of the kernel's queue of connections not yet accepted (listen()'s "
            f"backlog) for --port (default: {_DEFAULTS.backlog}).",
        ],
        [
            "protocol",
            None,
            None,
            "Serve this Protocol subclass (a dotted name) instead of echo.",
        ],
        [
            "factory",
            None,
            None,
            "Serve with this LifecycleServerFactory subclass (a dotted name).",
        ],
        [
            "max-connections",
            None,
            None,
            "Stop accepting while this many connections are open; new clients "
            "wait in the kernel's accept queue (default: no cap).",
        ],
        [
            "idle-timeout",
            None,
            None,
            "Close a connection that moved no byte for this many seconds (default: never).",
        ],
        [
            "close-timeout",
            None,
            None,
            "Abort a connection whose graceful close has not finished in this many seconds "
            f"(default: {_DEFAULTS.closeTimeout:g}).",
        ],
        [
            "shutdown-timeout",
            None,
            None,
            "On SIGTERM, SIGINT or SIGHUP, wait this many seconds for open connections to "
            f"finish (default: {_DEFAULTS.shutdownTimeout:g}).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint (e.g. tcp:9100).",
        ],
        [
            "workers",
            None,
            None,
            "Serve with N worker processes ('auto': one per CPU) under a supervisor that "
            "binds every listener once and hands the workers its sockets; "
            "--max-connections applies to each worker (default: serve in this process).",
        ],
        [
            "worker-restart-limit",
            None,
            None,
            "With --workers, stop (status 1) once workers have died this many times "
            f"within --worker-restart-window (default: {_DEFAULTS.workerRestartLimit}).",
        ],
        [
            "worker-restart-window",
            None,
            None,
            "The seconds --worker-restart-limit counts deaths over "
            f"(default: {_DEFAULTS.workerRestartWindow:g}).",
        ],
        [
            "worker-of",
            None,
            None,
            "Internal: what the supervisor of --workers starts each worker with "
            "(INDEX/COUNT/GENERATION).",
        ],
        [
            "seed",
            None,
            None,
            "Draw which connections --fault applies to from this seed: the same "
            "seed and order of accepts make the same choices (default: a random "
            "seed, logged at the start).",
        ],
        ["name", None, None, "The server's name in --reflect's line (default HOSTNAME:PID)."],
        *EVENTS_OPTIONS,
    ]
    compData = usage.Completions(optActions={"interface": usage.CompleteNetInterfaces()})

    #: Where the speed levers to switch off are read from (tests give their
    #: own): L{LEVERS_OFF_VARIABLE}.
    environ: Mapping[str, str] = os.environ

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []
        self["fault"] = []
        #: What the options ask for, once they are parsed.
        self.settings = _DEFAULTS
        #: The arguments as given, which every worker of --workers gets too.
        self.arguments: list[str] = []
        #: Under a supervisor (--worker-of): which worker, of how many, in
        #: which restart of its place.
        self.workerOf: tuple[int, int, int] | None = None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        self.arguments = list(sys.argv[1:] if options is None else options)
        usage.Options.parseOptions(self, options)

    def opt_listen(self, description: str) -> None:
        """
        Also listen on a Twisted server endpoint (repeatable): tcp:9000, unix:/x.
        """
        self["listen"].append(description)

    def opt_fault(self, spec: str) -> None:
        self["fault"].append(spec)

    # A string, not a docstring: --help would keep a docstring's
    # indentation inside the lines it wraps.
    opt_fault.__doc__ = (
        "Misbehave on purpose, as SPEC says (repeatable): FAULT[=VALUE],... and "
        "p=SHARE for a share of the connections (default: all).  The faults: "
        "delay=MS or MS-MS before each echo; throttle=BYTES a second; "
        "stop-reading-after=BYTES; drop-input (read, never echo); close-after=BYTES "
        "(then FIN); reset-after=BYTES (then RST); half-close-first (FIN at once, "
        "reading on); accept-delay=MS or MS-MS (each client waits in the kernel's "
        "queue); never-accept (the queue fills, later connects hang).  Example: "
        "--fault delay=50-200,p=0.1"
    )

    def postOptions(self) -> None:
        self._checkFaults()
        if self["port"] is not None:
            self["port"] = wholeNumber("--port", self["port"], 0, 65535)
        elif not self["listen"]:
            self["port"] = _DEFAULTS.port
        if self["port"] is None:
            self._refuseWithoutPort()
        if self["backlog"] is not None:
            self["backlog"] = wholeNumber("--backlog", self["backlog"], 1, 65535)
        if self["worker-of"] is not None:
            self.workerOf = parseWorkerOf(self["worker-of"])
        for description in self["listen"]:
            if self.workerOf is None:
                _parseEndpoint(globalReactor(), description)
            else:
                # Checked by the supervisor, which took the systemd sockets
                # a systemd: description would look for here.
                serverEndpointKind(description)
        if self["max-connections"] is not None:
            self["max-connections"] = wholeNumber(
                "--max-connections", self["max-connections"], 1, 10_000_000
            )
        if self["idle-timeout"] is not None:
            self["idle-timeout"] = seconds("--idle-timeout", self["idle-timeout"])
        if self["close-timeout"] is not None:
            self["close-timeout"] = seconds("--close-timeout", self["close-timeout"])
        if self["shutdown-timeout"] is not None:
            self["shutdown-timeout"] = seconds(
                "--shutdown-timeout", self["shutdown-timeout"], allowZero=True
            )
        if self["metrics"] is not None:
            _parseEndpoint(globalReactor(), self["metrics"], option="--metrics")
        if self["protocol"] is not None and self["factory"] is not None:
            raise usage.UsageError("Give --protocol or --factory, not both.")
        if self["protocol"] is not None:
            self["protocol"] = loadClass("--protocol", self["protocol"], Protocol)
        if self["factory"] is not None:
            self["factory"] = loadClass("--factory", self["factory"], LifecycleServerFactory)
        if self["workers"] is not None:
            self["workers"] = workerCount(self["workers"])
            if self["reuse-port"]:
                raise usage.UsageError(
                    "Give --workers or --reuse-port, not both: the workers share one "
                    "listening socket, and its one accept queue; --reuse-port gives each "
                    "process a socket and a queue of its own."
                )
            for description in self["listen"]:
                if serverEndpointKind(description) == "stdio":
                    raise usage.UsageError(
                        f"--listen '{description}' has no listening socket to share with "
                        "--workers; serve standard input and output without --workers."
                    )
        if self["worker-restart-limit"] is not None:
            self["worker-restart-limit"] = wholeNumber(
                "--worker-restart-limit", self["worker-restart-limit"], 1, 1_000_000
            )
        if self["worker-restart-window"] is not None:
            self["worker-restart-window"] = seconds(
                "--worker-restart-window", self["worker-restart-window"]
            )
        checkEvents(self)
        self.settings = self._settings()

    def _checkFaults(self) -> None:
        specs = []
        for spec in self["fault"]:
            try:
                specs.append(parseFaultSpec(spec))
            except FaultSpecError as e:
                raise usage.UsageError(f"--fault {spec!r} is not usable: {e}.") from None
        self["fault"] = tuple(specs)
        if self["seed"] is not None:
            if not specs:
                raise usage.UsageError("--seed applies to --fault; give --fault too.")
            self["seed"] = wholeNumber("--seed", self["seed"], 0, LARGEST_SEED)
        if self["name"] is not None:
            if not self["reflect"]:
                raise usage.UsageError("--name applies to --reflect; give --reflect too.")
            if not self["name"].strip():
                raise usage.UsageError("--name must name the server, not ''.")

    def _refuseWithoutPort(self) -> None:
        # Each --listen endpoint string carries its own address and backlog;
        # these options would be silently ignored.
        if self["reuse-port"]:
            raise usage.UsageError("--reuse-port applies to --port; give --port too.")
        for option in ("interface", "backlog"):
            if self[option]:
                raise usage.UsageError(
                    f"--{option} applies to --port; give --port too, or put "
                    f"{option}= in the --listen endpoint (tcp:9000:{option}=...)."
                )

    def _settings(self) -> ServerSettings:
        """
        The settings the options give, each option setting the field of its
        name, on top of the factory class's defaults (its class attributes).
        """
        given: dict[str, Any] = {
            _fieldOf(option): self[option]
            for option in _SETTINGS_OPTIONS
            if self[option] is not None
        }
        # Given or not, these say what they are: no port (--listen alone),
        # the endpoints, and the flags.
        given["port"] = self["port"]
        given["listen"] = self["listen"]
        given["trace"] = bool(self["trace"])
        given["reusePort"] = bool(self["reuse-port"])
        given["leversOff"] = self._leversOff()
        given["fault"] = self["fault"]
        given["reflect"] = bool(self["reflect"])
        factoryClass: type[LifecycleServerFactory] = self["factory"] or LifecycleServerFactory
        return factoryClass.defaultSettings().evolve(**given)

    def _leversOff(self) -> frozenset[str]:
        names = [name.strip() for name in self.environ.get(LEVERS_OFF_VARIABLE, "").split(",")]
        levers = frozenset(name for name in names if name)
        unknown = unknownLevers(sorted(levers))
        if unknown:
            raise usage.UsageError(
                f"{LEVERS_OFF_VARIABLE} names {', '.join(map(repr, unknown))}, which is not a "
                f"speed lever; the levers are {', '.join(LEVERS)} (separated by commas)."
            )
        return levers


#: The options that set a field of L{ServerSettings} when given.
_SETTINGS_OPTIONS = (
    "interface",
    "backlog",
    "protocol",
    "factory",
    "max-connections",
    "idle-timeout",
    "close-timeout",
    "shutdown-timeout",
    "metrics",
    "workers",
    "worker-restart-limit",
    "worker-restart-window",
    "seed",
    "name",
    "events",
    "events-only",
)


def _parseEndpoint(
    reactor: object, description: str, option: str = "--listen"
) -> IStreamServerEndpoint:
    return serverEndpoint(option, reactor, description)


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    The server the options' settings describe (see
    L{tcplife.server.serverService}), run as C{twist}'s service: the process
    ends with one line and status 1 if listening fails.
    """
    if reactor is None:
        reactor = globalReactor()
    if options.workerOf is None and options.settings.workers is None:
        # twist's JSON log, written without a flush per event.  Not with
        # --workers: processes sharing one log file must each write a
        # record with one write, not a buffer cut anywhere.
        batchJSONLog(getattr(options, "parent", None), reactor)
    threshold = twistLogLevel(options)
    process: ServerProcess
    if options.workerOf is not None:
        process = _worker(options, options.workerOf, reactor, threshold)
    elif options.settings.workers is not None:
        process = _supervisor(options, options.settings.workers, reactor, threshold)
    else:
        server = serverService(options.settings, reactor, threshold=threshold)
        process = ServerProcess(server, reactor)
    served = process.server
    assert isinstance(served, ServerService)
    for listener in [*served.listeners, *([served.metrics] if served.metrics else [])]:
        listener.failedLater = process.listenFailedLater
    return process


def _supervisor(
    options: Options, count: int, reactor: IReactorCore, threshold: LogLevel | None
) -> ServerProcess:
    """
    The supervisor of C{--workers}: it binds the listeners and runs C{count}
    workers, each C{twist ... tcpecho} with these very arguments and
    C{--worker-of}.
    """
    parent = getattr(options, "parent", None)
    tagTwistLog(parent, 0, "supervisor")
    failures: list[ServerProcess] = []
    supervisor = supervisorService(
        options.settings,
        reactor,
        workerCommand(parent, options.arguments, count),
        lambda message: failures[0].stopWithFailure(message),
        environ=os.environ,
        threshold=threshold,
    )
    failures.append(ServerProcess(supervisor, reactor))
    return failures[0]


def _worker(
    options: Options,
    workerOf: tuple[int, int, int],
    reactor: IReactorCore,
    threshold: LogLevel | None,
) -> ServerProcess:
    """
    One worker of a supervisor: the server on the listening sockets it
    inherited, numbering its connections by the stride of its place, and
    under the supervisor's control through its standard input.
    """
    index, count, generation = workerOf
    leaveTheSupervisorsGroup()
    ignoreRotationUntilReady()
    numberConnections(*connectionNumbering(index, count, generation))
    tagTwistLog(getattr(options, "parent", None), index, f"worker {index}")
    listeners = (options.settings.port is not None) + len(options.settings.listen)
    inherited = range(FIRST_INHERITED, FIRST_INHERITED + listeners)
    server, control = workerService(
        options.settings,
        reactor,
        inherited,
        threshold=threshold,
        eventFields={"worker": index, "pid": os.getpid()},
    )
    return ServerProcess(server, reactor, prepare=lambda: adoptControl(reactor, control))
