"""
The peers tcplife is measured against, each the plainest echo server of its
kind.

Run as C{python -m tcplife.bench._peers KIND PORT}, with KIND one of
C{asyncio}, C{uvloop} (the same protocol on uvloop's loop) or C{twisted}
(C{twisted.protocols.wire.Echo} on Twisted's default reactor).  Each listens
on 127.0.0.1 with a backlog of 1024 and serves until killed.
"""

from __future__ import annotations

import asyncio
import sys

BACKLOG = 1024


class AsyncioEcho(asyncio.Protocol):
    """
    Echo, the asyncio way; on EOF asyncio closes the transport for us.
    """

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serveAsyncio(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AsyncioEcho, "127.0.0.1", port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def serveTwisted(port: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import ServerFactory
    from twisted.protocols.wire import Echo

    factory = ServerFactory()
    factory.protocol = Echo
    reactor.listenTCP(port, factory, backlog=BACKLOG, interface="127.0.0.1")
    reactor.run()


def main(argv: list[str]) -> int:
    kind, port = argv[0], int(argv[1])
    if kind == "twisted":
        serveTwisted(port)
    elif kind == "asyncio":
        asyncio.run(serveAsyncio(port))
    elif kind == "uvloop":
        import uvloop

        uvloop.run(serveAsyncio(port))
    else:
        print(f"unknown peer {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
