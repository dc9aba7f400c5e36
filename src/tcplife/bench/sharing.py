"""
Two ways for two processes to serve one port, measured as C{twist tcpecho}
runs them::

    python -m tcplife.bench.sharing [--held N] [--queued N] [--seconds S]

  - C{shared}: C{--workers 2}, one listening socket the supervisor bound,
    held by both workers: one accept queue;
  - C{reuseport}: two C{--reuse-port} processes, each with a socket and a
    queue of its own, the kernel hashing each new connection to one.

I{kill -9}: both capped at C{--held} connections each, C{2 * held} clients
served and C{--queued} more waiting with their requests sent; one process
is killed; then the survivor's clients close, so the queue can move.  How
many served clients were cut off, and how many of the queued were served,
reset, or left waiting.

I{wake-ups}: the connect load (C{python -m tcplife.bench._load connect}),
with 1 and with 50 clients connecting at a time, for C{--seconds} with
C{strace -c} on both serving processes: C{accept4} calls and the
C{EAGAIN}s among them per connection accepted, and C{epoll_wait} calls.
Each wake-up ends in one C{EAGAIN} (tcplife accepts until the queue is
empty); the thundering herd (both processes woken for one connection, one
of them for nothing) shows as the shared socket's excess over SO_REUSEPORT's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ._run import PYTHON, TWIST, _freePort

MODELS = ("shared", "reuseport")
_REQUEST = b"queued request " * 64
_TRACED = "trace=accept4,epoll_wait,epoll_pwait"


class Servers:
    """
    The processes serving one port, one way or the other, and their log.
    """

    def __init__(self, model: str, port: int, held: int, workdir: Path) -> None:
        self.model = model
        self.port = port
        self.log = workdir / f"{model}.log"
        base = [TWIST, "--log-format", "json", "--log-file", str(self.log), "tcpecho"]
        base += ["--port", str(port), "--interface", "127.0.0.1", "--backlog", "1024"]
        base += ["--max-connections", str(held)]
        if model == "shared":
            commands = [[*base, "--workers", "2"]]
        else:
            commands = [[*base, "--reuse-port"] for _ in range(2)]
        self.processes = [
            subprocess.Popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            for c in commands
        ]
        self._waitFor(3 if model == "shared" else 2, "listen")

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        text = self.log.read_text(errors="replace")
        return [json.loads(r) for r in text.split("\x1e") if r.strip().endswith("}")]

    def _waitFor(self, count: int, phase: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 for e in self.events() if e.get("lifecycle") == phase) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.model}: fewer than {count} {phase} events in 30 s")

    def serving(self) -> list[int]:
        """
        The pids of the two processes that accept.
        """
        if self.model == "reuseport":
            return [p.pid for p in self.processes]
        started = [e for e in self.events() if e.get("supervisor") == "worker-started"]
        return [e["pid"] for e in started][-2:]

    def stop(self) -> None:
        for process in self.processes:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def serving(model: str, held: int) -> Iterator[Servers]:
    with tempfile.TemporaryDirectory(prefix="tcplife-sharing-") as workdir:
        servers = Servers(model, _freePort(), held, Path(workdir))
        try:
            yield servers
        finally:
            servers.stop()


def _ended(client: socket.socket) -> bool:
    """
    Whether C{client}'s connection was reset or closed (without waiting).
    """
    client.setblocking(False)
    try:
        return client.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def killOne(model: str, held: int, queued: int) -> dict[str, int]:
    """
    The kill -9 run of one model (see the module).
    """
    with serving(model, held) as servers:
        clients = []
        for _ in range(2 * held + queued):
            client = socket.create_connection(("127.0.0.1", servers.port), timeout=10)
            client.sendall(_REQUEST)
            clients.append(client)
        # Time for the served ones' echoes to come back (no echo: queued).
        time.sleep(1.0)
        answered, waiting = [], []
        for client in clients:
            client.setblocking(False)
            try:
                client.recv(1 << 16)
                answered.append(client)
            except BlockingIOError:
                waiting.append(client)
        os.kill(servers.serving()[0], signal.SIGKILL)
        time.sleep(0.5)
        cut = [c for c in answered if _ended(c)]
        for client in answered:
            client.close()
        served = reset = stuck = 0
        for client in waiting:
            client.setblocking(True)
            client.settimeout(10)
            received = b""
            try:
                client.shutdown(socket.SHUT_WR)
                while chunk := client.recv(1 << 16):
                    received += chunk
            except TimeoutError:
                stuck += 1
                continue
            except OSError:
                reset += 1
                continue
            finally:
                client.close()
            if received == _REQUEST:
                served += 1
            else:
                reset += 1
        return {
            "served_before": len(answered),
            "cut_off": len(cut),
            "queued": len(waiting),
            "queued_served": served,
            "queued_reset": reset,
            "queued_unserved": stuck,
        }


def _straceCounts(summary: str) -> dict[str, tuple[int, int]]:
    counts = {}
    for line in summary.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in ("accept4", "accept", "epoll_wait", "epoll_pwait"):
            calls = int(fields[3])
            errors = int(fields[4]) if len(fields) == 6 else 0
            counts[fields[-1]] = (calls, errors)
    return counts


def wakeUps(model: str, seconds: float, concurrency: int) -> dict[str, float]:
    """
    The wake-ups run of one model (see the module).
    """
    strace = shutil.which("strace")
    if strace is None:
        return {}
    with serving(model, 10_000) as servers, tempfile.NamedTemporaryFile("r") as out:
        pids = [arg for pid in servers.serving() for arg in ("-p", str(pid))]
        tracer = subprocess.Popen(
            [strace, "-f", "-c", "-o", out.name, "-e", _TRACED, *pids],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        load = subprocess.run(
            [
                *(PYTHON, "-m", "tcplife.bench._load", "connect", str(servers.port)),
                *(str(servers.processes[0].pid), "--duration", str(seconds)),
                *("--connections", str(concurrency), "--size", "64"),
            ],
            capture_output=True,
            timeout=120,
        )
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        counts = _straceCounts(Path(out.name).read_text())
    accepted = json.loads(load.stdout)["connections"] or 1
    accepts, empty = counts.get("accept4", (0, 0))
    polls = sum(calls for name, (calls, _) in counts.items() if name.startswith("epoll"))
    return {
        "connections": accepted,
        "accept4_per_connection": accepts / accepted,
        "eagain_per_connection": empty / accepted,
        "epoll_waits_per_connection": polls / accepted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplife.bench.sharing")
    parser.add_argument("--held", type=int, default=10, help="the cap of each process")
    parser.add_argument("--queued", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3.0, help="of connect load")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for model in MODELS:
        results[model] = {
            "kill": killOne(model, args.held, args.queued),
            "wakeups": {str(c): wakeUps(model, args.seconds, c) for c in (1, 50)},
        }
    print(
        f"kill -9 of one of two processes capped at {args.held}:\n"
        f"{'model':<10} {'served':>6} {'cut off':>7} {'queued':>6} {'q served':>8} "
        f"{'q reset':>7} {'q unserved':>10}"
    )
    for model, figures in results.items():
        kill = figures["kill"]
        print(
            f"{model:<10} {kill['served_before']:>6} {kill['cut_off']:>7} {kill['queued']:>6} "
            f"{kill['queued_served']:>8} {kill['queued_reset']:>7} {kill['queued_unserved']:>10}"
        )
    print(
        f"\nwake-ups under connect load ({args.seconds:g} s, strace -c):\n"
        f"{'model':<10} {'clients':>7} {'conns':>7} {'accept4/conn':>12} {'EAGAIN/conn':>11} "
        f"{'epoll/conn':>10}"
    )
    for model, figures in results.items():
        for concurrency, wake in figures["wakeups"].items():
            print(
                f"{model:<10} {concurrency:>7} {wake.get('connections', 0):>7,.0f} "
                f"{wake.get('accept4_per_connection', 0):>12.2f} "
                f"{wake.get('eagain_per_connection', 0):>11.2f} "
                f"{wake.get('epoll_waits_per_connection', 0):>10.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
