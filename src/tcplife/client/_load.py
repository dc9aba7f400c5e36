"""
The load generator: many connections, every echoed byte verified, round
trips timed into HDR histograms.

Without a rate the loop is closed: each connection sends its next message
as soon as it may, and a round trip runs from the actual send.  With a rate
the loop is open: messages follow a timetable (message M of the run is due
at M / rate seconds), a round trip runs from the time its message was due,
and a server that stalls shows in the latencies even though the client
could only send later (coordinated omission, corrected as wrk2 does).

The per-message path (the connections' protocols, in
L{tcplife.client._connections}, and L{LoadRun.take}) is kept flat: no
logging, no string formatting, no allocation beyond what a message needs.
Everything else (timeouts, progress, folding round trips into histograms)
runs on timers, over all connections at once.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from ..events import LifecycleLog
from ..protocols import TrackedConnection
from ._connections import (
    VARIANTS,
    Messages,
    Timetable,
    _LoadFactory,
    _LoadProtocol,
    _OneMessage,
    _Pipelined,
    _ReflectingOneMessage,
    _ReflectingPipelined,
    _Target,
)
from ._factory import DEFAULT_TIMEOUT
from ._failures import CANCELLED, TIMEOUT, ConnectFailedError
from ._intervals import IntervalReport, ProgressLine
from ._kernelview import SAMPLE_INTERVAL as KERNEL_SAMPLE_INTERVAL
from ._kernelview import KernelTally
from ._reflect import Reflection, ReflectionError, ReflectionTally
from ._report import LoadReport, TargetReport, countErrors
from ._sinks import TextSink
from ._tally import Tally, newHistogram

RR: Final = "rr"
STREAM: Final = "stream"
CONNECT: Final = "connect"
PATTERNS: Final = (RR, STREAM, CONNECT)

#: A message sent more than this many seconds after its intended time is
#: late.  The reactor's timers wake it up to a millisecond after they are
#: due (epoll waits in whole milliseconds), so later than that, the message
#: waited for a connection, or for the client itself.
LATE_AFTER: Final = 0.001

#: What a run does unless told: messages of this many bytes, this many bytes
#: in flight per connection (C{stream}), for this many seconds (when no
#: C{count} ends it; L{LoadSettings} itself runs until one of them does).
DEFAULT_SIZE = 64
DEFAULT_WINDOW = 1 << 16
DEFAULT_DURATION = 10.0

#: After the end of a run, how long closing connections may take before
#: they are aborted.
_CLOSE_GRACE = 1.0
#: The longest pause before reconnecting after consecutive errors.
_LONGEST_RETRY = 1.0
#: What L{LoadRun.take} returns when no message may be sent now.
_NOT_NOW = -1.0


@attrs.frozen
class LoadSettings:
    """
    What a load run does.

    @ivar target: How the report names what the run connects to (with
        several targets, all of their names).
    @ivar window: Bytes each connection keeps in flight (C{stream}); C{rr}
        and C{connect} keep exactly one message in flight.
    @ivar duration: Seconds to run, unless C{count} ends it first.
    @ivar count: Messages to complete in all, unless C{duration} ends it
        first.
    @ivar rate: Messages per second, over all connections, on a timetable
        (an open loop); C{None}: as fast as the connections go (a closed
        loop).
    @ivar timeout: Seconds allowed to connect, and for each wait for more of
        an echo.
    @ivar reflect: Each connection's reply starts with a C{twist tcpecho
        --reflect} server's line: read it before the echo, and count the
        connections by who answered and whom it saw.
    """

    target: str
    pattern: str = RR
    connections: int = 1
    size: int = DEFAULT_SIZE
    window: int = DEFAULT_WINDOW
    duration: float | None = None
    count: int | None = None
    rate: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    reflect: bool = False

    @property
    def inFlight(self) -> int:
        """
        Bytes each connection keeps in flight.
        """
        return max(self.window, self.size) if self.pattern == STREAM else self.size

    def reportSetup(self) -> dict[str, Any]:
        """
        What a L{LoadReport} of this run says of its set-up, as keywords of
        L{LoadReport.fromTargets}: one run's report and the workers' merged
        one say it alike.
        """
        return {
            "pattern": self.pattern,
            "target": self.target,
            "connections": self.connections,
            "size": self.size,
            "window": self.inFlight if self.pattern == STREAM else None,
            "rate": self.rate,
        }


class LoadRun:
    """
    One load run: keeps C{connections} connections busy until the duration
    or the count is reached, or L{stop} is called.

    @param endpoint: What to connect to, named C{settings.target}; or
        several endpoints by their names, which connections are spread over
        in turn.
    @param progress: Where to show a progress line after every interval
        (a terminal).
    @param interval: Seconds between interval reports.
    @param cpuSeconds: The CPU time this process has used so far.
    @param firstSlot: Where this run's connections start in the turn of the
        targets (a worker's first connection among all workers').
    @ivar intervalObservers: Called with each L{IntervalReport}, at the end
        of every interval, and for the rest of the last one when the run
        stops (add to it before L{start}).
    @ivar finished: Fires with the L{LoadReport} when the run stops.
    @ivar closed: Fires once every connection is gone after the stop.
    @ivar fatal: Set when the run ended because no connection could be made
        at all to one of its targets.
    """

    def __init__(
        self,
        settings: LoadSettings,
        endpoint: IStreamClientEndpoint | Mapping[str, IStreamClientEndpoint],
        clock: IReactorTime,
        *,
        events: LifecycleLog | None = None,
        progress: TextSink | None = None,
        interval: float = 1.0,
        cpuSeconds: Callable[[], float] = time.process_time,
        firstSlot: int = 0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.messages = Messages(settings.size)
        self.openLoop = settings.rate is not None
        if events is None:
            events = LifecycleLog(level=LogLevel.debug)
        self.events = events
        # --reflect: who answered, and whom they saw, over every target.
        self.reflections = ReflectionTally() if settings.reflect else None
        endpoints = dict(endpoint) if isinstance(endpoint, Mapping) else {settings.target: endpoint}
        self.targets = [self._newTarget(name, each) for name, each in endpoints.items()]
        self._firstSlot = firstSlot
        first = firstSlot % len(self.targets)
        self._turns: Iterator[_Target] = itertools.cycle(
            self.targets[first:] + self.targets[:first]
        )
        self.finished: Deferred[LoadReport] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.fatal: ConnectFailedError | None = None
        self.stopping = False
        self.active: set[_LoadProtocol] = set()
        self.kernel = KernelTally()
        self.done = 0
        self.issued = 0
        self.startedAt = self.stoppedAt = 0.0
        self.interval = interval
        self.intervalObservers: list[Callable[[IntervalReport], object]] = []
        self._progress = ProgressLine(progress) if progress is not None else None
        if self._progress is not None:
            self.intervalObservers.append(self._progress.show)
        self._cpuSeconds = cpuSeconds
        self._intervalHistogram = newHistogram()
        self._intervalIndex = 0
        self._intervalStart = 0.0
        self._intervalFrom: tuple[int, dict[str, int], int, float] = (0, {}, 0, 0.0)
        self._variant = 0
        self._connecting: set[Deferred[Protocol]] = set()
        self._retries: set[IDelayedCall] = set()
        self._retryDelay = 0.0
        self._deadline: IDelayedCall | None = None
        self._grace: IDelayedCall | None = None
        self._loops: list[LoopingCall] = []
        self._timetable = Timetable(settings.rate) if settings.rate is not None else None
        self._pacer: IDelayedCall | None = None
        self._parkedSlots: deque[_Target] = deque()
        self._waiting: dict[_LoadProtocol, None] = {}
        self._doneAtSweep = 0
        self._lastCompletion = 0.0
        self.stalled = False
        self._mismatchLogged = False

    def _newTarget(self, name: str, endpoint: IStreamClientEndpoint) -> _Target:
        settings = self.settings
        factory = _LoadFactory(
            self,
            Tally(name, openLoop=self.openLoop),
            timeout=settings.timeout,
            clock=self.clock,
            events=self.events,
        )
        if settings.reflect:
            factory.protocol = (
                _ReflectingOneMessage if settings.pattern == CONNECT else _ReflectingPipelined
            )
        else:
            factory.protocol = _OneMessage if settings.pattern == CONNECT else _Pipelined
        target = factory.target = _Target(name, endpoint, factory)
        return target

    @property
    def errors(self) -> dict[str, int]:
        """
        Errors so far by kind, over every target.
        """
        counts: dict[str, int] = {}
        for target in self.targets:
            for kind, count in target.tally.errors.items():
                counts[kind] = counts.get(kind, 0) + count
        return counts

    @property
    def late(self) -> int:
        """
        Messages sent late so far, over every target.
        """
        return sum(target.tally.late for target in self.targets)

    # -- running ----------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        self.startedAt = self._lastCompletion = self.clock.seconds()
        self._intervalFrom = (0, {}, 0, self._cpuSeconds())
        if self._timetable is not None and settings.pattern == CONNECT:
            # Each message is a connection: the first is due now.
            self._timetable.start = self.startedAt
        for slot in range(self._firstSlot, self._firstSlot + settings.connections):
            self._openSlot(self.targets[slot % len(self.targets)])
        if settings.duration is not None and not self.stopping:
            self._deadline = self.clock.callLater(settings.duration, self.stop)
        sweep = min(1.0, max(settings.timeout / 4, 0.01))
        self._every(sweep, self._sweep)
        if self.intervalObservers:
            self._every(self.interval, self._intervalEnded)
        # Long-lived connections (rr, stream) are seen now and then, not only
        # at their close.
        self._every(KERNEL_SAMPLE_INTERVAL, self._sampleKernel)

    def _every(self, interval: float, f: Any) -> None:
        if self.stopping:
            return
        loop = LoopingCall(f)
        loop.clock = self.clock
        loop.start(interval, now=False)
        self._loops.append(loop)

    def _openSlot(self, target: _Target) -> None:
        """
        Open one connection to C{target} (for C{connect}, one message's
        connection: then to the next target in turn).
        """
        if self.stopping:
            return
        due = _NOT_NOW
        if self.settings.pattern == CONNECT:
            target = next(self._turns)
            due = self.take(None, target, self.clock.seconds())
            if due < 0.0:
                return
        connecting = target.factory.connect(target.endpoint, target.name)
        self._connecting.add(connecting)
        connecting.addBoth(self._connectDone, connecting, target, due)

    def _connectDone(
        self, result: object, connecting: Deferred[Protocol], target: _Target, due: float
    ) -> None:
        self._connecting.discard(connecting)
        if isinstance(result, Failure):
            self._connectFailed(result, target)
            return
        if self.openLoop and isinstance(result, _OneMessage):
            # Its echo cannot have come yet: the round trip is from the time
            # its connection was due.
            result.dueAt = due
        if self.stopping:
            self._checkClosed()

    def _connectFailed(self, failure: Failure, target: _Target) -> None:
        failure.trap(ConnectFailedError)
        error: ConnectFailedError = failure.value  # type: ignore[assignment]
        if error.kind == CANCELLED or self.stopping:
            self._checkClosed()
            return
        if self.settings.pattern == CONNECT:
            self.issued -= 1
        target.tally.errors[error.kind] += 1
        if target.factory.opened == 0:
            # Nothing has ever connected there: the target is wrong or down,
            # and retrying would only count the same error thousands of times.
            self.fatal = error
            self.stop()
            return
        self._retry(target)

    def _retry(self, target: _Target) -> None:
        self._retryDelay = min(max(self._retryDelay * 2, 0.01), _LONGEST_RETRY)

        def reopen() -> None:
            self._retries.discard(call)
            self._openSlot(target)

        call = self.clock.callLater(self._retryDelay, reopen)
        self._retries.add(call)

    def nextVariant(self) -> int:
        self._variant = variant = (self._variant + 1) % VARIANTS
        return variant

    def take(self, waiter: _LoadProtocol | None, target: _Target, now: float) -> float:
        """
        May one more message be sent now to C{target} (by C{waiter}, or for
        C{None}, by a new connection of C{connect})?

        @return: When it was due (in a closed loop, C{now}); or a negative
            number for no, and if the timetable says not yet, C{waiter} (or
            a connection to that target) is resumed once it allows.
        """
        if self.stopping:
            return _NOT_NOW
        count = self.settings.count
        if count is not None and self.issued >= count:
            return _NOT_NOW
        timetable = self._timetable
        if timetable is None:
            self.issued += 1
            return now
        if timetable.start is None:
            timetable.start = now
        due = timetable.start + timetable.index / timetable.rate
        if due > now:
            self._waitFor(waiter, target, due - now)
            return _NOT_NOW
        timetable.index += 1
        self.issued += 1
        if now - due > LATE_AFTER:
            target.tally.late += 1
        return due

    def _waitFor(self, waiter: _LoadProtocol | None, target: _Target, delay: float) -> None:
        if waiter is None:
            self._parkedSlots.append(target)
        else:
            self._waiting[waiter] = None
        if self._pacer is None:
            self._pacer = self.clock.callLater(delay, self._pace)

    def _pace(self) -> None:
        """
        Messages are due: hand them to the connections waiting to send, in
        the order they began to wait.
        """
        self._pacer = None
        timetable = self._timetable
        assert timetable is not None
        now = self.clock.seconds()
        while (self._parkedSlots or self._waiting) and not self.stopping and timetable.due <= now:
            if self._parkedSlots:
                self._openSlot(self._parkedSlots.popleft())
                continue
            waiter = next(iter(self._waiting))
            del self._waiting[waiter]
            if isinstance(waiter, _Pipelined) and waiter in self.active:
                waiter.fill()
        if (self._parkedSlots or self._waiting) and not self.stopping and self._pacer is None:
            self._pacer = self.clock.callLater(max(0.0, timetable.due - now), self._pace)

    def completed(self, tally: Tally, n: int) -> None:
        """
        C{n} more messages came back whole from C{tally}'s target.
        """
        tally.done += n
        self.done += n
        count = self.settings.count
        if count is not None and self.done >= count:
            self.stop()

    def opened(self, protocol: _LoadProtocol) -> None:
        self.active.add(protocol)
        if self.stopping:
            # A connect that completed as the run stopped.
            assert protocol.transport is not None
            protocol.transport.loseConnection()

    def ended(self, protocol: _LoadProtocol, kind: str | None) -> None:
        """
        A connection is gone; C{kind} says what went wrong, if anything.
        """
        self.active.discard(protocol)
        self._waiting.pop(protocol, None)
        if self.stopping:
            self._checkClosed()
            return
        # Its unanswered messages were never done: others may send them.
        self.issued -= protocol.inFlight()
        if protocol.completed:
            self._retryDelay = 0.0
        target = protocol.factory.target
        if kind is None:
            self._openSlot(target)
        else:
            protocol.tally.errors[kind] += 1
            self._retry(target)

    def mismatched(self, protocol: _LoadProtocol, offset: int) -> None:
        if not self._mismatchLogged:
            self._mismatchLogged = True
            transport = protocol.transport
            connId = transport.connId if isinstance(transport, TrackedConnection) else None
            self.events.logger.warn(
                "echo differs from what was sent on #{conn_id}, "
                "in the read from offset {offset} (further mismatches are only counted)",
                conn_id=connId,
                offset=offset,
            )

    def reflected(self, protocol: _LoadProtocol, reflection: Reflection) -> None:
        """
        The server's reflection line came on C{protocol}'s connection.
        """
        transport = protocol.transport
        own = transport.local if isinstance(transport, TrackedConnection) else ""
        assert self.reflections is not None
        self.reflections.add(reflection, own)

    def notReflected(self, protocol: _LoadProtocol, error: ReflectionError) -> None:
        if not self._mismatchLogged:
            self._mismatchLogged = True
            transport = protocol.transport
            connId = transport.connId if isinstance(transport, TrackedConnection) else None
            self.events.logger.warn(
                "{reason} on #{conn_id} (further mismatches are only counted)",
                reason=str(error),
                conn_id=connId,
            )

    # -- timers -----------------------------------------------------------

    def _sweep(self) -> None:
        self._fold()
        now = self.clock.seconds()
        limit = now - self.settings.timeout
        for protocol in list(self.active):
            if protocol.sent > protocol.received and protocol.since < limit:
                protocol.fail(TIMEOUT)
        if self.done != self._doneAtSweep:
            self._doneAtSweep = self.done
            self._lastCompletion = now
        elif self.settings.duration is None and now - self._lastCompletion > self._stallLimit():
            # A --count run against a server that fails every connection
            # would otherwise retry for ever.
            self.stalled = True
            self.stop()

    def _stallLimit(self) -> float:
        rate = self.settings.rate
        return self.settings.timeout + (1 / rate if rate is not None else 0.0)

    def _fold(self) -> None:
        for target in self.targets:
            target.tally.fold(self._intervalHistogram)

    def _openConnections(self) -> list[TrackedConnection]:
        return [c for target in self.targets for c in target.factory.connections.values()]

    def _sampleKernel(self) -> None:
        self.kernel.sample(self._openConnections())

    def _intervalEnded(self) -> None:
        """
        Tell the observers what the run did since the last interval ended.
        """
        self._fold()
        end = self.clock.seconds() - self.startedAt
        done, errors, late, cpu = self._intervalFrom
        errorsNow = self.errors
        lateNow = self.late
        cpuNow = self._cpuSeconds()
        self._intervalIndex += 1
        interval = IntervalReport(
            index=self._intervalIndex,
            start=self._intervalStart,
            end=end,
            messages=self.done - done,
            size=self.settings.size,
            errors=countErrors(
                {kind: count - errors.get(kind, 0) for kind, count in errorsNow.items()}
            ),
            late=lateNow - late if self.openLoop else None,
            open=len(self.active),
            cpu=cpuNow - cpu,
            histogram=self._intervalHistogram,
        )
        self._intervalHistogram = newHistogram()
        self._intervalStart = end
        self._intervalFrom = (self.done, errorsNow, lateNow, cpuNow)
        for observer in self.intervalObservers:
            observer(interval)

    # -- stopping ---------------------------------------------------------

    def stop(self, interrupted: bool = False) -> None:
        """
        End the run: stop sending, close every connection, and fire
        L{finished} with the report of what was done.
        """
        if self.stopping:
            return
        self.stopping = True
        self.stoppedAt = self.clock.seconds()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        pending = [self._deadline, self._pacer, *self._retries]
        for call in pending:
            if call is not None and call.active():
                call.cancel()
        self._pacer = None
        self._retries.clear()
        for connecting in list(self._connecting):
            connecting.cancel()
        rest = self.stoppedAt - self.startedAt > self._intervalStart
        if self.intervalObservers and (rest or self.done > self._intervalFrom[0]):
            # The rest of the last interval.
            self._intervalEnded()
        self._fold()
        if self._progress is not None:
            self._progress.clear()
        for protocol in list(self.active):
            assert protocol.transport is not None
            protocol.transport.loseConnection()
        if self.active:
            self._grace = self.clock.callLater(_CLOSE_GRACE, self._abortTheRest)
        self.finished.callback(self.report(interrupted))
        self._checkClosed()

    def _abortTheRest(self) -> None:
        self._grace = None
        for protocol in list(self.active):
            assert protocol.transport is not None
            protocol.transport.abortConnection()  # type: ignore[attr-defined]

    def _checkClosed(self) -> None:
        if not self.finished.called or self.active or self._connecting or self.closed.called:
            return
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self.closed.callback(None)

    def report(self, interrupted: bool = False) -> LoadReport:
        return LoadReport.fromTargets(
            tuple(
                TargetReport.fromTally(target.tally, target.factory.opened)
                for target in self.targets
            ),
            **self.settings.reportSetup(),
            duration=self.stoppedAt - self.startedAt,
            interrupted=interrupted,
            kernel=self.kernel.report(self._openConnections()),
            reflections=self.reflections.summary() if self.reflections is not None else None,
        )
