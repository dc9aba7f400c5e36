"""
The client side: a factory that makes every connection's lifecycle visible,
and the echo client protocol that users subclass.
"""

from __future__ import annotations

from contextlib import suppress
from io import BytesIO
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.basic import FileSender
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from ..events import CLOSE, CONNECTED, LifecycleLog
from ..internet import DEFAULT_PORT as DEFAULT_PORT  # the server's: tcplife's port
from ..internet import seeKernelAtClose
from ..protocols import ConnectionTracking, TrackedConnection
from ._failures import (
    CLOSED_EARLY,
    MISMATCH,
    TIMEOUT,
    ConnectTimeoutError,
    connectFailure,
    lostConnectionKind,
)
from ._reflect import Reflection, ReflectionError, ReflectionReader
from ._sinks import ByteSink

#: Where a client connects unless told (on tcplife's port, DEFAULT_PORT).
DEFAULT_HOST = "127.0.0.1"
#: Seconds allowed to connect, and then for each wait for more of the reply.
DEFAULT_TIMEOUT = 10.0


def _showByte(value: int) -> str:
    shown = chr(value) if 0x20 <= value < 0x7F else None
    return f"0x{value:02x} {shown!r}" if shown else f"0x{value:02x}"


@attrs.frozen
class EchoOutcome:
    """
    How one exchange went: what came back, and the first thing wrong with it.

    @ivar expected: Bytes a correct server sends back.
    @ivar received: Bytes that came back.
    @ivar problem: C{None} when every expected byte came back identical;
        otherwise C{"mismatch"}, C{"closed-early"}, C{"reset"} or
        C{"timeout"}.
    @ivar offset: Where the reply first differs from what was expected, or
        the first offset that never came back.
    @ivar expectedByte: The byte expected at C{offset} (for a mismatch;
        C{None} when the server sent more than expected).
    @ivar receivedByte: The byte that came instead (for a mismatch).
    @ivar timeout: The silence allowed, for a timeout.
    @ivar reflection: What the server said of itself and of this
        connection in its first line, when the client expected one
        (C{--reflect}) and it came.
    @ivar detail: What was wrong, when L{describe} has no better words (a
        first line that is no reflection: a C{"mismatch"}).
    """

    expected: int
    received: int
    problem: str | None = None
    offset: int | None = None
    expectedByte: int | None = None
    receivedByte: int | None = None
    timeout: float | None = None
    reflection: Reflection | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """
        One line that says what happened, and where in the reply.
        """
        got = f"{self.received} of {self.expected} bytes came back"
        if self.problem is None:
            return f"all {self.expected} bytes came back identical"
        if self.detail is not None:
            return self.detail
        if self.problem == MISMATCH:
            assert self.offset is not None and self.receivedByte is not None
            if self.expectedByte is None:
                return (
                    f"echo is longer than what was sent: {_showByte(self.receivedByte)} "
                    f"at offset {self.offset}, after all {self.expected} expected bytes"
                )
            return (
                f"echo differs at offset {self.offset}: expected "
                f"{_showByte(self.expectedByte)}, got {_showByte(self.receivedByte)}"
            )
        if self.problem == CLOSED_EARLY:
            return f"server closed the connection early: {got}"
        if self.problem == TIMEOUT:
            return f"no reply for {self.timeout:g} s: {got}"
        return f"connection reset by the server: {got}"


