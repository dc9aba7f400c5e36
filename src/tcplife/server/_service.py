"""
A tcplife server as one service: listeners, metrics, and a graceful drain.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from ._drain import Drainer, drainOnHangup
from ._factory import LifecycleServerFactory
from ._listening import Listener

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")


class ServerService(Service):
    """
    Starts metrics (if any), then the listeners; on stop, closes the
    listeners (C{stop-listening}), drains the open connections, and only then
    stops serving metrics, so a scrape can watch the drain.

    @ivar drainOnHangup: Once listening, and once this reactor runs, SIGHUP
        stops it as SIGTERM does (see L{tcplife.server.drainOnHangup}).
    """

    def __init__(
        self,
        factory: LifecycleServerFactory,
        listeners: Sequence[Listener],
        drainer: Drainer | None = None,
        metrics: Listener | None = None,
        drainOnHangup: IReactorCore | None = None,
    ) -> None:
        self.factory = factory
        self.listeners = list(listeners)
        self.drainer = drainer
        self.metrics = metrics
        self.drainOnHangup = drainOnHangup

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
