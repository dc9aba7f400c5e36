"""
The lifecycle events: the one place that knows their names and fields.

Every event carries a C{lifecycle} field naming the phase of the textbook's
call sequence it stands for.  The field names are a public contract (see the
README): log readers select on them, so change them only with a major release.
"""

from __future__ import annotations

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


class LifecycleLog:
    """
    Emits lifecycle events to a L{Logger}.

    @ivar trace: Whether per-read and per-write events are emitted.  Callers on
        the hot path test this flag themselves so that, when it is off, a read
        or a write costs no call at all.
    @ivar level: The level of every per-connection event (C{accept} through
        C{close}).  A load generator opening thousands of connections a
        second passes C{LogLevel.debug}, so that they stay out of a log at
        the default level.  C{connect-failed} is a warning at the default
        level, and at C{level} otherwise.
    """

    def __init__(
        self,
        logger: Logger | None = None,
        *,
        trace: bool = False,
        level: LogLevel = LogLevel.info,
    ) -> None:
        self.logger = logger if logger is not None else Logger(namespace="tcplife")
        self.trace = trace
        self.level = level
        self._failureLevel = LogLevel.warn if level is LogLevel.info else level

    def listen(self, address: str, backlog: int | None, endpoint: str) -> None:
        self.logger.emit(
            _info,
            "listen on {address} (backlog {backlog})",
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

    def accept(self, connId: int, peer: str, local: str) -> None:
        self.logger.emit(
            self.level,
            "accept #{conn_id} from {peer} on {local}",
            lifecycle=ACCEPT,
            role="server",
            conn_id=connId,
            peer=peer,
            local=local,
        )

    def connect(self, target: str) -> None:
        self.logger.emit(
            self.level,
            "connect to {target}",
            lifecycle=CONNECT,
            role="client",
            target=target,
        )

    def connected(self, connId: int, local: str, peer: str) -> None:
        self.logger.emit(
            self.level,
            "connected #{conn_id} from {local} to {peer}",
            lifecycle=CONNECTED,
            role="client",
            conn_id=connId,
            local=local,
            peer=peer,
        )

    def connectFailed(self, target: str, reason: str) -> None:
        self.logger.emit(
            self._failureLevel,
            "connect-failed to {target}: {reason}",
            lifecycle=CONNECT_FAILED,
            role="client",
            target=target,
            reason=reason,
        )

    def read(self, connId: int, nbytes: int) -> None:
        self.logger.emit(
            self.level,
            "read #{conn_id} {bytes} bytes",
            lifecycle=READ,
            conn_id=connId,
            bytes=nbytes,
        )

    def write(self, connId: int, nbytes: int) -> None:
        self.logger.emit(
            self.level,
            "write #{conn_id} {bytes} bytes",
            lifecycle=WRITE,
            conn_id=connId,
            bytes=nbytes,
        )

    def halfClose(self, connId: int, initiator: str) -> None:
        self.logger.emit(
            self.level,
            "half-close #{conn_id} by {initiator}",
            lifecycle=HALF_CLOSE,
            conn_id=connId,
            initiator=initiator,
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
        self.logger.emit(
            self.level,
            "close #{conn_id} by {initiator} ({how}): "
            "{bytes_in} bytes in, {bytes_out} bytes out, {duration_s:.3f} s",
            lifecycle=CLOSE,
            role=role,
            conn_id=connId,
            initiator=initiator,
            how=how,
            bytes_in=bytesIn,
            bytes_out=bytesOut,
            duration_s=duration,
        )

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

    def drain(self, openConnections: int, timeout: float) -> None:
        self.logger.emit(
            _info,
            "drain: {open} connections open; waiting up to {timeout_s} s for their peers to finish",
            lifecycle=DRAIN,
            open=openConnections,
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
        self, endedByPeer: int, closedAtDeadline: int, aborted: int, duration: float
    ) -> None:
        self.logger.emit(
            _info,
            "drained in {duration_s:.3f} s: {ended_by_peer} ended by their peers, "
            "{closed_at_deadline} closed at the deadline, {aborted} aborted",
            lifecycle=DRAINED,
            ended_by_peer=endedByPeer,
            closed_at_deadline=closedAtDeadline,
            aborted=aborted,
            duration_s=duration,
        )
