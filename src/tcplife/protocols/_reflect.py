"""
Who answered: a first line, before the protocol's own output, that names
the server and the addresses it saw.
"""

from __future__ import annotations

import json

from twisted.internet.interfaces import IProtocol

from ..events import describeAddress
from ._wrapper import ConnectionWrapper


def reflectionLine(server: str, client: str, local: str) -> bytes:
    """
    The line L{Reflect} writes: one JSON object and a newline.
    """
    document = {"server": server, "client": client, "local": local}
    return json.dumps(document).encode("utf-8") + b"\n"


class Reflect(ConnectionWrapper):
    """
    Writes C{{"server": NAME, "client": "HOST:PORT", "local": "HOST:PORT"}}
    and a newline on each connection, before anything the protocol writes.

    C{client} and C{local} are the connection's addresses as the protocol
    sees them, in the form of the events: behind a PROXY header, the
    client's own address and the one it connected to (the balancer's
    frontend), as in the C{accept} event.
    """

    def __init__(self, wrapped: IProtocol, name: str) -> None:
        super().__init__(wrapped)
        self.name = name

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        line = reflectionLine(
            self.name, describeAddress(transport.getPeer()), describeAddress(transport.getHost())
        )
        transport.write(line)
