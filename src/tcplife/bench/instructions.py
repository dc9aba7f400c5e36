"""
CPU instructions per connection of an echo server, counted by valgrind's
callgrind: a figure that, unlike CPU time on a shared machine, comes out the
same from run to run::

    python -m tcplife.bench.instructions [--connections N] [--concurrency K] [SERVER ...]

Each server (C{warn}, C{events}, C{close}, C{json}, C{log}, C{uvloop}; see
L{SERVERS}) is run under callgrind twice, as a user runs it (C{twist
tcpecho}, or the benchmark's uvloop peer), once for L{BASE} connections and
once for C{N} more, each connection made by a client outside valgrind
(connect, 64 bytes echoed, the client's FIN, the server's close): one at a
time, or C{K} at a time (as the benchmark's connect scenario does, 50), whose
batches of events make the count vary a little from run to run.
The difference of the two totals, divided by C{N}, is what one more
connection costs the server in user space (start-up and shutdown cancel
out); the kernel's share of a connection's CPU is not counted.  With
C{--levers-off LEVER}, tcpecho runs with that speed lever switched off
(C{TCPLIFE_LEVERS_OFF}).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._levers import LEVERS_OFF_VARIABLE
from ._run import PYTHON, _freePort, _peer, _tcpecho

#: The servers measured, by name: twist's options for C{twist tcpecho}, or
#: a peer's command line.
SERVERS: dict[str, tuple[str, ...]] = {
    "warn": _tcpecho("--log-level", "warn"),
    "events": (*_tcpecho(), "--events", "{events}"),
    "close": (*_tcpecho(), "--events", "{events}", "--events-only", "close"),
    "json": _tcpecho("--log-format", "json"),
    "log": _tcpecho(),
    "uvloop": _peer("uvloop"),
}

#: Connections of the first run, which the second one exceeds by C{N}.
BASE = 50

#: Bytes each connection echoes, as in the benchmark's connect scenario.
MESSAGE = b"x" * 64

_TOTALS = re.compile(rb"^(?:totals|summary): (\d+)", re.MULTILINE)


def connectOnce(port: int) -> None:
    """
    One connection to the server on C{port}: 64 bytes echoed, then the
    client's FIN, and the server's close read to its end.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.sendall(MESSAGE)
        echoed = b""
        while len(echoed) < len(MESSAGE):
            chunk = client.recv(4096)
            if not chunk:
                raise RuntimeError(f"the server closed after {len(echoed)} bytes of the echo")
            echoed += chunk
        client.shutdown(socket.SHUT_WR)
        while client.recv(4096):
            pass


def totalInstructions(callgrindOutput: bytes) -> int:
    """
    The instructions a callgrind output file counts in all.
    """
    found = _TOTALS.search(callgrindOutput)
    if found is None:
        raise ValueError("no totals in the callgrind output")
    return int(found.group(1))


def _waitForListening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError:
            time.sleep(0.2)
            continue
        return
    raise RuntimeError(f"the server did not listen on port {port} within 180 s")


def connectMany(port: int, connections: int, concurrency: int) -> None:
    """
    C{connections} connections of L{connectOnce}, C{concurrency} at a time.
    """
    if concurrency <= 1:
        for _ in range(connections):
            connectOnce(port)
        return
    shares = [
        connections // concurrency + (index < connections % concurrency)
        for index in range(concurrency)
    ]
    failures: list[BaseException] = []

    def connectInTurn(count: int) -> None:
        try:
            for _ in range(count):
                connectOnce(port)
        except BaseException as e:  # reported by the caller's thread
            failures.append(e)

    threads = [threading.Thread(target=connectInTurn, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def countRun(
    argv: tuple[str, ...], connections: int, workdir: Path, leversOff: str, concurrency: int = 1
) -> int:
    """
    The instructions of one server run under callgrind that serves
    C{connections} connections (and the probe that saw it listening).
    """
    port = _freePort()
    out = workdir / f"callgrind.{connections}.out"
    events = workdir / f"events.{connections}.jsonl"
    log = workdir / f"server.{connections}.log"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        *(arg.replace("{port}", str(port)).replace("{events}", str(events)) for arg in argv),
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    if leversOff:
        environment[LEVERS_OFF_VARIABLE] = leversOff
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
    try:
        _waitForListening(process, port, log)
        connectMany(port, connections, concurrency)
    finally:
        process.terminate()
        process.wait(120)
    return totalInstructions(out.read_bytes())


def perConnection(
    argv: tuple[str, ...], connections: int, leversOff: str = "", concurrency: int = 1
) -> float:
    """
    Instructions one connection costs the server C{argv}: the difference
    of a run of L{BASE} connections and one of C{BASE + connections}.
    """
    with tempfile.TemporaryDirectory(prefix="tcplife-instructions-") as directory:
        workdir = Path(directory)
        fewer = countRun(argv, BASE, workdir, leversOff, concurrency)
        more = countRun(argv, BASE + connections, workdir, leversOff, concurrency)
    return (more - fewer) / connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tcplife.bench.instructions",
        description="User-space instructions per connection of echo servers, under callgrind.",
    )
    parser.add_argument("servers", nargs="*", default=["warn", "events", "close"])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--levers-off", default="", help="TCPLIFE_LEVERS_OFF for tcpecho")
    options = parser.parse_args(argv)
    unknown = [name for name in options.servers if name not in SERVERS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; choose from {', '.join(SERVERS)}")
    for name in options.servers:
        leversOff = "" if SERVERS[name][0] == PYTHON else options.levers_off
        count = perConnection(SERVERS[name], options.connections, leversOff, options.concurrency)
        suffix = f" (levers off: {leversOff})" if leversOff else ""
        print(f"{name}{suffix}: {count:,.0f} instructions per connection", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
