"""
Connection events in batches, on any reactor: one epoll descriptor per
reactor, watched by the reactor as a single reader.

Twisted's poll reactors run every read or write event through
C{log.callWithLogger}, which asks the descriptor for its log prefix and
pushes a logging context (two dictionary copies) around the call.  On a busy
server that is a sixth of the CPU spent per echoed message.  tcplife's own
reactor (L{tcplife.internet.directreactor}) dispatches directly; on every other
reactor, L{BatchedPoller} keeps tcplife's connections in an epoll set of its
own.  The reactor sees one descriptor, the epoll set, readable whenever any
connection has an event, and calls L{BatchedPoller.doRead} once (with its
logging context, once) for the whole batch.

Dispatching follows Twisted's C{_doReadOrWrite} and C{_disconnectSelectable}
step for step, with one correction: an C{EPOLLERR} is read, not taken for an
end of input, so a RST is always reported as a lost connection.  Connections
that asked to close during a batch (L{ErrorAwareDispatch.closeAfterDispatch})
are closed once it is done, where Twisted would need a delayed call each.

Only where C{select.epoll} exists (Linux); elsewhere connections register with
the reactor as usual.
"""

from __future__ import annotations

import select
from contextlib import suppress
from typing import Any

from twisted.internet import error, main
from twisted.internet.interfaces import IHalfCloseableDescriptor, IReadDescriptor
from twisted.python import log
from twisted.python.failure import Failure
from zope.interface import implementer

from ._dispatch import EPOLLIN, EPOLLOUT, ErrorAwareDispatch

# Present on Linux only; elsewhere pollerFor hands out the reactor itself.
_HAVE_EPOLL = hasattr(select, "epoll")

_DONE = Failure(main.CONNECTION_DONE)
_LOST = Failure(main.CONNECTION_LOST)


