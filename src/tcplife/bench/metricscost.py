"""
What one C{/metrics} for many workers costs, per connection, two ways::

    python -m tcplife.bench.metricscost [--connections N] [--workers N]

  - prometheus-client's multiprocess mode (C{PROMETHEUS_MULTIPROC_DIR}):
    every worker updates metric objects whose values live in files it
    maps, once per connection for each figure the server keeps (accepted,
    open up and down, closed by how, bytes in and out, the duration and
    RTT histograms); a scrape reads every worker's files and merges them.
  - tcplife's: a worker counts nothing more per connection (its factory's
    totals are what it serves); the supervisor asks each worker for its
    exposition over the control channel and merges them, per scrape.

Each side runs in a process of its own (prometheus-client picks its value
class when imported, by the variable).  Prints CPU microseconds per
connection for the first and per scrape for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any


def _perConnectionMultiprocess(connections: int) -> float:
    """
    CPU microseconds per connection of the metric updates a worker would
    make in multiprocess mode (run with C{PROMETHEUS_MULTIPROC_DIR} set).
    """
    from prometheus_client import Counter, Gauge, Histogram

    accepted = Counter("tcplife_connections_accepted", "")
    open_ = Gauge("tcplife_connections_open", "", multiprocess_mode="livesum")
    closed = Counter("tcplife_connections_closed", "", ["how"]).labels("fin")
    received = Counter("tcplife_received_bytes", "")
    sent = Counter("tcplife_sent_bytes", "")
    duration = Histogram("tcplife_connection_duration_seconds", "")
    rtt = Histogram("tcplife_connection_rtt_seconds", "")
    started = time.process_time()
    for _ in range(connections):
        accepted.inc()
        open_.inc()
        received.inc(64)
        sent.inc(64)
        open_.dec()
        closed.inc()
        duration.observe(0.002)
        rtt.observe(0.00005)
    return (time.process_time() - started) / connections * 1e6


def _scrapeMultiprocess(directory: str, workers: int, scrapes: int) -> float:
    """
    CPU microseconds per scrape of C{workers} workers' files.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    # The files of the other workers: copies of this one's under their pids.
    for name in os.listdir(directory):
        for pid in range(1, workers):
            kind = name.rsplit("_", 1)[0]
            os.link(os.path.join(directory, name), os.path.join(directory, f"{kind}_9{pid}.db"))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    started = time.process_time()
    for _ in range(scrapes):
        generate_latest(registry)
    return (time.process_time() - started) / scrapes * 1e6


def _scrapeMerged(workers: int, scrapes: int) -> float:
    """
    CPU microseconds per scrape of tcplife's way: each worker's exposition
    made, then all parsed and merged by the supervisor (the control
    channel's bytes aside).
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from twisted.internet.task import Clock

    from tcplife import LifecycleServerFactory
    from tcplife.server import ServerCollector, Worker, WorkersCollector

    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(LifecycleServerFactory(clock=Clock()), list))
    pool = [Worker(index, pid=index) for index in range(1, workers + 1)]
    merged = WorkersCollector(list, lambda: pool, Clock())
    started = time.process_time()
    for _ in range(scrapes):
        for worker in pool:
            merged._heard({"exposition": generate_latest(registry)}, worker.pid or 0)
        list(merged.collect())
    return (time.process_time() - started) / scrapes * 1e6


def _child(side: str, connections: int, workers: int, scrapes: int) -> dict[str, Any]:
    if side == "multiprocess":
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        return {
            "per_connection_us": _perConnectionMultiprocess(connections),
            "per_scrape_us": _scrapeMultiprocess(directory, workers, scrapes),
        }
    return {"per_connection_us": 0.0, "per_scrape_us": _scrapeMerged(workers, scrapes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplife.bench.metricscost")
    parser.add_argument("--connections", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--side", choices=["multiprocess", "merged"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(_child(args.side, args.connections, args.workers, args.scrapes)))
        return 0
    results = {}
    for side in ("multiprocess", "merged"):
        with tempfile.TemporaryDirectory(prefix="tcplife-multiproc-") as directory:
            environ = dict(os.environ)
            environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            if side == "multiprocess":
                environ["PROMETHEUS_MULTIPROC_DIR"] = directory
            done = subprocess.run(
                [
                    sys.executable,
                    *("-m", "tcplife.bench.metricscost", "--side", side),
                    *(f"--{k}={v}" for k, v in vars(args).items() if k != "side"),
                ],
                env=environ,
                capture_output=True,
                check=True,
            )
            results[side] = json.loads(done.stdout)
    print(f"{'':<34} {'CPU us/connection':>18} {f'CPU us/scrape ({args.workers} workers)':>28}")
    names = {
        "multiprocess": "prometheus-client multiprocess",
        "merged": "tcplife (supervisor merges)",
    }
    for side, figures in results.items():
        print(
            f"{names[side]:<34} {figures['per_connection_us']:>18.2f} "
            f"{figures['per_scrape_us']:>28.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
