"""
Admission control on the kernel's backlog.

When the server may take no more connections (the cap is reached, or the
process is out of file descriptors) it stops reading its listening sockets
and keeps them open.  New clients then complete the handshake and wait in the
kernel's accept queue, up to the backlog, exactly as the textbook's
C{listen()} queue; accepting resumes when a connection closes.  This differs
from L{twisted.protocols.policies.LimitTotalConnectionsFactory}, which accepts
and then drops.

A connection counts as open from the moment it is accepted: behind a PROXY
header wrapper, one that has not sent its header yet holds a slot (and a
descriptor) too, though the factory sees it only once the header is in.

When a listening socket closes (at shutdown), the kernel resets every client
still in its queue, though their handshakes completed and their requests may
be waiting.  The gate takes them off the queue first and serves them, within
the cap: those beyond it wait, in our hands now, for connections to close.

A port tcplife did not make (a plain C{reactor.listenTCP}) is governed too,
from the first connection the factory sees come through it: it stops reading
at the cap and resumes below it, as tcplife's own do.  What it cannot be
made to do is bound a burst of accepts already under way (see
TWISTED-NOTES.md, "Accept bursts"): the factory resets the connections a
burst takes beyond the cap, and the gate counts them (L{refusedOverCap}).
Each time it lets such a port read again, the gate sets the port's next
burst to the slots free, so the clients that waited in the queue are served,
not reset.  Such a port does not hand over its queue when it closes, and
Twisted's own remedy for running out of descriptors applies to it.

Two faults on purpose (C{--fault}) are the gate's: C{accept-delay} holds the
queue for a while before the connection that drew it is accepted, and
C{never-accept} holds it for good, so that it fills up to the backlog and
later clients' connects hang, the textbook's full backlog.  The queue is
first in, first out, so the gate looks at the draws of the connections next
in line (L{tcplife.server.FaultPlan.peek}) and accepts no further than the
next one that waits.
"""

from __future__ import annotations

import errno
import math
import typing
from collections import deque
from collections.abc import Callable
from socket import socket as Socket  # noqa: N812 (the type)
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

from ..events import LifecycleLog, describeAddress
from ..internet import readAcceptQueue
from ..protocols import ProxyHeaderFactory
from ._faults import ACCEPT_DELAY, NEVER_ACCEPT, FaultPlan
from ._settings import ServerSettings

#: Why accepting paused.
MAX_CONNECTIONS = "max-connections"
FD_LIMIT = "fd-limit"

# With no cap, any burst size is allowed; tcp.Port's own scaling still applies.
_UNBOUNDED = 1 << 30

# How many of the next connections' draws the gate looks at, at most, to
# know how many it may accept before one that waits in the queue.
_LOOKAHEAD = 64


class ListeningPort(typing.Protocol):
    """
    What the gate needs of any listening port it governs: to stop and start
    it reading.
    """

    socket: Socket
    factory: Any

    def startReading(self) -> None: ...

    def stopReading(self) -> None: ...

    def getHost(self) -> IAddress: ...


class GovernedPort(ListeningPort, typing.Protocol):
    """
    What the gate needs of a port that accepts under it (tcplife's own ports,
    L{tcplife.internet.PolicedPort}, are such ports).
    """

    def takeAcceptQueue(self) -> list[tuple[Socket, Any]]: ...

    def serveAccepted(self, client: Socket, address: Any) -> None: ...


