"""
Option values shared by the tcpecho and tcpclient taps: one clear sentence
for every bad value, as twist prints it (C{Error: ...}, exit 64).
"""

from __future__ import annotations

import math
import os
from typing import Any, cast

from twisted.internet.interfaces import IReactorCore, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.reflect import namedAny

from ..events import PHASES
from ..internet import EndpointError, clientFromString, serverFromString


def wholeNumber(option: str, text: str, lowest: int, highest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lowest <= value <= highest:
        raise usage.UsageError(
            f"{option} must be a whole number from {lowest} to {highest}, not {text!r}."
        )
    return value


def seconds(option: str, text: str, *, allowZero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allowZero):
        lowest = "0 or more" if allowZero else "more than 0"
        raise usage.UsageError(f"{option} must be a number of seconds, {lowest}, not {text!r}.")
    return value


def loadClass(option: str, name: str, base: type) -> Any:
    try:
        found = namedAny(name)
    except (ImportError, AttributeError, ValueError) as e:
        raise usage.UsageError(f"{option} {name!r} cannot be imported: {e}.") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise usage.UsageError(
            f"{option} {name!r} is not a subclass of {base.__module__}.{base.__name__}."
        )
    return found


def serverEndpoint(option: str, reactor: object, description: str) -> IStreamServerEndpoint:
    """
    The server endpoint C{description} names (L{tcplife.serverFromString}),
    or a UsageError that says why there is none.
    """
    try:
        return serverFromString(reactor, description)
    except EndpointError as e:
        raise _unusable(option, description, e) from None


def clientEndpoint(option: str, reactor: object, description: str) -> IStreamClientEndpoint:
    """
    The client endpoint C{description} names, or a UsageError that says why
    there is none.
    """
    try:
        return clientFromString(reactor, description)
    except EndpointError as e:
        raise _unusable(option, description, e) from None


def _unusable(option: str, description: str, problem: EndpointError) -> usage.UsageError:
    # Quoted as typed: repr() would double every backslash of an escaped ':'.
    return usage.UsageError(f"{option} '{description}' is not usable: {problem}.")


def globalReactor() -> IReactorCore:
    from twisted.internet import reactor

    return cast(IReactorCore, reactor)


def twistLogLevel(options: usage.Options) -> LogLevel | None:
    """
    The level C{twist --log-level} filters at, when run under C{twist}: its
    only log observer drops everything below it, so events below it need
    not be built.
    """
    parent = getattr(options, "parent", None)
    level = parent.get("logLevel") if isinstance(parent, usage.Options) else None
    return cast(LogLevel, level) if level in list(LogLevel.iterconstants()) else None


#: The options every plugin takes for its event stream.
EVENTS_OPTIONS = [
    [
        "events",
        None,
        None,
        "Write every lifecycle event here as JSON Lines ('-': standard output); "
        "the per-connection ones then go only there, not to twist's log.",
    ],
    [
        "events-only",
        None,
        None,
        "With --events: write only these phases, a comma list of lifecycle "
        "values (e.g. close: one line per connection).",
    ],
]


def checkEvents(options: usage.Options) -> None:
    """
    Check C{--events} (a file that can be appended to) and C{--events-only}
    (known phases), and turn the latter into a set.
    """
    path, only = options["events"], options["events-only"]
    if only is not None:
        if path is None:
            raise usage.UsageError("--events-only applies to --events; give --events PATH too.")
        phases = frozenset(name.strip() for name in only.split(",") if name.strip())
        unknown = sorted(phases - set(PHASES))
        if unknown or not phases:
            raise usage.UsageError(
                f"--events-only takes a comma list of lifecycle phases ({', '.join(PHASES)}), "
                f"not {only!r}."
            )
        options["events-only"] = phases
    if path is None or path == "-":
        return
    if not path:
        raise usage.UsageError("--events needs a file name ('-': standard output), not ''.")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as e:
        raise usage.UsageError(f"--events {path!r} cannot be written: {e.strerror}.") from None
