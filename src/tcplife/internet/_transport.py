"""
tcplife's TCP transport (on the server side, for its ports): Twisted's,
with a direct write path.

Twisted's C{tcp.Server.write} only appends to a buffer and asks the reactor
for a writable event, so every echoed message costs two C{epoll_ctl} calls
(start and stop writing), one more wake-up and a copy when the buffer is
joined.  L{DirectServer} sends at once whenever nothing is waiting ahead of
the data, as asyncio and libuv do, and falls back to Twisted's buffer for the
rest.  Everything else (producers and backpressure, half-close,
C{loseConnection} flushing, C{abortConnection}, C{startTLS}) is Twisted's own
code working on Twisted's own buffer state, untouched.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from errno import EAGAIN, ENOBUFS
from typing import TYPE_CHECKING, Any

from twisted.internet import abstract, main, tcp
from twisted.internet.address import IPv6Address
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.python import log
from twisted.python.failure import Failure

from ..events import describeAddress
from ._closeview import KernelViewAtClose
from ._dispatch import ErrorAwareDispatch
from ._kernel import heldInTcpInfo, readTcpInfoBytes, unsentBytes
from ._poller import pollerFor

_SOCK_STREAM = socket.SOCK_STREAM
_NI_NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
_IPPROTO_TCP = socket.IPPROTO_TCP
_TCP_NODELAY = socket.TCP_NODELAY
_CONNECTION_DONE = main.CONNECTION_DONE
_CONNECTION_LOST = main.CONNECTION_LOST
# One Failure for every orderly close, as the reactor itself does.
_DONE = Failure(main.CONNECTION_DONE)

_UNKNOWN = object()
_EVERY_ADDRESS = frozenset({"0.0.0.0", "::", ""})

#: The most buffers one C{sendmsg} takes (Linux's C{IOV_MAX}).
IOV_MAX = 1024

_bufferWrite = abstract.FileDescriptor.write
_serverGetPeer = tcp.Server.getPeer
_bufferWriteSequence = abstract.FileDescriptor.writeSequence


class DirectConnection(KernelViewAtClose):
    """
    What tcplife's TCP transports (L{DirectServer}, and the client's
    L{tcplife.internet.DirectClient}) do differently from Twisted's, none of
    it visible through C{ITransport}, each a speed lever with a flag of its
    own (a class attribute: set it in a subclass, and give that to
    L{PortReactor <tcplife.internet.PortReactor>} as its C{transport}); with
    the flag off, the connection does it Twisted's way:

      - L{writeAtOnce}: C{write} and C{writeSequence} call C{send}/C{sendmsg}
        right away when nothing is buffered; whatever the kernel does not
        take (and every write while something is buffered) goes through
        Twisted's buffer, so order, C{bufferSize} backpressure and
        close-after-flush hold;
      - L{readSize}: reads take up to 256 KiB at a time (asyncio's figure),
        while C{bufferSize} stays the producer's high-water mark;
      - L{noDelay}: C{TCP_NODELAY} is on: each write is one complete message
        or the echo of one, and Nagle's algorithm would hold it back for an
        ACK;
      - L{closeAtOnce}: C{loseConnection} with nothing to flush closes once
        the batch of events being dispatched is done (or on the reactor's
        next pass) instead of waiting for a writable event;
      - L{batchedPoller}: the connection registers with the reactor's
        L{BatchedPoller <tcplife.internet.BatchedPoller>}, which dispatches
        its events without C{callWithLogger};
      - L{asksForBackpressure} (L{DirectServer}'s): a protocol that paces
        its reading by its output (a L{TrackedConnection
        <tcplife.protocols.TrackedConnection>}) registers its producer only
        once output first waits in the buffer, when the transport asks it
        (C{backpressureProducer}), not at every connection;
      - C{readsKernelAtClose}: the kernel's view of the connection is read
        just before the socket closes (L{KernelViewAtClose}:
        C{tcpInfoAtClose}); with nothing left to flush, from the same
        C{TCP_INFO} that tells the close so, instead of C{SIOCOUTQ}.

    Errors from an immediate send are not raised to the writer: the bytes are
    buffered and the next writable event meets the error and disconnects, as
    it would have with Twisted's buffered write.

    Mix in before a C{tcp.Connection} subclass whose initialiser sets
    C{_poller}.
    """

    if TYPE_CHECKING:
        # Provided by tcp.Connection and the class this is mixed into.
        socket: Any
        protocol: Any
        reactor: Any
        connected: int
        disconnecting: int
        dataBuffer: bytes
        producer: Any
        streamingProducer: bool
        TLS: bool
        _poller: Any
        bufferSize: int
        producerPaused: bool
        _tempDataLen: int
        _aborting: bool
        _writeDisconnecting: bool
        _writeDisconnected: bool

    #: Send at once whenever nothing is buffered ahead.  C{False}: every
    #: write waits in Twisted's buffer for the next writable event (two
    #: C{epoll_ctl} calls and a wake-up per message).  Read by every write.
    writeAtOnce = True

    #: Bytes asked of each C{recv}; Twisted asks C{bufferSize}, 64 KiB.
    readSize = 256 * 1024

    #: C{TCP_NODELAY}'s setting on every socket; C{False} (Twisted's
    #: default) leaves Nagle's algorithm on, which a protocol that writes
    #: many small pieces per message may want.  Read once per connection.
    noDelay = True

    #: With nothing left to flush (here or in the kernel), close without
    #: waiting for a writable event, and with C{close()} alone.  C{False}:
    #: Twisted's C{loseConnection}: a writable event, then C{shutdown()} and
    #: C{close()}.  Read once per connection.
    closeAtOnce = True

    #: Register with the reactor's L{BatchedPoller
    #: <tcplife.internet.BatchedPoller>} (where it has one).  C{False}: with
    #: the reactor itself, whose dispatch wraps every event in
    #: C{callWithLogger} and takes an C{EPOLLERR} for an end of input.  Read
    #: once per connection.
    batchedPoller = True

    #: Before output first waits in Twisted's buffer with no producer
    #: registered, ask the protocol for one (its C{backpressureProducer},
    #: where it has one), so that a connection whose writes all go out at
    #: once registers none.  C{False}: the protocol registers its producer
    #: when it is connected, as with any transport.  Read by the protocol
    #: once per connection, and by every write that buffers.
    asksForBackpressure = False

    # close() alone sends the FIN: the descriptor is close-on-exec, so no
    # other process holds the socket open, and shutdown() would be one more
    # system call per connection.  (With closeAtOnce off, Twisted's way.)
    _shouldShutdown = False

    @property
    def readsSocketErrors(self) -> bool:
        """
        Whether an C{EPOLLERR} on this connection reaches L{doRead}, so that a
        reset is never taken for an end of input (see
        L{tcplife.internet.ErrorAwareDispatch}).
        """
        return isinstance(self._poller, ErrorAwareDispatch)

    @property
    def logstr(self) -> str:
        """
        Twisted's log prefix for the connection (L{_makeLogstr}'s), built
        when first read rather than formatted for every connection.
        """
        logstr = self._logstr
        if logstr is None:
            logstr = self._makeLogstr()
            if logstr is None:
                return "Uninitialized"
            self._logstr = logstr
        return logstr

    @logstr.setter
    def logstr(self, logstr: str) -> None:
        # Twisted's own code sets it (a client's connect path: names, IPv6).
        self._logstr = logstr

    _logstr: str | None = None

    def _makeLogstr(self) -> str | None:
        """
        The log prefix, or C{None} while there is none yet.
        """
        raise NotImplementedError

    def logPrefix(self) -> str:
        return self.logstr

    # FileDescriptor's four, with the poller in place of the reactor.
    def startReading(self) -> None:
        self._poller.addReader(self)

    def stopReading(self) -> None:
        self._poller.removeReader(self)

    def startWriting(self) -> None:
        self._poller.addWriter(self)

    def stopWriting(self) -> None:
        self._poller.removeWriter(self)

    def fileno(self) -> int:
        # A method, where Twisted stores the socket's bound method on each
        # connection (72 bytes of every idle connection's memory).
        try:
            return self.socket.fileno()  # type: ignore[no-any-return]
        except AttributeError:
            # After connectionLost, as FileDescriptor.fileno says.
            return -1

    def connectionLost(self, reason: Failure) -> None:
        # tcp.Connection.connectionLost, less the deletion of the per-
        # connection fileno that this class does not have.
        if not hasattr(self, "socket"):
            return
        poller = self._poller
        if isinstance(poller, ErrorAwareDispatch):
            # FileDescriptor.connectionLost, whose stopReading and
            # stopWriting are one call here.
            self.disconnected = 1
            self.connected = 0
            producer = self.producer
            if producer is not None:
                producer.stopProducing()
                self.producer = None
            poller.stopWatching(self, self.socket.fileno())
        else:
            abstract.FileDescriptor.connectionLost(self, reason)  # type: ignore[arg-type]
        self._closeSocket(not isinstance(reason.value, ConnectionAborted))
        protocol = self.protocol
        del self.protocol
        del self.socket
        protocol.connectionLost(reason)

    def doRead(self) -> Any:
        try:
            data = self.socket.recv(self.readSize)
        except BlockingIOError:
            return None
        except OSError:
            return _CONNECTION_LOST
        if data:
            self.protocol.dataReceived(data)
            return None
        # An immediate send that met the peer's reset took the socket's
        # error with it, and recv then reads an end of input.
        return _CONNECTION_LOST if self._sendFailed else _CONNECTION_DONE

    #: Whether an immediate send failed for good (see L{doRead}).
    _sendFailed = False

    def _mustBuffer(self) -> bool:
        """
        Whether a write must go through Twisted's buffer: something is queued
        ahead of it, a pull producer is registered (only C{doWrite} asks it
        for more), TLS was started on this transport, a close or half-close
        is under way, or the connection is not (or no longer) up.
        """
        return bool(
            self._tempDataLen
            or self.dataBuffer
            or (not self.streamingProducer and self.producer is not None)
            or self.TLS
            or self._aborting
            or self._writeDisconnecting
            or not self.connected
            or not self.writeAtOnce
        )

    def write(self, data: bytes) -> None:
        # _mustBuffer, spelled out: this runs once per message.
        if (
            self._tempDataLen
            or self.dataBuffer
            or (not self.streamingProducer and self.producer is not None)
            or self.TLS
            or self._aborting
            or self._writeDisconnecting
            or not self.connected
            or not self.writeAtOnce
            or type(data) is not bytes
            or not data
        ):
            # Twisted's checks, TLS routing and buffering, as always.
            if self.producer is None:
                self._askForBackpressure()
            super().write(data)  # type: ignore[misc]
            return
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno not in (EAGAIN, ENOBUFS):
                # The next writable event disconnects, as Twisted's write
                # would have found this error there.
                self._sendFailed = True
                _bufferWrite(self, data)  # type: ignore[arg-type]
                return
            sent = 0
        if sent < len(data):
            if self.producer is None:
                self._askForBackpressure()
            _bufferWrite(self, data[sent:] if sent else data)  # type: ignore[arg-type]
        elif self.pausesOnLargeWrites and len(data) > self.bufferSize:
            self._pauseAsIfBuffered()

    #: Whether one write larger than C{bufferSize} pauses a streaming producer
    #: until the next writable event, as it would have in Twisted's buffer
    #: although the kernel took it: Twisted's producer contract, kept by the
    #: client.  The server's echo relies on the kernel's buffer instead.
    pausesOnLargeWrites = False

    def _pauseAsIfBuffered(self) -> None:
        producer = self.producer
        if producer is not None and self.streamingProducer and not self.producerPaused:
            self.producerPaused = True
            producer.pauseProducing()
            # doWrite finds the buffer empty and resumes the producer.
            self.startWriting()

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        chunks = iovec if isinstance(iovec, list) else list(iovec)
        if (
            not chunks
            or len(chunks) > IOV_MAX
            or self._mustBuffer()
            or any(type(chunk) is not bytes for chunk in chunks)
        ):
            if self.producer is None:
                self._askForBackpressure()
            super().writeSequence(chunks)  # type: ignore[misc]
            return
        try:
            sent = self.socket.sendmsg(chunks)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno not in (EAGAIN, ENOBUFS):
                self._sendFailed = True
                _bufferWriteSequence(self, chunks)  # type: ignore[arg-type]
                return
            sent = 0
        total = sent
        for index, chunk in enumerate(chunks):
            if sent < len(chunk):
                rest = chunks[index:]
                if sent:
                    rest[0] = chunk[sent:]
                if self.producer is None:
                    self._askForBackpressure()
                _bufferWriteSequence(self, rest)  # type: ignore[arg-type]
                return
            sent -= len(chunk)
        if self.pausesOnLargeWrites and total > self.bufferSize:
            self._pauseAsIfBuffered()

    def _askForBackpressure(self) -> None:
        """
        Output is about to wait in the buffer, and no producer is registered:
        register the protocol's, if it wants one (L{asksForBackpressure}),
        so the buffer's high-water mark pauses it as it would have had it
        been registered from the start.
        """
        if not self.asksForBackpressure or not self.connected:
            return
        ask = getattr(self.protocol, "backpressureProducer", None)
        producer = ask() if ask is not None else None
        if producer is not None:
            self.registerProducer(producer, True)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        super().registerProducer(producer, streaming)  # type: ignore[misc]
        if not streaming and self.connected and self.producer is producer:
            # Twisted's buffer would still hold the writes made so far, and
            # its writable event, having sent them, would ask a pull producer
            # for more; the writes went out at once, so ask for that event.
            self.startWriting()

    def loseConnection(self) -> None:
        if (
            self._tempDataLen
            or self.dataBuffer
            or self.producer is not None
            or self.TLS
            or self._writeDisconnected
            or self.disconnecting
            or not self.connected
            or not self.closeAtOnce
            or self._kernelUnsent()
        ):
            super().loseConnection()  # type: ignore[misc]
            return
        # Nothing to flush, here or in the kernel: Twisted would start
        # writing only to learn that on the next wake-up (two epoll_ctl calls
        # and an event); close once the batch of events being dispatched is
        # done, or else on the reactor's next pass: never inside the caller.
        # After an end of input (the usual way here) the poller has stopped
        # reading already: no calls to learn that.
        poller = self._poller
        if not isinstance(poller, ErrorAwareDispatch) or self.socket.fileno() in poller._reads:
            self.stopReading()
        self.disconnecting = 1
        view, self._viewAtLoseConnection = self._viewAtLoseConnection, None
        closeAfterDispatch = getattr(self._poller, "closeAfterDispatch", None)
        if closeAfterDispatch is not None and closeAfterDispatch(self):
            # Closed before anything else happens on this connection: the
            # kernel's view read just now is its view at close.
            self._tcpInfoRaw = view
        else:
            self.reactor.callLater(0, self._closeFlushed)

    _viewAtLoseConnection: bytes | None = None

    def _kernelUnsent(self) -> int:
        """
        Bytes the kernel still holds to send, or has sent without the peer
        acknowledging them (non-zero: some).  While there are any, closing
        waits for a writable event as Twisted's does, so a peer that stopped
        reading is still caught by whatever times the close out.

        Read from C{TCP_INFO} where the kernel's view is read at close anyway
        (one system call for both, when the close follows at once), else
        with C{SIOCOUTQ}.
        """
        if self.readsKernelAtClose:
            raw = readTcpInfoBytes(self.socket)
            held = None if raw is None else heldInTcpInfo(raw)
            if held is not None:
                if not held:
                    self._viewAtLoseConnection = raw
                return held
        return unsentBytes(self.socket)

    def _closeFlushed(self) -> None:
        if not self.connected or self._aborting:
            # Lost or aborted meanwhile; that path reports it.
            return
        if self._tempDataLen or self.dataBuffer or self.producer is not None:
            # Written to (or given a producer) after loseConnection: flush
            # first, and doWrite closes once the buffer is empty (and reads
            # the kernel's view afresh then).
            self._tcpInfoRaw = None
            self.startWriting()
            return
        self.connectionLost(_DONE)


class DirectServer(DirectConnection, tcp.Server):
    """
    An accepted TCP connection that writes at once when it can (see
    L{DirectConnection}), with C{TCP_NODELAY} on: each write is one complete
    message or the echo of one, and Nagle's algorithm would hold it back
    for an ACK.
    """

    # Its protocol is a TrackedConnection, as a rule: most connections
    # never buffer a byte.
    asksForBackpressure = True

    def __init__(
        self,
        sock: socket.socket,
        protocol: IProtocol,
        client: tuple[Any, ...],
        server: tcp.Port | None,
        sessionno: int,
        reactor: Any,
    ) -> None:
        # What tcp.Server.__init__ (and the Connection and FileDescriptor
        # initialisers under it) set, less the log prefix and the repr it
        # formats for every connection: those are built on first use.
        self.reactor = reactor
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.socket = sock
        sock.setblocking(False)
        self.protocol = protocol
        if len(client) != 2:
            self._addressType = IPv6Address
        self.server = server  # type: ignore[assignment]
        self.client = client
        self.sessionno = sessionno
        self.hostname = client[0]
        # Where this connection registers for events: see _poller.
        self._poller = pollerFor(reactor) if self.batchedPoller else reactor
        if not self.closeAtOnce:
            self._shouldShutdown = True
        # Not contextlib.suppress: this runs once per accepted connection.
        try:  # noqa: SIM105
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, self.noDelay)
        except OSError:  # pragma: no cover - a TCP socket accepts it on Linux
            pass
        self.startReading()
        self.connected = 1

    def describePeer(self) -> str:
        """
        L{describeAddress <tcplife.events.describeAddress>} of C{getPeer}'s
        address, made from the client's host and port without building the
        address object first (each event that names the peer asks).
        """
        if type(self).getPeer is not _serverGetPeer:
            return describeAddress(self.getPeer())  # type: ignore[no-untyped-call]
        client = self.client
        if self._addressType is IPv6Address:
            return f"[{client[0]}]:{client[1]}"
        return f"{client[0]}:{client[1]}"

    def getHost(self) -> IAddress:
        # An accepted socket's local address is its listener's, unless the
        # listener is bound to every address (0.0.0.0, ::): then only the
        # kernel knows which one the client reached.  Known without a system
        # call per connection, and still known after the close.
        port: Any = self.server
        if port is None:
            return super().getHost()  # type: ignore[no-any-return, no-untyped-call]
        host = port.__dict__.get("_connectionHost", _UNKNOWN)
        if host is _UNKNOWN:
            listening = port.getHost()
            host = port._connectionHost = None if listening.host in _EVERY_ADDRESS else listening
        if host is None:
            return super().getHost()  # type: ignore[no-any-return, no-untyped-call]
        return host  # type: ignore[no-any-return]

    def _makeLogstr(self) -> str | None:
        """
        C{tcp.Server}'s log prefix, C{"Protocol,sessionno,host"}.
        """
        # After connectionLost the protocol is gone; so is the need.
        protocol = getattr(self, "protocol", None)
        return f"{self._getLogPrefix(protocol)},{self.sessionno},{self.hostname}"

    def __repr__(self) -> str:
        port = self.server._realPortNumber if self.server is not None else None
        protocol = getattr(self, "protocol", None)
        return f"<{protocol.__class__.__name__} #{self.sessionno} on {port}>"


def acceptSocket(listener: socket.socket, family: int) -> tuple[socket.socket, Any]:
    """
    C{listener.accept()}, without its conversion of the listener's family
    and type to enums on every call: C{family} is the port's, known already.
    """
    fd, address = listener._accept()  # type: ignore[attr-defined]
    return socket.socket(family, _SOCK_STREAM, 0, fd), address


def acceptWithEnums(listener: socket.socket, family: int) -> tuple[socket.socket, Any]:
    """
    C{listener.accept()} itself, as Twisted's accept loop calls it.
    """
    return listener.accept()


class AcceptsWithoutEnums:
    """
    The flag of an accept loop that calls L{acceptSocket}.
    """

    #: Accept with L{acceptSocket}, which skips C{socket.accept}'s conversion
    #: of the family and type to enums on every call.  C{False}:
    #: C{socket.accept()} itself, as Twisted does.  Read once per burst of
    #: accepts.
    acceptWithoutEnums = True


class DirectAccepts(AcceptsWithoutEnums):
    """
    C{tcp.Port.doRead}'s accept loop, flat: per connection it skips the
    generator, the buffering of log events and the enum conversions of
    C{socket.accept}, which together cost about as much as the accept.

    Any error but "no more clients" hands the rest of the burst to Twisted's
    own loop, which knows each one (C{EMFILE} recovery, C{EPERM} from
    netfilter, C{ECONNABORTED}, ...).  Mix in before C{tcp.Port}.
    """

    if TYPE_CHECKING:
        # Provided by tcp.Port.
        socket: Any
        addressFamily: Any
        factory: Any
        transport: Callable[..., Any]
        reactor: Any
        sessionno: int
        numberAccepts: int

        def _buildAddr(self, address: tuple[Any, ...]) -> IAddress: ...

    def doRead(self) -> None:
        numAccepts = self.numberAccepts
        listener = self.socket
        family = self.addressFamily
        factory = self.factory
        makeTransport = self.transport
        reactor = self.reactor
        accept = acceptSocket if self.acceptWithoutEnums else acceptWithEnums
        accepted = 0
        while accepted < numAccepts:
            try:
                skt, address = accept(listener, family)
            except BlockingIOError:
                break
            except OSError:
                tcp.Port.doRead(self)  # type: ignore[arg-type]
                return
            accepted += 1
            try:
                if len(address) == 4:
                    # IPv6: keep the scope id, as Twisted does.
                    host = socket.getnameinfo(address, _NI_NUMERIC)[0]
                    address = (host, *address[1:])
                protocol = factory.buildProtocol(self._buildAddr(address))
                if protocol is None:
                    skt.close()
                    continue
                sessionno = self.sessionno
                self.sessionno = sessionno + 1
                transport = makeTransport(skt, protocol, address, self, sessionno, reactor)
            except BaseException:
                # A broken factory: log it, drop this client (Twisted would
                # leave its socket to the garbage collector) and go on.
                skt.close()
                log.deferr()
                continue
            try:
                protocol.makeConnection(transport)
            except BaseException:
                # As tcp.Port.doRead: logged; the connection stays.
                log.deferr()
        # Twisted's scaling: a full burst suggests more waiting next time.
        if accepted == self.numberAccepts:
            self.numberAccepts += 20
        else:
            self.numberAccepts = max(1, accepted)
