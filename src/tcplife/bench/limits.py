"""
Server memory under hostile and heavy load: clients that send and never read,
rounds of them, and many idle connections.  Prints a table; --json writes it
as JSON::

    python -m tcplife.bench.limits [--json PATH] [--scenarios one,many,rounds,idle]

Each scenario starts a fresh server (tcplife's `twist tcpecho`, and bare
Twisted `wire.Echo` for comparison) and reads its RSS from /proc.  Figures are
RSS growth over the server's own baseline after one warm-up echo, or (rounds)
the RSS itself after each round; they are reported, never asserted (see
"Running it in production" in docs/server.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
BARE_TWISTED = """
import sys
from twisted.internet import reactor, protocol
from twisted.protocols.wire import Echo
reactor.listenTCP(int(sys.argv[1]), protocol.Factory.forProtocol(Echo), backlog=4096,
                  interface="127.0.0.1")
reactor.run()
"""
MiB = 1 << 20


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def allowDescriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextmanager
def server(kind: str) -> Iterator[tuple[int, int]]:
    """
    Start a server; yield its pid and port once it echoes.
    """
    port = freePort()
    if kind == "tcplife":
        argv = [str(BIN / "twist"), "--log-level", "warn", "tcpecho", "--port", str(port)]
        argv += ["--interface", "127.0.0.1", "--backlog", "4096"]
    else:
        argv = [sys.executable, "-c", BARE_TWISTED, str(port)]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=allowDescriptors
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as warm:
                    warm.sendall(b"warm-up")
                    warm.recv(16)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield process.pid, port
    finally:
        process.kill()
        process.wait()


def pushWithoutReading(
    port: int, clients: int, perClient: int, seconds: float, pid: int
) -> dict[str, int]:
    """
    C{clients} connections each try to push C{perClient} bytes and never
    read; stops when all are sent, or nobody could send for 2 s, or after
    C{seconds}.  Returns what was pushed and the server's peak RSS.
    """
    chunk = b"p" * (256 * 1024)
    selector = selectors.DefaultSelector()
    sockets = []
    sent = dict.fromkeys(range(clients), 0)
    for n in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        sockets.append(s)
        selector.register(s, selectors.EVENT_WRITE, n)
    peak = rss(pid)
    started = lastProgress = time.monotonic()
    while selector.get_map() and time.monotonic() - started < seconds:
        events = selector.select(timeout=0.1)
        now = time.monotonic()
        for key, _ in events:
            n = key.data
            try:
                sent[n] += key.fileobj.send(chunk)  # type: ignore[union-attr]
                lastProgress = now
            except BlockingIOError:
                continue
            if sent[n] >= perClient:
                selector.unregister(key.fileobj)
        peak = max(peak, rss(pid))
        if now - lastProgress > 2.0:
            break
    for _ in range(10):  # the server may still be reading what is in flight
        time.sleep(0.1)
        peak = max(peak, rss(pid))
    for s in sockets:
        s.close()
    return {"pushed_bytes": sum(sent.values()), "peak_rss": peak}


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def repeatedFloods(port: int, pid: int, rounds: int, clients: int, perClient: int) -> list[float]:
    """
    C{rounds} rounds of C{clients} clients that push up to C{perClient} bytes
    without reading, then close; the server's RSS (MiB) after each round,
    once it has closed them all (its descriptors are back to what they were).
    """
    idle = descriptors(pid)
    after = []
    for _ in range(rounds):
        pushWithoutReading(port, clients, perClient, 20.0, pid)
        deadline = time.monotonic() + 30
        while descriptors(pid) > idle and time.monotonic() < deadline:
            time.sleep(0.05)
        after.append(rss(pid) / MiB)
    return after


def idleConnections(port: int, count: int, pid: int) -> dict[str, int]:
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for n, client in enumerate(clients):
        client.sendall(b"%08d" % n)
    for n, client in enumerate(clients):
        assert client.recv(8) == b"%08d" % n
    time.sleep(0.5)
    after = rss(pid)
    for client in clients:
        client.close()
    return {"rss": after}


SCENARIOS = ("one", "many", "rounds", "idle")


def measure(kind: str, scenarios: set[str], args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "one" in scenarios:
        with server(kind) as (pid, port):
            base = rss(pid)
            one = pushWithoutReading(port, 1, 1 << 30, 20.0, pid)
            row["one_reader_never_reads_pushed_MiB"] = one["pushed_bytes"] / MiB
            row["one_reader_never_reads_rss_growth_MiB"] = (one["peak_rss"] - base) / MiB
    if "many" in scenarios:
        with server(kind) as (pid, port):
            base = rss(pid)
            many = pushWithoutReading(port, 200, 1 << 30, 20.0, pid)
            row["200_never_read_pushed_MiB"] = many["pushed_bytes"] / MiB
            row["200_never_read_rss_growth_MiB"] = (many["peak_rss"] - base) / MiB
    if "rounds" in scenarios:
        with server(kind) as (pid, port):
            row["rounds_start_rss_MiB"] = rss(pid) / MiB
            row["rounds_rss_after_each_MiB"] = repeatedFloods(
                port, pid, args.rounds, 200, args.round_bytes
            )
    if "idle" in scenarios:
        with server(kind) as (pid, port):
            base = rss(pid)
            idle = idleConnections(port, args.idle, pid)
            row["idle_connections"] = args.idle
            row["idle_rss_per_connection_KiB"] = (idle["rss"] - base) / args.idle / 1024
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument("--idle", type=int, default=15_000, help="idle connections to hold")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of 200 flooding clients")
    parser.add_argument(
        "--round-bytes",
        type=int,
        default=8 * MiB,
        help="bytes each flooding client of a round pushes at most",
    )
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    allowDescriptors()
    results = {kind: measure(kind, scenarios, args) for kind in ("tcplife", "bare-twisted")}
    print(f"{'figure':42} {'tcplife':>12} {'bare Twisted':>14}")
    for name, value in results["tcplife"].items():
        other = results["bare-twisted"][name]
        if isinstance(value, list):
            print(f"{name}:")
            for n, (mine, theirs) in enumerate(zip(value, other, strict=True), 1):
                print(f"{'  round ' + str(n):42} {mine:12.1f} {theirs:14.1f}")
        else:
            print(f"{name:42} {value:12.1f} {other:14.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
