"""
The lifecycle events: the one place that knows their names and fields.

Every event carries a C{lifecycle} field naming the phase of the textbook's
call sequence it stands for.  The field names are a public contract (see
docs/events.md): log readers select on them, so change them only with a major release.
"""

from __future__ import annotations

from time import time
from typing import Final, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.stdio import PipeAddress
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
ACCEPT_PAUSED: Final = "accept-paused"
ACCEPT_RESUMED: Final = "accept-resumed"
DRAIN: Final = "drain"
DRAIN_DEADLINE: Final = "drain-deadline"
DRAIN_ABORT: Final = "drain-abort"
DRAINED: Final = "drained"

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
    ACCEPT_PAUSED,
    ACCEPT_RESUMED,
    STOP_LISTENING,
    DRAIN,
    DRAIN_DEADLINE,
    DRAIN_ABORT,
    DRAINED,
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


def describeAddress(address: IAddress | None) -> str:
    """
    Render C{address} as C{host:port}, C{[v6host]:port}, a UNIX path, or
    C{stdio} (the C{stdio:} endpoint's standard input and output).

    The form is part of the event contract: log readers split on the last
    colon, so IPv6 hosts are bracketed as in URLs (RFC 3986).
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        if not name:
            return "unix:(unnamed)"
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
    if isinstance(address, PipeAddress):
        return "stdio"
    if address is None:
        return "unknown"
    return str(address)


def _literal(text: str) -> str:
    """
    C{text} made safe to stand in a PEP 3101 format string as itself.
    """
    if "{" in text or "}" in text:
        return text.replace("{", "{{").replace("}", "}}")
    return text


#: The format template of each per-connection event, for a L{LifecycleLog}
#: whose events are not rendered; the rendered messages say the same.
_TEMPLATES: Final = {
    ACCEPT: "accept #{conn_id} from {peer} on {local}",
    CONNECT: "connect to {target}",
    CONNECTED: "connected #{conn_id} from {local} to {peer}",
    CONNECT_FAILED: "connect-failed to {target}: {reason}",
    READ: "read #{conn_id} {bytes} bytes",
    WRITE: "write #{conn_id} {bytes} bytes",
    HALF_CLOSE: "half-close #{conn_id} by {initiator}",
    CLOSE: "close #{conn_id} by {initiator} ({how}): {bytes_in} bytes in, "
    "{bytes_out} bytes out, {duration_s:.3f} s",
}


class LifecycleLog:
    """
    Emits lifecycle events to a C{twisted.logger.Logger}'s observer.

    Each per-connection event (C{accept} through C{close}) is the
    dictionary C{Logger.emit} would build, with the same keys in the same
    order, handed straight to the logger's observer.  Its C{log_format} is
    the message already rendered (braces escaped), so observers that render
    or flatten the format (C{twist}'s text and JSON file observers) have no
    fields to look up: that work, not the event, was most of the CPU an
    accepted connection cost.  Every structured field is there as before;
    select events on C{lifecycle}, not on C{log_format}.  (With L{rendered}
    off, they go through C{Logger.emit} with a format template instead.)

    @ivar trace: Whether per-read and per-write events are emitted.  Callers on
        the hot path test this flag themselves so that, when it is off, a read
        or a write costs no call at all.
    @ivar level: The level of every per-connection event (C{accept} through
        C{close}).  A load generator opening thousands of connections a
        second passes C{LogLevel.debug}, so that they stay out of a log at
        the default level.  C{connect-failed} is a warning at the default
        level, and at C{level} otherwise.
    @ivar threshold: The lowest level any observer keeps, when known
        (C{twist --log-level}); per-connection events below it are not built
        at all.  C{None}: build and emit every event.
    @ivar enabled: Whether per-connection events are built at all (their
        C{level} is at or above C{threshold}); a caller whose arguments are
        costly to compute may test it first.
    @ivar rendered: Whether per-connection events carry their message
        rendered (a speed lever, read once per event).  C{False}: a format
        template and its fields through C{Logger.emit}, Twisted's way, which
        observers then parse and look up.
    """

    def __init__(
        self,
        logger: Logger | None = None,
        *,
        trace: bool = False,
        level: LogLevel = LogLevel.info,
        threshold: LogLevel | None = None,
        rendered: bool = True,
    ) -> None:
        self.logger = logger if logger is not None else Logger(namespace="tcplife")
        self.trace = trace
        self.rendered = rendered
        self._level = level
        self._threshold = threshold
        self._update()

    @property
    def level(self) -> LogLevel:
        return self._level

    @level.setter
    def level(self, level: LogLevel) -> None:
        self._level = level
        self._update()

    @property
    def threshold(self) -> LogLevel | None:
        return self._threshold

    @threshold.setter
    def threshold(self, threshold: LogLevel | None) -> None:
        self._threshold = threshold
        self._update()

    def _update(self) -> None:
        level, threshold = self._level, self._threshold
        self._failureLevel = LogLevel.warn if level is LogLevel.info else level
        # Tested on every per-connection event: plain attributes, not
        # comparisons of constants.
        self.enabled = threshold is None or level >= threshold
        self._failureEnabled = threshold is None or self._failureLevel >= threshold

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

    def _emitTemplate(self, level: LogLevel, event: dict[str, object]) -> None:
        # The event as Logger.emit builds it from a template: what observers
        # get with the rendered lever off.
        self.logger.emit(level, _TEMPLATES[cast(str, event["lifecycle"])], **event)

    def listen(self, address: str, backlog: int | None, endpoint: str) -> None:
        self.logger.emit(
            _info,
            # stdio: has no queue to speak of.
            "listen on {address}" if backlog is None else "listen on {address} (backlog {backlog})",
            lifecycle=LISTEN,
            address=address,
            backlog=backlog,
            endpoint=endpoint,
        )

    def stopListening(self, address: str) -> None:
        self.logger.emit(
            _info,
            "stop-listening on {address}",
            lifecycle=STOP_LISTENING,
            address=address,
        )

    def accept(self, connId: int, peer: str, local: str, fault: tuple[str, ...] = ()) -> None:
        """
        @param fault: The kinds of fault applied to the connection on
            purpose; the event has a C{fault} field (a list) only if any is.
        """
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": ACCEPT,
                "role": "server",
                "conn_id": connId,
                "peer": peer,
                "local": local,
            }
            if fault:
                event["fault"] = list(fault)
            if self.rendered:
                message = f"accept #{connId} from {_literal(peer)} on {_literal(local)}"
                if fault:
                    message += f" (fault {', '.join(fault)})"
                self._emit(self._level, message, event)
            else:
                self._emitTemplate(self._level, event)

    def connect(self, target: str) -> None:
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": CONNECT,
                "role": "client",
                "target": target,
            }
            if self.rendered:
                self._emit(
                    self._level,
                    f"connect to {_literal(target)}",
                    event,
                )
            else:
                self._emitTemplate(self._level, event)

    def connected(self, connId: int, local: str, peer: str) -> None:
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": CONNECTED,
                "role": "client",
                "conn_id": connId,
                "local": local,
                "peer": peer,
            }
            if self.rendered:
                self._emit(
                    self._level,
                    f"connected #{connId} from {_literal(local)} to {_literal(peer)}",
                    event,
                )
            else:
                self._emitTemplate(self._level, event)

    def connectFailed(self, target: str, reason: str) -> None:
        if self._failureEnabled:
            event: dict[str, object] = {
                "lifecycle": CONNECT_FAILED,
                "role": "client",
                "target": target,
                "reason": reason,
            }
            if self.rendered:
                self._emit(
                    self._failureLevel,
                    f"connect-failed to {_literal(target)}: {_literal(reason)}",
                    event,
                )
            else:
                self._emitTemplate(self._failureLevel, event)

    def read(self, connId: int, nbytes: int) -> None:
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": READ,
                "conn_id": connId,
                "bytes": nbytes,
            }
            if self.rendered:
                self._emit(
                    self._level,
                    f"read #{connId} {nbytes} bytes",
                    event,
                )
            else:
                self._emitTemplate(self._level, event)

    def write(self, connId: int, nbytes: int) -> None:
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": WRITE,
                "conn_id": connId,
                "bytes": nbytes,
            }
            if self.rendered:
                self._emit(
                    self._level,
                    f"write #{connId} {nbytes} bytes",
                    event,
                )
            else:
                self._emitTemplate(self._level, event)

    def halfClose(self, connId: int, initiator: str) -> None:
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": HALF_CLOSE,
                "conn_id": connId,
                "initiator": initiator,
            }
            if self.rendered:
                self._emit(
                    self._level,
                    f"half-close #{connId} by {initiator}",
                    event,
                )
            else:
                self._emitTemplate(self._level, event)

    def close(
        self,
        connId: int,
        role: str,
        initiator: str,
        how: str,
        bytesIn: int,
        bytesOut: int,
        duration: float,
        fault: str | None = None,
    ) -> None:
        """
        @param fault: The kind of fault that ended the connection on
            purpose; the event has a C{fault} field only if one did.
        """
        if self.enabled:
            event: dict[str, object] = {
                "lifecycle": CLOSE,
                "role": role,
                "conn_id": connId,
                "initiator": initiator,
                "how": how,
                "bytes_in": bytesIn,
                "bytes_out": bytesOut,
                "duration_s": duration,
            }
            if fault is not None:
                event["fault"] = fault
            if self.rendered:
                message = (
                    f"close #{connId} by {initiator} ({how}): "
                    f"{bytesIn} bytes in, {bytesOut} bytes out, {duration:.3f} s"
                )
                if fault is not None:
                    message += f" (fault {fault})"
                self._emit(self._level, message, event)
            else:
                self._emitTemplate(self._level, event)

    # Events that happen once in a while, not per connection: plain
    # Logger.emit with a format template.

    def acceptPaused(
        self,
        address: str,
        reason: str,
        openConnections: int,
        queue: int | None,
        backlog: int | None,
    ) -> None:
        self.logger.emit(
            LogLevel.warn,
            "accept-paused on {address} ({reason}): {open} open, "
            "{queue} waiting in the kernel's queue (backlog {backlog})",
            lifecycle=ACCEPT_PAUSED,
            address=address,
            reason=reason,
            open=openConnections,
            queue=queue,
            backlog=backlog,
        )

    def acceptResumed(
        self,
        address: str,
        openConnections: int,
        queue: int | None,
        backlog: int | None,
        pausedFor: float,
    ) -> None:
        self.logger.emit(
            _info,
            "accept-resumed on {address} after {paused_s:.3f} s: {open} open, "
            "{queue} waiting in the kernel's queue (backlog {backlog})",
            lifecycle=ACCEPT_RESUMED,
            address=address,
            open=openConnections,
            queue=queue,
            backlog=backlog,
            paused_s=pausedFor,
        )

    def drain(self, openConnections: int, queued: int, timeout: float) -> None:
        self.logger.emit(
            _info,
            "drain: {open} connections open, {queued} more waiting for a slot; "
            "waiting up to {timeout_s} s for their peers to finish",
            lifecycle=DRAIN,
            open=openConnections,
            queued=queued,
            timeout_s=timeout,
        )

    def drainDeadline(self, openConnections: int, grace: float) -> None:
        self.logger.emit(
            LogLevel.warn,
            "drain-deadline: closing {open} connections; aborting any not drained in {grace_s} s",
            lifecycle=DRAIN_DEADLINE,
            open=openConnections,
            grace_s=grace,
        )

    def drainAbort(self, openConnections: int, reason: str) -> None:
        self.logger.emit(
            LogLevel.warn,
            "drain-abort: aborting {open} connections ({reason})",
            lifecycle=DRAIN_ABORT,
            open=openConnections,
            reason=reason,
        )

    def drained(
        self,
        endedByPeer: int,
        closedAtDeadline: int,
        aborted: int,
        unserved: int,
        duration: float,
    ) -> None:
        self.logger.emit(
            _info,
            "drained in {duration_s:.3f} s: {ended_by_peer} ended by their peers, "
            "{closed_at_deadline} closed at the deadline, {aborted} aborted, "
            "{unserved} never served",
            lifecycle=DRAINED,
            ended_by_peer=endedByPeer,
            closed_at_deadline=closedAtDeadline,
            aborted=aborted,
            unserved=unserved,
            duration_s=duration,
        )
