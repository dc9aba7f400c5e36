"""
The connections of a load run: the bytes they send, the open loop's
timetable, and the protocols that send, check and time messages.

The per-message path (L{_Pipelined.fill}, L{_Pipelined.dataReceived}) is
kept flat: no logging, no string formatting, no allocation beyond what a
message needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..protocols import TrackedConnection
from ._factory import LifecycleClientFactory
from ._failures import MISMATCH, TIMEOUT, lostConnectionKind
from ._reflect import ReflectionError, ReflectionReader
from ._tally import EXACT_BELOW, KEPT_BITS, Tally, bucketed

if TYPE_CHECKING:
    from ._load import LoadRun

#: Distinct messages each connection cycles through, so that a server that
#: replays an earlier reply is caught.
VARIANTS = 3
#: The longest chunk checked with one slice; Twisted's TCP reads are at
#: most 64 KiB (C{bufferSize}), and longer chunks are checked in pieces.
_LONGEST_CHECK = 1 << 16


class Messages:
    """
    The bytes every connection sends: message C{k} is C{variants[k % 3]},
    so the whole stream repeats every three messages and any byte of it can
    be checked with one slice of a precomputed ring.

    @ivar ring: The stream's first C{period} bytes and C{span} more: the
        bytes from offset C{o} on start at C{ring[o % period]}.
    @ivar span: The longest read one comparison with C{ring} checks.
    """

    def __init__(self, size: int) -> None:
        block = bytes(range(251))  # a prime length: no alignment with sizes
        base = (block * ((size + VARIANTS) // len(block) + 1))[: size + VARIANTS]
        self.size = size
        self.variants = tuple(base[j : j + size] for j in range(VARIANTS))
        self.period = VARIANTS * size
        # The stream, and enough of its start again that a slice of up to
        # _LONGEST_CHECK bytes from any offset in the period fits.
        repeats = _LONGEST_CHECK // self.period + 2
        self.ring = (b"".join(self.variants) * repeats)[: self.period + _LONGEST_CHECK]
        self.span = _LONGEST_CHECK

    def matches(self, data: bytes, offset: int) -> bool:
        """
        Whether C{data} is what the stream holds from C{offset} on.
        """
        start = offset % self.period
        span = self.span
        if len(data) <= span:
            # A comparison in place: no slice of the ring is copied.
            return self.ring.startswith(data, start)
        return all(self.matches(data[i : i + span], offset + i) for i in range(0, len(data), span))


class Timetable:
    """
    The open loop's schedule: message M of the run is due C{M / rate}
    seconds after the start, whatever became of the messages before it.

    @ivar start: When message 0 is due; C{None} until the run's first
        connection is made (for C{connect}, the run's start).
    @ivar index: The next message to send.
    """

    __slots__ = ("index", "rate", "start")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start: float | None = None
        self.index = 0

    @property
    def due(self) -> float:
        """
        When the next message to send is due.
        """
        assert self.start is not None
        # A division, not a product with 1 / rate: message 6 at 10 msg/s is
        # due at 0.6 s exactly, not at 0.6000000000000001.
        return self.start + self.index / self.rate


class _Target:
    """
    One thing the run connects to, and its books.
    """

    def __init__(self, name: str, endpoint: IStreamClientEndpoint, factory: _LoadFactory) -> None:
        self.name = name
        self.endpoint = endpoint
        self.factory = factory
        self.tally = factory.tally


class _LoadFactory(LifecycleClientFactory):
    """
    The client factory of one target of a run; its protocols find the run
    and the target's books through it.
    """

    def __init__(self, run: LoadRun, tally: Tally, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.tally = tally
        self.target: _Target

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
    tally: Tally
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
    the next as soon as the echo of an earlier one is complete (and, on a
    timetable, once it is due).

    It is the transport's producer, so a full write buffer pauses sending,
    never reading: an echo client that stops reading deadlocks the server.
    """

    def connectionMade(self) -> None:
        factory = self.factory
        run = self.run = factory.run
        self.tally = factory.tally
        self.seconds = run.clock.seconds
        messages = self.messages = run.messages
        self.size = messages.size
        self.variants = messages.variants
        self.ring, self.period, self.span = messages.ring, messages.period, messages.span
        self.slack = run.settings.inFlight - self.size
        self.slots = run.settings.inFlight // self.size + 1
        self.sentAt = [0.0] * self.slots
        # When each message in flight was due; in a closed loop, when it was
        # sent (the same list).
        self.dueAt = [0.0] * self.slots if run.openLoop else self.sentAt
        self.nextMessage = 0
        self.paused = False
        assert self.transport is not None
        self.write = self.transport.write
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        run.opened(self)
        self.fill()

    def inFlight(self) -> int:
        return self.nextMessage - self.completed

    def fill(self, now: float | None = None) -> None:
        """
        Send messages while the window, the timetable and the count allow.

        @param now: The time, if the caller has just read the clock.
        """
        if self.paused or self.sent - self.received > self.slack:
            return
        take = self.run.take
        target = self.factory.target
        write = self.write
        variants = self.variants
        sentAt = self.sentAt
        dueAt = self.dueAt
        slots = self.slots
        size = self.size
        k = self.nextMessage
        if now is None:
            now = self.seconds()
        if self.sent == self.received:
            # Nothing was in flight: the wait for an echo starts now.
            self.since = now
        while self.sent - self.received <= self.slack:
            due = take(self, target, now)
            if due < 0.0:
                break
            slot = k % slots
            sentAt[slot] = now
            dueAt[slot] = due
            k += 1
            self.sent += size
            write(variants[(k - 1) % VARIANTS])
            if self.paused:
                break
        self.nextMessage = k

    def dataReceived(self, data: bytes) -> None:
        start = self.received
        end = start + len(data)
        # Messages.matches, spelled out for a read of up to its span: this
        # runs once per message.
        if end > self.sent or not (
            self.ring.startswith(data, start % self.period)
            if len(data) <= self.span
            else self.messages.matches(data, start)
        ):
            self.run.mismatched(self, start)
            self.fail(MISMATCH)
            return
        self.received = end
        now = self.since = self.seconds()
        done = end // self.size
        k = self.completed
        if done > k:
            first = k
            tally = self.tally
            latencies = tally.latencies
            services = tally.services
            sentAt = self.sentAt
            dueAt = self.dueAt
            slots = self.slots
            while k < done:
                slot = k % slots
                # bucketed(), spelled out: this runs once per message.
                us = int((now - dueAt[slot]) * 1e6)
                if us >= EXACT_BELOW:
                    shift = us.bit_length() - KEPT_BITS
                    us = us >> shift << shift
                latencies[us] += 1
                if services is not None:
                    services[bucketed(int((now - sentAt[slot]) * 1e6))] += 1
                k += 1
            self.completed = done
            self.run.completed(tally, done - first)
            self.fill(now)

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

    @ivar dueAt: When the message was due: on a timetable, when its
        connection was; in a closed loop, when it was sent.
    """

    def connectionMade(self) -> None:
        factory = self.factory
        run = self.run = factory.run
        self.tally = factory.tally
        self.seconds = run.clock.seconds
        self.messages = run.messages
        self.size = size = run.messages.size
        variant = run.nextVariant()
        self.offset = variant * size
        self.sent = size
        self.since = self.sentAt = self.dueAt = self.seconds()
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
            tally = self.tally
            tally.latencies[bucketed(int((now - self.dueAt) * 1e6))] += 1
            if tally.services is not None:
                tally.services[bucketed(int((now - self.sentAt) * 1e6))] += 1
            self.run.completed(tally, 1)
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
