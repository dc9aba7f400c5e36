"""
A tcplife server as one service: listeners, metrics, and a graceful drain.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Protocol, cast

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IProtocolFactory,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger, LogLevel

from ..eventlog import EventFile
from ..events import LifecycleLog
from ..internet import (
    HoldingPorts,
    InheritedPorts,
    PortReactor,
    ReusePortEndpoint,
    inheritedServerFromString,
    serverFromString,
)
from ._control import WorkerControl
from ._drain import Drainer, drainOnHangup
from ._factory import LifecycleServerFactory
from ._levers import LEVERS, LEVERS_OFF_VARIABLE, portsWithout, rendersEvents
from ._listening import Listener, ListenError, listeningSocket
from ._metrics import ServerCollector, metricsSite
from ._settings import ServerSettings
from ._workermetrics import WorkersCollector
from ._workers import DRAIN_MARGIN, Worker, WorkerPool

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")


class Drains(Protocol):
    """
    What drains a server once its listeners have stopped: a L{Drainer}, or a
    supervisor's workers.
    """

    def trapSecondSignal(self) -> None:
        """
        From now on, a second SIGINT or SIGTERM ends the drain at once.
        """

    def drain(self) -> Deferred[None]:
        """
        Drain; fire once nothing is left to wait for.
        """


class ServerService(Service):
    """
    Starts metrics (if any), then the listeners; on stop, closes the
    listeners (C{stop-listening}), drains the open connections, and only then
    stops serving metrics, so a scrape can watch the drain, and closes the
    event file, whose last line is then the drain's C{drained}.

    @ivar factory: What the listeners serve; C{None} for a supervisor's,
        whose workers serve.
    @ivar drainOnHangup: Once listening, and once this reactor runs, SIGHUP
        stops it as SIGTERM does (see L{tcplife.server.drainOnHangup}).
    @ivar eventFile: The events' file (C{--events}), if any: reopened on
        C{SIGUSR1} while serving, closed last.
    """

    def __init__(
        self,
        factory: LifecycleServerFactory | None,
        listeners: Sequence[Listener],
        drainer: Drains | None = None,
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
        # A supervisor has no factory: its reactor is the one it drains on.
        clock = self.factory.clock if self.factory is not None else self.drainOnHangup
        callFromThread = getattr(clock, "callFromThread", None)
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
        if self.factory is not None:
            self.factory.gate.stop()
        if self.drainer is not None:
            yield self.drainer.drain()
        if self.metrics is not None:
            yield maybeDeferred(self.metrics.stopService)
        if self.eventFile is not None:
            self.eventFile.close()


def serverService(
    settings: ServerSettings,
    reactor: IReactorCore,
    *,
    threshold: LogLevel | None = None,
    inherited: Sequence[int] | None = None,
    eventFields: Mapping[str, object] | None = None,
) -> ServerService:
    """
    The whole server C{settings} describe, as one service: its factory
    (C{settings.factory}, or tcplife's), a listener for C{port} and one for
    each C{listen} endpoint, all on tcplife's ports and serving that one
    factory; metrics, if asked; and a graceful drain on SIGTERM, SIGINT and
    SIGHUP.  What C{twist tcpecho} runs.

    @param threshold: The lowest level any log observer keeps, if known
        (C{twist --log-level}): events below it are not built.
    @param inherited: For a worker of a supervisor (L{supervisorService}):
        the listening sockets it inherited, one per listener in order
        (C{port} first), which the listeners adopt instead of making their
        own.
    @param eventFields: For a worker: its C{worker} and C{pid}, on every
        line of C{settings.events}, which other processes write too.
    @raise EndpointError: if an endpoint description cannot serve.
    """
    eventFile = _eventFile(settings, reactor, eventFields)
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
    if inherited is None:
        listeners = _listeners(settings, lambda _: ports, factory, factory.events, reactor)
    else:
        sockets = list(inherited)
        if len(sockets) != _listenerCount(settings):
            raise ValueError(
                f"{len(sockets)} inherited sockets for {_listenerCount(settings)} listeners"
            )

        def inheriting(number: int) -> PortReactor:
            return InheritedPorts(
                reactor,
                sockets[number],
                transport=ports.transport,
                acceptWithoutEnums=ports.acceptWithoutEnums,
            )

        listeners = _listeners(settings, inheriting, factory, factory.events, reactor)
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


def _eventFile(
    settings: ServerSettings, reactor: IReactorCore, fields: Mapping[str, object] | None
) -> EventFile | None:
    """
    The file C{--events} names, if any; with C{fields}, one that the
    supervisor and every worker write, each line saying whose it is.
    """
    if settings.events is None:
        return None
    return EventFile(
        settings.events, cast(IReactorTime, reactor), fields=fields, shared=fields is not None
    )


def _listenerCount(settings: ServerSettings) -> int:
    return (settings.port is not None) + len(settings.listen)


def _listeners(
    settings: ServerSettings,
    portsFor: Callable[[int], PortReactor],
    factory: IProtocolFactory,
    events: LifecycleLog,
    reactor: IReactorCore,
) -> list[Listener]:
    """
    A listener for C{settings.port} (if any), then one for each of
    C{settings.listen}, the one numbered I{n} listening through
    C{portsFor(n)}.
    """
    listeners = []
    if settings.port is not None:
        listeners.append(_portListener(settings, portsFor(0), factory, events, reactor))
    first = len(listeners)
    for number, description in enumerate(settings.listen, first):
        ports = portsFor(number)
        if isinstance(ports, InheritedPorts):
            endpoint = inheritedServerFromString(ports, description)
        else:
            endpoint = serverFromString(ports, description)
        listeners.append(Listener(endpoint, factory, description, events, reactor))
    return listeners


def _portListener(
    settings: ServerSettings,
    ports: Any,
    factory: IProtocolFactory,
    events: LifecycleLog,
    reactor: IReactorCore,
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
    return Listener(endpoint, factory, where, events, reactor, backlog)


class Supervisor(ServerService):
    """
    A supervisor's service (C{twist tcpecho --workers N}): it binds every
    listener once (and never accepts on them), serves the merged metrics,
    and runs the workers, which serve its listening sockets; on stop, it
    closes its own copies of the sockets and drains every worker.

    @ivar workers: The worker processes.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        holding: Sequence[HoldingPorts],
        workers: WorkerPool,
        metrics: Listener | None,
        reactor: IReactorCore,
        eventFile: EventFile | None = None,
    ) -> None:
        super().__init__(
            None, listeners, workers, metrics, drainOnHangup=reactor, eventFile=eventFile
        )
        self.workers = workers
        self._holding = list(holding)
        self._reactor = reactor

    def startService(self) -> None:
        if self.eventFile is not None:
            # logrotate signals the supervisor: every worker reopens the
            # file too (the supervisor's own reopen, set up next, calls this).
            self.workers.forwardSignal(signal.SIGUSR1)
        super().startService()
        sockets = []
        for listener, holding in zip(self.listeners, self._holding, strict=True):
            if len(holding.ports) != 1:
                for started in self.listeners:
                    started.abandon()
                raise ListenError(
                    f"cannot share {listener.description} with the workers: it makes "
                    f"{len(holding.ports)} listening sockets, not one"
                )
            handle = listeningSocket(holding.ports[0])
            assert handle is not None
            sockets.append(handle.fileno())
        self._reactor.callWhenRunning(self.workers.start, sockets)


