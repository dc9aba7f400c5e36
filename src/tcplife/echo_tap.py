"""
C{twist tcpecho}: the RFC 862 echo server, every lifecycle step logged.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.python import usage
from twisted.python.reflect import namedAny

from ._endpoints import serverFromString
from ._events import LifecycleLog
from ._listening import Listener
from ._port import PortReactor
from ._server import LifecycleServerFactory

DEFAULT_PORT = 9000
DEFAULT_BACKLOG = 128


def _wholeNumber(option: str, text: str, lowest: int, highest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lowest <= value <= highest:
        raise usage.UsageError(
            f"{option} must be a whole number from {lowest} to {highest}, not {text!r}."
        )
    return value


def _loadClass(option: str, name: str, base: type) -> Any:
    try:
        found = namedAny(name)
    except (ImportError, AttributeError, ValueError) as e:
        raise usage.UsageError(f"{option} {name!r} cannot be imported: {e}.") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise usage.UsageError(
            f"{option} {name!r} is not a subclass of {base.__module__}.{base.__name__}."
        )
    return found


def _reactor() -> IReactorCore:
    from twisted.internet import reactor

    return cast(IReactorCore, reactor)


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
            str(DEFAULT_BACKLOG),
            "Length of the kernel's queue of connections not yet accepted (listen()'s backlog).",
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
    ]
    compData = usage.Completions(optActions={"interface": usage.CompleteNetInterfaces()})

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["port"] = None
        self["listen"] = []

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

    def postOptions(self) -> None:
        self["backlog"] = _wholeNumber("--backlog", self["backlog"], 1, 65535)
        if self["port"] is not None:
            self["port"] = _wholeNumber("--port", self["port"], 0, 65535)
        elif not self["listen"]:
            self["port"] = DEFAULT_PORT
        for description in self["listen"]:
            _parseEndpoint(_reactor(), description)
        if self["protocol"] is not None and self["factory"] is not None:
            raise usage.UsageError("Give --protocol or --factory, not both.")
        if self["protocol"] is not None:
            self["protocol"] = _loadClass("--protocol", self["protocol"], Protocol)
        if self["factory"] is not None:
            self["factory"] = _loadClass("--factory", self["factory"], LifecycleServerFactory)


def _parseEndpoint(reactor: object, description: str) -> IStreamServerEndpoint:
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
        return endpoint
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        detail = str(e) or type(e).__name__
        if isinstance(e, IndexError) and description.startswith("systemd:"):
            detail = "no such inherited socket (is the process socket-activated?)"
        raise usage.UsageError(f"--listen {description!r} is not usable: {detail}.") from None


def makeFactory(options: Options, reactor: IReactorCore) -> LifecycleServerFactory:
    """
    The factory the options ask for, with its settings applied.
    """
    events = LifecycleLog(trace=bool(options["trace"]))
    factoryClass = options["factory"] or LifecycleServerFactory
    factory: LifecycleServerFactory = factoryClass(clock=cast(IReactorTime, reactor), events=events)
    if options["protocol"] is not None:
        factory.protocol = options["protocol"]
    return factory


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    One listener per endpoint (and one for --port), all serving one factory.
    """
    if reactor is None:
        reactor = _reactor()
    factory = makeFactory(options, reactor)
    # Endpoints listen through this adapter, so every port is a tcplife port.
    ports = PortReactor(reactor)
    service = MultiService()
    if options["port"] is not None:
        backlog = options["backlog"]
        interface = options["interface"]
        # TCP4ServerEndpoint.listen is reactor.listenTCP(port, factory,
        # backlog=, interface=); listenTCP picks IPv6 for an IPv6 interface.
        endpoint: IStreamServerEndpoint = TCP4ServerEndpoint(
            ports, options["port"], backlog, interface
        )
        host = interface or "0.0.0.0"
        where = f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"
        service.addService(Listener(endpoint, factory, where, factory.events, reactor, backlog))
    for description in options["listen"]:
        endpoint = _parseEndpoint(ports, description)
        service.addService(Listener(endpoint, factory, description, factory.events, reactor))
    return service
