"""
Listening: the textbook's C{socket}, C{bind} and C{listen}, as a service.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..events import LifecycleLog, describeAddress
from ..internet import listenerAt, lockHolder, readAcceptQueue, serverFromString

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")

_HINTS = {
    errno.EADDRINUSE: "another socket is bound there; stop it or choose another port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
}
_UNIX_HINTS = {
    errno.EACCES: "no permission to create a file in that directory",
    errno.ENOENT: "that directory does not exist",
}


class ListenError(Exception):
    """
    A listener could not start; the message is one line that says where,
    why, and what to do.  Under C{twist} the process has nothing else to do:
    the C{tcpecho} plugin ends it with that line and a non-zero status.
    """


def describeListenFailure(where: str, failure: Failure) -> str:
    """
    One line that says where listening failed, why, and what to do.
    """
    error = failure.value
    cause: BaseException | str | None = error
    if isinstance(error, CannotListenError):
        cause = error.socketError
        # A UNIX port's "port" is its path.
        if isinstance(error.port, bytes | str):
            return f"cannot listen on {where}: {_unixReason(error.port, cause)}"
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
        hint = _HINTS.get(cause.errno or 0)
        if isinstance(cause, socket.gaierror):
            hint = "that interface is not an address or a name this machine knows"
        if hint:
            reason = f"{reason} ({hint})"
    else:
        reason = str(cause) or type(cause).__name__
    return f"cannot listen on {where}: {reason}"


def _unixReason(path: bytes | str, cause: BaseException | str | None) -> str:
    if cause == "Cannot acquire lock":
        return (
            f"its lock file names process {lockHolder(path)}, which is still running "
            "(another server on this path?); stop it or choose another path"
        )
    if not (isinstance(cause, OSError) and cause.strerror):
        return str(cause) or type(cause).__name__
    if cause.errno == errno.EADDRINUSE:
        if listenerAt(path):
            hint = "a server is listening on this socket; stop it or choose another path"
        else:
            hint = "the path exists and nobody listens on it; remove it if nothing needs it"
    else:
        hint = _UNIX_HINTS.get(cause.errno or 0, "")
    return f"{cause.strerror} ({hint})" if hint else cause.strerror


def _cappedAtSomaxconn(backlog: int | None) -> int | None:
    if backlog is None:
        return None
    try:
        with open("/proc/sys/net/core/somaxconn") as limit:
            return min(backlog, int(limit.read()))
    except (OSError, ValueError):
        return backlog


def listeningSocket(port: IListeningPort) -> socket.socket | None:
    """
    The kernel socket behind a listening port, where there is one to see.
    """
    handle = getattr(port, "socket", None)
    return handle if isinstance(handle, socket.socket) else None


def announceListening(
    port: IListeningPort,
    description: str,
    events: LifecycleLog | None,
    backlog: int | None = None,
) -> str:
    """
    Emit C{listen} for C{port} (or, without C{events}, one plain log line),
    with the backlog as the kernel applies it where it says; returns the
    port's address, as the event gives it.
    """
    address = describeAddress(port.getHost())
    handle = listeningSocket(port)
    if handle is not None:
        queue = readAcceptQueue(handle)
        if queue is not None:
            # The kernel's own figure: listen() silently caps the request
            # at net.core.somaxconn.
            backlog = queue.backlog
        elif handle.family == socket.AF_UNIX:
            # No TCP_INFO for UNIX sockets: what the port asked listen()
            # for, capped as the kernel caps it.
            backlog = _cappedAtSomaxconn(getattr(port, "backlog", backlog))
    if events is not None:
        events.listen(address, backlog, description)
    else:
        _log.info("{description} listening on {address}", description=description, address=address)
    return address


def listen(reactor: Any, description: str, factory: IProtocolFactory) -> Deferred[IListeningPort]:
    """
    Listen on the server endpoint C{description} with C{factory}, on
    tcplife's ports (see C{tcplife.serverFromString}), and emit C{listen}
    once listening (through the factory's C{events}, if it has them).

    A L{LifecycleServerFactory <tcplife.LifecycleServerFactory>}'s
    C{maxConnections} holds from the first burst of clients on: those beyond
    it wait in the kernel's accept queue.

    @raise EndpointError: if the description cannot serve.
    @return: A Deferred that fires with the listening port, or fails as the
        endpoint's C{listen} does (C{CannotListenError}; see
        L{describeListenFailure}).
    """
    events = getattr(factory, "events", None)
    if not isinstance(events, LifecycleLog):
        events = None
    listening: Deferred[IListeningPort] = serverFromString(reactor, description).listen(factory)

    def listened(port: IListeningPort) -> IListeningPort:
        announceListening(port, description, events, getattr(port, "backlog", None))
        return port

    return listening.addCallback(listened)


class Listener(Service):
    """
    Listens on one endpoint with one factory, and reports C{listen} and
    C{stop-listening} (or, without C{events}, one plain log line).

    Unlike C{twisted.application.internet.StreamServerEndpointService}, a
    failure to listen is not merely logged: it raises L{ListenError} when
    it happens during C{startService} (as it does for TCP, TLS, UNIX and
    systemd endpoints); a failure that comes later is logged as critical and
    handed to C{failedLater}, so that whoever runs the process can end it
    rather than leave it listening on nothing.

    @ivar port: The listening port, once listening.
    @ivar failedLater: Called with the one-line reason when listening fails
        after C{startService} has returned.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        description: str,
        events: LifecycleLog | None,
        reactor: IReactorCore,
        backlog: int | None = None,
        failedLater: Callable[[str], object] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.events = events
        self.port: IListeningPort | None = None
        self.address = description
        self._reactor = reactor
        self._backlog = backlog
        self.failedLater = failedLater
        self._starting: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        Service.startService(self)
        failures: list[Failure] = []
        self._starting = self.endpoint.listen(self.factory)
        self._starting.addCallbacks(self._listening, failures.append)
        if failures:
            raise ListenError(describeListenFailure(self.description, failures[0]))
        if self.port is None:
            self._starting.addErrback(self._failedLater)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self.address = announceListening(port, self.description, self.events, self._backlog)
        return port

    def _failedLater(self, failure: Failure) -> None:
        message = describeListenFailure(self.description, failure)
        _log.critical("tcplife: {message}", message=message)
        if self.failedLater is not None:
            self.failedLater(message)

    def abandon(self) -> None:
        """
        Close the port now, without the reactor: the process is about to end
        because another listener failed.  A UNIX port's path and lock file
        go with it, instead of being left behind for the next start.
        """
        port, self.port = self.port, None
        Service.stopService(self)
        if isinstance(port, tcp.Port) and port.connected:
            # What stopListening would do on the reactor's next pass, which
            # never comes.
            port.connectionLost(Failure(ConnectionDone()))

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            if self._starting is not None:
                self._starting.cancel()
            return None
        stopped: Deferred[object] = maybeDeferred(port.stopListening)
        if self.events is None:
            return stopped.addCallback(lambda _: None)
        events = self.events
        return stopped.addCallback(lambda _: events.stopListening(self.address))
