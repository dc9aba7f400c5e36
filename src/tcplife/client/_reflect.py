"""
Who answered: the first line a C{twist tcpecho --reflect} server writes,
read by the client, and tallied over a load run.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Final

import attrs

#: The longest first line taken for a reflection.
LONGEST_LINE: Final = 4096


class ReflectionError(ValueError):
    """
    The server's first line is not a reflection; the message says how, in
    a phrase.
    """


@attrs.frozen
class Reflection:
    """
    What the server said of itself and of this connection.

    @ivar server: Its name (C{--name}).
    @ivar client: This client's address as the server saw it (behind a
        balancer that sends a PROXY header, the address in the header).
    @ivar local: The address the server saw this client connect to.
    """

    server: str
    client: str
    local: str

    @classmethod
    def fromLine(cls, line: bytes) -> Reflection:
        try:
            document = json.loads(line)
        except ValueError:
            document = None
        fields = ("server", "client", "local")
        if not isinstance(document, dict) or not all(
            isinstance(document.get(name), str) for name in fields
        ):
            raise ReflectionError(
                f"the server's first line is no reflection (--reflect): {_shown(line)}"
            )
        return cls(*(document[name] for name in fields))


def _shown(line: bytes) -> str:
    shown = line[:60].decode("utf-8", "replace")
    return repr(shown + ("..." if len(line) > 60 else ""))


class ReflectionReader:
    """
    Gathers the first line of a reply, however it is split into reads.
    """

    def __init__(self) -> None:
        self._line = b""

    def feed(self, data: bytes) -> tuple[Reflection | None, bytes]:
        """
        The reflection, once its line is complete, and the bytes after it
        (the echo); L{ReflectionError} if the line is none.
        """
        line = self._line + data
        end = line.find(b"\n")
        if end < 0:
            if len(line) > LONGEST_LINE:
                raise ReflectionError(
                    f"the server's first line is no reflection (--reflect): no newline "
                    f"in its first {LONGEST_LINE} bytes"
                )
            self._line = line
            return None, b""
        self._line = b""
        return Reflection.fromLine(line[:end]), line[end + 1 :]


def hostOf(address: str) -> str:
    """
    The host of an event-style address (C{host:port}, C{[v6]:port}).
    """
    host, colon, port = address.rpartition(":")
    return host if colon and port.isdigit() else address


@attrs.frozen
class Reflections:
    """
    Who answered a load run's connections, and whom they saw.

    @ivar servers: Connections by the server that answered, most first.
    @ivar clients: Connections by the client host the server saw, most
        first.
    @ivar ownAddress: Connections on which the server saw this client's own
        address and port: the balancer passed it on.
    @ivar connections: Connections whose reflection came.
    """

    servers: tuple[tuple[str, int], ...]
    clients: tuple[tuple[str, int], ...]
    ownAddress: int
    connections: int

    @classmethod
    def fromJSON(cls, document: dict[str, Any]) -> Reflections:
        """
        The reflections L{toJSON} wrote (a load worker's, read by the
        process that started it).
        """
        return cls(
            servers=_mostFirst(Counter(document["servers"])),
            clients=_mostFirst(Counter(document["clients"])),
            ownAddress=document["own_address"],
            connections=document["connections"],
        )

    @classmethod
    def added(cls, parts: list[Reflections]) -> Reflections:
        """
        The reflections of several runs (load workers') taken together.
        """
        servers: Counter[str] = Counter()
        clients: Counter[str] = Counter()
        for part in parts:
            servers.update(dict(part.servers))
            clients.update(dict(part.clients))
        return cls(
            servers=_mostFirst(servers),
            clients=_mostFirst(clients),
            ownAddress=sum(part.ownAddress for part in parts),
            connections=sum(part.connections for part in parts),
        )

    def toJSON(self) -> dict[str, Any]:
        return {
            "servers": dict(self.servers),
            "clients": dict(self.clients),
            "own_address": self.ownAddress,
            "connections": self.connections,
        }

    def rows(self) -> list[tuple[str, str]]:
        """
        The report's lines for them: label and text.
        """
        servers = ", ".join(f"{name} {count:,}" for name, count in self.servers) or "none"
        clients = ", ".join(f"{host} {count:,}" for host, count in self.clients) or "none"
        own = f"{self.ownAddress:,} of {self.connections:,} with this client's own address"
        return [("answered by", servers), ("client seen", f"{clients} ({own})")]


class ReflectionTally:
    """
    Counts reflections as a run's connections get them.
    """

    def __init__(self) -> None:
        self.servers: Counter[str] = Counter()
        self.clients: Counter[str] = Counter()
        self.ownAddress = 0

    def add(self, reflection: Reflection, ownAddress: str) -> None:
        """
        One connection's reflection; C{ownAddress} is that connection's own
        local address.
        """
        self.servers[reflection.server] += 1
        self.clients[hostOf(reflection.client)] += 1
        if reflection.client == ownAddress:
            self.ownAddress += 1

    def summary(self) -> Reflections:
        return Reflections(
            servers=_mostFirst(self.servers),
            clients=_mostFirst(self.clients),
            ownAddress=self.ownAddress,
            connections=sum(self.servers.values()),
        )


def _mostFirst(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    # Most first; equal counts by name, so that a report reads the same each run.
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
