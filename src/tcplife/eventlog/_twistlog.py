"""
twist's JSON log (C{twist --log-format json}), written the same, for less.

twist's own observer (C{twisted.logger.jsonFileLogObserver}) builds a new
C{JSONEncoder} for every event and flushes the file after each one: a
C{write} system call per event, which on a server logging three events a
connection cost more than the connection itself.  The observer here writes
the very same records (RFC 7464: RS, Twisted's JSON of the event, newline;
the same encoder settings, the same fields) with one encoder kept, and
flushes at least every 100 ms, at once for a warning or worse, and when the
reactor shuts down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.interfaces import IDelayedCall, IReactorCore
from twisted.logger import FileLogObserver, ILogObserver, Logger, LogLevel, jsonFileLogObserver
from twisted.logger._flatten import flattenEvent
from twisted.logger._json import objectSaveHook
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

#: Seconds a record may wait in the file's buffer.
FLUSH_INTERVAL = 0.1

_FLUSHED_AT_ONCE = frozenset({LogLevel.warn, LogLevel.error, LogLevel.critical})


# What objectSaveHook makes of the two objects every event has, its logger
# and its level: made once, not per event (a level's UUID is formatted anew
# each time otherwise).
_UNPERSISTABLE: dict[str, Any] = {"unpersistable": True}
_LEVELS: dict[Any, dict[str, Any]] = {
    level: objectSaveHook(level) for level in LogLevel.iterconstants()
}
_CONSTANT = type(LogLevel.info)


def _unencodable(value: object) -> Any:
    # eventAsJSON's default: bytes as charmap text, Twisted's own types
    # (levels, failures) by their savers, anything else marked unpersistable.
    if isinstance(value, Logger):
        return _UNPERSISTABLE
    saved = _LEVELS.get(value) if type(value) is _CONSTANT else None
    if saved is not None:
        return saved
    if isinstance(value, bytes):
        return value.decode("charmap")
    return objectSaveHook(value)


# The settings json.dumps(event, default=..., skipkeys=True) uses inside
# eventAsJSON, in one encoder for every event.
_encode = json.JSONEncoder(default=_unencodable, skipkeys=True).encode


def eventAsJSONText(event: dict[str, Any]) -> str:
    """
    C{twisted.logger.eventAsJSON}'s text of C{event}, as a record of
    C{jsonFileLogObserver}'s: RS, the JSON, newline.
    """
    format = event.get("log_format")
    # A format with no field to flatten (the per-connection events' rendered
    # messages) is left as flattenEvent would leave it.
    if format is not None and "{" in format:
        flattenEvent(event)
    return f"\x1e{_encode(event)}\n"


class _LaterFlush:
    """
    The log file, as C{FileLogObserver} sees it: its C{flush} is put off to
    within L{FLUSH_INTERVAL}, or made now from another thread.
    """

    def __init__(self, outFile: IO[Any], reactor: IReactorCore) -> None:
        self._outFile = outFile
        self._reactor = reactor
        self._pending: IDelayedCall | None = None
        self.write = outFile.write
        self.encoding = getattr(outFile, "encoding", None)

    def flush(self) -> None:
        if self._pending is not None:
            return
        if not isInIOThread():
            # callLater is for the reactor's thread only.
            self.flushNow()
            return
        self._pending = self._reactor.callLater(FLUSH_INTERVAL, self._flushed)  # type: ignore[attr-defined]

    def _flushed(self) -> None:
        self._pending = None
        self.flushNow()

    def flushNow(self) -> None:
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        self._outFile.flush()


@implementer(ILogObserver)
class BatchedJSONLogObserver:
    """
    A C{jsonFileLogObserver} whose writes are batched: see the module.
    """

    def __init__(self, outFile: IO[Any], reactor: IReactorCore) -> None:
        self._file = _LaterFlush(outFile, reactor)
        self._observe = FileLogObserver(self._file, eventAsJSONText)  # type: ignore[arg-type]
        # Whatever is buffered when the reactor has stopped is written then,
        # before the process goes (tcplife's own exit comes after this).
        reactor.addSystemEventTrigger("after", "shutdown", self._file.flushNow)

    def __call__(self, event: dict[str, Any]) -> None:
        self._observe(event)
        if event.get("log_level") in _FLUSHED_AT_ONCE:
            self._file.flushNow()


def batchJSONLog(twistOptions: Any, reactor: IReactorCore) -> bool:
    """
    Under C{twist --log-format json}, have twist write its log with
    L{BatchedJSONLogObserver} instead of its own observer; any other format
    is left alone.

    @param twistOptions: twist's options (a plugin's C{options.parent}).
    @return: Whether twist's observer was replaced.
    """
    try:
        factory = twistOptions["fileLogObserverFactory"]
    except (KeyError, TypeError):
        return False
    if factory is not jsonFileLogObserver:
        return False
    make: Callable[[IO[Any]], ILogObserver] = lambda outFile: BatchedJSONLogObserver(  # noqa: E731
        outFile, reactor
    )
    twistOptions["fileLogObserverFactory"] = make
    return True
