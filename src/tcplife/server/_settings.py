"""
A server's settings, in one place: every default is here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from attrs import validators
from twisted.internet.protocol import Protocol

from ..internet import DEFAULT_PORT
from ._faults import LARGEST_SEED, FaultSpec
from ._levers import LEVERS, unknownLevers

if TYPE_CHECKING:
    from ._factory import LifecycleServerFactory

_HIGHEST_PORT = 65535
# Typed as the field is: a port, or none at all.
_PORT: int | None = DEFAULT_PORT


def _between(lowest: float, highest: float | None = None) -> Any:
    checks = [validators.ge(lowest)]
    if highest is not None:
        checks.append(validators.le(highest))
    return validators.and_(*checks)


def _above(lowest: float) -> Any:
    return validators.gt(lowest)


def _knownLevers(instance: object, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    unknown = unknownLevers(sorted(value))
    if unknown:
        raise ValueError(
            f"{attribute.name} names {', '.join(map(repr, unknown))}, which is not a speed "
            f"lever; the levers are {', '.join(LEVERS)}."
        )


@attrs.frozen(kw_only=True)
class ServerSettings:
    """
    How a tcplife server listens and serves; the twin of
    L{LoadSettings <tcplife.LoadSettings>}.

    C{twist tcpecho} builds one from its options, each option setting the
    field of the same name (C{--max-connections} sets C{maxConnections},
    C{--reuse-port} C{reusePort}); a program that serves tcplife itself
    passes one to L{LifecycleServerFactory <tcplife.LifecycleServerFactory>}
    (C{settings=}).  The factory, its admission gate, its idle sweeper, the
    drain and the listeners all read the factory's settings.

    @ivar port: The TCP port C{--port} listens on (0: any free one);
        C{None}: no such listener (only the C{listen} endpoints).
    @ivar interface: The address C{port} binds; empty: every IPv4
        interface.  An IPv6 address gives an IPv6 socket.
    @ivar backlog: C{listen()}'s backlog for C{port} (Linux caps it at
        C{net.core.somaxconn}).
    @ivar listen: Server endpoint descriptions to listen on as well.
    @ivar reusePort: Set C{SO_REUSEPORT} on C{port}'s socket.
    @ivar trace: Emit a C{read} and a C{write} event per call.
    @ivar protocol: What the factory serves; C{None}: the factory class's own
        C{protocol} (tcplife's echo).
    @ivar factory: The L{LifecycleServerFactory
        <tcplife.LifecycleServerFactory>} subclass a server built from these
        settings serves with; C{None}: tcplife's own.
    @ivar maxConnections: Stop accepting while this many connections are
        open (new clients wait in the kernel's accept queue); C{None}: no cap.
    @ivar idleTimeout: Close connections that moved no byte for this many
        seconds (C{how=timeout}); C{None}: never.
    @ivar closeTimeout: Abort a connection whose graceful close has not
        finished within this many seconds.
    @ivar shutdownTimeout: On SIGTERM, SIGINT or SIGHUP, wait this many
        seconds for the open connections to finish.
    @ivar metrics: Serve Prometheus metrics at C{/metrics} on this server
        endpoint; C{None}: no metrics.
    @ivar events: Write every lifecycle event to this file as JSON Lines
        (C{"-"}: standard output); the per-connection ones then go only
        there.  C{None}: twist's log only.
    @ivar eventsOnly: With C{events}: only these phases (C{lifecycle}
        values); C{None}: every phase.
    @ivar leversOff: Speed levers switched back to Twisted's way, to measure
        what each buys (L{tcplife.server.LEVERS}); empty: none, as tcplife
        ships.
    @ivar workers: Serve with this many worker processes under a
        supervisor, which binds the listeners once and hands every worker
        their sockets (one accept queue each, shared); C{None}: serve in
        this process.  Each worker applies C{maxConnections} on its own.
    @ivar workerRestartLimit: With C{workers}, stop restarting workers
        (and stop, with status 1) once they have died this many times
        within C{workerRestartWindow} seconds.
    @ivar workerRestartWindow: See C{workerRestartLimit}.
    @ivar fault: Faults on purpose, each spec for its share of the
        connections (L{tcplife.parseFaultSpec} reads C{--fault}'s); empty:
        none.
    @ivar seed: What the choice of the connections C{fault} applies to is
        drawn from, connection by connection in accept order; C{None}: a
        random seed, logged when the server starts.
    @ivar reflect: Start each connection with a JSON line that names the
        server and the addresses it sees, then serve as usual.
    @ivar name: The server's name in that line; C{None}: C{HOSTNAME:PID}.
    """

    port: int | None = attrs.field(
        default=_PORT, validator=validators.optional(_between(0, _HIGHEST_PORT))
    )
    interface: str = ""
    backlog: int = attrs.field(default=128, validator=_between(1, _HIGHEST_PORT))
    listen: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    reusePort: bool = False
    trace: bool = False
    protocol: type[Protocol] | None = None
    factory: type[LifecycleServerFactory] | None = None
    maxConnections: int | None = attrs.field(
        default=None, validator=validators.optional(_between(1))
    )
    idleTimeout: float | None = attrs.field(default=None, validator=validators.optional(_above(0)))
    closeTimeout: float = attrs.field(default=5.0, validator=_above(0))
    shutdownTimeout: float = attrs.field(default=10.0, validator=_between(0))
    metrics: str | None = None
    events: str | None = None
    eventsOnly: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    leversOff: frozenset[str] = attrs.field(
        default=frozenset(), converter=frozenset, validator=_knownLevers
    )
    workers: int | None = attrs.field(default=None, validator=validators.optional(_between(1)))
    workerRestartLimit: int = attrs.field(default=5, validator=_between(1))
    workerRestartWindow: float = attrs.field(default=10.0, validator=_above(0))
    fault: tuple[FaultSpec, ...] = attrs.field(default=(), converter=tuple)
    seed: int | None = attrs.field(
        default=None, validator=validators.optional(_between(0, LARGEST_SEED))
    )
    reflect: bool = False
    name: str | None = None

    def evolve(self, **changes: Any) -> ServerSettings:
        """
        These settings with C{changes} (fields by name).
        """
        return attrs.evolve(self, **changes)
