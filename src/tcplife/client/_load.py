"""
The load generator: many connections, every echoed byte verified, round
trips timed into an HDR histogram.

The per-message path (L{_Pipelined.fill}, L{_Pipelined.dataReceived}) is
kept flat: no logging, no string formatting, no allocation beyond the slice
a comparison needs.  Everything else (timeouts, progress, the rate cap) runs
on timers, over all connections at once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

import attrs
from hdrh.histogram import HdrHistogram
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ..events import LifecycleLog
from ..protocols import TrackedConnection
from ._factory import DEFAULT_TIMEOUT, LifecycleClientFactory
from ._failures import CANCELLED, MISMATCH, TIMEOUT, ConnectFailedError, lostConnectionKind
from ._kernelview import SAMPLE_INTERVAL as KERNEL_SAMPLE_INTERVAL
from ._kernelview import KernelTally
from ._reflect import Reflection, ReflectionError, ReflectionReader, ReflectionTally
from ._report import Latency, LoadReport
from ._sinks import TextSink

RR: Final = "rr"
STREAM: Final = "stream"
CONNECT: Final = "connect"
PATTERNS: Final = (RR, STREAM, CONNECT)

#: What a run does unless told: messages of this many bytes, this many bytes
#: in flight per connection (C{stream}), for this many seconds (when no
#: C{count} ends it; L{LoadSettings} itself runs until one of them does).
DEFAULT_SIZE = 64
DEFAULT_WINDOW = 1 << 16
DEFAULT_DURATION = 10.0

#: Distinct messages each connection cycles through, so that a server that
#: replays an earlier reply is caught.
_VARIANTS = 3
#: The longest chunk checked with one slice; Twisted's TCP reads are at
#: most 64 KiB (C{bufferSize}), and longer chunks are checked in pieces.
_LONGEST_CHECK = 1 << 16
#: Round trips are recorded in microseconds, up to an hour.
_LONGEST_LATENCY_US = 3_600_000_000
#: How often the rate cap hands out messages.
_PACE_INTERVAL = 0.01
#: After the end of a run, how long closing connections may take before
#: they are aborted.
_CLOSE_GRACE = 1.0
#: The longest pause before reconnecting after consecutive errors.
_LONGEST_RETRY = 1.0


@attrs.frozen
class LoadSettings:
    """
    What a load run does.

    @ivar window: Bytes each connection keeps in flight (C{stream}); C{rr}
        and C{connect} keep exactly one message in flight.
    @ivar duration: Seconds to run, unless C{count} ends it first.
    @ivar count: Messages to complete in all, unless C{duration} ends it
        first.
    @ivar rate: The most messages per second, over all connections.
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


