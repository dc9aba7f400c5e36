"""
Runs the servers and the load client, interleaved, and collects the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._load import LoadResult
from ._proc import descendants

PYTHON = sys.executable
TWIST = str(Path(sys.executable).parent / "twist")

#: Scenarios with the load client's options for each.
SCENARIOS: dict[str, list[str]] = {
    "rr": ["--connections", "100", "--size", "1024"],
    "stream": ["--size", str(64 * 1024), "--in-flight", str(256 * 1024)],
    "connect": ["--connections", "50", "--size", "64"],
}

#: Every figure is also given as a ratio to each of these.
PEERS = ("asyncio", "uvloop", "twisted")


@dataclass(frozen=True)
class ServerSpec:
    """
    One server under test.

    @ivar name: Its column in the table.
    @ivar argv: Its command line; C{{port}} is replaced by the port.
    @ivar scenarios: The scenarios it takes part in.
    @ivar logsEvents: Whether its standard output is twist's JSON log, whose
        lifecycle events are counted at the end.
    @ivar eventsFile: Whether it writes its events to C{{workdir}}'s file
        of its name (C{--events}), whose lines are counted at the end.
    @ivar workers: C{twist tcpecho --workers N}: its server CPU is that of
        the supervisor and every worker; with two or more it is not pinned
        (nor is the load client), the scheduler spreads all of them over
        the machine's cores.
    """

    name: str
    argv: tuple[str, ...]
    scenarios: frozenset[str]
    logsEvents: bool = False
    eventsFile: bool = False
    workers: int | None = None

    @property
    def pinned(self) -> bool:
        return self.workers is None or self.workers == 1

    def eventsPath(self, workdir: Path) -> Path:
        return workdir / (self.name.replace("/", "-").replace(" ", "-") + ".jsonl")


def _tcpecho(*twistOptions: str) -> tuple[str, ...]:
    return (
        TWIST,
        *twistOptions,
        "tcpecho",
        "--port",
        "{port}",
        "--interface",
        "127.0.0.1",
        "--backlog",
        "1024",
    )


def _peer(kind: str) -> tuple[str, ...]:
    return (PYTHON, "-m", "tcplife.bench._peers", kind, "{port}")


EVERYWHERE = frozenset({"rr", "stream", "connect", "idle"})
CONNECT_ONLY = frozenset({"connect"})
WORKERS_SCENARIOS = frozenset({"rr", "connect"})


def _workers(count: int, events: bool = False) -> ServerSpec:
    # At warn, as "tcplife warn": what the workers add, not what logging
    # costs (twist's log is written a record at a time under --workers);
    # with events, what their one --events file costs (connect).
    plural = "" if count == 1 else "s"
    return ServerSpec(
        f"tcplife {count} worker{plural}" + (" events" if events else ""),
        (
            *_tcpecho("--log-level", "warn"),
            "--workers",
            str(count),
            *(("--events", "{events}") if events else ()),
        ),
        CONNECT_ONLY if events else WORKERS_SCENARIOS,
        eventsFile=events,
        workers=count,
    )


SERVERS = (
    ServerSpec("asyncio", _peer("asyncio"), EVERYWHERE),
    ServerSpec("uvloop", _peer("uvloop"), EVERYWHERE),
    ServerSpec("twisted", _peer("twisted"), EVERYWHERE),
    ServerSpec("tcplife", _tcpecho(), EVERYWHERE, logsEvents=True),
    ServerSpec("tcplife warn", _tcpecho("--log-level", "warn"), CONNECT_ONLY),
    ServerSpec("tcplife json", _tcpecho("--log-format", "json"), CONNECT_ONLY, logsEvents=True),
    ServerSpec(
        "tcplife events",
        (*_tcpecho(), "--events", "{events}"),
        CONNECT_ONLY,
        eventsFile=True,
    ),
    ServerSpec(
        "tcplife events close",
        (*_tcpecho(), "--events", "{events}", "--events-only", "close"),
        CONNECT_ONLY,
        eventsFile=True,
    ),
    ServerSpec(
        "tcplife/direct", _tcpecho("--reactor", "tcplife-direct"), EVERYWHERE, logsEvents=True
    ),
    ServerSpec(
        "tcplife/direct warn",
        _tcpecho("--reactor", "tcplife-direct", "--log-level", "warn"),
        CONNECT_ONLY,
    ),
    ServerSpec(
        "tcplife/direct json",
        _tcpecho("--reactor", "tcplife-direct", "--log-format", "json"),
        CONNECT_ONLY,
        logsEvents=True,
    ),
    ServerSpec(
        "tcplife/direct events",
        (*_tcpecho("--reactor", "tcplife-direct"), "--events", "{events}"),
        CONNECT_ONLY,
        eventsFile=True,
    ),
    ServerSpec(
        "tcplife/direct events close",
        (
            *_tcpecho("--reactor", "tcplife-direct"),
            "--events",
            "{events}",
            "--events-only",
            "close",
        ),
        CONNECT_ONLY,
        eventsFile=True,
    ),
    # The workers row: against "tcplife warn" (one process, pinned as it
    # is), or "tcplife" where that does not run (rr: no event per message).
    _workers(1),
    _workers(2),
    _workers(2, events=True),
)


def _pinned(cpu: int, spec: ServerSpec | None = None) -> list[str]:
    # Server and client on different cores, each alone on its own, where the
    # machine has two and taskset is there; several workers and the client
    # are left to the scheduler.
    if spec is not None and not spec.pinned:
        return []
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    connections: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid


def startServer(spec: ServerSpec, workdir: Path) -> RunningServer:
    port = _freePort()
    events = str(spec.eventsPath(workdir))
    argv = [
        *_pinned(0, spec),
        *(arg.replace("{port}", str(port)).replace("{events}", events) for arg in spec.argv),
    ]
    log = workdir / (spec.name.replace("/", "-").replace(" ", "-") + ".log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = RunningServer(spec, port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{spec.name} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        # The probe was one connection too.
        server.connections = 1
        _waitForWorkers(server, deadline)
        return server
    raise RuntimeError(f"{spec.name} did not listen on port {port} within 30 s")


def _waitForWorkers(server: RunningServer, deadline: float) -> None:
    # The supervisor's socket queues connections before any worker serves
    # them: wait until every worker waits in its reactor's epoll (at warn,
    # no listen event says so).
    if server.spec.workers is None:
        return
    while time.monotonic() < deadline:
        waiting = [pid for pid in descendants(server.pid) if _wchan(pid) == "do_epoll_wait"]
        if len(waiting) >= server.spec.workers:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.spec.name}: not every worker was serving within 30 s")


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def stopServer(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(20)


def runLoad(server: RunningServer, scenario: str, options: list[str]) -> LoadResult:
    argv = [
        *_pinned(1, server.spec),
        PYTHON,
        "-m",
        "tcplife.bench._load",
        scenario,
        str(server.port),
        str(server.pid),
        *options,
        *(["--server-tree"] if server.spec.workers is not None else []),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    try:
        fields: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        fields = {
            "scenario": scenario,
            "errors": [f"load client failed: {done.stderr.decode(errors='replace')[-500:]}"],
        }
    result = LoadResult(**fields)
    server.connections += result.connections
    return result


@dataclass
class Summary:
    """
    The medians of one server's runs of one scenario.
    """

    runs: int
    messagesPerSecond: float
    megabytesPerSecond: float
    p50: float
    p99: float
    cpuPerMessage: float  # microseconds
    clientCpuPerMessage: float = 0.0  # microseconds
    serverCores: float = 0.0  # CPU seconds per second: how many cores busy
    clientCores: float = 0.0
    machineCores: float = 0.0  # every process's, other work included
    busiestCore: float = 0.0  # the busiest core's share of the time
    ratios: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def printRun(
    progress: IO[str],
    label: str,
    messages: int,
    seconds: float,
    cpuSeconds: float,
    errors: list[str],
    cpuLabel: str,
) -> None:
    """
    One run's progress line: its rate, its CPU per message and its errors.
    """
    perMessage = cpuSeconds / messages * 1e6 if messages else 0.0
    print(
        f"  {label}: {messages / max(seconds, 1e-9):,.0f} msgs/s, {perMessage:.1f} us {cpuLabel}"
        + (f", ERRORS {errors}" if errors else ""),
        file=progress,
        flush=True,
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summarize(results: list[LoadResult]) -> Summary:
    good = [r for r in results if r.messages and r.seconds > 0]
    errors = [e for r in results for e in r.errors]
    return Summary(
        runs=len(good),
        messagesPerSecond=_median([r.messages / r.seconds for r in good]),
        megabytesPerSecond=_median([r.bytes / r.seconds / 1e6 for r in good]),
        p50=_median([r.p50 for r in good]),
        p99=_median([r.p99 for r in good]),
        cpuPerMessage=_median([r.cpuSeconds / r.messages * 1e6 for r in good]),
        clientCpuPerMessage=_median([r.clientCpuSeconds / r.messages * 1e6 for r in good]),
        serverCores=_median([r.cpuSeconds / r.seconds for r in good]),
        clientCores=_median([r.clientCpuSeconds / r.seconds for r in good]),
        machineCores=_median([r.busySeconds / r.seconds for r in good]),
        busiestCore=_median([r.busiestCoreSeconds / r.seconds for r in good]),
        errors=errors,
    )


def countEvents(log: Path) -> dict[str, int]:
    """
    How many C{accept} and C{close} events a twist JSON log (or an
    C{--events} file) holds.
    """
    data = log.read_bytes()
    return {
        phase: data.count(b'"lifecycle": "%s"' % phase.encode())
        + data.count(b'"lifecycle":"%s"' % phase.encode())
        for phase in ("accept", "close")
    }


@dataclass
class BenchResults:
    settings: dict[str, Any]
    summaries: dict[str, dict[str, Summary]] = field(default_factory=dict)
    runs: dict[str, dict[str, list[LoadResult]]] = field(default_factory=dict)
    idle: dict[str, float] = field(default_factory=dict)  # bytes of RSS per connection
    events: dict[str, dict[str, int]] = field(default_factory=dict)


def runBench(
    scenarios: list[str],
    servers: list[ServerSpec],
    duration: float,
    repeats: int,
    idleConnections: int,
    workdir: Path,
    progress: IO[str],
) -> BenchResults:
    results = BenchResults(
        settings={
            "duration_s": duration,
            "repeats": repeats,
            "idle_connections": idleConnections,
            "pinned": bool(_pinned(0)),
            "cores": os.cpu_count() or 1,
        }
    )
    running: list[RunningServer] = []
    try:
        for spec in servers:
            running.append(startServer(spec, workdir))
        # Memory first, on servers fresh from start: after the connect
        # churn, freed memory would be reused and hide the growth.
        ordered = sorted(scenarios, key=lambda name: name != "idle")
        for scenario in ordered:
            taking = [s for s in running if scenario in s.spec.scenarios]
            if scenario == "idle":
                for server in taking:
                    result = runLoad(server, "idle", ["--connections", str(idleConnections)])
                    server.connections += 200  # the warm-up connections
                    results.runs.setdefault("idle", {})[server.spec.name] = [result]
                    if result.errors:
                        print(f"  idle {server.spec.name}: {result.errors}", file=progress)
                    results.idle[server.spec.name] = result.rssPerConnection
                continue
            options = [*SCENARIOS[scenario], "--duration", str(duration)]
            byServer: dict[str, list[LoadResult]] = {s.spec.name: [] for s in taking}
            for repeat in range(repeats):
                # A B C A B C ...: a burst of load elsewhere on the machine
                # hits every server alike instead of one.
                for server in taking:
                    result = runLoad(server, scenario, options)
                    byServer[server.spec.name].append(result)
                    printRun(
                        progress,
                        f"{scenario} #{repeat + 1} {server.spec.name}",
                        result.messages,
                        result.seconds,
                        result.cpuSeconds,
                        result.errors,
                        "CPU/msg",
                    )
            results.runs[scenario] = byServer
            summaries = {name: summarize(runs) for name, runs in byServer.items()}
            for summary in summaries.values():
                for peer in PEERS:
                    if peer in summaries and summaries[peer].cpuPerMessage:
                        summary.ratios[peer] = summary.cpuPerMessage / summaries[peer].cpuPerMessage
            results.summaries[scenario] = summaries
    finally:
        for server in running:
            stopServer(server)
    for server in running:
        if server.spec.logsEvents or server.spec.eventsFile:
            counted = countEvents(
                server.spec.eventsPath(workdir) if server.spec.eventsFile else server.log
            )
            counted["connections"] = server.connections
            results.events[server.spec.name] = counted
    return results
