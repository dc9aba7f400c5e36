"""
One /metrics for a supervisor's workers: what each worker's collector says,
merged, on a memory clock.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory
from tcplife.server import ServerCollector, Worker, WorkersCollector


class AnsweringControl:
    """
    A worker's control channel that answers a Scrape with its factory's
    metrics, as the worker's own collector gives them.
    """

    connected = True

    def __init__(self, factory: LifecycleServerFactory) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ServerCollector(factory, list))

    def callRemote(self, command: Any) -> Any:
        return succeed({"exposition": generate_latest(self.registry)})


class Fleet:
    """
    Workers, each with a factory whose counts a test sets.
    """

    def __init__(self, count: int) -> None:
        self.clock = MemoryReactorClock()
        self.factories = [LifecycleServerFactory(clock=self.clock) for _ in range(count)]
        self.workers = [
            Worker(n + 1, pid=100 + n, process=object(), control=AnsweringControl(f))  # type: ignore[arg-type]
            for n, f in enumerate(self.factories)
        ]
        self.collector = WorkersCollector(list, lambda: self.workers, self.clock)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        self.collector.refresh(self.workers)
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in self.collector.collect()
            for sample in family.samples
        }

    def dies(self, index: int) -> None:
        worker = self.workers[index - 1]
        self.collector.retire(worker)
        worker.process = worker.pid = worker.control = None
        worker.generation += 1


class MergingTests(SynchronousTestCase):
    def test_countersSumOpenConnectionsSumPausedIsTheLargest(self) -> None:
        """
        Accepted connections and bytes are the workers' sum, as are the
        connections open; accept_paused is 1 while any worker has paused.
        """
        fleet = Fleet(2)
        first, second = fleet.factories
        first.accepted, second.accepted = 3, 4
        first.bytesInClosed, second.bytesInClosed = 10, 5
        first.closed["reset"] = 2
        second.gate.paused = "cap"  # type: ignore[assignment]
        samples = fleet.scrape()
        self.assertEqual(samples[("tcplife_connections_accepted_total", ())], 7)
        self.assertEqual(samples[("tcplife_received_bytes_total", ())], 15)
        self.assertEqual(samples[("tcplife_connections_closed_total", (("how", "reset"),))], 2)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 1)
        self.assertEqual(samples[("tcplife_workers", ())], 2)

    def test_aDeadWorkersCountsStayAndItsGaugesGo(self) -> None:
        """
        Once a worker dies, what it counted stays in the totals (as it last
        said), its open connections leave them, and the restart is counted.
        """
        fleet = Fleet(2)
        first, second = fleet.factories
        first.accepted, second.accepted = 3, 4
        first.gate.paused = "cap"  # type: ignore[assignment]
        fleet.scrape()
        fleet.dies(1)
        second.accepted = 5
        samples = fleet.scrape()
        self.assertEqual(samples[("tcplife_connections_accepted_total", ())], 8)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 0)
        self.assertEqual(samples[("tcplife_workers", ())], 1)
        self.assertEqual(samples[("tcplife_worker_restarts_total", ())], 1)
