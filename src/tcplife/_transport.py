"""
The server-side TCP transport of tcplife's ports: Twisted's, with a direct
write path.

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
from collections.abc import Iterable
from errno import EAGAIN, ENOBUFS
from typing import Any

from twisted.internet import abstract, main, tcp
from twisted.python.failure import Failure

_IPPROTO_TCP = socket.IPPROTO_TCP
_TCP_NODELAY = socket.TCP_NODELAY
_CONNECTION_DONE = main.CONNECTION_DONE
_CONNECTION_LOST = main.CONNECTION_LOST
# One Failure for every orderly close, as the reactor itself does.
_DONE = Failure(main.CONNECTION_DONE)

#: The most buffers one C{sendmsg} takes (Linux's C{IOV_MAX}).
IOV_MAX = 1024

_bufferWrite = abstract.FileDescriptor.write
_bufferWriteSequence = abstract.FileDescriptor.writeSequence


class DirectServer(tcp.Server):
    """
    An accepted TCP connection that writes at once when it can.

    Differences from C{tcp.Server}, none visible through C{ITransport}:

      - C{write} and C{writeSequence} call C{send}/C{sendmsg} right away when
        nothing is buffered; whatever the kernel does not take (and every
        write while something is buffered) goes through Twisted's buffer, so
        order, C{bufferSize} backpressure and close-after-flush hold;
      - reads take up to L{readSize} bytes at a time (asyncio's figure),
        while C{bufferSize} stays the producer's high-water mark;
      - C{TCP_NODELAY} is on: each write is one complete message or the
        echo of one, and Nagle's algorithm would hold it back for an ACK;
      - C{loseConnection} with nothing to flush closes on the next pass of
        the reactor loop instead of waiting for a writable event.

    Errors from an immediate send are not raised to the writer: the bytes are
    buffered and the next writable event meets the error and disconnects, as
    it would have with Twisted's buffered write.
    """

    #: Bytes asked of each C{recv}.
    readSize = 256 * 1024

    # close() alone sends the FIN: the descriptor is close-on-exec, so no
    # other process holds the socket open, and shutdown() would be one more
    # system call per connection.
    _shouldShutdown = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not contextlib.suppress: this runs once per accepted connection.
        try:  # noqa: SIM105
            self.socket.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - a TCP socket accepts it on Linux
            pass

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
        return _CONNECTION_DONE

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
            or type(data) is not bytes
            or not data
        ):
            # Twisted's checks, TLS routing and buffering, as always.
            super().write(data)  # type: ignore[no-untyped-call]
            return
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno not in (EAGAIN, ENOBUFS):
                # The next writable event meets this error and disconnects.
                _bufferWrite(self, data)
                return
            sent = 0
        if sent < len(data):
            _bufferWrite(self, data[sent:] if sent else data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        chunks = iovec if isinstance(iovec, list) else list(iovec)
        if (
            not chunks
            or len(chunks) > IOV_MAX
            or self._mustBuffer()
            or any(type(chunk) is not bytes for chunk in chunks)
        ):
            super().writeSequence(chunks)  # type: ignore[no-untyped-call]
            return
        try:
            sent = self.socket.sendmsg(chunks)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno not in (EAGAIN, ENOBUFS):
                _bufferWriteSequence(self, chunks)
                return
            sent = 0
        for index, chunk in enumerate(chunks):
            if sent < len(chunk):
                rest = chunks[index:]
                if sent:
                    rest[0] = chunk[sent:]
                _bufferWriteSequence(self, rest)
                return
            sent -= len(chunk)

    def loseConnection(self) -> None:
        if (
            self._tempDataLen
            or self.dataBuffer
            or self.producer is not None
            or self.TLS
            or self._writeDisconnected
            or self.disconnecting
            or not self.connected
        ):
            super().loseConnection()  # type: ignore[no-untyped-call]
            return
        # Nothing to flush: Twisted would start writing only to learn that
        # on the next wake-up (two epoll_ctl calls and an event); close on
        # the next pass instead, still never from inside the caller.
        self.stopReading()  # type: ignore[no-untyped-call]
        self.disconnecting = 1
        self.reactor.callLater(0, self._closeFlushed)  # type: ignore[attr-defined]

    def _closeFlushed(self) -> None:
        if not self.connected or self._aborting:
            # Lost or aborted meanwhile; that path reports it.
            return
        if self._tempDataLen or self.dataBuffer or self.producer is not None:
            # Written to (or given a producer) after loseConnection: flush
            # first, and doWrite closes once the buffer is empty.
            self.startWriting()  # type: ignore[no-untyped-call]
            return
        self.connectionLost(_DONE)
