"""
The kinds of failure a client meets, each with one line a user can act on.

The kinds are a public contract: the load report counts errors by them, and
its JSON form uses them as keys.
"""

from __future__ import annotations

import errno
import os
from typing import Final

from twisted.internet import error
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

REFUSED: Final = "refused"
UNREACHABLE: Final = "unreachable"
DNS: Final = "dns"
TIMEOUT: Final = "timeout"
RESET: Final = "reset"
CLOSED_EARLY: Final = "closed-early"
MISMATCH: Final = "mismatch"
OTHER: Final = "other"
#: No local port left to connect from (EADDRNOTAVAIL): connection churn on a
#: real network leaves each closed connection's port in TIME_WAIT.
NO_LOCAL_PORT: Final = "no-local-port"
#: We gave up on purpose (Ctrl-C, the end of a load run): not an error.
CANCELLED: Final = "cancelled"

#: The kinds every load report lists, even at zero.
REPORTED_KINDS: Final = (REFUSED, RESET, TIMEOUT, MISMATCH)

_UNREACHABLE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)

#: What to try next, by kind, for the one line a failed connect prints.
HINTS: Final = {
    REFUSED: "is a server listening there?",
    UNREACHABLE: "check the address and the route to it",
    DNS: "check the host name",
    TIMEOUT: "nothing answered; is the host up, or a firewall dropping packets?",
    NO_LOCAL_PORT: (
        "the local ports are used up: each connection this host closed holds its port "
        "in TIME_WAIT for a minute; open fewer per second (--rate), connect from another "
        "local address (--bind), or widen net.ipv4.ip_local_port_range"
    ),
}

#: What to try next when the time ran out in the name lookup.
LOOKUP_HINT: Final = "is a DNS server answering? see /etc/resolv.conf"


#: The exit status of C{twist tcpclient} for each kind (sysexits.h values).
EXIT_STATUS: Final = {
    REFUSED: os.EX_UNAVAILABLE,
    UNREACHABLE: os.EX_UNAVAILABLE,
    DNS: os.EX_NOHOST,
    TIMEOUT: os.EX_TEMPFAIL,
    NO_LOCAL_PORT: os.EX_TEMPFAIL,
    MISMATCH: os.EX_DATAERR,
    CLOSED_EARLY: os.EX_PROTOCOL,
    RESET: os.EX_PROTOCOL,
    OTHER: 1,
}


class ConnectFailedError(Exception):
    """
    A connection could not be made.

    @ivar target: What we tried to connect to, as the user named it.
    @ivar kind: One of the kinds above.
    @ivar reason: A short phrase, as in the C{connect-failed} event.
    """

    def __init__(self, target: str, kind: str, reason: str, hint: str | None = None) -> None:
        super().__init__(target, kind, reason)
        self.target = target
        self.kind = kind
        self.reason = reason
        self.hint = hint if hint is not None else HINTS.get(kind)

    def __str__(self) -> str:
        line = f"cannot connect to {self.target}: {self.reason}"
        return f"{line} ({self.hint})" if self.hint else line


class ConnectTimeoutError(Exception):
    """
    No connection within the client's timeout.

    @ivar inLookup: The time ran out while the host name was being looked up.
    """

    def __init__(self, timeout: float, *, inLookup: bool = False) -> None:
        super().__init__(f"no connection within {timeout:g} s")
        self.timeout = timeout
        self.inLookup = inLookup


def connectFailure(target: str, failure: Failure) -> ConnectFailedError:
    """
    What a failed connect to C{target} was: its kind, phrase and hint.
    """
    kind, reason = connectFailureKind(failure)
    e = failure.value
    hint = LOOKUP_HINT if isinstance(e, ConnectTimeoutError) and e.inLookup else None
    return ConnectFailedError(target, kind, reason, hint)


def connectFailureKind(failure: Failure) -> tuple[str, str]:
    """
    The kind of a failed connect and a short phrase for it.
    """
    e = failure.value
    if isinstance(e, ConnectTimeoutError):
        if e.inLookup:
            return TIMEOUT, f"no answer to the host name lookup within {e.timeout:g} s"
        return TIMEOUT, f"no connection within {e.timeout:g} s"
    if isinstance(e, error.ConnectionRefusedError):
        return REFUSED, "connection refused"
    if isinstance(e, (error.DNSLookupError, error.UnknownHostError)):
        return DNS, "host name not found"
    if isinstance(e, (error.TimeoutError, error.TCPTimedOutError)):
        return TIMEOUT, "connection timed out"
    if isinstance(e, (CancelledError, error.ConnectingCancelledError)):
        return CANCELLED, "cancelled"
    if isinstance(e, error.ConnectError):
        number = e.osError if isinstance(e.osError, int) else None
        if isinstance(e, error.NoRouteError) or number in _UNREACHABLE_ERRNOS:
            return UNREACHABLE, os.strerror(number or errno.ENETUNREACH).lower()
        if number == errno.ECONNRESET:
            # Twisted has no ConnectError subclass for it.
            return RESET, os.strerror(number).lower()
        if number == errno.EADDRNOTAVAIL or (
            # Binding to a local address, port 0, when none is left.
            isinstance(e, error.ConnectBindError) and number == errno.EADDRINUSE
        ):
            return NO_LOCAL_PORT, "no local port left (" + os.strerror(number).lower() + ")"
        if number is not None:
            return OTHER, os.strerror(number).lower()
        return OTHER, str(e.args[0] if e.args and e.args[0] else e).strip().rstrip(".")
    return OTHER, str(e) or type(e).__name__


def lostConnectionKind(reason: Failure) -> str:
    """
    The kind of a connection lost before its echo was complete.
    """
    return CLOSED_EARLY if reason.check(error.ConnectionDone) else RESET
