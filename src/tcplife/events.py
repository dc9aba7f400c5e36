"""
The lifecycle events: the one place that knows their names and fields.

Every event carries a C{lifecycle} field naming the phase of the textbook's
call sequence it stands for.  The field names are a public contract (see
docs/events.md): log readers select on them, so change them only with a major release.
"""

from __future__ import annotations

from time import time
from typing import Any, Final, Protocol

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

#: The phases of one connection's own events, emitted as it lives (many a
#: second); the others happen once in a while.
PER_CONNECTION: Final = frozenset(
    {ACCEPT, CONNECT, CONNECTED, CONNECT_FAILED, READ, WRITE, HALF_CLOSE, CLOSE}
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


class EventSink(Protocol):
    """
    Where a L{LifecycleLog} sends its events besides (or, for the
    per-connection ones, instead of) its logger: an event stream such as
    L{tcplife.eventlog.EventFile}.
    """

    def event(self, level: LogLevel, fields: dict[str, Any]) -> None:
        """
        One event: its level and its own fields (C{lifecycle} first), no
        Twisted internals.  The sink adds the time.
        """


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
    @ivar sink: Where per-connection events go instead of the logger, at any
        level (C{--events}); every other event goes to both.  C{None}: the
        logger only.
    @ivar phases: The phases emitted (C{--events-only}); per-connection
        events of other phases are not built at all, and the other events
        still reach the logger but not the sink.  C{None}: every phase.
    @ivar enabled: Whether any per-connection event is built (its phase is
        wanted and, without a sink, its C{level} is at or above
        C{threshold}); L{wants} says it of one phase.
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
        sink: EventSink | None = None,
        phases: frozenset[str] | None = None,
        rendered: bool = True,
    ) -> None:
        self.logger = logger if logger is not None else Logger(namespace="tcplife")
        self.trace = trace
        self.rendered = rendered
        self._level = level
        self._threshold = threshold
        self._sink = sink
        self._phases = phases
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

    @property
    def sink(self) -> EventSink | None:
        return self._sink

    @sink.setter
    def sink(self, sink: EventSink | None) -> None:
        self._sink = sink
        self._update()

    @property
    def phases(self) -> frozenset[str] | None:
        return self._phases

    @phases.setter
    def phases(self, phases: frozenset[str] | None) -> None:
        self._phases = phases
        self._update()

    def wants(self, phase: str) -> bool:
        """
        Whether events of C{phase} are emitted: for a per-connection phase,
        whether they are built at all.
        """
        return self._wanted[phase]

    def _update(self) -> None:
        level, threshold, phases = self._level, self._threshold, self._phases
        self._failureLevel = LogLevel.warn if level is LogLevel.info else level
        self._levelName = level.name
        self._failureLevelName = self._failureLevel.name
        # A sink takes every level: twist's --log-level filters twist's log.
        sinking = self._sink is not None
        byLevel = sinking or threshold is None or level >= threshold
        failureByLevel = sinking or threshold is None or self._failureLevel >= threshold
        wanted = {phase: phases is None or phase in phases for phase in PHASES}
        for phase in PER_CONNECTION:
            wanted[phase] = wanted[phase] and (
                failureByLevel if phase == CONNECT_FAILED else byLevel
            )
        self._wanted = wanted
        # Tested on every per-connection event: plain attributes, not
        # lookups or comparisons.
        self._wantAccept = wanted[ACCEPT]
        self._wantConnect = wanted[CONNECT]
        self._wantConnected = wanted[CONNECTED]
        self._wantConnectFailed = wanted[CONNECT_FAILED]
        self._wantRead = wanted[READ]
        self._wantWrite = wanted[WRITE]
        self._wantHalfClose = wanted[HALF_CLOSE]
        self._wantClose = wanted[CLOSE]
        self.enabled = any(wanted[phase] for phase in PER_CONNECTION)
        self._sinkPhases = (
            frozenset() if not sinking else frozenset(PHASES) if phases is None else phases
        )

    def _emit(self, level: LogLevel, message: str, event: dict[str, Any]) -> None:
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

    def _emitTemplate(self, level: LogLevel, event: dict[str, Any]) -> None:
        # The event as Logger.emit builds it from a template: what observers
        # get with the rendered lever off.
        self.logger.emit(level, _TEMPLATES[event["lifecycle"]], **event)

    def _occasional(self, level: LogLevel, template: str, **fields: Any) -> None:
        # An event that is not one connection's: twist's log has it always,
        # the sink if its phase is wanted there.
        self.logger.emit(level, template, **fields)
        if fields["lifecycle"] in self._sinkPhases:
            assert self._sink is not None
            self._sink.event(level, fields)

    def listen(self, address: str, backlog: int | None, endpoint: str) -> None:
        self._occasional(
            _info,
            # stdio: has no queue to speak of.
            "listen on {address}" if backlog is None else "listen on {address} (backlog {backlog})",
            lifecycle=LISTEN,
            address=address,
            backlog=backlog,
            endpoint=endpoint,
        )

    def stopListening(self, address: str) -> None:
        self._occasional(
            _info,
            "stop-listening on {address}",
            lifecycle=STOP_LISTENING,
            address=address,
        )

    # Per-connection events: with a sink, their fields go there as they
    # are (no message is rendered); otherwise to the logger's observer with
    # the message rendered once.

    def accept(self, connId: int, peer: str, local: str, fault: tuple[str, ...] = ()) -> None:
        """
        @param fault: The kinds of fault applied to the connection on
            purpose; the event has a C{fault} field (a list) only if any is.
        """
        if self._wantAccept:
            fields: dict[str, Any] = {
                "lifecycle": ACCEPT,
                "role": "server",
                "conn_id": connId,
                "peer": peer,
                "local": local,
            }
            if fault:
                fields["fault"] = list(fault)
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                message = f"accept #{connId} from {_literal(peer)} on {_literal(local)}"
                if fault:
                    message += f" (fault {', '.join(fault)})"
                self._emit(self._level, message, fields)
            else:
                self._emitTemplate(self._level, fields)

    def connect(self, target: str) -> None:
        if self._wantConnect:
            fields: dict[str, Any] = {
                "lifecycle": CONNECT,
                "role": "client",
                "target": target,
            }
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                self._emit(self._level, f"connect to {_literal(target)}", fields)
            else:
                self._emitTemplate(self._level, fields)

    def connected(self, connId: int, local: str, peer: str) -> None:
        if self._wantConnected:
            fields: dict[str, Any] = {
                "lifecycle": CONNECTED,
                "role": "client",
                "conn_id": connId,
                "local": local,
                "peer": peer,
            }
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                self._emit(
                    self._level,
                    f"connected #{connId} from {_literal(local)} to {_literal(peer)}",
                    fields,
                )
            else:
                self._emitTemplate(self._level, fields)

    def connectFailed(self, target: str, reason: str) -> None:
        if self._wantConnectFailed:
            fields: dict[str, Any] = {
                "lifecycle": CONNECT_FAILED,
                "role": "client",
                "target": target,
                "reason": reason,
            }
            if self._sink is not None:
                self._sink.event(self._failureLevel, fields)
            elif self.rendered:
                self._emit(
                    self._failureLevel,
                    f"connect-failed to {_literal(target)}: {_literal(reason)}",
                    fields,
                )
            else:
                self._emitTemplate(self._failureLevel, fields)

    def read(self, connId: int, nbytes: int) -> None:
        if self._wantRead:
            fields: dict[str, Any] = {
                "lifecycle": READ,
                "conn_id": connId,
                "bytes": nbytes,
            }
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                self._emit(self._level, f"read #{connId} {nbytes} bytes", fields)
            else:
                self._emitTemplate(self._level, fields)

    def write(self, connId: int, nbytes: int) -> None:
        if self._wantWrite:
            fields: dict[str, Any] = {
                "lifecycle": WRITE,
                "conn_id": connId,
                "bytes": nbytes,
            }
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                self._emit(self._level, f"write #{connId} {nbytes} bytes", fields)
            else:
                self._emitTemplate(self._level, fields)

    def halfClose(self, connId: int, initiator: str) -> None:
        if self._wantHalfClose:
            fields: dict[str, Any] = {
                "lifecycle": HALF_CLOSE,
                "conn_id": connId,
                "initiator": initiator,
            }
            if self._sink is not None:
                self._sink.event(self._level, fields)
            elif self.rendered:
                self._emit(self._level, f"half-close #{connId} by {initiator}", fields)
            else:
                self._emitTemplate(self._level, fields)

    def close(
        self,
        connId: int,
        role: str,
        initiator: str,
        how: str,
        bytesIn: int,
        bytesOut: int,
        duration: float,
        peer: str = "unknown",
        local: str = "unknown",
        tcp: dict[str, int] | None = None,
        fault: str | None = None,
    ) -> None:
        """
        A connection is gone.  With C{tcp} (the kernel's view as it closed,
        TCP only), the event carries it as a C{tcp} object.

        @param fault: The kind of fault that ended the connection on
            purpose; the event has a C{fault} field only if one did.
        """
        if self._wantClose:
            now = time()
            fields: dict[str, Any] = {
                "lifecycle": CLOSE,
                "role": role,
                "conn_id": connId,
                "initiator": initiator,
                "how": how,
                "bytes_in": bytesIn,
                "bytes_out": bytesOut,
                "duration_s": duration,
                "peer": peer,
                "local": local,
                "opened_at": now - duration,
            }
            if tcp is not None:
                fields["tcp"] = tcp
            if fault is not None:
                fields["fault"] = fault
            if self._sink is not None:
                self._sink.event(self._level, fields)
                return
            if not self.rendered:
                self._emitTemplate(self._level, fields)
                return
            message = (
                f"close #{connId} by {initiator} ({how}): "
                f"{bytesIn} bytes in, {bytesOut} bytes out, {duration:.3f} s"
            )
            if tcp is not None and "rtt_us" in tcp:
                message += (
                    f", rtt {tcp['rtt_us'] / 1000:.3f} ms, "
                    f"{tcp.get('retransmits', 0)} retransmitted"
                )
            if fault is not None:
                message += f" (fault {fault})"
            self._emit(self._level, message, fields)

    # Events that happen once in a while, not per connection: a format
    # template through Logger.emit, and the sink.

    def acceptPaused(
        self,
        address: str,
        reason: str,
        openConnections: int,
        queue: int | None,
        backlog: int | None,
    ) -> None:
        self._occasional(
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
        self._occasional(
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
        self._occasional(
            _info,
            "drain: {open} connections open, {queued} more waiting for a slot; "
            "waiting up to {timeout_s} s for their peers to finish",
            lifecycle=DRAIN,
            open=openConnections,
            queued=queued,
            timeout_s=timeout,
        )

    def drainDeadline(self, openConnections: int, grace: float) -> None:
        self._occasional(
            LogLevel.warn,
            "drain-deadline: closing {open} connections; aborting any not drained in {grace_s} s",
            lifecycle=DRAIN_DEADLINE,
            open=openConnections,
            grace_s=grace,
        )

    def drainAbort(self, openConnections: int, reason: str) -> None:
        self._occasional(
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
        self._occasional(
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
