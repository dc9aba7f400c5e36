"""
The bench's client section: load clients against the same server, each
client's rate and its own CPU time per message, as ratios to a small C
epoll client and to a uvloop client written in the suite.

The server is the C epoll echo server, pinned to CPU 0, so that the
clients, pinned to CPU 1, are what is measured; every client checks every
echoed byte.  Each client reports its own measurement window, after a
warm-up: the C client and the suite's uvloop client by their own clocks,
C{twist tcpclient} by its C{--json-stream} intervals (their C{cpu_s}).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._native import compiled
from ._run import (
    PYTHON,
    TWIST,
    ServerSpec,
    _median,
    _pinned,
    printRun,
    startServer,
    stopServer,
)

#: Scenarios: connections (for connect, workers) and message size.
CLIENT_SCENARIOS: dict[str, tuple[int, int]] = {"rr": (100, 1024), "connect": (50, 64)}

#: Seconds each client runs before its measurement window opens.
WARMUP = 0.4
#: Seconds between twist tcpclient's interval reports.
_INTERVAL = 0.1

#: Every ratio is against these clients.
REFERENCES = ("C epoll", "uvloop")


@dataclass(frozen=True)
class ClientSpec:
    """
    One load client under test.

    @ivar kind: C{c}, C{uvloop} or C{tcplife}.
    @ivar twistOptions: For C{tcplife}: twist's own options (the reactor).
    """

    name: str
    kind: str
    twistOptions: tuple[str, ...] = ()


CLIENTS = (
    ClientSpec("C epoll", "c"),
    ClientSpec("uvloop", "uvloop"),
    ClientSpec("tcplife", "tcplife"),
    ClientSpec("tcplife/direct", "tcplife", ("--reactor", "tcplife-direct")),
)


@dataclass
class ClientRun:
    """
    One run of one client: what completed in its window, and its own CPU
    time over that window.
    """

    client: str
    scenario: str
    messages: int = 0
    seconds: float = 0.0
    cpuSeconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class ClientSummary:
    """
    The medians of one client's runs of one scenario.

    @ivar perCore: Messages per second of the client's own CPU time.
    @ivar rateRatios: Its rate over each reference's.
    @ivar perCoreRatios: Its messages per CPU second over each reference's
        (above 1.00x: more from a core than that reference).
    """

    runs: int
    messagesPerSecond: float
    cpuPerMessage: float  # microseconds
    perCore: float
    rateRatios: dict[str, float] = field(default_factory=dict)
    perCoreRatios: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _command(spec: ClientSpec, scenario: str, port: int, serverPid: int, duration: float,
             programs: dict[str, Path]) -> list[str]:  # fmt: skip
    connections, size = CLIENT_SCENARIOS[scenario]
    if spec.kind == "c":
        return [str(programs["epoll_client"]), scenario, str(port), str(connections),
                str(size), str(duration), str(WARMUP)]  # fmt: skip
    if spec.kind == "uvloop":
        return [PYTHON, "-m", "tcplife.bench._load", scenario, str(port), str(serverPid),
                "--connections", str(connections), "--size", str(size),
                "--duration", str(duration)]  # fmt: skip
    return [TWIST, "--log-file=/dev/null", *spec.twistOptions, "tcpclient",
            "--host", "127.0.0.1", "--port", str(port), "-c", str(connections),
            "-s", str(size), "--pattern", scenario, "-d", str(WARMUP + duration),
            "--interval", str(_INTERVAL), "--json-stream", "-"]  # fmt: skip


def _parsed(spec: ClientSpec, scenario: str, output: str) -> ClientRun:
    run = ClientRun(spec.name, scenario)
    if spec.kind == "c":
        fields: dict[str, Any] = json.loads(output)
        run.messages, run.seconds, run.cpuSeconds = (
            fields["messages"],
            fields["seconds"],
            fields["cpu_s"],
        )
        if fields["errors"]:
            run.errors.append(f"{fields['errors']} errors")
    elif spec.kind == "uvloop":
        fields = json.loads(output)
        run.messages, run.seconds, run.cpuSeconds = (
            fields["messages"],
            fields["seconds"],
            fields["clientCpuSeconds"],
        )
        run.errors.extend(fields["errors"])
    else:
        documents = [json.loads(line) for line in output.splitlines() if line.strip()]
        window = [
            d for d in documents if d["event"] == "interval" and d["start_s"] >= WARMUP - 1e-6
        ]
        run.messages = sum(d["messages"] for d in window)
        run.seconds = sum(d["end_s"] - d["start_s"] for d in window)
        run.cpuSeconds = sum(d["cpu_s"] for d in window)
        [end] = [d for d in documents if d["event"] == "end"] or [{"errors": {}}]
        errors = {kind: count for kind, count in end["errors"].items() if count}
        if errors:
            run.errors.append(f"errors: {errors}")
    return run


def runClient(spec: ClientSpec, scenario: str, port: int, serverPid: int, duration: float,
              programs: dict[str, Path]) -> ClientRun:  # fmt: skip
    """
    Run C{spec} once against the server on C{port}, pinned to CPU 1.
    """
    argv = [*_pinned(1), *_command(spec, scenario, port, serverPid, duration, programs)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        return _parsed(spec, scenario, done.stdout)
    except (ValueError, KeyError):
        failed = ClientRun(spec.name, scenario)
        failed.errors.append(f"client failed: {done.stderr[-500:]}")
        return failed


def summarizeClient(runs: list[ClientRun]) -> ClientSummary:
    good = [r for r in runs if r.messages and r.seconds > 0 and r.cpuSeconds > 0]
    cpuPerMessage = _median([r.cpuSeconds / r.messages * 1e6 for r in good])
    return ClientSummary(
        runs=len(good),
        messagesPerSecond=_median([r.messages / r.seconds for r in good]),
        cpuPerMessage=cpuPerMessage,
        perCore=1e6 / cpuPerMessage if cpuPerMessage else 0.0,
        errors=[e for r in runs for e in r.errors],
    )


@dataclass
class ClientResults:
    summaries: dict[str, dict[str, ClientSummary]] = field(default_factory=dict)
    runs: dict[str, dict[str, list[ClientRun]]] = field(default_factory=dict)
    problem: str | None = None


def runClientBench(scenarios: list[str], clients: list[ClientSpec], duration: float,
                   repeats: int, workdir: Path, progress: IO[str]) -> ClientResults:  # fmt: skip
    """
    Every client in C{clients}, in every scenario, C{repeats} times,
    interleaved, against the C epoll echo server.
    """
    results = ClientResults()
    programs = {name: compiled(name, workdir) for name in ("epoll_echo", "epoll_client")}
    # The server every client is measured against.
    server = ServerSpec("C epoll server", (str(programs["epoll_echo"]), "{port}"), frozenset())
    running = startServer(server, workdir)
    try:
        for scenario in scenarios:
            byClient: dict[str, list[ClientRun]] = {spec.name: [] for spec in clients}
            for repeat in range(repeats):
                for spec in clients:
                    run = runClient(spec, scenario, running.port, running.pid, duration, programs)
                    byClient[spec.name].append(run)
                    printRun(
                        progress,
                        f"client {scenario} #{repeat + 1} {spec.name}",
                        run.messages,
                        run.seconds,
                        run.cpuSeconds,
                        run.errors,
                        "client CPU/msg",
                    )
            results.runs[scenario] = byClient
            summaries = {name: summarizeClient(runs) for name, runs in byClient.items()}
            for summary in summaries.values():
                for reference in REFERENCES:
                    other = summaries.get(reference)
                    if other is not None and other.messagesPerSecond and other.perCore:
                        summary.rateRatios[reference] = (
                            summary.messagesPerSecond / other.messagesPerSecond
                        )
                        summary.perCoreRatios[reference] = summary.perCore / other.perCore
            results.summaries[scenario] = summaries
    finally:
        stopServer(running)
    return results
