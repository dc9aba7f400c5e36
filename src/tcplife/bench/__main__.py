"""
C{python -m tcplife.bench} (or C{make bench}): tcplife against its peers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ._clients import CLIENT_SCENARIOS, CLIENTS, ClientResults, runClientBench
from ._native import CompileError
from ._report import clientJSON, clientMarkdown, clientTable, markdown, table, writeChart, writeJSON
from ._run import SERVERS, runBench

SCENARIO_NAMES = ["rr", "stream", "connect", "idle"]


def _loadAverage() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tcplife.bench",
        description="Echo servers pinned to CPU 0, the load client on CPU 1; "
        "server CPU time per message from /proc, medians of interleaved runs.",
    )
    parser.add_argument("--duration", type=float, default=1.2, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per server and scenario")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIO_NAMES), help="comma-separated subset"
    )
    parser.add_argument(
        "--servers",
        default=",".join(s.name for s in SERVERS),
        help="comma-separated subset of: " + ", ".join(s.name for s in SERVERS),
    )
    parser.add_argument("--idle-connections", type=int, default=2000)
    parser.add_argument(
        "--client-scenarios",
        default=",".join(CLIENT_SCENARIOS),
        help="the client section's scenarios, comma-separated ('' for none): "
        + ", ".join(CLIENT_SCENARIOS),
    )
    parser.add_argument(
        "--clients",
        default=",".join(c.name for c in CLIENTS),
        help="comma-separated subset of: " + ", ".join(c.name for c in CLIENTS),
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--chart", type=Path, help="also draw the table as a PNG here")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)

    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIO_NAMES)
    wanted = [n.strip() for n in args.servers.split(",") if n.strip()]
    servers = [s for s in SERVERS if s.name in wanted]
    if unknown or len(servers) != len(wanted):
        parser.error(f"unknown scenario or server in {args.scenarios!r} / {args.servers!r}")
    clientScenarios = [s for s in args.client_scenarios.split(",") if s]
    wantedClients = [n.strip() for n in args.clients.split(",") if n.strip()]
    clients = [c for c in CLIENTS if c.name in wantedClients]
    if set(clientScenarios) - set(CLIENT_SCENARIOS) or len(clients) != len(wantedClients):
        parser.error(
            f"unknown client scenario or client in {args.client_scenarios!r} / {args.clients!r}"
        )

    started = time.monotonic()
    loadBefore = _loadAverage()
    with tempfile.TemporaryDirectory(prefix="tcplife-bench-") as workdir:
        results = runBench(
            scenarios,
            servers,
            args.duration,
            args.repeats,
            args.idle_connections,
            Path(workdir),
            sys.stderr,
        )
        clientResults = ClientResults()
        if clientScenarios and clients:
            try:
                clientResults = runClientBench(
                    clientScenarios, clients, args.duration, args.repeats, Path(workdir), sys.stderr
                )
            except CompileError as e:
                clientResults.problem = str(e)
    results.settings["wall_s"] = round(time.monotonic() - started, 1)
    results.settings["loadavg"] = [loadBefore, _loadAverage()]
    if results.summaries or results.idle:
        print(table(results))
        print()
    if clientResults.summaries:
        print(clientTable(clientResults))
    elif clientResults.problem:
        print(f"no client section: {clientResults.problem}")
    print(
        f"\n({results.settings['wall_s']} s; medians of {args.repeats} interleaved runs; "
        f"load average {loadBefore} before, {_loadAverage()} after: other work on the "
        "machine shows here)"
    )
    if args.markdown:
        if results.summaries or results.idle:
            print()
            print(markdown(results))
        if clientResults.summaries:
            print()
            print(clientMarkdown(clientResults))
    if args.json:
        writeJSON(results, args.json, clients=clientJSON(clientResults))
    if args.chart:
        writeChart(results, args.chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
