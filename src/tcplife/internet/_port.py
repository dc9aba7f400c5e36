"""
Listening ports of tcplife's own, and a reactor adapter that makes endpoints
use them.

Twisted's C{tcp.Port} accepts up to C{numberAccepts} connections (100 at
first, growing) each time the listening socket is readable, and nothing
outside the port can bound that burst; when the process runs out of file
descriptors it accepts and closes the waiting clients.  A L{LifecyclePort}
with an L{AcceptPolicy} instead asks the policy how many it may accept before
each burst, and tells it when descriptors run out; either way the clients it
does not accept stay in the kernel's accept queue, as the textbook's
C{listen()} describes.

Endpoint strings (C{tcp:}, C{ssl:}, C{haproxy:tcp:}, C{systemd:}, C{unix:})
call C{listenTCP}, C{listenSSL}, C{adoptStreamPort} or C{listenUNIX} on the
reactor they were parsed with; L{PortReactor} is that reactor: it builds
tcplife ports and passes everything else through to the real reactor.
"""

from __future__ import annotations

import errno
import socket
from socket import socket as Socket  # noqa: N812 (the type, beside the module)
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import tcp, unix
from twisted.internet.error import CannotListenError, UnsupportedAddressFamily
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IReactorSSL,
    IReactorTCP,
    IReactorUNIX,
)
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger
from twisted.python.reflect import qual
from zope.interface import implementer

from ..protocols import HalfCloseableTLSFactory, ProxyHeaderFactory
from ._kernel import readAcceptQueue
from ._transport import (
    AcceptsWithoutEnums,
    DirectAccepts,
    DirectServer,
    acceptSocket,
    acceptWithEnums,
)
from ._unixpath import listenerAt
from ._unixserver import LifecycleUNIXServer

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")

# accept() failures that mean "out of descriptors or memory": retrying at once
# would spin, and closing the waiting clients (Twisted's remedy) loses them.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_NOTHING_WAITING = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# The most a UNIX port's queue may hold when nothing says how long it is.
_UNKNOWN_BACKLOG = 4096


class AcceptPolicy(Protocol):
    """
    Decides how many connections a port may accept, and hears when it cannot.
    """

    def watch(self, port: PolicedPort) -> None:
        """
        C{port} has started listening under this policy.
        """

    def acceptBudget(self) -> int:
        """
        How many more connections may be accepted now; 0 pauses accepting.
        """

    def acceptsExhausted(self, port: PolicedPort, error: int) -> None:
        """
        C{accept()} failed with C{error} (EMFILE, ENFILE, ...): the port has
        stopped reading and waits to be resumed.
        """

    def refused(self, port: PolicedPort) -> None:
        """
        The factory declined an accepted connection (buildProtocol gave None).
        """

    def closing(self, port: PolicedPort) -> None:
        """
        C{port} is about to close its listening socket, which resets every
        client still in its accept queue although the kernel completed their
        handshakes: the last moment to take them off it (and to serve them
        later with L{PolicedPort.serveAccepted}).
        """


