"""
The benchmark's table (text), its JSON form, and its chart.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._clients import REFERENCES, ClientResults
from ._run import PEERS, SERVERS, BenchResults, Summary

#: The one process the workers are compared with, best first: at the same
#: log level where it runs.
_ONE_PROCESS = ("tcplife warn", "tcplife")
_WORKER_NAMES = tuple(s.name for s in SERVERS if s.workers is not None)
_WORKERS = {s.name: s.workers for s in SERVERS if s.workers is not None}

#: A process this busy (CPU seconds per second) has no more to give.
_SATURATED = 0.9

_HEADER = (
    f"{'scenario':<9} {'server':<20} {'msgs/s':>9} {'MB/s':>8} {'p50 us':>8} {'p99 us':>8} "
    f"{'CPU us/msg':>10}" + "".join(f" {'/' + peer:>9}" for peer in PEERS)
)


def _ratios(ratios: dict[str, float]) -> str:
    return "".join(f" {ratios[peer]:>8.2f}x" if peer in ratios else f" {'-':>9}" for peer in PEERS)


def table(results: BenchResults) -> str:
    """
    Scenario x server: throughput, latency, CPU per message and its ratio to
    each peer (below 1.00x: less CPU than that peer).
    """
    lines = [_HEADER, "-" * len(_HEADER)]
    for scenario, summaries in results.summaries.items():
        for name, s in summaries.items():
            lines.append(
                f"{scenario:<9} {name:<20} {s.messagesPerSecond:>9,.0f} "
                f"{s.megabytesPerSecond:>8.1f} {s.p50:>8.0f} {s.p99:>8.0f} "
                f"{s.cpuPerMessage:>10.2f}"
                + _ratios(s.ratios)
                + (f"  ERRORS: {s.errors[:2]}" if s.errors else "")
            )
    if results.idle:
        lines.append("")
        lines.append(
            f"{'idle':<9} {'server':<20} {'KiB RSS per open connection':>28}"
            + "".join(f" {'/' + peer:>9}" for peer in PEERS)
        )
        for name, perConnection in results.idle.items():
            ratios = {
                peer: perConnection / results.idle[peer] for peer in PEERS if results.idle.get(peer)
            }
            lines.append(f"{'idle':<9} {name:<20} {perConnection / 1024:>28.2f}" + _ratios(ratios))
    workers = workersRows(results)
    if workers:
        lines.append("")
        lines.append(
            f"{'workers':<9} {'server':<20} {'msgs/s':>9} {'/1 proc':>8} {'srv us/msg':>10} "
            f"{'srv cores':>9} {'cli us/msg':>10} {'cli cores':>9} {'all cores':>9}  limited by"
        )
        for scenario, name, s, rate, limit in workers:
            lines.append(
                f"{scenario:<9} {name:<20} {s.messagesPerSecond:>9,.0f} {rate:>7.2f}x "
                f"{s.cpuPerMessage:>10.2f} {s.serverCores:>9.2f} {s.clientCpuPerMessage:>10.2f} "
                f"{s.clientCores:>9.2f} {s.machineCores:>9.2f}  {limit}"
            )
    if results.events:
        lines.append("")
        for name, counted in results.events.items():
            lines.append(
                f"events logged by {name}: {counted['accept']} accept and {counted['close']} "
                f"close for {counted['connections']} connections"
            )
    return "\n".join(lines)


def limitedBy(summary: Summary, workers: int | None, cores: int) -> str:
    """
    What holds a server's rate down, as far as CPU time tells: the load
    client (one process, so one core) when it is busy all the time; the
    server's processes when they are; the machine's cores when both
    together, or with other work on the machine, use them all; a core
    when one is busy all the time (pinned, with other work beside);
    otherwise neither, waiting (latency, the kernel).
    """
    processes = workers or 1
    if summary.clientCores >= _SATURATED:
        return "the load client (one core, all busy)"
    if summary.serverCores >= _SATURATED * min(processes, cores):
        return "the server (its cores all busy)"
    if summary.serverCores + summary.clientCores >= _SATURATED * cores:
        return f"the machine's {cores} cores (server and client share them)"
    if summary.machineCores >= _SATURATED * cores:
        other = summary.machineCores - summary.serverCores - summary.clientCores
        return f"the machine's {cores} cores (other work took {max(other, 0):.1f} of them)"
    if summary.busiestCore >= _SATURATED:
        # Pinned, server and client each have one core, which other work
        # shares with them.
        return "a core all busy (its process and other work)"
    return "neither: both wait (latency)"


def workersRows(results: BenchResults) -> list[tuple[str, str, Summary, float, str]]:
    """
    For each scenario with workers rows: one process (at the workers' log
    level where it runs) and each number of workers, with its rate
    relative to the one process and what limits it.
    """
    cores = int(results.settings.get("cores", 2))
    rows = []
    for scenario, summaries in results.summaries.items():
        if not any(name in _WORKERS for name in summaries):
            continue
        reference = next((name for name in _ONE_PROCESS if name in summaries), None)
        single = summaries.get(reference) if reference else None
        for name in (*([reference] if reference else []), *_WORKER_NAMES):
            if name not in summaries:
                continue
            s = summaries[name]
            rate = s.messagesPerSecond / single.messagesPerSecond if single else 0.0
            rows.append((scenario, name, s, rate, limitedBy(s, _WORKERS.get(name), cores)))
    return rows


def asJSON(results: BenchResults) -> dict[str, Any]:
    return {
        "settings": results.settings,
        "summaries": {
            scenario: {name: asdict(s) for name, s in summaries.items()}
            for scenario, summaries in results.summaries.items()
        },
        "idle_rss_bytes_per_connection": results.idle,
        "events": results.events,
        "runs": {
            scenario: {name: [asdict(r) for r in runs] for name, runs in byServer.items()}
            for scenario, byServer in results.runs.items()
        },
    }


def writeJSON(results: BenchResults, path: Path, clients: dict[str, Any] | None = None) -> None:
    document = asJSON(results)
    if clients is not None:
        document["clients"] = clients
    path.write_text(json.dumps(document, indent=2) + "\n")


def writeChart(results: BenchResults, path: Path) -> None:
    """
    One panel per scenario: server CPU per message relative to uvloop (lower
    is better), and idle memory per connection.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in results.summaries] + (["idle"] if results.idle else [])
    columns = 2 if len(panels) > 2 else len(panels)
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.9 * rows), squeeze=False)
    grid = [axis for row in axes for axis in row]
    for axis in grid[len(panels) :]:
        axis.set_visible(False)
    for axis, scenario in zip(grid, panels, strict=False):
        if scenario == "idle":
            names = list(results.idle)
            values = [results.idle[n] / 1024 for n in names]
            axis.set_title("idle: KiB RSS per connection")
        else:
            summaries = results.summaries[scenario]
            names = list(summaries)
            values = [summaries[n].ratios.get("uvloop", 0.0) for n in names]
            axis.set_title(f"{scenario}: CPU per message / uvloop")
            axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        colors = ["#4c72b0" if n.startswith("tcplife") else "#999999" for n in names]
        bars = axis.bar(range(len(names)), values, color=colors)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
        axis.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    figure.suptitle("tcplife vs peers: server on one core, load client on the other")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(results: BenchResults) -> str:
    """
    The table as Markdown, for docs/performance.md: server CPU per message and its
    ratio to each peer, with throughput and latency.
    """
    peers = " | ".join(f"/ {peer}" for peer in PEERS)
    lines = [
        f"| scenario | server | msgs/s | MB/s | p50 µs | p99 µs | CPU µs/msg | {peers} |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(PEERS),
    ]
    for scenario, summaries in results.summaries.items():
        for name, s in summaries.items():
            ratios = " | ".join(
                f"{s.ratios[peer]:.2f}x" if peer in s.ratios else "" for peer in PEERS
            )
            lines.append(
                f"| {scenario} | {name} | {s.messagesPerSecond:,.0f} | "
                f"{s.megabytesPerSecond:.1f} | {s.p50:.0f} | {s.p99:.0f} | "
                f"{s.cpuPerMessage:.2f} | {ratios} |"
            )
    for name, perConnection in results.idle.items():
        ratios = " | ".join(
            f"{perConnection / results.idle[peer]:.2f}x" if results.idle.get(peer) else ""
            for peer in PEERS
        )
        lines.append(f"| idle | {name} | | | | | {perConnection / 1024:.2f} KiB/conn | {ratios} |")
    workers = workersRows(results)
    if workers:
        lines += [
            "",
            "| scenario | server | msgs/s | / one process | server CPU µs/msg | server cores busy "
            "| client CPU µs/msg | client cores busy | all cores busy | limited by |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for scenario, name, s, rate, limit in workers:
            lines.append(
                f"| {scenario} | {name} | {s.messagesPerSecond:,.0f} | {rate:.2f}x | "
                f"{s.cpuPerMessage:.2f} | {s.serverCores:.2f} | {s.clientCpuPerMessage:.2f} | "
                f"{s.clientCores:.2f} | {s.machineCores:.2f} | {limit} |"
            )
    return "\n".join(lines)


_CLIENT_HEADER = (
    f"{'scenario':<9} {'client':<16} {'msgs/s':>9} {'CPU us/msg':>10} {'msgs/CPU-s':>10}"
    + "".join(f" {'rate/' + ref:>13} {'core/' + ref:>13}" for ref in REFERENCES)
)


def clientTable(results: ClientResults) -> str:
    """
    Scenario x client: rate, the client's own CPU per message and messages
    per CPU second, and both as ratios to each reference client (above
    1.00x: more than that reference).
    """
    lines = [
        "clients, against the C epoll echo server (server on CPU 0, client on CPU 1):",
        _CLIENT_HEADER,
        "-" * len(_CLIENT_HEADER),
    ]
    for scenario, summaries in results.summaries.items():
        for name, s in summaries.items():
            ratios = "".join(
                f" {s.rateRatios[ref]:>12.2f}x {s.perCoreRatios[ref]:>12.2f}x"
                if ref in s.rateRatios
                else f" {'-':>13} {'-':>13}"
                for ref in REFERENCES
            )
            lines.append(
                f"{scenario:<9} {name:<16} {s.messagesPerSecond:>9,.0f} "
                f"{s.cpuPerMessage:>10.2f} {s.perCore:>10,.0f}"
                + ratios
                + (f"  ERRORS: {s.errors[:2]}" if s.errors else "")
            )
    return "\n".join(lines)


def clientMarkdown(results: ClientResults) -> str:
    refs = " | ".join(f"rate / {ref} | per core / {ref}" for ref in REFERENCES)
    lines = [
        f"| scenario | client | msgs/s | CPU µs/msg | msgs per CPU-s | {refs} |",
        "|---|---|---:|---:|---:|" + "---:|" * (2 * len(REFERENCES)),
    ]
    for scenario, summaries in results.summaries.items():
        for name, s in summaries.items():
            ratios = " | ".join(
                f"{s.rateRatios[ref]:.2f}x | {s.perCoreRatios[ref]:.2f}x"
                if ref in s.rateRatios
                else " | "
                for ref in REFERENCES
            )
            lines.append(
                f"| {scenario} | {name} | {s.messagesPerSecond:,.0f} | {s.cpuPerMessage:.2f} | "
                f"{s.perCore:,.0f} | {ratios} |"
            )
    return "\n".join(lines)


def clientJSON(results: ClientResults) -> dict[str, Any]:
    return {
        "summaries": {
            scenario: {name: asdict(s) for name, s in summaries.items()}
            for scenario, summaries in results.summaries.items()
        },
        "runs": {
            scenario: {name: [asdict(r) for r in runs] for name, runs in byClient.items()}
            for scenario, byClient in results.runs.items()
        },
        "problem": results.problem,
    }
