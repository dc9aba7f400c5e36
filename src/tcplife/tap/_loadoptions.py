"""
The checks of C{twist tcpclient}'s load options that go beyond one value:
output paths, intervals, thresholds, and the local address to connect from.
Each bad value is one sentence that names the option.
"""

from __future__ import annotations

import errno
import math
import os
import socket

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.python import usage

from ..client import Thresholds

#: The shortest --interval: shorter ones would spend the client's time on
#: reports rather than on load.
SHORTEST_INTERVAL = 0.01


def number(option: str, text: str, what: str, *, lowest: float = 0.0) -> float:
    """
    A finite number above C{lowest} (or at least it, when it is above 0).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value < lowest:
        bound = f"from {lowest:g} up" if lowest else "above 0"
        raise usage.UsageError(f"{option} must be a number of {what} {bound}, not {text!r}.")
    return value


def writablePath(option: str, path: str) -> None:
    """
    Refuse now a path that could not take what is written there at the end
    of the run (a report), not after the whole run.
    """
    if not path:
        raise usage.UsageError(f"{option} needs a file name ('-': standard output), not ''.")
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a name too long, a loop of links, ...
        raise usage.UsageError(f"{option} {path!r} cannot be written: {e.strerror}.") from None
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path) or not os.path.isdir(directory):
        raise usage.UsageError(
            f"{option} {path!r} cannot be written: no such directory, or it is one."
        )
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise usage.UsageError(f"{option} {path!r} cannot be written: permission denied.")


def outputs(json: str | None, stream: str | None) -> None:
    """
    C{--json} and C{--json-stream}: each a writable path or C{-}, and at
    most one of them standard output.
    """
    if json == "-" and stream == "-":
        raise usage.UsageError(
            "--json and --json-stream cannot both go to standard output ('-'); "
            "give one of them a file name."
        )
    for option, path in (("--json", json), ("--json-stream", stream)):
        if path is not None and path != "-":
            writablePath(option, path)


def interval(text: str | None) -> float:
    """
    The seconds between interval reports (default 1).
    """
    if text is None:
        return 1.0
    return number("--interval", text, "seconds", lowest=SHORTEST_INTERVAL)


def thresholds(maxP99: str | None, maxErrors: str | None, minRate: str | None) -> Thresholds:
    """
    C{--max-p99 MS}, C{--max-errors N} and C{--min-rate R}.
    """
    errors = None
    if maxErrors is not None:
        try:
            errors = int(maxErrors)
        except ValueError:
            errors = -1
        if errors < 0:
            raise usage.UsageError(
                f"--max-errors must be a whole number from 0 up, not {maxErrors!r}."
            )
    return Thresholds(
        maxP99=None if maxP99 is None else number("--max-p99", maxP99, "milliseconds"),
        maxErrors=errors,
        minRate=None if minRate is None else number("--min-rate", minRate, "messages per second"),
    )


def bindAddress(address: str, targets: list[str], host: str | None) -> str:
    """
    C{--bind ADDR}: an IP address of this host, of the family of every
    target given as an address, and no UNIX target.

    @param targets: The C{--connect} descriptions.
    @param host: C{--host}, when the target is given that way.
    """
    address = address.strip().strip("[]")
    ipv6 = isIPv6Address(address)
    if not (ipv6 or isIPAddress(address)):
        raise usage.UsageError(f"--bind must be an IPv4 or IPv6 address, not {address!r}.")
    for description in targets:
        if description.lower().startswith("unix:"):
            raise usage.UsageError(
                f"--bind applies to TCP connections; {description!r} is a UNIX socket."
            )
    if (
        host is not None
        and (isIPAddress(host) or isIPv6Address(host))
        and (isIPv6Address(host) != ipv6)
    ):
        kind = "IPv6" if ipv6 else "IPv4"
        raise usage.UsageError(
            f"--bind {address} is an {kind} address, and --host {host} is not: "
            "give addresses of one family."
        )
    probe = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
    try:
        probe.bind((address, 0))
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise usage.UsageError(
                f"--bind {address} is not an address of this host (see 'ip address')."
            ) from None
        raise usage.UsageError(f"--bind {address} cannot be used: {e.strerror}.") from None
    finally:
        probe.close()
    return address


#: The most workers: processes, not threads; beyond this they would only
#: take turns on the cores.
MOST_WORKERS = 1024


def cpus() -> int:
    """
    The CPUs this process may run on.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def workers(text: str | None, connections: int, count: int | None) -> int:
    """
    C{--workers N} or C{auto} (one per CPU, but no more than connections):
    how many worker processes share the run; 1 runs it in this process.
    """
    if text is None:
        return 1
    if text.strip().lower() == "auto":
        return max(1, min(cpus(), connections, count if count is not None else connections))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MOST_WORKERS:
        raise usage.UsageError(
            f"--workers must be a whole number from 1 to {MOST_WORKERS}, or auto, not {text!r}."
        )
    if value > connections:
        raise usage.UsageError(
            f"--workers {value} needs at least {value} --connections (one per worker); "
            f"give more connections, or fewer workers."
        )
    if count is not None and value > count:
        raise usage.UsageError(
            f"--workers {value} needs --count of at least {value} (one message per worker)."
        )
    return value
