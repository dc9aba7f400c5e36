"""
Dispatching a batch of epoll events as Twisted's poll reactors do, with one
correction: an C{EPOLLERR} is read, not taken for an end of input, so a RST
is always reported as a lost connection.  Connections that asked to close
during a batch (L{ErrorAwareDispatch.closeAfterDispatch}) are closed once it
is done, where Twisted would need a delayed call each.

Mixed into both of tcplife's dispatchers: the batched poller that serves any
reactor (L{tcplife.internet._poller}) and tcplife's own reactor
(L{tcplife.internet.directreactor}).
"""

from __future__ import annotations

import select
import sys
from typing import TYPE_CHECKING, Any

from twisted.internet import error, main
from twisted.python import log

EPOLLIN = getattr(select, "EPOLLIN", 0)
EPOLLOUT = getattr(select, "EPOLLOUT", 0)
EPOLLERR = getattr(select, "EPOLLERR", 0)
EPOLLHUP = getattr(select, "EPOLLHUP", 0)

_NO_DESCRIPTOR = error.ConnectionFdescWentAway("Filedescriptor went away")


class ErrorAwareDispatch:
    """
    Twisted's C{_doReadOrWrite} for epoll events, with C{EPOLLERR} read.

    Twisted's poll reactors take an event with HUP but not IN, while reading,
    for a clean end of input.  Linux reports a RST that way for a moment
    (the socket is marked closed just before both directions are marked shut
    down, and a poll in between sees HUP and ERR without IN), so a reset
    could be logged as a FIN.  Here ERR is read: the C{recv} meets the error.

    Mixed into L{BatchedPoller} and L{tcplife.internet.directreactor.DirectEPollReactor};
    needs C{_reads} and C{_writes} (the descriptors being read and written),
    C{removeReader}, C{removeWriter} and C{_disconnectSelectable}.
    """

    if TYPE_CHECKING:
        _reads: set[int]
        _writes: set[int]

        def removeReader(self, reader: Any) -> None: ...

        def removeWriter(self, writer: Any) -> None: ...

    #: While a batch is being dispatched: the connections to close once it
    #: is done (see L{closeAfterDispatch}).
    _closing: list[Any] | None = None

    def _epollSet(self) -> Any:
        """
        The epoll object the descriptors are registered with.
        """
        raise NotImplementedError

    def readInsteadOfWriting(self, selectable: Any) -> None:
        """
        Watch C{selectable} for reading instead of writing (a client whose
        connect is complete): one C{epoll_ctl}, where C{addReader} and
        C{removeWriter} would make two.
        """
        fd = selectable.fileno()
        writes = self._writes
        if fd in writes and fd not in self._reads:
            self._epollSet().modify(fd, EPOLLIN)
            writes.remove(fd)
            self._reads.add(fd)
            return
        self.addReader(selectable)  # type: ignore[attr-defined]
        self.removeWriter(selectable)

    def closeAfterDispatch(self, connection: Any) -> bool:
        """
        Call C{connection._closeFlushed()} once the batch being dispatched is
        done: after its caller has returned, as C{callLater(0)} would, without
        a delayed call (and its heap operations) per connection.  Returns
        C{False}, having done nothing, when no batch is being dispatched.
        """
        closing = self._closing
        if closing is None:
            return False
        closing.append(connection)
        return True

    def stopWatching(self, selectable: Any, fd: int) -> None:
        """
        C{removeReader} and C{removeWriter} for a connection that is closing,
        each only where it is still registered: by then the end of input or
        the close has removed it already, most of the time, and each of the
        two calls would ask the connection its descriptor only to find that.

        @param fd: C{selectable}'s descriptor (C{-1} if closed already: then
            both calls find it by identity).
        """
        if fd == -1:
            self.removeReader(selectable)
            self.removeWriter(selectable)
            return
        if fd in self._reads:
            self.removeReader(selectable)
        if fd in self._writes:
            self.removeWriter(selectable)

    def _dispatchAll(self, events: list[tuple[int, int]], selectables: dict[int, Any]) -> None:
        """
        Dispatch one C{epoll.poll} batch, then close the connections that
        asked to be closed meanwhile.
        """
        # Restored, not cleared, at the end: a handler may iterate the
        # reactor and so dispatch a batch inside this one.
        previous = self._closing
        closing: list[Any] = []
        self._closing = closing
        try:
            self._dispatchBatch(events, selectables)
        finally:
            # From here on a close joins the enclosing batch, if any, or
            # waits for the reactor's next pass.
            self._closing = previous
            if closing:
                self._closeAll(closing)

    @staticmethod
    def _closeAll(closing: list[Any]) -> None:
        # Every one of them, whatever the others raise: a connection left out
        # would stay open, neither read nor written nor scheduled.
        interrupted: KeyboardInterrupt | None = None
        for connection in closing:
            try:
                connection._closeFlushed()
            except KeyboardInterrupt as e:
                # As callWithLogger and the stock reactor: not swallowed,
                # once the rest are closed.
                interrupted = e
            except BaseException:
                log.err(None, f"Unhandled error closing {connection!r}")
        if interrupted is not None:
            raise interrupted

    def _dispatchBatch(self, events: list[tuple[int, int]], selectables: dict[int, Any]) -> None:
        """
        Input on a descriptor being read, the event nearly every message is,
        goes straight to C{doRead}, as L{_doReadOrWrite} would send it;
        everything else goes through that.
        """
        reads = self._reads
        why: Any
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                # Removed by an earlier event of this same batch.
                continue
            try:
                if event == EPOLLIN and fd in reads:
                    try:
                        # As _doReadOrWrite: a descriptor that went away
                        # (fileno -1, or raising) is disconnected, not read.
                        if selectable.fileno() == -1:
                            why, inRead = _NO_DESCRIPTOR, False
                        else:
                            why, inRead = selectable.doRead(), True
                    except BaseException:
                        # What doRead raised is the reason, and not a read
                        # result (no half-close).
                        why, inRead = sys.exc_info()[1], False
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, inRead)  # type: ignore[attr-defined]
                else:
                    self._doReadOrWrite(selectable, fd, event)
            except KeyboardInterrupt:
                # As callWithLogger and the stock reactor: not swallowed.
                raise
            except BaseException:
                # What callWithLogger would have done: log, carry on.
                log.err(None, f"Unhandled error dispatching an event to {selectable!r}")

    def _doReadOrWrite(self, selectable: Any, fd: int, event: int) -> None:
        # posixbase._PollLikeMixin._doReadOrWrite, step for step, but for one
        # case: ERR without IN on a descriptor being read is read, so that
        # the recv meets the error, where Twisted would take it for a clean
        # end of input.  (Twisted also reads on IN when the descriptor is not
        # being read: a connecting client's doRead is its doConnect.)
        why: Any = None
        inRead = False
        reading = fd in self._reads
        if (
            event & (EPOLLHUP | EPOLLERR)
            and not event & EPOLLIN
            and not (event & EPOLLERR and reading)
        ):
            if reading:
                inRead = True
                why = main.CONNECTION_DONE
            else:
                why = main.CONNECTION_LOST
        else:
            try:
                if selectable.fileno() == -1:
                    why = _NO_DESCRIPTOR
                else:
                    # ERR without IN gets here only while reading (above).
                    if event & (EPOLLIN | EPOLLERR):
                        why = selectable.doRead()
                        inRead = True
                    if not why and event & EPOLLOUT:
                        why = selectable.doWrite()
                        inRead = False
            except BaseException:
                why = sys.exc_info()[1]
                log.err()
        if why:
            self._disconnectSelectable(selectable, why, inRead)  # type: ignore[attr-defined]