class PolicedPort(AcceptsWithoutEnums):
    """
    Accepts under an L{AcceptPolicy}; without one, exactly as C{tcp.Port}.
    """

    acceptPolicy: AcceptPolicy | None = None
    if TYPE_CHECKING:
        backlog: int
        numberAccepts: int
        sessionno: int
        socket: Socket
        addressFamily: Any
        factory: Any
        reactor: Any
        transport: Any

        def _buildAddr(self, address: Any) -> Any: ...
        def startReading(self) -> None: ...
        def stopReading(self) -> None: ...
        def getHost(self) -> Any: ...

    def doRead(self) -> None:
        policy = self.acceptPolicy
        if policy is None:
            super().doRead()  # type: ignore[misc]
            return
        allowed = policy.acceptBudget()
        if allowed <= 0:
            # The policy resumes reading when its budget grows again;
            # meanwhile new clients wait in the kernel's queue.
            self.stopReading()
            return
        limit = min(self.numberAccepts, allowed)
        accept = acceptSocket if self.acceptWithoutEnums else acceptWithEnums
        accepted = 0
        try:
            while accepted < limit:
                try:
                    client, address = accept(self.socket, self.addressFamily)
                except OSError as e:
                    if e.errno in _NOTHING_WAITING:
                        break
                    if e.errno == errno.EPERM:  # netfilter refused it
                        continue
                    if e.errno in _EXHAUSTED:
                        self.stopReading()
                        policy.acceptsExhausted(self, e.errno or 0)
                        break
                    if e.errno == errno.ECONNABORTED:  # gone before we got to it
                        continue
                    raise
                accepted += 1
                self._serve(client, address, policy)
        except BaseException:
            _log.failure("Unexpected error while accepting on {port}", port=self)
        # Scale the next burst as tcp.Port does, within the policy's budget.
        if accepted == limit:
            self.numberAccepts = limit + 20
        else:
            self.numberAccepts = max(1, accepted)

    def logPrefix(self) -> str:
        """
        The qualified name of the factory's class, as C{tcp.Port} gives it:
        the reactor asks at every wake-up of the port, so it is formatted
        once per factory class rather than each time.
        """
        factoryClass = self.factory.__class__
        known, prefix = self._logPrefixOf
        if known is not factoryClass:
            prefix = qual(factoryClass)
            self._logPrefixOf = (factoryClass, prefix)
        return prefix

    _logPrefixOf: tuple[type | None, str] = (None, "")

    def connectionLost(self, reason: Any) -> None:
        if self.acceptPolicy is not None:
            try:
                self.acceptPolicy.closing(self)
            except BaseException:
                # The port closes all the same.
                _log.failure("Accept policy failed while {port} closed", port=self)
        super().connectionLost(reason)  # type: ignore[misc]

    def takeAcceptQueue(self) -> list[tuple[Socket, Any]]:
        """
        Accept the connections waiting in this port's queue, up to the most
        it can hold, so that clients that keep arriving cannot keep it open;
        stop early when it is empty or descriptors run out.  Serve each later
        with L{serveAccepted}, or close it.
        """
        queue = readAcceptQueue(self.socket)
        # An adopted TCP port knows no backlog of its own; TCP_INFO does.
        limit = queue.backlog if queue is not None else self.backlog or _UNKNOWN_BACKLOG
        taken = []
        accept = acceptSocket if self.acceptWithoutEnums else acceptWithEnums
        for _ in range(limit + 1):
            try:
                taken.append(accept(self.socket, self.addressFamily))
            except OSError as e:
                if e.errno not in (errno.ECONNABORTED, errno.EPERM):
                    break
        return taken

    def serveAccepted(self, client: Socket, address: Any) -> None:
        """
        Serve a connection accepted earlier, as if accepted now.
        """
        assert self.acceptPolicy is not None
        self._serve(client, address, self.acceptPolicy)

    def _serve(self, client: Socket, address: Any, policy: AcceptPolicy) -> None:
        if len(address) == 4:
            # IPv6: keep the scope id, in numeric form, as tcp.Port does.
            host = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            address = (host[0], *address[1:])
        try:
            protocol = self.factory.buildProtocol(self._buildAddr(address))
            if protocol is not None:
                session = self.sessionno
                self.sessionno = session + 1
                transport = self.transport(client, protocol, address, self, session, self.reactor)
        except BaseException:
            # A broken factory: close this client now (rather than leave its
            # socket to the garbage collector, with the client hanging) and
            # let the burst go on.
            client.close()
            _log.failure("Factory failed to build a protocol on {port}", port=self)
            return
        if protocol is None:
            client.close()
            policy.refused(self)
            return
        protocol.makeConnection(transport)


class LifecyclePort(PolicedPort, DirectAccepts, tcp.Port):
    """
    A TCP listening port that accepts under an L{AcceptPolicy} (without one,
    in L{DirectAccepts}' flat loop), and whose connections write at once
    (L{DirectServer}).
    """

    transport = DirectServer


class _LeavesAdoptedSocketsAlone(unix.Port):
    """
    A UNIX port that, when it closes a socket it adopted (from systemd, or
    from the process that bound it for several), only closes its own
    descriptor.  Twisted's would also unlink the path, and C{shutdown()}
    the socket, which on a listening socket refuses every new client for
    every process that holds it.
    """

    adopted = False

    def connectionLost(self, reason: Any) -> None:
        if not self.adopted:
            unix.Port.connectionLost(self, reason)
            return
        if self.lockFile is not None:
            self.lockFile.unlock()
        tcp.Port.connectionLost(self, reason)