def _firstDifference(a: bytes, b: bytes) -> int:
    # A bisection of slice comparisons: memcmp speed, where a byte loop over
    # a large reply would be slow.
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high) // 2
        if a[low : middle + 1] == b[low : middle + 1]:
            low = middle + 1
        else:
            high = middle
    return low


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class EchoClient(Protocol, TimeoutMixin):
    """
    Send the factory's request, half-close, and check the reply byte by byte.

    The request goes out through a pull producer, so the reply is read while
    a large request is still being written: an echo client that stops
    reading while it writes deadlocks against any echo server once both
    sides' socket buffers are full.  Over TLS it goes out once the handshake
    is done, and the half-close is a C{close_notify}.

    With the factory's C{reflect}, the reply starts with the line a C{twist
    tcpecho --reflect} server writes first; it is read into L{reflection},
    and the echo is checked after it.

    Override points (each does one thing):
      - L{expectedReply}: the reply a correct server sends (RFC 862: the
        request itself).  A client for a transforming server overrides this.
      - L{replyReceived}: each chunk of the reply as it arrives.

    @cvar halfClose: Whether to send FIN once the request is written.  A
        server that answers only after the client's FIN needs it; one that
        closes at the client's FIN without answering does not.
    @ivar finished: Fires with an L{EchoOutcome} once the connection is
        gone, whatever happened; check its C{ok}.
    @ivar expected: The reply expected, from L{expectedReply}.
    @ivar received: Bytes of the reply received so far.
    @ivar reflection: The server's reflection line, once it has come.
    """

    halfClose = True

    factory: LifecycleClientFactory

    if TYPE_CHECKING:
        # TimeoutMixin's methods, as they are used here.
        def setTimeout(self, period: float | None) -> float | None: ...

        def resetTimeout(self) -> None: ...

    def __init__(self) -> None:
        self.finished: Deferred[EchoOutcome] = Deferred()
        self.expected = b""
        self.received = 0
        self._sender: FileSender | None = None
        self._complete = False
        self._outcome: dict[str, Any] = {}
        self.reflection: Reflection | None = None
        self._reflectionLine: ReflectionReader | None = None

    def callLater(self, period: float, func: Any) -> Any:
        # TimeoutMixin's scheduling hook: the factory's clock, not the
        # global reactor, so tests move time by hand.
        return self.factory.clock.callLater(period, func)

    def expectedReply(self, request: bytes) -> bytes:
        """
        The reply a correct server sends to C{request}: the request itself.
        """
        return request

    def replyReceived(self, data: bytes) -> None:
        """
        A chunk of the reply arrived (before it is checked): copy it to the
        factory's C{output}, if it has one.
        """
        output = self.factory.output
        if output is not None:
            output.write(data)
            output.flush()

    # -- the exchange -------------------------------------------------------

    def connectionMade(self) -> None:
        request = self.factory.request
        self.expected = self.expectedReply(request)
        if self.factory.reflect:
            self._reflectionLine = ReflectionReader()
        self.setTimeout(self.factory.timeout)
        # Over TLS the request waits for handshakeCompleted: Twisted's TLS
        # turns a close_notify asked for before the handshake into an abort.
        if not ISSLTransport.providedBy(self.transport):
            self._sendRequest()

    def handshakeCompleted(self) -> None:
        """
        TLS is set up: send the request.
        """
        self._sendRequest()

    def _sendRequest(self) -> None:
        sender = self._sender = FileSender()
        sending = sender.beginFileTransfer(BytesIO(self.factory.request), self.transport)
        sending.addCallbacks(self._requestWritten, self._requestAbandoned)

    def _requestWritten(self, lastByte: object) -> None:
        self._sender = None
        if self.halfClose and self._outcome.get("problem") is None:
            assert self.transport is not None
            # A transport that cannot half-close: the reply is complete once
            # every byte is back.
            with suppress(AttributeError):
                self.transport.loseWriteConnection()  # type: ignore[attr-defined]
        if self._complete or not self.expected:
            self._complete = True
            self._close()

    def _requestAbandoned(self, failure: Failure) -> None:
        # The connection went away, or we stopped sending: connectionLost
        # reports the outcome.
        self._sender = None

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._reflectionLine is not None:
            data = self._readReflection(self._reflectionLine, data)
            if not data:
                return
        start = self.received
        end = self.received = start + len(data)
        self.replyReceived(data)
        if "problem" in self._outcome:
            return
        # Once the reply is complete, C{wanted} is empty: any byte more is a
        # mismatch too.
        wanted = self.expected[start:end]
        if data != wanted:
            at = _firstDifference(data, wanted)
            self._fail(
                MISMATCH,
                start + at,
                expectedByte=wanted[at] if at < len(wanted) else None,
                receivedByte=data[at],
            )
            self._abort()
        elif end == len(self.expected):
            self._complete = True
            self.setTimeout(None)
            if self._sender is None:
                self._close()

    def _readReflection(self, reader: ReflectionReader, data: bytes) -> bytes:
        # The reply's first line; what follows it is the echo.
        try:
            reflection, rest = reader.feed(data)
        except ReflectionError as e:
            self._fail(MISMATCH, 0, detail=str(e))
            self._abort()
            return b""
        if reflection is not None:
            self._reflectionLine = None
            self.reflection = reflection
        return rest

    def readConnectionLost(self) -> None:
        """
        The server sent FIN: its reply is over, complete or not.
        """
        if not self._complete:
            self._fail(CLOSED_EARLY, self.received)
        self._stopSending()
        self._close()

    def writeConnectionLost(self) -> None:
        """
        Our FIN has gone out; the reply keeps coming until the server's FIN.
        """

    def timeoutConnection(self) -> None:
        self._fail(TIMEOUT, self.received, timeout=self.factory.timeout)
        self._stopSending()
        if isinstance(self.transport, TrackedConnection):
            self.transport.timedOut()
        else:
            self._abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self._sender = None
        if not self._complete:
            self._fail(lostConnectionKind(reason), self.received)
        self.finished.callback(
            EchoOutcome(
                expected=len(self.expected),
                received=self.received,
                reflection=self.reflection,
                **self._outcome,
            )
        )

    # -- helpers ------------------------------------------------------------

    def _fail(self, problem: str, offset: int, **details: Any) -> None:
        # The first problem is the one reported; the rest are its echoes.
        if "problem" not in self._outcome:
            self._outcome = dict(problem=problem, offset=offset, **details)
            self.setTimeout(None)

    def _stopSending(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stopProducing()
            assert self.transport is not None
            self.transport.unregisterProducer()  # type: ignore[attr-defined]

    def _close(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def _abort(self) -> None:
        self._stopSending()
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class LifecycleClientFactory(ConnectionTracking, Factory):
    """
    Makes client connections and makes each one's lifecycle visible.

    Any protocol works, not only L{EchoClient}: each one is wrapped in a
    L{TrackedConnection} that emits C{half-close} and C{close} events and
    counts bytes.  L{connect} emits C{connect} and C{connect-failed};
    C{connected} comes from L{connectionOpened}, with the local address the
    kernel assigned.  The protocol's C{factory} attribute is this factory.

    Subclasses may override L{connectionOpened} and L{connectionClosed
    <ConnectionTracking.connectionClosed>} (call up) to keep their own books.

    @ivar request: What each L{EchoClient} sends.
    @ivar timeout: Seconds allowed to connect, and then for each wait for
        more of a reply (C{None}: no limit).
    @ivar output: Where L{EchoClient} copies each reply as it arrives
        (C{None}: nowhere).
    @ivar reflect: Whether each reply starts with a C{twist tcpecho
        --reflect} server's line, which L{EchoClient} reads before the echo.
    @ivar connections: The open connections, by connection id.
    @ivar opened: How many connections were made in all.
    @ivar events: Where lifecycle events go.
    @ivar clock: Times connects, replies and connection durations.
    """

    protocol: type[Protocol] = EchoClient
    noisy = False
    role = "client"

    def __init__(
        self,
        request: bytes = b"",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        output: ByteSink | None = None,
        trace: bool = False,
        clock: IReactorTime | None = None,
        events: LifecycleLog | None = None,
        reflect: bool = False,
    ) -> None:
        self.startTracking(clock, events, trace)
        self.request = request
        self.timeout = timeout
        self.output = output
        self.reflect = reflect
        self.opened = 0

    def connectionOpened(self, connection: TrackedConnection) -> None:
        """
        A connection was made; called before its protocol's
        C{connectionMade}.
        """
        self.connections[connection.connId] = connection
        self.opened += 1
        events = self.events
        if events.wants(CONNECTED):
            events.connected(connection.connId, connection.local, connection.peer)
        elif events.wants(CLOSE):
            # The close event has it, and a closed socket no longer knows it.
            connection.local  # noqa: B018
        # Twisted's tcp.Client (the endpoints' connectTCP) is taught to keep
        # the kernel's view at close.
        seeKernelAtClose(connection.transport)

    def connect(self, endpoint: IStreamClientEndpoint, target: str) -> Deferred[Protocol]:
        """
        Connect through C{endpoint} (named C{target} in the events).

        @return: A Deferred that fires with the protocol this factory built
            (not its L{TrackedConnection}), or fails with L{ConnectFailedError}
            after at most C{timeout} seconds.
        """
        self.events.connect(target)
        connecting: Deferred[Any] = endpoint.connect(self)
        if self.timeout is not None:
            connecting.addTimeout(self.timeout, self.clock, _connectTimedOut)

        def connected(connection: TrackedConnection) -> Protocol:
            wrapped = connection.wrappedProtocol
            assert isinstance(wrapped, Protocol)
            return wrapped

        def failed(failure: Failure) -> Failure:
            error = connectFailure(target, failure)
            self.events.connectFailed(target, error.reason)
            return Failure(error)

        return connecting.addCallbacks(connected, failed)


def _connectTimedOut(result: object, timeout: float) -> object:
    if isinstance(result, Failure):
        # HostnameEndpoint fails a connect cancelled during its name lookup
        # with DNSLookupError (and one cancelled later with
        # ConnectingCancelledError): the lookup is what got no answer.
        raise ConnectTimeoutError(timeout, inLookup=bool(result.check(DNSLookupError)))
    return result
