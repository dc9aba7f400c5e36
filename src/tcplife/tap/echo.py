"""
C{twist tcpecho}: the RFC 862 echo server, every lifecycle step logged.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any, cast

from prometheus_client.registry import CollectorRegistry
from twisted.application.service import IService
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python import usage

from ..events import LifecycleLog
from ..internet import PortReactor, ReusePortEndpoint
from ..server import (
    Drainer,
    FaultPlan,
    FaultSpecError,
    LifecycleServerFactory,
    Listener,
    ServerCollector,
    ServerService,
    metricsSite,
    parseFaultSpec,
)
from ._options import globalReactor, loadClass, seconds, serverEndpoint, twistLogLevel, wholeNumber
from ._process import ServerProcess

DEFAULT_PORT = 9000
DEFAULT_BACKLOG = 128
_LARGEST_SEED = (1 << 63) - 1

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")


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
            "interface",
            None,
            "",
            "Local address for --port to bind (default: every IPv4 interface).",
        ],
        [
            "backlog",
            None,
            None,
            "Length of the kernel's queue of connections not yet accepted (listen()'s "
            f"backlog) for --port (default: {DEFAULT_BACKLOG}).",
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
            "5",
            "Abort a connection whose graceful close has not finished in this many seconds.",
        ],
        [
            "shutdown-timeout",
            None,
            "10",
            "On SIGTERM, SIGINT or SIGHUP, wait this many seconds for open connections to finish.",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint (e.g. tcp:9100).",
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
    ]
    compData = usage.Completions(optActions={"interface": usage.CompleteNetInterfaces()})

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["port"] = None
        self["listen"] = []
        self["fault"] = []

    def opt_port(self, port: str) -> None:
        """
        TCP port to listen on (default 9000, none with --listen; 0: any free).
        """
        self["port"] = port

    opt_p = opt_port

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
            self["port"] = DEFAULT_PORT
        if self["port"] is None:
            self._refuseWithoutPort()
        if self["backlog"] is None:
            self["backlog"] = DEFAULT_BACKLOG
        else:
            self["backlog"] = wholeNumber("--backlog", self["backlog"], 1, 65535)
        for description in self["listen"]:
            _parseEndpoint(globalReactor(), description)
        if self["max-connections"] is not None:
            self["max-connections"] = wholeNumber(
                "--max-connections", self["max-connections"], 1, 10_000_000
            )
        if self["idle-timeout"] is not None:
            self["idle-timeout"] = seconds("--idle-timeout", self["idle-timeout"])
        self["close-timeout"] = seconds("--close-timeout", self["close-timeout"])
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

    def _checkFaults(self) -> None:
        specs = []
        for spec in self["fault"]:
            try:
                specs.append(parseFaultSpec(spec))
            except FaultSpecError as e:
                raise usage.UsageError(f"--fault {spec!r} is not usable: {e}.") from None
        self["faults"] = specs
        if self["seed"] is not None:
            if not specs:
                raise usage.UsageError("--seed applies to --fault; give --fault too.")
            self["seed"] = wholeNumber("--seed", self["seed"], 0, _LARGEST_SEED)
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


def _parseEndpoint(
    reactor: object, description: str, option: str = "--listen"
) -> IStreamServerEndpoint:
    return serverEndpoint(option, reactor, description)


def makeFactory(options: Options, reactor: IReactorCore) -> LifecycleServerFactory:
    """
    The factory the options ask for, with its settings applied.
    """
    events = LifecycleLog(trace=bool(options["trace"]), threshold=twistLogLevel(options))
    factoryClass = options["factory"] or LifecycleServerFactory
    # Only when asked: a user's factory subclass need not take them.
    misbehaviour: dict[str, Any] = {}
    if options["faults"]:
        misbehaviour["faults"] = faultPlan(options)
    if options["reflect"]:
        misbehaviour["reflectAs"] = options["name"] or f"{socket.gethostname()}:{os.getpid()}"
    factory: LifecycleServerFactory = factoryClass(
        clock=cast(IReactorTime, reactor),
        events=events,
        maxConnections=options["max-connections"],
        idleTimeout=options["idle-timeout"],
        closeTimeout=options["close-timeout"],
        **misbehaviour,
    )
    if options["protocol"] is not None:
        factory.protocol = options["protocol"]
    return factory


def faultPlan(options: Options) -> FaultPlan:
    """
    The plan of the options' faults, from their seed (or a random one,
    logged, so that a run can be drawn again).
    """
    seed = options["seed"]
    if seed is None:
        seed = secrets.randbelow(_LARGEST_SEED)
    plan = FaultPlan(options["faults"], seed)
    _log.info(
        "faults on purpose: {faults}; seed {seed} (--seed {seed} draws the same again)",
        faults=plan.describe(),
        seed=seed,
    )
    return plan


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    One listener per endpoint (and one for --port), all serving one factory;
    metrics if asked; a graceful drain on SIGTERM, SIGINT and SIGHUP.
    """
    if reactor is None:
        reactor = globalReactor()
    factory = makeFactory(options, reactor)
    # Endpoints listen through this adapter, so every port is a tcplife port
    # under the factory's admission control.
    ports = PortReactor(reactor, factory.gate)
    listeners = []
    if options["port"] is not None:
        backlog = options["backlog"]
        interface = options["interface"]
        # TCP4ServerEndpoint.listen is reactor.listenTCP(port, factory,
        # backlog=, interface=); listenTCP picks IPv6 for an IPv6 interface.
        endpoint: IStreamServerEndpoint
        if options["reuse-port"]:
            endpoint = ReusePortEndpoint(ports, options["port"], backlog, interface)
        else:
            endpoint = TCP4ServerEndpoint(ports, options["port"], backlog, interface)
        host = interface or "0.0.0.0"
        where = f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"
        listeners.append(Listener(endpoint, factory, where, factory.events, reactor, backlog))
    for description in options["listen"]:
        endpoint = _parseEndpoint(ports, description)
        listeners.append(Listener(endpoint, factory, description, factory.events, reactor))
    metrics = None
    if options["metrics"] is not None:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(ServerCollector(factory, lambda: ports.ports))
        metrics = Listener(
            _parseEndpoint(reactor, options["metrics"], option="--metrics"),
            metricsSite(registry),
            f"metrics {options['metrics']}",
            None,
            reactor,
        )
    drainer = Drainer(
        factory,
        cast(IReactorTime, reactor),
        timeout=options["shutdown-timeout"],
        grace=options["close-timeout"],
        handleSignals=True,
        callFromThread=getattr(reactor, "callFromThread", None),
    )
    process = ServerProcess(
        ServerService(factory, listeners, drainer, metrics, drainOnHangup=reactor), reactor
    )
    for listener in [*listeners, *([metrics] if metrics is not None else [])]:
        listener.failedLater = process.listenFailedLater
    return process
