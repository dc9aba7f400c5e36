"""
The event file's place in a process's services: open while the server (or
client) runs, closed once it has stopped.
"""

from __future__ import annotations

import signal

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorCore

from ._file import EventFile


class ClosingAfter(Service):
    """
    Runs C{service}, with C{SIGUSR1} reopening C{events}; on stop, stops
    C{service} first and closes C{events} once that has finished, so that a
    drain's last event (C{drained}) is the file's last line.
    """

    def __init__(self, service: IService, events: EventFile, reactor: IReactorCore) -> None:
        self.service = service
        self.events = events
        self._reactor = reactor

    def startService(self) -> None:
        Service.startService(self)
        callFromThread = getattr(self._reactor, "callFromThread", None)
        if callFromThread is not None:
            self.events.reopenOnSignal(callFromThread, signal.SIGUSR1)
        self.service.startService()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        stopping: Deferred[None] = maybeDeferred(self.service.stopService)

        def close(result: object) -> object:
            self.events.close()
            return result

        return stopping.addBoth(close)
