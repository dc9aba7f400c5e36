"""
One short, stable text form for every kind of address an event can carry.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress


def describeAddress(address: IAddress | None) -> str:
    """
    Render C{address} as C{host:port}, C{[v6host]:port} or a UNIX path.

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
    if address is None:
        return "unknown"
    return str(address)