class Messages:
    """
    The bytes every connection sends: message C{k} is C{variants[k % 3]},
    so the whole stream repeats every three messages and any byte of it can
    be checked with one slice of a precomputed ring.
    """

    def __init__(self, size: int) -> None:
        block = bytes(range(251))  # a prime length: no alignment with sizes
        base = (block * ((size + _VARIANTS) // len(block) + 1))[: size + _VARIANTS]
        self.size = size
        self.variants = tuple(base[j : j + size] for j in range(_VARIANTS))
        self.period = _VARIANTS * size
        # The stream, and enough of its start again that a slice of up to
        # _LONGEST_CHECK bytes from any offset in the period fits.
        repeats = _LONGEST_CHECK // self.period + 2
        self._ring = (b"".join(self.variants) * repeats)[: self.period + _LONGEST_CHECK]
        self._span = _LONGEST_CHECK

    def matches(self, data: bytes, offset: int) -> bool:
        """
        Whether C{data} is what the stream holds from C{offset} on.
        """
        start = offset % self.period
        span = self._span
        if len(data) <= span:
            return self._ring[start : start + len(data)] == data
        return all(self.matches(data[i : i + span], offset + i) for i in range(0, len(data), span))


class _LoadFactory(LifecycleClientFactory):
    """
    The client factory of one run; its protocols find the run through it.
    """

    def __init__(self, run: LoadRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def connectionClosed(self, connection: TrackedConnection) -> None:
        self.run.kernel.closed(connection)
        super().connectionClosed(connection)


class _LoadProtocol(Protocol):
    """
    What the run needs of each connection's protocol.

    @ivar sent: Bytes written.
    @ivar received: Bytes echoed and verified.
    @ivar since: When the current wait for the echo began, or when the echo
        last progressed.
    """

    factory: _LoadFactory
    run: LoadRun
    sent = 0
    received = 0
    since = 0.0
    completed = 0
    failure: str | None = None

    def inFlight(self) -> int:
        """
        Messages sent whose echo is not complete.
        """
        raise NotImplementedError

    def fail(self, kind: str) -> None:
        """
        End this connection because of C{kind}; the first kind is counted.
        """
        if self.failure is None:
            self.failure = kind
        transport = self.transport
        if kind == TIMEOUT and isinstance(transport, TrackedConnection):
            transport.timedOut()
        elif transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.run.ended(self, self._endedBecause(reason))

    def _endedBecause(self, reason: Failure) -> str | None:
        if self.failure is not None:
            return self.failure
        return lostConnectionKind(reason)


@implementer(IPushProducer)
class _Pipelined(_LoadProtocol):
    """
    C{rr} and C{stream}: keep up to a window of messages in flight, and send
    the next as soon as the echo of an earlier one is complete.

    It is the transport's producer, so a full write buffer pauses sending,
    never reading: an echo client that stops reading deadlocks the server.
    """

    def connectionMade(self) -> None:
        run = self.run = self.factory.run
        self.seconds = run.clock.seconds
        self.messages = run.messages
        self.size = run.messages.size
        self.variants = run.messages.variants
        self.slack = run.settings.inFlight - self.size
        self.slots = run.settings.inFlight // self.size + 1
        self.sentAt = [0.0] * self.slots
        self.nextMessage = 0
        self.paused = False
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        run.opened(self)
        self.fill()

    def inFlight(self) -> int:
        return self.nextMessage - self.completed

    def fill(self) -> None:
        """
        Send messages while the window, the rate and the count allow.
        """
        if self.paused or self.sent - self.received > self.slack:
            return
        run = self.run
        assert self.transport is not None
        write = self.transport.write
        variants = self.variants
        sentAt = self.sentAt
        slots = self.slots
        size = self.size
        k = self.nextMessage
        now = self.seconds()
        if self.sent == self.received:
            # Nothing was in flight: the wait for an echo starts now.
            self.since = now
        while self.sent - self.received <= self.slack and run.take(self):
            sentAt[k % slots] = now
            k += 1
            self.sent += size
            write(variants[(k - 1) % _VARIANTS])
            if self.paused:
                break
        self.nextMessage = k

    def dataReceived(self, data: bytes) -> None:
        start = self.received
        end = start + len(data)
        if end > self.sent or not self.messages.matches(data, start):
            self.run.mismatched(self, start)
            self.fail(MISMATCH)
            return
        self.received = end
        now = self.since = self.seconds()
        done = end // self.size
        k = self.completed
        if done > k:
            latencies = self.run.latencies
            sentAt = self.sentAt
            slots = self.slots
            while k < done:
                latencies[int((now - sentAt[k % slots]) * 1e6)] += 1
                k += 1
            self.run.completedMessages(done - self.completed)
            self.completed = done
            self.fill()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.fill()

    def stopProducing(self) -> None:
        self.paused = True


class _OneMessage(_LoadProtocol):
    """
    C{connect}: the whole client lifecycle per message: connect, send one
    message, read it back, close.
    """

    def connectionMade(self) -> None:
        run = self.run = self.factory.run
        self.seconds = run.clock.seconds
        self.messages = run.messages
        self.size = size = run.messages.size
        variant = run.nextVariant()
        self.offset = variant * size
        self.sent = size
        self.since = self.sentAt = self.seconds()
        run.opened(self)
        if not run.stopping:
            assert self.transport is not None
            self.transport.write(run.messages.variants[variant])

    def inFlight(self) -> int:
        return 1 - self.completed

    def dataReceived(self, data: bytes) -> None:
        start = self.received
        end = start + len(data)
        if end > self.size or not self.messages.matches(data, self.offset + start):
            self.run.mismatched(self, start)
            self.fail(MISMATCH)
            return
        self.received = end
        now = self.since = self.seconds()
        if end == self.size:
            self.completed = 1
            self.run.latencies[int((now - self.sentAt) * 1e6)] += 1
            self.run.completedMessages(1)
            assert self.transport is not None
            self.transport.loseConnection()

    def _endedBecause(self, reason: Failure) -> str | None:
        if self.completed and self.failure is None:
            return None
        return super()._endedBecause(reason)


class _ReadsReflection(_LoadProtocol):
    """
    The reply starts with the server's reflection line (C{--reflect}): read
    it and count it, then check the echo after it as usual.
    """

    _reflectionLine: ReflectionReader | None = None

    def connectionMade(self) -> None:
        self._reflectionLine = ReflectionReader()
        # The pattern's own (_Pipelined's, _OneMessage's), next in line.
        super().connectionMade()  # type: ignore[no-untyped-call]

    def dataReceived(self, data: bytes) -> None:
        reader = self._reflectionLine
        if reader is not None:
            try:
                reflection, data = reader.feed(data)
            except ReflectionError as e:
                self.run.notReflected(self, e)
                self.fail(MISMATCH)
                return
            if reflection is None:
                return
            self._reflectionLine = None
            self.run.reflected(self, reflection)
            if not data:
                return
        super().dataReceived(data)


class _ReflectingPipelined(_ReadsReflection, _Pipelined):
    pass


class _ReflectingOneMessage(_ReadsReflection, _OneMessage):
    pass


class LoadRun:
    """
    One load run: keeps C{connections} connections busy until the duration
    or the count is reached, or L{stop} is called.

    @ivar finished: Fires with the L{LoadReport} when the run stops.
    @ivar closed: Fires once every connection is gone after the stop.
    @ivar fatal: Set when the run ended because no connection could be made
        at all.
    """

    def __init__(
        self,
        settings: LoadSettings,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        events: LifecycleLog | None = None,
        progress: TextSink | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.clock = clock
        self.messages = Messages(settings.size)
        if events is None:
            events = LifecycleLog(level=LogLevel.debug)
        self.factory = _LoadFactory(self, timeout=settings.timeout, clock=clock, events=events)
        if settings.reflect:
            self.reflections: ReflectionTally | None = ReflectionTally()
            self.factory.protocol = (
                _ReflectingOneMessage if settings.pattern == CONNECT else _ReflectingPipelined
            )
        else:
            self.reflections = None
            self.factory.protocol = _OneMessage if settings.pattern == CONNECT else _Pipelined
        self.finished: Deferred[LoadReport] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.fatal: ConnectFailedError | None = None
        self.stopping = False
        self.active: set[_LoadProtocol] = set()
        # Round trips by microsecond, folded into the histogram every
        # timer tick: a dict increment costs a tenth of a histogram record.
        self.latencies: defaultdict[int, int] = defaultdict(int)
        self.histogram = HdrHistogram(1, _LONGEST_LATENCY_US, 3)
        self.kernel = KernelTally()
        self.done = 0
        self.issued = 0
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.startedAt = self.stoppedAt = 0.0
        self._progress = progress
        self._progressShown = False
        self._lastTick = (0.0, 0)
        self._variant = 0
        self._connecting: set[Deferred[Protocol]] = set()
        self._retries: set[IDelayedCall] = set()
        self._retryDelay = 0.0
        self._deadline: IDelayedCall | None = None
        self._grace: IDelayedCall | None = None
        self._loops: list[LoopingCall] = []
        self._rate = settings.rate
        self._tokens = 1.0
        self._burst = max(1.0, (settings.rate or 0) * _PACE_INTERVAL * 2)
        self._lastRefill = 0.0
        self._parkedSlots = 0
        self._waiting: dict[_LoadProtocol, None] = {}
        self._doneAtSweep = 0
        self._lastCompletion = 0.0
        self.stalled = False
        self._mismatchLogged = False

    # -- running ----------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        self.startedAt = self._lastRefill = self._lastCompletion = self.clock.seconds()
        self._lastTick = (self.startedAt, 0)
        for _ in range(settings.connections):
            self._openSlot()
        if settings.duration is not None and not self.stopping:
            self._deadline = self.clock.callLater(settings.duration, self.stop)
        sweep = min(1.0, max(settings.timeout / 4, 0.01))
        self._every(sweep, self._sweep)
        if self._progress is not None:
            self._every(1.0, self._showProgress)
        # Long-lived connections (rr, stream) are seen now and then, not only
        # at their close.
        self._every(KERNEL_SAMPLE_INTERVAL, self._sampleKernel)
        if self._rate is not None:
            self._every(_PACE_INTERVAL, self._refill)

    def _every(self, interval: float, f: Any) -> None:
        if self.stopping:
            return
        loop = LoopingCall(f)
        loop.clock = self.clock
        loop.start(interval, now=False)
        self._loops.append(loop)

    def _openSlot(self) -> None:
        """
        Open one connection (for C{connect}, one message's connection).
        """
        if self.stopping:
            return
        if self.settings.pattern == CONNECT and not self.take(None):
            return
        connecting = self.factory.connect(self.endpoint, self.settings.target)
        self._connecting.add(connecting)
        connecting.addBoth(self._connectDone, connecting)

    def _connectDone(self, result: object, connecting: Deferred[Protocol]) -> None:
        self._connecting.discard(connecting)
        if isinstance(result, Failure):
            self._connectFailed(result)
        elif self.stopping:
            self._checkClosed()

    def _connectFailed(self, failure: Failure) -> None:
        failure.trap(ConnectFailedError)
        error: ConnectFailedError = failure.value  # type: ignore[assignment]
        if error.kind == CANCELLED or self.stopping:
            self._checkClosed()
            return
        if self.settings.pattern == CONNECT:
            self.issued -= 1
        self.errors[error.kind] += 1
        if self.factory.opened == 0:
            # Nothing has ever connected: the target is wrong or down, and
            # retrying would only count the same error thousands of times.
            self.fatal = error
            self.stop()
            return
        self._retry()

    def _retry(self) -> None:
        self._retryDelay = min(max(self._retryDelay * 2, 0.01), _LONGEST_RETRY)

        def reopen() -> None:
            self._retries.discard(call)
            self._openSlot()

        call = self.clock.callLater(self._retryDelay, reopen)
        self._retries.add(call)

    def nextVariant(self) -> int:
        self._variant = variant = (self._variant + 1) % _VARIANTS
        return variant

    def take(self, waiter: _LoadProtocol | None) -> bool:
        """
        Whether one more message may be sent now.  When the rate cap says
        not yet, C{waiter} (or, for C{None}, a connection slot) is resumed
        when it allows.
        """
        if self.stopping:
            return False
        count = self.settings.count
        if count is not None and self.issued >= count:
            return False
        if self._rate is not None:
            if self._tokens < 1.0:
                if waiter is None:
                    self._parkedSlots += 1
                else:
                    self._waiting[waiter] = None
                return False
            self._tokens -= 1.0
        self.issued += 1
        return True

    def completedMessages(self, n: int) -> None:
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
        if kind is None:
            self._openSlot()
        else:
            self.errors[kind] += 1
            self._retry()

    def mismatched(self, protocol: _LoadProtocol, offset: int) -> None:
        if not self._mismatchLogged:
            self._mismatchLogged = True
            transport = protocol.transport
            connId = transport.connId if isinstance(transport, TrackedConnection) else None
            self.factory.events.logger.warn(
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
            self.factory.events.logger.warn(
                "{reason} on #{conn_id} (further mismatches are only counted)",
                reason=str(error),
                conn_id=connId,
            )

    # -- timers -----------------------------------------------------------

    def _sweep(self) -> None:
        self._foldLatencies()
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
        pace = 1 / self._rate if self._rate is not None else 0.0
        return self.settings.timeout + pace

    def _refill(self) -> None:
        now = self.clock.seconds()
        assert self._rate is not None
        self._tokens = min(self._tokens + (now - self._lastRefill) * self._rate, self._burst)
        self._lastRefill = now
        while self._tokens >= 1.0 and self._parkedSlots and not self.stopping:
            self._parkedSlots -= 1
            self._openSlot()
        while self._tokens >= 1.0 and self._waiting and not self.stopping:
            waiter = next(iter(self._waiting))
            del self._waiting[waiter]
            if isinstance(waiter, _Pipelined) and waiter in self.active:
                waiter.fill()

    def _foldLatencies(self) -> None:
        record = self.histogram.record_value
        for value, count in self.latencies.items():
            record(value, count)
        self.latencies.clear()

    def _sampleKernel(self) -> None:
        self.kernel.sample(self.factory.connections.values())

    def _showProgress(self) -> None:
        assert self._progress is not None
        now = self.clock.seconds()
        then, doneThen = self._lastTick
        self._lastTick = (now, self.done)
        elapsed = max(now - then, 1e-9)
        perSecond = (self.done - doneThen) / elapsed
        errors = sum(self.errors.values())
        self._progress.write(
            f"\r{now - self.startedAt:7.1f} s {perSecond:12,.0f} msg/s "
            f"{perSecond * self.settings.size / 1e6:10.3f} MB/s "
            # Back to the line's start: a log line written meanwhile (twist's
            # log may share the terminal) overwrites it instead of trailing it.
            f"{len(self.active):7,} open {errors:8,} errors\x1b[K\r"
        )
        self._progress.flush()
        self._progressShown = True

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
        pending = [self._deadline, *self._retries]
        for call in pending:
            if call is not None and call.active():
                call.cancel()
        self._retries.clear()
        for connecting in list(self._connecting):
            connecting.cancel()
        self._foldLatencies()
        if self._progressShown and self._progress is not None:
            self._progress.write("\r\x1b[K")
            self._progress.flush()
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
        settings = self.settings
        return LoadReport(
            pattern=settings.pattern,
            target=settings.target,
            connections=settings.connections,
            size=settings.size,
            window=settings.inFlight if settings.pattern == STREAM else None,
            rate=settings.rate,
            duration=self.stoppedAt - self.startedAt,
            interrupted=interrupted,
            messages=self.done,
            bytes=self.done * settings.size,
            connectionsOpened=self.factory.opened,
            errors=LoadReport.countErrors(self.errors),
            latency=Latency.fromHistogram(self.histogram),
            kernel=self.kernel.report(self.factory.connections.values()),
            reflections=self.reflections.summary() if self.reflections is not None else None,
        )
