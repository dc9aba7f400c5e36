"""
Option values shared by the tcpecho and tcpclient taps: one clear sentence
for every bad value, as twist prints it (C{Error: ...}, exit 64).
"""

from __future__ import annotations

import math
from typing import Any, cast

from twisted.internet.interfaces import IReactorCore, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.reflect import namedAny

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
