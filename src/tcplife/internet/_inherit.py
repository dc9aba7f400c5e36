"""
Listening sockets shared by several processes: one process binds them and
holds them without accepting (L{HoldingPorts}), the others inherit them and
accept on them (L{InheritedPorts}).

A listening socket that several processes hold has one accept queue, the
textbook's C{listen()} queue: whichever process accepts next takes the next
client, and a client still waiting when one of the processes dies waits on
for another.  (With C{SO_REUSEPORT} every process would have a socket and a
queue of its own, and the kernel resets the clients in the queue of a
process that exits.)

Endpoint descriptions are parsed as ever (TLS contexts and the PROXY header
wrap the factory as they always do); only the one C{listenTCP},
C{listenUNIX} or C{adoptStreamPort} call an endpoint makes is redirected.
"""

from __future__ import annotations

import os
import socket
from typing import Any, cast

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)

from ..protocols import ProxyServerEndpoint
from ._endpointcheck import checkServer
from ._endpoints import serverFromString
from ._port import LifecycleUNIXPort, PolicedPort, PortReactor


class HoldingPorts(PortReactor):
    """
    A L{PortReactor} whose ports listen (C{socket}, C{bind}, C{listen}, or a
    socket adopted from systemd) and never accept: the process that made
    them only hands their sockets on.

    Closing one of its ports closes this process's descriptor and nothing
    more.  Twisted's C{tcp.Port} calls C{shutdown()} on the socket it made
    when it closes, and on a listening socket that stops listening for every
    process that holds it, resetting the clients in its queue.
    """

    def _started(self, port: PolicedPort) -> IListeningPort:
        port.acceptPolicy = None
        port.startListening()  # type: ignore[attr-defined]
        port.stopReading()
        # The attribute tcp.Port reads at close (the socket is shared).
        port._shouldShutdown = False  # type: ignore[attr-defined]
        self.ports.append(port)  # type: ignore[arg-type]
        return port  # type: ignore[return-value]


class InheritedPorts(PortReactor):
    """
    A L{PortReactor} whose one listening call (C{listenTCP}, C{listenSSL},
    C{listenUNIX} or C{adoptStreamPort}) adopts the listening socket this
    process inherited as descriptor C{inherited}, instead of making one:
    the port accepts on it as on any other tcplife port, under its
    factory's accept policy.

    @ivar inherited: The inherited descriptor; it is closed once adopted
        (the port has its own copy) by this adapter, or by the endpoint
        that asked to adopt it.
    """

    def __init__(self, reactor: Any, inherited: int, **kwargs: Any) -> None:
        super().__init__(reactor, **kwargs)
        self.inherited = inherited
        self._adopted = False
        # A UNIX description's backlog and mode, for the port adopting it.
        self._unix: tuple[int, int] | None = None

    def family(self) -> socket.AddressFamily:
        """
        The address family of the inherited socket.
        """
        probe = socket.socket(fileno=self.inherited)
        try:
            return probe.family
        finally:
            probe.detach()

    def _adopt(self, factory: IProtocolFactory, close: bool = True) -> IListeningPort:
        if self._adopted:
            raise RuntimeError(f"descriptor {self.inherited} is adopted already")
        port = super().adoptStreamPort(self.inherited, self.family(), factory)
        self._adopted = True
        if close:
            os.close(self.inherited)
        return port

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        return self._adopt(factory)

    def listenUNIX(
        self,
        address: str,
        factory: IProtocolFactory,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,
    ) -> IListeningPort:
        # An adopted UNIX port chmods its path and listen()s again as it
        # starts: with the description's own mode and backlog, that changes
        # nothing the process that bound it set.
        self._unix = (backlog, mode)
        return self._adopt(factory)

    def adoptStreamPort(
        self, fileDescriptor: int, addressFamily: socket.AddressFamily, factory: IProtocolFactory
    ) -> IListeningPort:
        # Whoever asks to adopt a descriptor closes it (Twisted's adopting
        # endpoint does).
        return self._adopt(factory, close=fileDescriptor != self.inherited)

    def _started(self, port: PolicedPort) -> IListeningPort:
        if isinstance(port, LifecycleUNIXPort) and self._unix is not None:
            port.backlog, port.mode = self._unix
        return super()._started(port)


def inheritedServerFromString(ports: InheritedPorts, description: str) -> IStreamServerEndpoint:
    """
    The endpoint C{description} names (see L{serverFromString}), listening on
    the socket C{ports} inherited.

    A C{systemd:} description is not looked up among the sockets systemd
    passed (the process that bound the shared sockets took those): its
    socket is the inherited one.

    @raise EndpointError: if the description cannot serve.
    """
    checked = checkServer(description)
    if checked.kind != "systemd":
        return serverFromString(ports, description)
    endpoint: IStreamServerEndpoint = AdoptedStreamServerEndpoint(
        ports, ports.inherited, ports.family()
    )
    if checked.proxied:
        # The clock the PROXY header's timeout runs on: the reactor's.
        return ProxyServerEndpoint(endpoint, cast(IReactorTime, ports))
    return endpoint
