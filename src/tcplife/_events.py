"""
The lifecycle events: the one place that knows their names and fields.

Every event carries a C{lifecycle} field naming the phase of the textbook's
call sequence it stands for.  The field names are a public contract (see the
README): log readers select on them, so change them only with a major release.
"""

from __future__ import annotations

from time import time
from typing import Final

from twisted.logger import Logger, LogLevel

LISTEN: Final = "listen"
STOP_LISTENING: Final = "stop-listening"
ACCEPT: Final = "accept"
CONNECT: Final = "connect"
CONNECTED: Final = "connected"
CONNECT_FAILED: Final = "connect-failed"
READ: Final = "read"
WRITE: Final = "write"
HALF_CLOSE: Final = "half-close"
CLOSE: Final = "close"

#: Every phase, in the order a connection lives through them.
PHASES: Final = (
    LISTEN,
    ACCEPT,
    CONNECT,
    CONNECTED,
    CONNECT_FAILED,
    READ,
    WRITE,
    HALF_CLOSE,
    CLOSE,
    STOP_LISTENING,
)

#: Who ended a connection (or half of it).
LOCAL: Final = "local"
PEER: Final = "peer"

#: How a connection ended.
FIN: Final = "fin"
RESET: Final = "reset"
ABORT: Final = "abort"
TIMEOUT: Final = "timeout"

_info = LogLevel.info
_warn = LogLevel.warn


def _literal(text: str) -> str:
    """
    C{text} made safe to stand in a PEP 3101 format string as itself.
    """
    if "{" in text or "}" in text:
        return text.replace("{", "{{").replace("}", "}}")
    return text


class LifecycleLog:
    """
    Emits lifecycle events to a L{Logger}'s observer.

    Each event is the dictionary C{Logger.emit} would build, with the same
    keys in the same order, handed straight to the logger's observer.  Its
    C{log_format} is the message already rendered (braces escaped), so
    observers that render or flatten the format (C{twist}'s text and JSON
    file observers) have no fields to look up: that work, not the event,
    was most of the CPU an accepted connection cost.  Every structured field
    is there as before; select events on C{lifecycle}, not on C{log_format}.

    @ivar trace: Whether per-read and per-write events are emitted.  Callers on
        the hot path test this flag themselves so that, when it is off, a read
        or a write costs no call at all.
    @ivar level: The lowest level any observer keeps, when known (C{twist
        --log-level}); events below it are not built at all.  L{None}: emit
        everything.
    """

    def __init__(
        self,
        logger: Logger | None = None,
        *,
        trace: bool = False,
        level: LogLevel | None = None,
    ) -> None:
        self.logger = logger if logger is not None else Logger(namespace="tcplife")
        self.trace = trace
        self.level = level

    @property
    def level(self) -> LogLevel | None:
        return self._level

    @level.setter
    def level(self, level: LogLevel | None) -> None:
        self._level = level
        # Tested on every per-connection event: a plain attribute, not a
        # comparison of constants.
        self._info = level is None or level <= _info

    def _emit(self, level: LogLevel, message: str, event: dict[str, object]) -> None:
        # Logger.emit's own fields, in its order, without its per-call
        # validation of the (constant) level.
        logger = self.logger
        event["log_logger"] = logger
        event["log_level"] = level
        event["log_namespace"] = logger.namespace
        event["log_source"] = logger.source
        event["log_format"] = message
        event["log_time"] = time()
        logger.observer(event)

    def listen(self, address: str, backlog: int | None, endpoint: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"listen on {_literal(address)} (backlog {backlog})",
                {
                    "lifecycle": LISTEN,
                    "address": address,
                    "backlog": backlog,
                    "endpoint": endpoint,
                },
            )

    def stopListening(self, address: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"stop-listening on {_literal(address)}",
                {
                    "lifecycle": STOP_LISTENING,
                    "address": address,
                },
            )

    def accept(self, connId: int, peer: str, local: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"accept #{connId} from {_literal(peer)} on {_literal(local)}",
                {
                    "lifecycle": ACCEPT,
                    "role": "server",
                    "conn_id": connId,
                    "peer": peer,
                    "local": local,
                },
            )

    def connect(self, target: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"connect to {_literal(target)}",
                {
                    "lifecycle": CONNECT,
                    "role": "client",
                    "target": target,
                },
            )

    def connected(self, connId: int, local: str, peer: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"connected #{connId} from {_literal(local)} to {_literal(peer)}",
                {
                    "lifecycle": CONNECTED,
                    "role": "client",
                    "conn_id": connId,
                    "local": local,
                    "peer": peer,
                },
            )

    def connectFailed(self, target: str, reason: str) -> None:
        if self.level is None or self.level <= _warn:
            self._emit(
                _warn,
                f"connect-failed to {_literal(target)}: {_literal(reason)}",
                {
                    "lifecycle": CONNECT_FAILED,
                    "role": "client",
                    "target": target,
                    "reason": reason,
                },
            )

    def read(self, connId: int, nbytes: int) -> None:
        if self._info:
            self._emit(
                _info,
                f"read #{connId} {nbytes} bytes",
                {
                    "lifecycle": READ,
                    "conn_id": connId,
                    "bytes": nbytes,
                },
            )

    def write(self, connId: int, nbytes: int) -> None:
        if self._info:
            self._emit(
                _info,
                f"write #{connId} {nbytes} bytes",
                {
                    "lifecycle": WRITE,
                    "conn_id": connId,
                    "bytes": nbytes,
                },
            )

    def halfClose(self, connId: int, initiator: str) -> None:
        if self._info:
            self._emit(
                _info,
                f"half-close #{connId} by {initiator}",
                {
                    "lifecycle": HALF_CLOSE,
                    "conn_id": connId,
                    "initiator": initiator,
                },
            )

    def close(
        self,
        connId: int,
        role: str,
        initiator: str,
        how: str,
        bytesIn: int,
        bytesOut: int,
        duration: float,
    ) -> None:
        if self._info:
            self._emit(
                _info,
                f"close #{connId} by {initiator} ({how}): "
                f"{bytesIn} bytes in, {bytesOut} bytes out, {duration:.3f} s",
                {
                    "lifecycle": CLOSE,
                    "role": role,
                    "conn_id": connId,
                    "initiator": initiator,
                    "how": how,
                    "bytes_in": bytesIn,
                    "bytes_out": bytesOut,
                    "duration_s": duration,
                },
            )
