"""
A tcplife server as one service: listeners, metrics, and a graceful drain.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, cast

from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger, LogLevel

from ..eventlog import EventFile
from ..events import LifecycleLog
from ..internet import ReusePortEndpoint, serverFromString
from ._drain import Drainer, drainOnHangup
from ._factory import LifecycleServerFactory
from ._levers import LEVERS, LEVERS_OFF_VARIABLE, portsWithout, rendersEvents
from ._listening import Listener
from ._metrics import ServerCollector, metricsSite
from ._settings import ServerSettings

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")


class ServerService(Service):
    """
    Starts metrics (if any), then the listeners; on stop, closes the
    listeners (C{stop-listening}), drains the open connections, and only then
    stops serving metrics, so a scrape can watch the drain, and closes the
    event file, whose last line is then the drain's C{drained}.

    @ivar drainOnHangup: Once listening, and once this reactor runs, SIGHUP
        stops it as SIGTERM does (see L{tcplife.server.drainOnHangup}).
    @ivar eventFile: The events' file (C{--events}), if any: reopened on
        C{SIGUSR1} while serving, closed last.
    """

    def __init__(
        self,
        factory: LifecycleServerFactory,
        listeners: Sequence[Listener],
        drainer: Drainer | None = None,
        metrics: Listener | None = None,
        drainOnHangup: IReactorCore | None = None,
        eventFile: EventFile | None = None,
    ) -> None:
        self.factory = factory
        self.listeners = list(listeners)
        self.drainer = drainer
        self.metrics = metrics
        self.drainOnHangup = drainOnHangup
        self.eventFile = eventFile

    def startService(self) -> None:
        Service.startService(self)
        started: list[Listener] = []
        try:
            if self.metrics is not None:
                self.metrics.startService()
                started.append(self.metrics)
            for listener in self.listeners:
                listener.startService()
                started.append(listener)
        except BaseException:
            for listener in started:
                listener.abandon()
            raise
        if self.drainOnHangup is not None:
            drainOnHangup(self.drainOnHangup)
        callFromThread = getattr(self.factory.clock, "callFromThread", None)
        if self.eventFile is not None and callFromThread is not None:
            self.eventFile.reopenOnSignal(callFromThread)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self._stop()

    @inlineCallbacks
    def _stop(self) -> Generator[Deferred[Any], Any, None]:
        if self.drainer is not None:
            self.drainer.trapSecondSignal()
        yield DeferredList(
            [maybeDeferred(listener.stopService) for listener in self.listeners],
            consumeErrors=True,
        )
        self.factory.gate.stop()
        if self.drainer is not None:
            yield self.drainer.drain()
        if self.metrics is not None:
            yield maybeDeferred(self.metrics.stopService)
        if self.eventFile is not None:
            self.eventFile.close()


def serverService(
    settings: ServerSettings, reactor: IReactorCore, *, threshold: LogLevel | None = None
) -> ServerService:
    """
    The whole server C{settings} describe, as one service: its factory
    (C{settings.factory}, or tcplife's), a listener for C{port} and one for
    each C{listen} endpoint, all on tcplife's ports and serving that one
    factory; metrics, if asked; and a graceful drain on SIGTERM, SIGINT and
    SIGHUP.  What C{twist tcpecho} runs.

    @param threshold: The lowest level any log observer keeps, if known
        (C{twist --log-level}): events below it are not built.
    @raise EndpointError: if an endpoint description cannot serve.
    """
    eventFile = (
        EventFile(settings.events, cast(IReactorTime, reactor))
        if settings.events is not None
        else None
    )
    events = LifecycleLog(
        trace=settings.trace,
        threshold=threshold,
        rendered=rendersEvents(settings.leversOff),
        sink=eventFile,
        phases=settings.eventsOnly,
    )
    factoryClass = settings.factory or LifecycleServerFactory
    factory = factoryClass(settings=settings, clock=cast(IReactorTime, reactor), events=events)
    if settings.leversOff:
        _log.warn(
            "speed levers off ({variable}): {levers_off}; this server runs slower than "
            "tcplife ships, to measure what they buy",
            variable=LEVERS_OFF_VARIABLE,
            levers_off=sorted(settings.leversOff),
            twisted_way={lever: LEVERS[lever] for lever in sorted(settings.leversOff)},
        )
    # Every endpoint listens through this adapter: tcplife's ports, each
    # under the factory's admission gate.
    ports = portsWithout(reactor, settings.leversOff)
    listeners = []
    if settings.port is not None:
        listeners.append(_portListener(settings, ports, factory, reactor))
    for description in settings.listen:
        endpoint = serverFromString(ports, description)
        listeners.append(Listener(endpoint, factory, description, factory.events, reactor))
    metrics = None
    if settings.metrics is not None:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(ServerCollector(factory, lambda: ports.ports, eventFile))
        metrics = Listener(
            serverFromString(reactor, settings.metrics),
            metricsSite(registry),
            f"metrics {settings.metrics}",
            None,
            reactor,
        )
    drainer = Drainer(
        factory,
        cast(IReactorTime, reactor),
        handleSignals=True,
        callFromThread=getattr(reactor, "callFromThread", None),
    )
    return ServerService(
        factory, listeners, drainer, metrics, drainOnHangup=reactor, eventFile=eventFile
    )


def _portListener(
    settings: ServerSettings, ports: Any, factory: LifecycleServerFactory, reactor: IReactorCore
) -> Listener:
    assert settings.port is not None
    backlog, interface = settings.backlog, settings.interface
    # TCP4ServerEndpoint.listen is reactor.listenTCP(port, factory,
    # backlog=, interface=); listenTCP picks IPv6 for an IPv6 interface.
    endpoint: IStreamServerEndpoint
    if settings.reusePort:
        endpoint = ReusePortEndpoint(ports, settings.port, backlog, interface)
    else:
        endpoint = TCP4ServerEndpoint(ports, settings.port, backlog, interface)
    host = interface or "0.0.0.0"
    where = f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"
    return Listener(endpoint, factory, where, factory.events, reactor, backlog)
