"""
tcplife with one of its speed levers switched off: the servers that
C{python -m tcplife.bench.levers} measures against tcplife as it ships.

Run as C{python -m tcplife.bench._levers LEVER TWIST-ARGUMENTS...}: it
switches LEVER off in this process, logs that it did, then runs C{twist} with
the rest of the command line, exactly as C{twist TWIST-ARGUMENTS...} would
(LEVER C{none}: nothing switched off, the same launcher).  Each lever is
switched back to what plain Twisted does, so the difference measured is what
that lever buys.  They are levers of the stock reactor: on C{--reactor
tcplife-direct} there is no batched poller to switch off.

Not every difference from Twisted has a lever: a connection's log prefix is
built on first use rather than per connection, and C{doRead} is a shorter
copy of Twisted's; neither changes a system call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import tcp


@dataclass(frozen=True)
class Lever:
    """
    One thing tcplife does differently from Twisted for speed.

    @ivar name: How the command line and the table name it.
    @ivar off: What the server does with the lever off: Twisted's way.
    @ivar scenarios: The benchmark cases where it can make a difference.
    @ivar switchOff: Puts Twisted's way back, in this process only.
    """

    name: str
    off: str
    scenarios: frozenset[str]
    switchOff: Callable[[], None]


def _bufferedWrites() -> None:
    from tcplife.internet._transport import DirectServer

    DirectServer.write = tcp.Server.write  # type: ignore[method-assign]
    DirectServer.writeSequence = tcp.Server.writeSequence  # type: ignore[method-assign]


def _twistedReadSize() -> None:
    from tcplife.internet._transport import DirectServer

    DirectServer.readSize = tcp.Server.bufferSize  # 64 KiB


def _nagle() -> None:
    from tcplife.internet._transport import DirectServer

    DirectServer.noDelay = False


def _reactorRegistration() -> None:
    from tcplife.internet import _transport

    # Each connection registers with the reactor itself, whose dispatch
    # wraps every event in callWithLogger.
    _transport.pollerFor = lambda reactor: reactor  # type: ignore[attr-defined]


def _closeTheTwistedWay() -> None:
    from tcplife.internet._transport import DirectServer

    DirectServer.loseConnection = tcp.Server.loseConnection  # type: ignore[method-assign]
    DirectServer._shouldShutdown = True


def _acceptWithEnums() -> None:
    from tcplife.internet import _port

    def accept(listener: Any, family: int) -> tuple[Any, Any]:
        return listener.accept()  # type: ignore[no-any-return]

    _port.acceptSocket = accept  # type: ignore[attr-defined]


def _templateEvents() -> None:
    # The three per-connection events of an echo, emitted the usual way: a
    # format template and its fields through Logger.emit, which observers
    # then parse and look up.
    from tcplife.events import ACCEPT, CLOSE, HALF_CLOSE, LifecycleLog

    def accept(
        self: LifecycleLog, connId: int, peer: str, local: str, fault: tuple[str, ...] = ()
    ) -> None:
        if self.enabled:
            self.logger.emit(
                self.level,
                "accept #{conn_id} from {peer} on {local}",
                lifecycle=ACCEPT,
                role="server",
                conn_id=connId,
                peer=peer,
                local=local,
                **({"fault": list(fault)} if fault else {}),
            )

    def halfClose(self: LifecycleLog, connId: int, initiator: str) -> None:
        if self.enabled:
            self.logger.emit(
                self.level,
                "half-close #{conn_id} by {initiator}",
                lifecycle=HALF_CLOSE,
                conn_id=connId,
                initiator=initiator,
            )

    def close(
        self: LifecycleLog,
        connId: int,
        role: str,
        initiator: str,
        how: str,
        bytesIn: int,
        bytesOut: int,
        duration: float,
        fault: str | None = None,
    ) -> None:
        if self.enabled:
            self.logger.emit(
                self.level,
                "close #{conn_id} by {initiator} ({how}): {bytes_in} bytes in, "
                "{bytes_out} bytes out, {duration_s:.3f} s",
                lifecycle=CLOSE,
                role=role,
                conn_id=connId,
                initiator=initiator,
                how=how,
                bytes_in=bytesIn,
                bytes_out=bytesOut,
                duration_s=duration,
                **({"fault": fault} if fault is not None else {}),
            )

    LifecycleLog.accept = accept  # type: ignore[method-assign]
    LifecycleLog.halfClose = halfClose  # type: ignore[method-assign]
    LifecycleLog.close = close  # type: ignore[method-assign]


#: Every lever, by name.
LEVERS: dict[str, Lever] = {
    lever.name: lever
    for lever in (
        Lever(
            "write-at-once",
            "every write buffered until the next writable event",
            frozenset({"rr", "stream", "connect"}),
            _bufferedWrites,
        ),
        Lever(
            "256k-reads",
            "64 KiB per recv",
            frozenset({"stream"}),
            _twistedReadSize,
        ),
        Lever(
            "nodelay",
            "Nagle's algorithm on",
            frozenset({"rr", "stream"}),
            _nagle,
        ),
        Lever(
            "batched-poller",
            "each connection registered with the reactor: callWithLogger per event, "
            "and an SO_ERROR check per end of input (see _connection._resetTakenForEOF)",
            frozenset({"rr", "stream", "connect"}),
            _reactorRegistration,
        ),
        Lever(
            "close-at-once",
            "loseConnection waits for a writable event, then shutdown() and close()",
            frozenset({"connect"}),
            _closeTheTwistedWay,
        ),
        Lever(
            "accept-without-enums",
            "socket.accept(), with its conversions to enums, in tcplife's accept loop",
            frozenset({"connect"}),
            _acceptWithEnums,
        ),
        Lever(
            "rendered-events",
            "events as format templates through Logger.emit",
            frozenset({"connect+events"}),
            _templateEvents,
        ),
    )
}


#: The lever name that switches nothing off.
NONE = "none"


def main(argv: list[str]) -> int:
    if not argv or (argv[0] not in LEVERS and argv[0] != NONE):
        print(
            "usage: python -m tcplife.bench._levers LEVER TWIST-ARGUMENTS...\n"
            f"LEVER: one of {', '.join(LEVERS)}, or {NONE}",
            file=sys.stderr,
        )
        return 2
    name = argv[0]
    if name != NONE:
        LEVERS[name].switchOff()
    from twisted.application.twist._twist import Twist
    from twisted.logger import Logger

    # Kept by twist's log beginner until its log starts, then written first.
    Logger(namespace="tcplife.bench").info(
        "speed lever {lever} switched off: {off}",
        lever=name,
        off=LEVERS[name].off if name != NONE else "nothing",
    )

    Twist.main(["twist", *argv[1:]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
