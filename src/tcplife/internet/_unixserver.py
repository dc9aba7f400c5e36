"""
The server side of a UNIX-socket connection, whose graceful close is not
taken for a reset.

A UNIX socket has no FIN handshake: when the peer closes, the kernel marks
our socket shut down both ways at once, and epoll reports it hung up
(C{EPOLLHUP}).  A server that has read the peer's EOF and is closing
gracefully has stopped reading and waits for the socket to be writable, to
finish its close there.  If the peer closes first (a client that has its
echo and does not wait for our EOF), the event is C{EPOLLHUP} without
C{EPOLLIN} on a descriptor that is not being read, and Twisted's poll
reactors take that for a lost connection (C{CONNECTION_LOST}) without
calling C{doWrite}: a clean exchange was logged C{how=reset}.  (TCP does not
meet this: there the hang-up comes only after our own FIN, that is after
our close.)
"""

from __future__ import annotations

import socket

from twisted.internet import unix
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure


class LifecycleUNIXServer(unix.Server):
    """
    L{twisted.internet.unix.Server}, except that a hang-up in the middle of
    a graceful close with nothing left to send ends the connection as done,
    not lost.
    """

    def connectionLost(self, reason: Failure) -> None:
        # type(), not isinstance: ConnectionAborted and the others are
        # subclasses, and they mean what they say.
        if type(reason.value) is ConnectionLost and self._closedGracefully():
            reason = Failure(ConnectionDone())
        super().connectionLost(reason)

    def _closedGracefully(self) -> bool:
        """
        Whether the close under way would have ended as done had it been
        given its C{doWrite}: C{loseConnection} was called, all our output
        has been sent, and the peer did not reset.
        """
        unsent = len(self.dataBuffer) - self.offset + self._tempDataLen
        if not self.disconnecting or unsent or self.producer is not None:
            return False
        # A UNIX peer that closes with our output unread in its buffer
        # leaves ECONNRESET pending on our socket: its way of a reset.
        try:
            return self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        except OSError:
            return False
