"""
The benchmark's load client: drives one echo server and checks every byte.

It runs in a process of its own (pinned to another CPU than the server) on
uvloop where installed, asyncio otherwise; every server is measured with the
same client.  Each message is a slice of one long pattern (L{RING}) whose
length is prime, so no two messages at different offsets agree and a lost,
repeated or reordered byte shows; an echo is checked with
C{RING.startswith(data, offset)}, a C{memcmp} without a copy.

The server's CPU time is read from C{/proc} at the start and end of the
measurement window, by this process, so that the CPU time and the message
count cover the same interval.

Run as C{python -m tcplife.bench._load SCENARIO PORT PID [options]}; it
prints one JSON object (a L{LoadResult}) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._proc import busySeconds, cpuSeconds, rssBytes, treeCpuSeconds

#: The prime length of the pattern every message is cut from.
PRIME = 1_048_573
#: The pattern, with enough of its start repeated at its end that any
#: message starting anywhere in its first PRIME bytes is one slice.
RING = (bytes(range(251)) * (PRIME // 251 + 2))[:PRIME]
RING = RING + RING[: 1 << 20]
RING_VIEW = memoryview(RING)

HOST = "127.0.0.1"


@dataclass
class LoadResult:
    """
    What one run measured; times in seconds, latencies in microseconds.
    """

    scenario: str
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    cpuSeconds: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    connections: int = 0
    rssPerConnection: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: The load client's own CPU time, every core's busy time (other work
    #: on the machine included), and the busiest core's, over the same
    #: window.
    clientCpuSeconds: float = 0.0
    busySeconds: float = 0.0
    busiestCoreSeconds: float = 0.0


class Window:
    """
    The measurement window: counts messages and latencies while open.
    """

    def __init__(self, serverPID: int, serverCpu: Callable[[int], float] = cpuSeconds) -> None:
        self.serverPID = serverPID
        self._serverCpu = serverCpu
        self.clientStart = 0.0
        self.clientEnd = 0.0
        self.busyStart: list[float] = []
        self.busyEnd: list[float] = []
        self.open = False
        self.messages = 0
        self.bytes = 0
        self.latencies: list[int] = []
        self.errors: list[str] = []
        self.started = 0.0
        self.ended = 0.0
        self.cpuStart = 0.0
        self.cpuEnd = 0.0

    def start(self) -> None:
        self.cpuStart = self._serverCpu(self.serverPID)
        self.clientStart = time.process_time()
        self.busyStart = busySeconds()
        self.started = time.perf_counter()
        self.open = True

    def stop(self) -> None:
        self.open = False
        self.ended = time.perf_counter()
        self.clientEnd = time.process_time()
        self.busyEnd = busySeconds()
        self.cpuEnd = self._serverCpu(self.serverPID)

    def done(self, nbytes: int, latency: int) -> None:
        if self.open:
            self.messages += 1
            self.bytes += nbytes
            self.latencies.append(latency)

    def fail(self, why: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(why)

    def result(self, scenario: str, connections: int) -> LoadResult:
        latencies = sorted(self.latencies)

        def percentile(p: float) -> float:
            if not latencies:
                return 0.0
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000.0

        if self.messages == 0 and not self.errors:
            self.errors.append("no message completed")
        return LoadResult(
            scenario=scenario,
            messages=self.messages,
            bytes=self.bytes,
            seconds=self.ended - self.started,
            cpuSeconds=self.cpuEnd - self.cpuStart,
            clientCpuSeconds=self.clientEnd - self.clientStart,
            busySeconds=sum(self.busyEnd) - sum(self.busyStart),
            busiestCoreSeconds=max(
                (end - start for start, end in zip(self.busyStart, self.busyEnd, strict=False)),
                default=0.0,
            ),
            p50=percentile(0.50),
            p99=percentile(0.99),
            connections=connections,
            errors=self.errors,
        )


class RequestResponse(asyncio.Protocol):
    """
    One message in flight: send, wait for its whole echo, send the next.
    """

    def __init__(self, window: Window, index: int, size: int) -> None:
        self.window = window
        self.size = size
        self.offset = (index * 7919) % PRIME
        self.received = 0
        self.sentAt = 0
        self.going = True
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        assert self.transport is not None
        self.offset = (self.offset + 1031) % PRIME
        self.received = 0
        self.sentAt = time.perf_counter_ns()
        self.transport.write(RING_VIEW[self.offset : self.offset + self.size])

    def data_received(self, data: bytes) -> None:
        received = self.received + len(data)
        if received > self.size or not RING.startswith(data, self.offset + self.received):
            self.window.fail(f"rr: echo differs at byte {self.received} of a message")
            assert self.transport is not None
            self.transport.abort()
            return
        self.received = received
        if received == self.size:
            self.window.done(self.size, time.perf_counter_ns() - self.sentAt)
            if self.going:
                self.send()
            else:
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.going:
            self.window.fail(f"rr: connection lost while running: {exc}")
        if not self.lost.done():
            self.lost.set_result(None)


class Stream(asyncio.Protocol):
    """
    One connection, messages sent back to back while the bytes in flight
    stay within a window.
    """

    def __init__(self, window: Window, size: int, inFlight: int) -> None:
        self.window = window
        self.size = size
        self.inFlight = inFlight
        self.sentOffset = 0  # stream offsets, not ring offsets
        self.receivedOffset = 0
        self.sentAt: deque[int] = deque()
        self.going = True
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def fill(self) -> None:
        assert self.transport is not None
        size = self.size
        while self.going and self.sentOffset + size - self.receivedOffset <= self.inFlight:
            start = self.sentOffset % PRIME
            self.sentAt.append(time.perf_counter_ns())
            self.transport.write(RING_VIEW[start : start + size])
            self.sentOffset += size

    def data_received(self, data: bytes) -> None:
        start = self.receivedOffset % PRIME
        end = self.receivedOffset + len(data)
        if end > self.sentOffset or not RING.startswith(data, start):
            self.window.fail(f"stream: echo differs at stream byte {self.receivedOffset}")
            assert self.transport is not None
            self.transport.abort()
            return
        # Every message whose last byte has now arrived is complete.
        size = self.size
        completed = end // size - self.receivedOffset // size
        self.receivedOffset = end
        if completed:
            now = time.perf_counter_ns()
            for _ in range(completed):
                self.window.done(size, now - self.sentAt.popleft())
        if self.going:
            self.fill()
        elif self.receivedOffset == self.sentOffset:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.going:
            self.window.fail(f"stream: connection lost while running: {exc}")
        if not self.lost.done():
            self.lost.set_result(None)


class OneShot(asyncio.Protocol):
    """
    Connect, send one message, receive its echo, close.
    """

    def __init__(self, window: Window, offset: int, size: int) -> None:
        self.window = window
        self.offset = offset
        self.size = size
        self.received = 0
        self.echoed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(RING_VIEW[self.offset : self.offset + self.size])  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        received = self.received + len(data)
        if received > self.size or not RING.startswith(data, self.offset + self.received):
            self.window.fail("connect: echo differs")
            if not self.echoed.done():
                self.echoed.set_result(False)
            return
        self.received = received
        if received == self.size and not self.echoed.done():
            self.echoed.set_result(True)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.echoed.done():
            self.window.fail(f"connect: lost before the echo: {exc}")
            self.echoed.set_result(False)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def runRequestResponse(
    port: int, window: Window, connections: int, size: int, duration: float
) -> int:
    loop = asyncio.get_running_loop()
    protocols = []
    for index in range(connections):
        _, protocol = await loop.create_connection(
            lambda i=index: RequestResponse(window, i, size),  # type: ignore[misc]
            HOST,
            port,
        )
        protocols.append(protocol)
    # Let the server settle the accepts before the window opens.
    await _sleep(0.1)
    window.start()
    for protocol in protocols:
        protocol.send()
    await _sleep(duration)
    window.stop()
    for protocol in protocols:
        protocol.going = False
    await asyncio.wait_for(asyncio.gather(*(p.lost for p in protocols)), 10)
    return connections


async def runStream(port: int, window: Window, size: int, inFlight: int, duration: float) -> int:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: Stream(window, size, inFlight), HOST, port)
    await _sleep(0.1)
    window.start()
    protocol.fill()
    await _sleep(duration)
    window.stop()
    protocol.going = False
    if protocol.receivedOffset == protocol.sentOffset and protocol.transport is not None:
        protocol.transport.close()
    await asyncio.wait_for(protocol.lost, 10)
    return 1


async def runConnect(port: int, window: Window, workers: int, size: int, duration: float) -> int:
    loop = asyncio.get_running_loop()
    going = True
    opened = 0

    async def worker(index: int) -> None:
        nonlocal opened
        offset = (index * 104729) % PRIME
        while going:
            offset = (offset + 8191) % PRIME
            startedAt = time.perf_counter_ns()
            try:
                transport, protocol = await loop.create_connection(
                    lambda o=offset: OneShot(window, o, size),  # type: ignore[misc]
                    HOST,
                    port,
                )
            except OSError as e:
                window.fail(f"connect: {e}")
                await _sleep(0.01)
                continue
            opened += 1
            echoed = await protocol.echoed
            if echoed:
                window.done(size, time.perf_counter_ns() - startedAt)
            transport.close()

    tasks = [asyncio.ensure_future(worker(i)) for i in range(workers)]
    await _sleep(0.2)
    window.start()
    await _sleep(duration)
    window.stop()
    going = False
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return opened


def runIdle(port: int, serverPID: int, connections: int) -> LoadResult:
    """
    RSS growth of the server per open, idle connection.  Each connection is
    known to be accepted and served (one byte echoed) before it counts.
    """
    result = LoadResult(scenario="idle", connections=connections)

    def openSome(count: int) -> list[socket.socket]:
        opened = []
        for _ in range(count):
            client = socket.create_connection((HOST, port), timeout=10)
            opened.append(client)
        for client in opened:
            client.sendall(b"!")
        for client in opened:
            if client.recv(1) != b"!":
                result.errors.append("idle: echo differs")
        return opened

    # Warm the server's allocator and lazily built state first, and keep
    # those connections open: memory freed by closed ones would be reused
    # and hide the growth.
    warm = openSome(200)
    time.sleep(0.3)
    before = rssBytes(serverPID)
    held = openSome(connections)
    time.sleep(0.3)
    after = rssBytes(serverPID)
    result.rssPerConnection = (after - before) / connections
    for client in warm + held:
        client.close()
    return result


def _installLoop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplife.bench._load")
    parser.add_argument("scenario", choices=["rr", "stream", "connect", "idle"])
    parser.add_argument("port", type=int)
    parser.add_argument("pid", type=int, help="the server's process id, for /proc")
    parser.add_argument(
        "--server-tree",
        action="store_true",
        help="count the CPU of every process under the server's too (its workers)",
    )
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, default=256 * 1024)
    args = parser.parse_args(argv)
    _installLoop()

    if args.scenario == "idle":
        result = runIdle(args.port, args.pid, args.connections)
    else:
        window = Window(args.pid, treeCpuSeconds if args.server_tree else cpuSeconds)
        runner: Callable[[], Any]
        if args.scenario == "rr":

            def runner() -> Any:
                return runRequestResponse(
                    args.port, window, args.connections, args.size, args.duration
                )
        elif args.scenario == "stream":

            def runner() -> Any:
                return runStream(args.port, window, args.size, args.in_flight, args.duration)
        else:

            def runner() -> Any:
                return runConnect(args.port, window, args.connections, args.size, args.duration)

        try:
            connections = asyncio.run(runner())
        except (OSError, asyncio.TimeoutError) as e:
            window.fail(f"{args.scenario}: {type(e).__name__}: {e}")
            if window.open:
                window.stop()
            connections = 0
        result = window.result(args.scenario, connections)
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
