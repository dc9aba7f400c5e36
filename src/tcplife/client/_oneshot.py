"""
One exchange, as a service: connect, send, half-close, read the reply, and
end the process with a status that says how it went.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ..protocols import TrackedConnection
from ._factory import EchoClient, EchoOutcome, LifecycleClientFactory
from ._failures import CANCELLED, EXIT_STATUS, ConnectFailedError
from ._reflect import Reflection
from ._sinks import TextSink


class OneShot(Service):
    """
    Runs one L{EchoClient} exchange once the reactor runs.

    @ivar status: The exit status, once decided.
    """

    def __init__(
        self,
        factory: LifecycleClientFactory,
        endpoint: IStreamClientEndpoint,
        target: str,
        reactor: IReactorCore,
        *,
        errors: TextSink,
        done: Callable[[int], None],
    ) -> None:
        self.factory = factory
        self.endpoint = endpoint
        self.target = target
        self.status: int | None = None
        self._reactor = reactor
        self._errors = errors
        self._done = done
        self._connecting: Deferred[Protocol] | None = None
        self._client: EchoClient | None = None
        self._ownAddress: str | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        connecting = self._connecting = self.factory.connect(self.endpoint, self.target)
        connecting.addCallbacks(self._connected, self._connectFailed)

    def _connected(self, protocol: Protocol) -> None:
        self._connecting = None
        assert isinstance(protocol, EchoClient)
        self._client = protocol
        transport = protocol.transport
        self._ownAddress = transport.local if isinstance(transport, TrackedConnection) else None
        protocol.finished.addCallback(self._finished)

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        failure.trap(ConnectFailedError)
        error: ConnectFailedError = failure.value  # type: ignore[assignment]
        if error.kind != CANCELLED:
            self._end(EXIT_STATUS[error.kind], str(error))

    def _finished(self, outcome: EchoOutcome) -> None:
        if outcome.reflection is not None:
            self._say(self._whoAnswered(outcome.reflection))
        if outcome.ok:
            self._end(0)
        else:
            assert outcome.problem is not None
            self._end(EXIT_STATUS[outcome.problem], outcome.describe())

    def _whoAnswered(self, reflection: Reflection) -> str:
        own = self._ownAddress
        if reflection.client == own:
            seen = f"{reflection.client} (this client's own address)"
        else:
            seen = f"{reflection.client} (this client is {own})"
        return (
            f"answered by {reflection.server}, which saw this client as {seen} "
            f"on {reflection.local}"
        )

    def outputFailed(self, error: OSError) -> None:
        """
        The echo cannot be written to standard output (a full disk,
        C{/dev/full}): give up on the exchange and end with C{EX_IOERR}.
        """
        reason = error.strerror or str(error)
        self._end(os.EX_IOERR, f"cannot write the echo to standard output: {reason}")
        client = self._client
        if client is not None and client.transport is not None:
            client.transport.abortConnection()  # type: ignore[attr-defined]

    def _end(self, status: int, line: str | None = None) -> None:
        if self.status is not None:
            return
        self.status = status
        if line is not None:
            self._say(line)
        self._done(status)

    def _say(self, line: str) -> None:
        self._errors.write(f"tcpclient: {line}\n")
        self._errors.flush()

    def stopService(self) -> None:
        """
        Stopped from outside (Ctrl-C, SIGTERM) before the exchange ended:
        give up on it and say how far it got; twist then exits as it does
        after that signal.
        """
        Service.stopService(self)
        if self.status is not None:
            return
        self.status = -1
        if self._connecting is not None:
            self._say(f"interrupted while connecting to {self.target}")
            self._connecting.cancel()
        elif self._client is not None:
            client = self._client
            self._say(f"interrupted: {client.received} of {len(client.expected)} bytes came back")
            assert client.transport is not None
            client.transport.abortConnection()  # type: ignore[attr-defined]