class LifecycleUNIXPort(PolicedPort, _LeavesAdoptedSocketsAlone):
    """
    A UNIX listening port that accepts under an L{AcceptPolicy}, whose
    connections' graceful closes are not taken for resets
    (L{LifecycleUNIXServer}), and that never harms another server's socket:
    nor one it adopted, whose path and socket stay as they were when it
    closes.
    """

    transport = LifecycleUNIXServer

    def __init__(
        self, fileName: bytes, factory: IProtocolFactory, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(fileName, factory, *args, **kwargs)
        # Our own copy of the path: Twisted 26.10 keeps it in _bindPath,
        # Twisted 26.4 in port.
        self._path: bytes | str = self._buildAddr(fileName).name

    def startListening(self) -> None:
        # Twisted takes a stale lock file (its pid is gone) as leave to unlink
        # the path, even while another process listens on it, and keeps the
        # lock when bind() fails, so the next start finds it stale.
        path = self._path
        adopting = self._preexistingSocket is not None
        if not adopting and listenerAt(path):
            raise CannotListenError(None, path, OSError(errno.EADDRINUSE, "Address already in use"))
        try:
            super().startListening()  # type: ignore[no-untyped-call]
            if adopting:
                self.adopted = True
                # What Twisted's TCP port does for a socket it adopted.
                self._shouldShutdown = False
        except BaseException as e:
            if self.lockFile is not None and self.lockFile.locked:
                self.lockFile.unlock()
            if isinstance(e, OSError):
                # Making the lock file failed (ENOENT, EACCES): a failure to
                # listen on this path like any other.
                raise CannotListenError(None, path, e) from e
            raise


#: Factories wrapped in factories (PROXY around TLS around the user's): how
#: deep to look for the accept policy of the innermost.
_MOST_WRAPPERS = 8


def acceptPolicyOf(factory: object) -> AcceptPolicy | None:
    """
    The accept policy C{factory} brings with it (its C{acceptPolicy}
    attribute: a L{tcplife.LifecycleServerFactory}'s admission gate), or
    that of the factory it wraps (C{wrappedFactory}, as TLS and the PROXY
    header wrap one), or C{None}.
    """
    for _ in range(_MOST_WRAPPERS):
        policy: AcceptPolicy | None = getattr(factory, "acceptPolicy", None)
        if policy is not None:
            return policy
        factory = getattr(factory, "wrappedFactory", None)
        if factory is None:
            break
    return None


@implementer(IReactorTCP, IReactorSSL, IReactorSocket, IReactorUNIX)
class PortReactor:
    """
    A reactor whose listening calls build tcplife ports; every other attribute
    is the real reactor's.

    Each port accepts under C{acceptPolicy} if one is given, and otherwise
    under the policy its factory brings (L{acceptPolicyOf}): a
    L{tcplife.LifecycleServerFactory}'s connection cap holds on every port
    made here, without being named.

    On a reactor without real sockets (a test's C{MemoryReactor}), listening
    calls pass straight through.

    @ivar acceptPolicy: Given to every port this adapter makes, if not
        C{None}.
    @ivar transport: The class of every TCP connection its TCP ports accept:
        L{DirectServer}, or a subclass with some of its speed levers off.
    @ivar acceptWithoutEnums: Set on every port it makes (see
        L{PolicedPort.acceptWithoutEnums}); C{False}: C{socket.accept()},
        Twisted's way.
    @ivar ports: Every port this adapter made, in order.
    """

    def __init__(
        self,
        reactor: Any,
        acceptPolicy: AcceptPolicy | None = None,
        *,
        transport: type[DirectServer] = DirectServer,
        acceptWithoutEnums: bool = True,
    ) -> None:
        self._reactor = reactor
        self._real = isinstance(reactor, PosixReactorBase)
        self.acceptPolicy = acceptPolicy
        self.transport = transport
        self.acceptWithoutEnums = acceptWithoutEnums
        self.ports: list[IListeningPort] = []

    @classmethod
    def around(cls, reactor: Any) -> PortReactor:
        """
        C{reactor} itself if it is a L{PortReactor} already, else a new one
        around it.
        """
        return reactor if isinstance(reactor, PortReactor) else cls(reactor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def _started(self, port: PolicedPort) -> IListeningPort:
        policy = self.acceptPolicy
        if policy is None:
            policy = acceptPolicyOf(port.factory)
        port.acceptPolicy = policy
        if not self.acceptWithoutEnums:
            port.acceptWithoutEnums = False
        port.startListening()  # type: ignore[attr-defined]
        self.ports.append(port)  # type: ignore[arg-type]
        if policy is not None:
            policy.watch(port)
        return port  # type: ignore[return-value]

    def _tcpPort(self, port: LifecyclePort) -> LifecyclePort:
        if self.transport is not DirectServer:
            port.transport = self.transport
        return port

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
        return self._started(
            self._tcpPort(LifecyclePort(port, factory, backlog, interface, self._reactor))
        )

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
        # As PosixReactorBase.listenSSL does, TLS in memory over a TCP port;
        # tcplife's TLS keeps the echo that a close_notify would lose.
        if isinstance(factory, ProxyHeaderFactory):
            # haproxy:ssl:...  A balancer sends the PROXY header in clear,
            # before the TLS handshake (HAProxy's "ssl send-proxy-v2"), so
            # the header is read below TLS, not inside it as the endpoint's
            # nesting would have it.
            tls = HalfCloseableTLSFactory(
                contextFactory, False, factory.wrappedFactory, self._reactor
            )
            # type(factory): a subclass keeps its protocol and header timeout.
            outermost: IProtocolFactory = type(factory)(tls, factory.clock)
        else:
            outermost = HalfCloseableTLSFactory(contextFactory, False, factory, self._reactor)
        listening = self.listenTCP(port, outermost, backlog, interface)
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
        if addressFamily not in self._reactor._supportedAddressFamilies:
            # As PosixReactorBase.adoptStreamPort, before the socket is read.
            raise UnsupportedAddressFamily(addressFamily)
        if addressFamily == socket.AF_UNIX:
            port: PolicedPort = LifecycleUNIXPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self._reactor, fileDescriptor, factory
            )
        else:
            port = self._tcpPort(
                LifecyclePort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                    self._reactor, fileDescriptor, addressFamily, factory
                )
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
