"""
What a supervisor and its workers say to each other (C{twist tcpecho
--workers}), in AMP over a socket pair: the worker's standard input.

The supervisor asks a worker to drain (its own SIGTERM, SIGINT or SIGHUP,
passed on), to end its drain at once (a second signal), for its metrics and
for how many connections it holds.  Signals are passed on as messages, not
as signals: a worker's own signal, drained on as by a single server, means
that worker alone (each worker is a process group of its own, out of reach
of a terminal's Ctrl-C), and a second signal would abort the drain the
first one began.  A worker whose supervisor is gone (its end of
the pair closes) drains too, rather than serve on unsupervised.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

_log = Logger(namespace="tcplife")

#: The most one AMP value holds.
_CHUNK = amp.MAX_VALUE_LENGTH


class Chunked(amp.Argument):
    """
    Bytes of any length, over as many AMP values as they need
    (C{name.0}, C{name.1}, ...): one value holds at most 64 KiB.
    """

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        value: bytes = objects.pop(amp._wireNameToPythonIdentifier(name))
        chunks = [value[i : i + _CHUNK] for i in range(0, len(value), _CHUNK)] or [b""]
        strings[name] = b"%d" % len(chunks)
        for number, chunk in enumerate(chunks):
            strings[b"%s.%d" % (name, number)] = chunk

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        count = int(strings.pop(name))
        chunks = [strings.pop(b"%s.%d" % (name, number)) for number in range(count)]
        objects[amp._wireNameToPythonIdentifier(name)] = b"".join(chunks)


class Drain(amp.Command):
    """
    Stop listening and drain, as the single server does on C{signal}.
    """

    arguments = [(b"signal", amp.Unicode())]
    requiresAnswer = False


class EndNow(amp.Command):
    """
    Abort every connection of the drain now (a second signal came).
    """

    arguments = [(b"reason", amp.Unicode())]
    requiresAnswer = False


class Scrape(amp.Command):
    """
    The worker's metrics, in Prometheus' text format.
    """

    response = [(b"exposition", Chunked())]  # type: ignore[no-untyped-call]


class Status(amp.Command):
    """
    How many connections the worker holds now, and has accepted in all.
    """

    response = [(b"open", amp.Integer()), (b"accepted", amp.Integer())]


class _QuietAMP(amp.AMP):
    """
    AMP without its log line as the connection is made and as it is lost:
    the supervisor's workers each have one, and their start and end are
    logged already.
    """

    def makeConnection(self, transport: Any) -> None:
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None


class WorkerControl(_QuietAMP):
    """
    A worker's end: it answers its supervisor.

    @ivar scrape: Gives the worker's metrics, if it has any to give.
    @ivar status: Gives C{(open, accepted)}.
    @ivar endNow: Ends a drain at once, with a reason (the drainer's
        C{endNow}).
    """

    def __init__(
        self,
        reactor: IReactorCore,
        status: Callable[[], tuple[int, int]],
        endNow: Callable[[str], object],
        scrape: Callable[[], bytes] | None = None,
    ) -> None:
        amp.AMP.__init__(self)
        self._reactor = reactor
        self.status = status
        self.endNow = endNow
        self.scrape = scrape
        self.stopping = False
        reactor.addSystemEventTrigger("before", "shutdown", self._stopping)

    def _stopping(self) -> None:
        self.stopping = True

    def _drain(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        with suppress(ReactorNotRunning):
            self._reactor.stop()

    @Drain.responder
    def drain(self, signal: str) -> dict[str, Any]:
        if not self.stopping:
            _log.info("the supervisor passes {signal} on: shutting down", signal=signal)
        self._drain(signal)
        return {}

    @EndNow.responder
    def endDrainNow(self, reason: str) -> dict[str, Any]:
        self.endNow(reason)
        return {}

    @Scrape.responder
    def metrics(self) -> dict[str, Any]:
        return {"exposition": self.scrape() if self.scrape is not None else b""}

    @Status.responder
    def howMany(self) -> dict[str, Any]:
        open_, accepted = self.status()
        return {"open": open_, "accepted": accepted}

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        _QuietAMP.connectionLost(self, reason)
        if not self.stopping:
            _log.warn("the supervisor is gone: shutting down")
            self._drain("supervisor gone")


class SupervisorControl(_QuietAMP):
    """
    The supervisor's end of one worker's channel.

    @ivar connected: Whether the worker is still at the other end.
    """

    def __init__(self) -> None:
        amp.AMP.__init__(self)
        self.connected = False

    def connectionMade(self) -> None:
        _QuietAMP.connectionMade(self)  # type: ignore[no-untyped-call]
        self.connected = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        _QuietAMP.connectionLost(self, reason)

    def tell(self, command: type[amp.Command], **arguments: Any) -> None:
        """
        Send C{command} if the worker can still hear it; no answer awaited.
        """
        if self.connected:
            self.callRemote(command, **arguments)  # type: ignore[no-untyped-call]
