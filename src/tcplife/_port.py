"""
Listening ports of tcplife's own, and a reactor adapter that makes endpoints
use them.

Twisted's C{tcp.Port} accepts up to C{numberAccepts} connections (100 at
first, growing) each time the listening socket is readable, and nothing
outside the port can bound that burst.  L{LifecyclePort} asks an accept budget
before each burst, so a connection cap holds even when many clients arrive at
once; those it does not accept stay in the kernel's accept queue.

Endpoint strings (C{tcp:}, C{ssl:}, C{haproxy:tcp:}, C{systemd:}, C{unix:})
call C{listenTCP}, C{listenSSL}, C{adoptStreamPort} or C{listenUNIX} on the
reactor they were parsed with; L{PortReactor} is that reactor: it builds
tcplife ports and passes everything else through to the real reactor.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import tcp, unix
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IReactorSSL,
    IReactorTCP,
    IReactorUNIX,
)
from twisted.internet.posixbase import PosixReactorBase
from zope.interface import implementer

from ._tls import HalfCloseableTLSFactory

#: Asked before each burst of accepts: how many more connections may be
#: accepted now.  Zero pauses accepting (the port stops reading).
AcceptBudget = Callable[[], int]


class _BudgetedAccepts:
    """
    Bounds each burst of C{accept()} calls by an L{AcceptBudget}.
    """

    acceptBudget: AcceptBudget | None = None
    numberAccepts: int

    if TYPE_CHECKING:

        def stopReading(self) -> None: ...

    def doRead(self) -> None:
        budget = self.acceptBudget
        if budget is not None:
            allowed = budget()
            if allowed <= 0:
                # Whoever set the budget resumes reading when it grows again;
                # meanwhile new clients wait in the kernel's queue.
                self.stopReading()
                return
            if self.numberAccepts > allowed:
                self.numberAccepts = allowed
        super().doRead()  # type: ignore[misc]


class LifecyclePort(_BudgetedAccepts, tcp.Port):
    """
    A TCP listening port whose accept bursts respect an accept budget.
    """


class LifecycleUNIXPort(_BudgetedAccepts, unix.Port):
    """
    A UNIX listening port whose accept bursts respect an accept budget.
    """


@implementer(IReactorTCP, IReactorSSL, IReactorSocket, IReactorUNIX)
class PortReactor:
    """
    A reactor whose listening calls build tcplife ports; every other attribute
    is the real reactor's.

    On a reactor without real sockets (a test's C{MemoryReactor}), listening
    calls pass straight through.

    @ivar acceptBudget: Given to every port this adapter makes.
    @ivar ports: Every port this adapter made, in order.
    """

    def __init__(self, reactor: Any, acceptBudget: AcceptBudget | None = None) -> None:
        self._reactor = reactor
        self._real = isinstance(reactor, PosixReactorBase)
        self.acceptBudget = acceptBudget
        self.ports: list[IListeningPort] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def _started(self, port: _BudgetedAccepts) -> IListeningPort:
        port.acceptBudget = self.acceptBudget
        port.startListening()  # type: ignore[attr-defined]
        self.ports.append(port)  # type: ignore[arg-type]
        return port  # type: ignore[return-value]

    def listenTCP(
        self,
        port: int,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        if not self._real:
            listening: IListeningPort = self._reactor.listenTCP(port, factory, backlog, interface)
            return listening
        return self._started(LifecyclePort(port, factory, backlog, interface, self._reactor))

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        if not self._real:
            listening: IListeningPort = self._reactor.listenSSL(
                port, factory, contextFactory, backlog, interface
            )
            return listening
        # As PosixReactorBase.listenSSL does (TLS in memory over a TCP port),
        # but a client's close_notify does not cost it its echo.
        tlsFactory = HalfCloseableTLSFactory(contextFactory, False, factory, self._reactor)
        listening = self.listenTCP(port, tlsFactory, backlog, interface)
        listening._type = "TLS"  # type: ignore[attr-defined]
        return listening

    def listenUNIX(
        self,
        address: str,
        factory: IProtocolFactory,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,
    ) -> IListeningPort:
        if not self._real:
            listening: IListeningPort = self._reactor.listenUNIX(
                address, factory, backlog, mode, wantPID
            )
            return listening
        return self._started(
            LifecycleUNIXPort(
                address,  # type: ignore[arg-type]
                factory,
                backlog,
                mode,
                self._reactor,
                wantPID,
            )
        )

    def adoptStreamPort(
        self, fileDescriptor: int, addressFamily: socket.AddressFamily, factory: IProtocolFactory
    ) -> IListeningPort:
        if not self._real:
            listening: IListeningPort = self._reactor.adoptStreamPort(
                fileDescriptor, addressFamily, factory
            )
            return listening
        if addressFamily == socket.AF_UNIX:
            port: _BudgetedAccepts = LifecycleUNIXPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self._reactor, fileDescriptor, factory
            )
        else:
            port = LifecyclePort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self._reactor, fileDescriptor, addressFamily, factory
            )
        return self._started(port)

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.connectTCP(*args, **kwargs)

    def connectSSL(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.connectSSL(*args, **kwargs)

    def connectUNIX(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.connectUNIX(*args, **kwargs)

    def adoptStreamConnection(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.adoptStreamConnection(*args, **kwargs)

    def adoptDatagramPort(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.adoptDatagramPort(*args, **kwargs)
