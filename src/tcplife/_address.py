"""
One short, stable text form for every kind of address an event can carry.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.stdio import PipeAddress


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
