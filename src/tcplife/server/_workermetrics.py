"""
One C{/metrics} for a supervisor and its workers.

Each worker counts as a single server does (nothing per connection for the
metrics: its collector reads the factory when asked); the supervisor asks
every worker for its metrics when it is scraped, and once a second, and
merges them: counters and histograms are summed, connections open too,
C{tcplife_accept_paused} is the largest (1 while any worker has paused).
The accept queues are the supervisor's own to read: every worker shares its
listening sockets, so there is one queue per socket, not one per worker.

A worker that dies takes with it what it counted since it was last asked
(at most a second before); the supervisor keeps the rest, so the totals do
not fall when a worker dies (which Prometheus would take for a reset), and
the restarted worker counts on top of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IListeningPort, IReactorTime

from ._control import Scrape
from ._metrics import listenerFamilies, refusedFamily
from ._workers import Worker

#: Seconds a worker has to answer a scrape; one that takes longer is served
#: from what it said before.
SCRAPE_TIMEOUT = 1.0

#: Gauges combined by their largest value; every other gauge is summed.
_LARGEST = frozenset({"tcplife_accept_paused"})

#: Kinds whose samples only grow: summed over dead workers too.
_GROWING = frozenset({"counter", "histogram"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class _Family:
    """
    One metric family as merged: its samples by name and labels.
    """

    def __init__(self, name: str, documentation: str, kind: str) -> None:
        self.name = name
        self.documentation = documentation
        self.kind = kind
        self.samples: dict[SampleKey, float] = {}

    def add(self, key: SampleKey, value: float) -> None:
        if self.kind == "gauge" and self.name in _LARGEST:
            self.samples[key] = max(self.samples.get(key, value), value)
        else:
            self.samples[key] = self.samples.get(key, 0.0) + value

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.kind)
        for (sampleName, labels), value in self.samples.items():
            metric.add_sample(sampleName, dict(labels), value)
        return metric


def _keyed(metric: Metric) -> Iterator[tuple[SampleKey, float]]:
    for sample in metric.samples:
        yield (sample.name, tuple(sorted(sample.labels.items()))), sample.value


class WorkersCollector(Collector):
    """
    The workers' metrics, merged, beside the supervisor's view of the shared
    listening sockets and of the workers themselves.

    @ivar ports: The supervisor's listening ports (the shared sockets).
    @ivar workers: The supervisor's workers.
    """

    def __init__(
        self,
        ports: Callable[[], Sequence[IListeningPort]],
        workers: Callable[[], Sequence[Worker]],
        clock: IReactorTime,
    ) -> None:
        self.ports = ports
        self.workers = workers
        self._clock = clock
        self._live: dict[int, list[Metric]] = {}
        self._retired: dict[str, _Family] = {}

    # -- what the workers say -------------------------------------------------

    def refresh(self, workers: Sequence[Worker]) -> Deferred[None]:
        """
        Ask every running worker for its metrics; fires once each has
        answered (or taken more than L{SCRAPE_TIMEOUT} seconds).
        """
        asked: list[Deferred[Any]] = []
        for worker in workers:
            control, pid = worker.control, worker.pid
            if control is None or pid is None or not control.connected:
                continue
            answer: Deferred[dict[str, bytes]] = control.callRemote(Scrape)  # type: ignore[no-untyped-call]
            answer.addTimeout(SCRAPE_TIMEOUT, self._clock)
            answer.addCallback(self._heard, pid)
            answer.addErrback(lambda _: None)
            asked.append(answer)
        return gatherResults(asked, consumeErrors=True).addBoth(lambda _: None)

    def _heard(self, answer: dict[str, bytes], pid: int) -> None:
        if all(worker.pid != pid for worker in self.workers()):
            return  # it died while its answer was on the way: retired already
        text = answer["exposition"].decode("utf-8")
        self._live[pid] = list(text_string_to_metric_families(text))

    def retire(self, worker: Worker) -> None:
        """
        C{worker}'s process is gone: its counters and histograms, as it
        last told them, count on; its gauges go.
        """
        families = self._live.pop(worker.pid, None) if worker.pid is not None else None
        for metric in families or ():
            if metric.type not in _GROWING:
                continue
            family = self._retired.get(metric.name)
            if family is None:
                family = self._retired[metric.name] = _Family(
                    metric.name, metric.documentation, metric.type
                )
            for key, value in _keyed(metric):
                family.add(key, value)

    # -- what the supervisor serves -------------------------------------------

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, _Family] = {}

        def family(name: str, documentation: str, kind: str) -> _Family:
            found = merged.get(name)
            if found is None:
                found = merged[name] = _Family(name, documentation, kind)
            return found

        running = {worker.pid for worker in self.workers() if worker.pid is not None}
        for pid, metrics in self._live.items():
            if pid not in running:
                continue
            for metric in metrics:
                into = family(metric.name, metric.documentation, metric.type)
                for key, value in _keyed(metric):
                    into.add(key, value)
        for retired in self._retired.values():
            into = family(retired.name, retired.documentation, retired.kind)
            for key, value in retired.samples.items():
                into.add(key, value)
        for metric in self._supervisorsOwn():
            into = family(metric.name, metric.documentation, metric.type)
            for key, value in _keyed(metric):
                into.add(key, value)
        for merging in merged.values():
            yield merging.metric()

    def _supervisorsOwn(self) -> Iterator[Metric]:
        depth, backlog, dropped = listenerFamilies(self.ports())
        yield depth
        yield backlog
        refused = refusedFamily()
        refused.add_metric(["backlog-full"], dropped)
        yield refused
        workers = self.workers()
        yield GaugeMetricFamily(
            "tcplife_workers",
            "Worker processes running now (twist tcpecho --workers).",
            value=sum(1 for worker in workers if worker.running),
        )
        yield CounterMetricFamily(
            "tcplife_worker_restarts",
            "Worker processes started again after one died.",
            value=sum(worker.generation for worker in workers),
        )
