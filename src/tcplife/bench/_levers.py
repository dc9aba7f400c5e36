"""
The speed levers as the lever benchmark sees them: each with the benchmark
cases where it can make a difference, and the command line of a C{twist
tcpecho} with it off.

The levers themselves are flags on the objects they belong to (the
transport, the port adapter, the event log; see L{tcplife.server.LEVERS}).
C{twist tcpecho} reads which to switch off, once at start-up, from the
environment variable L{LEVERS_OFF_VARIABLE}, and says so in its log: the
server measured is the plugin as a user runs it, with that one difference.
They are levers of the stock reactor: on C{--reactor tcplife-direct} there
is no batched poller to switch off.

Not every difference from Twisted has a lever: a connection's log prefix is
built on first use rather than per connection, and C{doRead} is a shorter
copy of Twisted's; neither changes a system call.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..server import LEVERS as _TWISTED_WAY
from ..server import LEVERS_OFF_VARIABLE

__all__ = ["LEVERS", "LEVERS_OFF_VARIABLE", "Lever", "launchedWithout"]


@dataclass(frozen=True)
class Lever:
    """
    One thing tcplife does differently from Twisted for speed.

    @ivar name: How the command line and the table name it.
    @ivar off: What the server does with the lever off: Twisted's way.
    @ivar scenarios: The benchmark cases where it can make a difference.
    """

    name: str
    off: str
    scenarios: frozenset[str]


#: The cases of C{python -m tcplife.bench.levers} where each lever can
#: matter.
_SCENARIOS = {
    "write-at-once": {"rr", "stream", "connect"},
    "256k-reads": {"stream"},
    "nodelay": {"rr", "stream"},
    "batched-poller": {"rr", "stream", "connect"},
    "close-at-once": {"connect"},
    "accept-without-enums": {"connect"},
    "rendered-events": {"connect+events"},
    "kernel-view": {"connect", "connect+close"},
}

#: Every lever, by name.
LEVERS: dict[str, Lever] = {
    name: Lever(name, off, frozenset(_SCENARIOS[name])) for name, off in _TWISTED_WAY.items()
}


def launchedWithout(levers: str, argv: tuple[str, ...]) -> tuple[str, ...]:
    """
    C{argv} (a C{twist} command line) run with C{levers} (lever names,
    separated by commas; empty: none) switched off, through C{env}, which
    sets the variable and then becomes the command itself: the process is
    the server's.
    """
    return ("env", f"{LEVERS_OFF_VARIABLE}={levers}", *argv)