class AcceptGate:
    """
    Decides when tcplife ports accept; an L{AcceptPolicy
    <tcplife.internet.AcceptPolicy>} for tcplife's ports.

    @ivar settings: Where the cap on open connections is
        (C{maxConnections}, C{None}: no cap).
    @ivar paused: Why accepting is paused (L{MAX_CONNECTIONS},
        L{FD_LIMIT}), or C{None} while accepting.
    @ivar faults: The server's faults on purpose, whose C{accept-delay} and
        C{never-accept} the gate applies; C{None}: none.
    @ivar held: C{accept-delay} or C{never-accept} while a fault holds the
        queue, whatever L{paused} says; C{None} otherwise.
    @ivar awaitingHeader: Connections accepted behind a PROXY header
        wrapper that wait for their header: open, but not yet the factory's.
    @ivar refusedByFactory: Connections accepted and then declined because
        the factory's C{buildProtocol} returned C{None}.
    @ivar refusedHeader: Connections accepted and then closed without a
        valid PROXY header (invalid, none in time, or closed first).
    @ivar refusedOverCap: Connections a port tcplife did not make accepted
        beyond the cap, in one burst, and that the factory reset at once.
    @ivar foreignPorts: The ports tcplife did not make that this gate
        governs (see L{noticePort}).
    @ivar exhaustions: Times C{accept()} failed for want of descriptors or
        memory.
    @ivar waiting: Clients taken off the accept queue of a port that closed,
        waiting for a connection to close so they can be served (with their
        port and address).
    @ivar unserved: Clients whose handshake had completed but who were never
        served: left in a closing port's queue (the kernel resets them), or
        still L{waiting} when the drain ended (see L{closeWaiting}).
    """

    #: After running out of descriptors, try again this soon (seconds), then
    #: back off, even if none of our own connections close meanwhile.
    retryAfter = 1.0
    maxRetryAfter = 30.0

    def __init__(
        self,
        events: LifecycleLog,
        clock: IReactorTime,
        openConnections: Callable[[], int],
        settings: ServerSettings,
        faults: FaultPlan | None = None,
    ) -> None:
        self.events = events
        self.clock = clock
        self.settings = settings
        self.faults = faults
        self.paused: str | None = None
        self.held: str | None = None
        self._holdEnds: IDelayedCall | None = None
        self.awaitingHeader = 0
        self.refusedByFactory = 0
        self.refusedHeader = 0
        self.refusedOverCap = 0
        self.exhaustions = 0
        self.ports: list[ListeningPort] = []
        self.foreignPorts: list[ListeningPort] = []
        self.waiting: deque[tuple[GovernedPort, Socket, Any]] = deque()
        self.unserved = 0
        self._openConnections = openConnections
        self._pausedAt = 0.0
        self._retry: IDelayedCall | None = None
        self._retryDelay = self.retryAfter

    @property
    def maxConnections(self) -> int | None:
        """
        The cap on open connections, or C{None}.
        """
        return self.settings.maxConnections

    def watch(self, port: ListeningPort) -> None:
        """
        Govern C{port} from now on.
        """
        self.ports.append(port)
        factory = getattr(port, "factory", None)
        if isinstance(factory, ProxyHeaderFactory):
            # Its connections hold a slot from accept on, before the factory
            # behind it sees them.
            factory.admission = self
        if self.paused is not None or self.held is not None:
            port.stopReading()

    def noticePort(self, port: Any) -> None:
        """
        A connection came through the listening C{port}: if it accepts
        under no policy (a port tcplife did not make), govern it from now
        on, and warn, once, of what that costs.  The factory asks for every
        connection while there is a cap; for a port that accepts under this
        gate, the answer is the first test.
        """
        policy = getattr(port, "acceptPolicy", None)
        if policy is self or port is None or policy is not None or port in self.foreignPorts:
            return
        self.foreignPorts.append(port)
        self.watch(port)
        self._boundForeignBursts()
        self.events.logger.warn(
            "{address} is a listening port tcplife did not make: it stops reading at "
            "{max_connections} open connections, but a burst of accepts can take more "
            "clients than there are slots, and those are reset at once; listen with "
            "tcplife.listen() or tcplife.serverFromString() instead, whose ports leave "
            "them waiting in the kernel's accept queue",
            address=describeAddress(port.getHost()),
            max_connections=self.maxConnections,
        )

    def openConnections(self) -> int:
        """
        The connections open now: the factory's, and those still waiting for
        a PROXY header.
        """
        return self._openConnections() + self.awaitingHeader

    # -- AcceptPolicy -----------------------------------------------------

    def acceptBudget(self) -> int:
        """
        How many a port may accept now; with C{accept-delay} or
        C{never-accept}, asked by a port whose queue holds a client, it may
        hold the queue first (and answer 0).
        """
        budget = self._roomBelowCap()
        faults = self.faults
        if faults is not None and faults.holdsAccepts and budget > 0:
            return self._acceptsBeforeAHold(faults, budget)
        return budget

    def _roomBelowCap(self) -> int:
        if self.paused is not None or self.held is not None:
            return 0
        cap = self.settings.maxConnections
        return _UNBOUNDED if cap is None else cap - self.openConnections()

    def acceptsExhausted(self, port: GovernedPort, error: int) -> None:
        self.exhaustions += 1
        if self.paused is None:
            self._pause(f"{FD_LIMIT} ({errno.errorcode.get(error, error)})")
        if self._retry is None or not self._retry.active():
            self._retry = self.clock.callLater(self._retryDelay, self._retryAfterExhaustion)
            self._retryDelay = min(self._retryDelay * 2, self.maxRetryAfter)

    def refused(self, port: GovernedPort) -> None:
        self.refusedByFactory += 1

    def closing(self, port: GovernedPort) -> None:
        if self.held == NEVER_ACCEPT:
            # Not even now: the kernel resets them, as the fault says.
            left = readAcceptQueue(port.socket)
            self.unserved += left.depth if left is not None else 0
            return
        for client, address in port.takeAcceptQueue():
            self.waiting.append((port, client, address))
        left = readAcceptQueue(port.socket)
        if left is not None:
            # Out of descriptors, or a flood: the kernel resets these.
            self.unserved += left.depth
        self._serveWaiting()

    def closeWaiting(self) -> int:
        """
        Close the clients still L{waiting}, unserved (the drain is over for
        them: a deadline, or a second signal); returns how many.
        """
        count = len(self.waiting)
        while self.waiting:
            _, client, _ = self.waiting.popleft()
            client.close()
        self.unserved += count
        return count

    # -- what the factory tells us ---------------------------------------

    def connectionOpened(self) -> None:
        cap = self.settings.maxConnections
        if cap is not None and self.paused is None and self.openConnections() >= cap:
            self._pause(MAX_CONNECTIONS)

    def connectionClosed(self) -> None:
        if self.waiting:
            self._serveWaiting()
        if self.foreignPorts:
            self._boundForeignBursts()
        if self.paused is None:
            return
        # A closed connection freed a descriptor too, so an fd-limit pause
        # ends here as well (unless the cap still holds).
        self._retryDelay = self.retryAfter
        self._resumeIfBelowCap()

    # -- HeaderAdmission: what a PROXY header wrapper tells us ---------------

    def headerAwaited(self) -> None:
        self.awaitingHeader += 1
        self.connectionOpened()

    def headerArrived(self) -> None:
        # No resume: the factory's connection takes the slot at once.
        self.awaitingHeader -= 1

    def headerRefused(self) -> None:
        self.awaitingHeader -= 1
        self.refusedHeader += 1
        self.connectionClosed()

    def stop(self) -> None:
        """
        The server is shutting down: no retries any more.
        """
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._holdEnds is not None and self._holdEnds.active():
            self._holdEnds.cancel()
        self._holdEnds = None

    # -- faults on purpose --------------------------------------------------

    def _acceptsBeforeAHold(self, faults: FaultPlan, budget: int) -> int:
        """
        How many of C{budget} connections may be accepted before the next
        one that waits in the queue on purpose; 0, holding the queue, when
        the very next one does.
        """
        most = min(budget, _LOOKAHEAD)
        for index in range(most):
            if index == 0 and faults.frontWaited:
                continue
            wait = faults.peek(index).acceptWait()
            if wait is None:
                continue
            if index == 0:
                self._hold(faults, wait)
            return index
        return most

    def _hold(self, faults: FaultPlan, wait: float) -> None:
        for port in self._listening():
            port.stopReading()
        if math.isinf(wait):
            self.held = NEVER_ACCEPT
            faults.counts[NEVER_ACCEPT] += 1
            for port in self._listening():
                queue = readAcceptQueue(port.socket)
                self.events.acceptPaused(
                    describeAddress(port.getHost()),
                    f"{NEVER_ACCEPT} (fault)",
                    self.openConnections(),
                    queue.depth if queue else None,
                    queue.backlog if queue else None,
                )
            return
        self.held = ACCEPT_DELAY
        self._holdEnds = self.clock.callLater(wait, self._endHold, faults)

    def _endHold(self, faults: FaultPlan) -> None:
        self._holdEnds = None
        self.held = None
        faults.frontWaited = True
        if self.paused is None:
            for port in self._listening():
                port.startReading()

    # -- internals ----------------------------------------------------------

    def _boundForeignBursts(self) -> None:
        # tcp.Port reads numberAccepts when a burst begins and scales it when
        # it ends; set between bursts, it bounds the next one.
        # Not acceptBudget(): no client need be waiting for a fault's hold.
        budget = max(1, self._roomBelowCap())
        for port in self.foreignPorts:
            port.numberAccepts = budget  # type: ignore[attr-defined]

    def _serveWaiting(self) -> None:
        # Within the cap, however accepting is paused: these were accepted
        # already, and their descriptors are ours.
        cap = self.settings.maxConnections
        while self.waiting and (cap is None or self.openConnections() < cap):
            port, client, address = self.waiting.popleft()
            port.serveAccepted(client, address)

    def _retryAfterExhaustion(self) -> None:
        self._retry = None
        self._resumeIfBelowCap()

    def _resumeIfBelowCap(self) -> None:
        cap = self.settings.maxConnections
        if cap is not None and self.openConnections() >= cap:
            self.paused = MAX_CONNECTIONS
            return
        self._resume()

    def _listening(self) -> list[ListeningPort]:
        return [
            port
            for port in self.ports
            if getattr(port, "connected", False) and not getattr(port, "disconnecting", False)
        ]

    def _pause(self, reason: str) -> None:
        self.paused = reason
        self._pausedAt = self.clock.seconds()
        openConnections = self.openConnections()
        for port in self._listening():
            port.stopReading()
            queue = readAcceptQueue(port.socket)
            self.events.acceptPaused(
                describeAddress(port.getHost()),
                reason,
                openConnections,
                queue.depth if queue else None,
                queue.backlog if queue else None,
            )

    def _resume(self) -> None:
        if self.paused is None:
            return
        self.paused = None
        if self.foreignPorts:
            self._boundForeignBursts()
        pausedFor = self.clock.seconds() - self._pausedAt
        openConnections = self.openConnections()
        for port in self._listening():
            queue = readAcceptQueue(port.socket)
            self.events.acceptResumed(
                describeAddress(port.getHost()),
                openConnections,
                queue.depth if queue else None,
                queue.backlog if queue else None,
                pausedFor,
            )
            if self.held is None:
                port.startReading()
