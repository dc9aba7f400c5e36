"""
Faults on purpose: wrappers that make one connection misbehave in one
precise way, whatever protocol it serves.

Each is a L{ConnectionWrapper} between the L{TrackedConnection} and the
protocol, so they stack: the server factory puts the ones a connection
drew around its protocol (see L{tcplife.server.FaultPlan}).  What each
changes, and for which protocols it means something:

  - L{DelayInput}: each read waits before the protocol sees it, so any
    protocol's answer comes late (an echo, each echo);
  - L{Throttle}: the protocol's output leaves at a set rate, paced on the
    clock with backpressure (any protocol that writes);
  - L{StopReadingAfter}: the server stops reading once it has read so many
    bytes, so the peer's sends back up (any protocol);
  - L{DropInput}: what the peer sends is read and thrown away; the
    protocol hears only the end of it (any protocol);
  - L{CloseAfter} and L{HalfCloseFirst}: a FIN after so many bytes of
    output, or before any (any protocol that writes);
  - L{ResetAfter}: a RST after so many bytes of output (any protocol).

They keep the timers on the clock they are given (C{IReactorTime}), never
sleep, and hold at most a bounded amount of data: a piece that holds bytes
stops reading once it holds L{HELD_AT_MOST}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from random import Random
from typing import Final, cast

from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IPullProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ..events import RESET
from ._wrapper import ConnectionWrapper

DELAY: Final = "delay"
THROTTLE: Final = "throttle"
STOP_READING_AFTER: Final = "stop-reading-after"
DROP_INPUT: Final = "drop-input"
CLOSE_AFTER: Final = "close-after"
RESET_AFTER: Final = "reset-after"
HALF_CLOSE_FIRST: Final = "half-close-first"

#: The most bytes a piece holds (input waiting out its delay, output waiting
#: for its turn) before it stops reading from the peer.
HELD_AT_MOST: Final = 1 << 16

# Reasons a piece pauses reading (ConnectionWrapper.pauseReading).
_HOLDING = 2
_STOPPED = 4

# A timer due at a time computed apart from the clock's may fire a rounding
# error early.
_SOON = 1e-6

# What a throttle does once its output is sent.
_LOSE = "lose"
_LOSE_WRITE = "loseWrite"


class DelayInput(ConnectionWrapper):
    """
    Each chunk the peer sends reaches the protocol C{shortest} to
    C{longest} seconds after it was read (uniformly drawn for each chunk),
    in order; the peer's FIN waits behind the chunks still held.
    """

    kind = DELAY

    def __init__(
        self,
        wrapped: IProtocol,
        clock: IReactorTime,
        shortest: float,
        longest: float,
        random: Random,
    ) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.shortest = shortest
        self.longest = longest
        self._random = random
        self._held: deque[tuple[float, bytes]] = deque()
        self._heldBytes = 0
        self._timer: IDelayedCall | None = None
        self._finHeld = False

    def _delay(self) -> float:
        if self.longest == self.shortest:
            return self.shortest
        return self._random.uniform(self.shortest, self.longest)

    def dataReceived(self, data: bytes) -> None:
        now = self.clock.seconds()
        due = now + self._delay()
        # First in, first out: a chunk whose delay ends sooner than an
        # earlier one's waits for it, so none overtakes another.
        self._held.append((due, data))
        self._heldBytes += len(data)
        if self._timer is None:
            self._timer = self.clock.callLater(due - now, self._deliver)
        if self._heldBytes >= HELD_AT_MOST:
            self.pauseReading(_HOLDING)

    def _deliver(self) -> None:
        self._timer = None
        now = self.clock.seconds() + _SOON
        held = self._held
        while held and held[0][0] <= now and self.connected:
            _, data = held.popleft()
            self._heldBytes -= len(data)
            self.wrappedProtocol.dataReceived(data)
        if not self.connected:
            return
        if held:
            self._timer = self.clock.callLater(max(0.0, held[0][0] - now), self._deliver)
        elif self._finHeld:
            self._finHeld = False
            super().readConnectionLost()
        if self._heldBytes < HELD_AT_MOST:
            self.resumeReading(_HOLDING)

    def readConnectionLost(self) -> None:
        if self._held:
            self._finHeld = True
        else:
            super().readConnectionLost()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()
        super().connectionLost(reason)


@implementer(IPushProducer)
class _Downstream:
    """
    The producer a L{Throttle} registers with the transport below it: that
    transport pauses it while its own buffer is full, and the throttle then
    sends nothing more into it.
    """

    def __init__(self, throttle: Throttle) -> None:
        self.throttle: Throttle | None = throttle

    def pauseProducing(self) -> None:
        if self.throttle is not None:
            self.throttle.downstreamFull(True)

    def resumeProducing(self) -> None:
        if self.throttle is not None:
            self.throttle.downstreamFull(False)

    def stopProducing(self) -> None:
        # connectionLost follows.
        pass


class Throttle(ConnectionWrapper):
    """
    The protocol's output leaves at C{rate} bytes per second, a fiftieth of
    a second's worth at a time: by any moment, at most two such slices more
    than the rate allows since the first byte.

    What waits its turn is bounded: past L{HELD_AT_MOST} bytes, the server
    stops reading from the peer, and a producer the protocol registered is
    paused (a pull producer is asked for more only when nothing waits).  And
    nothing is sent into a transport below whose own buffer is full.  A
    graceful close (or half-close) waits for what was written to go out.
    """

    kind = THROTTLE

    #: Slices per second's worth of output.
    slicesPerSecond = 50

    def __init__(self, wrapped: IProtocol, clock: IReactorTime, rate: int) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.rate = rate
        self.sliceSize = max(1, rate // self.slicesPerSecond)
        self._waiting = bytearray()
        self._tokens = float(self.sliceSize)
        self._filledAt = clock.seconds()
        self._pump: IDelayedCall | None = None
        self._full = False
        self._downstream = _Downstream(self)
        self._producer: IPullProducer | IPushProducer | None = None
        self._streaming = False
        self._then: str | None = None
        self._closed = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.registerProducer(self._downstream, True)  # type: ignore[attr-defined]

    # -- the protocol's transport -----------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self._waiting += data
        if self._pump is None and not self._full:
            self._sendSlice()
        if len(self._waiting) >= HELD_AT_MOST:
            self._backUp(True)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def registerProducer(self, producer: IPullProducer | IPushProducer, streaming: bool) -> None:
        """
        The protocol's producer writes to us: we pace it, as a transport
        paces the producers it consumes from.
        """
        self._producer = producer
        self._streaming = streaming
        if not streaming and not self._waiting:
            producer.resumeProducing()
        elif streaming and len(self._waiting) >= HELD_AT_MOST:
            cast(IPushProducer, producer).pauseProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._closeWhenSent(_LOSE)

    def loseWriteConnection(self) -> None:
        self._closeWhenSent(_LOSE_WRITE)

    def abortConnection(self) -> None:
        self._stopPump()
        self._waiting.clear()
        self._closed = True
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stopPump()
        self._waiting.clear()
        self._downstream.throttle = None
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        super().connectionLost(reason)

    # -- pacing -----------------------------------------------------------

    def downstreamFull(self, full: bool) -> None:
        """
        The transport below has filled its buffer, or drained it.
        """
        self._full = full
        if full:
            self._stopPump()
        elif self._waiting and self._pump is None:
            self._sendSlice()

    def _sendSlice(self) -> None:
        # A token bucket two slices deep: a timer that fires up to a slice's
        # time late loses nothing, and no burst exceeds two slices.
        self._pump = None
        if self._full or not self.connected:
            return
        now = self.clock.seconds()
        depth = 2 * self.sliceSize
        self._tokens = min(depth, self._tokens + (now - self._filledAt) * self.rate)
        self._filledAt = now
        count = min(int(self._tokens + _SOON), len(self._waiting))
        if count:
            chunk = bytes(self._waiting[:count])
            del self._waiting[:count]
            self._tokens -= count
            assert self.transport is not None
            self.transport.write(chunk)
        if self._waiting:
            wanted = min(self.sliceSize, len(self._waiting)) - self._tokens
            self._pump = self.clock.callLater(max(wanted, 0) / self.rate, self._sendSlice)
        if len(self._waiting) < HELD_AT_MOST:
            self._backUp(False)
        if not self._waiting:
            self._allSent()

    def _allSent(self) -> None:
        if self._then is not None:
            self._finish()
        elif self._producer is not None and not self._streaming:
            self._producer.resumeProducing()

    def _backUp(self, on: bool) -> None:
        # Past the mark: no more input to answer, and a streaming producer
        # waits; below it again, both go on.
        producer = cast(IPushProducer, self._producer) if self._streaming else None
        if on:
            self.pauseReading(_HOLDING)
            if producer is not None:
                producer.pauseProducing()
        elif self._pausedFor & _HOLDING:
            self.resumeReading(_HOLDING)
            if producer is not None:
                producer.resumeProducing()

    def _closeWhenSent(self, then: str) -> None:
        if self._closed or self._then == _LOSE:
            return
        self._then = then
        if not self._waiting:
            self._finish()

    def _finish(self) -> None:
        then, self._then = self._then, None
        assert self.transport is not None
        # A registered producer would keep a transport from ever closing
        # (see TWISTED-NOTES.md), and TLS holds its close_notify back for it.
        self._downstream.throttle = None
        self.transport.unregisterProducer()  # type: ignore[attr-defined]
        self._closed = True
        if then == _LOSE:
            self.transport.loseConnection()
        else:
            super().loseWriteConnection()

    def _stopPump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None


class StopReadingAfter(ConnectionWrapper):
    """
    Once the protocol has had C{limit} bytes, the server reads nothing
    more from this connection: the peer's sends fill the kernel's buffers
    and then block (what backpressure looks like from the other end).

    Bytes of the last read beyond C{limit} never reach the protocol.  A
    connection stopped so notices no more of its peer, not even its close:
    C{--idle-timeout} reclaims it.
    """

    kind = STOP_READING_AFTER

    def __init__(self, wrapped: IProtocol, limit: int) -> None:
        super().__init__(wrapped)
        self.remaining = limit

    def protocolConnected(self) -> None:
        if self.remaining == 0:
            self.pauseReading(_STOPPED)

    def dataReceived(self, data: bytes) -> None:
        remaining = self.remaining
        if remaining == 0:
            return
        if len(data) < remaining:
            self.remaining = remaining - len(data)
        else:
            data = data[:remaining]
            self.remaining = 0
            self.pauseReading(_STOPPED)
        self.wrappedProtocol.dataReceived(data)


class DropInput(ConnectionWrapper):
    """
    What the peer sends is read (and counted) but never reaches the
    protocol; its FIN does.
    """

    kind = DROP_INPUT

    def dataReceived(self, data: bytes) -> None:
        pass


class _CutOutput(ConnectionWrapper):
    """
    Output up to C{limit} bytes passes; the byte that reaches it ends the
    connection (L{cut}), and later output is dropped.
    """

    def __init__(self, wrapped: IProtocol, limit: int) -> None:
        super().__init__(wrapped)
        self.remaining = limit
        self.done = False

    def protocolConnected(self) -> None:
        if self.remaining == 0 and not self.done:
            self._reached()

    def write(self, data: bytes) -> None:
        if self.done:
            return
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            assert self.transport is not None
            self.transport.write(data)
            return
        self.remaining = 0
        if remaining:
            assert self.transport is not None
            self.transport.write(data[:remaining])
        self._reached()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def _reached(self) -> None:
        self.done = True
        self.cut()

    def cut(self) -> None:
        """
        End the connection: the limit is reached.
        """
        raise NotImplementedError


class CloseAfter(_CutOutput):
    """
    After C{limit} bytes of output, the server sends FIN; output beyond
    them is dropped.

    It half-closes rather than closes, and keeps reading (the protocol still
    gets what the peer sends) until the peer's own FIN: closing with unread
    input would make the kernel send RST instead (RFC 2525 2.17).  The
    connection then closes as the protocol closes it (an echo does at the
    peer's FIN), or at C{--idle-timeout}.
    """

    kind = CLOSE_AFTER

    def cut(self) -> None:
        self.endedOnPurpose()
        try:
            super().loseWriteConnection()
        except AttributeError:
            # A transport that cannot half-close (stdio).
            self.loseConnection()

    def loseWriteConnection(self) -> None:
        # Our FIN went out already, or goes out when the limit is reached.
        if not self.done:
            self.done = True
            super().loseWriteConnection()


class HalfCloseFirst(CloseAfter):
    """
    The server sends FIN as soon as the protocol is connected, before any
    output, and keeps reading, as L{CloseAfter} does after its bytes.
    """

    kind = HALF_CLOSE_FIRST

    def __init__(self, wrapped: IProtocol) -> None:
        super().__init__(wrapped, 0)


class ResetAfter(_CutOutput):
    """
    After C{limit} bytes of output, the server resets the connection (RST).

    As with any abort, output the kernel had not yet sent is discarded, so
    the peer may get fewer than C{limit} bytes (on loopback it gets them
    all, then the reset).  The C{close} event says C{how=reset},
    C{initiator=local}.
    """

    kind = RESET_AFTER

    def cut(self) -> None:
        self.endedOnPurpose(how=RESET)
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]