def supervisorService(
    settings: ServerSettings,
    reactor: IReactorCore,
    command: Callable[[Worker], Sequence[str]],
    giveUp: Callable[[str], object],
    *,
    environ: Mapping[str, str],
    threshold: LogLevel | None = None,
) -> Supervisor:
    """
    A supervisor of C{settings.workers} worker processes (C{twist tcpecho
    --workers N}): it binds each listener C{settings} describe, once, and
    starts each worker with C{command(worker)}, handing it the listening
    sockets as its descriptors 3, 4, ... (in the order of
    L{serverService}'s listeners) and a control channel as its standard
    input.  Workers that die are restarted; after
    C{settings.workerRestartLimit} deaths in C{settings.workerRestartWindow}
    seconds, C{giveUp} hears why, in one line.  With C{settings.metrics},
    one C{/metrics} serves every worker's, merged.

    @raise EndpointError: if an endpoint description cannot serve.
    """
    assert settings.workers is not None
    eventFile = _eventFile(settings, reactor, {"worker": 0, "pid": os.getpid()})
    events = LifecycleLog(
        threshold=threshold,
        rendered=rendersEvents(settings.leversOff),
        sink=eventFile,
        phases=settings.eventsOnly,
    )
    holding: list[HoldingPorts] = []

    def holdingPorts(_: int) -> PortReactor:
        holding.append(HoldingPorts(reactor))
        return holding[-1]

    # The listeners' factory serves nothing here: the workers accept.
    nobody = protocol.ServerFactory.forProtocol(protocol.Protocol)
    nobody.noisy = False
    listeners = _listeners(settings, holdingPorts, nobody, events, reactor)
    collector = None
    metrics = None
    pool = WorkerPool(
        settings.workers,
        reactor,
        command,
        giveUp,
        environ=environ,
        restartLimit=settings.workerRestartLimit,
        restartWindow=settings.workerRestartWindow,
        drainBudget=settings.shutdownTimeout + settings.closeTimeout + DRAIN_MARGIN,
    )
    if settings.metrics is not None:
        collector = WorkersCollector(
            lambda: [port for ports in holding for port in ports.ports],
            lambda: pool.workers,
            cast(IReactorTime, reactor),
        )
        pool.metrics = collector
        registry = CollectorRegistry(auto_describe=True)
        registry.register(collector)
        metrics = Listener(
            serverFromString(reactor, settings.metrics),
            metricsSite(registry, lambda: collector.refresh(pool.running())),
            f"metrics {settings.metrics}",
            None,
            reactor,
        )
    return Supervisor(listeners, holding, pool, metrics, reactor, eventFile)


def workerService(
    settings: ServerSettings,
    reactor: IReactorCore,
    inherited: Sequence[int],
    *,
    threshold: LogLevel | None = None,
    eventFields: Mapping[str, object] | None = None,
) -> tuple[ServerService, WorkerControl]:
    """
    A worker's server (see L{supervisorService}): L{serverService} on the
    listening sockets C{inherited}, its metrics kept for the supervisor to
    ask for rather than served; and the control channel's protocol, through
    which the supervisor drains it and asks for its metrics and how many
    connections it holds.  C{eventFields} (its C{worker} and C{pid}) go on
    every line of the events file, which the others write too.
    """
    server = serverService(
        settings.evolve(metrics=None),
        reactor,
        threshold=threshold,
        inherited=inherited,
        eventFields=eventFields,
    )
    factory = server.factory
    assert factory is not None and isinstance(server.drainer, Drainer)
    scrape = None
    if settings.metrics is not None:
        registry = CollectorRegistry(auto_describe=True)
        # No ports: the supervisor reads the shared sockets' queues itself.
        registry.register(ServerCollector(factory, list, server.eventFile))
        scrape = lambda: generate_latest(registry)  # noqa: E731
    control = WorkerControl(
        reactor,
        status=lambda: (len(factory.connections), factory.accepted),
        endNow=server.drainer.endNow,
        scrape=scrape,
    )
    return server, control
