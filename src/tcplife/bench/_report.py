"""
The benchmark's table (text), its JSON form, and its chart.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._clients import REFERENCES, ClientResults
from ._run import PEERS, BenchResults

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
    if results.events:
        lines.append("")
        for name, counted in results.events.items():
            lines.append(
                f"events logged by {name}: {counted['accept']} accept and {counted['close']} "
                f"close for {counted['connections']} connections"
            )
    return "\n".join(lines)


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
