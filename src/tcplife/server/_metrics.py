"""
Prometheus metrics of a tcplife server, served at C{/metrics}.

Nothing is counted on the hot path for them: the factory already keeps
totals per connection, and the collector reads those, and the kernel's view
of each listening socket, when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ..events import ABORT, FIN, RESET, TIMEOUT, describeAddress
from ..internet import listenDrops, readAcceptQueue
from ._factory import LifecycleServerFactory
from ._faults import KINDS
from ._listening import listeningSocket


class CountsDropped(Protocol):
    """
    An event stream that counts the events it could not write.
    """

    @property
    def dropped(self) -> int: ...


class ServerCollector(Collector):
    """
    Reads a L{LifecycleServerFactory}, its listening ports and its event
    stream (if any) at scrape time.
    """

    def __init__(
        self,
        factory: LifecycleServerFactory,
        ports: Callable[[], Sequence[IListeningPort]],
        events: CountsDropped | None = None,
    ) -> None:
        self.factory = factory
        self.ports = ports
        self.events = events
        self.closeStats = factory.keepCloseStats()

    def collect(self) -> Iterator[Metric]:
        factory = self.factory
        open_ = list(factory.connections.values())
        gate = factory.gate
        yield GaugeMetricFamily(
            "tcplife_connections_open",
            "Connections open now, those still waiting for a PROXY header included.",
            value=len(open_) + gate.awaitingHeader,
        )
        yield GaugeMetricFamily(
            "tcplife_connections_awaiting_header",
            "Open connections still waiting for their PROXY header.",
            value=gate.awaitingHeader,
        )
        yield CounterMetricFamily(
            "tcplife_connections_accepted", "Connections accepted.", value=factory.accepted
        )
        closed = CounterMetricFamily(
            "tcplife_connections_closed", "Connections closed, by how they ended.", labels=["how"]
        )
        for how in (FIN, RESET, ABORT, TIMEOUT):
            closed.add_metric([how], factory.closed[how])
        yield closed
        yield CounterMetricFamily(
            "tcplife_received_bytes",
            "Bytes received from peers.",
            value=factory.bytesInClosed + sum(c.bytesIn for c in open_),
        )
        yield CounterMetricFamily(
            "tcplife_sent_bytes",
            "Bytes written to peers by the protocols.",
            value=factory.bytesOutClosed + sum(c.bytesOut for c in open_),
        )
        yield GaugeMetricFamily(
            "tcplife_accept_paused",
            "1 while accepting is paused (connection cap or descriptor limit), else 0.",
            value=0 if gate.paused is None else 1,
        )
        yield CounterMetricFamily(
            "tcplife_accept_fd_exhaustions",
            "Times accept() failed for want of file descriptors or memory.",
            value=gate.exhaustions,
        )
        depth, backlog, dropped = listenerFamilies(self.ports())
        refused = refusedFamily()
        refused.add_metric(["backlog-full"], dropped)
        refused.add_metric(["factory"], gate.refusedByFactory)
        refused.add_metric(["proxy-header"], gate.refusedHeader)
        refused.add_metric(["shutdown"], gate.unserved)
        refused.add_metric(["over-cap"], gate.refusedOverCap)
        yield depth
        yield backlog
        yield refused
        stats = self.closeStats
        yield HistogramMetricFamily(
            "tcplife_connection_duration_seconds",
            "How long closed connections were open.",
            buckets=list(stats.duration.cumulative()),
            sum_value=stats.duration.sum,
        )
        yield HistogramMetricFamily(
            "tcplife_connection_rtt_seconds",
            "Closed TCP connections' smoothed round-trip time, as the kernel "
            "measured it last (TCP_INFO at close).",
            buckets=list(stats.rtt.cumulative()),
            sum_value=stats.rtt.sum,
        )
        yield CounterMetricFamily(
            "tcplife_retransmitted_segments",
            "Segments the kernel retransmitted on closed TCP connections.",
            value=stats.retransmits,
        )
        yield CounterMetricFamily(
            "tcplife_events_dropped",
            "Events the --events file could not take (a full disk, a file "
            "that cannot be written), and so lost; 0 without --events.",
            value=0 if self.events is None else self.events.dropped,
        )
        faults = CounterMetricFamily(
            "tcplife_faults",
            "Connections a fault was applied to on purpose (--fault), by its kind; "
            "'never-accept' counts the times accepting stopped for good.",
            labels=["kind"],
        )
        counts = factory.faults.counts if factory.faults is not None else None
        for kind in KINDS:
            faults.add_metric([kind], counts[kind] if counts is not None else 0)
        yield faults


def listenerFamilies(
    ports: Iterable[IListeningPort],
) -> tuple[GaugeMetricFamily, GaugeMetricFamily, int]:
    """
    The kernel's view of C{ports}' listening sockets: the depth of each
    one's accept queue, its backlog, and how many handshakes they dropped
    in all with the queue full.
    """
    depth = GaugeMetricFamily(
        "tcplife_accept_queue_depth",
        "Connections completed by the kernel and waiting to be accepted.",
        labels=["listener"],
    )
    backlog = GaugeMetricFamily(
        "tcplife_accept_queue_backlog",
        "The accept queue's limit as the kernel applies it.",
        labels=["listener"],
    )
    dropped = 0
    for port in ports:
        handle = listeningSocket(port)
        if handle is None or handle.fileno() < 0:
            continue
        address = describeAddress(port.getHost())
        queue = readAcceptQueue(handle)
        if queue is not None:
            depth.add_metric([address], queue.depth)
            backlog.add_metric([address], queue.backlog)
        dropped += listenDrops(handle) or 0
    return depth, backlog, dropped


def refusedFamily() -> CounterMetricFamily:
    """
    The family of connections turned away, by reason (no sample yet).
    """
    return CounterMetricFamily(
        "tcplife_connections_refused",
        "Connections turned away by limits: 'backlog-full' counts handshakes "
        "the kernel dropped with the accept queue full; 'factory' counts "
        "connections the factory declined; 'proxy-header' counts connections "
        "closed without a valid PROXY header; 'shutdown' counts clients whose "
        "handshake had completed that shutdown left unserved; 'over-cap' counts "
        "connections a port tcplife did not make accepted beyond the cap, reset "
        "at once.",
        labels=["reason"],
    )


class MetricsPage(Resource):
    """
    The text exposition of a registry (OpenMetrics when the scraper asks).
    """

    isLeaf = True

    def __init__(
        self,
        registry: CollectorRegistry,
        beforeScrape: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        Resource.__init__(self)
        self.registry = registry
        self.beforeScrape = beforeScrape

    def render_GET(self, request: Request) -> bytes | int:
        accept = request.getHeader("accept")
        encoder, contentType = choose_encoder(accept or "")
        request.setHeader("content-type", contentType)
        if self.beforeScrape is None:
            body: bytes = encoder(self.registry)
            return body

        def answer(_: object) -> None:
            if not request.finished and not request._disconnected:
                request.write(encoder(self.registry))
                request.finish()

        self.beforeScrape().addBoth(answer)
        return NOT_DONE_YET


class _QuietSite(Site):
    # Prometheus scrapes every few seconds; an access line per scrape would
    # drown the lifecycle events.
    noisy = False

    def __init__(self, resource: Resource) -> None:
        Site.__init__(self, resource)

    def log(self, request: HTTPRequest) -> None:
        pass


def metricsSite(
    registry: CollectorRegistry, beforeScrape: Callable[[], Deferred[None]] | None = None
) -> Site:
    """
    A web site with the registry at C{/metrics}; each scrape first waits
    for C{beforeScrape}, if given (what a supervisor asks its workers).
    """
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry, beforeScrape))
    return _QuietSite(root)
