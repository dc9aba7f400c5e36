"""
A strict parser of PROXY protocol v1 headers, as section 2.1 of HAProxy's
C{doc/proxy-protocol.txt} specifies them.

Twisted's C{V1Parser} rejects the bare C{PROXY UNKNOWN\\r\\n} that the spec
requires a receiver to accept (HAProxy sends it for a client that came in
over a UNIX socket), and accepts what the spec forbids: a line longer than
107 bytes, IPv6 addresses after C{TCP4} and IPv4 ones after C{TCP6}, numbers
with leading zeroes, and fields beyond the sixth.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo

#: The longest line the spec allows, CRLF included: C{UNKNOWN} followed by
#: two full-length IPv6 addresses and two five-digit ports.
MAX_LINE: Final = 107

SIGNATURE: Final = b"PROXY "

# Decimal without leading zeroes: the spec forbids them so that no receiver
# can read a number as octal.
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
# Hex groups and colons only: ipaddress would also take an embedded dotted
# quad (::ffff:1.2.3.4) or a scope (fe80::1%eth0), which the spec's form has not.
_IPV6 = re.compile(rb"[0-9A-Fa-f:]{2,39}")


class V1HeaderParser:
    """
    Reads one v1 header line; the same C{feed} as Twisted's parsers.

    Each L{InvalidProxyHeader} it raises says, in a few words, what is wrong.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyInfo | None, bytes]:
        """
        Take the next bytes of the connection.

        @return: The header and the bytes after it, once the line is
            complete; until then C{(None, b"")}.
        @raise InvalidProxyHeader: The line is not a valid v1 header.
        """
        buffer = self._buffer + data
        # The spec: a line whose CRLF is not within its first 107 bytes is
        # invalid, and a lone CR or LF does not end it.
        newline = buffer.find(b"\n", 0, MAX_LINE)
        if newline < 0:
            if len(buffer) >= MAX_LINE:
                raise InvalidProxyHeader(f"no CRLF within {MAX_LINE} bytes")
            self._buffer = buffer
            return None, b""
        if buffer[newline - 1 : newline] != b"\r":
            raise InvalidProxyHeader("LF without CR")
        self._buffer = b""
        return parseHeaderLine(buffer[: newline + 1]), buffer[newline + 1 :]


def parseHeaderLine(header: bytes) -> ProxyInfo:
    """
    The addresses a complete v1 header line (with its CRLF) names.

    @raise InvalidProxyHeader: It is not a valid v1 header.
    """
    fields = header[:-2].split(b" ")
    if fields[0] != b"PROXY" or len(fields) < 2:
        raise InvalidProxyHeader("not a v1 header")
    protocol = fields[1]
    if protocol == b"UNKNOWN":
        # The spec: the rest of the line may be omitted, and the receiver
        # ignores whatever comes before the CRLF and keeps the connection's
        # own addresses.
        return ProxyInfo(header, None, None)
    if protocol not in (b"TCP4", b"TCP6"):
        raise InvalidProxyHeader("protocol is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise InvalidProxyHeader(f"{protocol.decode()} needs two addresses and two ports")
    _, _, source, destination, sourcePort, destinationPort = fields
    if protocol == b"TCP4":
        return ProxyInfo(
            header,
            IPv4Address("TCP", _ipv4(source), _port(sourcePort)),
            IPv4Address("TCP", _ipv4(destination), _port(destinationPort)),
        )
    return ProxyInfo(
        header,
        IPv6Address("TCP", _ipv6(source), _port(sourcePort)),
        IPv6Address("TCP", _ipv6(destination), _port(destinationPort)),
    )


def _ipv4(field: bytes) -> str:
    # ipaddress is as strict as the spec here: four decimal numbers of at
    # most 255, ASCII digits only, no leading zeroes.
    try:
        return ipaddress.IPv4Address(field.decode("ascii")).compressed
    except ValueError:
        raise InvalidProxyHeader("TCP4 needs IPv4 addresses") from None


def _ipv6(field: bytes) -> str:
    if _IPV6.fullmatch(field) is not None:
        try:
            return ipaddress.IPv6Address(field.decode("ascii")).compressed
        except ValueError:
            pass
    raise InvalidProxyHeader("TCP6 needs IPv6 addresses")


def _port(field: bytes) -> int:
    if _PORT.fullmatch(field) is None or int(field) > 65535:
        raise InvalidProxyHeader("a port is not a number from 0 to 65535")
    return int(field)