@implementer(IReadDescriptor)
class BatchedPoller(ErrorAwareDispatch):
    """
    An epoll set of connections, read by a reactor as one descriptor.

    Offers the reactor's C{addReader}/C{addWriter}/C{removeReader}/
    C{removeWriter} to the descriptors it holds, and registers itself with
    the reactor only while it holds any (so an idle process, or a test that
    closed everything, leaves no reader behind).  The reactor's
    C{getReaders}, C{getWriters} and C{removeAll} show the connections it
    holds, not itself (L{showThrough}).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._epoll = select.epoll()
        self._selectables: dict[int, Any] = {}
        self._reads: set[int] = set()
        self._writes: set[int] = set()

    # -- for the reactor -----------------------------------------------------

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _epollSet(self) -> Any:
        return self._epoll

    def logPrefix(self) -> str:
        return "tcplife-poller"

    def __repr__(self) -> str:
        # What trial's dirty-reactor report shows: the connections, as it
        # would list them had they registered with the reactor themselves.
        held = list(self._selectables.values())
        shown = ", ".join(repr(selectable) for selectable in held[:5])
        more = f", and {len(held) - 5} more" if len(held) > 5 else ""
        return f"<BatchedPoller holding {len(held)}: {shown}{more}>"

    def doRead(self) -> None:
        # Level-triggered: whatever does not fit in this batch is reported
        # again on the reactor's next pass.
        selectables = self._selectables
        self._dispatchAll(self._epoll.poll(0, max(1, len(selectables))), selectables)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor is shutting down and disconnects every descriptor it
        # has; ours are its descriptors too.
        for selectable in list(self._selectables.values()):
            self.removeReader(selectable)
            self.removeWriter(selectable)
            try:
                selectable.connectionLost(reason)
            except BaseException:
                log.err(None, f"Error disconnecting {selectable!r}")

    def showThrough(self, reactor: Any) -> None:
        """
        Make C{reactor}'s C{getReaders}, C{getWriters}, C{removeAll} (and
        so C{disconnectAll}), C{removeReader} and C{removeWriter} see the
        connections held here, not this set: as
        if they had registered with the reactor, which is what Twisted's
        callers (trial's janitor, a reactor's shutdown, tests that look for a
        transport among the readers) rely on.  This reactor only: its methods
        are wrapped on the instance.
        """
        getReaders = reactor.getReaders
        getWriters = reactor.getWriters
        removeAll = reactor.removeAll
        removeReader = reactor.removeReader
        removeWriter = reactor.removeWriter

        def getReadersWithHeld() -> list[Any]:
            return [each for each in getReaders() if each is not self] + self.getReaders()

        def getWritersWithHeld() -> list[Any]:
            return [each for each in getWriters() if each is not self] + self.getWriters()

        def removeAllWithHeld() -> list[Any]:
            return [each for each in removeAll() if each is not self] + self.removeAll()

        # A caller that takes a connection off the reactor before handing
        # its descriptor on (adoptStreamConnection's callers do) must stop
        # it here, or it goes on reading what the adopter is owed.
        def removeReaderWithHeld(reader: Any) -> None:
            if self._holds(reader):
                self.removeReader(reader)
            else:
                removeReader(reader)

        def removeWriterWithHeld(writer: Any) -> None:
            if self._holds(writer):
                self.removeWriter(writer)
            else:
                removeWriter(writer)

        reactor.getReaders = getReadersWithHeld
        reactor.getWriters = getWritersWithHeld
        reactor.removeAll = removeAllWithHeld
        reactor.removeReader = removeReaderWithHeld
        reactor.removeWriter = removeWriterWithHeld

    def _holds(self, selectable: Any) -> bool:
        """
        Whether C{selectable} is one of the connections held here.
        """
        fd = selectable.fileno()
        if fd == -1:
            return any(held is selectable for held in self._selectables.values())
        return self._selectables.get(fd) is selectable

    def removeAll(self) -> list[Any]:
        """
        Stop watching every connection held, and return them, as
        C{IReactorFDSet.removeAll} does.
        """
        held = list(self._selectables.values())
        for fd in self._selectables:
            # A descriptor closed already has left the epoll set by itself.
            with suppress(OSError):
                self._epoll.unregister(fd)
        self._selectables.clear()
        self._reads.clear()
        self._writes.clear()
        self.reactor.removeReader(self)
        return held

    # -- for the connections -------------------------------------------------

    def addReader(self, reader: Any) -> None:
        self._add(reader, self._reads, self._writes, EPOLLIN, EPOLLOUT)

    def addWriter(self, writer: Any) -> None:
        self._add(writer, self._writes, self._reads, EPOLLOUT, EPOLLIN)

    def removeReader(self, reader: Any) -> None:
        # Most calls find nothing to do (a close stops reading three times).
        fd = reader.fileno()
        if fd in self._reads or fd == -1:
            self._remove(reader, fd, self._reads, self._writes, EPOLLOUT)

    def removeWriter(self, writer: Any) -> None:
        fd = writer.fileno()
        if fd in self._writes or fd == -1:
            self._remove(writer, fd, self._writes, self._reads, EPOLLIN)

    def getReaders(self) -> list[Any]:
        return [self._selectables[fd] for fd in self._reads]

    def getWriters(self) -> list[Any]:
        return [self._selectables[fd] for fd in self._writes]

    def _add(self, xer: Any, primary: set[int], other: set[int], event: int, anti: int) -> None:
        # EPollReactor._add: one epoll_ctl, and the books only once it worked.
        fd = xer.fileno()
        if fd in primary:
            return
        if fd in other:
            self._epoll.modify(fd, event | anti)
        else:
            self._epoll.register(fd, event)
            if not self._selectables:
                # The first one: the set joins the reactor.  Whatever takes
                # it from the reactor (trial's janitor, a reactor shutdown,
                # a failed doRead) empties it too (removeAll, connectionLost),
                # so the next one puts it back.
                self.reactor.addReader(self)
        primary.add(fd)
        self._selectables[fd] = xer

    def _remove(self, xer: Any, fd: int, primary: set[int], other: set[int], anti: int) -> None:
        if fd == -1:
            # Closed already: find it by identity, as EPollReactor does.
            found = [key for key, known in self._selectables.items() if known is xer]
            if not found:
                return
            fd = found[0]
        if fd not in primary:
            return
        if fd in other:
            self._epoll.modify(fd, anti)
        else:
            del self._selectables[fd]
            # The descriptor may be closed already; the kernel dropped it
            # then.  (Not contextlib.suppress: this runs once per connection.)
            try:  # noqa: SIM105
                self._epoll.unregister(fd)
            except OSError:
                pass
        primary.remove(fd)
        if not self._selectables:
            self.reactor.removeReader(self)

    def _disconnectSelectable(self, selectable: Any, why: Any, isRead: bool) -> None:
        # ReactorBase._disconnectSelectable, with this set's removal.
        self.removeReader(selectable)
        kind = why.__class__
        if kind is error.ConnectionDone:
            if isRead and IHalfCloseableDescriptor.providedBy(selectable):
                selectable.readConnectionLost(_DONE)
                return
            reason = _DONE
        elif kind is error.ConnectionLost:
            reason = _LOST
        else:
            reason = Failure(why)
        self.removeWriter(selectable)
        selectable.connectionLost(reason)


def pollerFor(reactor: Any) -> Any:
    """
    Where a connection of C{reactor} registers for events: a L{BatchedPoller}
    on Linux when the reactor dispatches through C{callWithLogger} (any
    C{posixbase} reactor but tcplife's own), otherwise the reactor itself.

    The answer is kept on the reactor (as C{_tcplifePoller}), not in a
    registry: the poller refers to its reactor, so a registry entry would
    keep both alive forever, while on the reactor they are collected with
    it.  This runs per connection: the lookup is one attribute.
    """
    try:
        return reactor._tcplifePoller
    except AttributeError:
        return _attachPoller(reactor)


def _attachPoller(reactor: Any) -> Any:
    if _HAVE_EPOLL and _dispatchesWithLogger(reactor):
        poller: Any = BatchedPoller(reactor)
        poller.showThrough(reactor)
    else:
        poller = reactor
    # A reactor that takes no attributes is asked again next time.
    with suppress(AttributeError):
        reactor._tcplifePoller = poller
    return poller


def _dispatchesWithLogger(reactor: Any) -> bool:
    from twisted.internet.posixbase import PosixReactorBase

    # A reactor that dispatches with ErrorAwareDispatch (tcplife's own)
    # dispatches directly already.
    return isinstance(reactor, PosixReactorBase) and not isinstance(reactor, ErrorAwareDispatch)
