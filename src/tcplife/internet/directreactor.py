"""
An epoll reactor that dispatches each event directly.

Twisted's epoll reactor runs every read or write event through
C{twisted.python.log.callWithLogger}, which asks the selectable for its log
prefix and pushes a logging context (two dictionaries) for the duration of
the call, so that legacy C{log.msg} calls made inside it are tagged with
that prefix.  On a busy server that is a good part of the CPU spent per
event.  L{DirectEPollReactor} calls the same C{_doReadOrWrite} without it;
an exception that escapes is still caught and logged, but legacy log
messages emitted inside a handler carry the default C{system} instead of
the connection's prefix.  C{twisted.logger} events are not affected.

Use it with C{twist --reactor tcplife-direct tcpecho ...} (the plugin is in
C{twisted/plugins/tcplife_reactors.py}), or call L{install} before anything
imports C{twisted.internet.reactor}.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor

from ._dispatch import ErrorAwareDispatch


class DirectEPollReactor(ErrorAwareDispatch, EPollReactor):
    """
    C{EPollReactor} without the per-event logging context, and with
    C{EPOLLERR} read rather than taken for an end of input (see
    L{ErrorAwareDispatch}).
    """

    def _epollSet(self) -> Any:
        return self._poller

    def doPoll(self, timeout: float | None) -> None:
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        self._dispatchAll(events, self._selectables)

    doIteration = doPoll


def install() -> None:
    """
    Install L{DirectEPollReactor} as the global reactor.
    """
    installReactor(DirectEPollReactor())  # type: ignore[no-untyped-call]


__all__ = ["DirectEPollReactor", "install"]
